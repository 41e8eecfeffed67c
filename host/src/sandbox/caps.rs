//! What a 0.2 plugin may hold beyond its sandbox, as the operator grants it in its
//! `[[plugin]]`: secrets, the bounds of its state, and its units budget per session.
//!
//! These are settings of a plugin version ([`Caps`], part of `super::InstanceSpec`), plain
//! data; the host calls that use them are in `super::imports`, the state itself in
//! `super::state`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::state::StateLimits;

/// A plugin's capabilities (contract 0.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// The secrets it may read (`secrets.get`).
    pub secrets: Secrets,
    /// The bounds of each of its state scopes.
    pub state: StateLimits,
    /// Most units it may charge per session (`budget.charge`); `None`: no cap.
    pub units_per_session: Option<u64>,
}

/// Secret values by name. Its `Debug` names the variables and never prints a value, so a
/// spec, an entry or a table can be logged or dumped whole.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(Arc<BTreeMap<String, String>>);

impl Secrets {
    pub fn new(values: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(Arc::new(values.into_iter().collect()))
    }

    /// The value of `name`, when granted.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The granted names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "***")))
            .finish()
    }
}

/// Longest `what` a charge may name.
pub const MAX_WHAT_BYTES: usize = 64;

/// Why a charge was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeError {
    OverCap { used: u64, cap: u64 },
    Invalid(String),
}

/// The units one (plugin, session) has charged; kept across the instances a restart or a
/// swap builds, so a restart does not reset the budget.
#[derive(Debug, Default)]
pub struct Units(AtomicU64);

impl Units {
    pub fn used(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds `units` unless that would pass `cap`. Calls into one (plugin, session) never
    /// overlap, but the check and the add are one atomic step anyway.
    pub fn charge(&self, units: u64, what: &str, cap: Option<u64>) -> Result<u64, ChargeError> {
        if what.is_empty() || what.len() > MAX_WHAT_BYTES {
            return Err(ChargeError::Invalid(format!(
                "`what` must be 1 to {MAX_WHAT_BYTES} bytes, such as \"tokens\" (got {} bytes)",
                what.len()
            )));
        }
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let next = used.checked_add(units)?;
                cap.is_none_or(|c| next <= c).then_some(next)
            })
            .map(|prev| prev + units)
            .map_err(|used| ChargeError::OverCap {
                used,
                cap: cap.unwrap_or(u64::MAX),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_past_the_cap_is_refused_and_not_counted() {
        let u = Units::default();
        assert_eq!(u.charge(60, "tokens", Some(100)), Ok(60));
        assert_eq!(
            u.charge(41, "tokens", Some(100)),
            Err(ChargeError::OverCap { used: 60, cap: 100 })
        );
        assert_eq!(u.charge(40, "tokens", Some(100)), Ok(100));
        assert!(matches!(
            u.charge(1, "", None),
            Err(ChargeError::Invalid(_))
        ));
        assert_eq!(u.used(), 100);
    }

    #[test]
    fn secrets_debug_names_variables_and_hides_values() {
        let s = Secrets::new([("API_KEY".to_owned(), "hunter2-value".to_owned())]);
        let text = format!("{s:?}");
        assert!(
            text.contains("API_KEY") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
