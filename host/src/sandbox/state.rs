//! Plugin state held by the host: the store behind the contract's `state` interface.
//!
//! A plugin instance dies with every reload, trap restart and rollback; what it keeps here
//! does not. Values live in scopes ([`ScopeKey`]): one per (plugin, session), named by the
//! session's Zoom stream id, and one per plugin. Everything is plain data (strings, bytes,
//! Unix-millisecond expiry times), so the state of a session can be exported
//! ([`StateStore::export`]) and moved with its stream to another host.
//!
//! [`StateStore`] is the seam: [`MemoryStateStore`] keeps everything in this process; a
//! store shared by several hosts implements the same calls. Bounds are checked by the store
//! on every write ([`StateLimits`]), so a guest can never grow it past them. Who clears what
//! and when (a session's scope after its end, a plugin's when it leaves the pipeline) is the
//! embedder's business; the host calls themselves are in `super::imports`.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Most keys one `list-keys` page returns.
pub const LIST_PAGE: usize = 100;

/// Which bucket: a plugin's own (`session: None`) or one session's of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeKey {
    pub plugin: String,
    /// The session's Zoom stream id (stable across reconnections, reloads and hosts).
    pub session: Option<String>,
}

impl ScopeKey {
    pub fn plugin(plugin: &str) -> Self {
        Self {
            plugin: plugin.to_owned(),
            session: None,
        }
    }

    pub fn session(plugin: &str, stream_id: &str) -> Self {
        Self {
            plugin: plugin.to_owned(),
            session: Some(stream_id.to_owned()),
        }
    }

    /// `session` or `plugin`, for messages and the `[plugin.state]` key names.
    pub fn kind(&self) -> &'static str {
        if self.session.is_some() {
            "session"
        } else {
            "plugin"
        }
    }
}

/// The bounds of one scope (`[plugin.state]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateLimits {
    /// Most keys a scope holds.
    pub max_keys: usize,
    /// Most bytes a scope holds, keys and values together.
    pub max_bytes: u64,
}

impl Default for StateLimits {
    fn default() -> Self {
        Self {
            max_keys: 1024,
            max_bytes: 1024 * 1024,
        }
    }
}

/// Why a state call failed; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Full(String),
    #[error("{0}")]
    InvalidKey(String),
    #[error("{0}")]
    NotANumber(String),
    #[error("{0}")]
    Other(String),
}

/// One stored value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    /// When it disappears, in Unix milliseconds.
    pub expires_at_ms: Option<u64>,
}

impl Entry {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|t| now_ms < t)
    }
}

/// A write: the value and its expiry.
#[derive(Clone, Debug)]
pub struct Put {
    pub value: Vec<u8>,
    pub expires_at_ms: Option<u64>,
}

/// Where plugin state lives. Every call is atomic with respect to every other on the same
/// scope; `now_ms` is the caller's clock, so expiry is testable and a store shared between
/// hosts needs no clock of its own.
pub trait StateStore: Send + Sync {
    fn get(&self, scope: &ScopeKey, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, StateError>;
    fn set(
        &self,
        scope: &ScopeKey,
        key: &str,
        put: Put,
        limits: &StateLimits,
        now_ms: u64,
    ) -> Result<(), StateError>;
    fn delete(&self, scope: &ScopeKey, key: &str) -> Result<(), StateError>;
    /// Live keys after `after`, ascending, at most `limit`; and whether more follow.
    fn list_keys(
        &self,
        scope: &ScopeKey,
        after: Option<&str>,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<String>, bool), StateError>;
    fn increment(
        &self,
        scope: &ScopeKey,
        key: &str,
        delta: i64,
        limits: &StateLimits,
        now_ms: u64,
    ) -> Result<i64, StateError>;
    /// Writes `put` if the live value equals `old` (`None`: missing); returns whether it did.
    fn compare_and_swap(
        &self,
        scope: &ScopeKey,
        key: &str,
        old: Option<&[u8]>,
        put: Put,
        limits: &StateLimits,
        now_ms: u64,
    ) -> Result<bool, StateError>;
    /// Removes one scope.
    fn clear(&self, scope: &ScopeKey);
    /// Removes a plugin's scope and every session scope of it.
    fn clear_plugin(&self, plugin: &str);
    /// A scope's live entries, as plain data (to move a session to another host).
    fn export(&self, scope: &ScopeKey, now_ms: u64) -> Vec<(String, Entry)>;
    /// Keys and bytes a scope holds (live or not yet purged).
    fn usage(&self, scope: &ScopeKey) -> (usize, u64);
}

/// Checks a key: not empty, at most [`MAX_KEY_BYTES`].
pub fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() {
        return Err(StateError::InvalidKey("the key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StateError::InvalidKey(format!(
            "the key is {} bytes long; keys are at most {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// The in-process [`StateStore`]: a map of scopes behind one mutex (calls are short and
/// never await).
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    scopes: Mutex<HashMap<ScopeKey, Scope>>,
}

#[derive(Debug, Default)]
struct Scope {
    entries: BTreeMap<String, Entry>,
    /// Bytes of keys and values.
    bytes: u64,
}

fn cost(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl Scope {
    fn live(&self, key: &str, now_ms: u64) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.live(now_ms))
    }

    fn purge_expired(&mut self, now_ms: u64) {
        let mut freed = 0;
        self.entries.retain(|k, e| {
            let keep = e.live(now_ms);
            if !keep {
                freed += cost(k, &e.value);
            }
            keep
        });
        self.bytes -= freed;
    }

    /// Writes `key`, or refuses with [`StateError::Full`] naming the bound it would pass.
    fn write(
        &mut self,
        scope: &ScopeKey,
        key: &str,
        put: Put,
        limits: &StateLimits,
        now_ms: u64,
    ) -> Result<(), StateError> {
        let fits = |s: &Scope| {
            let old = s.entries.get(key);
            let keys = s.entries.len() + usize::from(old.is_none());
            let bytes = s.bytes - old.map_or(0, |e| cost(key, &e.value)) + cost(key, &put.value);
            (keys, bytes)
        };
        let (mut keys, mut bytes) = fits(self);
        if keys > limits.max_keys || bytes > limits.max_bytes {
            self.purge_expired(now_ms);
            (keys, bytes) = fits(self);
        }
        let kind = scope.kind();
        if keys > limits.max_keys {
            return Err(StateError::Full(format!(
                "the {kind} scope holds its most keys ([plugin.state] max_keys = {}): delete keys, or raise max_keys",
                limits.max_keys
            )));
        }
        if bytes > limits.max_bytes {
            return Err(StateError::Full(format!(
                "the write would bring the {kind} scope to {bytes} bytes, past [plugin.state] max_bytes = {}: store less, or raise max_bytes",
                limits.max_bytes
            )));
        }
        let new_cost = cost(key, &put.value);
        let entry = Entry {
            value: put.value,
            expires_at_ms: put.expires_at_ms,
        };
        if let Some(old) = self.entries.insert(key.to_owned(), entry) {
            self.bytes -= cost(key, &old.value);
        }
        self.bytes += new_cost;
        Ok(())
    }
}

impl MemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, scope: &ScopeKey, f: impl FnOnce(&mut Scope) -> R) -> R {
        let mut scopes = self.scopes.lock();
        let s = scopes.entry(scope.clone()).or_default();
        let r = f(s);
        if s.entries.is_empty() {
            scopes.remove(scope);
        }
        r
    }
}

impl StateStore for MemoryStateStore {
    fn get(&self, scope: &ScopeKey, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, StateError> {
        check_key(key)?;
        let scopes = self.scopes.lock();
        Ok(scopes
            .get(scope)
            .and_then(|s| s.live(key, now_ms))
            .map(|e| e.value.clone()))
    }

    fn set(
        &self,
        scope: &ScopeKey,
        key: &str,
        put: Put,
        limits: &StateLimits,
        now_ms: u64,
    ) -> Result<(), StateError> {
        check_key(key)?;
        self.with(scope, |s| s.write(scope, key, put, limits, now_ms))
    }

    fn delete(&self, scope: &ScopeKey, key: &str) -> Result<(), StateError> {
        check_key(key)?;
        self.with(scope, |s| {
            if let Some(old) = s.entries.remove(key) {
                s.bytes -= cost(key, &old.value);
            }
        });
        Ok(())
    }

    fn list_keys(
        &self,
        scope: &ScopeKey,
        after: Option<&str>,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<String>, bool), StateError> {
        let scopes = self.scopes.lock();
        let Some(s) = scopes.get(scope) else {
            return Ok((Vec::new(), false));
        };
        let range = match after {
            Some(a) => s
                .entries
                .range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => s.entries.range::<str, _>(..),
        };
        let mut live = range
            .filter(|(_, e)| e.live(now_ms))
            .map(|(k, _)| k.clone());
        let keys: Vec<String> = live.by_ref().take(limit).collect();
        let more = live.next().is_some();
        Ok((keys, more))
    }

    fn increment(
        &self,
        scope: &ScopeKey,
        key: &str,
        delta: i64,
        limits: &StateLimits,
        now_ms: u64,
    ) -> Result<i64, StateError> {
        check_key(key)?;
        self.with(scope, |s| {
            let (current, expires_at_ms) = match s.live(key, now_ms) {
                None => (0, None),
                Some(e) => {
                    let n = std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|t| t.parse::<i64>().ok())
                        .ok_or_else(|| {
                            StateError::NotANumber(format!(
                                "the value of {key:?} is not a decimal signed 64-bit number"
                            ))
                        })?;
                    (n, e.expires_at_ms)
                }
            };
            let next = current.checked_add(delta).ok_or_else(|| {
                StateError::NotANumber(format!(
                    "{current} + {delta} overflows a signed 64-bit number"
                ))
            })?;
            let put = Put {
                value: next.to_string().into_bytes(),
                expires_at_ms,
            };
            s.write(scope, key, put, limits, now_ms)?;
            Ok(next)
        })
    }

    fn compare_and_swap(
        &self,
        scope: &ScopeKey,
        key: &str,
        old: Option<&[u8]>,
        put: Put,
        limits: &StateLimits,
        now_ms: u64,
    ) -> Result<bool, StateError> {
        check_key(key)?;
        self.with(scope, |s| {
            let current = s.live(key, now_ms).map(|e| e.value.as_slice());
            if current != old {
                return Ok(false);
            }
            s.write(scope, key, put, limits, now_ms)?;
            Ok(true)
        })
    }

    fn clear(&self, scope: &ScopeKey) {
        self.scopes.lock().remove(scope);
    }

    fn clear_plugin(&self, plugin: &str) {
        self.scopes.lock().retain(|k, _| k.plugin != plugin);
    }

    fn export(&self, scope: &ScopeKey, now_ms: u64) -> Vec<(String, Entry)> {
        let scopes = self.scopes.lock();
        scopes.get(scope).map_or_else(Vec::new, |s| {
            s.entries
                .iter()
                .filter(|(_, e)| e.live(now_ms))
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect()
        })
    }

    fn usage(&self, scope: &ScopeKey) -> (usize, u64) {
        let scopes = self.scopes.lock();
        scopes
            .get(scope)
            .map_or((0, 0), |s| (s.entries.len(), s.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: StateLimits = StateLimits {
        max_keys: 3,
        max_bytes: 64,
    };

    fn put(v: &str) -> Put {
        Put {
            value: v.as_bytes().to_vec(),
            expires_at_ms: None,
        }
    }

    #[test]
    fn a_scope_is_held_to_its_keys_and_bytes_and_a_refused_write_changes_nothing() {
        let st = MemoryStateStore::new();
        let s = ScopeKey::session("p", "stream");
        for k in ["a", "b", "c"] {
            st.set(&s, k, put("1"), &LIMITS, 0).unwrap();
        }
        let e = st.set(&s, "d", put("1"), &LIMITS, 0).unwrap_err();
        assert!(e.to_string().contains("max_keys = 3"), "{e}");
        // Overwriting an existing key needs no new key.
        st.set(&s, "a", put("22"), &LIMITS, 0).unwrap();
        let e = st
            .set(&s, "a", put(&"x".repeat(80)), &LIMITS, 0)
            .unwrap_err();
        assert!(e.to_string().contains("max_bytes = 64"), "{e}");
        assert_eq!(st.get(&s, "a", 0).unwrap().unwrap(), b"22");
        assert_eq!(st.usage(&s), (3, 7));
        let e = st.increment(&s, "zz", 1, &LIMITS, 0).unwrap_err();
        assert!(matches!(e, StateError::Full(_)));
    }

    #[test]
    fn expired_keys_vanish_and_free_their_room() {
        let st = MemoryStateStore::new();
        let s = ScopeKey::plugin("p");
        let p = Put {
            value: b"v".to_vec(),
            expires_at_ms: Some(100),
        };
        for k in ["a", "b", "c"] {
            st.set(&s, k, p.clone(), &LIMITS, 0).unwrap();
        }
        assert!(st.get(&s, "a", 99).unwrap().is_some());
        assert!(st.get(&s, "a", 100).unwrap().is_none());
        assert_eq!(st.list_keys(&s, None, 10, 100).unwrap().0.len(), 0);
        st.set(&s, "d", put("1"), &LIMITS, 100).unwrap();
        assert_eq!(st.usage(&s), (1, 2));
    }

    #[test]
    fn increment_and_compare_and_swap_are_exact() {
        let st = MemoryStateStore::new();
        let s = ScopeKey::plugin("p");
        assert_eq!(st.increment(&s, "n", 5, &LIMITS, 0).unwrap(), 5);
        assert_eq!(st.increment(&s, "n", -7, &LIMITS, 0).unwrap(), -2);
        st.set(&s, "t", put("x"), &LIMITS, 0).unwrap();
        assert!(matches!(
            st.increment(&s, "t", 1, &LIMITS, 0),
            Err(StateError::NotANumber(_))
        ));
        assert!(
            !st.compare_and_swap(&s, "c", Some(b"1"), put("2"), &LIMITS, 0)
                .unwrap()
        );
        assert!(
            st.compare_and_swap(&s, "c", None, put("1"), &LIMITS, 0)
                .unwrap()
        );
        assert!(
            !st.compare_and_swap(&s, "c", None, put("9"), &LIMITS, 0)
                .unwrap()
        );
        assert!(
            st.compare_and_swap(&s, "c", Some(b"1"), put("2"), &LIMITS, 0)
                .unwrap()
        );
        assert_eq!(st.get(&s, "c", 0).unwrap().unwrap(), b"2");
    }

    #[test]
    fn keys_page_in_order_and_clearing_a_plugin_clears_its_sessions() {
        let st = MemoryStateStore::new();
        let big = StateLimits::default();
        let (p, s1, other) = (
            ScopeKey::plugin("p"),
            ScopeKey::session("p", "s1"),
            ScopeKey::plugin("q"),
        );
        for i in 0..5 {
            st.set(&p, &format!("k{i}"), put("v"), &big, 0).unwrap();
        }
        let (page, more) = st.list_keys(&p, None, 2, 0).unwrap();
        assert_eq!(
            (page.clone(), more),
            (vec!["k0".to_owned(), "k1".to_owned()], true)
        );
        let (page, more) = st.list_keys(&p, Some("k3"), 2, 0).unwrap();
        assert_eq!((page, more), (vec!["k4".to_owned()], false));
        st.set(&s1, "a", put("v"), &big, 0).unwrap();
        st.set(&other, "a", put("v"), &big, 0).unwrap();
        st.clear_plugin("p");
        assert_eq!(st.usage(&p), (0, 0));
        assert_eq!(st.usage(&s1), (0, 0));
        assert_eq!(st.usage(&other), (1, 2));
        assert!(check_key(&"k".repeat(257)).is_err());
    }
}
