//! The routing table: which plugins get which frames of which sessions.
//!
//! A [`RouteTable`] is immutable; a reload builds a new one and publishes it whole (behind
//! `arc-swap` in `crate::dataplane::registry`). Sessions notice the new table on their next frame or when
//! the reload pokes them, and reconcile their workers against it. A [`PluginEntry`]'s
//! `generation` changes whenever its code or instance settings change: that is what makes a
//! live session swap its instance.

use std::sync::Arc;
use std::time::Duration;

pub use rtms_proto::MediaKinds;

use crate::dataplane::queue::QueuePolicy;
use crate::dataplane::stats::PluginStats;
use crate::sandbox::store::Rates;
use crate::sandbox::{InstanceSpec, PluginCode};

/// Which sessions a plugin serves (products, meeting ids, operators); see
/// `rtms_config::PluginFilter`.
pub use rtms_config::PluginFilter as Filter;

/// Restart and circuit-breaker settings for a plugin whose instances trap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A run this long without a trap resets the backoff.
    pub healthy_reset: Duration,
    /// This many traps within `window` stop the plugin for the session.
    pub max_failures: u32,
    pub window: Duration,
    /// A version that traps this many times within `rollback_window` of being swapped in
    /// is rolled back to the version it replaced.
    pub rollback_traps: u32,
    pub rollback_window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            healthy_reset: Duration::from_secs(10),
            max_failures: 5,
            window: Duration::from_secs(60),
            rollback_traps: 2,
            rollback_window: Duration::from_secs(10),
        }
    }
}

/// One plugin as the pipeline configures it, compiled and ready.
#[derive(Debug)]
pub struct PluginEntry {
    pub name: Arc<str>,
    pub code: Arc<PluginCode>,
    pub spec: Arc<InstanceSpec>,
    /// The kinds of frames it takes (a frame's WIT kind converts with `.into()`).
    pub kinds: MediaKinds,
    pub filter: Filter,
    pub queue_capacity: usize,
    /// What a full queue does, per kind.
    pub on_full: QueuePolicy,
    /// How long a full `block` queue makes the session wait before shedding.
    pub block_timeout: Duration,
    pub batch_max: usize,
    /// How long a partial batch waits for more frames.
    pub batch_wait: Duration,
    /// Byte-rate limits of log lines and outputs, per session.
    pub rates: Rates,
    pub restart: RestartPolicy,
    /// Changes when code or instance settings change; live sessions swap when it does.
    pub generation: u64,
    pub stats: Arc<PluginStats>,
    /// Set by the reload that published this entry in place of another (a new version or
    /// new instance settings): the entry it replaced (kept alive by the reloader for a
    /// rollback) and when. A session that starts after the reload counts its traps towards
    /// the rollback as a session that swapped does.
    pub replaced: std::sync::OnceLock<Replaced>,
}

/// What a reload's entry replaced, and when ([`PluginEntry::replaced`]).
#[derive(Debug, Clone)]
pub struct Replaced {
    pub entry: std::sync::Weak<PluginEntry>,
    pub at: tokio::time::Instant,
}

impl PluginEntry {
    /// What differs from `old`, for logs: the code (`<old hash> -> <new hash>`) and each
    /// instance setting that changed (`memory_mb 64 -> 128`), so a change of settings alone
    /// does not read as the same version on both sides.
    pub fn change_from(&self, old: &PluginEntry) -> String {
        let (a, b) = (&old.spec, &self.spec);
        let mut parts = Vec::new();
        if old.code.hash != self.code.hash {
            parts.push(format!(
                "code {} -> {}",
                old.code.short_hash(),
                self.code.short_hash()
            ));
        } else {
            parts.push(format!("code {} (unchanged)", self.code.short_hash()));
        }
        if a.memory_bytes != b.memory_bytes {
            parts.push(format!(
                "memory_mb {} -> {}",
                a.memory_bytes >> 20,
                b.memory_bytes >> 20
            ));
        }
        if a.call_timeout != b.call_timeout {
            parts.push(format!(
                "call_timeout_ms {} -> {}",
                a.call_timeout.as_millis(),
                b.call_timeout.as_millis()
            ));
        }
        if a.config != b.config {
            parts.push("[plugin.config] changed".to_owned());
        }
        if a.grants != b.grants {
            parts.push("[[plugin.dir]] changed".to_owned());
        }
        if a.resources != b.resources || a.caps != b.caps || a.net.is_some() != b.net.is_some() {
            parts.push("other instance settings changed".to_owned());
        }
        parts.join(", ")
    }

    /// The entry this one replaced, while within `restart.rollback_window` of the reload
    /// that published it.
    pub fn replaced_recently(&self) -> Option<(Arc<PluginEntry>, tokio::time::Instant)> {
        let r = self.replaced.get()?;
        if self.restart.rollback_window.is_zero() || r.at.elapsed() > self.restart.rollback_window {
            return None;
        }
        Some((r.entry.upgrade()?, r.at))
    }
}

impl std::fmt::Debug for PluginCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCode")
            .field("path", &self.path)
            .field("hash", &self.short_hash())
            .finish()
    }
}

/// The compiled pipeline: every enabled plugin, in pipeline order.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Increases with every published table.
    pub version: u64,
    pub plugins: Vec<Arc<PluginEntry>>,
}

impl RouteTable {
    pub fn get(&self, name: &str) -> Option<&Arc<PluginEntry>> {
        self.plugins.iter().find(|p| &*p.name == name)
    }
}
