//! Webhooks as Zoom sends them: each stream's events (started, interrupted, stopped) built,
//! remembered for duplicates, published to subscribers and delivered in order with retries
//! of the same body, every attempt in the ledger; compact JSON bodies POSTed over plain HTTP
//! with `x-zm-request-timestamp` (Unix seconds) and `x-zm-signature` (`v0=` HMAC over the raw
//! body); and the signed `endpoint.url_validation` challenge with its answer checked.
//!
//! Only `http://` targets on the loopback interface are accepted: the simulator never sends
//! traffic anywhere else.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rtms_proto::sign;
use rtms_proto::{Product, WebhookEvent, unix_ms, unix_secs};
use serde_json::json;

/// Why a webhook could not be delivered or validated.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook target {0:?} is not an http:// URL on 127.0.0.1 or localhost")]
    BadTarget(String),
    #[error("POST to {url} failed: {reason}")]
    Send { url: String, reason: String },
    #[error("POST to {url} got no answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("url validation answer from {url} is wrong: {problem}")]
    Validation { url: String, problem: String },
}

/// The outcome of one POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostOutcome {
    pub status: u16,
    pub body: Bytes,
}

/// Checks that a target is plain HTTP on the loopback interface.
pub fn check_target(url: &str) -> Result<hyper::Uri, WebhookError> {
    let bad = || WebhookError::BadTarget(url.to_owned());
    let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") {
        return Err(bad());
    }
    match uri.host() {
        Some("127.0.0.1") | Some("localhost") => Ok(uri),
        _ => Err(bad()),
    }
}

/// Signs and POSTs webhook bodies.
#[derive(Clone)]
pub struct WebhookClient {
    client: Client<HttpConnector, Full<Bytes>>,
    secret: String,
    timeout: Duration,
}

impl WebhookClient {
    pub fn new(secret: &str, timeout: Duration) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            secret: secret.to_owned(),
            timeout,
        }
    }

    /// POSTs `body` signed with the current time; returns the status and response body.
    pub async fn post_signed(&self, url: &str, body: Bytes) -> Result<PostOutcome, WebhookError> {
        let uri = check_target(url)?;
        let ts = unix_secs().to_string();
        let sig = sign::webhook_signature(&self.secret, &ts, &body);
        let req = Request::post(uri)
            .header("content-type", "application/json")
            .header("user-agent", "Zoom Marketplace/1.0a")
            .header("x-zm-request-timestamp", &ts)
            .header("x-zm-signature", sig)
            .header("x-zm-trackingid", format!("rtms-sim-{}", unix_ms()))
            .body(Full::new(body))
            .map_err(|e| WebhookError::Send {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let send = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| WebhookError::Send {
                    url: url.to_owned(),
                    reason: e.to_string(),
                })?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| WebhookError::Send {
                    url: url.to_owned(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok(PostOutcome { status, body })
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(WebhookError::Timeout {
                url: url.to_owned(),
                secs: self.timeout.as_secs(),
            }),
        }
    }

    /// Runs Zoom's `endpoint.url_validation` challenge against `url` (signed, like every
    /// webhook) and checks the `plainToken` / `encryptedToken` answer.
    pub async fn validate_endpoint(&self, url: &str) -> Result<(), WebhookError> {
        let plain: String = {
            use rand::Rng;
            let mut rng = rand::rng();
            (0..22)
                .map(|_| {
                    const A: &[u8] =
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                    A[rng.random_range(0..A.len())] as char
                })
                .collect()
        };
        let body = serde_json::json!({
            "event": rtms_proto::webhook::URL_VALIDATION,
            "payload": {"plainToken": plain},
            "event_ts": unix_ms(),
        });
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let out = self.post_signed(url, body).await?;
        let wrong = |problem: String| WebhookError::Validation {
            url: url.to_owned(),
            problem,
        };
        if out.status != 200 {
            return Err(wrong(format!("HTTP status {}, expected 200", out.status)));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.body)
            .map_err(|e| wrong(format!("body is not JSON ({e})")))?;
        if v.get("plainToken").and_then(|t| t.as_str()) != Some(plain.as_str()) {
            return Err(wrong("plainToken is not the one sent".into()));
        }
        let expected = sign::url_validation_token(&self.secret, &plain);
        match v.get("encryptedToken").and_then(|t| t.as_str()) {
            Some(t) if sign::signatures_match(t, &expected) => Ok(()),
            Some(_) => Err(wrong(
                "encryptedToken does not match HMAC-SHA256(secret token, plainToken)".into(),
            )),
            None => Err(wrong("encryptedToken is missing".into())),
        }
    }
}

/// The body Zoom sends for an event: [`WebhookEvent::to_body`] (compact JSON, flat payload),
/// the started webhook's fields of April 2026 included (`account_id`, `is_original_host`,
/// `meeting_id`, `webinar_id`: the event's `details`, which the simulator fills in).
pub(crate) fn webhook_body(ev: &WebhookEvent, _account_id: &str) -> Vec<u8> {
    ev.to_body()
}

/// The webhook name of a concurrency notice: `meeting.rtms_concurrency_limited`,
/// `meeting.rtms_concurrency_near_limit`, and `rtms.start_failed` (which Zoom names so on its
/// event WebSocket).
pub fn notice_event(kind: rtms_proto::webhook::NoticeKind) -> &'static str {
    use rtms_proto::webhook::NoticeKind::*;
    match kind {
        ConcurrencyLimited => "meeting.rtms_concurrency_limited",
        ConcurrencyNearLimit => "meeting.rtms_concurrency_near_limit",
        StartFailed => "rtms.start_failed",
    }
}

/// The event WebSocket's name of a concurrency notice: `rtms.concurrency_limited`,
/// `rtms.concurrency_near_limit`, `rtms.start_failed`.
pub fn notice_ws_event(kind: rtms_proto::webhook::NoticeKind) -> String {
    format!("rtms.{}", kind.as_str())
}

/// The body of a concurrency notice named `event` about the meeting `id` of `product`: the
/// event, its time, and a flat payload with `account_id` and the product's id key. Zoom's
/// further payload fields are not documented, so none are invented.
pub fn notice_body(event: &str, product: Product, id: &str, account_id: &str) -> Vec<u8> {
    let mut payload = serde_json::Map::new();
    payload.insert("account_id".into(), json!(account_id));
    payload.insert(product.id_key().into(), json!(id));
    serde_json::to_vec(&json!({
        "event": event,
        "event_ts": unix_ms(),
        "payload": payload,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_targets() {
        assert!(check_target("http://127.0.0.1:8080/webhook").is_ok());
        assert!(check_target("http://localhost:1/").is_ok());
        assert!(check_target("https://127.0.0.1:8080/").is_err());
        assert!(check_target("http://10.0.0.1/").is_err());
        assert!(check_target("not a url").is_err());
    }
}
