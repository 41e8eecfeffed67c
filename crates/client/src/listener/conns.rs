//! The table of open connections and the one policy that makes room in it: past the cap
//! (or a peer's limit) the oldest idle connection goes, and only when none is idle the
//! oldest one.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;

use super::{Close, ConnStats, Policy};

/// One connection as the table and its requests see it. Each request carries it in its
/// extensions, so [`super::read_body`] can mark why the connection is about to close.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Requests being answered (their response bodies included).
    busy: AtomicUsize,
    /// Cancelled to close the connection at once.
    pub(super) evict: CancellationToken,
    /// Set when the listener knows why the connection will close (0: it does not).
    reason: AtomicU8,
    /// Requests started on this connection, ever.
    started: AtomicUsize,
    /// Signalled when the first request starts.
    first: tokio::sync::Notify,
}

impl ConnState {
    /// Records why the connection is about to close (the first reason wins).
    pub fn closing(&self, reason: Close) {
        let code = reason.index() as u8 + 1;
        let _ = self
            .reason
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The reason recorded by [`ConnState::closing`], if any.
    pub(super) fn reason(&self) -> Option<Close> {
        match self.reason.load(Ordering::Relaxed) {
            0 => None,
            n => Close::ALL.get(usize::from(n) - 1).copied(),
        }
    }

    pub(super) fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0
    }

    /// Whether a request has started on this connection.
    pub(super) fn has_served(&self) -> bool {
        self.started.load(Ordering::Acquire) > 0
    }

    /// Resolves once the first request has started (at once if one has).
    pub(super) async fn first_request(&self) {
        let notified = std::pin::pin!(self.first.notified());
        let mut notified = notified;
        // Registered before the check, so a request starting in between still wakes us.
        notified.as_mut().enable();
        if !self.has_served() {
            notified.await;
        }
    }
}

/// Marks a connection busy while it lives: from a request's arrival to the end of its
/// response body.
#[derive(Debug)]
pub(super) struct Busy(Arc<ConnState>);

impl Busy {
    pub(super) fn new(state: Arc<ConnState>) -> Self {
        state.busy.fetch_add(1, Ordering::Relaxed);
        if state.started.fetch_add(1, Ordering::AcqRel) == 0 {
            state.first.notify_waiters();
        }
        Self(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Entry {
    peer: IpAddr,
    state: Arc<ConnState>,
}

/// The open connections, oldest first, and the count per peer address.
#[derive(Default)]
pub(super) struct Table {
    next: u64,
    open: BTreeMap<u64, Entry>,
    per_peer: HashMap<IpAddr, usize>,
}

impl Table {
    /// Registers a new connection from `peer`, first closing what the policy says must go;
    /// counts and logs each one it closes. Returns the new connection's id and state.
    pub(super) fn admit(
        &mut self,
        peer: IpAddr,
        policy: &Policy,
        stats: &ConnStats,
        listener: &'static str,
    ) -> (u64, Arc<ConnState>) {
        while self.per_peer.get(&peer).copied().unwrap_or(0) >= policy.max_per_peer.max(1) {
            let Some(id) = self.victim(Some(peer)) else {
                break;
            };
            self.evict(id, Close::PerPeer, stats, listener);
        }
        while self.open.len() >= policy.max_connections.max(1) {
            let Some(id) = self.victim(None) else {
                break;
            };
            self.evict(id, Close::Evicted, stats, listener);
        }
        let id = self.next;
        self.next += 1;
        let state = Arc::new(ConnState::default());
        self.open.insert(
            id,
            Entry {
                peer,
                state: state.clone(),
            },
        );
        *self.per_peer.entry(peer).or_default() += 1;
        (id, state)
    }

    /// The oldest idle connection (of `peer`, when given), else the oldest.
    fn victim(&self, peer: Option<IpAddr>) -> Option<u64> {
        let candidates = self
            .open
            .iter()
            .filter(|(_, e)| peer.is_none_or(|p| e.peer == p));
        let mut oldest = None;
        for (id, e) in candidates {
            oldest.get_or_insert(*id);
            if e.state.is_idle() {
                return Some(*id);
            }
        }
        oldest
    }

    fn evict(&mut self, id: u64, reason: Close, stats: &ConnStats, listener: &'static str) {
        if let Some(state) = self.remove(id) {
            state.evict.cancel();
            stats.count_close(listener, reason);
        }
    }

    /// Forgets a connection (it ended, or was evicted); `None` when already gone.
    fn remove(&mut self, id: u64) -> Option<Arc<ConnState>> {
        let e = self.open.remove(&id)?;
        if let Some(n) = self.per_peer.get_mut(&e.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&e.peer);
            }
        }
        Some(e.state)
    }

    /// Forgets a connection that ended by itself; false when it had been evicted (and
    /// counted) already.
    pub(super) fn ended(&mut self, id: u64) -> bool {
        self.remove(id).is_some()
    }

    pub(super) fn len(&self) -> usize {
        self.open.len()
    }
}
