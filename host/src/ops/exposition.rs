//! The Prometheus exposition (`GET /metrics` on the admin listener).
//!
//! Two sources, one registry:
//! - events the client and the ingress report through their observer seams
//!   ([`rtms_client::Observer`], [`IngressHandler::observe`](rtms_client::IngressHandler::observe))
//!   are counted here, in `prometheus-client` families whose labels come from small fixed
//!   sets (never a meeting or stream id);
//! - the host's own atomics ([`Metrics`], [`PluginStats`](crate::dataplane::stats::PluginStats), the
//!   ingress and output counters) and the live sessions are read at scrape time by
//!   [`HostCollector`], so the frame path pays nothing for the exposition.
//!
//! Per-plugin series carry a `plugin` label: plugin names come from pipeline.toml, so
//! their number is the operator's. Every metric name starts with `rtms_`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rtms_client::listener::{Close, ConnStats};
use rtms_client::{IngressStats, Scope, WebhookOutcome, WebhookSeen};
use rtms_proto::{MediaKind, Product};

use crate::dataplane::stats::{Metrics, PLUGIN_COUNTERS, PluginStats, Seconds};
use crate::outputs::OutputStats;
use crate::outputs::stats::{DropReason, SinkStats};

/// The content type of the exposition (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// The event names a webhook can carry that get their own label value; any other is
/// counted as `other`, so a sender cannot grow the label set.
const EVENTS: [&str; 18] = [
    "endpoint.url_validation",
    "meeting.rtms_started",
    "meeting.rtms_stopped",
    "meeting.rtms_interrupted",
    "webinar.rtms_started",
    "webinar.rtms_stopped",
    "webinar.rtms_interrupted",
    "session.rtms_started",
    "session.rtms_stopped",
    "session.rtms_interrupted",
    "contact_center.voice_rtms_started",
    "contact_center.voice_rtms_stopped",
    "contact_center.voice_rtms_interrupted",
    "meeting.rtms_concurrency_limited",
    "meeting.rtms_concurrency_near_limit",
    "rtms.concurrency_limited",
    "rtms.concurrency_near_limit",
    "rtms.start_failed",
];

fn event_label(event: Option<&str>) -> &'static str {
    match event {
        None => "unknown",
        Some(e) => EVENTS.iter().find(|k| **k == e).copied().unwrap_or("other"),
    }
}

/// Events counted as they happen.
pub struct Telemetry {
    webhooks: Family<Labels2, Counter>,
    webhook_delay: Histogram,
    attempts: Family<Labels1, Counter>,
    attempt_failures: Family<Labels2, Counter>,
    reconnections: Family<Labels2, Counter>,
    give_ups: Counter,
    refusals: Family<Labels2, Counter>,
    notices: Family<Labels1, Counter>,
    undecodable: Counter,
    keepalive_rtt: Histogram,
    first_frame: Histogram,
    sessions_stopped_by_admin: Counter,
    video_subscriptions: Family<Labels2, Counter>,
}

/// Reconnection causes [`rtms_client::Observer::reconnecting`] reports.
const CAUSES: [&str; 7] = [
    "signaling_lost",
    "media_lost",
    "media_interrupted",
    "interrupted_webhook",
    "connect_failed",
    "failover",
    "other",
];

impl Default for Telemetry {
    fn default() -> Self {
        let t = Self::empty();
        // Series exist at zero from the start, so rates and alerts work before the first
        // event of a kind.
        for scope in [Scope::Full, Scope::Media] {
            drop(t.attempts.get_or_create(&[("scope", scope.as_str())]));
            for d in ["true", "false"] {
                drop(
                    t.attempt_failures
                        .get_or_create(&[("scope", scope.as_str()), ("duplicate", d)]),
                );
            }
            for cause in CAUSES {
                drop(
                    t.reconnections
                        .get_or_create(&[("scope", scope.as_str()), ("cause", cause)]),
                );
            }
        }
        for event in EVENTS {
            for outcome in [WebhookOutcome::Accepted, WebhookOutcome::Duplicate] {
                drop(
                    t.webhooks
                        .get_or_create(&[("event", event), ("outcome", outcome.as_str())]),
                );
            }
        }
        for kind in rtms_proto::webhook::NoticeKind::ALL {
            drop(t.notices.get_or_create(&[("kind", kind.as_str())]));
        }
        for outcome in [WebhookOutcome::Unauthorized, WebhookOutcome::BadRequest] {
            drop(
                t.webhooks
                    .get_or_create(&[("event", "unknown"), ("outcome", outcome.as_str())]),
            );
        }
        t
    }
}

impl Telemetry {
    fn empty() -> Self {
        Self {
            webhooks: Family::default(),
            webhook_delay: Histogram::new([0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
            attempts: Family::default(),
            attempt_failures: Family::default(),
            reconnections: Family::default(),
            give_ups: Counter::default(),
            refusals: Family::default(),
            notices: Family::default(),
            undecodable: Counter::default(),
            keepalive_rtt: Seconds::default().0,
            first_frame: Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            sessions_stopped_by_admin: Counter::default(),
            video_subscriptions: Family::default(),
        }
    }
}

impl Telemetry {
    /// Counts one webhook request.
    pub fn webhook(&self, seen: WebhookSeen<'_>) {
        self.webhooks
            .get_or_create(&[
                ("event", event_label(seen.event)),
                ("outcome", seen.outcome.as_str()),
            ])
            .inc();
        if let Some(d) = seen.delay
            && !matches!(
                seen.outcome,
                WebhookOutcome::Unauthorized | WebhookOutcome::BadRequest
            )
        {
            self.webhook_delay.observe(d.as_secs_f64());
        }
    }

    /// Counts one concurrency notice (de-duplicated).
    pub fn notice(&self, kind: rtms_proto::webhook::NoticeKind) {
        self.notices.get_or_create(&[("kind", kind.as_str())]).inc();
    }

    /// Counts a stream stopped through the admin API.
    pub fn admin_stop(&self) {
        self.sessions_stopped_by_admin.inc();
    }
}

impl rtms_client::Observer for Telemetry {
    fn attempt(&self, scope: Scope) {
        self.attempts
            .get_or_create(&[("scope", scope.as_str())])
            .inc();
    }

    fn attempt_failed(&self, scope: Scope, duplicate: bool) {
        let duplicate = if duplicate { "true" } else { "false" };
        self.attempt_failures
            .get_or_create(&[("scope", scope.as_str()), ("duplicate", duplicate)])
            .inc();
    }

    fn reconnecting(&self, scope: Scope, cause: &'static str) {
        self.reconnections
            .get_or_create(&[("scope", scope.as_str()), ("cause", cause)])
            .inc();
    }

    fn gave_up(&self) {
        self.give_ups.inc();
    }

    fn undecodable(&self) {
        self.undecodable.inc();
    }

    fn refusal(&self, what: &'static str, status: &'static str) {
        self.refusals
            .get_or_create(&[("what", what), ("status", status)])
            .inc();
    }

    fn keepalive_rtt(&self, rtt: Duration) {
        self.keepalive_rtt.observe(rtt.as_secs_f64());
    }

    fn first_frame(&self, since_start: Duration) {
        self.first_frame.observe(since_start.as_secs_f64());
    }

    fn video_subscription(&self, subscribe: bool, status: u32) {
        let action = if subscribe {
            "subscribe"
        } else {
            "unsubscribe"
        };
        let status = rtms_proto::codes::status::name(status);
        self.video_subscriptions
            .get_or_create(&[("action", action), ("status", status)])
            .inc();
    }
}

/// One live stream as the collector counts it.
pub struct StreamState {
    pub product: Product,
    pub state: &'static str,
}

/// What the collector reads at scrape time.
pub struct Sources {
    pub metrics: Arc<Metrics>,
    pub ingress: Arc<IngressStats>,
    /// The admin listener's connections.
    pub admin: Arc<ConnStats>,
    pub outputs: Arc<OutputStats>,
    /// The live tap (events its subscribers lost).
    pub tap: Arc<crate::outputs::tap::TapHub>,
    /// Server-side Zoom App requests refused.
    pub zoom_app_refused: Arc<AtomicU64>,
    /// Failed attempts of the event WebSocket intake (no token, no connection).
    pub event_ws_failures: Arc<AtomicU64>,
    /// The client's streams with their state.
    pub streams: Box<dyn Fn() -> Vec<StreamState> + Send + Sync>,
    /// Frames waiting in each plugin's queues, summed over sessions.
    pub queue_depths: Box<dyn Fn() -> Vec<(Arc<str>, usize)> + Send + Sync>,
    /// Whether the host is ready (see `/readyz`).
    pub ready: Box<dyn Fn() -> bool + Send + Sync>,
    /// The process-wide budget of plugins' descriptors.
    pub descriptors: crate::sandbox::descriptors::Descriptors,
    /// The plugin instance pool (`[runtime] pool`); `None` when it is off.
    pub pool: Option<Arc<crate::sandbox::pool::Pool>>,
    /// A cluster host's counters and gauges (`[cluster]`).
    pub cluster: Option<Box<dyn Fn() -> ClusterMetrics + Send + Sync>>,
    /// Each core thread's live and placed streams, in core order (none without cores).
    pub cores: Box<dyn Fn() -> Vec<crate::dataplane::cores::CoreCounts> + Send + Sync>,
}

/// A cluster host's numbers, read on each scrape: `(name, help, value)` each, named
/// without the `rtms_cluster_` prefix.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    pub counters: Vec<(&'static str, &'static str, u64)>,
    pub gauges: Vec<(&'static str, &'static str, i64)>,
}

/// Reads the host's atomics and live state on each scrape.
pub struct HostCollector(Arc<Sources>);

impl std::fmt::Debug for HostCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostCollector")
    }
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The connection families of both listeners: open, accepted, closed by reason.
fn listener_families(enc: &mut DescriptorEncoder<'_>, s: &Sources) -> Result<(), std::fmt::Error> {
    let both = [("webhook", &*s.ingress.listener), ("admin", &*s.admin)];
    gauges(
        enc,
        "listener_connections_open",
        "Connections open now, by listener",
        both.map(|(l, c)| ([("listener", l)], get(&c.open) as i64)),
    )?;
    counters(
        enc,
        "listener_accept_errors",
        "Failed accepts (usually out of file descriptors), by listener",
        both.map(|(l, c)| ([("listener", l)], get(&c.accept_errors))),
    )?;
    counters(
        enc,
        "listener_connections_closed",
        "Connections closed, by listener and reason (evicted, per_peer_limit, header_timeout, header_too_large, body_timeout, tls_failure...)",
        both.iter().flat_map(|(l, c)| {
            c.closed_by_reason()
                .map(move |(r, n)| ([("listener", *l), ("reason", r.as_str())], n))
        }),
    )
}

/// Writes one counter family: `(labels, value)` pairs.
fn counters<L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The plugins' outgoing HTTP requests: started, stopped by reason, bytes each way.
fn encode_plugin_http(
    enc: &mut DescriptorEncoder<'_>,
    plugins: &[(String, Arc<crate::dataplane::stats::PluginStats>)],
) -> Result<(), std::fmt::Error> {
    use crate::sandbox::net::Reason;
    let per = |f: fn(&crate::dataplane::stats::HttpStats) -> &AtomicU64| {
        plugins
            .iter()
            .map(move |(n, p)| -> (PluginLabel, u64) { ([("plugin", n.clone())], get(f(&p.http))) })
    };
    counters(
        enc,
        "plugin_http_requests",
        "Outgoing HTTP requests that passed the allow-list and the budget",
        per(|h| &h.requests),
    )?;
    counters(
        enc,
        "plugin_http_stopped",
        "Outgoing HTTP requests and WebSockets refused (no_grant, not_listed, ip_literal, private_address, concurrency, rate, descriptors) or cut (timeout, too_large, buffer_full)",
        plugins.iter().flat_map(|(n, p)| {
            Reason::ALL.into_iter().filter_map(move |r| {
                let v = p.http.stopped(r);
                (v > 0).then(|| {
                    (
                        [("plugin", n.clone()), ("reason", r.as_str().to_owned())],
                        v,
                    )
                })
            })
        }),
    )?;
    counters(
        enc,
        "plugin_http_bytes_out",
        "Request body bytes plugins sent",
        per(|h| &h.bytes_out),
    )?;
    counters(
        enc,
        "plugin_http_bytes_in",
        "Response body bytes plugins received",
        per(|h| &h.bytes_in),
    )
}

/// Writes one gauge family.
fn gauges<L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

type PluginLabel = [(&'static str, String); 1];

/// No labels.
const NONE: [(&str, &str); 0] = [];

impl Collector for HostCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &*self.0;
        encode_sessions(&mut enc, s)?;
        encode_intake(&mut enc, s)?;
        self.encode_outputs(&mut enc, s)?;
        let plugins = s.metrics.plugins();
        encode_plugin_counters(&mut enc, &plugins)?;
        encode_plugin_http(&mut enc, &plugins)?;
        encode_descriptors(&mut enc, s)?;
        encode_pool(&mut enc, s)?;
        encode_plugin_queues(&mut enc, s, &plugins)?;
        encode_cores(&mut enc, s)?;
        encode_cluster(&mut enc, s)
    }
}

/// The streams of each core thread: running now, and placed there since the start.
fn encode_cores(enc: &mut DescriptorEncoder<'_>, s: &Sources) -> Result<(), std::fmt::Error> {
    let cores = (s.cores)();
    let label = |i: usize| [("core", i.to_string())];
    gauges(
        enc,
        "core_streams",
        "Streams running on each core thread ([runtime] threads)",
        cores
            .iter()
            .enumerate()
            .map(|(i, c)| (label(i), i64::try_from(c.live).unwrap_or(i64::MAX))),
    )?;
    counters(
        enc,
        "core_streams_placed",
        "Streams placed on each core thread since the start (each on the core with the fewest)",
        cores.iter().enumerate().map(|(i, c)| (label(i), c.placed)),
    )
}

/// The plugins' descriptor budget: held now, and the budget.
fn encode_descriptors(enc: &mut DescriptorEncoder<'_>, s: &Sources) -> Result<(), std::fmt::Error> {
    let d = &s.descriptors;
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    gauges(
        enc,
        "plugin_descriptors",
        "Descriptors plugins hold (files opened with open-at, outgoing HTTP connections, WebSockets), all plugins and sessions together",
        [(NONE, n(d.in_use()))],
    )?;
    gauges(
        enc,
        "plugin_descriptors_limit",
        "The process-wide budget of plugins' descriptors ([runtime] plugin_open_files)",
        [(NONE, n(d.limit()))],
    )
}

/// The plugin instance pool: slots in use, its size, and the instances it refused.
fn encode_pool(enc: &mut DescriptorEncoder<'_>, s: &Sources) -> Result<(), std::fmt::Error> {
    let Some(pool) = &s.pool else {
        return Ok(());
    };
    let u = pool.usage();
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauges(
        enc,
        "plugin_pool_instances",
        "Plugin instances allocated from the instance pool now",
        [(NONE, n(u.instances))],
    )?;
    gauges(
        enc,
        "plugin_pool_instances_limit",
        "Plugin instances the pool holds ([runtime] pool_instances, or sized from rtms.max_streams x the enabled plugins)",
        [(NONE, n(u.instances_limit))],
    )?;
    counters(
        enc,
        "plugin_pool_exhausted",
        "Plugin instantiations and calls refused because the instance pool was full",
        [(NONE, u.exhausted)],
    )
}

/// A cluster host's numbers, and the frames its lapsed fences dropped.
fn encode_cluster(enc: &mut DescriptorEncoder<'_>, s: &Sources) -> Result<(), std::fmt::Error> {
    let Some(read) = &s.cluster else {
        return Ok(());
    };
    counters(
        enc,
        "cluster_frames_fenced",
        "Frames dropped because this host's lease on their stream lapsed",
        [(NONE, get(&s.metrics.frames_fenced))],
    )?;
    let m = read();
    for (name, help, v) in m.counters {
        counters(enc, &format!("cluster_{name}"), help, [(NONE, v)])?;
    }
    for (name, help, v) in m.gauges {
        gauges(enc, &format!("cluster_{name}"), help, [(NONE, v)])?;
    }
    Ok(())
}

/// Readiness and the sessions by product and state.
fn encode_sessions(enc: &mut DescriptorEncoder<'_>, s: &Sources) -> Result<(), std::fmt::Error> {
    let m = &*s.metrics;
    gauges(
        enc,
        "ready",
        "1 when the pipeline is loaded, every component compiled and the webhook listener up; 0 while starting or shutting down",
        [(NONE, i64::from((s.ready)()))],
    )?;
    let streams = (s.streams)();
    let mut rows: Vec<(Labels2, i64)> = Vec::new();
    for st in &streams {
        let key = [("product", st.product.as_str()), ("state", st.state)];
        match rows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => rows.push((key, 1)),
        }
    }
    for p in Product::ALL {
        if !rows.iter().any(|(k, _)| k[0].1 == p.as_str()) {
            rows.push(([("product", p.as_str()), ("state", "streaming")], 0));
        }
    }
    gauges(
        enc,
        "sessions",
        "Live RTMS streams by product and connection state",
        rows,
    )?;
    counters(
        enc,
        "sessions_opened",
        "Host sessions opened (a stream's first successful handshake)",
        [(NONE, get(&m.sessions_started))],
    )?;
    counters(
        enc,
        "sessions_ended",
        "Host sessions ended",
        [(NONE, get(&m.sessions_ended))],
    )
}

/// Frames received by kind, the webhook ingress's refusals below the event level, reloads.
fn encode_intake(enc: &mut DescriptorEncoder<'_>, s: &Sources) -> Result<(), std::fmt::Error> {
    let m = &*s.metrics;
    counters(
        enc,
        "frames_received",
        "Frames received from Zoom, by kind",
        MediaKind::ALL
            .iter()
            .zip(&m.kinds)
            .map(|(k, c)| ([("kind", k.as_str())], get(&c.frames))),
    )?;
    counters(
        enc,
        "frame_bytes_received",
        "Payload and text bytes received from Zoom, by kind",
        MediaKind::ALL
            .iter()
            .zip(&m.kinds)
            .map(|(k, c)| ([("kind", k.as_str())], get(&c.bytes))),
    )?;
    let i = &*s.ingress;
    counters(
        enc,
        "ingress_connections",
        "Connections accepted by the webhook listener",
        [(NONE, get(&i.listener.accepted))],
    )?;
    listener_families(enc, s)?;
    counters(
        enc,
        "ingress_refusals",
        "Webhook requests or connections refused before an event was read, by reason",
        [
            ([("reason", "evicted")], i.listener.closed(Close::Evicted)),
            ([("reason", "accept_error")], get(&i.listener.accept_errors)),
            ([("reason", "tls_failure")], i.listener.closed(Close::Tls)),
            ([("reason", "body_timeout")], get(&i.body_timeouts)),
            ([("reason", "not_found")], get(&i.not_found)),
            ([("reason", "too_large")], get(&i.too_large)),
        ],
    )?;
    counters(
        enc,
        "reloads",
        "Pipeline reloads by outcome",
        [
            ([("outcome", "applied")], get(&m.reloads_applied)),
            ([("outcome", "refused")], get(&m.reloads_refused)),
            ([("outcome", "unchanged")], get(&m.reloads_unchanged)),
        ],
    )
}

/// Every plain plugin counter ([`PLUGIN_COUNTERS`]), then the ones labelled by kind and
/// by what.
fn encode_plugin_counters(
    enc: &mut DescriptorEncoder<'_>,
    plugins: &[(String, Arc<PluginStats>)],
) -> Result<(), std::fmt::Error> {
    for (name, help, f) in PLUGIN_COUNTERS {
        let rows = plugins
            .iter()
            .map(|(n, p)| -> (PluginLabel, u64) { ([("plugin", n.clone())], get(f(p))) });
        counters(enc, name, help, rows)?;
    }
    counters(
        enc,
        "plugin_frames_dropped_by_kind",
        "Frames dropped by a full queue's drop-oldest policy, by kind",
        plugins.iter().flat_map(|(n, p)| {
            p.dropped_by_kind
                .snapshot()
                .into_iter()
                .map(move |(kind, v)| ([("plugin", n.clone()), ("kind", kind)], v))
        }),
    )?;
    counters(
        enc,
        "plugin_units",
        "Units the plugin charged to its sessions' budgets (budget.charge), by what it names (16 names at most, then other)",
        plugins.iter().flat_map(|(n, p)| {
            p.units
                .snapshot()
                .into_iter()
                .map(move |(what, v)| ([("plugin", n.clone()), ("what", what)], v))
        }),
    )
}

/// Frames waiting in each plugin's queues, and how long its calls took.
fn encode_plugin_queues(
    enc: &mut DescriptorEncoder<'_>,
    s: &Sources,
    plugins: &[(String, Arc<PluginStats>)],
) -> Result<(), std::fmt::Error> {
    let mut depth: Vec<(PluginLabel, i64)> = plugins
        .iter()
        .map(|(n, _)| ([("plugin", n.clone())], 0))
        .collect();
    for (name, n) in (s.queue_depths)() {
        if let Some((_, d)) = depth.iter_mut().find(|(l, _)| *l[0].1 == *name) {
            *d += n as i64;
        }
    }
    gauges(
        enc,
        "plugin_queue_depth",
        "Frames waiting in the plugin's queues, over all sessions",
        depth,
    )?;
    let mut calls = enc.encode_descriptor(
        "plugin_call_seconds",
        "How long each on-frames call took",
        None,
        MetricType::Histogram,
    )?;
    for (n, p) in plugins {
        let labels: PluginLabel = [("plugin", n.clone())];
        p.call_seconds.encode(calls.encode_family(&labels)?)?;
    }
    Ok(())
}

impl HostCollector {
    /// Outputs emitted and dropped, the output queue, the Zoom App's and the event
    /// WebSocket's failures, the tap's losses, and the sinks.
    fn encode_outputs(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        s: &Sources,
    ) -> Result<(), std::fmt::Error> {
        let o = &*s.outputs;
        counters(
            enc,
            "outputs_emitted",
            "Outputs plugins emitted",
            [(NONE, get(&o.emitted))],
        )?;
        counters(
            enc,
            "outputs_dropped",
            "Outputs dropped before the sinks, by reason: queue_bytes (output_queue_mb held), queue_full (65,536 records held), closed (shutting down)",
            [
                DropReason::QueueBytes,
                DropReason::QueueFull,
                DropReason::Closed,
            ]
            .map(|r| ([("reason", r.as_str())], o.emit_drops.get(r))),
        )?;
        gauges(
            enc,
            "output_queue_bytes",
            "Bytes of outputs waiting for the dispatcher",
            [(NONE, o.queue.held() as i64)],
        )?;
        gauges(
            enc,
            "output_queue_limit_bytes",
            "The byte bound of the output queue (runtime.output_queue_mb)",
            [(NONE, o.queue.max as i64)],
        )?;
        counters(
            enc,
            "zoom_app_refusals",
            "Server-side Zoom App requests refused: no app context, one Zoom did not seal, expired or too old, replayed, over its meeting's rate, not the host for stop/pause/resume, or not in a meeting",
            [(NONE, get(&s.zoom_app_refused))],
        )?;
        counters(
            enc,
            "event_ws_failures",
            "Event WebSocket connection attempts that failed: no OAuth token, refused, or timed out (each is retried with backoff)",
            [(NONE, get(&s.event_ws_failures))],
        )?;
        counters(
            enc,
            "tap_events_lost",
            "Events tap subscribers (rtms-host tap, the dashboard) lost by falling behind",
            [(NONE, s.tap.lagged())],
        )?;
        self.encode_sinks(enc, o)?;
        gauges(
            enc,
            "tap_bytes",
            "Bytes of events the live tap holds for its subscribers (bounded by runtime.tap_mb)",
            [(NONE, s.tap.held_bytes() as i64)],
        )?;
        counters(
            enc,
            "tap_outputs_elided",
            "Outputs the tap carried without their data because it was full in bytes",
            [(NONE, s.tap.elided())],
        )
    }

    /// The sinks' families, each labelled with `sink` (`<type>-<index>`, never a URL).
    fn encode_sinks(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        o: &OutputStats,
    ) -> Result<(), std::fmt::Error> {
        let label = |s: &SinkStats| s.label.clone();
        counters(
            enc,
            "sink_deliveries",
            "Outputs delivered by the sinks",
            [(NONE, get(&o.delivered))],
        )?;
        counters(
            enc,
            "sink_failures",
            "Outputs a sink dropped (its queue full) or failed to deliver",
            [(NONE, get(&o.sink_failures))],
        )?;
        counters(
            enc,
            "sink_delivered",
            "Outputs delivered, by sink",
            o.sinks
                .iter()
                .map(|s| ([("sink", label(s))], get(&s.delivered))),
        )?;
        counters(
            enc,
            "sink_drops",
            "Outputs a sink dropped, by sink and reason: queue_bytes (its queue_mb held), queue_full (16,384 records held), failed (not delivered after its retries)",
            o.sinks.iter().flat_map(|s| {
                [
                    DropReason::QueueBytes,
                    DropReason::QueueFull,
                    DropReason::Failed,
                ]
                .map(|r| {
                    (
                        [("sink", label(s)), ("reason", r.as_str().to_owned())],
                        s.drops.get(r),
                    )
                })
            }),
        )?;
        counters(
            enc,
            "sink_retries",
            "HTTP sink attempts after a failed one, by sink",
            o.sinks
                .iter()
                .map(|s| ([("sink", label(s))], get(&s.retries))),
        )?;
        gauges(
            enc,
            "sink_queue_bytes",
            "Bytes of outputs waiting for a sink",
            o.sinks
                .iter()
                .map(|s| ([("sink", label(s))], s.budget.held() as i64)),
        )?;
        gauges(
            enc,
            "sink_queue_limit_bytes",
            "The byte bound of a sink's queue (its queue_mb)",
            o.sinks
                .iter()
                .map(|s| ([("sink", label(s))], s.budget.max as i64)),
        )?;
        Ok(())
    }
}

/// Builds the registry: the event families of `telemetry` and the collector over `sources`.
pub fn registry(telemetry: &Telemetry, sources: Arc<Sources>) -> Registry {
    let mut r = Registry::with_prefix("rtms");
    let t = telemetry;
    r.register(
        "webhooks",
        "Webhook requests by event and outcome",
        t.webhooks.clone(),
    );
    r.register(
        "webhook_delay_seconds",
        "Time from Zoom's x-zm-request-timestamp (whole seconds) to the host reading the webhook",
        t.webhook_delay.clone(),
    );
    r.register(
        "connection_attempts",
        "Connection attempts by scope (full: signaling and media; media: media only)",
        t.attempts.clone(),
    );
    r.register(
        "connection_failures",
        "Failed connection attempts by scope, and whether the server refused a duplicate",
        t.attempt_failures.clone(),
    );
    r.register(
        "reconnections",
        "Back-offs before reopening sockets, by scope and cause",
        t.reconnections.clone(),
    );
    r.register(
        "give_ups",
        "Streams that spent every connection attempt and waited for a new started webhook",
        t.give_ups.clone(),
    );
    r.register(
        "zoom_refusals",
        "Requests Zoom refused with a status code, by request (signaling or media handshake, stream_close) and the code's name in Zoom's GA table (TIMEOUT: a stream_close left unanswered)",
        t.refusals.clone(),
    );
    r.register(
        "undecodable_messages",
        "Messages from Zoom's sockets that could not be decoded and were skipped (not JSON, a missing field, bad base64, a content.length that does not match the data)",
        t.undecodable.clone(),
    );
    r.register(
        "concurrency_notices",
        "Zoom's concurrency notices (webhooks and event WebSocket, de-duplicated) by kind: concurrency_limited, concurrency_near_limit, start_failed",
        t.notices.clone(),
    );
    r.register(
        "keepalive_rtt_seconds",
        "Round trip of the WebSocket ping on the signaling socket (rtms.ws_ping = true)",
        t.keepalive_rtt.clone(),
    );
    r.register(
        "first_frame_seconds",
        "Time from a stream's started webhook to its first frame",
        t.first_frame.clone(),
    );
    r.register(
        "sessions_stopped_by_admin",
        "Streams stopped through the admin API",
        t.sessions_stopped_by_admin.clone(),
    );
    r.register(
        "video_subscriptions",
        "Zoom's answers to individual video subscriptions (msg 29), by action and status name (OK, or why it was refused)",
        t.video_subscriptions.clone(),
    );
    r.register_collector(Box::new(HostCollector(sources)));
    r
}

/// The exposition text of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}
