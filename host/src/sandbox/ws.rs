//! Plugins' outbound WebSockets (contract 0.2, `websocket`), behind the same `[plugin.net]`
//! allow-list, address checks, TLS and proxy as their HTTP requests ([`super::net`]).
//!
//! The host owns every socket. `open` checks the URL against the `ws://` / `wss://`
//! patterns and takes a slot of `max_concurrent` and a token of `requests_per_minute`, then
//! returns at once; a task of the host resolves (public addresses only unless allowed),
//! connects, shakes hands and then reads the socket. What it reads goes into the
//! connection's buffer, bounded in bytes; on a full buffer the oldest messages are dropped
//! (counted) or the connection fails, as the plugin chose. The worker of the (plugin,
//! session) drains the buffers between batches of frames ([`Hub::take`]) and calls the
//! plugin's `on-ws-message` / `on-ws-event`, so a peer that floods or stalls never holds a
//! frame. `send` only queues (at most [`SEND_QUEUE`] messages); a peer that stops reading
//! fails its connection after `between_bytes_timeout_ms`. Dropping the `connection` (or
//! the instance: session end, reload, trap) sends a close frame and ends the task.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::Uri;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use wasmtime::component::Resource;

use super::bindings::WsConnection;
use super::bindings::v02::rtms::plugin::websocket::{
    self as wit, OnFull, OpenOptions, WsError, WsEvent, WsMessage,
};
use super::descriptors::Slot;
use super::net::{Caller, Failed, NetEvent, NetGate, Reason, Target, connect, resolve, stop};
use super::store::StoreData;
use super::ws_hub::ConnState;
pub use super::ws_hub::{DRAIN_MAX, Hub, Item};

/// Messages a connection holds waiting to go out; `send` past it is refused (`limit`).
pub const SEND_QUEUE: usize = 64;
/// The longest `connection.finish` waits for the peer to close.
pub const FINISH_MAX: Duration = Duration::from_secs(10);
/// The receive buffer when the plugin names none.
pub const DEFAULT_BUFFER: u64 = 1 << 20;
/// The guest's handle on a connection (the `connection` resource). Dropping it closes the
/// socket.
pub struct Connection {
    shared: Arc<ConnState>,
    /// `None` once `finish` closed the connection.
    out: Option<mpsc::Sender<Message>>,
}

impl Connection {
    /// Queues a message for the peer.
    fn send(&self, message: WsMessage) -> Result<(), WsError> {
        let out = self
            .out
            .as_ref()
            .ok_or_else(|| WsError::Closed("the connection was finished".into()))?;
        let m = match message {
            WsMessage::Text(t) => Message::text(t),
            WsMessage::Binary(b) => Message::binary(b),
        };
        out.try_send(m).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WsError::Limit(format!(
                "{SEND_QUEUE} messages are already waiting to go out: the peer reads slower than the plugin sends"
            )),
            mpsc::error::TrySendError::Closed(_) => {
                WsError::Closed("the connection is closed".into())
            }
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.buf.lock().detached = true;
    }
}

/// What the task of a connection needs.
struct Task {
    gate: Arc<NetGate>,
    ctx: Arc<Caller>,
    hub: Arc<Hub>,
    shared: Arc<ConnState>,
    target: Target,
    rule: rtms_config::HttpRule,
    url: String,
    request: http::Request<()>,
    cap: usize,
    on_full: OnFull,
    _permit: OwnedSemaphorePermit,
    /// The socket's slot of the process's descriptor budget.
    _slot: Slot,
}

impl Task {
    /// Leaves an item for the plugin; false when the buffer is full and the plugin chose
    /// `close`.
    fn push(&self, item: Item, n: usize) -> bool {
        let mut b = self.shared.buf.lock();
        if b.detached {
            return true;
        }
        if matches!(item, Item::Message(_)) {
            while b.bytes + n > self.cap && !b.items.is_empty() {
                if self.on_full == OnFull::Close {
                    return false;
                }
                // Events (opened) stay: only messages are dropped.
                let Some(i) = b
                    .items
                    .iter()
                    .position(|(it, _)| matches!(it, Item::Message(_)))
                else {
                    break;
                };
                let Some((_, m)) = b.items.remove(i) else {
                    break;
                };
                b.bytes -= m;
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.ctx.record(NetEvent::Stopped(Reason::BufferFull));
                if rtms_client::ratelog::admit("plugin websocket: receive buffer full") {
                    tracing::warn!(plugin = %self.ctx.plugin, stream = %self.ctx.stream_id, url = %self.url, buffer_bytes = self.cap, "plugin WebSocket receives faster than the plugin takes messages: the oldest are dropped (counted as buffer_full)");
                }
            }
        }
        b.bytes += n;
        b.items.push_back((item, n));
        drop(b);
        self.hub.notify.notify_one();
        self.shared.changed.notify_waiters();
        true
    }

    fn finish(&self, event: WsEvent) {
        self.push(Item::Event(event), 0);
        self.done();
    }

    fn done(&self) {
        self.shared.buf.lock().done = true;
        self.hub.notify.notify_one();
        self.shared.changed.notify_waiters();
    }

    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let ws = match self.handshake().await {
            Ok((ws, proto)) => {
                self.push(Item::Event(WsEvent::Opened(proto)), 0);
                ws
            }
            Err(why) => return self.finish(WsEvent::Failed(why)),
        };
        let between = self.gate.policy.between_bytes_timeout;
        let (mut sink, mut stream) = ws.split();
        let end = loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(m) => {
                        let n = m.len() as u64;
                        match tokio::time::timeout(between, sink.send(m)).await {
                            Ok(Ok(())) => self.ctx.record(NetEvent::BytesOut(n)),
                            Ok(Err(e)) => break WsEvent::Failed(format!("send failed: {e}")),
                            Err(_) => break self.stopped(Reason::Timeout, format!("the peer did not take a message within [plugin.net] between_bytes_timeout_ms = {}", between.as_millis())),
                        }
                    }
                    None => {
                        let _ = tokio::time::timeout(between, sink.close()).await;
                        return self.done();
                    }
                },
                got = stream.next() => match self.received(got) {
                    Ok(()) => {}
                    Err(event) => break event,
                },
            }
        };
        let _ = tokio::time::timeout(between, sink.close()).await;
        self.finish(end);
    }

    /// Handles what the socket gave; `Err` with the connection's last event when it ends.
    fn received(&self, got: Option<Result<Message, tungstenite::Error>>) -> Result<(), WsEvent> {
        let (item, n) = match got {
            Some(Ok(Message::Text(t))) => {
                let n = t.len();
                (Item::Message(WsMessage::Text(t.as_str().to_owned())), n)
            }
            Some(Ok(Message::Binary(b))) => (Item::Message(WsMessage::Binary(b.to_vec())), b.len()),
            Some(Ok(Message::Close(f))) => {
                let (code, reason) = f.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.as_str().to_owned())
                });
                return Err(WsEvent::Closed((code, reason)));
            }
            Some(Ok(_)) => return Ok(()),
            Some(Err(tungstenite::Error::Capacity(e))) => {
                return Err(self.stopped(
                    Reason::BufferFull,
                    format!(
                        "a message passed the connection's buffer of {} bytes: {e}",
                        self.cap
                    ),
                ));
            }
            Some(Err(e)) => return Err(WsEvent::Failed(format!("receive failed: {e}"))),
            None => {
                return Err(WsEvent::Failed(
                    "the connection ended without a close frame".into(),
                ));
            }
        };
        self.ctx.record(NetEvent::BytesIn(n as u64));
        if self.push(item, n) {
            return Ok(());
        }
        Err(self.stopped(Reason::BufferFull, format!("the receive buffer of {} bytes is full and the plugin opened the connection with on-full = close", self.cap)))
    }

    fn stopped(&self, reason: Reason, why: String) -> WsEvent {
        stop(&self.ctx, Some(&self.gate), reason, &self.url, &why);
        WsEvent::Failed(why)
    }

    async fn handshake(
        &self,
    ) -> Result<
        (
            tokio_tungstenite::WebSocketStream<Box<dyn super::net::Io>>,
            Option<String>,
        ),
        String,
    > {
        let g = &*self.gate;
        let within = g.policy.connect_timeout;
        let failed = |f: Failed| match f {
            Failed::Stopped(r, why) => {
                stop(&self.ctx, Some(g), r, &self.url, &why);
                why
            }
            Failed::Other(e) => format!("cannot connect: {e}"),
        };
        let addrs = resolve(g, &self.target, &self.rule, within)
            .await
            .map_err(failed)?;
        let io = connect(g, &self.target, &addrs, within)
            .await
            .map_err(failed)?;
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(self.cap);
        config.max_frame_size = Some(self.cap);
        let shake =
            tokio_tungstenite::client_async_with_config(self.request.clone(), io, Some(config));
        let (ws, res) = match tokio::time::timeout(within, shake).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(format!("the WebSocket handshake failed: {e}")),
            Err(_) => return Err(self.stopped_text(Reason::Timeout, within)),
        };
        let proto = res
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((ws, proto))
    }

    fn stopped_text(&self, reason: Reason, within: Duration) -> String {
        let why = format!(
            "the WebSocket handshake took longer than [plugin.net] connect_timeout_ms = {}",
            within.as_millis()
        );
        stop(&self.ctx, Some(&self.gate), reason, &self.url, &why);
        why
    }
}

/// Headers the host sets for the handshake; a guest may not.
const RESERVED: [&str; 6] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

/// The handshake request for `url` with the guest's headers and subprotocols.
fn request(url: &str, opts: &OpenOptions) -> Result<http::Request<()>, String> {
    let mut req = url
        .into_client_request()
        .map_err(|e| format!("{url:?} is not a ws:// or wss:// URL: {e}"))?;
    let h = req.headers_mut();
    for (name, value) in &opts.headers {
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "the header {name:?} is set by the host for the handshake; leave it out"
            ));
        }
        let n = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid header name"))?;
        let v = http::HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header {name:?} is not a valid header value"))?;
        h.append(n, v);
    }
    if !opts.subprotocols.is_empty() {
        let v = http::HeaderValue::from_str(&opts.subprotocols.join(", "))
            .map_err(|_| "the subprotocols are not valid header text".to_owned())?;
        h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    Ok(req)
}

fn denied(ctx: &Caller, gate: Option<&NetGate>, reason: Reason, url: &str, why: String) -> WsError {
    stop(ctx, gate, reason, url, &why);
    match reason {
        Reason::Concurrency | Reason::Rate | Reason::Descriptors => WsError::Limit(why),
        _ => WsError::Denied(why),
    }
}

impl StoreData {
    /// `websocket.open`: checks, then starts the connection's task.
    fn ws_open(&mut self, url: String, opts: OpenOptions) -> Result<Connection, WsError> {
        let ctx = self.net.ctx.clone();
        let uri: Uri = url
            .parse()
            .map_err(|_| WsError::Invalid(format!("{url:?} is not a URL")))?;
        let shown = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("?"),
            uri.authority().map_or("", |a| a.as_str()),
            uri.path()
        );
        let Some(gate) = self.net.gate.clone() else {
            let why = "the plugin has no [plugin.net] table: add one whose http list names the ws:// or wss:// URLs it may open".to_owned();
            return Err(denied(&ctx, None, Reason::NoGrant, &shown, why));
        };
        if !matches!(uri.scheme_str(), Some("ws" | "wss")) {
            return Err(WsError::Invalid(format!(
                "{shown} is not a ws:// or wss:// URL"
            )));
        }
        let target = Target::of(&uri).map_err(|e| WsError::Invalid(format!("{shown}: {e}")))?;
        let rule = gate
            .check(&target)
            .map_err(|(r, why)| denied(&ctx, Some(&gate), r, &shown, why))?
            .clone();
        let request = request(&url, &opts).map_err(WsError::Invalid)?;
        let cap = opts
            .buffer_bytes
            .unwrap_or(DEFAULT_BUFFER)
            .min(gate.policy.max_response_bytes)
            .max(1) as usize;
        let permit = gate
            .admit()
            .map_err(|(r, why)| denied(&ctx, Some(&gate), r, &shown, why))?;
        let slot = ctx
            .slot()
            .map_err(|(r, why)| denied(&ctx, Some(&gate), r, &shown, why))?;
        ctx.record(NetEvent::Started);
        let shared = self.ctx.ws.add();
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let task = Task {
            gate,
            ctx,
            hub: self.ctx.ws.clone(),
            shared: shared.clone(),
            target,
            rule,
            url: shown,
            request,
            cap,
            on_full: opts.on_full,
            _permit: permit,
            _slot: slot,
        };
        tokio::spawn(task.run(rx));
        Ok(Connection {
            shared,
            out: Some(tx),
        })
    }
}

impl wit::Host for StoreData {
    fn open(
        &mut self,
        url: String,
        options: OpenOptions,
    ) -> Result<Resource<WsConnection>, WsError> {
        let conn = self.ws_open(url, options)?;
        self.table_mut()
            .push(WsConnection(Box::new(conn)))
            .map_err(|e| WsError::Limit(format!("the instance holds too many resources: {e}")))
    }
}

fn conn_of(c: &WsConnection) -> Option<&Connection> {
    c.0.downcast_ref()
}

impl wit::HostConnection for StoreData {
    fn id(&mut self, conn: Resource<WsConnection>) -> u64 {
        self.table_mut()
            .get(&conn)
            .ok()
            .and_then(conn_of)
            .map_or(0, |c| c.shared.id)
    }

    fn send(&mut self, conn: Resource<WsConnection>, message: WsMessage) -> Result<(), WsError> {
        let c = self
            .table_mut()
            .get(&conn)
            .ok()
            .and_then(conn_of)
            .ok_or_else(|| WsError::Closed("no such connection".into()))?;
        c.send(message)
    }

    fn dropped(&mut self, conn: Resource<WsConnection>) -> u64 {
        self.table_mut()
            .get(&conn)
            .ok()
            .and_then(conn_of)
            .map_or(0, |c| c.shared.dropped.load(Ordering::Relaxed))
    }

    async fn finish(
        &mut self,
        conn: Resource<WsConnection>,
        last: Option<WsMessage>,
        timeout_ms: u32,
    ) -> Result<wit::Finished, WsError> {
        let closed = || WsError::Closed("no such connection".into());
        let c = self
            .table_mut()
            .get(&conn)
            .ok()
            .and_then(conn_of)
            .ok_or_else(closed)?;
        if let Some(m) = last {
            c.send(m)?;
        }
        let shared = c.shared.clone();
        let wait = Duration::from_millis(timeout_ms.into()).min(FINISH_MAX);
        let until = tokio::time::Instant::now() + wait;
        loop {
            // Made before the check, so a change between the two is not missed.
            let changed = shared.changed.notified();
            if shared.buf.lock().done || tokio::time::timeout_at(until, changed).await.is_err() {
                break;
            }
        }
        let finished = shared.take_all();
        if let Some(c) = self
            .table_mut()
            .get_mut(&conn)
            .ok()
            .and_then(|c| c.0.downcast_mut::<Connection>())
        {
            // The reading task sees its queue closed, sends a close frame and ends.
            c.out = None;
        }
        Ok(finished)
    }

    fn drop(&mut self, conn: Resource<WsConnection>) -> wasmtime::Result<()> {
        self.table_mut().delete(conn)?;
        Ok(())
    }
}
