//! Counters of what the host did: frames in, frames delivered per plugin, drops, plugin
//! errors, traps, restarts, dead letters, reloads.
//!
//! Plain atomics, cheap enough for the frame path. They back the demo's summary, the
//! benchmarks and the tests' assertions that nothing was lost silently; the admin API
//! exposes them. An optional [`BatchHook`] sees every batch a plugin call returned from
//! (the benchmarks time frames end to end with it); unset, it costs one atomic load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use prometheus_client::metrics::histogram::Histogram;
use rtms_proto::MediaKind;
use serde::Serialize;

use crate::bindings::Frame;

/// Called after each `on-frames` call returns, with the session id, the plugin name and the
/// batch the call took. Must be quick: it runs on the worker's task.
#[derive(Clone)]
pub struct BatchHook(pub Arc<BatchFn>);

/// The function a [`BatchHook`] calls: (session, plugin, batch).
pub type BatchFn = dyn Fn(u64, &str, &[Frame]) + Send + Sync;

impl std::fmt::Debug for BatchHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchHook")
    }
}

/// Counters for one plugin, over all its sessions and versions.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Frames routed to the plugin's queues.
    pub routed: AtomicU64,
    /// Frames an instance returned from `on-frames` for (ok or plugin error).
    pub delivered: AtomicU64,
    /// `on-frames` calls made.
    pub calls: AtomicU64,
    /// Frames dropped by a full `drop-oldest` queue.
    pub dropped: AtomicU64,
    /// Frames a full `block` queue refused after its block timeout (stuck or restarting
    /// plugin); each is also counted in `dead_lettered`.
    pub shed: AtomicU64,
    /// Frames written to the dead-letter file: batches that trapped, frames shed, frames
    /// queued while the plugin could not run.
    pub dead_lettered: AtomicU64,
    /// Frames discarded because the plugin's circuit breaker is open for the session.
    pub discarded: AtomicU64,
    /// `err(..)` results returned by the plugin.
    pub errors: AtomicU64,
    pub traps: AtomicU64,
    /// Instances built after a trap.
    pub restarts: AtomicU64,
    /// Sessions for which the circuit breaker stopped the plugin.
    pub breaker_trips: AtomicU64,
    /// Versions swapped in on live sessions.
    pub swaps: AtomicU64,
    /// Automatic rollbacks of a version that kept trapping after a reload.
    pub rollbacks: AtomicU64,
    /// Log lines (`host.log`, stdout, stderr) dropped by the log byte-rate limit.
    pub log_dropped: AtomicU64,
    /// Outputs (`host.emit`) dropped by the emit byte-rate limit.
    pub emit_dropped: AtomicU64,
    /// Sessions for which the plugin was stopped because a granted directory went over
    /// its quota.
    pub quota_stops: AtomicU64,
    /// Sessions that ended with any loss for this plugin (see [`Losses`]).
    pub sessions_with_losses: AtomicU64,
    /// How long each `on-frames` call took, in seconds.
    pub call_seconds: Seconds,
}

/// A latency histogram in seconds, with buckets from 10 µs to 10 s.
#[derive(Debug)]
pub struct Seconds(pub Histogram);

impl Default for Seconds {
    fn default() -> Self {
        Self::with_buckets(&[
            0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
            0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
    }
}

impl Seconds {
    pub fn with_buckets(buckets: &[f64]) -> Self {
        Self(Histogram::new(buckets.iter().copied()))
    }

    pub fn observe(&self, d: std::time::Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

/// Frames and payload bytes received of one kind.
#[derive(Debug, Default)]
pub struct KindCounts {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
}

/// What one plugin lost on one session; summarised when the session ends.
#[derive(Debug, Default)]
pub struct Losses {
    pub shed: AtomicU64,
    pub dropped: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub discarded: AtomicU64,
    pub log_dropped: AtomicU64,
    pub emit_dropped: AtomicU64,
}

impl Losses {
    /// `None` when nothing was lost; otherwise the counts, for the session-end log line.
    pub fn summary(&self) -> Option<LossSummary> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = LossSummary {
            shed: get(&self.shed),
            dropped: get(&self.dropped),
            dead_lettered: get(&self.dead_lettered),
            discarded: get(&self.discarded),
            log_dropped: get(&self.log_dropped),
            emit_dropped: get(&self.emit_dropped),
        };
        (s != LossSummary::default()).then_some(s)
    }
}

/// A snapshot of [`Losses`].
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct LossSummary {
    pub shed: u64,
    pub dropped: u64,
    pub dead_lettered: u64,
    pub discarded: u64,
    pub log_dropped: u64,
    pub emit_dropped: u64,
}

/// Host-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub frames_in: AtomicU64,
    pub sessions_started: AtomicU64,
    pub sessions_ended: AtomicU64,
    pub reloads_applied: AtomicU64,
    pub reloads_refused: AtomicU64,
    /// Reloads that found nothing to change.
    pub reloads_unchanged: AtomicU64,
    /// Frames and bytes received, by kind (indexed as [`MediaKind::ALL`]).
    pub kinds: [KindCounts; 6],
    plugins: Mutex<BTreeMap<String, Arc<PluginStats>>>,
    batch_hook: OnceLock<BatchHook>,
}

impl Metrics {
    /// Installs the hook that sees every returned batch. Only the first call takes effect;
    /// returns whether this one did.
    pub fn set_batch_hook(&self, hook: BatchHook) -> bool {
        self.batch_hook.set(hook).is_ok()
    }

    /// The installed batch hook, if any.
    pub fn batch_hook(&self) -> Option<&BatchHook> {
        self.batch_hook.get()
    }

    /// Counts one received frame of `kind` with `bytes` of payload and text.
    pub fn count_frame(&self, kind: MediaKind, bytes: usize) {
        let i = MediaKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let k = &self.kinds[i];
        k.frames.fetch_add(1, Ordering::Relaxed);
        k.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Every plugin's counters, by name.
    pub fn plugins(&self) -> Vec<(String, Arc<PluginStats>)> {
        self.plugins
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn plugin(&self, name: &str) -> Arc<PluginStats> {
        self.plugins
            .lock()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            frames_in: get(&self.frames_in),
            sessions_started: get(&self.sessions_started),
            sessions_ended: get(&self.sessions_ended),
            reloads_applied: get(&self.reloads_applied),
            reloads_refused: get(&self.reloads_refused),
            plugins: self
                .plugins
                .lock()
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        PluginSnapshot {
                            routed: get(&p.routed),
                            delivered: get(&p.delivered),
                            calls: get(&p.calls),
                            dropped: get(&p.dropped),
                            shed: get(&p.shed),
                            dead_lettered: get(&p.dead_lettered),
                            discarded: get(&p.discarded),
                            errors: get(&p.errors),
                            traps: get(&p.traps),
                            restarts: get(&p.restarts),
                            breaker_trips: get(&p.breaker_trips),
                            swaps: get(&p.swaps),
                            rollbacks: get(&p.rollbacks),
                            log_dropped: get(&p.log_dropped),
                            emit_dropped: get(&p.emit_dropped),
                            quota_stops: get(&p.quota_stops),
                            sessions_with_losses: get(&p.sessions_with_losses),
                        },
                    )
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PluginSnapshot {
    pub routed: u64,
    pub delivered: u64,
    pub calls: u64,
    pub dropped: u64,
    pub shed: u64,
    pub dead_lettered: u64,
    pub discarded: u64,
    pub errors: u64,
    pub traps: u64,
    pub restarts: u64,
    pub breaker_trips: u64,
    pub swaps: u64,
    pub rollbacks: u64,
    pub log_dropped: u64,
    pub emit_dropped: u64,
    pub quota_stops: u64,
    pub sessions_with_losses: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub frames_in: u64,
    pub sessions_started: u64,
    pub sessions_ended: u64,
    pub reloads_applied: u64,
    pub reloads_refused: u64,
    pub plugins: BTreeMap<String, PluginSnapshot>,
}
