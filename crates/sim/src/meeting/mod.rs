//! One simulated stream: its options, its shared state (connections, fault switches, ledger),
//! its creation, the ledger's bookkeeping and its end. The rules applied to it live beside:
//!
//! - [`handshake`]: the signaling and media handshakes, client messages on signaling, and
//!   what the server sends on signaling.
//! - [`loss`]: connection loss, grace periods and interrupted announcements.
//!
//! Faults and their application live in [`crate::faults`]; a stream's webhooks (building,
//! queueing, delivering with retries) in [`crate::webhook`].
//!
//! The timeline that plays the script lives in [`crate::timeline`]; the sockets live in
//! [`crate::server`]. Locks here are std mutexes held for short, synchronous sections only.

mod handshake;
mod inject;
mod loss;
mod video;
mod webhooks;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtms_proto::codes::{event_type, media_type, session_state, status, stop_reason, stream_state};
use rtms_proto::msg::{DataHandshakeReq, HandshakeIds, SignalingHandshakeReq};
use rtms_proto::params::MediaParams;
use rtms_proto::{Product, WebhookAction, WebhookEvent, sign, unix_ms};
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::faults::SocketSel;
use crate::ledger::{ChatLine, Ledger, TranscriptLine};
use crate::record::Recorder;
use crate::script::MeetingScript;
use crate::{MediaKind, SimShared};

pub(crate) use loss::Then;

/// How long the end of a stream waits for room in a media socket's full outbox before it
/// cuts the socket off (pre-encoded audio only; see [`Meeting::finish`]).
const FULL_OUTBOX_WAIT: Duration = Duration::from_secs(30);

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
    /// The Unix time (ms) the script's time 0 is stamped with: every frame's timestamp is
    /// this plus its time in the script. `None`: the wall clock when the script starts.
    /// A fixed origin makes the frames of every play of a script identical (`plugin test`).
    pub clock_origin_ms: Option<u64>,
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
            clock_origin_ms: None,
        }
    }
}

/// What a connection task writes: a message (and what the ledger learns once it is
/// written), or a clean close.
pub(crate) enum Out {
    Msg {
        text: String,
        note: Note,
    },
    /// Several messages written back to back with one flush (pre-encoded audio in fast
    /// pace); the ledger learns them together once all were written.
    Burst(Vec<(String, Note)>),
    Close,
    /// Resolves `done` once everything queued before it is written; with `probe`, once the
    /// client also answered a keep-alive request sent after it (so it has read all that).
    Sync {
        probe: bool,
        done: tokio::sync::oneshot::Sender<()>,
    },
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

/// How the server ends a live connection without losing what it wrote: `kill` asks its
/// task to stop writing and drain (flush, then a keep-alive request the client must
/// answer), the task reports `drained`, and it drops the socket once `release` fires.
/// Sockets that go down together (signaling and its media) are released together once all
/// drained, so a client never reacts to one socket's loss while another still holds
/// unread messages.
pub(crate) struct Ending {
    pub kill: CancellationToken,
    pub release: CancellationToken,
    pub drained: watch::Receiver<bool>,
}

/// The connection task's side of [`Ending`].
pub(crate) struct EndingTask {
    pub kill: CancellationToken,
    pub release: CancellationToken,
    pub drained: watch::Sender<bool>,
}

impl Ending {
    /// A new pair; both tokens are children of `cancel` (the simulator's shutdown ends every
    /// socket at once, without draining).
    pub(crate) fn pair(cancel: &CancellationToken) -> (Ending, EndingTask) {
        let (kill, release) = (cancel.child_token(), cancel.child_token());
        let (tx, rx) = watch::channel(false);
        (
            Ending {
                kill: kill.clone(),
                release: release.clone(),
                drained: rx,
            },
            EndingTask {
                kill,
                release,
                drained: tx,
            },
        )
    }
}

pub(crate) struct SigConn {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<Out>,
    pub end: Ending,
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
    pub end: Ending,
}
pub(crate) struct State {
    /// Generation of the signaling URL; bumped by failover (scenario 1).
    pub generation: u32,
    pub signaling: Option<SigConn>,
    pub media: Vec<MediaConn>,
    pub(crate) rejects: Vec<inject::Reject>,
    pub(crate) delays: Vec<(SocketSel, Duration)>,
    pub(crate) refuse_until: Option<Instant>,
    pub(crate) keepalives_off: bool,
    pub(crate) ignore_answers: Option<SocketSel>,
    subscriptions: HashMap<u32, bool>,
    /// Participants whose video is on (script events 8 / 9 played so far).
    pub(crate) video_on: std::collections::BTreeSet<i64>,
    /// Individual video subscriptions (msg 28) in force, oldest first.
    pub(crate) individual: Vec<i64>,
    pub paused: bool,
    pub ended: bool,
    /// Set at the first CLIENT_READY_ACK; the timeline waits for it.
    pub ready_once: bool,
    /// Whether msg 8 ACTIVE / msg 9 STARTED went out on the current signaling socket.
    announced: bool,
    /// Counts signaling handshakes, so a grace timer knows whether one happened.
    sig_epoch: u64,
    /// Counts media handshakes per media type bit, so a media grace timer knows whether a
    /// type it waits for came back since its loss.
    media_epochs: [u64; 32],
    next_conn: u64,
    pub(crate) last_webhook: Option<(String, Bytes, u32)>,
}
/// A signaling socket the handshake accepted: its id, outbox, ending and the delay to
/// apply before answering.
pub(crate) struct SigAccepted {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<Out>,
    pub rx: mpsc::UnboundedReceiver<Out>,
    pub end: EndingTask,
    pub delay: Duration,
}

/// A media socket the handshake accepted: its id, outbox, ending, the confirmed params and
/// the delay to apply before answering.
pub(crate) struct MediaAccepted {
    pub id: u64,
    pub rx: mpsc::Receiver<Out>,
    pub end: EndingTask,
    pub params: MediaParams,
    pub delay: Duration,
}

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
    /// [`MeetingOptions::clock_origin_ms`].
    pub clock_origin_ms: Option<u64>,
    pub operator_id: String,
    pub(crate) webhook_url: Option<String>,
    state: Mutex<State>,
    ledger: Mutex<Ledger>,
    /// Bumped on every state change the timeline may wait for.
    pub changed: watch::Sender<u64>,
    pub control: mpsc::UnboundedSender<Control>,
    recorder: Option<Recorder>,
    pub finished: watch::Sender<bool>,
    pub(crate) webhooks_tx: broadcast::Sender<WebhookEvent>,
    pub(crate) started: Mutex<WebhookEvent>,
    pub(crate) deliveries: mpsc::UnboundedSender<webhooks::Delivery>,
    /// Fast pace: media messages a dropped socket had queued but not written, by kind, sent
    /// first on the next socket so the timeline holds across the drop.
    requeued: Mutex<Vec<(MediaKind, String, Note)>>,
}

fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// A random meeting uuid, as Zoom writes them (base64 of 16 bytes).
pub(crate) fn random_meeting_id() -> String {
    random_uuid_b64()
}

impl State {
    /// A stream's state before anyone connected.
    fn initial() -> Self {
        State {
            generation: 1,
            signaling: None,
            media: Vec::new(),
            rejects: Vec::new(),
            delays: Vec::new(),
            refuse_until: None,
            keepalives_off: false,
            ignore_answers: None,
            subscriptions: HashMap::new(),
            video_on: Default::default(),
            individual: Vec::new(),
            paused: false,
            ended: false,
            ready_once: false,
            announced: false,
            sig_epoch: 0,
            media_epochs: [0; 32],
            next_conn: 1,
            last_webhook: None,
        }
    }
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
            details: started_details(opts.product, &id, &sim.config.account_id),
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
            clock_origin_ms: opts.clock_origin_ms,
            operator_id,
            webhook_url: opts.webhook_url.clone(),
            state: Mutex::new(State::initial()),
            ledger: Mutex::new(Ledger::default()),
            changed: watch::Sender::new(0),
            control,
            recorder,
            finished: watch::Sender::new(false),
            webhooks_tx: broadcast::channel(64).0,
            started: Mutex::new(started),
            deliveries,
            requeued: Mutex::default(),
            sim,
            cancel,
        });
        if m.webhook_url.is_some() {
            tokio::spawn(webhooks::deliver_loop(m.clone(), deliveries_rx));
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

    /// Flushes and closes the recording (see [`Recorder::close`]).
    pub(crate) fn close_recording(&self) {
        if let Some(r) = &self.recorder {
            r.close();
        }
    }

    pub(crate) fn note_sent(&self, note: Note) {
        Self::note_in(&mut self.ledger_mut(), note);
    }

    /// Records several messages under one lock of the ledger.
    pub(crate) fn note_sent_all(&self, notes: impl IntoIterator<Item = Note>) {
        let mut l = self.ledger_mut();
        for n in notes {
            Self::note_in(&mut l, n);
        }
    }

    fn note_in(l: &mut Ledger, note: Note) {
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
    // === the end ===

    /// Ends the stream: msg 9 STOPPED and msg 8 TERMINATED on signaling, clean closes, the
    /// stopped webhook, and the ledger's stop reason. Idempotent.
    /// Keeps a media message a dropped socket never wrote (fast pace only).
    pub(crate) fn requeue(&self, text: String, note: Note) {
        let kind = match &note {
            Note::Media { kind, .. } => *kind,
            Note::Transcript { .. } => MediaKind::Transcript,
            Note::Chat { .. } => MediaKind::Chat,
            _ => return,
        };
        self.requeued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((kind, text, note));
    }

    /// The kept messages of `kind`, oldest first.
    pub(crate) fn take_requeued(&self, kind: MediaKind) -> Vec<(String, Note)> {
        let mut all = self.requeued.lock().unwrap_or_else(|p| p.into_inner());
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut *all)
            .into_iter()
            .partition(|(k, _, _)| *k == kind);
        *all = rest;
        mine.into_iter().map(|(_, t, n)| (t, n)).collect()
    }

    /// Waits (at most `limit`) until every client has read all that was sent to it: each
    /// socket flushes its queue and sends a keep-alive request, and the client's answer comes
    /// after it read everything before. A stream that ends right after its last frame (fast
    /// pace) would otherwise close under a client still reading.
    pub(crate) async fn drain_clients(self: &Arc<Self>, limit: Duration) {
        let (sig, media) = {
            let st = self.state();
            (
                st.signaling.as_ref().map(|s| s.tx.clone()),
                st.media.iter().map(|c| c.tx.clone()).collect::<Vec<_>>(),
            )
        };
        let mut waits = Vec::new();
        if let Some(tx) = sig {
            let (done, rx) = tokio::sync::oneshot::channel();
            if tx.send(Out::Sync { probe: true, done }).is_ok() {
                waits.push(rx);
            }
        }
        for tx in media {
            let (done, rx) = tokio::sync::oneshot::channel();
            if tx.send(Out::Sync { probe: true, done }).await.is_ok() {
                waits.push(rx);
            }
        }
        let _ = tokio::time::timeout(limit, futures_util::future::join_all(waits)).await;
    }

    pub(crate) async fn finish(self: &Arc<Self>, reason: u32) {
        let mut closing_sig = Vec::new();
        let mut closing = Vec::new();
        let (done, sig, media) = {
            let mut st = self.state();
            if st.ended {
                return;
            }
            st.ended = true;
            self.ledger_mut().stop_reason = Some(reason);
            let now = unix_ms();
            self.send_session_state(&st, session_state::STOPPED, reason, now);
            self.send_stream_state(&st, stream_state::TERMINATED, reason, now);
            let sig = st.signaling.take();
            let media: Vec<MediaConn> = st.media.drain(..).collect();
            if let Some(s) = &sig {
                self.closed(s.id, crate::ledger::SocketKind::Signaling, 0);
            }
            for c in &media {
                self.closed(c.id, crate::ledger::SocketKind::Media, c.bits);
            }
            (
                self.emit_webhook(&mut st, WebhookAction::Stopped, None),
                sig,
                media,
            )
        };
        // The stream and session state reach the client before any socket closes, and the
        // media sockets write what they hold before their close frame.
        if let Some(s) = &sig {
            written(s).await;
        }
        // Pre-encoded bursts fill the outbox with far more frames than single messages do.
        let room_wait = if self.sim.config.preencoded_audio {
            FULL_OUTBOX_WAIT
        } else {
            Duration::from_secs(2)
        };
        for c in media {
            let queued = tokio::time::timeout(room_wait, c.tx.send(Out::Close)).await;
            if !matches!(queued, Ok(Ok(()))) {
                c.end.kill.cancel();
                c.end.release.cancel();
            }
            closing.push(c.tx.clone());
        }
        if let Some(s) = sig {
            let _ = s.tx.send(Out::Close);
            closing_sig.push(s.tx.clone());
        }
        // The ledger records a message once its socket has written it: wait until every
        // connection has written what was queued before the close (its task then drops
        // the receiver), so the final ledger is complete when `finished` resolves.
        let drained = futures_util::future::join(
            futures_util::future::join_all(closing_sig.iter().map(|tx| tx.closed())),
            futures_util::future::join_all(closing.iter().map(|tx| tx.closed())),
        );
        let drain_wait = if self.sim.config.preencoded_audio {
            FULL_OUTBOX_WAIT
        } else {
            Duration::from_secs(2)
        };
        let _ = tokio::time::timeout(drain_wait, drained).await;
        if let Some(done) = done {
            let wait = self.sim.config.webhook_timeout + Duration::from_secs(1);
            let _ = tokio::time::timeout(wait, done).await;
        }
        self.close_recording();
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

/// Waits (2 s at most) until the signaling socket has written what was queued before now.
async fn written(s: &SigConn) {
    let (done, rx) = tokio::sync::oneshot::channel();
    if s.tx.send(Out::Sync { probe: false, done }).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
    }
}

/// The started webhook's fields of April 2026 as Zoom sends them for `product`: `account_id`
/// on meetings, webinars and Video SDK sessions; `is_original_host` on meetings and
/// webinars; the meeting's number (`meeting_id`) or the webinar's (`webinar_id`), derived
/// from the uuid so it is stable for a meeting. Contact Center webhooks carry none.
pub(crate) fn started_details(
    product: Product,
    id: &str,
    account_id: &str,
) -> rtms_proto::webhook::StartedDetails {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    // Zoom's meeting numbers have 10 or 11 digits.
    let number = (10_000_000_000 + h.finish() % 90_000_000_000).to_string();
    let account = (product != Product::ContactCenter).then(|| account_id.to_owned());
    let host = matches!(product, Product::Meeting | Product::Webinar).then_some(true);
    rtms_proto::webhook::StartedDetails {
        account_id: account,
        is_original_host: host,
        meeting_id: (product == Product::Meeting).then(|| number.clone()),
        webinar_id: (product == Product::Webinar).then_some(number),
    }
}
