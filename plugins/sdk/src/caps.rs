//! The capabilities of contract 0.2, wrapped: host-held [`state`](crate::state), granted
//! [`secret`](crate::secret)s and the units [`budget`](crate::budget).
//!
//! On targets other than wasm32 these call nothing: the host calls are stubs that panic, as
//! for [`crate::log`]; keep them out of natively tested logic.

use crate::bindings::rtms::plugin::{budget as b, secrets, state as s};

pub use crate::bindings::rtms::plugin::budget::{BudgetError, OverCap};
pub use crate::bindings::rtms::plugin::state::{Error as StateError, Scope};

/// A bucket of the host's key-value store: [`Bucket::SESSION`] (this session's, cleared
/// after it ends) or [`Bucket::PLUGIN`] (shared by every session of the plugin, kept until
/// the plugin leaves the pipeline). Both outlive reloads and restarts after a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket(pub Scope);

impl Bucket {
    pub const SESSION: Bucket = Bucket(Scope::Session);
    pub const PLUGIN: Bucket = Bucket(Scope::Plugin);

    /// The value of `key`, or `None`.
    pub fn get(self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        s::get(self.0, key)
    }

    /// The value of `key` as UTF-8 text (`None` when missing or not UTF-8).
    pub fn get_string(self, key: &str) -> Result<Option<String>, StateError> {
        Ok(self.get(key)?.and_then(|v| String::from_utf8(v).ok()))
    }

    /// Sets `key`, for ever (until deleted or the scope is cleared).
    pub fn set(self, key: &str, value: impl AsRef<[u8]>) -> Result<(), StateError> {
        s::set(self.0, key, value.as_ref(), None)
    }

    /// Sets `key` for `ttl_ms` milliseconds.
    pub fn set_for(
        self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl_ms: u64,
    ) -> Result<(), StateError> {
        s::set(self.0, key, value.as_ref(), Some(ttl_ms))
    }

    pub fn delete(self, key: &str) -> Result<(), StateError> {
        s::delete(self.0, key)
    }

    pub fn exists(self, key: &str) -> Result<bool, StateError> {
        s::exists(self.0, key)
    }

    /// Every key of the bucket, in order (all pages).
    pub fn keys(self) -> Result<Vec<String>, StateError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = s::list_keys(self.0, cursor.as_deref())?;
            out.extend(page.keys);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Adds `delta` to the counter at `key` (missing: 0) and returns the new value; atomic.
    pub fn increment(self, key: &str, delta: i64) -> Result<i64, StateError> {
        s::increment(self.0, key, delta)
    }

    /// Sets `key` to `new` if it holds `old` (`None`: missing); returns whether it did.
    pub fn compare_and_swap(
        self,
        key: &str,
        old: Option<&[u8]>,
        new: impl AsRef<[u8]>,
    ) -> Result<bool, StateError> {
        s::compare_and_swap(self.0, key, old, new.as_ref(), None)
    }
}

/// The scope of this session.
pub fn session_state() -> Bucket {
    Bucket::SESSION
}

/// The scope of the plugin, shared by all its sessions.
pub fn plugin_state() -> Bucket {
    Bucket::PLUGIN
}

/// The granted secret `name` (an environment variable the operator lists in the plugin's
/// `secrets`), or `None` when it is not granted. Never log it.
pub fn secret(name: &str) -> Option<String> {
    secrets::get(name)
}

/// Charges `units` of `what` ("tokens", "audio-seconds") to this session's budget.
/// `Err(BudgetError::OverCap(..))` when it would pass `[plugin.limits] units_per_session`;
/// nothing is charged then.
pub fn charge(units: u64, what: &str) -> Result<(), BudgetError> {
    b::charge(units, what)
}

/// Units charged on this session so far, and the cap (`None`: none).
pub fn units_used() -> (u64, Option<u64>) {
    b::used()
}
