//! The admin listener: a small hyper HTTP/1 server of its own, never the webhook port.
//!
//! Routes (one `match` in [`Admin::route`]; add new ones there). Without a token:
//! - `GET /healthz` — `ok`: the process answers (liveness);
//! - `GET /readyz` — 200 once the pipeline is loaded, every component compiled and the
//!   webhook listener up; 503 with the reason while starting or shutting down, or while the
//!   host carries its maximum of streams (`rtms.max_streams`), so a load balancer moves on;
//! - `GET /` and `GET /dashboard` — the live dashboard page (static; it asks for the token
//!   itself and holds no data of its own).
//!
//! With the token (when one is set):
//! - `GET /metrics` — the Prometheus exposition ([`crate::ops::exposition`]);
//! - `GET /admin/metrics` — the JSON counters, live streams and this listener's own counters;
//! - `GET /admin/sessions` — the live streams with state, media, plugins and counters;
//! - `POST /admin/sessions/video?stream_id=ID&user_id=N&action=pin|drop|release` — pins a
//!   participant's individual video ahead of `[rtms.video]`'s policy, drops it, or returns it
//!   to the policy (streams in `mode = "individual"` only).
//! - `POST /admin/sessions/stop?stream_id=ID` — ends one stream: the host asks Zoom to close
//!   it (STREAM_CLOSE_REQ), so its plugins get `on-session-end(stopped(20))`
//!   (RECEIVER_REQUEST_CLOSE); `shutdown` when Zoom does not answer in time;
//! - `GET /admin/plugins` — each plugin with its version hash, settings and counters;
//! - `POST /admin/reload` — reloads and answers with the outcome; `GET /admin/reload` — the
//!   last reload's outcome;
//! - `GET /admin/config` — the effective configuration, secrets redacted;
//! - `GET /admin/tap?session=&kind=&plugin=&what=` — live frames and outputs as JSON Lines
//!   ([`crate::outputs::tap`]); a slow reader loses events, never the host's time;
//! - `POST /admin/rtms/{start,stop,pause,resume}?meeting=ID` (or `?engagement=ID`, a Zoom
//!   Contact Center engagement) — acts through Zoom's REST API ([`crate::flows::zoom_rest`]);
//!   a start answers once the started webhook arrived.
//!
//! Defences, all counted in `GET /admin/metrics` under `"admin"`:
//! - a bearer token (`Authorization: Bearer <token>`, compared in constant time over SHA-256
//!   digests, so neither content nor length leaks). Required when the listener is bound beyond
//!   loopback ([`check_exposure`] refuses to start otherwise); on loopback, required once set;
//! - reloads coalesced: a request that arrives while a reload runs waits for that reload and
//!   gets its outcome; one that arrives within `reload_min_interval` of the last reload's end
//!   gets 429 with `Retry-After`. The reload runs on its own task, so a client that hangs up
//!   does not cancel it;
//! - bounds: the connection policy of [`rtms_client::listener`], the webhook listener's too:
//!   at most [`Limits::max_connections`] connections, past which the oldest *idle* one is
//!   closed (so idle or slow connections never lock the operator out: a probe always gets
//!   in), at most [`Limits::max_connections_per_peer`] from one address, a deadline and a
//!   size limit for the request head, another deadline for the body, a small body limit,
//!   and a lifetime per connection. Every closed connection is counted by reason;
//! - optional TLS (`[admin.tls]`): without it the bearer token travels in clear.
//!
//! Refusals are logged when they start and then at most every ten seconds with the running
//! total, never once per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use rtms_client::listener::{Close, ConnStats, Listener, Policy, TlsFiles, reply as answer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::outputs::tap::{TapFilter, TapSubscription};
use crate::pipeline::reload::{Outcome, outcome_json};

/// The response body of every admin route.
pub type Body = BoxBody<Bytes, Infallible>;

/// The dashboard page, compiled in.
const DASHBOARD: &str = include_str!("admin/dashboard.html");
/// How often a quiet tap sends a heartbeat line.
const TAP_HEARTBEAT: Duration = Duration::from_secs(10);

/// What the admin routes act on: the running service, or a stand-in in tests.
#[async_trait]
pub trait AdminBackend: Send + Sync + 'static {
    /// The JSON counters (`GET /admin/metrics`, before this listener adds its own).
    fn metrics(&self) -> Value;
    /// Reloads and returns the outcome. Called at most once at a time.
    async fn reload(&self) -> Outcome;
    /// The Prometheus exposition text.
    fn prometheus(&self) -> String {
        String::new()
    }
    /// `Err(why)` while the host is not ready to take webhooks.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    /// The live streams (`GET /admin/sessions`).
    fn sessions(&self) -> Value {
        json!([])
    }
    /// Ends one stream; false when it does not run here.
    fn stop_session(&self, stream_id: &str) -> bool {
        let _ = stream_id;
        false
    }
    /// Pins, drops or releases a participant's individual video on a stream; false when no
    /// such stream runs here.
    fn video(&self, stream_id: &str, cmd: rtms_client::video::Command) -> bool {
        let _ = (stream_id, cmd);
        false
    }
    /// The plugins (`GET /admin/plugins`).
    fn plugins(&self) -> Value {
        json!([])
    }
    /// The last reload and its outcome, if any ran.
    fn last_reload(&self) -> Value {
        Value::Null
    }
    /// The effective configuration, secrets redacted.
    fn config(&self) -> String {
        String::new()
    }
    /// A subscription to the live tap.
    fn tap(&self) -> Option<TapSubscription> {
        None
    }
    /// Starts, stops, pauses or resumes a meeting's or an engagement's stream through Zoom's
    /// REST API; the HTTP status and the JSON answer.
    async fn rtms(&self, target: &crate::flows::zoom_rest::Target, action: &str) -> (u16, Value) {
        let _ = (target, action);
        (404, json!({"error": "this host cannot start streams"}))
    }
}

/// The listener's own bounds: the connection policy of [`rtms_client::listener`], shared
/// with the webhook listener.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections open at once; past it the oldest idle one is closed to make room.
    pub max_connections: usize,
    /// Connections open from one address at once; past it that address's oldest idle one
    /// is closed.
    pub max_connections_per_peer: usize,
    /// Deadline for the request line and headers (and the TLS handshake).
    pub header_timeout: Duration,
    /// The request head may be at most this large (431).
    pub max_header_bytes: usize,
    /// Deadline for the body, once the head is in.
    pub body_timeout: Duration,
    /// Larger bodies get 413 (no admin route takes a body today).
    pub max_body_bytes: usize,
    /// A connection is closed (gracefully) after this long, keep-alive or not.
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 32,
            max_connections_per_peer: 16,
            header_timeout: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            body_timeout: Duration::from_secs(5),
            max_body_bytes: 4096,
            max_connection_age: Duration::from_secs(300),
        }
    }
}

impl Limits {
    /// The connection policy these limits make.
    pub fn policy(&self) -> Policy {
        Policy {
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            header_timeout: self.header_timeout,
            max_header_bytes: self.max_header_bytes,
            body_timeout: self.body_timeout,
            max_body_bytes: self.max_body_bytes,
            max_connection_age: Some(self.max_connection_age),
        }
    }
}

/// Admin listener settings.
#[derive(Clone)]
pub struct AdminConfig {
    /// The bearer token; `None` only on loopback (see [`check_exposure`]).
    pub token: Option<String>,
    /// Where the token comes from, for messages.
    pub token_env: String,
    /// Reload requests closer than this to the end of the previous reload get 429.
    pub reload_min_interval: Duration,
    pub limits: Limits,
    /// Serve HTTPS with these PEM files (`[admin.tls]`, reloaded when they change).
    pub tls: Option<TlsFiles>,
    /// The listener's connections: accepted, open, closed by reason.
    pub stats: Arc<ConnStats>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_env", &self.token_env)
            .field("reload_min_interval", &self.reload_min_interval)
            .field("limits", &self.limits)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Refuses to serve the admin routes beyond loopback without a token. `configured` is the
/// `admin.listen` address, `bound` the listener's: either one beyond loopback exposes it.
pub fn check_exposure(
    configured: SocketAddr,
    bound: SocketAddr,
    token: Option<&str>,
    token_env: &str,
) -> Result<()> {
    let exposed = !configured.ip().is_loopback() || !bound.ip().is_loopback();
    if exposed && token.is_none_or(str::is_empty) {
        bail!(
            "the admin listener on {bound} (admin.listen = \"{configured}\") is reachable beyond this machine but no admin token is set: export {token_env}=<a long random value> (named by admin.token_env), or bind admin.listen to a loopback address, or set admin.enabled = false"
        );
    }
    Ok(())
}

/// A refusal counter that logs when refusals start and then at most every ten seconds.
struct Refusals {
    what: &'static str,
    total: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

impl Refusals {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            total: AtomicU64::new(0),
            last_log: Mutex::new(None),
        }
    }

    fn note(&self, peer: SocketAddr) {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_log.lock();
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(%peer, total, "admin listener: {}", self.what);
        }
    }

    fn get(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The outcome of one reload, shared by every request that waited for it.
type LastReload = Option<(u64, Outcome)>;

#[derive(Default)]
struct GateState {
    /// The reload in progress: its outcome arrives on this channel.
    running: Option<watch::Receiver<LastReload>>,
    last_end: Option<Instant>,
    started: u64,
    /// Requests that shared a reload another request started.
    joined: u64,
}

/// Coalesces and rate-limits reloads.
pub struct ReloadGate {
    min_interval: Duration,
    state: Mutex<GateState>,
}

/// What a reload request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateAnswer {
    /// The outcome of reload number `id`; `joined` when the request shared a reload another
    /// request started.
    Done {
        id: u64,
        joined: bool,
        outcome: Outcome,
    },
    /// Too soon after the previous reload: try again after this long.
    TooSoon(Duration),
}

impl ReloadGate {
    pub fn new(min_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            min_interval,
            state: Mutex::new(GateState::default()),
        })
    }

    /// Joins the running reload, or starts one on `backend`, or says when to come back.
    pub async fn request(self: &Arc<Self>, backend: Arc<dyn AdminBackend>) -> GateAnswer {
        let (mut rx, joined) = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            if let Some(rx) = &st.running {
                st.joined += 1;
                (rx.clone(), true)
            } else if let Some(end) = st.last_end
                && let left = self.min_interval.saturating_sub(end.elapsed())
                && !left.is_zero()
            {
                return GateAnswer::TooSoon(left);
            } else {
                st.started += 1;
                let id = st.started;
                let (tx, rx) = watch::channel(None);
                st.running = Some(rx.clone());
                let gate = self.clone();
                tokio::spawn(async move {
                    let outcome = backend.reload().await;
                    {
                        let mut st = gate.state.lock();
                        st.running = None;
                        st.last_end = Some(Instant::now());
                    }
                    let _ = tx.send(Some((id, outcome)));
                });
                (rx, false)
            }
        };
        let done = rx.wait_for(Option::is_some).await.map(|v| v.clone());
        match done {
            Ok(Some((id, outcome))) => GateAnswer::Done {
                id,
                joined,
                outcome,
            },
            // The reload task ended without an answer: only when the runtime shuts down.
            _ => GateAnswer::Done {
                id: 0,
                joined,
                outcome: Outcome::Refused("the host is shutting down".into()),
            },
        }
    }

    /// Reloads started so far, and requests that joined one another request started.
    pub fn counts(&self) -> (u64, u64) {
        let st = self.state.lock();
        (st.started, st.joined)
    }
}

struct Admin {
    cfg: AdminConfig,
    /// SHA-256 of the token: compared in constant time, whatever the length sent.
    token_digest: Option<[u8; 32]>,
    backend: Arc<dyn AdminBackend>,
    gate: Arc<ReloadGate>,
    unauthorized: Refusals,
    rate_limited: Refusals,
    bad_requests: Refusals,
    /// Ends long-lived responses (the tap) when the listener stops.
    shutdown: CancellationToken,
}

/// Serves the admin routes on `listener` until `shutdown`, then lets in-flight requests end.
pub async fn serve(
    listener: TcpListener,
    cfg: AdminConfig,
    backend: Arc<dyn AdminBackend>,
    shutdown: CancellationToken,
) -> Result<()> {
    let token_digest = cfg
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| Sha256::digest(t.as_bytes()).into());
    let admin = Arc::new(Admin {
        gate: ReloadGate::new(cfg.reload_min_interval),
        token_digest,
        backend,
        unauthorized: Refusals::new("requests without the right bearer token refused (401)"),
        rate_limited: Refusals::new("reload requests rate limited (429)"),
        bad_requests: Refusals::new("requests with a slow, large or unreadable body refused"),
        shutdown: shutdown.clone(),
        cfg,
    });
    let plumbing = Listener {
        name: "admin",
        policy: admin.cfg.limits.policy(),
        tls: admin.cfg.tls.clone(),
        tls_setting: "admin.tls",
        stats: admin.cfg.stats.clone(),
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            token = admin.token_digest.is_some(),
            tls = plumbing.tls.is_some(),
            max_connections = plumbing.policy.max_connections,
            max_connections_per_peer = plumbing.policy.max_per_peer,
            "admin listener listening"
        );
    }
    let routes = admin.clone();
    let route = move |req, peer| {
        let admin = routes.clone();
        async move { admin.route(req, peer).await }
    };
    let served = rtms_client::listener::serve(listener, plumbing, route, shutdown).await;
    let (u, r, b) = (
        admin.unauthorized.get(),
        admin.rate_limited.get(),
        admin.bad_requests.get(),
    );
    let stats = &admin.cfg.stats;
    let (evicted, header_timeouts) = (
        stats.closed(Close::Evicted) + stats.closed(Close::PerPeer),
        stats.closed(Close::HeaderTimeout),
    );
    if u + r + b + evicted + header_timeouts > 0 {
        tracing::info!(
            unauthorized = u,
            rate_limited = r,
            bad_requests = b,
            evicted,
            header_timeouts,
            "admin listener stopped"
        );
    } else {
        tracing::info!("admin listener stopped");
    }
    served
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    answer::text(status, body).map(BodyExt::boxed)
}

fn typed(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    answer::typed(status, content_type, body).map(BodyExt::boxed)
}

/// 401 with the scheme to use.
fn unauthorized() -> Response<Body> {
    let mut r = reply(
        StatusCode::UNAUTHORIZED,
        "send the admin token: Authorization: Bearer <token>\n",
    );
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"rtms-host admin\""),
    );
    r
}

fn json_reply(status: StatusCode, v: &Value) -> Response<Body> {
    answer::json(status, v).map(BodyExt::boxed)
}

impl Admin {
    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(want) = &self.token_digest else {
            return true;
        };
        let Some(given) = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
        else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        bool::from(given.ct_eq(want))
    }

    async fn route(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let read = method == Method::GET || method == Method::HEAD;
        if let Some(r) = self.open_route(&path, read) {
            return r;
        }
        if !self.authorized(&req) {
            self.unauthorized.note(peer);
            return unauthorized();
        }
        if let Err(r) = self.read_body(req).await {
            self.bad_requests.note(peer);
            return r;
        }
        match (&method, path.as_str()) {
            (&Method::GET, "/metrics") => typed(
                StatusCode::OK,
                crate::ops::exposition::CONTENT_TYPE,
                self.backend.prometheus(),
            ),
            (&Method::GET, "/admin/metrics") => json_reply(StatusCode::OK, &self.metrics()),
            (&Method::GET, "/admin/sessions") => {
                json_reply(StatusCode::OK, &self.backend.sessions())
            }
            (&Method::POST, "/admin/sessions/stop") => self.stop_session_route(&query, peer),
            (&Method::POST, "/admin/sessions/video") => self.video_route(&query, peer),
            (&Method::GET, "/admin/plugins") => json_reply(StatusCode::OK, &self.backend.plugins()),
            (&Method::GET, "/admin/reload") => {
                json_reply(StatusCode::OK, &json!({"last": self.backend.last_reload()}))
            }
            (&Method::POST, "/admin/reload") => self.reload(peer).await,
            (&Method::GET, "/admin/config") => typed(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                self.backend.config(),
            ),
            (&Method::GET, "/admin/tap") => self.tap(&query),
            (&Method::POST, p) if p.starts_with("/admin/rtms/") => {
                self.rtms_route(&p["/admin/rtms/".len()..], &query, peer)
                    .await
            }
            (
                _,
                "/metrics" | "/admin/metrics" | "/admin/sessions" | "/admin/plugins"
                | "/admin/config" | "/admin/tap",
            ) => not_allowed("GET"),
            (_, "/admin/sessions/stop" | "/admin/sessions/video") => not_allowed("POST"),
            (_, "/admin/reload") => not_allowed("GET, POST"),
            (_, "/healthz" | "/readyz" | "/" | "/dashboard") => not_allowed("GET, HEAD"),
            _ => reply(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// The routes served without the token: health, readiness and the dashboard's page.
    fn open_route(&self, path: &str, read: bool) -> Option<Response<Body>> {
        match path {
            "/healthz" if read => Some(reply(StatusCode::OK, "ok\n")),
            "/readyz" if read => Some(match self.backend.ready() {
                Ok(()) => reply(StatusCode::OK, "ready\n"),
                Err(why) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            }),
            "/" | "/dashboard" if read => {
                Some(typed(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD))
            }
            _ => None,
        }
    }

    /// `POST /admin/sessions/stop?stream_id=…`
    fn stop_session_route(&self, query: &str, peer: SocketAddr) -> Response<Body> {
        match crate::urlenc::query_value(query, "stream_id") {
            None => json_reply(
                StatusCode::BAD_REQUEST,
                &json!({"error": "name the stream: POST /admin/sessions/stop?stream_id=<rtms_stream_id, percent-encoded>"}),
            ),
            Some(id) if self.backend.stop_session(&id) => {
                tracing::info!(%peer, stream_id = %rtms_proto::text::truncated(&id, 64), "stream stopped by the admin API");
                json_reply(StatusCode::OK, &json!({"stopping": id}))
            }
            Some(id) => json_reply(
                StatusCode::NOT_FOUND,
                &json!({"error": format!("no stream {id:?} runs on this host: GET /admin/sessions lists them")}),
            ),
        }
    }

    /// `POST /admin/sessions/video?stream_id=…&user_id=…&action=pin|drop|release`
    fn video_route(&self, query: &str, peer: SocketAddr) -> Response<Body> {
        use rtms_client::video::Command;
        const USAGE: &str = "POST /admin/sessions/video?stream_id=<rtms_stream_id>&user_id=<number>&action=<pin|drop|release>";
        let q = |k| crate::urlenc::query_value(query, k);
        let user = q("user_id").and_then(|u| u.parse::<i64>().ok());
        let cmd = match (q("action").as_deref(), user) {
            (Some("pin"), Some(u)) => Command::Pin(u),
            (Some("drop"), Some(u)) => Command::Drop(u),
            (Some("release"), Some(u)) => Command::Release(u),
            _ => {
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": format!("name the stream, a numeric user id and an action: {USAGE}")}),
                );
            }
        };
        let Some(id) = q("stream_id") else {
            return json_reply(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("name the stream: {USAGE}")}),
            );
        };
        if self.backend.video(&id, cmd) {
            tracing::info!(%peer, stream_id = %rtms_proto::text::truncated(&id, 64), ?cmd, "individual video command from the admin API");
            json_reply(
                StatusCode::OK,
                &json!({"stream_id": id, "command": format!("{cmd:?}")}),
            )
        } else {
            json_reply(
                StatusCode::NOT_FOUND,
                &json!({"error": format!("no stream {id:?} runs on this host: GET /admin/sessions lists them")}),
            )
        }
    }

    /// `POST /admin/rtms/<action>?meeting=…` or `?engagement=…`
    async fn rtms_route(&self, action: &str, query: &str, peer: SocketAddr) -> Response<Body> {
        use crate::flows::zoom_rest::Target;
        let given = |k| crate::urlenc::query_value(query, k).filter(|m| !m.is_empty());
        let target = match (given("meeting"), given("engagement")) {
            (Some(m), None) => Target::Meeting(m),
            (None, Some(e)) => Target::Engagement(e),
            _ => {
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "name the meeting or the Contact Center engagement (one of them): POST /admin/rtms/<start|stop|pause|resume>?meeting=<uuid or number, percent-encoded> or ?engagement=<engagement_id>"}),
                );
            }
        };
        tracing::info!(%peer, action, target = %rtms_proto::text::truncated(&target.label(), 80), "RTMS status change requested");
        let (status, v) = self.backend.rtms(&target, action).await;
        json_reply(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &v,
        )
    }

    /// Streams tapped events as JSON Lines until the client goes, the listener stops or the
    /// connection reaches its age limit (a client reconnects). A reader that falls behind
    /// gets a `{"type":"lagged","dropped":N}` line in place of what it lost.
    fn tap(&self, query: &str) -> Response<Body> {
        let filter = match TapFilter::from_query(query) {
            Ok(f) => f,
            Err(e) => return json_reply(StatusCode::BAD_REQUEST, &json!({"error": e})),
        };
        let Some(sub) = self.backend.tap() else {
            return json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "this host has no live tap"}),
            );
        };
        let until = Instant::now() + self.cfg.limits.max_connection_age;
        let shutdown = self.shutdown.clone();
        let state = (sub, filter, shutdown, until);
        let stream = futures_util::stream::unfold(
            state,
            |(mut sub, filter, shutdown, until)| async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    let heartbeat = tokio::time::sleep(TAP_HEARTBEAT);
                    let line = tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep_until(until) => return None,
                        () = heartbeat => json!({"type": "heartbeat", "time_ms": rtms_proto::unix_ms()}).to_string(),
                        got = sub.rx.recv() => match got {
                            Ok(ev) if filter.matches(&ev) => match serde_json::to_string(&*ev) {
                                Ok(s) => s,
                                Err(_) => continue,
                            },
                            Ok(_) => continue,
                            Err(RecvError::Lagged(n)) => {
                                sub.lost(n);
                                json!({"type": "lagged", "dropped": n}).to_string()
                            }
                            Err(RecvError::Closed) => return None,
                        },
                    };
                    let mut bytes = line.into_bytes();
                    bytes.push(b'\n');
                    let frame = hyper::body::Frame::data(Bytes::from(bytes));
                    return Some((Ok::<_, Infallible>(frame), (sub, filter, shutdown, until)));
                }
            },
        );
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        r.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        r
    }

    fn metrics(&self) -> Value {
        let (started, joined) = self.gate.counts();
        let mut v = self.backend.metrics();
        let conns = &self.cfg.stats;
        let closed: serde_json::Map<String, Value> = conns
            .closed_by_reason()
            .map(|(r, n)| (r.as_str().to_owned(), n.into()))
            .collect();
        v["admin"] = json!({
            "unauthorized": self.unauthorized.get(),
            "rate_limited": self.rate_limited.get(),
            "connections_accepted": conns.accepted.load(Ordering::Relaxed),
            "connections_open": conns.open.load(Ordering::Relaxed),
            "connections_closed": closed,
            "bad_requests": self.bad_requests.get(),
            "reloads_started": started,
            "reloads_joined": joined,
        });
        v
    }

    async fn reload(&self, peer: SocketAddr) -> Response<Body> {
        match self.gate.request(self.backend.clone()).await {
            GateAnswer::Done {
                id,
                joined,
                outcome,
            } => {
                let (refused, v) = outcome_json(id, joined, &outcome);
                let status = if refused {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::OK
                };
                json_reply(status, &v)
            }
            GateAnswer::TooSoon(wait) => {
                self.rate_limited.note(peer);
                let secs = wait.as_millis().div_ceil(1000).max(1) as u64;
                let mut r = json_reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    &json!({"error": format!(
                        "the previous reload ended less than {} ms ago: retry after {secs} s",
                        self.cfg.reload_min_interval.as_millis()
                    ), "retry_after_secs": secs}),
                );
                r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
                r
            }
        }
    }

    /// Reads (and drops) the body within the size and time limits.
    async fn read_body(&self, req: Request<Incoming>) -> Result<(), Response<Body>> {
        rtms_client::listener::read_body(req, &self.cfg.limits.policy())
            .await
            .map(drop)
            .map_err(|(r, _)| r.map(BodyExt::boxed))
    }
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    answer::not_allowed(allow).map(BodyExt::boxed)
}

#[cfg(test)]
mod tests;
