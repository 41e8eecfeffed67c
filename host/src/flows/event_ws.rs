//! Zoom's event WebSocket as a second intake: the host opens
//! `wss://ws.zoom.us/ws?subscriptionId=ID&access_token=TOKEN` (a Server-to-Server OAuth token)
//! and receives the same events a webhook endpoint would, as
//! `{"module": "message", "content": "<the event's JSON>"}`, without a public listener.
//!
//! It sends `{"module": "heartbeat"}` every `heartbeat` (Zoom asks for 30 s) and treats a
//! connection that has said nothing for three heartbeats as dead. It reconnects with
//! exponential backoff and jitter (1 s doubling to 60 s, reset once a connection lived a
//! minute), fetching a fresh token each time. Events go to the same handler as webhooks, after
//! a bounded de-duplication of `(event, stream, event_ts)`. The URL, which holds the token, is
//! never logged.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtms_client::{Connector, IngressHandler, WebhookOutcome, WebhookSeen, WsConnector};
use rtms_config::EventWs;
use rtms_proto::webhook::{Envelope, truncated};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::flows::zoom_rest::ZoomRest;
use crate::urlenc::encode;

/// Events remembered for de-duplication.
const DEDUP: usize = 4096;
/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A connection that lived this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(60);

/// Remembers the last [`DEDUP`] events.
#[derive(Default)]
struct Seen {
    set: HashSet<(String, String, i64)>,
    order: VecDeque<(String, String, i64)>,
}

impl Seen {
    fn first_time(&mut self, key: (String, String, i64)) -> bool {
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > DEDUP
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// Runs the intake until `shutdown`.
pub async fn run(
    cfg: EventWs,
    rest: Arc<ZoomRest>,
    connector: WsConnector,
    handler: Arc<dyn IngressHandler>,
    failed: Arc<std::sync::atomic::AtomicU64>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::ZERO;
    let mut seen = Seen::default();
    let mut failures = 0u64;
    // Counted for the metrics (`rtms_event_ws_failures_total`) and in the log lines.
    let mut fail = || {
        failures += 1;
        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        failures
    };
    loop {
        if !backoff.is_zero() {
            let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff + jitter) => {}
            }
        }
        backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
        let token = match rest.token().await {
            Ok(t) => t,
            Err(e) => {
                let failures = fail();
                tracing::error!(error = %e, failures, "event WebSocket: no access token; retrying");
                continue;
            }
        };
        let url = format!(
            "{}?subscriptionId={}&access_token={}",
            cfg.url,
            encode(&cfg.subscription_id),
            encode(&token)
        );
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            c = tokio::time::timeout(Duration::from_secs(15), connector.connect(&url)) => c,
        };
        let mut ws = match connected {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                let failures = fail();
                tracing::warn!(url = cfg.url, error = %e, failures, "event WebSocket: cannot connect; retrying");
                continue;
            }
            Err(_) => {
                let failures = fail();
                tracing::warn!(
                    url = cfg.url,
                    failures,
                    "event WebSocket: connection timed out; retrying"
                );
                continue;
            }
        };
        tracing::info!(
            url = cfg.url,
            subscription = cfg.subscription_id,
            "event WebSocket connected"
        );
        let opened = Instant::now();
        let mut beat = tokio::time::interval_at(Instant::now() + cfg.heartbeat, cfg.heartbeat);
        let mut last_rx = Instant::now();
        let why = loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = ws.send(Message::Close(None)).await;
                    return;
                }
                _ = beat.tick() => {
                    if last_rx.elapsed() > cfg.heartbeat * 3 {
                        break "silent for three heartbeats";
                    }
                    let hb = json!({"module": "heartbeat"}).to_string();
                    if ws.send(Message::text(hb)).await.is_err() {
                        break "the heartbeat could not be sent";
                    }
                }
                msg = ws.next() => {
                    last_rx = Instant::now();
                    match msg {
                        Some(Ok(Message::Text(t))) => on_text(t.as_str(), &*handler, &mut seen).await,
                        Some(Ok(Message::Binary(b))) => on_text(&String::from_utf8_lossy(&b), &*handler, &mut seen).await,
                        Some(Ok(Message::Close(_))) | None => break "Zoom closed it",
                        Some(Err(_)) => break "it failed",
                        Some(Ok(_)) => {}
                    }
                }
            }
        };
        if opened.elapsed() >= HEALTHY {
            backoff = Duration::ZERO;
        }
        tracing::warn!(
            url = cfg.url,
            reason = why,
            "event WebSocket lost; reconnecting"
        );
    }
}

/// One message: an event goes to the handler, a heartbeat answer is ignored.
async fn on_text(text: &str, handler: &dyn IngressHandler, seen: &mut Seen) {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "event WebSocket: a message that is not JSON, skipped");
            return;
        }
    };
    if v["module"] != "message" {
        return;
    }
    let Some(content) = v["content"].as_str() else {
        tracing::warn!("event WebSocket: a message without content, skipped");
        return;
    };
    let env = match Envelope::parse(content.as_bytes()) {
        Ok(env) => env,
        Err(e) => {
            handler.observe(WebhookSeen {
                event: None,
                outcome: WebhookOutcome::BadRequest,
                delay: None,
            });
            tracing::warn!(error = %e, "event WebSocket: an event that does not parse, skipped");
            return;
        }
    };
    let ev = match env.rtms_event() {
        Ok(Some(ev)) => ev,
        Ok(None) => {
            handler.observe(WebhookSeen {
                event: Some(&env.event),
                outcome: WebhookOutcome::Ignored,
                delay: None,
            });
            return;
        }
        Err(e) => {
            handler.observe(WebhookSeen {
                event: Some(&env.event),
                outcome: WebhookOutcome::BadRequest,
                delay: None,
            });
            tracing::warn!(event = %truncated(&env.event, 64), error = %e, "event WebSocket: a malformed RTMS event, skipped");
            return;
        }
    };
    let name = ev.event.clone();
    if !seen.first_time((ev.event.clone(), ev.stream_id.clone(), ev.event_ts)) {
        handler.observe(WebhookSeen {
            event: Some(&name),
            outcome: WebhookOutcome::Duplicate,
            delay: None,
        });
        return;
    }
    let stream = truncated(&ev.stream_id, 64).into_owned();
    let outcome = match handler.on_event(ev).await {
        Ok(()) => {
            tracing::info!(
                event = name,
                stream_id = stream,
                "event accepted from the event WebSocket"
            );
            WebhookOutcome::Accepted
        }
        Err(rtms_client::Refusal::Busy { reason, .. }) => {
            tracing::warn!(
                event = name,
                stream_id = stream,
                reason,
                "event from the event WebSocket refused"
            );
            WebhookOutcome::Busy
        }
        Err(rtms_client::Refusal::Unacceptable(reason)) => {
            tracing::warn!(
                event = name,
                stream_id = stream,
                reason,
                "event from the event WebSocket refused"
            );
            WebhookOutcome::Unacceptable
        }
        Err(rtms_client::Refusal::UnknownStream(reason)) => {
            tracing::info!(
                event = name,
                stream_id = stream,
                reason,
                "event from the event WebSocket for an unknown stream: nothing done"
            );
            WebhookOutcome::UnknownStream
        }
        Err(rtms_client::Refusal::Duplicate(_)) => WebhookOutcome::Duplicate,
    };
    handler.observe(WebhookSeen {
        event: Some(&name),
        outcome,
        delay: None,
    });
}
