//! Zoom's event WebSocket as a second intake: the host opens
//! `wss://ws.zoom.us/ws?subscriptionId=ID&access_token=TOKEN` (a Server-to-Server OAuth token)
//! and receives the same events a webhook endpoint would, as
//! `{"module": "message", "content": "<the event's JSON>"}`, without a public listener.
//!
//! It sends `{"module": "heartbeat"}` every `heartbeat` (Zoom asks for 30 s) and treats a
//! connection that has said nothing for three heartbeats as dead. It reconnects with
//! exponential backoff and jitter (1 s doubling to 60 s, reset once a connection lived a
//! minute), fetching a fresh token each time. Events go to the same handler as webhooks, after
//! the de-duplication webhooks get (`rtms_client::dedup`: `(event, stream, event_ts)`, remembered
//! for 15 minutes, at most 4096 of them). The URL, which holds the token, is
//! never logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtms_client::dedup::{DEFAULT_WINDOW, Dedup, event_key, notice_key};
use rtms_client::{Connector, IngressHandler, WebhookOutcome, WebhookSeen, WsConnector};
use rtms_config::EventWs;
use rtms_proto::text::truncated;
use rtms_proto::webhook::Envelope;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::flows::zoom_rest::ZoomRest;
use crate::urlenc::encode;

/// Events remembered for de-duplication (each for [`rtms_client::dedup::DEFAULT_WINDOW`]).
const DEDUP: usize = 4096;
/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A connection that lived this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(60);

/// The socket of one connection.
type Socket = <WsConnector as Connector>::Conn;

/// The intake across its connections: where it connects, where events go, what it has seen.
struct Intake {
    cfg: EventWs,
    rest: Arc<ZoomRest>,
    connector: WsConnector,
    handler: Arc<dyn IngressHandler>,
    /// Counted for the metrics (`rtms_event_ws_failures_total`).
    failed: Arc<AtomicU64>,
    /// The same count, for the log lines.
    failures: u64,
    seen: Dedup,
}

/// What one connection attempt came to.
enum Attempt {
    Connected(Box<Socket>),
    Failed,
    ShutDown,
}

/// Runs the intake until `shutdown`.
pub async fn run(
    cfg: EventWs,
    rest: Arc<ZoomRest>,
    connector: WsConnector,
    handler: Arc<dyn IngressHandler>,
    failed: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let mut intake = Intake {
        cfg,
        rest,
        connector,
        handler,
        failed,
        failures: 0,
        seen: Dedup::new(DEFAULT_WINDOW, DEDUP),
    };
    let mut backoff = Duration::ZERO;
    loop {
        if !backoff.is_zero() {
            let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff + jitter) => {}
            }
        }
        backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
        let ws = match intake.connect(&shutdown).await {
            Attempt::Connected(ws) => ws,
            Attempt::Failed => continue,
            Attempt::ShutDown => return,
        };
        let opened = Instant::now();
        let Some(why) = intake.serve(*ws, &shutdown).await else {
            return;
        };
        if opened.elapsed() >= HEALTHY {
            backoff = Duration::ZERO;
        }
        tracing::warn!(
            url = intake.cfg.url,
            reason = why,
            "event WebSocket lost; reconnecting"
        );
    }
}

impl Intake {
    /// One more failed attempt: counted, and the running count returned.
    fn fail(&mut self) -> u64 {
        self.failures += 1;
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.failures
    }

    /// Fetches a token and opens the socket (within 15 s).
    async fn connect(&mut self, shutdown: &CancellationToken) -> Attempt {
        let token = match self.rest.token().await {
            Ok(t) => t,
            Err(e) => {
                let failures = self.fail();
                tracing::error!(error = %e, failures, "event WebSocket: no access token; retrying");
                return Attempt::Failed;
            }
        };
        let cfg = &self.cfg;
        let url = format!(
            "{}?subscriptionId={}&access_token={}",
            cfg.url,
            encode(&cfg.subscription_id),
            encode(&token)
        );
        let connected = tokio::select! {
            () = shutdown.cancelled() => return Attempt::ShutDown,
            c = tokio::time::timeout(Duration::from_secs(15), self.connector.connect(&url)) => c,
        };
        match connected {
            Ok(Ok(ws)) => {
                tracing::info!(
                    url = cfg.url,
                    subscription = cfg.subscription_id,
                    "event WebSocket connected"
                );
                Attempt::Connected(Box::new(ws))
            }
            Ok(Err(e)) => {
                let failures = self.fail();
                tracing::warn!(url = self.cfg.url, error = %e, failures, "event WebSocket: cannot connect; retrying");
                Attempt::Failed
            }
            Err(_) => {
                let failures = self.fail();
                tracing::warn!(
                    url = self.cfg.url,
                    failures,
                    "event WebSocket: connection timed out; retrying"
                );
                Attempt::Failed
            }
        }
    }

    /// Serves one connection: heartbeats out, events in. Why it was lost, or `None` at
    /// shutdown.
    async fn serve(
        &mut self,
        mut ws: Socket,
        shutdown: &CancellationToken,
    ) -> Option<&'static str> {
        let heartbeat = self.cfg.heartbeat;
        let mut beat = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        let mut last_rx = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = ws.send(Message::Close(None)).await;
                    return None;
                }
                _ = beat.tick() => {
                    if last_rx.elapsed() > heartbeat * 3 {
                        return Some("silent for three heartbeats");
                    }
                    let hb = json!({"module": "heartbeat"}).to_string();
                    if ws.send(Message::text(hb)).await.is_err() {
                        return Some("the heartbeat could not be sent");
                    }
                }
                msg = ws.next() => {
                    last_rx = Instant::now();
                    match msg {
                        Some(Ok(Message::Text(t))) => on_text(t.as_str(), &*self.handler, &mut self.seen).await,
                        Some(Ok(Message::Binary(b))) => on_text(&String::from_utf8_lossy(&b), &*self.handler, &mut self.seen).await,
                        Some(Ok(Message::Close(_))) | None => return Some("Zoom closed it"),
                        Some(Err(_)) => return Some("it failed"),
                        Some(Ok(_)) => {}
                    }
                }
            }
        }
    }
}

/// One message: an event goes to the handler (once), a heartbeat answer is ignored.
async fn on_text(text: &str, handler: &dyn IngressHandler, seen: &mut Dedup) {
    let ev = match rtms_event(text, handler) {
        Some(Item::Event(ev)) => ev,
        Some(Item::Notice(n)) => {
            let first = seen.first_time(notice_key(&n), Instant::now());
            handler.observe(WebhookSeen {
                event: Some(&n.event),
                outcome: if first {
                    WebhookOutcome::Accepted
                } else {
                    WebhookOutcome::Duplicate
                },
                delay: None,
            });
            if first {
                handler.on_notice(n);
            }
            return;
        }
        None => return,
    };
    if !seen.first_time(event_key(&ev), Instant::now()) {
        handler.observe(WebhookSeen {
            event: Some(&ev.event),
            outcome: WebhookOutcome::Duplicate,
            delay: None,
        });
        return;
    }
    deliver(ev, handler).await;
}

/// What a message of the event WebSocket carries that the host acts on.
enum Item {
    Event(rtms_proto::WebhookEvent),
    Notice(rtms_proto::webhook::Notice),
}

/// The RTMS event or concurrency notice a message carries; anything else is counted
/// (through `handler`) and skipped.
fn rtms_event(text: &str, handler: &dyn IngressHandler) -> Option<Item> {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "event WebSocket: a message that is not JSON, skipped");
            return None;
        }
    };
    if v["module"] != "message" {
        return None;
    }
    let Some(content) = v["content"].as_str() else {
        tracing::warn!("event WebSocket: a message without content, skipped");
        return None;
    };
    let seen = |event: Option<&str>, outcome| {
        handler.observe(WebhookSeen {
            event,
            outcome,
            delay: None,
        })
    };
    let env = match Envelope::parse(content.as_bytes()) {
        Ok(env) => env,
        Err(e) => {
            seen(None, WebhookOutcome::BadRequest);
            tracing::warn!(error = %e, "event WebSocket: an event that does not parse, skipped");
            return None;
        }
    };
    match env.rtms_event() {
        Ok(Some(ev)) => Some(Item::Event(ev)),
        Ok(None) if let Some(n) = env.notice() => Some(Item::Notice(n)),
        Ok(None) => {
            seen(Some(&env.event), WebhookOutcome::Ignored);
            None
        }
        Err(e) => {
            seen(Some(&env.event), WebhookOutcome::BadRequest);
            tracing::warn!(event = %truncated(&env.event, 64), error = %e, "event WebSocket: a malformed RTMS event, skipped");
            None
        }
    }
}

/// Hands a new event to the handler; logs and counts what it answered.
async fn deliver(ev: rtms_proto::WebhookEvent, handler: &dyn IngressHandler) {
    let name = ev.event.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the intake handed over and how it counted each message.
    #[derive(Default)]
    struct Recorder {
        events: parking_lot::Mutex<Vec<(String, i64)>>,
        outcomes: parking_lot::Mutex<Vec<&'static str>>,
    }

    impl IngressHandler for Recorder {
        fn on_event(&self, ev: rtms_proto::WebhookEvent) -> rtms_client::ingress::EventFuture<'_> {
            self.events.lock().push((ev.stream_id, ev.event_ts));
            Box::pin(async { Ok(()) })
        }
        fn observe(&self, seen: WebhookSeen<'_>) {
            self.outcomes.lock().push(seen.outcome.as_str());
        }
    }

    fn message(stream: &str, ts: i64) -> String {
        let content = json!({
            "event": "meeting.rtms_started", "event_ts": ts,
            "payload": {"meeting_uuid": "u", "rtms_stream_id": stream,
                        "server_urls": "wss://a.zoom.us/x"},
        });
        json!({"module": "message", "content": content.to_string()}).to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_event_is_handed_over_once_and_counted_as_a_duplicate() {
        let h = Recorder::default();
        let mut seen = Dedup::new(DEFAULT_WINDOW, DEDUP);
        on_text(&message("s1", 1), &h, &mut seen).await;
        on_text(&message("s1", 1), &h, &mut seen).await;
        on_text(&message("s1", 2), &h, &mut seen).await;
        assert_eq!(
            *h.events.lock(),
            [("s1".to_owned(), 1), ("s1".to_owned(), 2)]
        );
        assert_eq!(*h.outcomes.lock(), ["accepted", "duplicate", "accepted"]);
        // Past the window the same event is new again.
        tokio::time::advance(DEFAULT_WINDOW).await;
        on_text(&message("s1", 1), &h, &mut seen).await;
        assert_eq!(h.events.lock().len(), 3);
    }
}
