//! One stream's task: drives the [`Machine`] with real (or fake) sockets.
//!
//! The task owns the signaling socket and the media socket(s) of one `rtms_stream_id`. One
//! `select!` waits on: shutdown, webhook inputs from [`crate::Sessions`], the pending
//! connection attempt, the backoff / webhook-wait deadline, a liveness tick, and the next
//! message of any open socket. Messages are handled outside the `select!` (so nothing is
//! lost to cancellation): keep-alives are echoed on the socket they came from, frames get
//! the session's next `seq` and are awaited into the sink right here (no task hop), stream
//! and session states become machine inputs.
//!
//! After every transition the task closes the sockets the new state does not keep
//! ([`State::keeps`]) and starts the attempt the state asks for. Ending closes every socket
//! with a close frame and calls [`FrameSink::end`] once. After Zoom stops a stream the task
//! first drains: it keeps reading every socket still open (frames delivered, keep-alives
//! answered on signaling and media alike) until the server closed them or `stop_drain`
//! passed.
//!
//! Unified mode opens one socket on `server_urls.all`; when a msg 2 names per-type URLs but
//! no `all`, that connection opens one socket per type instead (as split mode does).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtms_proto::Product;
use rtms_proto::codes::{event_type, media_type, session_state, status, stop_reason, stream_state};
use rtms_proto::msg::{MediaServerUrls, SessionStateUpdate, StreamStateUpdate};
use rtms_proto::params::MediaParams;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::codec::{Codec as _, WIRE};
use crate::config::{ClientConfig, MediaMode};
use crate::decode::Decoded;
use crate::frame::{Frame, MediaKind};
use crate::link::{self, ConnectError, Role, StreamIds};
use crate::machine::{Input, Machine, Reopen, State};
use crate::observe::{Scope, SharedObserver};
use crate::sink::{EndReason, FrameSink, GiveUp, SinkFactory, StreamInfo, StreamStatus};
use crate::transport::{Connector, Transport};

/// How long a closing socket may take to send its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A session's state as plain data: what another host would need to take the stream over.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionSnapshot {
    pub stream_id: String,
    pub product: Product,
    /// Meeting uuid / webinar uuid / session id / engagement id.
    pub meeting_id: String,
    pub operator_id: Option<String>,
    /// The signaling URL in use.
    pub server_url: String,
    /// Media URLs from the last signaling handshake.
    pub media_urls: Option<MediaServerUrls>,
    /// Media parameters as confirmed by the last data handshake(s), else as requested.
    pub media_params: MediaParams,
    /// The `seq` the next frame gets.
    pub next_seq: u64,
    /// The machine's state name (`streaming`, `backoff`, ...).
    pub state: &'static str,
    /// What the started webhook carried besides the ids (April 2026 fields).
    pub details: rtms_proto::webhook::StartedDetails,
}

/// What the session shares with its manager.
pub(crate) struct Shared {
    snapshot: Mutex<SessionSnapshot>,
    next_seq: AtomicU64,
}

impl Shared {
    pub(crate) fn snapshot(&self) -> SessionSnapshot {
        let mut s = self
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        s.next_seq = self.next_seq.load(Ordering::Relaxed);
        s
    }

    fn update(&self, f: impl FnOnce(&mut SessionSnapshot)) {
        f(&mut self.snapshot.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Everything a session starts from.
pub struct SessionStart {
    pub ids: StreamIds,
    pub operator_id: Option<String>,
    /// The signaling URL (`server_urls` of the started webhook).
    pub server_url: String,
    /// The first `seq` (0 for a new stream; a takeover continues another host's count).
    pub first_seq: u64,
    /// The started webhook's fields of April 2026 (default when the stream was not started
    /// by a webhook here: a takeover, a journal resume).
    pub details: rtms_proto::webhook::StartedDetails,
}

/// An open socket.
struct Link<T> {
    conn: T,
    role: Role,
    url: String,
    last_rx: Instant,
}

/// A finished connection attempt.
enum Opened<T> {
    Full {
        signaling: Link<T>,
        media: Vec<Link<T>>,
        urls: MediaServerUrls,
        params: Option<MediaParams>,
    },
    Media {
        media: Vec<Link<T>>,
        params: Option<MediaParams>,
    },
}

type Attempt<T> = Pin<Box<dyn Future<Output = Result<Opened<T>, ConnectError>> + Send>>;

/// Creates the shared part of a session.
pub(crate) fn shared_for(start: &SessionStart, cfg: &ClientConfig) -> Arc<Shared> {
    Arc::new(Shared {
        snapshot: Mutex::new(SessionSnapshot {
            stream_id: start.ids.stream_id.clone(),
            product: start.ids.product,
            meeting_id: start.ids.id.clone(),
            operator_id: start.operator_id.clone(),
            server_url: start.server_url.clone(),
            media_urls: None,
            media_params: cfg.media_params.clone(),
            next_seq: start.first_seq,
            state: "connecting",
            details: start.details.clone(),
        }),
        next_seq: AtomicU64::new(start.first_seq),
    })
}

/// What every session of a manager shares.
pub(crate) struct Deps<C, F> {
    pub cfg: Arc<ClientConfig>,
    pub connector: Arc<C>,
    pub factory: Arc<F>,
    pub observer: SharedObserver,
    /// Whether a shutdown closes the stream at Zoom ([`ClientConfig::close_on_shutdown`],
    /// unless the streams go on elsewhere: `Sessions::keep_streams_at_zoom`).
    pub close_on_shutdown: Arc<std::sync::atomic::AtomicBool>,
}

/// Runs one stream until it ends; returns why.
pub(crate) async fn run<C: Connector, F: SinkFactory>(
    deps: Deps<C, F>,
    start: SessionStart,
    shared: Arc<Shared>,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    shutdown: CancellationToken,
) -> EndReason {
    let mut d = Driver::new(deps, start, shared);
    tracing::info!(server_url = d.machine.url(), "stream starting");
    let mut attempt: Option<Attempt<C::Conn>> = None;
    let period = d
        .cfg
        .resilience
        .keepalive_timeout
        .min(d.cfg.resilience.keepalive_interval)
        / 4;
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        let state = d.machine.state();
        if let State::Ended(reason) = state {
            break reason;
        }
        if attempt.is_none() {
            if state.connects() && !d.factory.admits(&d.ids.stream_id) {
                d.machine.handle(Input::Fenced, Instant::now(), 0.0);
                continue;
            }
            attempt = d.start_attempt(state);
        }
        let deadline = match state {
            State::Backoff { until, .. } | State::AwaitingWebhook { until } => Some(until),
            _ => None,
        };
        let has_links = d.signaling.is_some() || !d.media.is_empty();
        let rotate = d.rotate;
        let closing = d.closing;
        let input = tokio::select! {
            biased;
            () = shutdown.cancelled(), if closing.is_none() => Some(d.on_shutdown()),
            () = sleep_until_opt(closing), if closing.is_some() => Some(d.close_timed_out()),
            cmd = inputs.recv() => match cmd {
                Some(Input::Video(cmd)) => {
                    (!d.video_command(cmd).await).then_some(Input::SignalingLost)
                }
                cmd => Some(cmd.unwrap_or(Input::Shutdown)),
            },
            res = poll_attempt(&mut attempt) => {
                attempt = None;
                d.on_attempt(res).await
            }
            () = sleep_until_opt(deadline) => Some(Input::TimerElapsed),
            _ = tick.tick() => d.on_tick().await,
            (which, item) = next_message(&mut d.signaling, &mut d.media, rotate), if has_links => {
                d.rotate = d.rotate.wrapping_add(1);
                d.on_message(which, item).await
            }
        };
        let input = match input {
            Some(Input::Close) => d.begin_close().await,
            Some(input) if d.closing.is_some() => d.while_closing(input),
            other => other,
        };
        if let Some(input) = input {
            let before = d.machine.state();
            let cause = cause_of(&input);
            if d.machine.handle(input, Instant::now(), rand::random()) {
                attempt = None;
                d.on_transition(before, cause).await;
            }
        }
    };
    if let EndReason::Stopped(_) = reason {
        d.drain(&shutdown).await;
    }
    d.finish(reason).await;
    reason
}

impl<C: Connector, F: SinkFactory> Driver<C, F> {
    /// A stream's driver before its first connection attempt.
    fn new(deps: Deps<C, F>, start: SessionStart, shared: Arc<Shared>) -> Self {
        let Deps {
            cfg,
            connector,
            factory,
            observer,
            close_on_shutdown,
        } = deps;
        let video = cfg.video.clone().map(crate::video::Follower::new);
        Driver::<C, F> {
            observer,
            started: Instant::now(),
            first_frame_seen: false,
            awaiting_flow: false,
            ping_sent: None,
            attempt_scope: Scope::Full,
            machine: Machine::new(cfg.resilience.clone(), start.server_url.clone()),
            cfg,
            connector,
            factory,
            ids: start.ids,
            operator_id: start.operator_id,
            details: start.details,
            first_url: start.server_url,
            signaling: None,
            media: Vec::new(),
            media_urls: None,
            params: None,
            sink: None,
            shared,
            next_seq: start.first_seq,
            handshake_seq: u64::from(rand::random::<u32>()),
            rotate: 0,
            last_ping: Instant::now(),
            video,
            closing: None,
            close_on_shutdown,
        }
    }
}

/// The input for losing a socket: the signaling socket, or a media one.
fn lost_input(which: Which) -> Input {
    match which {
        None => Input::SignalingLost,
        Some(_) => Input::MediaLost,
    }
}

/// The metrics label of what made a stream reconnect.
fn cause_of(input: &Input) -> &'static str {
    match input {
        Input::SignalingLost => "signaling_lost",
        Input::MediaLost => "media_lost",
        Input::MediaInterrupted => "media_interrupted",
        Input::Interrupted { .. } => "interrupted_webhook",
        Input::ConnectFailed { .. } => "connect_failed",
        Input::Started { .. } => "failover",
        _ => "other",
    }
}

/// Which socket a message came from: `None` for signaling, else the media index.
type Which = Option<usize>;

struct Driver<C: Connector, F: SinkFactory> {
    observer: SharedObserver,
    /// When the session was created (its started webhook).
    started: Instant,
    first_frame_seen: bool,
    /// The connection now streaming has delivered no frame yet: the first one is reported
    /// to the machine ([`Input::Flowing`]), which confirms a reconnection with it.
    awaiting_flow: bool,
    /// When the unanswered WebSocket ping on the signaling socket was sent.
    ping_sent: Option<Instant>,
    /// What the attempt in flight (re)opens.
    attempt_scope: Scope,
    cfg: Arc<ClientConfig>,
    connector: Arc<C>,
    factory: Arc<F>,
    ids: StreamIds,
    operator_id: Option<String>,
    details: rtms_proto::webhook::StartedDetails,
    first_url: String,
    machine: Machine,
    signaling: Option<Link<C::Conn>>,
    media: Vec<Link<C::Conn>>,
    media_urls: Option<MediaServerUrls>,
    /// Confirmed media parameters.
    params: Option<MediaParams>,
    sink: Option<F::Sink>,
    shared: Arc<Shared>,
    next_seq: u64,
    handshake_seq: u64,
    rotate: usize,
    last_ping: Instant,
    /// Whose individual video to subscribe to, when the video socket asks for one.
    video: Option<crate::video::Follower>,
    /// While a STREAM_CLOSE_REQ awaits its answer: until when.
    closing: Option<Instant>,
    close_on_shutdown: Arc<std::sync::atomic::AtomicBool>,
}

impl<C: Connector, F: SinkFactory> Driver<C, F> {
    /// The connection attempt `state` asks for, if any.
    fn start_attempt(&mut self, state: State) -> Option<Attempt<C::Conn>> {
        self.handshake_seq = self.handshake_seq.wrapping_add(1);
        let seq = self.handshake_seq;
        let cfg = self.cfg.clone();
        let connector = self.connector.clone();
        let ids = self.ids.clone();
        match state {
            State::Connecting { attempt } => {
                let url = self.machine.url().to_owned();
                tracing::debug!(attempt, url, "connecting signaling and media");
                self.attempt_scope = Scope::Full;
                self.observer.attempt(Scope::Full);
                Some(Box::pin(async move {
                    open_full(&*connector, &cfg, &ids, url, seq).await
                }))
            }
            State::ConnectingMedia { attempt } => {
                let urls = self.media_urls.clone().unwrap_or_default();
                let sig_url = self.machine.url().to_owned();
                tracing::debug!(attempt, "reconnecting media");
                self.attempt_scope = Scope::Media;
                self.observer.attempt(Scope::Media);
                Some(Box::pin(async move {
                    let (media, params) =
                        open_media_all(&*connector, &cfg, &ids, &urls, &sig_url, seq).await?;
                    Ok(Opened::Media { media, params })
                }))
            }
            _ => None,
        }
    }

    /// Installs a successful attempt's sockets, or reports the failure.
    async fn on_attempt(&mut self, res: Result<Opened<C::Conn>, ConnectError>) -> Option<Input> {
        match res {
            Ok(Opened::Full {
                signaling,
                media,
                urls,
                params,
            }) => {
                self.signaling = Some(signaling);
                self.media = media;
                self.media_urls = Some(urls);
                if params.is_some() {
                    self.params = params;
                }
                if !self.resubscribe_video().await {
                    return Some(Input::SignalingLost);
                }
                Some(Input::Connected)
            }
            Ok(Opened::Media { media, params }) => {
                let count = media.len();
                self.media = media;
                if params.is_some() {
                    self.params = params;
                }
                // CLIENT_READY_ACK goes on the signaling socket, once per media socket.
                for _ in 0..count {
                    if !self
                        .send_signaling(link::ready_ack(&self.ids.stream_id))
                        .await
                    {
                        return Some(Input::SignalingLost);
                    }
                }
                if !self.resubscribe_video().await {
                    return Some(Input::SignalingLost);
                }
                Some(Input::MediaConnected)
            }
            Err(e) => {
                let duplicate = e.is_duplicate();
                self.observer.attempt_failed(self.attempt_scope, duplicate);
                if let Some((what, name)) = e.refusal() {
                    self.observer.refusal(what, name);
                }
                if crate::ratelog::admit("stream-connect-failed") {
                    tracing::warn!(error = %e, duplicate, "connection attempt failed");
                }
                Some(Input::ConnectFailed { duplicate })
            }
        }
    }

    async fn send_signaling(&mut self, m: Message) -> bool {
        match self.signaling.as_mut() {
            Some(l) => l.conn.send(m).await.is_ok(),
            None => false,
        }
    }

    /// Liveness: a socket silent for `keepalive_timeout` is dead. Also sends pings.
    async fn on_tick(&mut self) -> Option<Input> {
        let now = Instant::now();
        let r = &self.cfg.resilience;
        let dead =
            |l: &Link<C::Conn>| now.saturating_duration_since(l.last_rx) >= r.keepalive_timeout;
        if let Some(l) = self.signaling.as_ref().filter(|l| dead(l)) {
            tracing::warn!(url = l.url, timeout = ?r.keepalive_timeout, "signaling socket silent (no data, no keep-alive): treating it as dead");
            self.signaling = None;
            return Some(Input::SignalingLost);
        }
        if let Some(i) = self.media.iter().position(dead) {
            let l = self.media.remove(i);
            tracing::warn!(url = l.url, timeout = ?r.keepalive_timeout, "media socket silent (no data, no keep-alive): treating it as dead");
            return Some(Input::MediaLost);
        }
        if r.ws_ping && now.saturating_duration_since(self.last_ping) >= r.keepalive_interval {
            self.last_ping = now;
            if self.signaling.is_some() {
                // Pongs come in order: time the oldest unanswered ping.
                self.ping_sent.get_or_insert(now);
            }
            if let Some(l) = self.signaling.as_mut()
                && l.conn
                    .send(Message::Ping(Default::default()))
                    .await
                    .is_err()
            {
                self.signaling = None;
                return Some(Input::SignalingLost);
            }
            for i in 0..self.media.len() {
                if self.media[i]
                    .conn
                    .send(Message::Ping(Default::default()))
                    .await
                    .is_err()
                {
                    self.media.remove(i);
                    return Some(Input::MediaLost);
                }
            }
        }
        None
    }

    /// Handles one received item of a socket.
    async fn on_message(
        &mut self,
        which: Which,
        item: Option<Result<Message, WsError>>,
    ) -> Option<Input> {
        let msg = match self.socket_item(which, item) {
            Ok(msg) => msg,
            Err(input) => return input,
        };
        let link = match which {
            None => self.signaling.as_mut()?,
            Some(i) => self.media.get_mut(i)?,
        };
        let read_at = std::time::Instant::now();
        link.last_rx = Instant::now();
        let bytes = link::data_bytes(&msg)?;
        let decoded = match WIRE.decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                self.observer.undecodable();
                if crate::ratelog::admit("undecodable-message") {
                    tracing::warn!(role = link.role.name(), error = %e, "undecodable message skipped (counted in rtms_undecodable_messages_total; further ones are logged at most every few seconds)");
                }
                return None;
            }
        };
        match decoded {
            Decoded::KeepAlive {
                timestamp,
                sequence,
            } => {
                if link
                    .conn
                    .send(link::keepalive_response(timestamp, sequence))
                    .await
                    .is_err()
                {
                    tracing::warn!(role = link.role.name(), "keep-alive answer failed");
                    self.drop_link(which);
                    return Some(lost_input(which));
                }
                None
            }
            Decoded::Frame(frame) => self.on_frame(frame, read_at).await,
            Decoded::StreamState(s) => self.on_stream_state(&s),
            Decoded::VideoSubscription(r) => {
                self.on_video_answer(&r);
                None
            }
            Decoded::SessionState(s) => self.on_session_state(&s),
            Decoded::StreamClose(r) => self.on_close_answer(r.status_code, r.reason),
            other => {
                tracing::debug!(?other, "message ignored while streaming");
                None
            }
        }
    }

    /// The message of a socket's item; a close, an error or the end drops the socket (the
    /// input says which was lost), a signaling pong is a keep-alive round trip (no input).
    fn socket_item(
        &mut self,
        which: Which,
        item: Option<Result<Message, WsError>>,
    ) -> Result<Message, Option<Input>> {
        match item {
            Some(Ok(Message::Close(frame))) => {
                // A normal close is how Zoom ends a stream; anything else is worth a warning.
                let normal = frame.as_ref().is_none_or(|f| {
                    f.code == tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal
                });
                if normal {
                    tracing::info!(socket = ?which, ?frame, "server closed the socket");
                } else {
                    tracing::warn!(socket = ?which, ?frame, "server closed the socket");
                }
            }
            Some(Ok(Message::Pong(_))) if which.is_none() => {
                if let Some(sent) = self.ping_sent.take() {
                    self.observer.keepalive_rtt(sent.elapsed());
                }
                if let Some(l) = self.signaling.as_mut() {
                    l.last_rx = Instant::now();
                }
                return Err(None);
            }
            Some(Ok(m)) => return Ok(m),
            Some(Err(e)) => tracing::warn!(socket = ?which, error = %e, "socket failed"),
            None => tracing::warn!(socket = ?which, "socket ended"),
        }
        self.drop_link(which);
        Err(Some(lost_input(which)))
    }

    /// A media frame: numbered, timed, handed to the sink; an interruption event or the
    /// first frame of a new connection is an input for the machine.
    async fn on_frame(&mut self, mut frame: Frame, read_at: std::time::Instant) -> Option<Input> {
        let media_interrupted = frame.kind == MediaKind::Event
            && frame.event_type == Some(event_type::MEDIA_CONNECTION_INTERRUPTED);
        if frame.kind == MediaKind::Event && !self.follow_video(&frame).await {
            return Some(Input::SignalingLost);
        }
        frame.seq = self.next_seq;
        frame.received_at = Some(read_at);
        self.next_seq += 1;
        if !self.first_frame_seen {
            self.first_frame_seen = true;
            self.observer.first_frame(self.started.elapsed());
        }
        self.shared.next_seq.store(self.next_seq, Ordering::Relaxed);
        match &self.sink {
            Some(sink) => sink.frame(frame).await,
            None => {
                tracing::debug!(seq = frame.seq, "frame before the sink opened, dropped")
            }
        }
        if media_interrupted {
            tracing::warn!(
                "Zoom reports the media connection interrupted (event 7): reconnecting media"
            );
            return Some(Input::MediaInterrupted);
        }
        if self.awaiting_flow {
            self.awaiting_flow = false;
            return Some(Input::Flowing);
        }
        None
    }

    /// A stream state update (msg 8): terminated or a media interruption are inputs, any
    /// other state is reported to the sink.
    fn on_stream_state(&mut self, s: &StreamStateUpdate) -> Option<Input> {
        tracing::info!(
            state = s.state,
            reason = s.reason,
            reason_name = stop_reason::name(s.reason),
            "stream state update"
        );
        match (s.state, s.reason) {
            (stream_state::TERMINATED, r) => Some(Input::Stopped(r)),
            (stream_state::INTERRUPTED, stop_reason::DATA_CONNECTION_INTERRUPTED) => {
                Some(Input::MediaInterrupted)
            }
            _ => {
                self.status(StreamStatus::StateChanged {
                    stream_state: Some(s.state),
                    session_state: None,
                    reason: s.reason,
                });
                None
            }
        }
    }

    /// A session state update (msg 9): stopped is an input, any other state is reported.
    fn on_session_state(&mut self, s: &SessionStateUpdate) -> Option<Input> {
        let reason = if s.stop_reason != 0 {
            s.stop_reason
        } else {
            s.reason
        };
        tracing::info!(
            state = s.state,
            reason,
            session = s.rtms_session_id,
            "session state update"
        );
        if s.state == session_state::STOPPED {
            return Some(Input::Stopped(reason));
        }
        self.status(StreamStatus::StateChanged {
            stream_state: None,
            session_state: Some(s.state),
            reason,
        });
        None
    }

    /// Shutdown: closes the stream at Zoom when the host is configured to
    /// ([`ClientConfig::close_on_shutdown`]), else ends this side only.
    fn on_shutdown(&mut self) -> Input {
        if self.close_on_shutdown.load(Ordering::Relaxed) {
            Input::Close
        } else {
            Input::Shutdown
        }
    }

    /// Asks Zoom to end the stream (msg 21 on signaling) and waits up to
    /// [`ClientConfig::close_timeout`] for its answer; without a signaling socket the stream
    /// ends on this side only.
    async fn begin_close(&mut self) -> Option<Input> {
        if self.closing.is_some() {
            return None;
        }
        let timeout = self.cfg.close_timeout;
        if self.signaling.is_none() {
            tracing::info!(
                state = self.machine.state().name(),
                "closing the stream: no signaling socket to send STREAM_CLOSE_REQ on, so only this host's side ends"
            );
            return Some(Input::Shutdown);
        }
        if !self
            .send_signaling(link::stream_close(&self.ids.stream_id))
            .await
        {
            tracing::warn!(
                "closing the stream: STREAM_CLOSE_REQ could not be sent (signaling socket failed); only this host's side ends"
            );
            return Some(Input::Shutdown);
        }
        tracing::info!(
            ?timeout,
            "asked Zoom to close the stream (STREAM_CLOSE_REQ)"
        );
        self.closing = Some(Instant::now() + timeout);
        None
    }

    /// An input while STREAM_CLOSE_REQ awaits its answer: losing signaling or a change of
    /// connection ends this side; media sockets Zoom closes as it ends the stream are let go.
    fn while_closing(&mut self, input: Input) -> Option<Input> {
        match input {
            Input::MediaLost | Input::MediaInterrupted | Input::Close => None,
            Input::SignalingLost
            | Input::ConnectFailed { .. }
            | Input::Interrupted { .. }
            | Input::Started { .. } => {
                tracing::warn!(
                    cause = cause_of(&input),
                    "the connection changed before Zoom answered STREAM_CLOSE_REQ: only this host's side ends"
                );
                Some(Input::Shutdown)
            }
            other => Some(other),
        }
    }

    /// No answer to STREAM_CLOSE_REQ in time.
    fn close_timed_out(&mut self) -> Input {
        self.closing = None;
        tracing::warn!(
            timeout = ?self.cfg.close_timeout,
            "Zoom did not answer STREAM_CLOSE_REQ in time (rtms.close_timeout_ms): only this host's side ends"
        );
        self.observer.refusal("stream_close", "TIMEOUT");
        Input::Shutdown
    }

    /// msg 22: success ends the stream with STOP_REASON 20 (RECEIVER_REQUEST_CLOSE); a
    /// refusal is logged and counted by its name, and only this side ends.
    fn on_close_answer(&mut self, code: u32, reason: Option<String>) -> Option<Input> {
        if self.closing.take().is_none() {
            tracing::debug!(code, "STREAM_CLOSE_RESP without a request: ignored");
            return None;
        }
        if code == status::OK {
            tracing::info!("Zoom closed the stream at this host's request (STREAM_CLOSE_RESP)");
            return Some(Input::Stopped(stop_reason::RECEIVER_REQUEST_CLOSE));
        }
        let name = status::name(code);
        self.observer.refusal("stream_close", name);
        tracing::warn!(
            code,
            status = name,
            reason = reason.as_deref().unwrap_or(""),
            "Zoom refused STREAM_CLOSE_REQ: only this host's side ends"
        );
        Some(Input::Shutdown)
    }

    fn drop_link(&mut self, which: Which) {
        match which {
            None => self.signaling = None,
            Some(i) if i < self.media.len() => {
                self.media.remove(i);
            }
            Some(_) => {}
        }
    }

    fn status(&self, status: StreamStatus) {
        if let Some(sink) = &self.sink {
            sink.status(status);
        }
    }

    /// Side effects of a state change: close what the state does not keep, open the sink,
    /// report the change.
    async fn on_transition(&mut self, before: State, cause: &'static str) {
        let state = self.machine.state();
        // Ended: `finish` drains and closes the sockets.
        let (keep_signaling, keep_media) = match state {
            State::Ended(_) => (true, true),
            _ => state.keeps(),
        };
        if !keep_media {
            for l in std::mem::take(&mut self.media) {
                close(l).await;
            }
        }
        if !keep_signaling && let Some(l) = self.signaling.take() {
            close(l).await;
        }
        let url = self.machine.url().to_owned();
        self.shared.update(|s| {
            s.state = state.name();
            s.server_url = url.clone();
            s.media_urls = self.media_urls.clone();
            if let Some(p) = &self.params {
                s.media_params = p.clone();
            }
        });
        match state {
            State::Streaming { .. } => {
                self.awaiting_flow = true;
                if self.sink.is_none() {
                    self.open_sink();
                }
                tracing::info!(
                    server_url = url,
                    media_sockets = self.media.len(),
                    "streaming"
                );
                self.status(StreamStatus::Connected {
                    server_url: url,
                    media_sockets: self.media.len(),
                });
            }
            State::Backoff { delay, reopen, .. } => {
                let attempt = self.machine.attempts();
                let status = match reopen {
                    Reopen::Full => StreamStatus::Reconnecting { attempt, delay },
                    Reopen::Media => StreamStatus::MediaReconnecting { attempt, delay },
                };
                tracing::info!(?reopen, attempt, ?delay, "reconnecting after a delay");
                self.observer.reconnecting(
                    match reopen {
                        Reopen::Full => Scope::Full,
                        Reopen::Media => Scope::Media,
                    },
                    cause,
                );
                self.status(status);
            }
            State::Connecting { attempt: 1 } if !matches!(before, State::Backoff { .. }) => {
                tracing::warn!(
                    server_url = url,
                    "failover: restarting on the signaling URL of the new started webhook"
                );
                self.status(StreamStatus::Failover { server_url: url });
            }
            State::AwaitingWebhook { .. } => {
                let timeout = self.cfg.resilience.webhook_wait_timeout;
                let reason = self.machine.gave_up().unwrap_or(GiveUp::Reconnect);
                self.log_give_up(reason, timeout);
                self.observer.gave_up();
                self.status(StreamStatus::AwaitingWebhook { timeout, reason });
            }
            _ => {}
        }
    }

    /// One line saying why reconnecting stopped and which setting would have let it go on.
    fn log_give_up(&self, reason: GiveUp, timeout: Duration) {
        let r = &self.cfg.resilience;
        let admitted = crate::ratelog::admit(match reason {
            GiveUp::Connect => "stream-gave-up-connect",
            GiveUp::Reconnect => "stream-gave-up-reconnect",
            GiveUp::Flapping => "stream-gave-up-flapping",
        });
        if !admitted {
            return;
        }
        let cause = reason.as_str();
        match reason {
            GiveUp::Connect => tracing::error!(
                cause,
                attempts = r.connection_max_attempts,
                ?timeout,
                "giving up: every connection attempt failed (rtms.connection_max_attempts); waiting for a new started webhook before ending the stream"
            ),
            GiveUp::Reconnect => tracing::error!(
                cause,
                attempts = r.reconnect_max_attempts.max(1),
                ?timeout,
                "giving up: every reconnection attempt of this outage failed or dropped before frames flowed (rtms.reconnect_max_attempts); waiting for a new started webhook before ending the stream"
            ),
            GiveUp::Flapping => tracing::error!(
                cause,
                reconnections = r.reconnect_flap_max,
                window = ?r.reconnect_flap_window,
                ?timeout,
                "giving up: the stream reconnected rtms.reconnect_flap_max times within rtms.reconnect_flap_window_ms and lost its connection again (raise reconnect_flap_max or shorten reconnect_flap_window_ms to allow more); waiting for a new started webhook before ending the stream"
            ),
        }
    }

    fn open_sink(&mut self) {
        let audio = self
            .params
            .as_ref()
            .and_then(|p| p.audio.clone())
            .or_else(|| self.cfg.media_params.audio.clone())
            .unwrap_or_default()
            .resolved();
        let info = StreamInfo {
            product: self.ids.product,
            meeting_id: self.ids.id.clone(),
            stream_id: self.ids.stream_id.clone(),
            operator_id: self.operator_id.clone(),
            server_url: self.first_url.clone(),
            started_at_ms: rtms_proto::unix_ms(),
            audio,
            details: self.details.clone(),
        };
        self.sink = Some(self.factory.open(&info));
    }

    /// After a stop: delivers what the sockets still hold and answers keep-alives on every
    /// socket, until the server closed them all, `stop_drain` passed, or shutdown. The stop
    /// comes on signaling (or by webhook) and can overtake frames still queued on media.
    async fn drain(&mut self, shutdown: &CancellationToken) {
        let bound = self.cfg.resilience.stop_drain;
        let started = Instant::now();
        let deadline = started + bound;
        let seq_before = self.next_seq;
        if let Some(sink) = &self.sink {
            sink.draining(deadline);
        }
        let mut cut = false;
        while self.signaling.is_some() || !self.media.is_empty() {
            let rotate = self.rotate;
            self.rotate = self.rotate.wrapping_add(1);
            // The bound covers delivering a message as well as waiting for one: a sink held
            // up by a full plugin queue cannot stretch the drain, nor can a server that keeps
            // the sockets full.
            let step = async {
                let (which, item) =
                    next_message(&mut self.signaling, &mut self.media, rotate).await;
                // Inputs are moot now: the stream has ended.
                let _ = self.on_message(which, item).await;
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                r = tokio::time::timeout_at(deadline, step) => if r.is_err() {
                    cut = true;
                    break;
                },
            }
            // A ready message would otherwise win over a passed deadline every time.
            if Instant::now() >= deadline && (self.signaling.is_some() || !self.media.is_empty()) {
                cut = true;
                break;
            }
        }
        let delivered = self.next_seq - seq_before;
        let took = started.elapsed();
        if cut {
            tracing::warn!(
                ?bound,
                delivered,
                open_sockets = usize::from(self.signaling.is_some()) + self.media.len(),
                "stop drain bound reached: closing the sockets still open; what they still carry is not delivered (raise rtms.stop_drain_ms to wait longer)"
            );
        } else {
            tracing::debug!(?took, delivered, "stop drain finished");
        }
    }

    /// Closes every socket with a close frame (a fenced stream's are dropped: nothing more
    /// is written) and ends the sink.
    async fn finish(mut self, reason: EndReason) {
        let media = std::mem::take(&mut self.media);
        let signaling = self.signaling.take();
        if reason != EndReason::Fenced {
            for l in media {
                close(l).await;
            }
            if let Some(l) = signaling {
                close(l).await;
            }
        }
        self.shared.update(|s| s.state = "ended");
        match reason {
            EndReason::ConnectionLost => {
                if crate::ratelog::admit("stream-connection-lost") {
                    let cause = self.machine.gave_up().map(GiveUp::as_str);
                    tracing::error!(cause, "stream ended: connection lost for good")
                }
            }
            EndReason::Stopped(stop_reason::RECEIVER_REQUEST_CLOSE) => tracing::info!(
                reason = reason.name(),
                "stream ended: Zoom closed it at this host's request"
            ),
            EndReason::Stopped(r) => tracing::info!(
                reason = r,
                reason_name = stop_reason::name(r),
                "stream stopped by Zoom"
            ),
            EndReason::Shutdown => tracing::info!("stream ended for shutdown"),
            EndReason::HandedOff => tracing::info!("stream handed over to another host"),
            EndReason::Fenced => {
                tracing::warn!("stream dropped here: this host lost its lease to another")
            }
        }
        if let Some(sink) = self.sink.take() {
            sink.end(reason).await;
        }
    }
}

/// Sends a close frame (bounded by [`CLOSE_GRACE`]) and drops the socket.
async fn close<T: Transport>(mut l: Link<T>) {
    let _ = tokio::time::timeout(CLOSE_GRACE, l.conn.close()).await;
}

/// Opens signaling (+ msg 5), then every media socket, then sends the ready acks.
async fn open_full<C: Connector>(
    connector: &C,
    cfg: &ClientConfig,
    ids: &StreamIds,
    url: String,
    seq: u64,
) -> Result<Opened<C::Conn>, ConnectError> {
    let timeout = cfg.resilience.connection_timeout;
    let req = link::signaling_request(cfg, ids, seq);
    let (mut conn, resp) = link::open_signaling(connector, &url, &req, timeout).await?;
    let transport = |source| ConnectError::Transport {
        role: "signaling",
        url: url.clone(),
        source,
    };
    if let Some(sub) = link::subscription(&cfg.subscribed_events()) {
        conn.send(sub).await.map_err(transport)?;
    }
    let urls = resp.media_server.map(|m| m.server_urls).unwrap_or_default();
    let (media, params) = open_media_all(connector, cfg, ids, &urls, &url, seq).await?;
    for _ in 0..media.len() {
        conn.send(link::ready_ack(&ids.stream_id))
            .await
            .map_err(transport)?;
    }
    let signaling = Link {
        conn,
        role: Role::Signaling,
        url,
        last_rx: Instant::now(),
    };
    Ok(Opened::Full {
        signaling,
        media,
        urls,
        params,
    })
}

/// Opens the media socket(s) the configuration asks for, one after another.
async fn open_media_all<C: Connector>(
    connector: &C,
    cfg: &ClientConfig,
    ids: &StreamIds,
    urls: &MediaServerUrls,
    signaling_url: &str,
    seq: u64,
) -> Result<(Vec<Link<C::Conn>>, Option<MediaParams>), ConnectError> {
    let mut links = Vec::new();
    let mut confirmed: Option<MediaParams> = None;
    for mask in media_masks(cfg, urls, signaling_url) {
        let url = urls.for_bit(mask).ok_or_else(|| ConnectError::NoMediaUrl {
            url: signaling_url.to_owned(),
            mask,
        })?;
        cfg.allow
            .check(url)
            .map_err(|source| ConnectError::NotAllowed {
                role: "media",
                source,
            })?;
        let req = link::media_request(cfg, ids, mask, seq);
        let (conn, resp) =
            link::open_media(connector, url, &req, cfg.resilience.connection_timeout).await?;
        if let Some(p) = resp.media_params {
            let c = confirmed.get_or_insert_with(MediaParams::default);
            c.audio = c.audio.take().or(p.audio);
            c.video = c.video.take().or(p.video);
            c.deskshare = c.deskshare.take().or(p.deskshare);
            c.transcript = c.transcript.take().or(p.transcript);
            c.chat = c.chat.take().or(p.chat);
        }
        links.push(Link {
            conn,
            role: Role::Media(mask),
            url: url.to_owned(),
            last_rx: Instant::now(),
        });
    }
    Ok((links, confirmed))
}

/// The media sockets to open for one connection: the configured ones, except that unified
/// mode opens one socket per type when msg 2 names no `all` URL (a per-type map only).
fn media_masks(cfg: &ClientConfig, urls: &MediaServerUrls, signaling_url: &str) -> Vec<u32> {
    let masks = cfg.media_sockets();
    if cfg.mode != MediaMode::Unified || urls.all.is_some() {
        return masks;
    }
    let split: Vec<u32> = masks.iter().flat_map(|&m| media_type::bits(m)).collect();
    if split != masks {
        tracing::info!(
            signaling_url,
            sockets = split.len(),
            "msg 2 names per-type media URLs but no `all` URL: unified mode opens one media socket per type for this connection"
        );
    }
    split
}

/// Awaits the pending attempt; never resolves when there is none.
async fn poll_attempt<T>(attempt: &mut Option<Attempt<T>>) -> Result<Opened<T>, ConnectError> {
    match attempt.as_mut() {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The next item of any open socket, in rotating order so no socket starves another.
fn next_message<'a, T: Transport>(
    signaling: &'a mut Option<Link<T>>,
    media: &'a mut [Link<T>],
    rotate: usize,
) -> impl Future<Output = (Which, Option<Result<Message, WsError>>)> + 'a {
    poll_fn(move |cx| {
        // Slot 0 is signaling, slot i + 1 is media socket i.
        let n = media.len() + 1;
        for k in 0..n {
            let slot = (k + rotate) % n;
            if slot == 0 {
                if let Some(l) = signaling.as_mut()
                    && let Poll::Ready(item) = l.conn.poll_next_unpin(cx)
                {
                    return Poll::Ready((None, item));
                }
            } else if let Poll::Ready(item) = media[slot - 1].conn.poll_next_unpin(cx) {
                return Poll::Ready((Some(slot - 1), item));
            }
        }
        Poll::Pending
    })
}

mod video;

#[cfg(test)]
mod tests;
