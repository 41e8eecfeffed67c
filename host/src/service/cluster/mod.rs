//! A host of a cluster (`[cluster]`): webhooks go through a shared log, each stream has one
//! owner holding a lease, a dead host's streams are taken over, and a draining host hands its
//! streams to the others. The engine is behind [`rtms_cluster::ClusterStore`].
//!
//! - [`intake`]: a verified webhook is logged (de-duplicated across hosts) before its 200;
//!   every host takes webhooks from the log and acts on them — a new stream gets a lease
//!   assigned to the host it is placed on, an event for a running stream goes to its owner —
//!   and acknowledges each only once it acted.
//! - [`leases`]: the streams this host owns: taken with a compare-and-swap, renewed with the
//!   stream's journal entry (a compare-and-swap on the revision: a stale owner's write is
//!   refused), fenced locally ([`crate::dataplane::fence`]) so an owner that lost its lease
//!   stops before another host may take it; handed over on drain.
//! - [`takeover`]: the watches that keep [`view::View`] current, and the scan that takes
//!   over lapsed leases (a host that died) and picks up streams assigned to this host.
//! - [`record`]: the JSON records in the engine. [`view`]: what this host sees of the others.

mod intake;
mod leases;
mod record;
mod takeover;
mod view;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use rtms_cluster::{ClusterStore, NatsAuth, NatsSettings, NatsStore};
use tokio_util::sync::CancellationToken;

use crate::dataplane::bridge::ResumeSet;
use crate::dataplane::fence::FenceSet;
use crate::dataplane::registry::Registry;
use crate::service::HostSessions;

pub use leases::Owned;

/// A logged webhook is handed out at most this many times; one still not acted on after the
/// last is dropped (logged, counted).
const MAX_DELIVERIES: i64 = 20;

/// What the cluster counted, for metrics.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Webhooks written to the shared log.
    pub logged: AtomicU64,
    /// Webhooks the log had already (another host took Zoom's retry).
    pub log_duplicates: AtomicU64,
    /// Webhooks refused (503) because the log could not be written.
    pub log_failures: AtomicU64,
    /// Webhooks taken from the log and acted on.
    pub acted: AtomicU64,
    /// Webhooks handed back to the log for later (owner unreachable, every host full).
    pub retried: AtomicU64,
    /// Webhooks dropped: still not acted on at their last delivery.
    pub given_up: AtomicU64,
    /// Events sent to the stream's owner.
    pub forwarded: AtomicU64,
    /// Events forwarded to this host by others.
    pub served: AtomicU64,
    /// New streams this host assigned to another host.
    pub assigned: AtomicU64,
    /// Streams this host started: new ones, assigned ones, taken over, handed to it.
    pub taken_new: AtomicU64,
    pub taken_over: AtomicU64,
    pub taken_handed: AtomicU64,
    /// Takes that lost the compare-and-swap to another host.
    pub take_conflicts: AtomicU64,
    pub renewals: AtomicU64,
    pub renewal_failures: AtomicU64,
    /// Leases this host lost (another host took them, or they could not be renewed in time).
    pub lost: AtomicU64,
    /// Streams handed to another host by a drain, and those that could not be.
    pub handed_off: AtomicU64,
    pub hand_off_failures: AtomicU64,
}

/// The counters as the exposition names them: `rtms_cluster_<name>`.
type Counter = (&'static str, &'static str, fn(&ClusterStats) -> &AtomicU64);
const COUNTERS: &[Counter] = &[
    (
        "webhooks_logged",
        "Webhooks this host wrote to the shared log (answered 200 once written)",
        |s| &s.logged,
    ),
    (
        "webhooks_log_duplicates",
        "Webhooks the shared log already had (a retry another host took)",
        |s| &s.log_duplicates,
    ),
    (
        "webhooks_log_failures",
        "Webhooks refused with 503 because the shared log could not be written",
        |s| &s.log_failures,
    ),
    (
        "webhooks_acted",
        "Webhooks this host took from the log and acted on",
        |s| &s.acted,
    ),
    (
        "webhooks_retried",
        "Webhooks handed back to the log for later (owner unreachable, no room)",
        |s| &s.retried,
    ),
    (
        "webhooks_given_up",
        "Webhooks dropped because they were still not acted on at their last delivery",
        |s| &s.given_up,
    ),
    (
        "events_forwarded",
        "Events sent to their stream's owner",
        |s| &s.forwarded,
    ),
    (
        "events_served",
        "Events other hosts sent to this host for its streams",
        |s| &s.served,
    ),
    (
        "streams_assigned",
        "New streams this host placed on another host",
        |s| &s.assigned,
    ),
    ("streams_taken_new", "New streams this host started", |s| {
        &s.taken_new
    }),
    (
        "streams_taken_over",
        "Streams this host took over after their owner's lease lapsed",
        |s| &s.taken_over,
    ),
    (
        "streams_taken_handed",
        "Streams a draining host handed to this one",
        |s| &s.taken_handed,
    ),
    (
        "take_conflicts",
        "Takes another host won (compare-and-swap refused)",
        |s| &s.take_conflicts,
    ),
    ("lease_renewals", "Lease renewals confirmed", |s| {
        &s.renewals
    }),
    (
        "lease_renewal_failures",
        "Lease renewals the engine did not confirm",
        |s| &s.renewal_failures,
    ),
    (
        "leases_lost",
        "Leases this host lost (taken over, or not renewed in time): the stream stopped here",
        |s| &s.lost,
    ),
    (
        "streams_handed_off",
        "Streams this host handed to another on drain",
        |s| &s.handed_off,
    ),
    (
        "hand_off_failures",
        "Streams a drain could not hand over (left to lapse)",
        |s| &s.hand_off_failures,
    ),
];

/// The numbers a scrape reads.
#[derive(Debug)]
pub struct ClusterGauges {
    pub owned: usize,
    pub hosts_seen: usize,
    pub hosts_live: usize,
    pub link_up: bool,
    pub draining: bool,
}

/// What the cluster's tasks share.
pub(crate) struct Inner {
    store: Arc<dyn ClusterStore>,
    /// This host's id.
    host: String,
    cfg: rtms_config::Cluster,
    sessions: HostSessions,
    shared: Arc<Registry>,
    resumed: ResumeSet,
    fences: FenceSet,
    starts: StartsSender,
    owned: Mutex<HashMap<String, Owned>>,
    /// Streams being taken right now (no second attempt meanwhile).
    taking: Mutex<HashSet<String>>,
    view: view::View,
    draining: AtomicBool,
    stats: Arc<ClusterStats>,
}

impl Inner {
    /// An owner's fence ends this long after it sent the renewal the engine confirmed.
    fn fence_span(&self) -> Duration {
        self.cfg.lease * 4 / 5
    }

    /// Another host takes a lease over once it saw no change for this long.
    fn lapse_window(&self) -> Duration {
        self.cfg.lease * 6 / 5
    }

    /// How long an event forwarded to an owner waits for its answer.
    fn request_timeout(&self) -> Duration {
        self.cfg.renew.min(Duration::from_secs(2))
    }

    /// Room for more streams here.
    fn room(&self) -> usize {
        if self.draining.load(Ordering::Relaxed) {
            return 0;
        }
        let taking = self.taking.lock().len();
        self.sessions
            .max_streams()
            .saturating_sub(self.sessions.len().max(self.owned.lock().len()) + taking)
    }

    /// Live hosts with their room, this one included.
    fn candidates(&self) -> Vec<(String, usize)> {
        let mut c: Vec<(String, usize)> = self
            .view
            .live_hosts(self.lapse_window())
            .into_iter()
            .filter(|(h, _)| *h != self.host)
            .collect();
        c.push((self.host.clone(), self.room()));
        c
    }
}

/// This host's part of the cluster.
pub struct Cluster {
    inner: Arc<Inner>,
    stop: CancellationToken,
    /// Stops taking webhooks from the log (a draining host).
    intake_stop: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// This host's id when `[cluster] host_id` is unset: `<hostname>-<pid>`.
fn default_host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    let name: String = name
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!("{name}-{}", std::process::id())
}

fn settings(cfg: &rtms_config::Cluster, host: &str) -> NatsSettings {
    NatsSettings {
        url: cfg.nats_url.clone(),
        name: format!("rtms-host {host}"),
        prefix: cfg.prefix.clone(),
        auth: match &cfg.auth {
            rtms_config::ClusterAuth::None => NatsAuth::None,
            rtms_config::ClusterAuth::UserPassword { user, password } => NatsAuth::UserPassword {
                user: user.clone(),
                password: password.expose().to_owned(),
            },
            rtms_config::ClusterAuth::Token(t) => NatsAuth::Token(t.expose().to_owned()),
        },
        dedup_window: cfg.dedup_window,
        ack_wait: cfg.ack_wait,
        max_deliver: MAX_DELIVERIES,
        timeout: cfg
            .renew
            .clamp(Duration::from_millis(500), Duration::from_secs(5)),
    }
}

/// What the cluster takes from the service.
pub struct Parts {
    pub sessions: HostSessions,
    pub shared: Arc<Registry>,
    pub resumed: ResumeSet,
    pub fences: FenceSet,
    /// Where a new stream's started webhook is announced, wherever it arrived: a start
    /// through the REST API waits there.
    pub starts: StartsSender,
}

/// The service's channel of started webhooks seen.
pub type StartsSender = tokio::sync::broadcast::Sender<crate::flows::start::StartedSeen>;

impl Cluster {
    /// Connects to the engine (failing when it is unreachable), then starts watching,
    /// renewing, taking over and taking webhooks.
    pub async fn start(cfg: &rtms_config::Cluster, parts: Parts) -> anyhow::Result<Self> {
        let host = cfg.host_id.clone().unwrap_or_else(default_host_id);
        let store = NatsStore::connect(&settings(cfg, &host))
            .await
            .with_context(|| {
                format!(
                    "cannot use the cluster engine at {} ([cluster] nats_url): start nats-server with JetStream (-js) there, check the credentials in {} / {} or {}, or remove [cluster] to run this host alone",
                    cfg.nats_url, cfg.auth_env[0], cfg.auth_env[1], cfg.auth_env[2]
                )
            })?;
        let inner = Arc::new(Inner {
            store: Arc::new(store),
            host,
            cfg: cfg.clone(),
            sessions: parts.sessions,
            shared: parts.shared,
            resumed: parts.resumed,
            fences: parts.fences,
            starts: parts.starts,
            owned: Mutex::default(),
            taking: Mutex::default(),
            view: view::View::default(),
            draining: AtomicBool::new(false),
            stats: Arc::default(),
        });
        let stop = CancellationToken::new();
        let intake_stop = stop.child_token();
        let tasks = vec![
            tokio::spawn(takeover::watch_link(inner.clone(), stop.clone())),
            tokio::spawn(takeover::watch_leases(inner.clone(), stop.clone())),
            tokio::spawn(takeover::watch_hosts(inner.clone(), stop.clone())),
            tokio::spawn(takeover::scan(inner.clone(), stop.clone())),
            tokio::spawn(leases::renew(inner.clone(), stop.clone())),
            tokio::spawn(intake::serve(inner.clone(), stop.clone())),
            tokio::spawn(intake::consume(inner.clone(), intake_stop.clone())),
        ];
        tracing::info!(host_id = %inner.host, url = %cfg.nats_url, prefix = %cfg.prefix, lease = ?cfg.lease, renew = ?cfg.renew, "cluster joined");
        Ok(Self {
            inner,
            stop,
            intake_stop,
            tasks: Mutex::new(tasks),
        })
    }

    /// This host's id.
    pub fn host_id(&self) -> &str {
        &self.inner.host
    }

    /// Writes a verified webhook to the shared log; see [`intake::log`].
    pub async fn log(&self, ev: rtms_proto::WebhookEvent) -> Result<(), rtms_client::Refusal> {
        intake::log(&self.inner, ev).await
    }

    /// Whether this host drains (hands its streams over, takes no new one).
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Arc<ClusterStats> {
        self.inner.stats.clone()
    }

    /// The numbers a scrape reads, for the exposition.
    pub fn metrics(&self) -> crate::ops::exposition::ClusterMetrics {
        let s = &*self.inner.stats;
        let g = self.gauges();
        let t = self.inner.store.traffic();
        let mut counters: Vec<(&'static str, &'static str, u64)> = COUNTERS
            .iter()
            .map(|(name, help, read)| (*name, *help, read(s).load(Ordering::Relaxed)))
            .collect();
        counters.extend([
            (
                "engine_sent_bytes",
                "Message bytes sent to the cluster engine (protocol bytes not counted)",
                t.sent_bytes,
            ),
            (
                "engine_received_bytes",
                "Message bytes received from the cluster engine (protocol bytes not counted)",
                t.received_bytes,
            ),
            (
                "engine_sent_messages",
                "Messages sent to the cluster engine",
                t.sent_messages,
            ),
            (
                "engine_received_messages",
                "Messages received from the cluster engine",
                t.received_messages,
            ),
        ]);
        crate::ops::exposition::ClusterMetrics {
            counters,
            gauges: vec![
                (
                    "streams_owned",
                    "Streams whose lease this host holds",
                    g.owned as i64,
                ),
                (
                    "hosts_live",
                    "Host records that changed within the lapse window (this one included)",
                    g.hosts_live as i64,
                ),
                (
                    "hosts_seen",
                    "Host records in the engine",
                    g.hosts_seen as i64,
                ),
                (
                    "engine_connected",
                    "1 while the connection to the cluster engine is up",
                    i64::from(g.link_up),
                ),
                (
                    "draining",
                    "1 while this host hands its streams over",
                    i64::from(g.draining),
                ),
            ],
        }
    }

    /// The numbers a scrape reads.
    pub fn gauges(&self) -> ClusterGauges {
        let (hosts_seen, hosts_live) = self.inner.view.hosts_seen(self.inner.lapse_window());
        ClusterGauges {
            owned: self.inner.owned.lock().len(),
            hosts_seen,
            hosts_live,
            link_up: self.inner.view.link_up().is_some(),
            draining: self.draining(),
        }
    }

    /// Hands every stream this host owns to the others, within `[cluster] drain_ms`: stops
    /// taking webhooks, then ends each stream here (its plugins drain and get
    /// `on-session-end(reload)`) and assigns its lease, with the final journal entry, to
    /// the host with the most room. Returns `(handed over, left)`; the streams left lapse
    /// and are taken over like a dead host's.
    pub async fn drain(&self) -> (usize, usize) {
        self.inner.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            streams = self.inner.owned.lock().len(),
            "cluster: draining (/readyz answers 503): no new streams here; handing the live ones to the other hosts"
        );
        self.intake_stop.cancel();
        leases::write_host(&self.inner).await;
        let bound = self.inner.cfg.drain;
        match tokio::time::timeout(bound, leases::hand_off_all(&self.inner)).await {
            Ok(counts) => counts,
            Err(_) => {
                let left = self.inner.owned.lock().len();
                tracing::error!(
                    left,
                    ?bound,
                    "cluster: drain bound reached; the streams left lapse and other hosts take them over (raise [cluster] drain_ms)"
                );
                (0, left)
            }
        }
    }

    /// Stops every cluster task: no more renewals, so the leases still held lapse (and are
    /// taken over) rather than being deleted when the streams end here.
    pub async fn stop(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
        // Gone at once, rather than after its record's lapse.
        let inner = &self.inner;
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            inner
                .store
                .delete(rtms_cluster::Table::Hosts, &inner.host, None),
        )
        .await;
    }
}
