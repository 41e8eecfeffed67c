//! Webhooks in a cluster.
//!
//! - [`log`]: the host that receives a verified webhook writes it to the shared log, keyed by
//!   its event, stream and `event_ts` (Zoom's retries carry the same), and answers 200 only
//!   once the engine confirmed the write; 503 when it could not (Zoom retries).
//! - [`consume`]: every host takes webhooks from the log, one at a time, and acknowledges
//!   each only after acting on it; one taken by a host that dies first is handed to another
//!   after `ack_wait_ms`. A new stream gets a lease assigned to the host it is placed on; an
//!   event for a stream with a lease goes to its owner ([`serve`] on the owner's side); an
//!   owner that does not answer gets the event again later, by then from a live owner.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use rtms_client::Refusal;
use rtms_cluster::{Logged, LoggedWebhook, StoreError, Table};
use rtms_proto::text::truncated;
use rtms_proto::webhook::Envelope;
use rtms_proto::{WebhookAction, WebhookEvent};
use tokio_util::sync::CancellationToken;

use super::leases::{self, Why};
use super::record::LeaseRecord;
use super::{Inner, view};

/// The `Retry-After` of a webhook the log could not take.
const LOG_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The owner's answers to a forwarded event.
const HANDLED: &[u8] = b"handled";
const NOT_HERE: &[u8] = b"not-here";

/// Writes a verified webhook to the shared log (a host's URL allow-list applies first).
pub async fn log(inner: &Inner, ev: WebhookEvent) -> Result<(), Refusal> {
    inner.sessions.check_url(&ev)?;
    let key = format!("{}\n{}\n{}", ev.event, ev.stream_id, ev.event_ts);
    match inner
        .store
        .log_webhook(&key, Bytes::from(ev.to_body()))
        .await
    {
        Ok(Logged::New) => {
            inner.stats.logged.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Ok(Logged::Duplicate) => {
            inner.stats.log_duplicates.fetch_add(1, Ordering::Relaxed);
            Err(Refusal::Duplicate(
                "a host of the cluster logged this event already".into(),
            ))
        }
        Err(e) => {
            let n = inner.stats.log_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if rtms_client::ratelog::admit("cluster-log-failed") {
                tracing::error!(error = %e, refused_so_far = n, "cluster: webhook not logged: answered 503 (Zoom retries); check the cluster engine");
            }
            Err(Refusal::Busy {
                retry_after: LOG_RETRY_AFTER,
                reason: "the cluster's webhook log is unreachable; retry later".into(),
            })
        }
    }
}

/// What to do with a webhook taken from the log.
enum Acted {
    /// Done: acknowledge it.
    Done,
    /// Hand it back, to be delivered again (to any host) after this long.
    Later(Duration),
}

/// Takes webhooks from the shared log and acts on them until `stop` (a drain stops it).
pub async fn consume(inner: Arc<Inner>, stop: CancellationToken) {
    let mut wait = Duration::from_millis(100);
    loop {
        let failed = match inner.store.webhooks().await {
            Ok(mut log) => loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = log.next() => next,
                };
                match next {
                    Some(Ok(w)) => {
                        wait = Duration::from_millis(100);
                        act(&inner, w).await;
                    }
                    Some(Err(e)) => break e,
                    None => break StoreError::Unavailable("the log ended".into()),
                }
            },
            Err(e) => e,
        };
        if rtms_client::ratelog::admit("cluster-consume") {
            tracing::warn!(error = %failed, "cluster: reading the webhook log failed; reading again");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// Acts on one logged webhook, then settles it.
async fn act(inner: &Arc<Inner>, w: LoggedWebhook) {
    let ev = match Envelope::parse(&w.body).map(|e| e.rtms_event()) {
        Ok(Ok(Some(ev))) => ev,
        _ => {
            tracing::warn!(
                "cluster: a logged webhook that is not an RTMS event: dropped (written by another version?)"
            );
            let _ = w.settle.ack().await;
            return;
        }
    };
    let (name, stream) = (ev.event.clone(), truncated(&ev.stream_id, 64).into_owned());
    if w.deliveries > 1 {
        tracing::info!(event = %ev.event, stream_id = %truncated(&ev.stream_id, 64), deliveries = w.deliveries, "cluster: a logged webhook delivered again (its host died or could not act yet)");
    }
    let acted = match ev.action {
        WebhookAction::Started => place(inner, ev).await,
        WebhookAction::Interrupted | WebhookAction::Stopped => route(inner, ev).await,
    };
    let settled = match acted {
        Acted::Done => {
            inner.stats.acted.fetch_add(1, Ordering::Relaxed);
            w.settle.ack().await
        }
        Acted::Later(_) if w.deliveries >= super::MAX_DELIVERIES as u64 => {
            let n = inner.stats.given_up.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(event = %name, stream_id = %stream, deliveries = w.deliveries, given_up_so_far = n, "cluster: a logged webhook still not acted on at its last delivery: dropped (no host had room, or its stream's owner never answered)");
            w.settle.ack().await
        }
        Acted::Later(delay) => {
            inner.stats.retried.fetch_add(1, Ordering::Relaxed);
            w.settle.retry(delay).await
        }
    };
    if let Err(e) = settled {
        tracing::warn!(error = %e, "cluster: a logged webhook not settled; it is delivered again after ack_wait_ms");
    }
}

/// A started event: a new stream gets a lease assigned to the host it is placed on (this
/// one starts it at once); a stream with a lease gets the event through its owner.
async fn place(inner: &Arc<Inner>, ev: WebhookEvent) -> Acted {
    let candidates = inner.candidates();
    let receiver_first = inner.cfg.placement == rtms_config::Placement::ReceiverFirst;
    let Some(target) = view::least_loaded(&inner.host, &candidates, receiver_first) else {
        if rtms_client::ratelog::admit("cluster-all-full") {
            tracing::warn!(stream_id = %truncated(&ev.stream_id, 64), "cluster: no live host has room for a new stream; it waits in the log (add hosts or raise rtms.max_streams)");
        }
        return Acted::Later(inner.cfg.renew * 3);
    };
    let target = target.to_owned();
    let record = LeaseRecord::assigned(&ev, &target);
    if target == inner.host {
        if leases::take(inner, &ev.stream_id, None, record, Why::New).await {
            return Acted::Done;
        }
        return route(inner, ev).await;
    }
    match inner
        .store
        .create(Table::Leases, &ev.stream_id, record.to_bytes())
        .await
    {
        Ok(_) => {
            inner.view.assigned(&target);
            inner.stats.assigned.fetch_add(1, Ordering::Relaxed);
            tracing::info!(stream_id = %truncated(&ev.stream_id, 64), to = %target, "cluster: new stream placed");
            Acted::Done
        }
        Err(StoreError::Conflict { .. }) => route(inner, ev).await,
        Err(_) => Acted::Later(inner.cfg.renew),
    }
}

/// An event for a stream that may have a lease: handled here when this host owns it (or
/// nobody does), else sent to its owner.
async fn route(inner: &Arc<Inner>, ev: WebhookEvent) -> Acted {
    let later = Acted::Later(inner.cfg.renew);
    let record = match inner.store.get(Table::Leases, &ev.stream_id).await {
        Ok(r) => r.and_then(|(bytes, _)| LeaseRecord::parse(&bytes)),
        Err(_) => return later,
    };
    let Some(record) = record else {
        if ev.action == WebhookAction::Interrupted && ev.server_url.is_some() {
            // An interrupted event with a URL for a stream nobody runs takes the stream.
            return Box::pin(place(inner, ev)).await;
        }
        let _ = inner.sessions.handle(ev);
        return Acted::Done;
    };
    if record.owner == inner.host && inner.owned.lock().contains_key(&ev.stream_id) {
        let _ = inner.sessions.handle(ev);
        return Acted::Done;
    }
    if record.owner.is_empty() || record.owner == inner.host {
        // Being taken (here or by another host): the event waits until it is.
        return later;
    }
    inner.stats.forwarded.fetch_add(1, Ordering::Relaxed);
    let body = Bytes::from(ev.to_body());
    match inner
        .store
        .request(&record.owner, body, inner.request_timeout())
        .await
    {
        Ok(answer) if answer.as_ref() != NOT_HERE => Acted::Done,
        _ => later,
    }
}

/// Answers the events other hosts send to this one for the streams it owns, until `stop`.
pub async fn serve(inner: Arc<Inner>, stop: CancellationToken) {
    let mut wait = Duration::from_millis(100);
    loop {
        if let Ok(mut requests) = inner.store.serve(&inner.host).await {
            loop {
                let req = tokio::select! {
                    () = stop.cancelled() => return,
                    req = requests.next() => req,
                };
                let Some(req) = req else { break };
                let answer = on_forwarded(&inner, &req.body);
                (req.reply)(Bytes::from_static(answer)).await;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// Acts on one forwarded event: `handled` when the stream runs here, `not-here` otherwise.
fn on_forwarded(inner: &Inner, body: &[u8]) -> &'static [u8] {
    let Ok(Ok(Some(ev))) = Envelope::parse(body).map(|e| e.rtms_event()) else {
        return HANDLED;
    };
    if inner.sessions.snapshot(&ev.stream_id).is_none() {
        return NOT_HERE;
    }
    inner.stats.served.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = inner.sessions.handle(ev) {
        tracing::info!(reason = ?e, "cluster: a forwarded event refused");
    }
    HANDLED
}
