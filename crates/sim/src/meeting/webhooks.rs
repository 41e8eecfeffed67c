//! A stream's webhooks: queued per meeting, delivered in order with Zoom's retries, each
//! delivery recorded in the ledger. Signing and posting are [`crate::webhook`]'s.

use std::sync::Arc;

use bytes::Bytes;
use rtms_proto::webhook::NoticeKind;
use rtms_proto::{Product, WebhookAction, WebhookEvent, unix_ms};
use tokio::sync::{mpsc, oneshot};

use crate::ledger::WebhookDelivery;
use crate::meeting::{Meeting, State};
use crate::webhook::*;

// === a stream's webhooks ===

/// A webhook waiting for delivery.
pub(crate) struct Delivery {
    pub(crate) event: String,
    pub(crate) body: Bytes,
    pub(crate) attempt: u32,
    pub(crate) done: Option<oneshot::Sender<()>>,
    /// The stopped event: the delivery loop ends after it.
    pub(crate) last: bool,
}

impl Meeting {
    // === webhooks ===

    /// Builds the event, remembers it for duplicates, publishes it to subscribers and
    /// queues its delivery.
    pub(crate) fn emit_webhook(
        &self,
        st: &mut State,
        action: WebhookAction,
        server_url: Option<String>,
    ) -> Option<oneshot::Receiver<()>> {
        let ev = self.build_event(action, server_url);
        if action == WebhookAction::Started {
            *self.started.lock().unwrap_or_else(|p| p.into_inner()) = ev.clone();
        }
        self.deliver(st, ev)
    }

    /// The event of `action` for this stream, as Zoom would send it now.
    pub(crate) fn build_event(
        &self,
        action: WebhookAction,
        server_url: Option<String>,
    ) -> WebhookEvent {
        WebhookEvent {
            details: if action == WebhookAction::Started {
                crate::meeting::started_details(self.product, &self.id, &self.sim.config.account_id)
            } else {
                Default::default()
            },
            product: self.product,
            action,
            event: self.product.event_name(action),
            event_ts: unix_ms() as i64,
            id: self.id.clone(),
            stream_id: self.stream_id.clone(),
            server_url,
            operator_id: (action == WebhookAction::Started
                && self.product != Product::ContactCenter)
                .then(|| self.operator_id.clone()),
            stop_reason: (action == WebhookAction::Stopped)
                .then(|| self.ledger_mut().stop_reason.unwrap_or(0)),
        }
    }

    pub(crate) fn deliver(
        &self,
        st: &mut State,
        ev: WebhookEvent,
    ) -> Option<oneshot::Receiver<()>> {
        let body = Bytes::from(webhook_body(&ev, &self.sim.config.account_id));
        st.last_webhook = Some((ev.event.clone(), body.clone(), 1));
        let _ = self.webhooks_tx.send(ev.clone());
        self.queue_body(ev.event, body, ev.action == WebhookAction::Stopped)
    }

    /// Queues one body for delivery to the webhook target, if there is one.
    fn queue_body(&self, event: String, body: Bytes, last: bool) -> Option<oneshot::Receiver<()>> {
        self.webhook_url.as_ref()?;
        let (done, rx) = oneshot::channel();
        let _ = self.deliveries.send(Delivery {
            event,
            body,
            attempt: 1,
            done: Some(done),
            last,
        });
        Some(rx)
    }

    /// Sends one of Zoom's concurrency notices about this meeting to the webhook target
    /// (`meeting.rtms_concurrency_limited` / `_near_limit`; `rtms.start_failed`, which Zoom
    /// sends on its event WebSocket, is sent under that name too), in order with the
    /// stream's other webhooks, retried as they are; each attempt enters the ledger.
    pub(crate) fn send_notice(&self, kind: NoticeKind) -> Option<oneshot::Receiver<()>> {
        let event = notice_event(kind).to_owned();
        let body = notice_body(&event, self.product, &self.id, &self.sim.config.account_id);
        self.queue_body(event, Bytes::from(body), false)
    }

    /// Delivers the started event (used by `start_meeting` when a target is set).
    pub(crate) fn send_started(&self) {
        let ev = self.started_event();
        let mut st = self.state();
        self.deliver(&mut st, ev);
    }
}

/// Delivers queued webhooks in order; failed attempts are retried later (same body) as
/// Zoom does, without holding up the queue.
pub(crate) async fn deliver_loop(m: Arc<Meeting>, mut rx: mpsc::UnboundedReceiver<Delivery>) {
    let Some(url) = m.webhook_url.clone() else {
        return;
    };
    let cfg = m.sim.config.clone();
    let client = WebhookClient::new(&cfg.webhook_secret, cfg.webhook_timeout);
    loop {
        let d = tokio::select! {
            d = rx.recv() => match d {
                Some(d) => d,
                None => return,
            },
            _ = m.cancel.cancelled() => return,
        };
        let last = d.last;
        let status = attempt(&m, &client, &url, &d.event, d.body.clone(), d.attempt).await;
        if let Some(done) = d.done {
            let _ = done.send(());
        }
        let ok = accepted(status);
        if d.event.ends_with("rtms_started") && refused_for_good(status) {
            // No client will come: the meeting gives up now rather than after the connect
            // timeout (the refusal and its reason are logged above).
            tracing::warn!(
                event = %d.event,
                "the host refused the started webhook; the meeting ends now (stop_reason 11) instead of waiting for a client"
            );
            let _ = m.control.send(crate::meeting::Control::Terminate {
                reason: rtms_proto::codes::stop_reason::CONNECTION_TIMEOUT,
            });
        } else if !ok && d.attempt < cfg.webhook_max_attempts {
            let (m, client, url) = (m.clone(), client.clone(), url.clone());
            tokio::spawn(async move {
                let mut n = d.attempt;
                while n < cfg.webhook_max_attempts {
                    tokio::time::sleep(cfg.webhook_retry_delay).await;
                    n += 1;
                    if accepted(attempt(&m, &client, &url, &d.event, d.body.clone(), n).await) {
                        break;
                    }
                }
            });
        }
        if last {
            return;
        }
    }
}

fn accepted(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s))
}

/// A 4xx answer other than 408 and 429 (which invite a retry): the host will not take the
/// webhook however often it is sent.
fn refused_for_good(status: Option<u16>) -> bool {
    status.is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429)
}

/// The most of a refusal's body logged and kept in the ledger.
const REFUSAL_BODY_MAX: usize = 1024;

/// POSTs one webhook and records it; the HTTP status, or `None` when the request failed.
/// A refusal is logged with the host's answer, which says why.
async fn attempt(
    m: &Meeting,
    client: &WebhookClient,
    url: &str,
    event: &str,
    body: Bytes,
    n: u32,
) -> Option<u16> {
    let res = client.post_signed(url, body.clone()).await;
    let (status, error) = match &res {
        Ok(o) if accepted(Some(o.status)) => (Some(o.status), None),
        Ok(o) => {
            let answer = String::from_utf8_lossy(&o.body);
            let mut answer = answer.trim().to_owned();
            if answer.len() > REFUSAL_BODY_MAX {
                let mut end = REFUSAL_BODY_MAX;
                while !answer.is_char_boundary(end) {
                    end -= 1;
                }
                answer.truncate(end);
                answer.push('…');
            }
            (Some(o.status), Some(format!("HTTP {}: {answer}", o.status)))
        }
        Err(e) => (None, Some(e.to_string())),
    };
    if let Some(e) = &error {
        tracing::warn!(event, attempt = n, "webhook not accepted: {e}");
    }
    m.ledger_mut().webhooks.push(WebhookDelivery {
        event: event.to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
        attempt: n,
        status,
        error,
    });
    status
}
