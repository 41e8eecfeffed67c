//! The running service: ingress, sessions, plugins, sinks and the reload controller, wired
//! together; and its orderly shutdown.
//!
//! [`Service::start`] validates and loads everything before it binds anything it was not
//! given. The webhook listener serves only the webhook path and `/healthz`; the admin routes
//! are served on a listener of their own ([`crate::ops::admin`]) when one is given. Shutdown (SIGINT / SIGTERM in `main`, or [`Service::shutdown`]) stops intake,
//! ends every stream within the grace period (each plugin drains its queue and gets
//! `on-session-end(shutdown)`), flushes the sinks and returns the final counters.

pub mod cluster;
pub mod handoff;
pub mod journal;
pub mod replay;
pub mod signals;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use async_trait::async_trait;
use rtms_client::{
    IngressConfig, IngressHandler, IngressStats, Sessions, WebhookSeen, WsConnector,
};
use rtms_config::{Env, Pipeline};
use rtms_proto::WebhookEvent;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::dataplane::bridge::{HostSinkFactory, ReadTap, ResumeSet, Tap};
use crate::dataplane::cores::Cores;
use crate::dataplane::registry::Registry;
use crate::dataplane::stats::{Metrics, MetricsSnapshot};
use crate::flows::start::{RtmsControl, StartedSeen};
use crate::ops::admin::{AdminBackend, AdminConfig, Limits, check_exposure};
use crate::ops::exposition::{Sources, StreamState, Telemetry};
use crate::outputs::deadletter::DeadLetters;
use crate::outputs::tap::TapSubscription;
use crate::outputs::{OutputBounds, SinkSet, start_sinks_with};
use crate::pipeline::build::{build_table, client_config, net_settings, runtime_config};
use crate::pipeline::history::ReloadLog;
use crate::pipeline::reload::{Outcome, Reloader, Trigger};
use crate::sandbox::Runtime;
use rtms_client::listener::{ReloadingCert, TlsFiles};

/// Options that are not in pipeline.toml.
#[derive(Default)]
pub struct StartOptions {
    /// Sees every frame (the demo's live transcript).
    pub tap: Option<Tap>,
    /// Sees every frame read from a socket with its read time (benchmarks).
    pub read_tap: Option<ReadTap>,
    /// Overrides `[runtime.reload] watch`.
    pub watch: Option<bool>,
    /// Where the admin routes are served (`rtms-host run` binds `[admin] listen` when
    /// `admin.enabled`); none without it. Refused beyond loopback without an admin token.
    pub admin_listener: Option<TcpListener>,
    /// Resume the journaled streams only once this completes: a successor process waits
    /// for its predecessor to release them ([`handoff`]).
    pub journal_after: Option<JournalAfter>,
}

/// What the journal waits for before it resumes the streams it holds (see
/// [`StartOptions::journal_after`]).
pub type JournalAfter = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

pub type HostSessions = Sessions<HostSinkFactory, WsConnector>;

/// A running host.
pub struct Service {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Registry>,
    sessions: HostSessions,
    triggers: mpsc::UnboundedSender<Trigger>,
    stop: CancellationToken,
    /// Stops the admin listener, after the streams have ended (so `/readyz` answers 503
    /// and `/metrics` stays readable while they drain).
    admin_stop: CancellationToken,
    sinks: SinkSet,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    grace: std::time::Duration,
    ready: Arc<AtomicBool>,
    /// The stream journal (`[runtime] journal_dir`).
    journal: Option<Arc<journal::JournalWriter>>,
    /// This host's part of a cluster (`[cluster]`).
    cluster: Option<Arc<cluster::Cluster>>,
}

struct Handler {
    sessions: HostSessions,
    telemetry: Arc<Telemetry>,
    starts: tokio::sync::broadcast::Sender<StartedSeen>,
    /// In a cluster, events go to the shared log, and from there to whichever host acts.
    cluster: Option<Arc<cluster::Cluster>>,
    /// Concurrency notices: logged, emitted to the sinks.
    notices: crate::flows::notices::Notices,
}

impl Handler {
    fn new(
        sessions: &HostSessions,
        telemetry: &Arc<Telemetry>,
        starts: tokio::sync::broadcast::Sender<StartedSeen>,
        cluster: &Option<Arc<cluster::Cluster>>,
        outputs: &crate::outputs::Outputs,
    ) -> Arc<Self> {
        Arc::new(Self {
            sessions: sessions.clone(),
            telemetry: telemetry.clone(),
            starts,
            cluster: cluster.clone(),
            notices: crate::flows::notices::Notices::new(outputs.clone()),
        })
    }
}

impl IngressHandler for Handler {
    fn on_event(&self, ev: WebhookEvent) -> rtms_client::EventFuture<'_> {
        Box::pin(async move {
            tracing::debug!(event = %ev.event, stream = %ev.stream_id, "webhook");
            let seen = (ev.action == rtms_proto::WebhookAction::Started).then(|| StartedSeen {
                product: ev.product,
                id: ev.id.clone(),
                stream_id: ev.stream_id.clone(),
            });
            match &self.cluster {
                Some(c) => c.log(ev).await?,
                None => self.sessions.handle(ev)?,
            }
            if let Some(s) = seen {
                let _ = self.starts.send(s);
            }
            Ok(())
        })
    }

    fn on_notice(&self, notice: rtms_proto::webhook::Notice) {
        self.telemetry.notice(notice.kind);
        self.notices.on_notice(notice);
    }

    fn observe(&self, seen: WebhookSeen<'_>) {
        self.telemetry.webhook(seen);
    }
}

/// What the admin routes act on: the service's counters, streams, plugins, tap and reload
/// controller.
struct Backend {
    sessions: HostSessions,
    shared: Arc<Registry>,
    triggers: mpsc::UnboundedSender<Trigger>,
    metrics: Arc<Metrics>,
    telemetry: Arc<Telemetry>,
    registry: prometheus_client::registry::Registry,
    ready: Arc<AtomicBool>,
    reloads: Arc<ReloadLog>,
    rtms: Arc<RtmsControl>,
    cluster: Option<Arc<cluster::Cluster>>,
}

/// What happened to each plugin's queues, summed over the live sessions.
fn queue_depths(shared: &Registry) -> Vec<(Arc<str>, usize)> {
    shared
        .sessions()
        .iter()
        .flat_map(|s| s.queue_depths())
        .collect()
}

#[async_trait]
impl AdminBackend for Backend {
    fn metrics(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self.metrics.snapshot()).unwrap_or_default();
        v["live_streams"] = self.sessions.len().into();
        v
    }

    async fn reload(&self) -> Outcome {
        request_reload(&self.triggers).await
    }

    fn prometheus(&self) -> String {
        crate::ops::exposition::encode(&self.registry)
    }

    fn ready(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Err("starting or shutting down".into());
        }
        if self.cluster.as_ref().is_some_and(|c| c.draining()) {
            return Err("draining: handing its streams to the other hosts of the cluster".into());
        }
        // A load balancer moves on while this host cannot take another stream.
        let max = self.sessions.max_streams();
        if self.sessions.len() >= max {
            return Err(format!("at the stream cap (rtms.max_streams = {max})"));
        }
        Ok(())
    }

    fn sessions(&self) -> serde_json::Value {
        let host: std::collections::HashMap<String, Arc<crate::dataplane::registry::LiveStream>> =
            self.shared
                .sessions()
                .into_iter()
                .map(|s| (s.stream_id.to_string(), s))
                .collect();
        let table = self.shared.table.load();
        let mut list: Vec<serde_json::Value> = self
            .sessions
            .snapshots()
            .into_iter()
            .map(|snap| {
                let h = host.get(&snap.stream_id);
                let plugins: Vec<serde_json::Value> = h
                    .map(|h| h.queue_depths())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, queued)| {
                        let hash = table.get(&name).map(|e| e.code.short_hash().to_owned());
                        serde_json::json!({"name": name, "queued": queued, "hash": hash})
                    })
                    .collect();
                serde_json::json!({
                    "stream_id": snap.stream_id,
                    "meeting_id": snap.meeting_id,
                    "product": snap.product.as_str(),
                    "operator_id": snap.operator_id,
                    "state": snap.state,
                    "server_url": snap.server_url,
                    "media": media_names(&snap.media_params),
                    "frames": snap.next_seq,
                    "session": h.map(|h| h.info.session),
                    "started_at_ms": h.map(|h| h.info.started_at_ms),
                    "plugins": plugins,
                })
            })
            .collect();
        list.sort_by(|a, b| a["stream_id"].as_str().cmp(&b["stream_id"].as_str()));
        serde_json::Value::Array(list)
    }

    fn video(&self, stream_id: &str, cmd: rtms_client::video::Command) -> bool {
        self.sessions.video(stream_id, cmd)
    }

    fn stop_session(&self, stream_id: &str) -> bool {
        let stopped = self.sessions.stop(stream_id);
        if stopped {
            self.telemetry.admin_stop();
        }
        stopped
    }

    fn plugins(&self) -> serde_json::Value {
        let table = self.shared.table.load();
        let snapshot = self.metrics.snapshot();
        let mut queued: std::collections::HashMap<Arc<str>, usize> = Default::default();
        for (name, n) in queue_depths(&self.shared) {
            *queued.entry(name).or_default() += n;
        }
        let list: Vec<serde_json::Value> = table
            .plugins
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name,
                    "hash": e.code.short_hash(),
                    "sha256": e.code.hash,
                    "component": e.code.path,
                    "media": e.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                    "queue": {"capacity": e.queue_capacity, "on_full": format!("{:?}", e.on_full).to_lowercase(),
                              "block_timeout_ms": e.block_timeout.as_millis() as u64},
                    "batch": {"max_frames": e.batch_max, "max_wait_ms": e.batch_wait.as_millis() as u64},
                    "queued": queued.get(&e.name).copied().unwrap_or(0),
                    "stats": snapshot.plugins.get(&*e.name),
                })
            })
            .collect();
        serde_json::json!(list)
    }

    fn last_reload(&self) -> serde_json::Value {
        self.reloads.last()
    }

    fn config(&self) -> String {
        self.reloads.config()
    }

    fn tap(&self) -> Option<TapSubscription> {
        Some(self.shared.outputs.tap().subscribe())
    }

    async fn rtms(
        &self,
        target: &crate::flows::zoom_rest::Target,
        action: &str,
    ) -> (u16, serde_json::Value) {
        let Some(action) = crate::flows::zoom_rest::Action::parse(action) else {
            return (
                404,
                serde_json::json!({"error": format!("unknown action {action:?}: use start, stop, pause or resume")}),
            );
        };
        match self.rtms.act_on(target, action).await {
            Ok(v) => (200, v),
            Err((status, e)) => (status, serde_json::json!({"error": e})),
        }
    }
}

/// The media a stream asked for, by name.
fn media_names(p: &rtms_proto::params::MediaParams) -> Vec<&'static str> {
    let mut v = Vec::new();
    if p.audio.is_some() {
        v.push("audio");
    }
    if p.video.is_some() {
        v.push("video");
    }
    if p.deskshare.is_some() {
        v.push("share");
    }
    if p.transcript.is_some() {
        v.push("transcript");
    }
    if p.chat.is_some() {
        v.push("chat");
    }
    v
}

/// Sends an admin reload trigger and waits for its outcome.
/// Opens the stream journal when `[runtime] journal_dir` is set, resumes (or ends) the
/// streams it holds, and starts writing the live ones.
async fn start_journal(
    pipeline: &Pipeline,
    sessions: &HostSessions,
    shared: &Arc<Registry>,
    (resumed, stop, after): (&ResumeSet, &CancellationToken, Option<JournalAfter>),
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Option<Arc<journal::JournalWriter>>> {
    let Some(dir) = &pipeline.runtime.journal_dir else {
        return Ok(None);
    };
    let file = journal::FileJournal::open(dir)?;
    let writer = Arc::new(journal::JournalWriter::new(
        Arc::new(file),
        sessions.clone(),
        shared.clone(),
    ));
    let grace = pipeline.runtime.journal_grace;
    let max = sessions.max_streams();
    let shown = dir.display().to_string();
    if let Some(after) = after {
        // A successor: the journal is its predecessor's until it released the streams.
        let (w, r, stop) = (writer.clone(), resumed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            after.await;
            match journal::resume(&w, &r, grace, max).await {
                Ok((ok, ended)) => {
                    tracing::info!(dir = %shown, resumed = ok, ended, ?grace, "hand-off: streams taken over from the predecessor");
                }
                Err(e) => {
                    tracing::error!(dir = %shown, error = %e, "hand-off: cannot read the stream journal: the predecessor's streams are not resumed");
                }
            }
            w.run(stop).await;
        }));
        return Ok(Some(writer));
    }
    let (ok, ended) = journal::resume(&writer, resumed, grace, max)
        .await
        .with_context(|| format!("cannot read the stream journal in {shown}"))?;
    tracing::info!(dir = %shown, resumed = ok, ended, ?grace, "stream journal open");
    tasks.push(tokio::spawn(writer.clone().run(stop.clone())));
    Ok(Some(writer))
}

/// The RTMS client's side of the host: its streams, their telemetry, and the sets a journal
/// or a cluster fills before starting a stream (resumed sessions, fences).
struct Streams {
    sessions: HostSessions,
    telemetry: Arc<Telemetry>,
    resumed: ResumeSet,
    fences: crate::dataplane::fence::FenceSet,
    /// For the event WebSocket.
    event_connector: WsConnector,
    /// The started webhooks seen, which a start through the REST API waits for.
    starts: cluster::StartsSender,
}

fn streams(
    pipeline: &Pipeline,
    shared: &Arc<Registry>,
    tap: Option<Tap>,
    read_tap: Option<ReadTap>,
) -> Result<Streams> {
    let connector = zoom_connector(pipeline)?;
    let factory = sink_factory(shared, tap, read_tap);
    let (resumed, fences) = (factory.resumed.clone(), factory.fences.clone());
    let telemetry = Arc::new(Telemetry::default());
    let event_connector = connector.clone();
    let client_cfg = client_config(pipeline)?;
    let individual = client_cfg.video.is_some();
    let sessions = Sessions::with_observer(client_cfg, connector, factory, telemetry.clone());
    let _ = shared.video.set(video_control(&sessions, individual));
    // Core threads only when `[runtime] threads` asks for them (docs/operations.md,
    // "Threads"); without, streams run on the main runtime.
    if let Some(threads) = pipeline.runtime.threads.filter(|&n| n > 0) {
        let cores = Cores::start(threads, pipeline.runtime.pin_threads)?;
        sessions.place_on(cores.clone());
        let _ = shared.cores.set(cores);
    }
    Ok(Streams {
        sessions,
        telemetry,
        resumed,
        fences,
        event_connector,
        starts: tokio::sync::broadcast::channel(256).0,
    })
}

/// Plugins' individual-video requests, handed to the stream's client session.
fn video_control(
    sessions: &HostSessions,
    individual: bool,
) -> crate::dataplane::services::VideoControl {
    use crate::sandbox::store::VideoAction;
    use rtms_client::video::Command;
    // Weak: the sessions own the data plane that holds this.
    let sessions = sessions.downgrade();
    Arc::new(move |stream_id: &str, user: i64, action: VideoAction| {
        if !individual {
            return Err(
                "this stream's video is not in individual mode: the operator sets [rtms.video] mode = \"individual\""
                    .into(),
            );
        }
        let cmd = match action {
            VideoAction::Pin => Command::Pin(user),
            VideoAction::Drop => Command::Drop(user),
            VideoAction::Release => Command::Release(user),
        };
        if sessions.upgrade().is_some_and(|s| s.video(stream_id, cmd)) {
            Ok(())
        } else {
            Err("the stream no longer runs on this host".into())
        }
    })
}

/// Joins the cluster when `[cluster]` is set.
async fn start_cluster(
    pipeline: &Pipeline,
    shared: &Arc<Registry>,
    streams: &Streams,
) -> Result<Option<Arc<cluster::Cluster>>> {
    let Some(cfg) = &pipeline.cluster else {
        return Ok(None);
    };
    let parts = cluster::Parts {
        sessions: streams.sessions.clone(),
        shared: shared.clone(),
        resumed: streams.resumed.clone(),
        fences: streams.fences.clone(),
        starts: streams.starts.clone(),
    };
    Ok(Some(Arc::new(cluster::Cluster::start(cfg, parts).await?)))
}

/// The RTMS client's sink: frames into the data plane, through the taps.
fn sink_factory(
    shared: &Arc<Registry>,
    tap: Option<Tap>,
    read_tap: Option<ReadTap>,
) -> HostSinkFactory {
    HostSinkFactory {
        shared: shared.clone(),
        tap,
        read_tap,
        resumed: ResumeSet::default(),
        fences: Default::default(),
    }
}

async fn request_reload(triggers: &mpsc::UnboundedSender<Trigger>) -> Outcome {
    let (tx, rx) = oneshot::channel();
    if triggers.send(Trigger::Admin(Some(tx))).is_err() {
        return Outcome::Refused("the host is shutting down".into());
    }
    rx.await
        .unwrap_or_else(|_| Outcome::Refused("the host is shutting down".into()))
}

impl Service {
    /// Starts the host on `listener` with a validated pipeline (credentials loaded).
    pub async fn start(
        pipeline: Pipeline,
        env: Box<dyn Env + Send + Sync>,
        listener: TcpListener,
        opts: StartOptions,
    ) -> Result<Self> {
        let webhook_secret = webhook_secret(&pipeline)?;
        let (shared, sinks, rollback_rx) = start_dataplane(&pipeline).await?;
        let streams = streams(&pipeline, &shared, opts.tap, opts.read_tap)?;
        let cluster = start_cluster(&pipeline, &shared, &streams).await?;
        let rtms = rtms_control(&pipeline, streams.starts.clone())?;
        let (sessions, telemetry) = (streams.sessions, streams.telemetry);
        let (resumed, event_connector) = (streams.resumed, streams.event_connector);
        let ready = Arc::new(AtomicBool::new(false));
        let reloads = Arc::new(ReloadLog::default());
        reloads.set_config(&pipeline);
        let counters = Counters::default();
        let (triggers, trigger_rx) = mpsc::unbounded_channel();
        let (stop, admin_stop) = (CancellationToken::new(), CancellationToken::new());
        let addr = listener.local_addr()?;
        let admin_addr = admin_addr(&pipeline, opts.admin_listener.as_ref())?;
        let ingress_cfg = ingress_config(&pipeline, webhook_secret, &counters, &rtms)?;
        let outputs = &shared.outputs;
        let handler = Handler::new(
            &sessions,
            &telemetry,
            rtms.starts.clone(),
            &cluster,
            outputs,
        );
        let event_ws = event_ws_config(&pipeline, &rtms)?;
        let mut tasks = Vec::new();
        if let Some(admin_listener) = opts.admin_listener {
            let cfg = admin_config(&pipeline, &counters)?;
            let sources = admin_sources(&sessions, &shared, &ready, &counters, &cluster);
            let backend = Arc::new(Backend {
                sessions: sessions.clone(),
                shared: shared.clone(),
                triggers: triggers.clone(),
                metrics: shared.metrics.clone(),
                registry: crate::ops::exposition::registry(&telemetry, sources),
                telemetry: telemetry.clone(),
                ready: ready.clone(),
                reloads: reloads.clone(),
                rtms: rtms.clone(),
                cluster: cluster.clone(),
            });
            let admin = spawn_admin(admin_listener, cfg, backend, admin_stop.clone());
            tasks.push(admin);
        }
        let failures = counters.event_ws_failures.clone();
        let intake = (listener, ingress_cfg, handler, event_ws, event_connector);
        tasks.extend(spawn_intake(intake, failures, &stop));
        let journal_at = (&resumed, &stop, opts.journal_after);
        let journal = start_journal(&pipeline, &sessions, &shared, journal_at, &mut tasks).await?;
        let grace = pipeline.runtime.shutdown_grace;
        let watch = opts.watch.unwrap_or(pipeline.runtime.reload.watch);
        let reloader = Reloader::new(pipeline, env, shared.clone()).with_log(reloads);
        let reload_rx = (trigger_rx, rollback_rx);
        tasks.push(spawn_reloader(reloader, reload_rx, watch, &stop));
        ready.store(true, Ordering::Relaxed);
        tracing::info!(%addr, admin = ?admin_addr, "rtms-host ready");
        Ok(Self {
            addr,
            admin_addr,
            shared,
            sessions,
            triggers,
            stop,
            admin_stop,
            sinks,
            tasks,
            grace,
            ready,
            journal,
            cluster,
        })
    }

    /// Where the webhook server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the admin listener listens, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn sessions(&self) -> &HostSessions {
        &self.sessions
    }

    pub fn shared(&self) -> &Arc<Registry> {
        &self.shared
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Asks for a reload now (as SIGHUP does) and waits for its outcome.
    pub async fn reload(&self) -> Outcome {
        request_reload(&self.triggers).await
    }

    /// A SIGHUP-style reload request that does not wait.
    pub fn request_reload(&self) {
        let _ = self.triggers.send(Trigger::Signal);
    }

    /// Hands the live streams to a successor process that serves the same listening
    /// sockets ([`handoff`]): like [`Service::shutdown`], but the streams are released rather
    /// than ended (plugins get `on-session-end(reload)`, keep their session state) and the
    /// journal keeps their entries for the successor to resume.
    pub async fn hand_off(self) -> MetricsSnapshot {
        let Some(j) = &self.journal else {
            tracing::error!("hand-off without [runtime] journal_dir: the streams end here");
            return self.shutdown().await;
        };
        tracing::info!(
            streams = self.sessions.len(),
            "handing off: no new streams here; live ones go to the successor"
        );
        j.freeze();
        self.shared
            .services
            .handing_off
            .store(true, Ordering::Relaxed);
        // The successor resumes the streams: Zoom must keep them.
        self.sessions.keep_streams_at_zoom();
        self.shutdown().await
    }

    /// Whether hand-off can keep the streams (`[runtime] journal_dir` is set).
    pub fn can_hand_off(&self) -> bool {
        self.journal.is_some()
    }

    /// Stops intake, ends every stream (plugins get `on-session-end(shutdown)`), flushes
    /// the sinks. Returns the final counters.
    pub async fn shutdown(self) -> MetricsSnapshot {
        if let Some(c) = &self.cluster {
            // Streams go to the other hosts first; those left lapse and are taken over.
            let (handed, left) = c.drain().await;
            tracing::info!(handed, left, "cluster: streams handed to the other hosts");
            c.stop().await;
            // Those left lapse and are taken over: Zoom must keep them.
            self.sessions.keep_streams_at_zoom();
        }
        tracing::info!("shutting down: no new streams; ending live ones");
        self.ready.store(false, Ordering::Relaxed);
        self.stop.cancel();
        let aborted = self.sessions.shutdown(self.grace).await;
        if aborted > 0 {
            tracing::error!(aborted, "streams did not end within the grace period");
        }
        let letters = &self.shared.services.dead_letters;
        if tokio::time::timeout(self.grace, letters.flush())
            .await
            .is_err()
        {
            tracing::error!("dead letters were not all written within the grace period");
        }
        letters.summarise();
        // Every instance's buffered file writes, those of instances that trapped included.
        let unwritten = self.shared.rt.files().flush_all(self.grace).await;
        if unwritten > 0 {
            tracing::error!(
                unwritten_bytes = unwritten,
                "plugins' file writes were not all written out within the grace period: a file does not take them (a FIFO nobody reads, a hung mount)"
            );
        }
        if let Some(j) = &self.journal {
            // The streams ended: their entries go.
            let j = j.clone();
            let _ = tokio::task::spawn_blocking(move || j.tick()).await;
        }
        self.admin_stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let snapshot = self.shared.metrics.snapshot();
        for (name, p) in &snapshot.plugins {
            p.warn_losses(name);
        }
        let cores = self.shared.services.cores.get().cloned();
        drop(self.sessions);
        drop(self.shared);
        if tokio::time::timeout(self.grace, self.sinks.finish())
            .await
            .is_err()
        {
            tracing::error!("sinks did not flush within the grace period");
        }
        if let Some(cores) = cores {
            // Every stream has ended; their workers with them.
            cores.stop().await;
        }
        snapshot
    }
}

/// The counters the intake paths bump and the admin exposition reads.
#[derive(Default)]
struct Counters {
    ingress: Arc<IngressStats>,
    admin_conns: Arc<rtms_client::listener::ConnStats>,
    zoom_app_refused: Arc<std::sync::atomic::AtomicU64>,
    event_ws_failures: Arc<std::sync::atomic::AtomicU64>,
}

/// The webhook secret token, or an error naming the variable to export.
fn webhook_secret(pipeline: &Pipeline) -> Result<String> {
    Ok(pipeline
        .zoom
        .webhook_secret
        .as_ref()
        .with_context(|| {
            format!(
                "the webhook secret token is not set: export {}",
                pipeline.zoom.webhook_secret_env
            )
        })?
        .expose()
        .to_owned())
}

/// The connector for Zoom's signaling, media and event WebSockets.
fn zoom_connector(pipeline: &Pipeline) -> Result<WsConnector> {
    WsConnector::from_settings(&net_settings(pipeline))
        .context("cannot set up TLS for the Zoom connections")
}

/// The runtime, the plugins' route table, the sinks and the data plane's shared state.
async fn start_dataplane(
    pipeline: &Pipeline,
) -> Result<(
    Arc<Registry>,
    SinkSet,
    mpsc::UnboundedReceiver<crate::dataplane::services::RollbackRequest>,
)> {
    let rt = Runtime::new(&runtime_config(pipeline))?;
    let metrics = Arc::new(Metrics::default());
    let table = build_table(pipeline, &rt, &metrics, None, 1).await?;
    let bounds = OutputBounds::from(&pipeline.runtime);
    let (outputs, sinks) =
        start_sinks_with(pipeline.sinks.clone(), bounds, &net_settings(pipeline)).await?;
    let (rollback_tx, rollback_rx) = mpsc::unbounded_channel();
    let shared = Registry::new(
        rt,
        table,
        outputs,
        DeadLetters::with_limits(
            Some(pipeline.runtime.dead_letter_dir.clone()),
            pipeline.runtime.dead_letter_max_bytes,
            pipeline.runtime.dead_letter_files,
        ),
        metrics,
        Some(rollback_tx),
    );
    Ok((shared, sinks, rollback_rx))
}

/// Where the admin listener is bound, refused beyond loopback without a token.
fn admin_addr(pipeline: &Pipeline, listener: Option<&TcpListener>) -> Result<Option<SocketAddr>> {
    let Some(l) = listener else {
        return Ok(None);
    };
    let bound = l.local_addr()?;
    check_exposure(
        pipeline.admin.listen,
        bound,
        pipeline.admin.token.as_ref().map(|t| t.expose()),
        &pipeline.admin.token_env,
    )?;
    Ok(Some(bound))
}

/// Starting RTMS from the host: Zoom's REST API when the OAuth credentials are set.
fn rtms_control(
    pipeline: &Pipeline,
    starts: tokio::sync::broadcast::Sender<StartedSeen>,
) -> Result<Arc<RtmsControl>> {
    let z = &pipeline.zoom;
    let (rest, missing) = match (&z.rest, &z.client_id) {
        (Some(r), Some(rtms_client_id)) => (
            Some(Arc::new(crate::flows::zoom_rest::ZoomRest::new(
                crate::flows::zoom_rest::RestConfig {
                    api_base_url: z.api_base_url.clone(),
                    oauth_base_url: z.oauth_base_url.clone(),
                    account_id: r.account_id.clone(),
                    oauth_client_id: r.client_id.clone(),
                    oauth_client_secret: r.client_secret.expose().to_owned(),
                    rtms_client_id: rtms_client_id.clone(),
                },
                net_settings(pipeline)
                    .tls()
                    .context("cannot set up TLS for Zoom's REST API")?,
                &net_settings(pipeline).proxy,
            ))),
            String::new(),
        ),
        _ => (
            None,
            format!(
                "starting RTMS from the host needs Server-to-Server OAuth credentials: export {}, {} and {} and restart the host",
                z.rest_env[0], z.rest_env[1], z.rest_env[2]
            ),
        ),
    };
    Ok(Arc::new(RtmsControl {
        rest,
        missing,
        starts,
        wait: pipeline.rtms.webhook_wait_timeout,
    }))
}

/// The webhook listener's settings; its certificate is loaded once to fail early.
fn ingress_config(
    pipeline: &Pipeline,
    secret_token: String,
    counters: &Counters,
    rtms: &Arc<RtmsControl>,
) -> Result<IngressConfig> {
    let cfg = IngressConfig {
        path: pipeline.server.webhook_path.clone(),
        secret_token,
        max_body_bytes: pipeline.server.max_body_bytes,
        timestamp_window_secs: pipeline.server.timestamp_window.as_secs(),
        header_timeout: pipeline.server.header_timeout,
        body_timeout: pipeline.server.body_timeout,
        max_connections: pipeline.server.max_connections,
        max_connections_per_peer: pipeline.server.max_connections_per_peer,
        stats: counters.ingress.clone(),
        app: match (&pipeline.server.zoom_app, &pipeline.zoom.client_secret) {
            (false, _) => None,
            (true, Some(secret)) => Some(Arc::new(crate::flows::zoom_app::ZoomApp {
                client_secret: secret.expose().to_owned(),
                rtms: rtms.clone(),
                refused: counters.zoom_app_refused.clone(),
                guard: Default::default(),
            }) as Arc<dyn rtms_client::AppRoutes>),
            (true, None) => anyhow::bail!(
                "server.zoom_app needs the app's client secret to verify the Zoom client: export {}",
                pipeline.zoom.client_secret_env
            ),
        },
        tls: pipeline
            .server
            .tls
            .as_ref()
            .map(|t| rtms_client::ingress::TlsFiles {
                cert: t.cert.clone(),
                key: t.key.clone(),
            }),
        ..IngressConfig::default()
    };
    if let Some(files) = &cfg.tls {
        rtms_client::ingress::ReloadingCert::new(files.clone())
            .map_err(anyhow::Error::msg)
            .context("server.tls")?;
    }
    Ok(cfg)
}

/// The event WebSocket intake's settings and REST client, when it is configured.
fn event_ws_config(
    pipeline: &Pipeline,
    rtms: &RtmsControl,
) -> Result<Option<(rtms_config::EventWs, Arc<crate::flows::zoom_rest::ZoomRest>)>> {
    match (&pipeline.zoom.event_ws, &rtms.rest) {
        (None, _) => Ok(None),
        (Some(cfg), Some(rest)) => Ok(Some((cfg.clone(), rest.clone()))),
        (Some(_), None) => anyhow::bail!(
            "zoom.event_subscription_id is set, but the event WebSocket needs a Server-to-Server OAuth token: {}",
            rtms.missing
        ),
    }
}

/// The admin listener's settings; its certificate is loaded once to fail early.
fn admin_config(pipeline: &Pipeline, counters: &Counters) -> Result<AdminConfig> {
    let cfg = AdminConfig {
        token: pipeline.admin.token.as_ref().map(|t| t.expose().to_owned()),
        token_env: pipeline.admin.token_env.clone(),
        reload_min_interval: pipeline.admin.reload_min_interval,
        limits: Limits::default(),
        tls: pipeline.admin.tls.as_ref().map(|t| TlsFiles {
            cert: t.cert.clone(),
            key: t.key.clone(),
        }),
        stats: counters.admin_conns.clone(),
    };
    if let Some(files) = &cfg.tls {
        ReloadingCert::named(files.clone(), "admin.tls")
            .map_err(anyhow::Error::msg)
            .context("admin.tls")?;
    }
    Ok(cfg)
}

/// What the Prometheus exposition reads on each scrape.
fn admin_sources(
    sessions: &HostSessions,
    shared: &Arc<Registry>,
    ready: &Arc<AtomicBool>,
    counters: &Counters,
    cluster: &Option<Arc<cluster::Cluster>>,
) -> Arc<Sources> {
    let streams = sessions.clone();
    let depths = shared.clone();
    let cores = shared.clone();
    let cores = move || cores.cores.get().map(|c| c.counts()).unwrap_or_default();
    let is_ready = ready.clone();
    Arc::new(Sources {
        metrics: shared.metrics.clone(),
        ingress: counters.ingress.clone(),
        admin: counters.admin_conns.clone(),
        outputs: shared.outputs.stats().clone(),
        tap: shared.outputs.tap().clone(),
        zoom_app_refused: counters.zoom_app_refused.clone(),
        event_ws_failures: counters.event_ws_failures.clone(),
        streams: Box::new(move || {
            streams
                .snapshots()
                .into_iter()
                .map(|s| StreamState {
                    product: s.product,
                    state: s.state,
                })
                .collect()
        }),
        queue_depths: Box::new(move || queue_depths(&depths)),
        ready: Box::new(move || is_ready.load(Ordering::Relaxed)),
        descriptors: shared.rt.descriptors().clone(),
        cores: Box::new(cores),
        pool: shared.rt.pool().cloned(),
        cluster: cluster
            .clone()
            .map(|c| Box::new(move || c.metrics()) as Box<dyn Fn() -> _ + Send + Sync>),
    })
}

/// Runs the reload controller until `stop`.
fn spawn_reloader(
    reloader: Reloader,
    (triggers, rollbacks): (
        mpsc::UnboundedReceiver<Trigger>,
        mpsc::UnboundedReceiver<crate::dataplane::services::RollbackRequest>,
    ),
    watch: bool,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(reloader.run(triggers, rollbacks, watch, stop.clone()))
}

/// Serves the admin routes until `stop`.
fn spawn_admin(
    listener: TcpListener,
    cfg: AdminConfig,
    backend: Arc<Backend>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = crate::ops::admin::serve(listener, cfg, backend, stop).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    })
}

/// What the intake tasks need: the webhook listener with its settings and handler, and the
/// event WebSocket's settings with its connector.
type Intake = (
    TcpListener,
    IngressConfig,
    Arc<Handler>,
    Option<(rtms_config::EventWs, Arc<crate::flows::zoom_rest::ZoomRest>)>,
    WsConnector,
);

/// Runs the event WebSocket intake (when configured) and the webhook listener until `stop`.
fn spawn_intake(
    (listener, cfg, handler, event_ws, connector): Intake,
    event_ws_failures: Arc<std::sync::atomic::AtomicU64>,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some((ws_cfg, rest)) = event_ws {
        let handler: Arc<dyn IngressHandler> = handler.clone();
        tasks.push(tokio::spawn(crate::flows::event_ws::run(
            ws_cfg,
            rest,
            connector,
            handler,
            event_ws_failures,
            stop.clone(),
        )));
    }
    let ingress_stop = stop.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = rtms_client::serve(listener, cfg, handler, ingress_stop).await {
            tracing::error!(error = %e, "webhook server failed");
        }
    }));
    tasks
}
