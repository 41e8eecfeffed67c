//! Keeping [`super::view::View`] current, and taking streams: those assigned to this host
//! (a placement or a hand-over) at once, those whose owner stopped renewing once their
//! lease lapsed.
//!
//! A lapsed lease is claimed first by the host the rendezvous hash of its stream picks among
//! the live hosts with room (so a dead host's streams spread evenly), and by any other host
//! half a lease later if that one did not; the compare-and-swap lets only one succeed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rtms_cluster::{Change, StoreError, Table};
use tokio_util::sync::CancellationToken;

use super::Inner;
use super::leases::{self, Why};
use super::view::{self, SeenLease};

/// The longest wait before watching again after a watch failed.
const MAX_REWATCH: Duration = Duration::from_secs(2);

/// Follows the engine link: a lease's lapse counts from when the link came back.
pub async fn watch_link(inner: Arc<Inner>, stop: CancellationToken) {
    let mut link = inner.store.link();
    loop {
        let up = *link.borrow_and_update();
        inner.view.set_link(up);
        tokio::select! {
            () = stop.cancelled() => return,
            changed = link.changed() => if changed.is_err() { return },
        }
    }
}

/// Follows every lease record; takes at once those assigned to this host.
pub async fn watch_leases(inner: Arc<Inner>, stop: CancellationToken) {
    let on_change = |inner: &Arc<Inner>, c: Change| {
        let key = c.key.clone();
        let new = !inner.view.knows(&key);
        if let Some(seen) = inner.view.lease_changed(c) {
            if new {
                announce(inner, &key, &seen);
            }
            pick_up(inner, key, seen);
        }
    };
    watch(&inner, Table::Leases, &stop, on_change).await;
}

/// Follows every host record.
pub async fn watch_hosts(inner: Arc<Inner>, stop: CancellationToken) {
    watch(&inner, Table::Hosts, &stop, |inner, c| {
        inner.view.host_changed(c)
    })
    .await;
}

/// Watches `table` until `stop`, watching again (after a short, growing wait) whenever the
/// watch ends or fails, and at once when the engine link comes back (what changed while it
/// was down is listed again).
async fn watch(
    inner: &Arc<Inner>,
    table: Table,
    stop: &CancellationToken,
    on_change: impl Fn(&Arc<Inner>, Change),
) {
    let mut wait = Duration::from_millis(100);
    let mut link = inner.store.link();
    loop {
        link.borrow_and_update();
        let failed: StoreError = match inner.store.watch(table).await {
            Ok(mut changes) => loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    Ok(()) = link.changed() => {
                        if *link.borrow_and_update() {
                            break StoreError::Unavailable("the engine link came back".into());
                        }
                        continue;
                    }
                    next = changes.next() => next,
                };
                match next {
                    Some(Ok(c)) => {
                        wait = Duration::from_millis(100);
                        on_change(inner, c);
                    }
                    Some(Err(e)) => break e,
                    None => break StoreError::Unavailable("the watch ended".into()),
                }
            },
            Err(e) => e,
        };
        if rtms_client::ratelog::admit("cluster-watch") {
            tracing::warn!(table = table.as_str(), error = %failed, "cluster: watch lost; watching again");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(MAX_REWATCH);
    }
}

/// A stream's first record (placed, or taken by its first owner) stands for its started
/// webhook, whichever host received it: a start through the REST API on this host waits
/// for that. A record of a stream resumed after a takeover or a hand-over is not one.
fn announce(inner: &Inner, stream: &str, seen: &SeenLease) {
    let r = &seen.record;
    if r.runs <= 1 {
        let _ = inner.starts.send(crate::flows::start::StartedSeen {
            product: r.entry.product,
            id: r.entry.meeting_id.clone(),
            stream_id: stream.to_owned(),
        });
    }
}

/// Takes a stream another host assigned to this one (a new stream placed here, or one
/// handed over by a draining host), if it is not running here already.
fn pick_up(inner: &Arc<Inner>, stream: String, seen: SeenLease) {
    let r = &seen.record;
    if r.owner != inner.host || r.token != 0 || inner.owned.lock().contains_key(&stream) {
        return;
    }
    let why = if r.runs == 0 {
        Why::New
    } else {
        Why::HandedOver
    };
    let inner = inner.clone();
    tokio::spawn(async move {
        leases::take(&inner, &stream, Some(seen.revision), seen.record, why).await;
    });
}

/// Every `renew_ms / 2`: takes the lapsed leases this host should take, until `stop`.
pub async fn scan(inner: Arc<Inner>, stop: CancellationToken) {
    let period = (inner.cfg.renew / 2).max(Duration::from_millis(20));
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        for (stream, seen) in due(&inner) {
            let inner = inner.clone();
            tokio::spawn(async move {
                let why = if seen.record.runs == 0 {
                    Why::New
                } else {
                    Why::Takeover
                };
                leases::take(&inner, &stream, Some(seen.revision), seen.record, why).await;
            });
        }
    }
}

/// The leases this host should take now: lapsed (or left without an owner, or assigned to
/// it and never picked up), and this host the rendezvous pick, or the pick's grace over.
fn due(inner: &Inner) -> Vec<(String, SeenLease)> {
    if inner.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Vec::new();
    }
    let now = Instant::now();
    let candidates = inner.candidates();
    let mut room = inner.room();
    let mut out = Vec::new();
    for (stream, seen) in inner.view.leases() {
        if room == 0 {
            break;
        }
        if inner.owned.lock().contains_key(&stream) || inner.taking.lock().contains(&stream) {
            continue;
        }
        let unowned = seen.record.owner.is_empty()
            || (seen.record.owner == inner.host && seen.record.token == 0);
        let window = if unowned {
            Duration::ZERO
        } else {
            inner.lapse_window()
        };
        let Some(lapses) = inner.view.lapses_at(seen.seen, window) else {
            return Vec::new();
        };
        let first = view::rendezvous(&stream, &candidates) == Some(inner.host.as_str());
        let due = if first {
            lapses
        } else {
            lapses + inner.cfg.lease / 2
        };
        if now >= due {
            if !unowned {
                tracing::info!(
                    stream_id = %stream,
                    owner = %seen.record.owner,
                    since_lapse_ms = now.saturating_duration_since(lapses).as_millis() as u64,
                    "cluster: lease lapsed; taking the stream over"
                );
            }
            room -= 1;
            out.push((stream, seen));
        }
    }
    out
}
