//! Where a (plugin, session)'s WebSocket tasks leave what they received, for its worker to
//! deliver between batches (see [`super::ws`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::bindings::v02::rtms::plugin::websocket::{Finished, WsEvent, WsMessage};

/// Most buffered items one drain delivers, so a flooding peer cannot keep the worker from
/// its frames.
pub const DRAIN_MAX: usize = 256;

/// What the plugin receives.
pub enum Item {
    Message(WsMessage),
    Event(WsEvent),
}

/// The received side of one connection.
pub(super) struct Buf {
    pub(super) items: VecDeque<(Item, usize)>,
    pub(super) bytes: usize,
    /// The guest dropped the connection (or its instance went): what is left is discarded.
    pub(super) detached: bool,
    /// The task ended: nothing more will arrive.
    pub(super) done: bool,
}

/// One connection as its reading task and the guest both see it.
pub(super) struct ConnState {
    pub(super) id: u64,
    pub(super) buf: Mutex<Buf>,
    pub(super) dropped: AtomicU64,
    /// Woken at every change of `buf`, for `connection.finish`.
    pub(super) changed: Notify,
}

impl ConnState {
    /// Takes everything buffered, for `connection.finish`, and detaches the connection from
    /// its hub: messages go to the caller instead of `on-ws-message`.
    pub(super) fn take_all(&self) -> Finished {
        let mut b = self.buf.lock();
        let mut messages = Vec::new();
        let mut end = None;
        for (item, _) in b.items.drain(..) {
            match item {
                Item::Message(m) => messages.push(m),
                Item::Event(WsEvent::Opened(_)) => {}
                Item::Event(e) => end = Some(e),
            }
        }
        b.bytes = 0;
        b.detached = true;
        Finished { messages, end }
    }
}

/// The WebSockets of one (plugin, session): where their tasks leave what they read, and the
/// worker's wake-up. Kept across the instances of the session; a connection belongs to the
/// instance that opened it.
#[derive(Default)]
pub struct Hub {
    pub(super) conns: Mutex<Vec<Arc<ConnState>>>,
    pub(super) next_id: AtomicU64,
    pub(super) notify: Notify,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// Waits until something was received (or a connection changed) since the last drain.
    pub async fn wait(&self) {
        self.notify.notified().await
    }

    /// Takes up to [`DRAIN_MAX`] received items, oldest first per connection; forgets
    /// connections that are done and drained, or that the guest dropped.
    pub fn take(&self) -> Vec<(u64, Item)> {
        let mut out = Vec::new();
        let mut conns = self.conns.lock();
        for c in conns.iter() {
            let mut b = c.buf.lock();
            if b.detached {
                b.items.clear();
                continue;
            }
            while out.len() < DRAIN_MAX {
                let Some((item, n)) = b.items.pop_front() else {
                    break;
                };
                b.bytes -= n;
                out.push((c.id, item));
            }
        }
        conns.retain(|c| {
            let b = c.buf.lock();
            !(b.detached || (b.done && b.items.is_empty()))
        });
        if conns.iter().any(|c| !c.buf.lock().items.is_empty()) {
            self.notify.notify_one();
        }
        out
    }

    pub(super) fn add(&self) -> Arc<ConnState> {
        let shared = Arc::new(ConnState {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            buf: Mutex::new(Buf {
                items: VecDeque::new(),
                bytes: 0,
                detached: false,
                done: false,
            }),
            dropped: AtomicU64::new(0),
            changed: Notify::new(),
        });
        self.conns.lock().push(shared.clone());
        shared
    }
}
