//! Zoom's REST side, as far as starting RTMS on purpose needs it: the Server-to-Server OAuth
//! token endpoint and the RTMS app status endpoint of live meetings.
//!
//! - `POST /oauth/token?grant_type=account_credentials&account_id=ID` with HTTP Basic
//!   credentials (the OAuth app's client id and secret) answers
//!   `{"access_token", "token_type": "bearer", "expires_in", "scope"}`; wrong credentials or
//!   account get 400 `{"reason", "error": "invalid_client"}` as Zoom answers.
//! - `PATCH /v2/live_meetings/{meetingId}/rtms_app/status` with `Authorization: Bearer` and
//!   `{"action": "start"|"stop"|"pause"|"resume", "settings": {"client_id": ...}}` acts on a
//!   meeting prepared with [`ZoomApi::prepare`]: `start` starts it (the started webhook goes
//!   out as usual), `stop` ends it with STOP_REASON 25 (MANUAL_API_TRIGGERED), `pause` and
//!   `resume` pause and resume it. Success is 204 with no body. Errors carry Zoom's
//!   `{"code", "message"}`: 401 code 124 for a missing, unknown or expired token, 404 code
//!   3001 for an unknown meeting, 400 code 300 for a bad action or an RTMS client id that is
//!   not the simulator's, and whatever [`ZoomApi::fail_next`] queued (429 with `Retry-After`,
//!   say).
//!
//! - `PUT /v2/contact_center/{engagementId}/rtms_app/status`, the same for a Zoom Contact
//!   Center engagement prepared with [`ZoomApi::prepare`] and `product: ContactCenter` (its
//!   meeting id is the engagement id); each endpoint finds only its own product's (404 code
//!   3001 otherwise).
//!
//! - `GET /v2/meetings/{meetingId}` with `Authorization: Bearer` answers a meeting prepared
//!   with [`ZoomApi::prepare_numbered`] as `{"id": <number>, "uuid": ...}` (404 code 3001
//!   otherwise); the status endpoint then takes the number as well as the uuid.
//!
//! It also serves Zoom's event WebSocket ([`ZoomApi::event_ws_url`]):
//! `ws://…/ws?subscriptionId=ID&access_token=TOKEN` with a token from the endpoint above and
//! the configured subscription id (else the upgrade is refused with 401). Events arrive as
//! `{"module": "message", "content": "<the webhook body as a string>"}`; a client's
//! `{"module": "heartbeat"}` is answered with `{"module": "heartbeat", "success": true}`, and
//! a connection without a heartbeat for [`ApiConfig::heartbeat_timeout`] is closed.
//! [`ZoomApi::forward`] sends a meeting's webhook events to the connected subscribers.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{MeetingHandle, MeetingOptions, MeetingScript, Simulator};

/// Live tokens the API remembers at most: asking for more retires the one expiring first
/// (whoever can ask holds the OAuth credentials, but the map must not grow without end).
pub const MAX_TOKENS: usize = 1024;

/// The OAuth app the token endpoint accepts.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub account_id: String,
    pub oauth_client_id: String,
    pub oauth_client_secret: String,
    /// `expires_in` of issued tokens (Zoom: 3600 s).
    pub token_ttl: Duration,
    /// The event subscription the event WebSocket serves.
    pub event_subscription_id: String,
    /// A connection without a heartbeat for this long is closed (Zoom asks for one every
    /// 30 s).
    pub heartbeat_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            account_id: "sim-account".into(),
            oauth_client_id: "sim-oauth-client".into(),
            oauth_client_secret: "sim-oauth-secret".into(),
            token_ttl: Duration::from_secs(3600),
            event_subscription_id: "sim-subscription".into(),
            heartbeat_timeout: Duration::from_secs(90),
        }
    }
}

/// A queued failure: the next status call gets this answer instead.
#[derive(Clone, Debug)]
pub struct Failure {
    pub status: u16,
    pub body: Value,
    pub retry_after_secs: Option<u64>,
}

/// What the API did, for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiCounts {
    pub tokens_issued: u64,
    pub token_refusals: u64,
    /// `(meeting id, action, HTTP status)` of every status call, in order.
    pub status_calls: Vec<(String, String, u16)>,
    /// Event WebSocket connections accepted, and refused (bad token or subscription).
    pub event_ws_connections: u64,
    pub event_ws_refused: u64,
    /// Event messages sent (counted once per connection).
    pub events_sent: u64,
    pub heartbeats: u64,
}

enum Prepared {
    Waiting(Box<(MeetingScript, MeetingOptions)>),
    Live(MeetingHandle),
}

struct State {
    cfg: ApiConfig,
    rtms_client_id: String,
    tokens: HashMap<String, Instant>,
    meetings: HashMap<String, Prepared>,
    /// Meeting numbers of meetings prepared with one, to their uuid.
    numbers: HashMap<String, String>,
    failures: VecDeque<Failure>,
    counts: ApiCounts,
    /// Signalled whenever a prepared meeting starts.
    started: Arc<tokio::sync::Notify>,
    /// Connected event WebSocket clients.
    subscribers: Vec<(
        tokio::sync::mpsc::UnboundedSender<String>,
        CancellationToken,
    )>,
}

/// The REST API, on its own 127.0.0.1 port. Dropping it stops the server.
pub struct ZoomApi {
    addr: SocketAddr,
    ws_addr: SocketAddr,
    state: Arc<Mutex<State>>,
    cancel: CancellationToken,
}

impl Drop for ZoomApi {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn answer(status: StatusCode, body: Option<Value>) -> Response<Full<Bytes>> {
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    if status != StatusCode::NO_CONTENT {
        r.headers_mut()
            .insert("content-type", "application/json".parse().expect("static"));
    }
    r
}

fn zoom_error(status: StatusCode, code: u32, message: String) -> Response<Full<Bytes>> {
    answer(status, Some(json!({"code": code, "message": message})))
}

impl ZoomApi {
    /// Serves the API for `sim` on 127.0.0.1 port 0.
    pub async fn start(sim: &Simulator, cfg: ApiConfig) -> anyhow::Result<ZoomApi> {
        Self::start_on(sim, cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves the API for `sim` on `addr` (the event WebSocket on the same IP, any port).
    pub async fn start_on(
        sim: &Simulator,
        cfg: ApiConfig,
        addr: SocketAddr,
    ) -> anyhow::Result<ZoomApi> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr} for the Zoom API: {e} (pick another port)")
        })?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            cfg,
            rtms_client_id: sim.config().client_id.clone(),
            tokens: HashMap::new(),
            meetings: HashMap::new(),
            numbers: HashMap::new(),
            failures: VecDeque::new(),
            counts: ApiCounts::default(),
            started: Arc::new(tokio::sync::Notify::new()),
            subscribers: Vec::new(),
        }));
        let ws_listener = TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?;
        let ws_addr = ws_listener.local_addr()?;
        let cancel = sim.cancel.child_token();
        let starter = sim.starter();
        let (st, stop) = (state.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    () = stop.cancelled() => break,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let st = st.clone();
                let starter = starter.clone();
                let service = service_fn(move |req| {
                    let st = st.clone();
                    let starter = starter.clone();
                    async move { Ok::<_, Infallible>(route(&st, &starter, req).await) }
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        tokio::spawn(serve_event_ws(ws_listener, state.clone(), cancel.clone()));
        Ok(ZoomApi {
            addr,
            ws_addr,
            state,
            cancel,
        })
    }

    /// The API base (`http://127.0.0.1:port`): both `api_base_url` and `oauth_base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers a meeting that starts streaming only when the status endpoint says
    /// `start`. Returns its meeting id (the uuid, `opts.meeting_id` when set).
    pub fn prepare(&self, script: MeetingScript, mut opts: MeetingOptions) -> String {
        let id = opts
            .meeting_id
            .get_or_insert_with(crate::meeting::random_meeting_id)
            .clone();
        self.lock()
            .meetings
            .insert(id.clone(), Prepared::Waiting(Box::new((script, opts))));
        id
    }

    /// Like [`ZoomApi::prepare`], with a meeting number (digits) that `GET /v2/meetings/{id}`
    /// resolves to the meeting's uuid and the status endpoint takes as well.
    pub fn prepare_numbered(
        &self,
        number: &str,
        script: MeetingScript,
        opts: MeetingOptions,
    ) -> String {
        let uuid = self.prepare(script, opts);
        self.lock().numbers.insert(number.to_owned(), uuid.clone());
        uuid
    }

    /// The ids of every meeting prepared so far, started or not, in no particular order.
    pub fn prepared_ids(&self) -> Vec<String> {
        self.lock().meetings.keys().cloned().collect()
    }

    /// The handle of a prepared meeting once `start` started it.
    pub fn meeting(&self, id: &str) -> Option<MeetingHandle> {
        match self.lock().meetings.get(id) {
            Some(Prepared::Live(h)) => Some(h.clone()),
            _ => None,
        }
    }

    /// Waits until the prepared meeting `id` is started through the status endpoint.
    pub async fn started(&self, id: &str) -> MeetingHandle {
        let started = self.lock().started.clone();
        loop {
            let next = started.notified();
            if let Some(h) = self.meeting(id) {
                return h;
            }
            next.await;
        }
    }

    /// The next status call gets `failure` instead of being carried out.
    pub fn fail_next(&self, failure: Failure) {
        self.lock().failures.push_back(failure);
    }

    /// Expires every token issued so far.
    pub fn expire_tokens(&self) {
        self.lock().tokens.clear();
    }

    pub fn counts(&self) -> ApiCounts {
        self.lock().counts.clone()
    }

    /// The event WebSocket's URL, without its query (`ws://127.0.0.1:port/ws`).
    pub fn event_ws_url(&self) -> String {
        format!("ws://{}/ws", self.ws_addr)
    }

    /// Sends the meeting's current started event, then every webhook event it emits, to
    /// the event WebSocket's subscribers (the meeting should have no webhook URL).
    pub fn forward(&self, meeting: &MeetingHandle) {
        let mut events = meeting.subscribe_webhooks();
        let account = self.lock().cfg.account_id.clone();
        let state = self.state.clone();
        let publish = move |body: Vec<u8>| {
            let content = String::from_utf8_lossy(&body).into_owned();
            let msg = json!({"module": "message", "content": content}).to_string();
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.subscribers.retain(|(tx, _)| tx.send(msg.clone()).is_ok());
            s.counts.events_sent += s.subscribers.len() as u64;
        };
        publish(meeting.started_body());
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    () = cancel.cancelled() => return,
                    ev = events.recv() => ev,
                };
                match ev {
                    Ok(ev) => {
                        let last = ev.action == rtms_proto::WebhookAction::Stopped;
                        publish(crate::webhook::webhook_body(&ev, &account));
                        if last {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
    }

    /// Publishes one of Zoom's concurrency notices about `meeting` on the event WebSocket
    /// (`rtms.concurrency_limited`, `rtms.concurrency_near_limit`, `rtms.start_failed`).
    pub fn publish_notice(&self, kind: rtms_proto::webhook::NoticeKind, meeting: &MeetingHandle) {
        let account = self.lock().cfg.account_id.clone();
        let event = crate::webhook::notice_ws_event(kind);
        let body =
            crate::webhook::notice_body(&event, meeting.product(), meeting.meeting_id(), &account);
        let content = String::from_utf8_lossy(&body).into_owned();
        let msg = json!({"module": "message", "content": content}).to_string();
        let mut s = self.lock();
        s.subscribers.retain(|(tx, _)| tx.send(msg.clone()).is_ok());
        s.counts.events_sent += s.subscribers.len() as u64;
    }

    /// Closes every event WebSocket connection (the client should reconnect).
    pub fn drop_event_connections(&self) {
        for (_, closed) in self.lock().subscribers.drain(..) {
            closed.cancel();
        }
    }

    /// Event WebSocket connections open now.
    pub fn event_subscribers(&self) -> usize {
        let mut s = self.lock();
        s.subscribers.retain(|(tx, _)| !tx.is_closed());
        s.subscribers.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Starter =
    Arc<dyn Fn(MeetingScript, MeetingOptions) -> anyhow::Result<MeetingHandle> + Send + Sync>;

/// One HTTP request: the token endpoint or the RTMS app status endpoint.
async fn route(
    st: &Mutex<State>,
    starter: &Starter,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return answer(StatusCode::BAD_REQUEST, None),
    };
    let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
    if method == Method::POST && path == "/oauth/token" {
        return issue_token(&mut s, &query, auth.as_deref());
    }
    if method == Method::GET
        && let Some(number) = path.strip_prefix("/v2/meetings/")
    {
        return meeting_info(&s, number, auth.as_deref());
    }
    let status_of = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("/rtms_app/status"))
            .map(str::to_owned)
    };
    let call = match (
        status_of("/v2/live_meetings/"),
        status_of("/v2/contact_center/"),
    ) {
        (Some(id), _) if method == Method::PATCH => Some((id, false)),
        (_, Some(id)) if method == Method::PUT => Some((id, true)),
        _ => None,
    };
    match call {
        Some((id, engagement)) => {
            rtms_status(&mut s, starter, (&id, engagement), auth.as_deref(), &body)
        }
        None => zoom_error(
            StatusCode::NOT_FOUND,
            404,
            format!("No route {method} {path}"),
        ),
    }
}

fn token_ok(s: &State, auth: Option<&str>) -> bool {
    auth.and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| s.tokens.get(t.trim()))
        .is_some_and(|exp| *exp > Instant::now())
}

/// `GET /v2/meetings/{id}`: a numbered meeting's uuid.
fn meeting_info(s: &State, number: &str, auth: Option<&str>) -> Response<Full<Bytes>> {
    if !token_ok(s, auth) {
        return zoom_error(
            StatusCode::UNAUTHORIZED,
            124,
            "Invalid access token.".into(),
        );
    }
    match s.numbers.get(number) {
        Some(uuid) => answer(
            StatusCode::OK,
            Some(json!({"id": number.parse::<u64>().unwrap_or(0), "uuid": uuid})),
        ),
        None => zoom_error(
            StatusCode::NOT_FOUND,
            3001,
            format!("Meeting does not exist: {number}."),
        ),
    }
}

/// `POST /oauth/token`: Server-to-Server OAuth (`account_credentials`, HTTP Basic).
fn issue_token(s: &mut State, query: &str, auth: Option<&str>) -> Response<Full<Bytes>> {
    let param = |k: &str| {
        query.split('&').find_map(|p| {
            p.split_once('=')
                .filter(|(a, _)| *a == k)
                .map(|(_, v)| v.to_owned())
        })
    };
    let basic = auth
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let want = format!("{}:{}", s.cfg.oauth_client_id, s.cfg.oauth_client_secret);
    if param("grant_type").as_deref() != Some("account_credentials") {
        s.counts.token_refusals += 1;
        return answer(
            StatusCode::BAD_REQUEST,
            Some(json!({"reason": "Unsupported grant type", "error": "unsupported_grant_type"})),
        );
    }
    if basic.as_deref() != Some(want.as_str())
        || param("account_id").as_deref() != Some(s.cfg.account_id.as_str())
    {
        s.counts.token_refusals += 1;
        return answer(
            StatusCode::BAD_REQUEST,
            Some(
                json!({"reason": "Invalid client_id or client_secret", "error": "invalid_client"}),
            ),
        );
    }
    let token = format!("sim-{:032x}", rand::random::<u128>());
    let ttl = s.cfg.token_ttl;
    let now = Instant::now();
    // Bounded: expired tokens go, and past MAX_TOKENS the one expiring first goes too.
    s.tokens.retain(|_, until| *until > now);
    if s.tokens.len() >= MAX_TOKENS
        && let Some(oldest) = s
            .tokens
            .iter()
            .min_by_key(|(_, until)| **until)
            .map(|(t, _)| t.clone())
    {
        s.tokens.remove(&oldest);
    }
    s.tokens.insert(token.clone(), now + ttl);
    s.counts.tokens_issued += 1;
    answer(
        StatusCode::OK,
        Some(json!({"access_token": token, "token_type": "bearer",
                    "expires_in": ttl.as_secs(), "scope": "meeting:update:meeting_rtms_app_status:admin"})),
    )
}

/// `PATCH /v2/live_meetings/{id}/rtms_app/status` (`engagement` false) or `PUT
/// /v2/contact_center/{engagementId}/rtms_app/status` (true): checks the token, any queued
/// failure and the RTMS client id, then acts on the prepared meeting or engagement (each
/// endpoint knows only its own product's). Every call is counted.
fn rtms_status(
    s: &mut State,
    starter: &Starter,
    (id, engagement): (&str, bool),
    auth: Option<&str>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    // A uuid that starts with `/` or holds `//` arrives encoded twice, as Zoom asks.
    let mut id = percent_decode(id);
    if id.contains('%') {
        id = percent_decode(&id);
    }
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let action = parsed["action"].as_str().unwrap_or("").to_owned();
    let r = status_answer(s, starter, (&id, engagement), &action, &parsed, auth);
    s.counts
        .status_calls
        .push((id, action, r.status().as_u16()));
    r
}

fn status_answer(
    s: &mut State,
    starter: &Starter,
    (id, engagement): (&str, bool),
    action: &str,
    parsed: &Value,
    auth: Option<&str>,
) -> Response<Full<Bytes>> {
    if !token_ok(s, auth) {
        return zoom_error(
            StatusCode::UNAUTHORIZED,
            124,
            "Invalid access token.".into(),
        );
    }
    if let Some(f) = s.failures.pop_front() {
        let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = answer(status, Some(f.body));
        if let Some(secs) = f.retry_after_secs {
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().expect("digits"));
        }
        return r;
    }
    if parsed["settings"]["client_id"].as_str() != Some(s.rtms_client_id.as_str()) {
        return zoom_error(
            StatusCode::BAD_REQUEST,
            300,
            "Invalid parameter: settings.client_id is not an RTMS app of this account.".into(),
        );
    }
    let id = s.numbers.get(id).cloned().unwrap_or_else(|| id.to_owned());
    let id = id.as_str();
    let is_engagement = |p: &Prepared| {
        let product = match p {
            Prepared::Waiting(b) => b.1.product,
            Prepared::Live(h) => h.product(),
        };
        product == rtms_proto::Product::ContactCenter
    };
    // An id of the other product stays prepared; it just is not found on this endpoint.
    if s.meetings
        .get(id)
        .is_none_or(|p| is_engagement(p) != engagement)
    {
        return if engagement {
            zoom_error(
                StatusCode::NOT_FOUND,
                3001,
                format!("Engagement does not exist: {id}."),
            )
        } else {
            zoom_error(
                StatusCode::NOT_FOUND,
                3001,
                format!("Meeting does not exist: {id}."),
            )
        };
    }
    let Some(prepared) = s.meetings.remove(id) else {
        return zoom_error(StatusCode::NOT_FOUND, 3001, format!("No such id: {id}."));
    };
    let (kept, r) = act(s, starter, action, prepared);
    if let Some(p) = kept {
        s.meetings.insert(id.to_owned(), p);
    }
    r
}

/// Carries out `action` on a prepared meeting; returns what the meeting becomes (`None`
/// when a start failed) and the answer.
fn act(
    s: &mut State,
    starter: &Starter,
    action: &str,
    prepared: Prepared,
) -> (Option<Prepared>, Response<Full<Bytes>>) {
    let bad = |text: String| zoom_error(StatusCode::BAD_REQUEST, 300, text);
    let done = || answer(StatusCode::NO_CONTENT, None);
    match (action, prepared) {
        ("start", Prepared::Waiting(b)) => {
            let (script, opts) = *b;
            match starter(script, opts) {
                Ok(h) => {
                    s.started.notify_waiters();
                    (Some(Prepared::Live(h)), done())
                }
                Err(e) => (None, bad(format!("Cannot start: {e}"))),
            }
        }
        ("start", p @ Prepared::Live(_)) => (
            Some(p),
            bad("RTMS is already started for this meeting.".into()),
        ),
        ("stop" | "pause" | "resume", Prepared::Live(h)) => {
            h.inject(match action {
                "stop" => crate::Fault::Terminate { reason: 25 },
                "pause" => crate::Fault::Pause { duration: None },
                _ => crate::Fault::Resume,
            });
            (Some(Prepared::Live(h)), done())
        }
        ("stop" | "pause" | "resume", p @ Prepared::Waiting(_)) => {
            (Some(p), bad("RTMS is not started for this meeting.".into()))
        }
        (other, p) => (
            Some(p),
            bad(format!(
                "Invalid field: action {other:?}; use start, stop, pause or resume."
            )),
        ),
    }
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(x) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves the event WebSocket until `cancel`.
async fn serve_event_ws(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    cancel: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
        };
        tokio::spawn(event_ws_conn(stream, state.clone(), cancel.clone()));
    }
}

/// One event WebSocket: the upgrade, checked ([`event_ws_allowed`]), then
/// [`event_ws_session`].
async fn event_ws_conn(
    stream: tokio::net::TcpStream,
    state: Arc<Mutex<State>>,
    cancel: CancellationToken,
) {
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    #[allow(clippy::result_large_err)] // the callback's error type is tungstenite's
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if event_ws_allowed(req.uri(), &state) {
            return Ok(resp);
        }
        let mut r = ErrorResponse::new(Some("invalid subscriptionId or access_token".into()));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        Err(r)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        check,
        Some(crate::server::ws_config()),
    )
    .await
    else {
        return;
    };
    event_ws_session(ws, state, cancel).await;
}

/// Whether an upgrade's URL is `/ws` with the subscription id and a live token; counted
/// either way.
fn event_ws_allowed(uri: &hyper::Uri, state: &Mutex<State>) -> bool {
    let q = uri.query().unwrap_or("");
    let param = |k: &str| {
        q.split('&').find_map(|p| {
            p.split_once('=')
                .filter(|(a, _)| *a == k)
                .map(|(_, v)| percent_decode(v))
        })
    };
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let ok = uri.path() == "/ws"
        && param("subscriptionId").as_deref() == Some(s.cfg.event_subscription_id.as_str())
        && param("access_token")
            .and_then(|t| s.tokens.get(&t).copied())
            .is_some_and(|exp| exp > Instant::now());
    if ok {
        s.counts.event_ws_connections += 1;
    } else {
        s.counts.event_ws_refused += 1;
    }
    ok
}

/// An accepted event WebSocket: events out as they are published, heartbeats answered; it
/// closes when no heartbeat came for the heartbeat timeout, or at `cancel`.
async fn event_ws_session<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    state: Arc<Mutex<State>>,
    cancel: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let closed = cancel.child_token();
    let timeout = {
        let mut s = lock();
        s.subscribers.push((out_tx, closed.clone()));
        s.cfg.heartbeat_timeout
    };
    let mut deadline = Box::pin(tokio::time::sleep(timeout));
    loop {
        tokio::select! {
            () = closed.cancelled() => {
                let _ = tx.send(Message::Close(None)).await;
                break;
            }
            () = &mut deadline => {
                let _ = tx.send(Message::Close(None)).await;
                break;
            }
            out = out_rx.recv() => match out {
                Some(text) => {
                    if tx.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if v["module"] == "heartbeat" {
                        lock().counts.heartbeats += 1;
                        deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                        let ack = json!({"module": "heartbeat", "success": true}).to_string();
                        if tx.send(Message::text(ack)).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
