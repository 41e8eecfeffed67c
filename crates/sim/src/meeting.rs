//! One simulated stream: its shared state (connections, fault switches, ledger), the
//! handshake rules the servers apply to it, the connection-loss rules (grace periods,
//! interrupted webhooks), fault application, and webhook emission.
//!
//! The timeline that plays the script lives in [`crate::timeline`]; the sockets live in
//! [`crate::server`]. Locks here are std mutexes held for short, synchronous sections only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtms_proto::codes::{event_type, media_type, session_state, status, stop_reason, stream_state};
use rtms_proto::msg::{DataHandshakeReq, HandshakeIds, SignalingHandshakeReq};
use rtms_proto::params::MediaParams;
use rtms_proto::{Product, WebhookAction, WebhookEvent, sign};
use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::faults::{Fault, SocketSel};
use crate::ledger::{ChatLine, Ledger, TranscriptLine};
use crate::record::Recorder;
use crate::script::MeetingScript;
use crate::webhook::WebhookClient;
use crate::{MediaKind, SimShared};
use rtms_proto::unix_ms;

/// How fast the timeline plays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Pace {
    /// Items are sent at their scripted time; while the client is away the timeline keeps
    /// going and what falls in the gap is not sent (as real Zoom without buffering).
    #[default]
    Realtime,
    /// Items are sent as fast as the client takes them; while a kind the client asked for
    /// has no connection (during a reconnection), the timeline holds instead of skipping.
    Fast,
}

/// How to run one meeting.
#[derive(Clone, Debug)]
pub struct MeetingOptions {
    pub product: Product,
    pub pace: Pace,
    /// Where webhooks go (`http://127.0.0.1:…`). When `None`, nothing is POSTed: read
    /// [`crate::MeetingHandle::started_event`] (and `subscribe_webhooks`) and deliver it.
    pub webhook_url: Option<String>,
    /// The meeting uuid / webinar uuid / session id / engagement id; random when `None`.
    pub meeting_id: Option<String>,
    /// The `rtms_stream_id`; random 32 hex digits when `None`.
    pub stream_id: Option<String>,
    /// `operator_id` of the started event.
    pub operator_id: Option<String>,
    /// Write every message sent on this meeting's sockets to this JSON Lines file.
    pub record: Option<PathBuf>,
}

impl Default for MeetingOptions {
    fn default() -> Self {
        Self {
            product: Product::Meeting,
            pace: Pace::Realtime,
            webhook_url: None,
            meeting_id: None,
            stream_id: None,
            operator_id: None,
            record: None,
        }
    }
}

/// What a connection task writes: a message (and what the ledger learns once it is
/// written), or a clean close.
pub(crate) enum Out {
    Msg { text: String, note: Note },
    Close,
}

/// Ledger entries that become true once a message reached the socket.
pub(crate) enum Note {
    None,
    Media {
        kind: MediaKind,
        seq: u64,
        bytes: usize,
    },
    Transcript {
        seq: u64,
        line: TranscriptLine,
    },
    Chat {
        seq: u64,
        line: ChatLine,
    },
    Event(u32),
    StreamState(u32, u32),
    SessionState,
    KeepAlive,
}

/// Why a connection ended, as its task reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseCause {
    /// The client closed it or the socket failed.
    Client,
    /// The server ended it after unanswered keep-alives.
    KeepAliveTimeout,
    /// A fault or the end of the stream closed it (state already updated).
    Server,
}

pub(crate) struct SigConn {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<Out>,
    pub kill: CancellationToken,
}

pub(crate) struct MediaConn {
    pub id: u64,
    /// Expanded single-type bits this socket carries.
    pub bits: u32,
    /// Connected to `all` / asked for mask 32.
    pub all: bool,
    pub params: MediaParams,
    pub ready: bool,
    pub tx: mpsc::Sender<Out>,
    pub kill: CancellationToken,
}

struct Reject {
    socket: SocketSel,
    remaining: u32,
    status: u32,
    reason: String,
}

pub(crate) struct State {
    /// Generation of the signaling URL; bumped by failover (scenario 1).
    pub generation: u32,
    pub signaling: Option<SigConn>,
    pub media: Vec<MediaConn>,
    rejects: Vec<Reject>,
    delays: Vec<(SocketSel, Duration)>,
    refuse_until: Option<Instant>,
    keepalives_off: bool,
    ignore_answers: Option<SocketSel>,
    subscriptions: HashMap<u32, bool>,
    pub paused: bool,
    pub ended: bool,
    /// Set at the first CLIENT_READY_ACK; the timeline waits for it.
    pub ready_once: bool,
    /// Whether msg 8 ACTIVE / msg 9 STARTED went out on the current signaling socket.
    announced: bool,
    /// Counts signaling handshakes, so a grace timer knows whether one happened.
    sig_epoch: u64,
    next_conn: u64,
    last_webhook: Option<(String, Bytes, u32)>,
}

/// A webhook waiting for delivery.
struct Delivery {
    event: String,
    body: Bytes,
    attempt: u32,
    done: Option<oneshot::Sender<()>>,
    /// The stopped event: the delivery loop ends after it.
    last: bool,
}

/// A media socket the handshake accepted: its id, outbox, kill switch, the confirmed
/// params and the delay to apply before answering.
pub(crate) type MediaAccepted = (
    u64,
    mpsc::Receiver<Out>,
    CancellationToken,
    MediaParams,
    Duration,
);

/// Commands for the timeline task.
pub(crate) enum Control {
    Terminate { reason: u32 },
}

pub(crate) struct Meeting {
    pub sim: Arc<SimShared>,
    /// Fires when the simulator shuts down: ends every task and socket of the meeting.
    pub cancel: CancellationToken,
    pub product: Product,
    pub id: String,
    pub stream_id: String,
    pub session_id: String,
    pub script: Arc<MeetingScript>,
    pub pace: Pace,
    pub operator_id: String,
    webhook_url: Option<String>,
    state: Mutex<State>,
    ledger: Mutex<Ledger>,
    /// Bumped on every state change the timeline may wait for.
    pub changed: watch::Sender<u64>,
    pub control: mpsc::UnboundedSender<Control>,
    recorder: Option<Recorder>,
    pub finished: watch::Sender<bool>,
    webhooks_tx: broadcast::Sender<WebhookEvent>,
    started: Mutex<WebhookEvent>,
    deliveries: mpsc::UnboundedSender<Delivery>,
}

fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

fn random_uuid_b64() -> String {
    use base64::Engine;
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Meeting {
    pub(crate) fn new(
        sim: Arc<SimShared>,
        cancel: CancellationToken,
        script: MeetingScript,
        opts: MeetingOptions,
    ) -> anyhow::Result<(Arc<Self>, mpsc::UnboundedReceiver<Control>)> {
        use anyhow::Context;
        if let Some(url) = &opts.webhook_url {
            crate::webhook::check_target(url)?;
        }
        let recorder = match &opts.record {
            Some(p) => Some(
                Recorder::create(p)
                    .with_context(|| format!("cannot create recording file {}", p.display()))?,
            ),
            None => None,
        };
        let stream_id = opts.stream_id.clone().unwrap_or_else(|| random_hex(32));
        let id = opts
            .meeting_id
            .clone()
            .unwrap_or_else(|| match opts.product {
                Product::ContactCenter => format!("eng_{}", random_hex(20)),
                _ => random_uuid_b64(),
            });
        let (control, control_rx) = mpsc::unbounded_channel();
        let (deliveries, deliveries_rx) = mpsc::unbounded_channel();
        let operator_id = opts
            .operator_id
            .clone()
            .unwrap_or_else(|| format!("op{}", random_hex(12)));
        let started = WebhookEvent {
            product: opts.product,
            action: WebhookAction::Started,
            event: opts.product.event_name(WebhookAction::Started),
            event_ts: unix_ms() as i64,
            id: id.clone(),
            stream_id: stream_id.clone(),
            server_url: Some(sim.signaling_url_for(&stream_id, 1)),
            operator_id: (opts.product != Product::ContactCenter).then(|| operator_id.clone()),
            stop_reason: None,
        };
        let m = Arc::new(Self {
            product: opts.product,
            id,
            stream_id,
            session_id: random_hex(32),
            script: Arc::new(script),
            pace: opts.pace,
            operator_id,
            webhook_url: opts.webhook_url.clone(),
            state: Mutex::new(State {
                generation: 1,
                signaling: None,
                media: Vec::new(),
                rejects: Vec::new(),
                delays: Vec::new(),
                refuse_until: None,
                keepalives_off: false,
                ignore_answers: None,
                subscriptions: HashMap::new(),
                paused: false,
                ended: false,
                ready_once: false,
                announced: false,
                sig_epoch: 0,
                next_conn: 1,
                last_webhook: None,
            }),
            ledger: Mutex::new(Ledger::default()),
            changed: watch::Sender::new(0),
            control,
            recorder,
            finished: watch::Sender::new(false),
            webhooks_tx: broadcast::channel(64).0,
            started: Mutex::new(started),
            deliveries,
            sim,
            cancel,
        });
        if m.webhook_url.is_some() {
            tokio::spawn(deliver_loop(m.clone(), deliveries_rx));
        }
        Ok((m, control_rx))
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn ledger_mut(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn ledger(&self) -> Ledger {
        self.ledger_mut().clone()
    }

    pub(crate) fn started_event(&self) -> WebhookEvent {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn subscribe_webhooks(&self) -> broadcast::Receiver<WebhookEvent> {
        self.webhooks_tx.subscribe()
    }

    pub(crate) fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// The signature a client must present for this stream.
    pub(crate) fn expected_signature(&self) -> String {
        let c = &self.sim.config;
        sign::handshake_signature(&c.client_id, &c.client_secret, &self.id, &self.stream_id)
    }

    // === recording and the ledger ===

    pub(crate) fn record(&self, socket: &str, text: &str) {
        if let Some(r) = &self.recorder {
            r.record(socket, text);
        }
    }

    pub(crate) fn note_sent(&self, note: Note) {
        let mut l = self.ledger_mut();
        match note {
            Note::None => {}
            Note::Media { kind, seq, bytes } => l.record_media(kind, seq, bytes),
            Note::Transcript { seq, line } => {
                l.record_media(MediaKind::Transcript, seq, line.text.len());
                l.transcript.push(line);
            }
            Note::Chat { seq, line } => {
                l.record_media(MediaKind::Chat, seq, line.text.len());
                l.chats.push(line);
            }
            Note::Event(t) => {
                l.counters.event_updates += 1;
                l.events.push(t);
            }
            Note::StreamState(s, r) => {
                l.counters.stream_state_updates += 1;
                l.stream_states.push((s, r));
            }
            Note::SessionState => l.counters.session_state_updates += 1,
            Note::KeepAlive => l.counters.keepalive_requests += 1,
        }
    }

    // === switches read by connection tasks ===

    pub(crate) fn keepalives_enabled(&self) -> bool {
        !self.state().keepalives_off
    }

    pub(crate) fn answers_ignored(&self, signaling: bool) -> bool {
        self.state()
            .ignore_answers
            .is_some_and(|s| s.matches(signaling))
    }

    /// True (and counted) when a fault refuses new connections right now.
    pub(crate) fn refusing(&self) -> bool {
        let refusing = self
            .state()
            .refuse_until
            .is_some_and(|t| Instant::now() < t);
        if refusing {
            self.ledger_mut().counters.connections_refused += 1;
        }
        refusing
    }

    fn take_fault_for(&self, st: &mut State, signaling: bool) -> Result<Duration, (u32, String)> {
        if let Some(i) = st
            .rejects
            .iter()
            .position(|r| r.remaining > 0 && r.socket.matches(signaling))
        {
            let r = &mut st.rejects[i];
            r.remaining -= 1;
            let out = (r.status, r.reason.clone());
            if r.remaining == 0 {
                st.rejects.remove(i);
            }
            return Err(out);
        }
        if let Some(i) = st.delays.iter().position(|d| d.0.matches(signaling)) {
            return Ok(st.delays.remove(i).1);
        }
        Ok(Duration::ZERO)
    }

    fn check_ids(
        &self,
        ids: &HandshakeIds,
        stream_id: &str,
        signature: &str,
    ) -> Result<(), (u32, String)> {
        if stream_id != self.stream_id {
            return Err((
                status::INVALID_RTMS_STREAM_ID,
                format!("rtms_stream_id {stream_id:?} is not a live stream"),
            ));
        }
        if !ids.all().any(|i| i == self.id) {
            return Err((
                status::INVALID_PAYLOAD,
                format!(
                    "the handshake must carry {} {:?} of this stream",
                    self.product.id_key(),
                    self.id
                ),
            ));
        }
        if !sign::signatures_match(&self.expected_signature(), signature.trim()) {
            return Err((
                status::INVALID_SIGNATURE,
                "invalid signature: expected hex HMAC-SHA256(client_secret, client_id,id,rtms_stream_id)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Decides a signaling handshake. On success the connection is registered as the
    /// stream's signaling socket. Returns the delay to apply before answering.
    pub(crate) fn signaling_handshake(
        &self,
        req: &SignalingHandshakeReq,
        path_gen: Option<u32>,
    ) -> Result<(SigConn, mpsc::UnboundedReceiver<Out>, Duration), (u32, String)> {
        let result = (|| {
            self.check_ids(&req.ids, &req.rtms_stream_id, &req.signature)?;
            let mut st = self.state();
            if st.ended {
                return Err((
                    status::INVALID_RTMS_STREAM_ID,
                    "the stream has ended".to_string(),
                ));
            }
            if let Some(g) = path_gen
                && g != st.generation
            {
                return Err((
                    status::INVALID_RTMS_STREAM_ID,
                    "this signaling server no longer serves the stream; use the newest server_urls"
                        .into(),
                ));
            }
            let delay = self.take_fault_for(&mut st, true)?;
            if st.signaling.is_some() {
                self.ledger_mut().counters.duplicate_signaling_rejected += 1;
                return Err((
                    status::DUPLICATE_SIGNAL_REQUEST,
                    "duplicate signal request: the stream already has a signaling connection"
                        .into(),
                ));
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let conn = SigConn {
                id: st.next_conn,
                tx: tx.clone(),
                kill: self.cancel.child_token(),
            };
            st.next_conn += 1;
            st.sig_epoch += 1;
            st.announced = false;
            st.signaling = Some(SigConn {
                id: conn.id,
                tx,
                kill: conn.kill.clone(),
            });
            Ok((conn, rx, delay))
        })();
        let mut l = self.ledger_mut();
        match &result {
            Ok(_) => l.counters.signaling_handshakes_ok += 1,
            Err(_) => l.counters.handshakes_rejected += 1,
        }
        drop(l);
        self.bump();
        result
    }

    /// Decides a media handshake; on success registers the socket (not ready until msg 7)
    /// and returns the confirmed params.
    pub(crate) fn media_handshake(
        &self,
        req: &DataHandshakeReq,
        path_kind: Option<MediaKind>,
    ) -> Result<MediaAccepted, (u32, String)> {
        let result = (|| {
            self.check_ids(&req.ids, &req.rtms_stream_id, &req.signature)?;
            let mask = req.media_type;
            if mask == 0 || mask & !(media_type::EVERY_TYPE | media_type::ALL) != 0 {
                return Err((
                    status::INVALID_MEDIA_TYPE,
                    format!("media_type {mask} is not a mask of 1,2,4,8,16 or 32"),
                ));
            }
            let all = mask & media_type::ALL != 0;
            let bits: u32 = media_type::bits(mask).fold(0, |a, b| a | b);
            if let Some(k) = path_kind
                && (all || bits & !k.media_type_bit() != 0)
            {
                return Err((
                    status::INVALID_MEDIA_TYPE,
                    format!(
                        "media_type {mask} asks for more than this {} URL serves; use the `all` URL",
                        k.url_key().unwrap_or_default()
                    ),
                ));
            }
            let mut st = self.state();
            if st.ended {
                return Err((
                    status::INVALID_RTMS_STREAM_ID,
                    "the stream has ended".into(),
                ));
            }
            if st.signaling.is_none() {
                return Err((
                    status::INVALID_RTMS_STREAM_ID,
                    "no live signaling connection for this stream; complete the signaling handshake first"
                        .into(),
                ));
            }
            let delay = self.take_fault_for(&mut st, false)?;
            if st.media.iter().any(|c| c.all) || (all && !st.media.is_empty()) {
                return Err((
                    status::MEDIA_DATA_ALL_CONNECTION_EXIST,
                    "an `all` media connection exists alongside another media connection".into(),
                ));
            }
            if st.media.iter().any(|c| c.bits & bits != 0) {
                return Err((
                    status::DUPLICATE_MEDIA_DATA_CONNECTION,
                    "duplicate media data connection for a media type".into(),
                ));
            }
            let mut params = req.media_params.clone().unwrap_or_default().resolved();
            if let Some(a) = &params.audio {
                params.audio = Some(crate::media_gen::producible_audio(a));
            }
            let (tx, rx) = mpsc::channel(64);
            let kill = self.cancel.child_token();
            let id = st.next_conn;
            st.next_conn += 1;
            st.media.push(MediaConn {
                id,
                bits,
                all,
                params: params.clone(),
                ready: false,
                tx,
                kill: kill.clone(),
            });
            Ok((id, rx, kill, params, delay))
        })();
        let mut l = self.ledger_mut();
        match &result {
            Ok(_) => l.counters.media_handshakes_ok += 1,
            Err(_) => l.counters.handshakes_rejected += 1,
        }
        drop(l);
        self.bump();
        result
    }

    // === client messages on signaling ===

    /// CLIENT_READY_ACK: every handshaken media socket becomes ready. The first one of a
    /// signaling session announces the stream (msg 8 ACTIVE, msg 9 STARTED).
    pub(crate) fn client_ready(&self) {
        self.ledger_mut().counters.client_ready_acks += 1;
        let mut st = self.state();
        for c in &mut st.media {
            c.ready = true;
        }
        st.ready_once = true;
        if !st.announced && st.signaling.is_some() {
            st.announced = true;
            let now = unix_ms();
            self.send_session_state(&st, session_state::STARTED, 0, now);
            self.send_stream_state(&st, stream_state::ACTIVE, 0, now);
        }
        drop(st);
        self.bump();
    }

    pub(crate) fn subscribe(&self, events: &[(u32, bool)]) {
        let mut st = self.state();
        for (t, on) in events {
            st.subscriptions.insert(*t, *on);
        }
    }

    pub(crate) fn subscribed(&self, event_type: u32) -> bool {
        self.state()
            .subscriptions
            .get(&event_type)
            .copied()
            .unwrap_or(true)
    }

    // === messages to the client on signaling ===

    pub(crate) fn send_signaling(&self, st: &State, value: serde_json::Value, note: Note) -> bool {
        match &st.signaling {
            Some(s) => {
                s.tx.send(Out::Msg {
                    text: value.to_string(),
                    note,
                })
                .is_ok()
            }
            None => false,
        }
    }

    pub(crate) fn send_stream_state(&self, st: &State, state: u32, reason: u32, ts: u64) {
        let v = json!({"msg_type": 8, "rtms_stream_id": self.stream_id, "state": state,
            "reason": reason, "timestamp": ts});
        self.send_signaling(st, v, Note::StreamState(state, reason));
    }

    pub(crate) fn send_session_state(&self, st: &State, state: u32, reason: u32, ts: u64) {
        let v = json!({"msg_type": 9, "rtms_session_id": self.session_id, "state": state,
            "reason": reason, "stop_reason": reason, "timestamp": ts});
        self.send_signaling(st, v, Note::SessionState);
    }

    pub(crate) fn send_event(&self, st: &State, event: serde_json::Value) -> bool {
        let t = event
            .get("event_type")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        let v = json!({"msg_type": 6, "timestamp": unix_ms(), "event": event});
        self.send_signaling(st, v, Note::Event(t))
    }

    // === connection loss ===

    /// Removes the signaling socket (and the media sockets that depend on it), optionally
    /// announces scenario 2 with an interrupted webhook, and starts the grace timer.
    fn drop_signaling(self: &Arc<Self>, st: &mut State, webhook: bool) {
        if let Some(s) = st.signaling.take() {
            s.kill.cancel();
        }
        for c in st.media.drain(..) {
            c.kill.cancel();
        }
        if st.ended {
            return;
        }
        if webhook {
            let url = self.sim.signaling_url_for(&self.stream_id, st.generation);
            self.emit_webhook(st, WebhookAction::Interrupted, Some(url));
        }
        let epoch = st.sig_epoch;
        let me = self.clone();
        let grace = self.sim.config.signaling_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let st = me.state();
            if !st.ended && st.signaling.is_none() && st.sig_epoch == epoch {
                drop(st);
                let _ = me.control.send(Control::Terminate {
                    reason: stop_reason::AWAIT_RECONNECTION_TIMEOUT,
                });
            }
        });
    }

    /// Removes media sockets (all when `kind` is `None`), optionally announces scenario 3,
    /// and starts the media grace timer for the kinds they carried.
    fn drop_media(self: &Arc<Self>, st: &mut State, kind: Option<MediaKind>, announce: bool) {
        let mut lost = 0;
        st.media.retain(|c| {
            let hit = kind.is_none_or(|k| c.bits & k.media_type_bit() != 0);
            if hit {
                lost |= c.bits;
                c.kill.cancel();
            }
            !hit
        });
        self.after_media_loss(st, lost, announce);
    }

    fn after_media_loss(self: &Arc<Self>, st: &mut State, lost: u32, announce: bool) {
        if lost == 0 || st.ended {
            return;
        }
        if announce {
            let now = unix_ms();
            self.send_event(
                st,
                json!({"event_type": event_type::MEDIA_CONNECTION_INTERRUPTED, "timestamp": now}),
            );
            self.send_stream_state(
                st,
                stream_state::INTERRUPTED,
                stop_reason::DATA_CONNECTION_INTERRUPTED,
                now,
            );
        }
        let me = self.clone();
        let grace = self.sim.config.media_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let st = me.state();
            let covered = st.media.iter().fold(0, |a, c| a | c.bits);
            if !st.ended && covered & lost != lost {
                drop(st);
                let _ = me.control.send(Control::Terminate {
                    reason: stop_reason::AWAIT_RECONNECTION_TIMEOUT,
                });
            }
        });
        self.bump();
    }

    /// A connection task ended.
    pub(crate) fn on_closed(self: &Arc<Self>, conn_id: u64, signaling: bool, cause: CloseCause) {
        if cause == CloseCause::KeepAliveTimeout {
            self.ledger_mut().counters.keepalive_timeouts += 1;
        }
        if let Some(r) = &self.recorder {
            r.flush();
        }
        let mut st = self.state();
        if signaling {
            if st.signaling.as_ref().is_some_and(|s| s.id == conn_id) {
                self.drop_signaling(&mut st, cause == CloseCause::KeepAliveTimeout);
            }
        } else if let Some(i) = st.media.iter().position(|c| c.id == conn_id) {
            let c = st.media.remove(i);
            c.kill.cancel();
            self.after_media_loss(&mut st, c.bits, cause == CloseCause::KeepAliveTimeout);
        }
        drop(st);
        self.bump();
    }

    // === faults ===

    /// Applies a fault now. Terminate goes through the timeline task.
    pub(crate) fn apply_fault(self: &Arc<Self>, fault: Fault) {
        tracing::info!(stream = %self.stream_id, fault = fault.name(), "injecting fault");
        let mut st = self.state();
        match fault {
            Fault::DropSignaling => self.drop_signaling(&mut st, false),
            Fault::DropMedia { kind } => self.drop_media(&mut st, kind, false),
            Fault::StopKeepalives => st.keepalives_off = true,
            Fault::ResumeKeepalives => st.keepalives_off = false,
            Fault::IgnoreKeepaliveAnswers { socket } => st.ignore_answers = Some(socket),
            Fault::RejectHandshakes {
                socket,
                count,
                status,
                reason,
            } => st.rejects.push(Reject {
                socket,
                remaining: count,
                status,
                reason,
            }),
            Fault::DelayHandshake { socket, delay } => st.delays.push((socket, delay)),
            Fault::RefuseConnections { duration } => {
                st.refuse_until = Some(Instant::now() + duration)
            }
            Fault::Failover => {
                st.generation += 1;
                let url = self.sim.signaling_url_for(&self.stream_id, st.generation);
                self.drop_signaling(&mut st, false);
                self.emit_webhook(&mut st, WebhookAction::Started, Some(url));
            }
            Fault::InterruptSignaling => self.drop_signaling(&mut st, true),
            Fault::InterruptMedia => self.drop_media(&mut st, None, true),
            Fault::DuplicateWebhook => {
                if let Some((event, body, attempt)) = st.last_webhook.clone() {
                    st.last_webhook = Some((event.clone(), body.clone(), attempt + 1));
                    if let Ok(ev) = rtms_proto::webhook::Envelope::parse(&body)
                        && let Ok(Some(ev)) = ev.rtms_event()
                    {
                        let _ = self.webhooks_tx.send(ev);
                    }
                    let _ = self.deliveries.send(Delivery {
                        event,
                        body,
                        attempt: attempt + 1,
                        done: None,
                        last: false,
                    });
                }
            }
            Fault::Pause { duration } => {
                if !st.paused {
                    st.paused = true;
                    let now = unix_ms();
                    self.send_session_state(&st, session_state::PAUSED, 0, now);
                    self.send_stream_state(&st, stream_state::PAUSED, 0, now);
                    if let Some(d) = duration {
                        let me = self.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(d).await;
                            me.apply_fault(Fault::Resume);
                        });
                    }
                }
            }
            Fault::Resume => {
                if st.paused {
                    st.paused = false;
                    let now = unix_ms();
                    self.send_session_state(&st, session_state::RESUMED, 0, now);
                    self.send_stream_state(&st, stream_state::RESUMED, 0, now);
                }
            }
            Fault::Terminate { reason } => {
                let _ = self.control.send(Control::Terminate { reason });
            }
        }
        drop(st);
        self.bump();
    }

    // === webhooks ===

    /// Builds the event, remembers it for duplicates, publishes it to subscribers and
    /// queues its delivery.
    pub(crate) fn emit_webhook(
        &self,
        st: &mut State,
        action: WebhookAction,
        server_url: Option<String>,
    ) -> Option<oneshot::Receiver<()>> {
        let ev = WebhookEvent {
            product: self.product,
            action,
            event: self.product.event_name(action),
            event_ts: unix_ms() as i64,
            id: self.id.clone(),
            stream_id: self.stream_id.clone(),
            server_url,
            operator_id: (action == WebhookAction::Started
                && self.product != Product::ContactCenter)
                .then(|| self.operator_id.clone()),
            stop_reason: (action == WebhookAction::Stopped)
                .then(|| self.ledger_mut().stop_reason.unwrap_or(0)),
        };
        if action == WebhookAction::Started {
            *self.started.lock().unwrap_or_else(|p| p.into_inner()) = ev.clone();
        }
        self.deliver(st, ev)
    }

    fn deliver(&self, st: &mut State, ev: WebhookEvent) -> Option<oneshot::Receiver<()>> {
        let body = Bytes::from(webhook_body(&ev, &self.sim.config.account_id));
        st.last_webhook = Some((ev.event.clone(), body.clone(), 1));
        let _ = self.webhooks_tx.send(ev.clone());
        self.webhook_url.as_ref()?;
        let (done, rx) = oneshot::channel();
        let _ = self.deliveries.send(Delivery {
            event: ev.event,
            body,
            attempt: 1,
            done: Some(done),
            last: ev.action == WebhookAction::Stopped,
        });
        Some(rx)
    }

    /// Delivers the started event (used by `start_meeting` when a target is set).
    pub(crate) fn send_started(&self) {
        let ev = self.started_event();
        let mut st = self.state();
        self.deliver(&mut st, ev);
    }

    // === the end ===

    /// Ends the stream: msg 9 STOPPED and msg 8 TERMINATED on signaling, clean closes, the
    /// stopped webhook, and the ledger's stop reason. Idempotent.
    pub(crate) async fn finish(self: &Arc<Self>, reason: u32) {
        let mut closing_sig = Vec::new();
        let mut closing = Vec::new();
        let done = {
            let mut st = self.state();
            if st.ended {
                return;
            }
            st.ended = true;
            self.ledger_mut().stop_reason = Some(reason);
            let now = unix_ms();
            self.send_session_state(&st, session_state::STOPPED, reason, now);
            self.send_stream_state(&st, stream_state::TERMINATED, reason, now);
            if let Some(s) = st.signaling.take() {
                let _ = s.tx.send(Out::Close);
                closing_sig.push(s.tx.clone());
            }
            for c in st.media.drain(..) {
                if c.tx.try_send(Out::Close).is_err() {
                    c.kill.cancel();
                }
                closing.push(c.tx.clone());
            }
            self.emit_webhook(&mut st, WebhookAction::Stopped, None)
        };
        // The ledger records a message once its socket has written it: wait until every
        // connection has written what was queued before the close (its task then drops
        // the receiver), so the final ledger is complete when `finished` resolves.
        let drained = futures_util::future::join(
            futures_util::future::join_all(closing_sig.iter().map(|tx| tx.closed())),
            futures_util::future::join_all(closing.iter().map(|tx| tx.closed())),
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
        if let Some(done) = done {
            let wait = self.sim.config.webhook_timeout + Duration::from_secs(1);
            let _ = tokio::time::timeout(wait, done).await;
        }
        if let Some(r) = &self.recorder {
            r.flush();
        }
        self.sim.remove_meeting(&self.stream_id);
        self.finished.send_replace(true);
        self.bump();
    }

    pub(crate) fn transcript_line(&self, utt: usize, ts: u64, t0: u64) -> Option<TranscriptLine> {
        let u = self.script.utterances.get(utt)?;
        Some(TranscriptLine {
            user_id: u.user_id,
            user_name: self.script.name_of(u.user_id).to_owned(),
            text: u.text.clone(),
            start_time: t0 + u.start_ms,
            end_time: t0 + u.start_ms + u.duration_ms,
            timestamp: ts,
        })
    }
}

/// The body Zoom sends for an event: [`WebhookEvent::to_body`] (compact JSON, flat payload)
/// plus `account_id` on started events of meetings, webinars and Video SDK sessions (added
/// by Zoom in May 2026).
pub(crate) fn webhook_body(ev: &WebhookEvent, account_id: &str) -> Vec<u8> {
    let body = ev.to_body();
    if ev.action != WebhookAction::Started || ev.product == Product::ContactCenter {
        return body;
    }
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return body;
    };
    if let Some(p) = v.get_mut("payload").and_then(|p| p.as_object_mut()) {
        p.insert("account_id".into(), json!(account_id));
    }
    serde_json::to_vec(&v).unwrap_or(body)
}

/// Delivers queued webhooks in order; failed attempts are retried later (same body) as
/// Zoom does, without holding up the queue.
async fn deliver_loop(m: Arc<Meeting>, mut rx: mpsc::UnboundedReceiver<Delivery>) {
    let Some(url) = m.webhook_url.clone() else {
        return;
    };
    let cfg = m.sim.config.clone();
    let client = WebhookClient::new(&cfg.webhook_secret, cfg.webhook_timeout);
    loop {
        let d = tokio::select! {
            d = rx.recv() => match d {
                Some(d) => d,
                None => return,
            },
            _ = m.cancel.cancelled() => return,
        };
        let last = d.last;
        let ok = attempt(&m, &client, &url, &d.event, d.body.clone(), d.attempt).await;
        if let Some(done) = d.done {
            let _ = done.send(());
        }
        if !ok && d.attempt < cfg.webhook_max_attempts {
            let (m, client, url) = (m.clone(), client.clone(), url.clone());
            tokio::spawn(async move {
                let mut n = d.attempt;
                while n < cfg.webhook_max_attempts {
                    tokio::time::sleep(cfg.webhook_retry_delay).await;
                    n += 1;
                    if attempt(&m, &client, &url, &d.event, d.body.clone(), n).await {
                        break;
                    }
                }
            });
        }
        if last {
            return;
        }
    }
}

async fn attempt(
    m: &Meeting,
    client: &WebhookClient,
    url: &str,
    event: &str,
    body: Bytes,
    n: u32,
) -> bool {
    let res = client.post_signed(url, body.clone()).await;
    let (status, error) = match &res {
        Ok(o) => (Some(o.status), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    if !ok {
        tracing::warn!(event, attempt = n, ?status, ?error, "webhook not accepted");
    }
    m.ledger_mut()
        .webhooks
        .push(crate::ledger::WebhookDelivery {
            event: event.to_owned(),
            body: String::from_utf8_lossy(&body).into_owned(),
            attempt: n,
            status,
            error,
        });
    ok
}
