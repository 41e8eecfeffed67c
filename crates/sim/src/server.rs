//! The signaling and media WebSocket servers: accept loops (plain or TLS), URL routing,
//! the two handshakes, and one task per connection that writes what the meeting queues,
//! reads the client's messages and keeps the socket alive.
//!
//! URLs: signaling `…/signaling/{rtms_stream_id}/{generation}` (the bare `…/signaling` also
//! works; the generation changes on failover), media `…/media/{rtms_stream_id}/{kind}` with
//! kind `audio`, `video`, `deskshare`, `transcript`, `chat` or `all`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtms_proto::codes::{msg_type, status, stop_reason};
use rtms_proto::msg::{
    DataHandshakeReq, EventSubscription, MediaServer, MediaServerUrls, SignalingHandshakeReq,
    SignalingHandshakeResp, peek_type,
};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::meeting::{CloseCause, Control, EndingTask, Meeting, Note, Out};
use crate::{MediaKind, SimShared};
use rtms_proto::unix_ms;

/// Which server a listener is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Signaling,
    Media,
}

/// Accepts connections until `cancel` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    role: Role,
    shared: Arc<SimShared>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move { handle_tcp(tcp, role, shared).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn handle_tcp(tcp: TcpStream, role: Role, shared: Arc<SimShared>) {
    let _ = tcp.set_nodelay(true);
    match shared.tls.clone() {
        Some(tls) => {
            let t = shared.config.handshake_timeout;
            match tokio::time::timeout(t, tls.acceptor.accept(tcp)).await {
                Ok(Ok(s)) => handle_ws(s, role, shared).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
        None => handle_ws(tcp, role, shared).await,
    }
}

/// What the URL path says.
#[derive(Debug, Default, PartialEq)]
struct Route {
    stream: Option<String>,
    generation: Option<u32>,
    kind: Option<MediaKind>,
}

fn route(role: Role, path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (role, parts.as_slice()) {
        (Role::Signaling, ["signaling"]) => Some(Route::default()),
        (Role::Signaling, ["signaling", stream, generation]) => Some(Route {
            stream: Some((*stream).to_owned()),
            generation: Some(generation.parse().ok()?),
            kind: None,
        }),
        (Role::Media, ["media", stream, kind]) => Some(Route {
            stream: Some((*stream).to_owned()),
            generation: None,
            kind: if *kind == "all" {
                None
            } else {
                Some(MediaKind::from_url_key(kind)?)
            },
        }),
        _ => None,
    }
}

fn error_response(code: StatusCode, text: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(text.to_owned()));
    *r.status_mut() = code;
    r
}

#[allow(clippy::result_large_err)] // the callback's error type is tungstenite's
async fn handle_ws<S>(stream: S, role: Role, shared: Arc<SimShared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut routed: Option<Route> = None;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let Some(r) = route(role, req.uri().path()) else {
            return Err(error_response(
                StatusCode::NOT_FOUND,
                "unknown path: use the URLs from server_urls / media_server.server_urls",
            ));
        };
        if let Some(m) = r.stream.as_deref().and_then(|s| shared.meeting(s))
            && m.refusing()
        {
            return Err(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "connections to this stream are refused for now",
            ));
        }
        routed = Some(r);
        Ok(resp)
    };
    let ws =
        match tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config()))
            .await
        {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
    let Some(r) = routed else { return };
    match role {
        Role::Signaling => signaling_conn(ws, shared, r).await,
        Role::Media => media_conn(ws, shared, r).await,
    }
}

/// Reads the next text or binary message's bytes; `None` when the socket closed.
async fn next_data<S>(ws: &mut WebSocketStream<S>) -> Option<Bytes>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(m) = ws.next().await {
        match m {
            Ok(Message::Text(t)) => return Some(Bytes::from(t)),
            Ok(Message::Binary(b)) => return Some(b),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    None
}

fn frame(shared: &SimShared, text: String) -> Message {
    if shared.config.binary_frames {
        Message::Binary(Bytes::from(text))
    } else {
        Message::Text(Utf8Bytes::from(text))
    }
}

/// Sends a handshake rejection, records it, and closes the socket.
async fn reject<S>(
    mut ws: WebSocketStream<S>,
    shared: &SimShared,
    meeting: Option<&Meeting>,
    socket: &str,
    resp_type: u32,
    (code, reason): (u32, String),
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tracing::info!(socket, code, reason = %reason, "handshake rejected");
    let text = json!({"msg_type": resp_type, "protocol_version": 1, "status_code": code,
        "reason": reason})
    .to_string();
    if let Some(m) = meeting {
        m.record(socket, &text);
    }
    let _ = ws.send(frame(shared, text)).await;
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: Utf8Bytes::from_static("handshake rejected"),
        }))
        .await;
}

/// Reads a connection's first message, which must be the handshake request `want`, and
/// finds the meeting it names (by URL path, else by `rtms_stream_id`). Anything else is
/// answered with the right status and the socket closed; `None` then.
#[allow(clippy::too_many_arguments)]
async fn first_request<S, T>(
    mut ws: WebSocketStream<S>,
    shared: &Arc<SimShared>,
    r: &Route,
    role: &'static str,
    want: u32,
    want_name: &str,
    resp: u32,
    stream_of: impl Fn(&T) -> &String,
) -> Option<(WebSocketStream<S>, T, Arc<Meeting>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: serde::de::DeserializeOwned,
{
    let t = shared.config.handshake_timeout;
    let Ok(Some(first)) = tokio::time::timeout(t, next_data(&mut ws)).await else {
        return None;
    };
    let req: T = match serde_json::from_slice(&first) {
        Ok(req) if peek_type(&first).ok() == Some(want) => req,
        Ok(_) | Err(_) => {
            let why = (
                status::INVALID_MESSAGE_TYPE,
                format!("the first message on a {role} socket must be msg_type {want} {want_name}"),
            );
            reject(ws, shared, None, role, resp, why).await;
            return None;
        }
    };
    let stream_id = r.stream.clone().unwrap_or_else(|| stream_of(&req).clone());
    let Some(m) = shared.meeting(&stream_id) else {
        let why = (
            status::INVALID_RTMS_STREAM_ID,
            format!("rtms_stream_id {:?} is not a live stream", stream_of(&req)),
        );
        reject(ws, shared, None, role, resp, why).await;
        return None;
    };
    Some((ws, req, m))
}

async fn signaling_conn<S>(ws: WebSocketStream<S>, shared: Arc<SimShared>, r: Route)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let resp = msg_type::SIGNALING_HAND_SHAKE_RESP;
    let Some((ws, req, m)) = first_request::<S, SignalingHandshakeReq>(
        ws,
        &shared,
        &r,
        "signaling",
        msg_type::SIGNALING_HAND_SHAKE_REQ,
        "SIGNALING_HAND_SHAKE_REQ",
        resp,
        |q| &q.rtms_stream_id,
    )
    .await
    else {
        return;
    };
    m.ledger_mut().counters.signaling_connections += 1;
    let conn = match m.signaling_handshake(&req, r.generation) {
        Ok(x) => x,
        Err(why) => return reject(ws, &shared, Some(&m), "signaling", resp, why).await,
    };
    if !conn.delay.is_zero() {
        tokio::time::sleep(conn.delay).await;
    }
    let urls = media_server_urls(&shared, &m.stream_id);
    let ok = SignalingHandshakeResp {
        msg_type: resp,
        protocol_version: Some(1),
        status_code: status::OK,
        reason: Some(String::new()),
        media_server: Some(MediaServer { server_urls: urls }),
    };
    let text = serde_json::to_string(&ok).unwrap_or_default();
    if conn
        .tx
        .send(Out::Msg {
            text,
            note: Note::None,
        })
        .is_err()
    {
        return;
    }
    let cause = conn_loop(ws, &shared, &m, true, OutRx::Unbounded(conn.rx), conn.end).await;
    m.on_closed(conn.id, true, cause);
}

async fn media_conn<S>(ws: WebSocketStream<S>, shared: Arc<SimShared>, r: Route)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let resp = msg_type::DATA_HAND_SHAKE_RESP;
    let Some((mut ws, req, m)) = first_request::<S, DataHandshakeReq>(
        ws,
        &shared,
        &r,
        "media",
        msg_type::DATA_HAND_SHAKE_REQ,
        "DATA_HAND_SHAKE_REQ",
        resp,
        |q| &q.rtms_stream_id,
    )
    .await
    else {
        return;
    };
    m.ledger_mut().counters.media_connections += 1;
    let conn = match m.media_handshake(&req, r.kind) {
        Ok(x) => x,
        Err(why) => return reject(ws, &shared, Some(&m), "media", resp, why).await,
    };
    if !conn.delay.is_zero() {
        tokio::time::sleep(conn.delay).await;
    }
    let text = json!({"msg_type": resp, "protocol_version": 1, "status_code": status::OK,
        "reason": "", "payload_encrypted": false, "media_params": conn.params})
    .to_string();
    let sent = ws.send(frame(&shared, text.clone())).await.is_ok();
    m.record("media", &text);
    let cause = if sent {
        conn_loop(ws, &shared, &m, false, OutRx::Bounded(conn.rx), conn.end).await
    } else {
        CloseCause::Client
    };
    m.on_closed(conn.id, false, cause);
}

/// msg 2's `media_server.server_urls`: one URL per type plus `all`, unless the
/// configuration omits `all` ([`crate::SimConfig::omit_all_media_url`]).
fn media_server_urls(shared: &SimShared, stream_id: &str) -> MediaServerUrls {
    let url = |key| Some(shared.media_url(stream_id, key));
    MediaServerUrls {
        audio: url("audio"),
        video: url("video"),
        deskshare: url("deskshare"),
        transcript: url("transcript"),
        chat: url("chat"),
        all: url("all").filter(|_| !shared.config.omit_all_media_url),
    }
}

enum OutRx {
    Unbounded(mpsc::UnboundedReceiver<Out>),
    Bounded(mpsc::Receiver<Out>),
}

impl OutRx {
    async fn recv(&mut self) -> Option<Out> {
        match self {
            OutRx::Unbounded(r) => r.recv().await,
            OutRx::Bounded(r) => r.recv().await,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            OutRx::Unbounded(r) => r.is_empty(),
            OutRx::Bounded(r) => r.is_empty(),
        }
    }

    fn try_recv(&mut self) -> Option<Out> {
        match self {
            OutRx::Unbounded(r) => r.try_recv().ok(),
            OutRx::Bounded(r) => r.try_recv().ok(),
        }
    }
}

/// How long a socket that a fault (or a full outbox at the end) cuts off waits for its client
/// to confirm it read everything written, before the socket is dropped anyway.
const KILL_DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// What one connection wrote and what its client confirmed reading, for the ledger's
/// guarantee: a keep-alive answer proves the client read everything written before the
/// request it answers, and so does its answer to the server's close frame.
#[derive(Default)]
struct Delivery {
    /// Messages written that the ledger counts (media, events, stream and session states).
    written: u64,
    /// Of those, how many the client confirmed.
    confirmed: u64,
    /// Keep-alive requests not answered yet: `(sequence, written before it, when sent)`.
    probes: std::collections::VecDeque<(u64, u64, Instant)>,
    ka_seq: u64,
    /// Answer times of requests answered since the ledger last took them.
    answer_times: Vec<Duration>,
}

impl Delivery {
    fn wrote(&mut self, note: &Note) {
        if !matches!(note, Note::None | Note::KeepAlive) {
            self.written += 1;
        }
    }

    /// A keep-alive answer arrived: confirms what was written before the request it
    /// answers (by `sequence`; the oldest request when the answer carries none). Returns
    /// true once every request sent so far is answered.
    fn answered(&mut self, bytes: &[u8]) -> bool {
        let seq = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("sequence").and_then(|s| s.as_u64()));
        let now = Instant::now();
        while let Some(&(s, written, sent)) = self.probes.front() {
            if seq.is_some_and(|a| s > a) {
                break;
            }
            self.probes.pop_front();
            self.confirmed = self.confirmed.max(written);
            if seq.is_none_or(|a| s == a) {
                self.answer_times.push(now - sent);
            }
            if seq.is_none() {
                break;
            }
        }
        self.probes.is_empty()
    }

    fn unconfirmed(&self) -> u64 {
        self.written - self.confirmed
    }

    /// Moves the answer times measured so far into the meeting's ledger.
    fn keep_answer_times(&mut self, m: &Meeting) {
        if !self.answer_times.is_empty() {
            m.ledger_mut()
                .keepalive_answer_times
                .append(&mut self.answer_times);
        }
    }
}

/// Sends the next keep-alive request (msg 12) on a socket and records it. `Err` when the
/// client is gone.
async fn send_keepalive<W>(
    sink: &mut W,
    shared: &SimShared,
    m: &Meeting,
    socket: &str,
    d: &mut Delivery,
) -> Result<(), ()>
where
    W: futures_util::Sink<Message> + Unpin,
{
    d.ka_seq += 1;
    let text = json!({"msg_type": msg_type::KEEP_ALIVE_REQ, "timestamp": unix_ms(),
        "sequence": d.ka_seq})
    .to_string();
    sink.send(frame(shared, text.clone()))
        .await
        .map_err(|_| ())?;
    d.probes.push_back((d.ka_seq, d.written, Instant::now()));
    m.record(socket, &text);
    m.note_sent(Note::KeepAlive);
    Ok(())
}

/// The life of one connection after its handshake (see [`conn_loop_inner`]); at its end,
/// messages the client never confirmed reading are counted in the ledger
/// ([`crate::Counters::unconfirmed`]).
async fn conn_loop<S>(
    ws: WebSocketStream<S>,
    shared: &SimShared,
    m: &Arc<Meeting>,
    signaling: bool,
    rx: OutRx,
    end: EndingTask,
) -> CloseCause
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut d = Delivery::default();
    let cause = conn_loop_inner(ws, shared, m, signaling, rx, end, &mut d).await;
    d.keep_answer_times(m);
    if d.unconfirmed() > 0 {
        m.ledger_mut().counters.unconfirmed += d.unconfirmed();
    }
    cause
}

/// Write queued messages, answer the client, send keep-alives when idle and end the socket
/// after too many misses. The client's messages are read before the outbox, so its close
/// and its keep-alive answers are never left unread behind a busy outbox.
async fn conn_loop_inner<S>(
    ws: WebSocketStream<S>,
    shared: &SimShared,
    m: &Arc<Meeting>,
    signaling: bool,
    mut rx: OutRx,
    end: EndingTask,
    d: &mut Delivery,
) -> CloseCause
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let socket = if signaling { "signaling" } else { "media" };
    let (mut sink, mut stream) = ws.split();
    let interval = shared.config.keepalive_interval;
    let mut beat = Beat {
        last_sent: Instant::now(),
        outstanding: false,
        misses: 0,
        probe: None,
    };
    loop {
        tokio::select! {
            biased;
            _ = end.kill.cancelled() => {
                // Fast pace holds the timeline across a drop: what this socket never wrote
                // goes out first on the next one.
                if !signaling && m.pace == crate::Pace::Fast {
                    requeue_unwritten(m, &mut rx);
                }
                drop(rx);
                if !m.cancel.is_cancelled() {
                    drain_before_kill(&mut sink, &mut stream, shared, m, signaling, d).await;
                    let _ = end.drained.send(true);
                    // The group is released once its slowest socket drained, which takes
                    // at most KILL_DRAIN_LIMIT after the kill; wait a little longer than that.
                    let _ = tokio::time::timeout(2 * KILL_DRAIN_LIMIT, end.release.cancelled())
                        .await;
                }
                return CloseCause::Server;
            }
            inbound = stream.next() => {
                let bytes = match inbound {
                    Some(Ok(Message::Text(t))) => Bytes::from(t),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return CloseCause::Client,
                    Some(Ok(_)) => continue,
                };
                if peek_type(&bytes).ok() == Some(msg_type::KEEP_ALIVE_RESP) {
                    d.answered(&bytes);
                    d.keep_answer_times(m);
                }
                if handle_inbound(m, signaling, &bytes, &mut beat.outstanding, &mut beat.misses) {
                    return CloseCause::Server;
                }
                if !beat.outstanding && let Some(done) = beat.probe.take() {
                    let _ = done.send(());
                }
            }
            out = rx.recv() => {
                let Some(out) = out.filter(|o| !matches!(o, Out::Close)) else {
                    drop(rx);
                    close_and_confirm(&mut sink, &mut stream, m, signaling, d).await;
                    return CloseCause::Server;
                };
                let outbox = Outbox { shared, m, socket, rx: &rx };
                if outbox.write(out, &mut sink, &mut beat, d).await.is_err() {
                    return CloseCause::Client;
                }
            }
            _ = tokio::time::sleep_until(beat.last_sent + interval) => {
                if let Some(cause) = idle(&mut sink, shared, m, socket, &mut beat, d).await {
                    return cause;
                }
            }
        }
    }
}

/// A socket's keep-alive bookkeeping: when it last wrote, whether an answer is awaited,
/// how many went unanswered, and a drain probe waiting for the answer.
struct Beat {
    last_sent: Instant,
    outstanding: bool,
    misses: u32,
    probe: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Writes what the meeting queued for one socket.
struct Outbox<'a> {
    shared: &'a SimShared,
    m: &'a Meeting,
    socket: &'static str,
    /// While more is queued, writes go without a flush (one syscall for a burst).
    rx: &'a OutRx,
}

impl Outbox<'_> {
    /// Writes one item of the outbox (never [`Out::Close`]); an error when the client is gone.
    async fn write<W>(
        &self,
        out: Out,
        sink: &mut W,
        beat: &mut Beat,
        d: &mut Delivery,
    ) -> Result<(), ()>
    where
        W: futures_util::Sink<Message> + Unpin,
    {
        let (shared, m) = (self.shared, self.m);
        match out {
            Out::Msg { text, note } => {
                m.record(self.socket, &text);
                d.wrote(&note);
                sink.feed(frame(shared, text)).await.map_err(drop)?;
                if self.rx.is_empty() {
                    sink.flush().await.map_err(drop)?;
                }
                m.note_sent(note);
                beat.last_sent = Instant::now();
            }
            Out::Sync {
                probe: wants_answer,
                done,
            } => {
                sink.flush().await.map_err(drop)?;
                if !wants_answer {
                    let _ = done.send(());
                    return Ok(());
                }
                send_keepalive(sink, shared, m, self.socket, d).await?;
                beat.outstanding = true;
                beat.last_sent = Instant::now();
                beat.probe = Some(done);
            }
            Out::Burst(msgs) => {
                let mut notes = Vec::with_capacity(msgs.len());
                for (text, note) in msgs {
                    m.record(self.socket, &text);
                    d.wrote(&note);
                    sink.feed(frame(shared, text)).await.map_err(drop)?;
                    notes.push(note);
                }
                if self.rx.is_empty() {
                    sink.flush().await.map_err(drop)?;
                }
                m.note_sent_all(notes);
                beat.last_sent = Instant::now();
            }
            Out::Close => {}
        }
        Ok(())
    }
}

/// Nothing written for a keep-alive interval: sends a keep-alive, or closes the socket
/// once too many went unanswered.
async fn idle<W>(
    sink: &mut W,
    shared: &SimShared,
    m: &Meeting,
    socket: &'static str,
    beat: &mut Beat,
    d: &mut Delivery,
) -> Option<CloseCause>
where
    W: futures_util::Sink<Message> + Unpin,
{
    beat.last_sent = Instant::now();
    if !m.keepalives_enabled() {
        return None;
    }
    if beat.outstanding {
        beat.misses += 1;
        let limit = shared.config.missed_keepalive_limit.max(1);
        if beat.misses >= limit {
            tracing::info!(stream = %m.stream_id, socket, misses = beat.misses, "keep-alive timeout");
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Policy,
                    reason: Utf8Bytes::from_static("keep-alive timeout"),
                })))
                .await;
            return Some(CloseCause::KeepAliveTimeout);
        }
    }
    if send_keepalive(sink, shared, m, socket, d).await.is_err() {
        return Some(CloseCause::Client);
    }
    beat.outstanding = true;
    None
}

/// Ends the stream's socket with a close frame and waits (at most [`KILL_DRAIN_LIMIT`]) for
/// the client's close frame, which proves it read everything before ours. What the client
/// sends meanwhile (a late keep-alive answer, say) is handled as usual.
async fn close_and_confirm<W, R>(
    sink: &mut W,
    stream: &mut R,
    m: &Arc<Meeting>,
    signaling: bool,
    d: &mut Delivery,
) where
    W: futures_util::Sink<Message> + Unpin,
    R: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let close = Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: Utf8Bytes::from_static("stream ended"),
    }));
    if sink.send(close).await.is_err() {
        return;
    }
    let (mut outstanding, mut misses) = (false, 0);
    let answered = async {
        while let Some(Ok(msg)) = stream.next().await {
            let bytes = match msg {
                Message::Close(_) => return true,
                Message::Text(t) => Bytes::from(t),
                Message::Binary(b) => b,
                _ => continue,
            };
            handle_inbound(m, signaling, &bytes, &mut outstanding, &mut misses);
        }
        false
    };
    if let Ok(true) = tokio::time::timeout(KILL_DRAIN_LIMIT, answered).await {
        d.confirmed = d.written;
    }
}

/// Keeps the media messages a killed socket had queued but not written (fast pace).
fn requeue_unwritten(m: &Meeting, rx: &mut OutRx) {
    while let Some(out) = rx.try_recv() {
        match out {
            Out::Msg { text, note } => m.requeue(text, note),
            Out::Burst(msgs) => {
                for (text, note) in msgs {
                    m.requeue(text, note);
                }
            }
            _ => {}
        }
    }
}

/// Before a fault cuts a socket off: writes out what was written so far, sends a keep-alive
/// request and reads the client's messages until it answers (at most [`KILL_DRAIN_LIMIT`]),
/// so every message the ledger counts was read by the client before the socket goes. The
/// socket is then dropped without a close frame, as abruptly as before; nothing it wrote is
/// still unread on the client's side. An answer is taken as proof of reading even while
/// a fault throws keep-alive answers away.
async fn drain_before_kill<W, R>(
    sink: &mut W,
    stream: &mut R,
    shared: &SimShared,
    m: &Arc<Meeting>,
    signaling: bool,
    d: &mut Delivery,
) where
    W: futures_util::Sink<Message> + Unpin,
    R: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let socket = if signaling { "signaling" } else { "media" };
    if d.unconfirmed() == 0 || sink.flush().await.is_err() {
        return;
    }
    if send_keepalive(sink, shared, m, socket, d).await.is_err() {
        return;
    }
    let (mut outstanding, mut misses) = (true, 0);
    let answered = async {
        while let Some(Ok(msg)) = stream.next().await {
            let bytes = match msg {
                Message::Text(t) => Bytes::from(t),
                Message::Binary(b) => b,
                Message::Close(_) => return,
                _ => continue,
            };
            let answer = peek_type(&bytes).ok() == Some(msg_type::KEEP_ALIVE_RESP);
            handle_inbound(m, signaling, &bytes, &mut outstanding, &mut misses);
            if answer && d.answered(&bytes) {
                return;
            }
        }
    };
    if tokio::time::timeout(KILL_DRAIN_LIMIT, answered)
        .await
        .is_err()
    {
        tracing::debug!(stream = %m.stream_id, socket, "client did not confirm before the drop");
    }
}

/// Handles one client message. Returns true when the connection should end.
fn handle_inbound(
    m: &Arc<Meeting>,
    signaling: bool,
    bytes: &[u8],
    outstanding: &mut bool,
    misses: &mut u32,
) -> bool {
    let Ok(t) = peek_type(bytes) else {
        tracing::debug!(stream = %m.stream_id, "ignoring a message without an integer msg_type");
        return false;
    };
    match t {
        msg_type::KEEP_ALIVE_RESP => {
            if m.answers_ignored(signaling) {
                m.ledger_mut().counters.keepalive_answers_ignored += 1;
            } else {
                m.ledger_mut().counters.keepalive_answers += 1;
                *outstanding = false;
                *misses = 0;
            }
        }
        msg_type::CLIENT_READY_ACK => m.client_ready(),
        msg_type::EVENT_SUBSCRIPTION if signaling => {
            if let Ok(s) = serde_json::from_slice::<EventSubscription>(bytes) {
                let items: Vec<(u32, bool)> = s
                    .events
                    .iter()
                    .map(|e| (e.event_type, e.subscribe))
                    .collect();
                m.subscribe(&items);
            }
        }
        msg_type::VIDEO_SUBSCRIPTION_REQ if signaling => m.video_subscription(bytes),
        msg_type::STREAM_CLOSE_REQ if signaling => {
            m.ledger_mut().counters.stream_close_requests += 1;
            let st = m.state();
            m.send_signaling(
                &st,
                json!({"msg_type": msg_type::STREAM_CLOSE_RESP, "rtms_stream_id": m.stream_id,
                    "status_code": status::OK, "reason": "", "timestamp": unix_ms()}),
                Note::None,
            );
            drop(st);
            let _ = m.control.send(Control::Terminate {
                reason: stop_reason::RECEIVER_REQUEST_CLOSE,
            });
        }
        other => {
            tracing::debug!(stream = %m.stream_id, msg_type = other, "ignoring client message")
        }
    }
    false
}

/// The server's WebSocket settings. tungstenite zeroes a read-buffer-sized chunk before each
/// read, and a media socket is polled for reads every time it sends; with the default 128 KiB
/// chunk that zeroing was most of the simulator's CPU at real-time pace. What a client sends
/// here is small (handshakes, keep-alive answers), and a larger message is still read whole,
/// in 4 KiB steps.
pub(crate) fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(route(Role::Signaling, "/signaling"), Some(Route::default()));
        let r = route(Role::Signaling, "/signaling/abc/2").unwrap();
        assert_eq!((r.stream.as_deref(), r.generation), (Some("abc"), Some(2)));
        let r = route(Role::Media, "/media/abc/audio").unwrap();
        assert_eq!(r.kind, Some(MediaKind::Audio));
        assert_eq!(route(Role::Media, "/media/abc/all").unwrap().kind, None);
        assert_eq!(route(Role::Media, "/media/abc/bogus"), None);
        assert_eq!(route(Role::Signaling, "/media/abc/all"), None);
    }
}
