//! The webhook ingress: a hyper HTTP/1 server that verifies and de-duplicates Zoom's
//! webhooks and hands RTMS lifecycle events to an [`IngressHandler`].
//!
//! Routes: `POST <path>` (webhooks), `GET /healthz` (200), and anything else through
//! [`IngressHandler::on_other`] (the host mounts metrics and its admin API there), else 404.
//!
//! A webhook is checked in this order: size (413 past `max_body_bytes`, never reading more),
//! then `x-zm-signature` over the raw body and the `x-zm-request-timestamp` window (401), then
//! the JSON and its fields (400). `endpoint.url_validation` is answered without a signature
//! (but a signature that is present must be right). Every rejection logs why, never the
//! secret. Accepted events are answered 200 before any connection work; Zoom's retries
//! (same event, stream id and `event_ts`) are answered 200 and dropped.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rtms_proto::WebhookEvent;
use rtms_proto::sign::{url_validation_token, verify_webhook};
use rtms_proto::webhook::{Envelope, URL_VALIDATION};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const SIGNATURE: &str = "x-zm-signature";
const TIMESTAMP: &str = "x-zm-request-timestamp";
const HEALTH_PATH: &str = "/healthz";

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
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            path: "/webhook".into(),
            secret_token: String::new(),
            max_body_bytes: 1024 * 1024,
            timestamp_window_secs: 300,
            dedup_ttl: Duration::from_secs(15 * 60),
            dedup_capacity: 10_000,
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
            .finish()
    }
}

/// What the ingress calls. Methods run on the connection's task: return quickly.
pub trait IngressHandler: Send + Sync + 'static {
    /// A verified, de-duplicated RTMS lifecycle event.
    fn on_event(&self, ev: WebhookEvent);

    /// Any request that is not the webhook path or `/healthz` (body read up to the size
    /// limit). `None` answers 404.
    fn on_other(&self, method: &Method, path: &str, body: &[u8]) -> Option<(StatusCode, String)> {
        let _ = (method, path, body);
        None
    }
}

/// Remembers delivered events to drop retries, with an expiry and a size bound.
struct Dedup {
    ttl: Duration,
    capacity: usize,
    seen: HashMap<(String, String, i64), Instant>,
    order: VecDeque<((String, String, i64), Instant)>,
}

impl Dedup {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// True when the key is new (and now remembered).
    fn first_time(&mut self, key: (String, String, i64), now: Instant) -> bool {
        while let Some((k, at)) = self.order.front() {
            if now.duration_since(*at) < self.ttl && self.order.len() < self.capacity {
                break;
            }
            if self.seen.get(k) == Some(at) {
                self.seen.remove(k);
            }
            self.order.pop_front();
        }
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key.clone(), now);
        self.order.push_back((key, now));
        true
    }
}

struct Ingress {
    cfg: IngressConfig,
    handler: Arc<dyn IngressHandler>,
    dedup: Mutex<Dedup>,
}

/// Serves until `shutdown` fires, then stops accepting and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    cfg: IngressConfig,
    handler: Arc<dyn IngressHandler>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ingress = Arc::new(Ingress {
        dedup: Mutex::new(Dedup::new(cfg.dedup_ttl, cfg.dedup_capacity)),
        cfg,
        handler,
    });
    let tracker = TaskTracker::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, path = ingress.cfg.path, "webhook ingress listening");
    }
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually out of file descriptors: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ingress = ingress.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = service_fn(move |req| {
                let ingress = ingress.clone();
                async move { Ok::<_, Infallible>(ingress.route(req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let res = tokio::select! {
                res = conn.as_mut() => res,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    tracing::info!("webhook ingress stopped");
    Ok(())
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn json_reply(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = reply(status, v.to_string());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn unix_now() -> i64 {
    rtms_proto::unix_secs() as i64
}

impl Ingress {
    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        if path == HEALTH_PATH && (method == Method::GET || method == Method::HEAD) {
            return reply(StatusCode::OK, "ok\n");
        }
        let webhook = path == self.cfg.path;
        if webhook && method != Method::POST {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
        }
        let headers = req.headers().clone();
        let body = match self.read_body(req).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        if webhook {
            return self.webhook(&headers, &body);
        }
        match self.handler.on_other(&method, &path, &body) {
            Some((status, text)) => reply(status, text),
            None => reply(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Reads the body, refusing (413) anything past the limit without reading it.
    async fn read_body(&self, req: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
        let limit = self.cfg.max_body_bytes;
        let too_large = || {
            tracing::warn!(limit, "request body over the size limit: 413");
            reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n")
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        match Limited::new(req.into_body(), limit).collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(e) => {
                tracing::warn!(error = %e, "request body could not be read");
                Err(reply(StatusCode::BAD_REQUEST, "unreadable body\n"))
            }
        }
    }

    fn webhook(&self, headers: &hyper::HeaderMap, body: &[u8]) -> Response<Full<Bytes>> {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let signed = headers.contains_key(SIGNATURE);
        let verify = || {
            verify_webhook(
                &self.cfg.secret_token,
                header(TIMESTAMP),
                header(SIGNATURE),
                body,
                unix_now(),
                self.cfg.timestamp_window_secs,
            )
        };
        if signed && let Err(e) = verify() {
            tracing::warn!(reason = %e, "webhook rejected: 401");
            return reply(StatusCode::UNAUTHORIZED, "bad signature\n");
        }
        let env = match Envelope::parse(body) {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!(reason = %e, "webhook rejected: 400");
                return reply(StatusCode::BAD_REQUEST, format!("{e}\n"));
            }
        };
        if env.event == URL_VALIDATION {
            let Some(plain) = env.payload.get("plainToken").and_then(|v| v.as_str()) else {
                tracing::warn!("url validation without payload.plainToken: 400");
                return reply(StatusCode::BAD_REQUEST, "payload.plainToken missing\n");
            };
            tracing::info!("answering endpoint.url_validation");
            return json_reply(
                StatusCode::OK,
                &serde_json::json!({
                    "plainToken": plain,
                    "encryptedToken": url_validation_token(&self.cfg.secret_token, plain),
                }),
            );
        }
        if !signed {
            let e = verify().err();
            tracing::warn!(reason = ?e.map(|e| e.to_string()), event = env.event, "unsigned webhook rejected: 401");
            return reply(StatusCode::UNAUTHORIZED, "missing signature\n");
        }
        let ev = match env.rtms_event() {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                tracing::debug!(
                    event = env.event,
                    "not an RTMS lifecycle event: acknowledged, ignored"
                );
                return reply(StatusCode::OK, "");
            }
            Err(e) => {
                tracing::warn!(reason = %e, "webhook rejected: 400");
                return reply(StatusCode::BAD_REQUEST, format!("{e}\n"));
            }
        };
        let key = (ev.event.clone(), ev.stream_id.clone(), ev.event_ts);
        let first = self
            .dedup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_time(key, Instant::now());
        if !first {
            tracing::info!(
                event = ev.event,
                stream_id = ev.stream_id,
                event_ts = ev.event_ts,
                "duplicate webhook (Zoom retry): acknowledged, dropped"
            );
            return reply(StatusCode::OK, "");
        }
        tracing::info!(
            event = ev.event,
            stream_id = ev.stream_id,
            "webhook accepted"
        );
        self.handler.on_event(ev);
        reply(StatusCode::OK, "")
    }
}

#[cfg(test)]
mod tests;
