//! The streams this host owns.
//!
//! - **Taking** a stream ([`take`]) is one compare-and-swap on its lease record: created
//!   when absent, else updated at the revision this host saw. Only then does the stream
//!   start here, with a fresh [`Fence`] that holds [`Inner::fence_span`] past the moment the
//!   write was sent, its plugins' session state restored and `resumed = true` when another
//!   owner ran it before.
//! - **Renewing** ([`renew`]), every `renew_ms`: each owned stream's record is rewritten
//!   with its current journal entry at the revision this host last wrote. Confirmed, the
//!   fence moves forward; refused, the stream was taken over (unless the record still
//!   carries this host's token: a write whose answer was lost) and it ends here at once
//!   ([`rtms_client::EndReason::Fenced`]); not answered, the fence runs out by itself and
//!   the stream ends here then. A stream that ended here (Zoom stopped it) has its lease
//!   deleted, at its revision.
//! - **Handing over** ([`hand_off_all`], a drain): the stream ends here (plugins drained,
//!   `on-session-end(reload)`, their state kept), then its record, with the final entry,
//!   is assigned to the host with the most room, which picks it up from its watch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rtms_client::link::StreamIds;
use rtms_client::session::SessionStart;
use rtms_cluster::{Revision, StoreError, Table};
use tokio_util::sync::CancellationToken;

use super::record::{HostRecord, LeaseRecord};
use super::{Inner, view};
use crate::dataplane::fence::Fence;
use crate::sandbox::state::ScopeKey;
use crate::service::journal::{self, JournalEntry, now_ms};

/// Renewals in flight at once.
const RENEW_CONCURRENCY: usize = 64;

/// A stream this host owns.
#[derive(Clone, Debug)]
pub struct Owned {
    /// The revision of this host's last confirmed write.
    pub revision: Revision,
    /// This host's token in the record.
    pub token: u64,
    pub runs: u32,
    pub fence: Fence,
    /// Being handed over: renewed while its plugins drain, neither deleted nor given up
    /// when it ends here (the hand-over writes the record).
    pub handing_off: bool,
}

/// Why a stream is taken, for logs and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// A new stream placed here, or assigned here by another host.
    New,
    /// Its owner's lease lapsed.
    Takeover,
    /// A draining host handed it here.
    HandedOver,
}

/// Takes `stream` (a compare-and-swap: created when `expected` is `None`) and starts it
/// here. False when another host got there first or the stream could not start.
pub async fn take(
    inner: &Arc<Inner>,
    stream: &str,
    expected: Option<Revision>,
    base: LeaseRecord,
    why: Why,
) -> bool {
    if !inner.taking.lock().insert(stream.to_owned()) {
        return false;
    }
    let token = rand::random::<u64>() | 1;
    let record = LeaseRecord {
        owner: inner.host.clone(),
        token,
        runs: base.runs + 1,
        written_ms: now_ms(),
        entry: base.entry,
    };
    let sent = Instant::now();
    let bytes = record.to_bytes();
    let written = match expected {
        None => inner.store.create(Table::Leases, stream, bytes).await,
        Some(r) => inner.store.update(Table::Leases, stream, bytes, r).await,
    };
    let ok = match written {
        Ok(revision) => {
            let owned = Owned {
                revision,
                token,
                runs: record.runs,
                fence: Fence::until(sent + inner.fence_span()),
                handing_off: false,
            };
            start(inner, stream, owned, &record.entry, base.runs > 0, why)
        }
        Err(e) => {
            inner.stats.take_conflicts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(stream_id = stream, error = %e, ?why, "cluster: stream not taken");
            false
        }
    };
    inner.taking.lock().remove(stream);
    ok
}

/// Starts a stream whose lease this host just took.
fn start(
    inner: &Arc<Inner>,
    stream: &str,
    owned: Owned,
    e: &JournalEntry,
    resumed: bool,
    why: Why,
) -> bool {
    let fence = owned.fence.clone();
    inner.fences.lock().insert(stream.to_owned(), fence.clone());
    inner.owned.lock().insert(stream.to_owned(), owned);
    if resumed {
        journal::restore_state(&inner.shared, e, now_ms());
        inner.resumed.lock().insert(stream.to_owned());
    }
    let started = inner.sessions.start(SessionStart {
        ids: StreamIds {
            product: e.product,
            id: e.meeting_id.clone(),
            stream_id: e.stream_id.clone(),
        },
        operator_id: e.operator_id.clone(),
        details: e.details.clone(),
        server_url: e.server_url.clone(),
        first_seq: if resumed {
            e.next_seq.saturating_add(journal::SEQ_GAP)
        } else {
            0
        },
    });
    if !started {
        tracing::warn!(
            stream_id = stream,
            "cluster: a stream whose lease this host took could not start here (full, shutting down, or a server URL not allowed): released for another host"
        );
        inner.resumed.lock().remove(stream);
        let inner = inner.clone();
        let stream = stream.to_owned();
        tokio::spawn(async move { release(&inner, &stream).await });
        return false;
    }
    let counter = match why {
        Why::New => &inner.stats.taken_new,
        Why::Takeover => &inner.stats.taken_over,
        Why::HandedOver => &inner.stats.taken_handed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        stream_id = stream,
        ?why,
        resumed,
        next_seq = e.next_seq,
        "cluster: stream taken"
    );
    true
}

/// Gives a lease this host holds back to the cluster (owner left empty: any host takes it
/// at once), and forgets the stream.
async fn release(inner: &Inner, stream: &str) {
    let Some(owned) = forget(inner, stream) else {
        return;
    };
    let Ok(Some((bytes, revision))) = inner.store.get(Table::Leases, stream).await else {
        return;
    };
    let Some(mut record) = LeaseRecord::parse(&bytes).filter(|r| r.token == owned.token) else {
        return;
    };
    record.owner.clear();
    record.token = 0;
    if let Err(e) = inner
        .store
        .update(Table::Leases, stream, record.to_bytes(), revision)
        .await
    {
        tracing::warn!(stream_id = stream, error = %e, "cluster: lease not released; it lapses instead");
    }
}

/// Removes `stream` from what this host owns, and its fence.
fn forget(inner: &Inner, stream: &str) -> Option<Owned> {
    inner.fences.lock().remove(stream);
    inner.owned.lock().remove(stream)
}

/// This host lost `stream`'s lease: it ends here at once, and nothing more is written for it.
fn lost(inner: &Inner, stream: &str, why: &str) {
    let Some(owned) = forget(inner, stream) else {
        return;
    };
    owned.fence.revoke();
    inner.sessions.fence_off(stream);
    let n = inner.stats.lost.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::warn!(
        stream_id = stream,
        reason = why,
        lost_so_far = n,
        "cluster: lease lost; the stream ends here without a word to Zoom or its plugins (the host that holds the lease now resumes it)"
    );
}

/// Renews every owned lease and writes this host's record, every `renew_ms`, until `stop`.
pub async fn renew(inner: Arc<Inner>, stop: CancellationToken) {
    let mut every = tokio::time::interval(inner.cfg.renew);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        renew_once(&inner).await;
        write_host(&inner).await;
    }
}

/// One round: renewals, deletions of streams that ended, and fences that ran out.
async fn renew_once(inner: &Arc<Inner>) {
    let running: std::collections::HashMap<String, rtms_client::SessionSnapshot> = inner
        .sessions
        .snapshots()
        .into_iter()
        .map(|s| (s.stream_id.clone(), s))
        .collect();
    let owned: Vec<(String, Owned)> = inner
        .owned
        .lock()
        .iter()
        .filter(|(k, o)| !o.handing_off || running.contains_key(*k))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    let now = now_ms();
    futures_util::stream::iter(owned)
        .for_each_concurrent(RENEW_CONCURRENCY, |(stream, o)| {
            let snapshot = running.get(&stream).cloned();
            async move {
                match snapshot {
                    Some(s) => {
                        let entry = journal::entry_of(&inner.shared, s, now);
                        renew_one(inner, &stream, o, entry).await;
                    }
                    // Stopped here because its fence lapsed: the lease lapses too.
                    None if !o.fence.holds() => lost(inner, &stream, "not renewed in time"),
                    None => ended_here(inner, &stream, &o).await,
                }
            }
        })
        .await;
    let lapsed: Vec<String> = inner
        .owned
        .lock()
        .iter()
        .filter(|(_, o)| !o.handing_off && !o.fence.holds())
        .map(|(k, _)| k.clone())
        .collect();
    for stream in lapsed {
        lost(
            inner,
            &stream,
            "not renewed in time (the engine did not confirm)",
        );
    }
    // The fences of streams that left: a lost stream's stays until its session ended, so
    // it cannot connect again meanwhile.
    let owned: std::collections::HashSet<String> = inner.owned.lock().keys().cloned().collect();
    let running = inner.sessions.snapshots();
    inner
        .fences
        .lock()
        .retain(|k, _| owned.contains(k) || running.iter().any(|s| &s.stream_id == k));
}

/// Rewrites one lease with the stream's current entry, at the revision last written.
async fn renew_one(inner: &Inner, stream: &str, o: Owned, entry: JournalEntry) {
    let record = LeaseRecord {
        owner: inner.host.clone(),
        token: o.token,
        runs: o.runs,
        written_ms: now_ms(),
        entry,
    };
    let sent = Instant::now();
    let write = inner
        .store
        .update(Table::Leases, stream, record.to_bytes(), o.revision);
    let result = tokio::time::timeout(inner.cfg.renew, write)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("no answer in time".into())));
    match result {
        Ok(revision) => {
            inner.stats.renewals.fetch_add(1, Ordering::Relaxed);
            if let Some(cur) = inner.owned.lock().get_mut(stream)
                && cur.token == o.token
            {
                cur.revision = revision;
                cur.fence.extend(sent + inner.fence_span());
            }
        }
        Err(StoreError::Conflict { .. }) => match mine_still(inner, stream, o.token).await {
            Some(revision) => {
                if let Some(cur) = inner.owned.lock().get_mut(stream) {
                    cur.revision = revision;
                }
            }
            // The hand-over wrote the record first.
            None if o.handing_off => {}
            None => lost(inner, stream, "another host took the lease"),
        },
        Err(e) => {
            inner.stats.renewal_failures.fetch_add(1, Ordering::Relaxed);
            if rtms_client::ratelog::admit("cluster-renew-failed") {
                tracing::warn!(stream_id = stream, error = %e, "cluster: lease not renewed (the stream stops here if this lasts past its fence)");
            }
        }
    }
}

/// The revision of `stream`'s record when it still carries this host's `token` (a write the
/// engine applied though its answer was lost).
async fn mine_still(inner: &Inner, stream: &str, token: u64) -> Option<Revision> {
    let (bytes, revision) = inner.store.get(Table::Leases, stream).await.ok()??;
    let record = LeaseRecord::parse(&bytes)?;
    (record.owner == inner.host && record.token == token).then_some(revision)
}

/// A stream that no longer runs here: Zoom stopped it, or it gave up. Its lease goes.
async fn ended_here(inner: &Inner, stream: &str, o: &Owned) {
    if inner.taking.lock().contains(stream) {
        return;
    }
    forget(inner, stream);
    match inner
        .store
        .delete(Table::Leases, stream, Some(o.revision))
        .await
    {
        Ok(()) => tracing::debug!(stream_id = stream, "cluster: stream ended; lease deleted"),
        Err(e) => {
            tracing::warn!(stream_id = stream, error = %e, "cluster: the lease of a stream that ended here was not deleted")
        }
    }
}

/// Writes this host's record: its load and whether it drains.
pub async fn write_host(inner: &Inner) {
    let record = HostRecord {
        streams: inner.sessions.len(),
        max_streams: inner.sessions.max_streams(),
        draining: inner.draining.load(Ordering::Relaxed),
        written_ms: now_ms(),
    };
    if let Err(e) = inner
        .store
        .put(Table::Hosts, &inner.host, record.to_bytes())
        .await
        && rtms_client::ratelog::admit("cluster-host-record")
    {
        tracing::warn!(error = %e, "cluster: this host's record not written");
    }
}

/// Hands every owned stream to another host, all at once. Returns `(handed, left)`.
pub async fn hand_off_all(inner: &Arc<Inner>) -> (usize, usize) {
    let streams: Vec<String> = inner.owned.lock().keys().cloned().collect();
    let results = futures_util::future::join_all(streams.iter().map(|s| hand_off(inner, s))).await;
    let handed = results.iter().filter(|ok| **ok).count();
    let left = streams.len() - handed;
    tracing::info!(handed, left, "cluster: drain done");
    (handed, left)
}

/// Hands one stream over: ends it here, then assigns its lease, with the final entry, to
/// the host with the most room.
async fn hand_off(inner: &Arc<Inner>, stream: &str) -> bool {
    let Some(target) = successor(inner) else {
        tracing::warn!(
            stream_id = stream,
            "cluster: no other live host with room: the stream stays until shutdown, then lapses"
        );
        inner
            .stats
            .hand_off_failures
            .fetch_add(1, Ordering::Relaxed);
        return false;
    };
    let o = {
        let mut owned = inner.owned.lock();
        let Some(o) = owned.get_mut(stream) else {
            return false;
        };
        o.handing_off = true;
        o.clone()
    };
    let last = inner.sessions.snapshot(stream);
    inner.sessions.hand_off(stream);
    inner.sessions.gone(stream).await;
    let ok = match last {
        Some(s) => {
            // Read now, after the plugins drained: their state is final. Frames numbered
            // after the snapshot are covered by the successor's gap in `seq`.
            let entry = journal::entry_of(&inner.shared, s, now_ms());
            assign(inner, stream, &o, entry, &target).await
        }
        None => false,
    };
    clear_session_state(inner, stream);
    forget(inner, stream);
    let counter = if ok {
        &inner.stats.handed_off
    } else {
        &inner.stats.hand_off_failures
    };
    counter.fetch_add(1, Ordering::Relaxed);
    ok
}

/// The live host with the most room, this one excluded.
fn successor(inner: &Inner) -> Option<String> {
    let others: Vec<(String, usize)> = inner
        .view
        .live_hosts(inner.lapse_window())
        .into_iter()
        .filter(|(h, _)| *h != inner.host)
        .collect();
    let pick = view::least_loaded(&inner.host, &others, false)?.to_owned();
    inner.view.assigned(&pick);
    Some(pick)
}

/// Writes `stream`'s record for `target` to pick up, at this host's revision.
async fn assign(inner: &Inner, stream: &str, o: &Owned, entry: JournalEntry, target: &str) -> bool {
    let record = LeaseRecord {
        owner: target.to_owned(),
        token: 0,
        runs: o.runs,
        written_ms: now_ms(),
        entry,
    };
    let bytes = record.to_bytes();
    let mut revision = o.revision;
    let mut result = update_within(inner, stream, bytes.clone(), revision).await;
    if matches!(result, Err(StoreError::Conflict { .. }))
        && let Some(r) = mine_still(inner, stream, o.token).await
    {
        // A renewal made while the plugins drained moved the revision on.
        revision = r;
        result = update_within(inner, stream, bytes, revision).await;
    }
    match result {
        Ok(_) => {
            tracing::info!(
                stream_id = stream,
                to = target,
                "cluster: stream handed over"
            );
            true
        }
        Err(e) => {
            tracing::warn!(stream_id = stream, to = target, error = %e, "cluster: stream not handed over; its lease lapses and another host takes it over");
            false
        }
    }
}

/// A compare-and-swap of `stream`'s record, given up after 5 s.
async fn update_within(
    inner: &Inner,
    stream: &str,
    bytes: bytes::Bytes,
    revision: Revision,
) -> Result<Revision, StoreError> {
    let write = inner.store.update(Table::Leases, stream, bytes, revision);
    tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("no answer within 5 s".into())))
}

/// Clears the plugins' session state of a stream that left this host.
fn clear_session_state(inner: &Inner, stream: &str) {
    let store = inner.shared.rt.state();
    for p in inner.shared.table.load().plugins.iter() {
        store.clear(&ScopeKey::session(&p.name, stream));
    }
}
