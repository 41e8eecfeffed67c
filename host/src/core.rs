//! The host's core: the published routing table, the live sessions, and how a frame gets
//! from a session to the workers of the plugins that want it.
//!
//! A [`HostSession`] is what the RTMS client (or `replay`) pushes frames into. Pushing is
//! done on the caller's task — the socket reader — with no extra hop: the frame is matched
//! against the session's workers and put on their queues. Each session remembers the table
//! it last reconciled with; when a reload publishes a new one, the session reconciles
//! (spawn workers for added plugins, swap changed ones in band, end removed ones) under the
//! same lock the frame path takes, so a swap marker sits exactly between two frames.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rtms_proto::Product;
use tokio::sync::mpsc;

use crate::bindings::{self, EndReason, Frame, SessionInfo};
use crate::deadletter::DeadLetters;
use crate::metrics::Metrics;
use crate::output::Outputs;
use crate::router::RouteTable;
use crate::runtime::Runtime;
use crate::worker::{Control, RollbackRequest, Worker, WorkerHandle};

/// What every session and worker shares.
pub struct Shared {
    pub rt: Runtime,
    pub table: ArcSwap<RouteTable>,
    pub outputs: Outputs,
    pub dead_letters: DeadLetters,
    pub metrics: Arc<Metrics>,
    pub rollback_tx: Option<mpsc::UnboundedSender<RollbackRequest>>,
    sessions: Mutex<HashMap<u64, std::sync::Weak<HostSession>>>,
    next_session: AtomicU64,
}

impl Shared {
    pub fn new(
        rt: Runtime,
        table: RouteTable,
        outputs: Outputs,
        dead_letters: DeadLetters,
        metrics: Arc<Metrics>,
        rollback_tx: Option<mpsc::UnboundedSender<RollbackRequest>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            rt,
            table: ArcSwap::from_pointee(table),
            outputs,
            dead_letters,
            metrics,
            rollback_tx,
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
        })
    }

    /// Opens a session: spawns a worker for every plugin whose filters match.
    pub fn open_session(self: &Arc<Self>, desc: SessionDesc) -> Arc<HostSession> {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let info = SessionInfo {
            session: id,
            product: wit_product(desc.product),
            meeting_id: desc.meeting_id.clone(),
            stream_id: desc.stream_id.clone(),
            operator_id: desc.operator_id.clone(),
            started_at_ms: desc.started_at_ms,
            resumed: desc.resumed,
            audio: desc.audio,
        };
        let session = Arc::new(HostSession {
            shared: self.clone(),
            product: desc.product,
            stream_id: desc.stream_id.as_str().into(),
            info,
            state: tokio::sync::Mutex::new(SessionState {
                table: Arc::new(RouteTable::default()),
                workers: Vec::new(),
                retired: Vec::new(),
                ended: false,
            }),
        });
        {
            let mut st = session
                .state
                .try_lock()
                .expect("a session nobody else has seen yet is unlocked");
            session.reconcile_locked(&mut st, self.table.load_full());
        }
        self.metrics
            .sessions_started
            .fetch_add(1, Ordering::Relaxed);
        self.sessions.lock().insert(id, Arc::downgrade(&session));
        session
    }

    /// The live sessions.
    pub fn sessions(&self) -> Vec<Arc<HostSession>> {
        let mut map = self.sessions.lock();
        map.retain(|_, w| w.strong_count() > 0);
        map.values().filter_map(|w| w.upgrade()).collect()
    }

    /// Publishes a new table and has every live session reconcile with it now (idle
    /// sessions included), so an added plugin starts and a swap happens without waiting
    /// for the next frame.
    /// Sessions reconcile concurrently: one whose plugin queue is full (a `block` plugin
    /// catching up) does not hold up the others.
    pub async fn publish(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
        let sessions = self.sessions();
        futures_util::future::join_all(sessions.iter().map(|s| s.reconcile())).await;
    }
}

fn wit_product(p: Product) -> bindings::Product {
    match p {
        Product::Meeting => bindings::Product::Meeting,
        Product::Webinar => bindings::Product::Webinar,
        Product::VideoSdk => bindings::Product::VideoSdk,
        Product::ContactCenter => bindings::Product::ContactCenter,
    }
}

/// What the host knows of a stream when its session opens.
#[derive(Clone, Debug)]
pub struct SessionDesc {
    pub product: Product,
    pub meeting_id: String,
    pub stream_id: String,
    pub operator_id: Option<String>,
    pub started_at_ms: u64,
    pub resumed: bool,
    pub audio: Option<bindings::AudioFormat>,
}

/// One live session (one RTMS stream) and its plugin workers.
pub struct HostSession {
    shared: Arc<Shared>,
    product: Product,
    pub stream_id: Arc<str>,
    pub info: SessionInfo,
    state: tokio::sync::Mutex<SessionState>,
}

struct SessionState {
    /// The table the workers were last reconciled with.
    table: Arc<RouteTable>,
    workers: Vec<WorkerHandle>,
    /// Workers of removed plugins, still draining.
    retired: Vec<tokio::task::JoinHandle<()>>,
    ended: bool,
}

impl HostSession {
    /// Routes one frame to every worker that wants it, waiting where a `block` queue is
    /// full. Frames pushed after `end` are ignored.
    pub async fn push(&self, frame: Frame) {
        self.shared
            .metrics
            .frames_in
            .fetch_add(1, Ordering::Relaxed);
        let mut st = self.state.lock().await;
        if st.ended {
            return;
        }
        let current = self.shared.table.load();
        if !Arc::ptr_eq(&st.table, &current) {
            self.reconcile_locked(&mut st, current.clone());
        }
        // Every subscriber but the last gets a copy; the last gets the frame itself.
        let kind = frame.kind.into();
        let mut left = st
            .workers
            .iter()
            .filter(|w| w.entry.kinds.contains(kind))
            .count();
        let mut frame = Some(frame);
        for w in st.workers.iter().filter(|w| w.entry.kinds.contains(kind)) {
            left -= 1;
            let f = if left == 0 {
                frame.take()
            } else {
                frame.clone()
            };
            if let Some(f) = f {
                push_one(w, f).await;
            }
        }
    }

    /// Reconciles with the published table if it changed.
    pub async fn reconcile(&self) {
        let mut st = self.state.lock().await;
        if st.ended {
            return;
        }
        let current = self.shared.table.load_full();
        if !Arc::ptr_eq(&st.table, &current) {
            self.reconcile_locked(&mut st, current);
        }
    }

    fn reconcile_locked(&self, st: &mut SessionState, table: Arc<RouteTable>) {
        let mut kept = Vec::with_capacity(table.plugins.len());
        let mut old: Vec<WorkerHandle> = std::mem::take(&mut st.workers);
        for entry in &table.plugins {
            if !entry.filter.matches(
                self.product,
                &self.info.meeting_id,
                self.info.operator_id.as_deref(),
            ) {
                continue;
            }
            if let Some(pos) = old.iter().position(|w| w.entry.name == entry.name) {
                let mut w = old.swap_remove(pos);
                if !Arc::ptr_eq(&w.entry, entry) {
                    // In band: a new version (or config) rebuilds the instance; changed
                    // settings alone (batch size, restart policy) only update the worker.
                    w.queue.push_control(Control::Swap(entry.clone()));
                }
                w.entry = entry.clone();
                kept.push(w);
            } else {
                kept.push(Worker::spawn(
                    self.shared.clone(),
                    entry.clone(),
                    self.info.clone(),
                    self.stream_id.clone(),
                ));
            }
        }
        for w in old {
            w.queue.push_control(Control::End(EndReason::Removed));
            // The worker drains what is queued, ends, and exits on its own.
            st.retired.push(w.task);
        }
        st.workers = kept;
        st.table = table;
    }

    /// Ends the session for every plugin: each worker drains its queue, calls
    /// `on-session-end(reason)`, and stops. Returns when all have.
    pub async fn end(&self, reason: EndReason) {
        let workers = {
            let mut st = self.state.lock().await;
            if st.ended {
                return;
            }
            st.ended = true;
            (
                std::mem::take(&mut st.workers),
                std::mem::take(&mut st.retired),
            )
        };
        let (workers, retired) = workers;
        for w in &workers {
            w.queue.push_control(Control::End(reason));
        }
        for w in workers {
            if let Err(e) = w.task.await {
                tracing::error!(stream = %self.stream_id, plugin = %w.entry.name, error = %e, "plugin worker failed");
            }
        }
        for t in retired {
            let _ = t.await;
        }
        self.shared
            .metrics
            .sessions_ended
            .fetch_add(1, Ordering::Relaxed);
        self.shared.sessions.lock().remove(&self.info.session);
    }
}

async fn push_one(w: &WorkerHandle, frame: Frame) {
    w.entry.stats.routed.fetch_add(1, Ordering::Relaxed);
    let dropped = w.queue.push_frame(frame).await;
    if dropped > 0 {
        w.entry.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
    }
}
