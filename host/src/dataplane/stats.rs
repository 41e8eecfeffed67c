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

use crate::sandbox::bindings::Frame;
use crate::sandbox::net::{NetEvent, Reason};

/// Counters per kind of frame, indexed in contract order (`rtms_proto::MediaKind as usize`).
#[derive(Debug, Default)]
pub struct ByKind([AtomicU64; 6]);

impl ByKind {
    pub fn add(&self, kind: rtms_proto::MediaKind, n: u64) {
        self.0[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// The non-zero counts, by kind name.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        rtms_proto::MediaKind::ALL
            .into_iter()
            .filter_map(|k| {
                let n = self.0[k as usize].load(Ordering::Relaxed);
                (n > 0).then(|| (k.as_str().to_owned(), n))
            })
            .collect()
    }
}

/// `audio 12, video 3` (for log lines); `none` when empty.
pub fn by_kind_text(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    parts.join(", ")
}

/// How often a (plugin, session) may warn again about frames it keeps losing.
pub const LOSS_WARN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

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

/// A plain counter of [`PluginStats`], as the exposition reads it.
pub type PluginCounter = fn(&PluginStats) -> &AtomicU64;

/// Declares every plain plugin counter once: the field of [`PluginStats`], the field of
/// [`PluginSnapshot`], its line in [`PluginStats::snapshot`] and its family in
/// [`PLUGIN_COUNTERS`] (the Prometheus exposition) all come from the one list below.
macro_rules! plugin_counters {
    ($( $(#[doc = $doc:literal])* $field:ident => $metric:literal, $help:literal; )*) => {
        /// Counters for one plugin, over all its sessions and versions.
        #[derive(Debug, Default)]
        pub struct PluginStats {
            $( $(#[doc = $doc])* pub $field: AtomicU64, )*
            /// `dropped` by the kind of the frame dropped.
            pub dropped_by_kind: ByKind,
            /// Units charged (`budget.charge`), by the `what` the plugin names.
            pub units: UnitsByWhat,
            /// How long each `on-frames` call took, in seconds: one histogram per session,
            /// merged when scraped.
            pub call_seconds: CallSeconds,
            /// Outgoing HTTP requests (`[plugin.net]`).
            pub http: HttpStats,
        }

        /// A snapshot of [`PluginStats`].
        #[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
        pub struct PluginSnapshot {
            $( pub $field: u64, )*
            /// `dropped` by kind (kinds with none left out).
            pub dropped_by_kind: BTreeMap<String, u64>,
            /// Units charged, by `what`.
            pub units: BTreeMap<String, u64>,
        }

        impl PluginStats {
            pub fn snapshot(&self) -> PluginSnapshot {
                PluginSnapshot {
                    $( $field: self.$field.load(Ordering::Relaxed), )*
                    dropped_by_kind: self.dropped_by_kind.snapshot(),
                    units: self.units.snapshot(),
                }
            }
        }

        /// Every plain plugin counter: (metric name, help, field), labelled by `plugin`.
        pub const PLUGIN_COUNTERS: &[(&str, &str, PluginCounter)] = &[
            $( ($metric, $help, |p| &p.$field), )*
        ];
    };
}

plugin_counters! {
    /// Frames routed to the plugin: queued for its worker, or delivered inline.
    routed => "plugin_frames_routed",
        "Frames routed to the plugin: queued, or delivered inline";
    /// Frames an instance returned from `on-frames` for (ok or plugin error).
    delivered => "plugin_frames_delivered", "Frames the plugin returned from on-frames for";
    /// `on-frames` calls made.
    calls => "plugin_batches", "on-frames calls";
    /// Frames delivered straight from the session's task, bypassing the queue and the
    /// worker's wake-up (see `crate::dataplane::worker::WorkerHandle::try_inline`).
    inline => "plugin_frames_inline",
        "Frames delivered on the session's task, bypassing the queue (the worker was idle)";
    /// Of those, calls that had to wait (an epoch tick, I/O) and finished on a task of
    /// their own.
    inline_handoffs => "plugin_inline_handoffs",
        "Inline calls that had to wait and finished on a task of their own";
    /// Moves of a worker off its stream's core thread to the offload runtime, after a slow
    /// call (see `crate::dataplane::offload`).
    offloaded => "plugin_offloaded",
        "Moves of the plugin's workers off their stream's core thread after a slow call";
    /// Moves back to the core once its calls were quick again.
    returned => "plugin_returned",
        "Moves of the plugin's offloaded workers back to their stream's core thread";
    /// Frames dropped to make room in a full queue (kinds its queue policy drops).
    dropped => "plugin_frames_dropped", "Frames dropped by a full drop-oldest queue";
    /// Frames a full `block` queue refused after its block timeout (stuck or restarting
    /// plugin); each is also counted in `dead_lettered`.
    shed => "plugin_frames_shed", "Frames a full block queue refused after its block timeout";
    /// Frames written to the dead-letter file: batches that trapped, frames shed, frames
    /// queued while the plugin could not run.
    dead_lettered => "plugin_frames_dead_lettered", "Frames written to the dead-letter file";
    /// Frames discarded because the plugin's circuit breaker is open for the session.
    discarded => "plugin_frames_discarded",
        "Frames discarded while the plugin's circuit breaker was open";
    /// `err(..)` results returned by the plugin.
    errors => "plugin_errors", "err results the plugin returned";
    /// Traps (panics, limits, deadline).
    traps => "plugin_traps", "Traps (panics, limits, deadline)";
    /// Instances built after a trap.
    restarts => "plugin_restarts", "Instances rebuilt after a trap";
    /// Sessions for which the circuit breaker stopped the plugin.
    breaker_trips => "plugin_breaker_trips",
        "Sessions on which the circuit breaker stopped the plugin";
    /// Versions swapped in on live sessions.
    swaps => "plugin_swaps", "New versions swapped in on live sessions";
    /// Automatic rollbacks of a version that kept trapping after a reload.
    rollbacks => "plugin_rollbacks", "Automatic rollbacks of a version that kept trapping";
    /// Log lines (`host.log`, stdout, stderr) dropped by the log byte-rate limit.
    log_dropped => "plugin_log_dropped", "Log lines dropped by the log byte-rate limit";
    /// Outputs (`host.emit`) dropped by the emit byte-rate limit.
    emit_dropped => "plugin_emit_dropped", "Outputs dropped by the emit byte-rate limit";
    /// Sessions for which the plugin was stopped because a granted directory went over
    /// its quota.
    quota_stops => "plugin_quota_stops",
        "Sessions on which a granted directory went over its quota";
    /// State writes refused: past a bound of their scope (`[plugin.state]`).
    state_refused => "plugin_state_refused",
        "State writes refused: past a bound of their scope ([plugin.state])";
    /// `budget.charge` calls refused: past the session's units cap.
    units_refused => "plugin_units_refused",
        "budget.charge calls refused: past the session's units cap";
    /// `open-at` calls refused past `[plugin.limits] max_open_files`.
    open_files_refused => "plugin_open_files_refused",
        "open-at calls refused past [plugin.limits] max_open_files";
    /// `open-at` calls refused past the process-wide budget (`[runtime]
    /// plugin_open_files`) every plugin's descriptors share.
    descriptors_refused => "plugin_descriptors_refused",
        "open-at calls refused past the process-wide budget [runtime] plugin_open_files";
    /// Filesystem calls refused with `busy` under a granted directory where
    /// `fs_limits::PARKED_MAX` earlier calls never returned (a FIFO, a hung mount).
    parked_refused => "plugin_fs_parked_refused",
        "Filesystem calls refused under a granted directory where earlier calls never returned";
    /// Files, directories and links not created past `[plugin.limits] max_inodes`.
    inodes_refused => "plugin_inodes_refused",
        "Files and directories not created past [plugin.limits] max_inodes";
    /// Symbolic links refused in a grant without `symlinks = true`.
    symlinks_refused => "plugin_symlinks_refused",
        "Symbolic links refused in a grant without symlinks = true";
    /// Calls that trapped on a full resource table (`[plugin.limits] max_resources`).
    resources_exhausted => "plugin_resources_exhausted",
        "Calls that trapped on a full resource table ([plugin.limits] max_resources)";
    /// Sessions that ended with any loss for this plugin (see [`Losses`]).
    sessions_with_losses => "plugin_sessions_with_losses",
        "Sessions that ended with any loss for the plugin";
    /// Fresh instances built only to end a session whose last instance was gone (trapped,
    /// or stopped by the breaker).
    end_instances => "plugin_end_instances",
        "Fresh instances built only to end a session whose instance was gone (trap or breaker)";
}

/// A plugin's outgoing HTTP requests, over all its sessions.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests that passed the allow-list and the budget.
    pub requests: AtomicU64,
    /// Requests refused or cut, by [`Reason`] (in `Reason::ALL` order).
    pub stopped: [AtomicU64; Reason::ALL.len()],
    /// Request body bytes sent.
    pub bytes_out: AtomicU64,
    /// Response body bytes received.
    pub bytes_in: AtomicU64,
}

impl HttpStats {
    pub fn record(&self, event: NetEvent) {
        let (counter, n) = match event {
            NetEvent::Started => (&self.requests, 1),
            NetEvent::Stopped(r) => {
                let i = Reason::ALL.iter().position(|x| *x == r).unwrap_or(0);
                (&self.stopped[i], 1)
            }
            NetEvent::BytesOut(n) => (&self.bytes_out, n),
            NetEvent::BytesIn(n) => (&self.bytes_in, n),
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// How many requests `reason` stopped.
    pub fn stopped(&self, reason: Reason) -> u64 {
        let i = Reason::ALL.iter().position(|x| *x == reason).unwrap_or(0);
        self.stopped[i].load(Ordering::Relaxed)
    }
}

/// Units charged, by `what`. A plugin names its own `what`s, so at most
/// [`UnitsByWhat::MAX_NAMES`] are kept apart; later ones are counted as `other`, which
/// bounds the metric's labels.
#[derive(Debug, Default)]
pub struct UnitsByWhat(Mutex<BTreeMap<String, u64>>);

impl UnitsByWhat {
    pub const MAX_NAMES: usize = 16;

    pub fn add(&self, what: &str, units: u64) {
        let mut m = self.0.lock();
        let key = if m.contains_key(what) || m.len() < Self::MAX_NAMES {
            what
        } else {
            "other"
        };
        let v = m.entry(key.to_owned()).or_default();
        *v = v.saturating_add(units);
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().clone()
    }
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

/// The bounds of [`CallSeconds`]' buckets, in seconds (one more bucket catches the rest).
pub const CALL_BUCKETS: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The durations of one session's calls to one plugin: relaxed atomics only that session's
/// worker writes, so a call takes no lock and shares no cache line with other sessions.
#[derive(Debug, Default)]
pub struct CallTimes {
    buckets: [AtomicU64; CALL_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl CallTimes {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = CALL_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(CALL_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    fn add_to(&self, into: &CallTimes) {
        for (a, b) in into.buckets.iter().zip(&self.buckets) {
            a.fetch_add(b.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        into.count
            .fetch_add(self.count.load(Ordering::Relaxed), Ordering::Relaxed);
        into.sum_ns
            .fetch_add(self.sum_ns.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A plugin's call-duration histogram: the live sessions' [`CallTimes`] and the sum of
/// those that ended, added up when scraped. The lock is taken when a session starts or ends
/// and at a scrape, never per call.
#[derive(Debug, Default)]
pub struct CallSeconds {
    live: Mutex<Vec<Arc<CallTimes>>>,
    ended: CallTimes,
}

impl CallSeconds {
    /// The histogram of a new session; [`CallSeconds::end`] it when the session ends.
    pub fn session(&self) -> Arc<CallTimes> {
        let t = Arc::new(CallTimes::default());
        self.live.lock().push(t.clone());
        t
    }

    /// Folds a session's histogram into the ended sessions'.
    pub fn end(&self, t: &Arc<CallTimes>) {
        let mut live = self.live.lock();
        if let Some(i) = live.iter().position(|l| Arc::ptr_eq(l, t)) {
            live.swap_remove(i);
            t.add_to(&self.ended);
        }
    }

    /// Every session's calls: (sum in seconds, count, per-bucket counts).
    pub fn merged(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let all = CallTimes::default();
        self.ended.add_to(&all);
        for t in self.live.lock().iter() {
            t.add_to(&all);
        }
        let buckets = CALL_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(&all.buckets)
            .map(|(b, n)| (b, n.load(Ordering::Relaxed)))
            .collect();
        let sum = all.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, all.count.load(Ordering::Relaxed), buckets)
    }
}

impl prometheus_client::encoding::EncodeMetric for CallSeconds {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.merged();
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

/// Frames and payload bytes received of one kind.
#[derive(Debug, Default)]
pub struct KindCounts {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
}

/// What one plugin lost on one session; warned about when it starts, summarised when the
/// session ends.
#[derive(Debug, Default)]
pub struct Losses {
    pub shed: AtomicU64,
    pub dropped: AtomicU64,
    pub dropped_by_kind: ByKind,
    pub dead_lettered: AtomicU64,
    pub discarded: AtomicU64,
    pub log_dropped: AtomicU64,
    pub emit_dropped: AtomicU64,
    /// When the last warning about dropped or shed frames was logged.
    last_warning: Mutex<Option<tokio::time::Instant>>,
}

impl Losses {
    /// `None` when nothing was lost; otherwise the counts, for the session-end log line.
    pub fn summary(&self) -> Option<LossSummary> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = LossSummary {
            shed: get(&self.shed),
            dropped: get(&self.dropped),
            dropped_by_kind: self.dropped_by_kind.snapshot(),
            dead_lettered: get(&self.dead_lettered),
            discarded: get(&self.discarded),
            log_dropped: get(&self.log_dropped),
            emit_dropped: get(&self.emit_dropped),
        };
        (s != LossSummary::default()).then_some(s)
    }

    /// Whether a frame lost now should be warned about: the first loss of the session
    /// always is, later ones at most once per [`LOSS_WARN_INTERVAL`] (with the counts so
    /// far), so a plugin that keeps falling behind is reported without flooding the log.
    pub fn warning_due(&self) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = self.last_warning.lock();
        if last.is_some_and(|t| now.duration_since(t) < LOSS_WARN_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// A snapshot of [`Losses`].
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct LossSummary {
    pub shed: u64,
    pub dropped: u64,
    pub dropped_by_kind: BTreeMap<String, u64>,
    pub dead_lettered: u64,
    pub discarded: u64,
    pub log_dropped: u64,
    pub emit_dropped: u64,
}

/// Host-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub frames_in: AtomicU64,
    /// Frames dropped because the stream's fence lapsed (a cluster's lease lost).
    pub frames_fenced: AtomicU64,
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
                .map(|(k, p)| (k.clone(), p.snapshot()))
                .collect(),
        }
    }
}

impl PluginSnapshot {
    /// Whether the plugin lost anything: frames dropped, shed, dead-lettered or discarded,
    /// log lines or outputs over their byte rates.
    pub fn lost_any(&self) -> bool {
        self.dropped
            + self.shed
            + self.dead_lettered
            + self.discarded
            + self.log_dropped
            + self.emit_dropped
            > 0
    }

    /// Logs one warning with what the plugin lost over the host's life, if anything
    /// (at shutdown, and at the end of a replay).
    pub fn warn_losses(&self, plugin: &str) {
        if !self.lost_any() {
            return;
        }
        tracing::warn!(
            plugin = %plugin,
            dropped = self.dropped,
            dropped_kinds = %by_kind_text(&self.dropped_by_kind),
            shed = self.shed,
            dead_lettered = self.dead_lettered,
            discarded = self.discarded,
            log_lines_dropped = self.log_dropped,
            outputs_dropped = self.emit_dropped,
            sessions_with_losses = self.sessions_with_losses,
            "plugin lost data since the host started (dropped: to make room in its queue; shed: its queue stayed full past block_timeout_ms, in the dead-letter file; discarded: while stopped; log lines and outputs: over their byte rates)"
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_events_are_counted_by_reason_and_bytes() {
        let h = HttpStats::default();
        h.record(NetEvent::Started);
        h.record(NetEvent::Stopped(Reason::Rate));
        h.record(NetEvent::Stopped(Reason::Rate));
        h.record(NetEvent::Stopped(Reason::PrivateAddress));
        h.record(NetEvent::BytesIn(7));
        h.record(NetEvent::BytesOut(3));
        assert_eq!(h.requests.load(Ordering::Relaxed), 1);
        assert_eq!(h.stopped(Reason::Rate), 2);
        assert_eq!(h.stopped(Reason::PrivateAddress), 1);
        assert_eq!(h.stopped(Reason::NoGrant), 0);
        assert_eq!(h.bytes_in.load(Ordering::Relaxed), 7);
        assert_eq!(h.bytes_out.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn call_histograms_of_live_and_ended_sessions_add_up_once() {
        use std::time::Duration;
        let c = CallSeconds::default();
        let a = c.session();
        let b = c.session();
        a.observe(Duration::from_micros(5));
        a.observe(Duration::from_millis(3));
        b.observe(Duration::from_secs(20));
        c.end(&a);
        // Ended twice (a worker and its guard): counted once.
        c.end(&a);
        let (sum, count, buckets) = c.merged();
        assert_eq!(count, 3);
        assert!((sum - 20.003_005).abs() < 1e-9, "{sum}");
        assert_eq!(buckets.len(), CALL_BUCKETS.len() + 1);
        assert_eq!(buckets[0], (0.000_01, 1));
        assert_eq!(buckets[8], (0.005, 1));
        assert_eq!(buckets[CALL_BUCKETS.len()], (f64::MAX, 1));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 3);
    }
}
