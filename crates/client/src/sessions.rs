//! The session manager: one task per RTMS stream, keyed by `rtms_stream_id`.
//!
//! [`Sessions::handle`] takes webhook events (from [`crate::ingress`] or directly): a started
//! event for an unknown stream spawns a session; every event for a known stream becomes an
//! input of its state machine (which tells duplicates from failovers). Sessions run
//! independently: a dead socket or a slow sink in one never stalls another.
//! [`Sessions::shutdown`] ends every stream with
//! [`EndReason::Shutdown`](crate::sink::EndReason::Shutdown) within a grace
//! period.
//!
//! Ownership goes through [`Sessions::start`] and [`Sessions::snapshot`] only, so a later
//! multi-host version can hand a stream (its [`SessionSnapshot`]) to another host.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtms_proto::text::truncated;
use rtms_proto::{WebhookAction, WebhookEvent};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ClientConfig;
use crate::ingress::{IngressHandler, Refusal};
use crate::link::StreamIds;
use crate::machine::Input;
use crate::observe::SharedObserver;
use crate::ratelog;
use crate::session::{self, SessionSnapshot, SessionStart, Shared};
use crate::sink::SinkFactory;
use crate::transport::{Connector, WsConnector};

/// Runs every stream of this host.
pub struct Sessions<F: SinkFactory, C: Connector = WsConnector> {
    inner: Arc<Inner<F, C>>,
}

impl<F: SinkFactory, C: Connector> Clone for Sessions<F, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// A handle on [`Sessions`] that does not keep them alive (for callbacks held by what the
/// sessions own).
pub struct WeakSessions<F: SinkFactory, C: Connector = WsConnector> {
    inner: std::sync::Weak<Inner<F, C>>,
}

impl<F: SinkFactory, C: Connector> WeakSessions<F, C> {
    /// The sessions, while they exist.
    pub fn upgrade(&self) -> Option<Sessions<F, C>> {
        self.inner.upgrade().map(|inner| Sessions { inner })
    }
}

impl<F: SinkFactory, C: Connector> Sessions<F, C> {
    /// A handle that does not keep the sessions alive.
    pub fn downgrade(&self) -> WeakSessions<F, C> {
        WeakSessions {
            inner: Arc::downgrade(&self.inner),
        }
    }
}

struct Inner<F, C> {
    cfg: Arc<ClientConfig>,
    connector: Arc<C>,
    factory: Arc<F>,
    streams: Mutex<HashMap<String, Entry>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    generation: AtomicU64,
    /// Signalled whenever a stream leaves the map.
    removed: tokio::sync::Notify,
    refused_url: AtomicU64,
    refused_full: AtomicU64,
    refused_stopped: AtomicU64,
    /// Streams an operator stopped ([`Sessions::stop`]), refused again for a while.
    stopped: Mutex<StoppedStreams>,
    /// Whether a shutdown closes streams at Zoom ([`Sessions::keep_streams_at_zoom`]).
    close_on_shutdown: Arc<std::sync::atomic::AtomicBool>,
    observer: SharedObserver,
    /// Where new streams' tasks run ([`Sessions::place_on`]); the caller's runtime without.
    placement: std::sync::OnceLock<Arc<dyn Placement>>,
}

/// Chooses the runtime each new stream's task runs on (a host with a thread per core
/// balances streams over its cores). The stream's sockets, timers and everything its task
/// spawns live on that runtime.
pub trait Placement: Send + Sync + 'static {
    /// The runtime for a new stream, and a lease the stream's task holds until it ends.
    fn place(&self) -> Placed;
}

/// Where a new stream runs (see [`Placement`]).
pub struct Placed {
    pub runtime: tokio::runtime::Handle,
    /// Dropped when the stream's task ends (a count of live streams per runtime).
    pub lease: Box<dyn Send + Sync>,
}

/// How long a stream an operator stopped stays refused: Zoom still holds it (the host ended
/// only its own side), and its interrupted or started webhooks must not take it back.
pub const OPERATOR_STOP_GRACE: Duration = Duration::from_secs(600);
/// The most operator-stopped streams remembered; the oldest is forgotten first.
pub const MAX_OPERATOR_STOPPED: usize = 4096;

/// The streams an operator stopped, each until its grace period ends (bounded).
#[derive(Default)]
struct StoppedStreams {
    until: HashMap<String, tokio::time::Instant>,
    order: std::collections::VecDeque<String>,
}

impl StoppedStreams {
    fn insert(&mut self, stream_id: &str, now: tokio::time::Instant) {
        self.expire(now);
        if self.until.len() >= MAX_OPERATOR_STOPPED
            && let Some(oldest) = self.order.pop_front()
        {
            self.until.remove(&oldest);
        }
        if self
            .until
            .insert(stream_id.to_owned(), now + OPERATOR_STOP_GRACE)
            .is_none()
        {
            self.order.push_back(stream_id.to_owned());
        }
    }

    fn holds(&mut self, stream_id: &str, now: tokio::time::Instant) -> bool {
        self.expire(now);
        self.until.contains_key(stream_id)
    }

    fn expire(&mut self, now: tokio::time::Instant) {
        while let Some(first) = self.order.front() {
            if self.until.get(first).is_some_and(|t| *t > now) {
                return;
            }
            let first = self.order.pop_front().unwrap_or_default();
            self.until.remove(&first);
        }
    }
}

/// The `Retry-After` of a refusal for want of room.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(30);

struct Entry {
    generation: u64,
    inputs: mpsc::UnboundedSender<Input>,
    shared: Arc<Shared>,
    abort: AbortHandle,
}

impl<F: SinkFactory, C: Connector> Sessions<F, C> {
    pub fn new(cfg: ClientConfig, connector: C, factory: F) -> Self {
        Self::with_observer(cfg, connector, factory, crate::observe::none())
    }

    /// Like [`Sessions::new`], reporting connection events to `observer` (metrics).
    pub fn with_observer(
        cfg: ClientConfig,
        connector: C,
        factory: F,
        observer: SharedObserver,
    ) -> Self {
        let close = cfg.close_on_shutdown;
        Self {
            inner: Arc::new(Inner {
                cfg: Arc::new(cfg),
                connector: Arc::new(connector),
                factory: Arc::new(factory),
                streams: Mutex::default(),
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                generation: AtomicU64::new(0),
                removed: tokio::sync::Notify::new(),
                refused_url: AtomicU64::new(0),
                refused_full: AtomicU64::new(0),
                refused_stopped: AtomicU64::new(0),
                stopped: Mutex::default(),
                close_on_shutdown: Arc::new(std::sync::atomic::AtomicBool::new(close)),
                observer,
                placement: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Runs every stream started from now on where `placement` says; false (and nothing
    /// changes) when a placement was set before.
    pub fn place_on(&self, placement: Arc<dyn Placement>) -> bool {
        self.inner.placement.set(placement).is_ok()
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Acts on a webhook event. Never blocks. Refuses an event whose server URL is not
    /// allowed ([`ClientConfig::allow`]) and a new stream past
    /// [`ClientConfig::max_streams`]; each refusal is counted ([`Sessions::refusals`]).
    pub fn handle(&self, mut ev: WebhookEvent) -> Result<(), Refusal> {
        if let Some(url) = ev.server_url.as_deref().filter(|u| !u.is_empty())
            && let Err(e) = self.inner.cfg.allow.check(url)
        {
            self.inner.refused_url.fetch_add(1, Ordering::Relaxed);
            if ratelog::admit("webhook-url-refused") {
                tracing::warn!(
                    stream_id = %truncated(&ev.stream_id, 64),
                    event = ev.event,
                    reason = %e,
                    "webhook refused: server URL not allowed"
                );
            }
            return Err(Refusal::Unacceptable(format!("server_urls refused: {e}")));
        }
        let input = match ev.action {
            WebhookAction::Started => Input::Started {
                url: ev.server_url.clone().unwrap_or_default(),
            },
            WebhookAction::Interrupted => Input::Interrupted {
                url: ev.server_url.clone(),
            },
            WebhookAction::Stopped => Input::Stopped(ev.stop_reason.unwrap_or(0)),
        };
        let input = {
            let streams = self.streams();
            match streams.get(&ev.stream_id) {
                Some(entry) => match entry.inputs.send(input) {
                    Ok(()) => return Ok(()),
                    Err(mpsc::error::SendError(input)) => input, // it just ended
                },
                None => input,
            }
        };
        match (input, ev.server_url.take()) {
            (Input::Started { .. } | Input::Interrupted { .. }, Some(_))
                if self.operator_stopped(&ev.stream_id) =>
            {
                let total = self.inner.refused_stopped.fetch_add(1, Ordering::Relaxed) + 1;
                if ratelog::admit("webhook-operator-stopped") {
                    tracing::warn!(
                        stream_id = %truncated(&ev.stream_id, 64),
                        event = ev.event,
                        total,
                        "webhook refused: an operator stopped this stream (POST /admin/sessions/stop) within the last {} s",
                        OPERATOR_STOP_GRACE.as_secs()
                    );
                }
                Err(Refusal::Unacceptable(format!(
                    "stream {} was stopped by this host's operator less than {} s ago: not taken again",
                    truncated(&ev.stream_id, 64),
                    OPERATOR_STOP_GRACE.as_secs()
                )))
            }
            (Input::Started { .. } | Input::Interrupted { .. }, Some(url)) if !url.is_empty() => {
                if matches!(ev.action, WebhookAction::Interrupted) {
                    tracing::info!(
                        stream_id = ev.stream_id,
                        "interrupted webhook for an unknown stream carries a URL: taking the stream"
                    );
                }
                self.spawn(start_of(ev, url)).map(drop)
            }
            _ => Err(Refusal::UnknownStream(format!(
                "{} for stream {}, which this host does not run",
                ev.event,
                truncated(&ev.stream_id, 64)
            ))),
        }
    }

    /// Starts a session for a stream. Returns false when the stream already runs here, the
    /// manager is shutting down, the URL is not allowed or [`ClientConfig::max_streams`]
    /// streams run.
    pub fn start(&self, start: SessionStart) -> bool {
        if let Err(e) = self.inner.cfg.allow.check(&start.server_url) {
            self.inner.refused_url.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = %e, "stream not started: server URL not allowed");
            return false;
        }
        self.spawn(start).unwrap_or(false)
    }

    /// Whether an operator stopped `stream_id` within [`OPERATOR_STOP_GRACE`].
    fn operator_stopped(&self, stream_id: &str) -> bool {
        let mut stopped = self.inner.stopped.lock().unwrap_or_else(|p| p.into_inner());
        stopped.holds(stream_id, tokio::time::Instant::now())
    }

    /// Started or interrupted webhooks refused because an operator had stopped their stream
    /// within [`OPERATOR_STOP_GRACE`].
    pub fn refused_operator_stopped(&self) -> u64 {
        self.inner.refused_stopped.load(Ordering::Relaxed)
    }

    /// Counts of refused events: `(server URL not allowed, over max_streams)`.
    pub fn refusals(&self) -> (u64, u64) {
        (
            self.inner.refused_url.load(Ordering::Relaxed),
            self.inner.refused_full.load(Ordering::Relaxed),
        )
    }

    fn spawn(&self, start: SessionStart) -> Result<bool, Refusal> {
        if self.inner.shutdown.is_cancelled() {
            tracing::warn!(
                stream_id = start.ids.stream_id,
                "shutting down: stream not started"
            );
            return Ok(false);
        }
        let mut streams = self.streams();
        if streams.contains_key(&start.ids.stream_id) {
            return Ok(false);
        }
        if streams.len() >= self.inner.cfg.max_streams {
            drop(streams);
            return Err(self.refuse_full(&start.ids.stream_id));
        }
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = session::shared_for(&start, &self.inner.cfg);
        let stream_id = start.ids.stream_id.clone();
        let start_product = start.ids.product;
        let this = self.clone();
        let deps = session::Deps {
            cfg: self.inner.cfg.clone(),
            connector: self.inner.connector.clone(),
            factory: self.inner.factory.clone(),
            observer: self.inner.observer.clone(),
            close_on_shutdown: self.inner.close_on_shutdown.clone(),
        };
        let fut = session::run(
            deps,
            start,
            shared.clone(),
            rx,
            self.inner.shutdown.child_token(),
        );
        let span =
            tracing::info_span!("rtms", stream_id = %stream_id, product = start_product.as_str());
        let fut = tracing::Instrument::instrument(fut, span);
        let key = stream_id.clone();
        let placed = self.inner.placement.get().map(|p| p.place());
        let (runtime, lease) = match placed {
            Some(p) => (Some(p.runtime), Some(p.lease)),
            None => (None, None),
        };
        let task = async move {
            let reason = fut.await;
            // Off its runtime's count before it leaves the map, so that whoever waits for
            // the stream to go sees both.
            drop(lease);
            this.ended(&key, generation);
            reason
        };
        let handle = match runtime {
            Some(rt) => self.inner.tracker.spawn_on(task, &rt),
            None => self.inner.tracker.spawn(task),
        };
        streams.insert(
            stream_id,
            Entry {
                generation,
                inputs: tx,
                shared,
                abort: handle.abort_handle(),
            },
        );
        Ok(true)
    }

    /// Counts and logs a stream refused because the host runs `max_streams`; the refusal.
    fn refuse_full(&self, stream_id: &str) -> Refusal {
        let max = self.inner.cfg.max_streams;
        let n = self.inner.refused_full.fetch_add(1, Ordering::Relaxed) + 1;
        if ratelog::admit("stream-refused-full") {
            tracing::warn!(
                stream_id = %truncated(stream_id, 64),
                max_streams = max,
                refused_so_far = n,
                "stream refused: the host runs max_streams streams (raise rtms.max_streams, or add hosts)"
            );
        }
        Refusal::Busy {
            retry_after: BUSY_RETRY_AFTER,
            reason: format!(
                "this host runs its maximum of {max} streams (rtms.max_streams); retry later"
            ),
        }
    }

    /// Forgets the stream `key` whose task of `generation` ended (unless a newer one took
    /// its place), and wakes whoever waits for a removal.
    fn ended(&self, key: &str, generation: u64) {
        let mut streams = self.streams();
        if streams.get(key).is_some_and(|e| e.generation == generation) {
            streams.remove(key);
            // Give back the room of a burst once it is over.
            if streams.capacity() > 64 && streams.len() < streams.capacity() / 4 {
                streams.shrink_to_fit();
            }
        }
        drop(streams);
        self.inner.removed.notify_waiters();
    }

    /// A plain-data copy of one stream's state.
    pub fn snapshot(&self, stream_id: &str) -> Option<SessionSnapshot> {
        self.streams().get(stream_id).map(|e| e.shared.snapshot())
    }

    /// Copies of every running stream's state.
    pub fn snapshots(&self) -> Vec<SessionSnapshot> {
        self.streams()
            .values()
            .map(|e| e.shared.snapshot())
            .collect()
    }

    /// Ends one stream at Zoom too: the session sends STREAM_CLOSE_REQ and, once Zoom
    /// answers, ends with STOP_REASON 20 (RECEIVER_REQUEST_CLOSE); without an answer within
    /// [`ClientConfig::close_timeout`], or with a refusal, it ends this host's side only, as
    /// a shutdown would. False when no such stream runs here.
    /// The stream is then remembered for [`OPERATOR_STOP_GRACE`]: Zoom still holds it, and its
    /// interrupted or started webhooks within that time are refused (counted, logged) rather
    /// than taking it back.
    pub fn stop(&self, stream_id: &str) -> bool {
        let stopped = self
            .streams()
            .get(stream_id)
            .is_some_and(|e| e.inputs.send(Input::Close).is_ok());
        if stopped {
            self.inner
                .stopped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(stream_id, tokio::time::Instant::now());
        }
        stopped
    }

    /// Ends one stream here only, as a shutdown would (sockets closed, the sink drains), for
    /// another host to take it over; false when no such stream runs here.
    pub fn hand_off(&self, stream_id: &str) -> bool {
        self.send(stream_id, Input::HandOff)
    }

    /// Ends one stream here only and at once (sockets dropped, [`EndReason::Fenced`]): this
    /// host lost its lease. False when no such stream runs here.
    ///
    /// [`EndReason::Fenced`]: crate::sink::EndReason::Fenced
    pub fn fence_off(&self, stream_id: &str) -> bool {
        self.send(stream_id, Input::Fenced)
    }

    /// Pins, drops or releases a participant's individual video on a running stream; false
    /// when no such stream runs here.
    pub fn video(&self, stream_id: &str, cmd: crate::video::Command) -> bool {
        self.send(stream_id, Input::Video(cmd))
    }

    fn send(&self, stream_id: &str, input: Input) -> bool {
        self.streams()
            .get(stream_id)
            .is_some_and(|e| e.inputs.send(input).is_ok())
    }

    /// Whether this host would take `ev`'s server URL ([`ClientConfig::allow`]): a host that
    /// logs webhooks for others refuses the same ones it would refuse itself.
    pub fn check_url(&self, ev: &WebhookEvent) -> Result<(), Refusal> {
        match ev.server_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => self.inner.cfg.allow.check(url).map_err(|e| {
                self.inner.refused_url.fetch_add(1, Ordering::Relaxed);
                Refusal::Unacceptable(format!("server_urls refused: {e}"))
            }),
            None => Ok(()),
        }
    }

    /// The most streams this host runs at once ([`ClientConfig::max_streams`]).
    pub fn max_streams(&self) -> usize {
        self.inner.cfg.max_streams
    }

    /// Running streams.
    pub fn len(&self) -> usize {
        self.streams().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the next [`Sessions::shutdown`] leave every stream open at Zoom whatever
    /// [`ClientConfig::close_on_shutdown`] says: the streams go on elsewhere (a successor
    /// process resumes them, or other hosts of a cluster take them over).
    pub fn keep_streams_at_zoom(&self) {
        self.inner.close_on_shutdown.store(false, Ordering::Relaxed);
    }

    /// Ends every stream with [`EndReason::Shutdown`](crate::sink::EndReason::Shutdown) (sockets closed with a close frame,
    /// sinks ended) and refuses new ones. Streams still running after `grace` are aborted
    /// without their sink's `end`; returns how many were.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let streams: Vec<(String, Entry)> = self.streams().drain().collect();
        for (stream_id, entry) in &streams {
            tracing::error!(
                stream_id,
                ?grace,
                "stream did not end within the shutdown grace period: aborted"
            );
            entry.abort.abort();
        }
        streams.len()
    }

    /// Waits until `stream_id` no longer runs here.
    pub async fn gone(&self, stream_id: &str) {
        loop {
            let removed = self.inner.removed.notified();
            if !self.streams().contains_key(stream_id) {
                return;
            }
            removed.await;
        }
    }

    /// Waits until no stream runs (for tests and orderly exits).
    pub async fn idle(&self) {
        loop {
            let removed = self.inner.removed.notified();
            if self.is_empty() {
                return;
            }
            removed.await;
        }
    }
}

/// What a session for the stream of a started (or interrupted) webhook starts from.
fn start_of(ev: WebhookEvent, server_url: String) -> SessionStart {
    SessionStart {
        ids: StreamIds {
            product: ev.product,
            id: ev.id,
            stream_id: ev.stream_id,
        },
        operator_id: ev.operator_id,
        server_url,
        first_seq: 0,
        details: ev.details,
    }
}

impl<F: SinkFactory, C: Connector> IngressHandler for Sessions<F, C> {
    fn on_event(&self, ev: WebhookEvent) -> crate::ingress::EventFuture<'_> {
        Box::pin(std::future::ready(self.handle(ev)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_stopped_streams_are_bounded_and_expire() {
        let t0 = tokio::time::Instant::now();
        let mut s = StoppedStreams::default();
        for i in 0..MAX_OPERATOR_STOPPED + 10 {
            s.insert(&format!("s{i}"), t0);
        }
        assert_eq!(s.until.len(), MAX_OPERATOR_STOPPED);
        assert_eq!(s.order.len(), MAX_OPERATOR_STOPPED);
        assert!(!s.holds("s0", t0), "the oldest is forgotten first");
        assert!(s.holds(&format!("s{}", MAX_OPERATOR_STOPPED + 9), t0));
        let later = t0 + OPERATOR_STOP_GRACE - Duration::from_secs(1);
        assert!(s.holds("s20", later), "within the grace period");
        assert!(!s.holds("s20", t0 + OPERATOR_STOP_GRACE), "after it");
        assert!(
            s.until.is_empty() && s.order.is_empty(),
            "expired entries leave"
        );
    }
}
