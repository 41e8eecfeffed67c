//! The webhook ingress: a hyper HTTP/1 server (plain, or TLS with a certificate reloaded
//! when its files change) that verifies and de-duplicates Zoom's webhooks and hands RTMS
//! lifecycle events to an [`IngressHandler`].
//!
//! Routes: `POST <path>` (webhooks) and `GET /healthz` (200). Anything else is answered
//! 404 at once, without reading its body.
//!
//! It faces the internet and assumes an attacker:
//! - A webhook is checked in this order: size (413 past `max_body_bytes`, never reading
//!   more; the whole body within `body_timeout`, else 408), then `x-zm-signature` over the
//!   raw body and the `x-zm-request-timestamp` window (401), then the JSON and its fields
//!   (400, ids and URLs bounded in length). Every event must be signed, the
//!   `endpoint.url_validation` challenge included: answering an unsigned one would make the
//!   host sign any text an attacker sends with the webhook secret, which is exactly a
//!   webhook signature.
//! - Accepted events are answered 200 before any connection work; Zoom's retries (same
//!   event, stream id and `event_ts`) are answered 200 and dropped. A handler's refusal is
//!   answered 503 with `Retry-After` (no room) or 422 (a server URL outside the allow-list).
//! - Connections follow the policy of [`crate::listener`], shared with the admin listener:
//!   at most `max_connections` open (past it the oldest idle one is closed to make room, so
//!   fresh requests get through), at most `max_connections_per_peer` from one address,
//!   headers within `header_timeout` and `max_header_bytes`, exponential backoff when the
//!   process runs out of descriptors. Every closed connection is counted by reason in
//!   [`IngressStats::listener`].
//!
//! Every rejection is counted in [`IngressStats`] and logged through [`crate::ratelog`]
//! (a few lines per kind per interval, then a summary), never with the secret, and with
//! what came from the network cut short.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use rtms_proto::WebhookEvent;
use rtms_proto::sign::{url_validation_token, verify_webhook};
use rtms_proto::text::truncated;
use rtms_proto::webhook::{Envelope, Notice, URL_VALIDATION};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::dedup::{Dedup, event_key, notice_key};
use crate::listener::{ConnStats, Listener, Policy, reply as listener_reply};
use crate::ratelog;

pub use crate::listener::{AcceptBackoff, BodyError, ReloadingCert, TlsFiles, read_limited};

const SIGNATURE: &str = "x-zm-signature";
const TIMESTAMP: &str = "x-zm-request-timestamp";
const HEALTH_PATH: &str = "/healthz";

/// The longest `plainToken` answered (Zoom's are 22 characters).
const MAX_PLAIN_TOKEN: usize = 256;

/// Ingress settings.
#[derive(Clone)]
pub struct IngressConfig {
    /// The webhook path (`/webhook` by default).
    pub path: String,
    /// The app's webhook Secret Token (not the OAuth client secret). Never logged.
    pub secret_token: String,
    /// Larger bodies get 413 without being read further.
    pub max_body_bytes: usize,
    /// Allowed distance between `x-zm-request-timestamp` and now.
    pub timestamp_window_secs: u64,
    /// How long a delivered event is remembered to drop Zoom's retries (they come minutes
    /// apart).
    pub dedup_ttl: Duration,
    /// At most this many remembered events (oldest forgotten first).
    pub dedup_capacity: usize,
    /// A request's headers (and the TLS handshake) must arrive within this.
    pub header_timeout: Duration,
    /// A webhook's whole body must arrive within this (else 408).
    pub body_timeout: Duration,
    /// Open connections at most; past it the oldest idle one is closed to make room.
    pub max_connections: usize,
    /// Open connections from one IP address at most; past it that address's oldest idle
    /// one is closed.
    pub max_connections_per_peer: usize,
    /// A request head larger than this is refused (431).
    pub max_header_bytes: usize,
    /// Serve HTTPS with these PEM files (reloaded when they change); `None` is plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Counters of what the ingress did; share the `Arc` to read them.
    pub stats: Arc<IngressStats>,
    /// Extra routes under a path prefix (the in-client Zoom App), served with the same
    /// connection, header, body-size and body-time limits as the webhook.
    pub app: Option<Arc<dyn AppRoutes>>,
}

/// A request for [`AppRoutes`], its body already read within the ingress's limits.
#[derive(Debug)]
pub struct AppRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

/// Routes served beside the webhook, under [`AppRoutes::prefix`].
pub trait AppRoutes: Send + Sync + 'static {
    /// The path prefix, such as `/zoom-app/`.
    fn prefix(&self) -> &str;
    /// Answers one request.
    fn handle(
        &self,
        req: AppRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Full<Bytes>>> + Send + '_>>;
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            path: "/webhook".into(),
            secret_token: String::new(),
            max_body_bytes: 1024 * 1024,
            timestamp_window_secs: 300,
            dedup_ttl: crate::dedup::DEFAULT_WINDOW,
            dedup_capacity: 10_000,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_peer: 256,
            max_header_bytes: crate::listener::DEFAULT_MAX_HEADER_BYTES,
            tls: None,
            stats: Arc::default(),
            app: None,
        }
    }
}

impl std::fmt::Debug for IngressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressConfig")
            .field("path", &self.path)
            .field("secret_token", &"<redacted>")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("timestamp_window_secs", &self.timestamp_window_secs)
            .field("dedup_ttl", &self.dedup_ttl)
            .field("dedup_capacity", &self.dedup_capacity)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("tls", &self.tls)
            .finish()
    }
}

/// What the ingress counted. Plain atomics.
#[derive(Debug, Default)]
pub struct IngressStats {
    /// The listener's connections: accepted, open, and closed by reason (evicted, per-peer
    /// limit, header timeout, TLS failure...).
    pub listener: Arc<ConnStats>,
    /// Bodies not received within `body_timeout` (408).
    pub body_timeouts: AtomicU64,
    /// Requests for unknown paths (404) or with the wrong method (405).
    pub not_found: AtomicU64,
    /// Bodies over `max_body_bytes` (413).
    pub too_large: AtomicU64,
    /// Unsigned, badly signed or stale webhooks (401).
    pub unauthorized: AtomicU64,
    /// Malformed webhooks (400).
    pub bad_request: AtomicU64,
    /// Events the handler refused for want of room (503).
    pub refused_busy: AtomicU64,
    /// Events the handler refused as unacceptable, such as a server URL outside the
    /// allow-list (422).
    pub refused_unacceptable: AtomicU64,
    /// Events for a stream this host does not run (answered 200, nothing done).
    pub unknown_stream: AtomicU64,
    /// Events handed to the handler.
    pub delivered: AtomicU64,
    /// URL validation challenges answered.
    pub validations: AtomicU64,
}

fn bump(c: &AtomicU64) -> u64 {
    c.fetch_add(1, Ordering::Relaxed) + 1
}

/// Why a handler refused an event; the ingress answers with the matching status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No room now: 503 with `Retry-After` (Zoom retries later).
    Busy {
        retry_after: Duration,
        reason: String,
    },
    /// The event asks for something this host will not do (a server URL outside the
    /// allow-list): 422.
    Unacceptable(String),
    /// The event is for a stream this host does not run (a stopped or interrupted webhook
    /// for an unknown stream): 200, so Zoom does not retry, but counted as
    /// [`WebhookOutcome::UnknownStream`], not as accepted.
    UnknownStream(String),
    /// The event was taken already (another host logged it within the de-duplication
    /// window): 200, counted as [`WebhookOutcome::Duplicate`].
    Duplicate(String),
}

/// What became of one webhook request, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookOutcome {
    /// Handed to the handler, which took it.
    Accepted,
    /// A retry of an event already taken: acknowledged, dropped.
    Duplicate,
    /// An `endpoint.url_validation` challenge answered.
    Validated,
    /// Signed, but not an RTMS lifecycle event: acknowledged, ignored.
    Ignored,
    /// Unsigned, badly signed or stale (401).
    Unauthorized,
    /// Malformed (400).
    BadRequest,
    /// Refused for want of room (503).
    Busy,
    /// Refused as unacceptable, such as a server URL outside the allow-list (422).
    Unacceptable,
    /// For a stream this host does not run: acknowledged (200), nothing done.
    UnknownStream,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Validated => "validated",
            Self::Ignored => "ignored",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest => "bad_request",
            Self::Busy => "busy",
            Self::Unacceptable => "unacceptable",
            Self::UnknownStream => "unknown_stream",
        }
    }
}

/// One webhook request as the ingress saw it.
#[derive(Clone, Copy, Debug)]
pub struct WebhookSeen<'a> {
    /// The `event` field when the body parsed: the sender's text, so map it onto a fixed
    /// set before using it as a label.
    pub event: Option<&'a str>,
    pub outcome: WebhookOutcome,
    /// Now minus `x-zm-request-timestamp` (whole seconds on Zoom's side), for signed
    /// requests.
    pub delay: Option<Duration>,
}

/// What [`IngressHandler::on_event`] returns: the webhook is answered once it resolves.
pub type EventFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Refusal>> + Send + 'a>>;

/// What the ingress calls. Methods run on the connection's task: return quickly.
pub trait IngressHandler: Send + Sync + 'static {
    /// A verified, de-duplicated RTMS lifecycle event; the webhook is answered when the
    /// future resolves (a host of a cluster first writes the event to the shared log). A
    /// refusal is answered with an error status, and the event is not remembered as
    /// delivered (Zoom's retry is handled anew).
    fn on_event(&self, ev: WebhookEvent) -> EventFuture<'_>;

    /// A verified, de-duplicated concurrency notice (`meeting.rtms_concurrency_limited`,
    /// `*_near_limit`, `rtms.start_failed`); it is answered 200 whatever the handler does.
    /// Must return quickly. The default ignores it.
    fn on_notice(&self, notice: Notice) {
        let _ = notice;
    }

    /// Every webhook request's outcome (metrics). The default ignores it.
    fn observe(&self, seen: WebhookSeen<'_>) {
        let _ = seen;
    }
}

struct Ingress {
    cfg: IngressConfig,
    policy: Policy,
    handler: Arc<dyn IngressHandler>,
    dedup: Mutex<Dedup>,
}

/// The connection policy of `cfg`, shared with the admin listener's.
fn policy(cfg: &IngressConfig) -> Policy {
    Policy {
        max_connections: cfg.max_connections,
        max_per_peer: cfg.max_connections_per_peer,
        header_timeout: cfg.header_timeout,
        max_header_bytes: cfg.max_header_bytes,
        body_timeout: cfg.body_timeout,
        max_body_bytes: cfg.max_body_bytes,
        max_connection_age: None,
    }
}

/// Serves until `shutdown` fires, then stops accepting and lets in-flight requests finish.
/// Fails at once when the TLS files do not load.
pub async fn serve(
    listener: TcpListener,
    cfg: IngressConfig,
    handler: Arc<dyn IngressHandler>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let plumbing = Listener {
        name: "webhook",
        policy: policy(&cfg),
        tls: cfg.tls.clone(),
        tls_setting: "server.tls",
        stats: cfg.stats.listener.clone(),
    };
    let ingress = Arc::new(Ingress {
        dedup: Mutex::new(Dedup::new(cfg.dedup_ttl, cfg.dedup_capacity)),
        policy: plumbing.policy.clone(),
        cfg,
        handler,
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            path = ingress.cfg.path,
            tls = ingress.cfg.tls.is_some(),
            max_connections = ingress.cfg.max_connections,
            max_connections_per_peer = ingress.cfg.max_connections_per_peer,
            "webhook ingress listening"
        );
    }
    // Summaries of suppressed log lines, also when a flood ends.
    let flusher = shutdown.clone();
    let flushing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(ratelog::INTERVAL);
        loop {
            tokio::select! {
                () = flusher.cancelled() => break,
                _ = tick.tick() => { ratelog::flush(); }
            }
        }
    });
    let route = move |req, _peer| {
        let ingress = ingress.clone();
        async move { ingress.route(req).await }
    };
    let served = crate::listener::serve(listener, plumbing, route, shutdown).await;
    flushing.abort();
    ratelog::flush_all();
    tracing::info!("webhook ingress stopped");
    served
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    listener_reply::text(status, body)
}

fn json_reply(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    listener_reply::json(status, v)
}

fn unix_now() -> i64 {
    rtms_proto::unix_secs() as i64
}

impl Ingress {
    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let method = req.method();
        if path == HEALTH_PATH && (method == Method::GET || method == Method::HEAD) {
            return reply(StatusCode::OK, "ok\n");
        }
        if let Some(app) = &self.cfg.app
            && (path.starts_with(app.prefix()) || path == app.prefix().trim_end_matches('/'))
        {
            let (parts, body) = req.into_parts();
            let req = Request::from_parts(parts.clone(), body);
            let body = if parts.method == Method::GET || parts.method == Method::HEAD {
                Bytes::new()
            } else {
                match self.read_body(req).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                }
            };
            return app
                .handle(AppRequest {
                    method: parts.method,
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or("").to_owned(),
                    headers: parts.headers,
                    body,
                })
                .await;
        }
        if path != self.cfg.path {
            bump(&self.cfg.stats.not_found);
            return reply(StatusCode::NOT_FOUND, "not found\n");
        }
        if method != Method::POST {
            bump(&self.cfg.stats.not_found);
            return reply(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
        }
        let headers = req.headers().clone();
        let body = match self.read_body(req).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        self.webhook(&headers, &body).await
    }

    /// Reads the body within the size (413, not read further) and time (408, connection
    /// closed) limits.
    async fn read_body(&self, req: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
        let limit = self.cfg.max_body_bytes;
        crate::listener::read_body(req, &self.policy)
            .await
            .map_err(|(resp, e)| {
                match e {
                    BodyError::TooLarge { .. } => {
                        bump(&self.cfg.stats.too_large);
                        if ratelog::admit("webhook-too-large") {
                            tracing::warn!(limit, "request body over the size limit: 413");
                        }
                    }
                    BodyError::Unreadable(error) => {
                        bump(&self.cfg.stats.bad_request);
                        if ratelog::admit("webhook-unreadable") {
                            tracing::warn!(error, "request body could not be read");
                        }
                    }
                    // Logged with the connection's close.
                    BodyError::TimedOut(_) => {
                        bump(&self.cfg.stats.body_timeouts);
                    }
                }
                resp
            })
    }

    fn unauthorized(&self, why: &str, event: Option<&str>) -> Response<Full<Bytes>> {
        let n = bump(&self.cfg.stats.unauthorized);
        if ratelog::admit("webhook-unauthorized") {
            tracing::warn!(
                reason = why,
                event = event.map(|e| truncated(e, 64).into_owned()),
                refused_so_far = n,
                "webhook rejected: 401"
            );
        }
        reply(StatusCode::UNAUTHORIZED, "bad or missing signature\n")
    }

    fn bad_request(&self, why: String) -> Response<Full<Bytes>> {
        let n = bump(&self.cfg.stats.bad_request);
        let why = truncated(&why, 300).into_owned();
        if ratelog::admit("webhook-bad-request") {
            tracing::warn!(reason = why, refused_so_far = n, "webhook rejected: 400");
        }
        reply(StatusCode::BAD_REQUEST, format!("{why}\n"))
    }

    async fn webhook(&self, headers: &hyper::HeaderMap, body: &[u8]) -> Response<Full<Bytes>> {
        let (response, outcome, event, signed) = self.webhook_outcome(headers, body).await;
        let delay = signed
            .then(|| headers.get(TIMESTAMP).and_then(|v| v.to_str().ok()))
            .flatten()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map(|ts| Duration::from_secs(unix_now().saturating_sub(ts as i64).max(0) as u64));
        self.handler.observe(WebhookSeen {
            event: event.as_deref(),
            outcome,
            delay,
        });
        response
    }

    /// The answer to one webhook, what became of it, its event name and whether it was
    /// signed.
    async fn webhook_outcome(
        &self,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> (Response<Full<Bytes>>, WebhookOutcome, Option<String>, bool) {
        use WebhookOutcome as O;
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        // Everything must be signed, url validation included: its answer is an HMAC with
        // the webhook secret over text the sender chooses.
        if let Err(e) = verify_webhook(
            &self.cfg.secret_token,
            header(TIMESTAMP),
            header(SIGNATURE),
            body,
            unix_now(),
            self.cfg.timestamp_window_secs,
        ) {
            let event = Envelope::parse(body).ok().map(|e| e.event);
            let r = self.unauthorized(&e.to_string(), event.as_deref());
            return (r, O::Unauthorized, event, false);
        }
        let env = match Envelope::parse(body) {
            Ok(env) => env,
            Err(e) => return (self.bad_request(e.to_string()), O::BadRequest, None, true),
        };
        let (r, outcome) = if env.event == URL_VALIDATION {
            self.url_validation(&env)
        } else {
            match env.rtms_event() {
                Ok(Some(ev)) => self.deliver(ev).await,
                Ok(None) if let Some(n) = env.notice() => self.notice(n),
                Ok(None) => {
                    tracing::debug!(
                        event = %truncated(&env.event, 64),
                        "not an RTMS lifecycle event: acknowledged, ignored"
                    );
                    (reply(StatusCode::OK, ""), O::Ignored)
                }
                Err(e) => (self.bad_request(e.to_string()), O::BadRequest),
            }
        };
        (r, outcome, Some(env.event), true)
    }

    /// Answers Zoom's `endpoint.url_validation` challenge (signed, its token bounded).
    fn url_validation(&self, env: &Envelope) -> Answer {
        let bad = |why: String| (self.bad_request(why), WebhookOutcome::BadRequest);
        let plain = match env.payload.get("plainToken").and_then(|v| v.as_str()) {
            None => return bad("payload.plainToken missing".into()),
            Some(p) if p.is_empty() || p.len() > MAX_PLAIN_TOKEN => {
                return bad(format!(
                    "payload.plainToken must be 1 to {MAX_PLAIN_TOKEN} bytes"
                ));
            }
            // Never sign what looks like a signature's input, even when asked by Zoom.
            Some(p) if p.starts_with("v0:") => {
                return bad("payload.plainToken is not a token".into());
            }
            Some(p) => p,
        };
        bump(&self.cfg.stats.validations);
        tracing::info!("answering endpoint.url_validation");
        let r = json_reply(
            StatusCode::OK,
            &serde_json::json!({
                "plainToken": plain,
                "encryptedToken": url_validation_token(&self.cfg.secret_token, plain),
            }),
        );
        (r, WebhookOutcome::Validated)
    }

    /// The de-duplicator's lock (a panic elsewhere never stops the intake).
    fn dedup(&self) -> std::sync::MutexGuard<'_, Dedup> {
        self.dedup.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a verified RTMS event to the handler, once: Zoom's retries are answered and
    /// dropped.
    async fn deliver(&self, ev: WebhookEvent) -> Answer {
        let key = event_key(&ev);
        let first = self
            .dedup()
            .first_time(key.clone(), tokio::time::Instant::now());
        let stream_id = truncated(&ev.stream_id, 128).into_owned();
        if !first {
            tracing::info!(
                event = ev.event,
                stream_id,
                event_ts = ev.event_ts,
                "duplicate webhook (Zoom retry): acknowledged, dropped"
            );
            return (reply(StatusCode::OK, ""), WebhookOutcome::Duplicate);
        }
        let name = ev.event.clone();
        match self.handler.on_event(ev).await {
            Ok(()) => {
                bump(&self.cfg.stats.delivered);
                tracing::info!(event = name, stream_id, "webhook accepted");
                (reply(StatusCode::OK, ""), WebhookOutcome::Accepted)
            }
            Err(refusal) => {
                // Zoom's retry of a refused event is handled anew; one for an unknown
                // stream stays answered.
                if !matches!(refusal, Refusal::UnknownStream(_) | Refusal::Duplicate(_)) {
                    self.dedup().forget(&key);
                }
                self.refused(refusal, &name, &stream_id)
            }
        }
    }

    /// Hands a verified concurrency notice to the handler, once (Zoom's retries are
    /// answered and dropped).
    fn notice(&self, n: Notice) -> Answer {
        let key = notice_key(&n);
        if !self.dedup().first_time(key, tokio::time::Instant::now()) {
            return (reply(StatusCode::OK, ""), WebhookOutcome::Duplicate);
        }
        self.handler.on_notice(n);
        (reply(StatusCode::OK, ""), WebhookOutcome::Accepted)
    }

    /// The answer to an event the handler refused.
    fn refused(&self, refusal: Refusal, name: &str, stream_id: &str) -> Answer {
        match refusal {
            Refusal::Busy {
                retry_after,
                reason,
            } => {
                bump(&self.cfg.stats.refused_busy);
                let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"));
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs()));
                (r, WebhookOutcome::Busy)
            }
            Refusal::Unacceptable(reason) => {
                bump(&self.cfg.stats.refused_unacceptable);
                let r = reply(StatusCode::UNPROCESSABLE_ENTITY, format!("{reason}\n"));
                (r, WebhookOutcome::Unacceptable)
            }
            Refusal::UnknownStream(reason) => {
                bump(&self.cfg.stats.unknown_stream);
                tracing::info!(
                    event = name,
                    stream_id,
                    reason,
                    "webhook for a stream this host does not run: acknowledged, nothing done"
                );
                (reply(StatusCode::OK, ""), WebhookOutcome::UnknownStream)
            }
            Refusal::Duplicate(reason) => {
                tracing::info!(
                    event = name,
                    stream_id,
                    reason,
                    "duplicate webhook: acknowledged, dropped"
                );
                (reply(StatusCode::OK, ""), WebhookOutcome::Duplicate)
            }
        }
    }
}

/// An answer and what became of the webhook.
type Answer = (Response<Full<Bytes>>, WebhookOutcome);

#[cfg(test)]
mod tests;
