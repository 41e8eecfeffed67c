//! The host's core: the published routing table, the live sessions, and how a frame gets
//! from a session to the workers of the plugins that want it.
//!
//! A [`LiveStream`] is what the RTMS client (or `replay`) pushes frames into. Pushing is
//! done on the caller's task — the socket reader — with no extra hop: the frame is matched
//! against the session's workers and, for each, either handed straight to the plugin on this
//! task (its worker is idle and nothing is queued: see `crate::dataplane::worker`), or put on its queue
//! for its worker. At real-time pace the first is the common case, so a frame costs no
//! wake-up of another task or thread; under load frames queue and are taken in batches.
//!
//! Each session remembers the table it last reconciled with; when a reload publishes a new
//! one, the session reconciles (spawn workers for added plugins, swap changed ones in band,
//! end removed ones) under the same lock the frame path takes, so a swap marker sits exactly
//! between two frames.
//!
//! The session lock is a plain mutex and is never held across an await. A frame goes to
//! every queue with room at once; only queues that are full under `block` make the push
//! wait, all at the same time and each at most its plugin's block timeout, after which the
//! frame is shed for that plugin alone (see `crate::dataplane::queue`). So one stuck or restarting
//! plugin delays the socket reader by at most one block timeout per run of losses, never
//! stalls the session's other plugins, and never holds up a reload or the session's end.
//! When a session ends, what each plugin lost on it is summarised (log and metrics).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rtms_proto::Product;
use tokio::sync::mpsc;

use crate::dataplane::embed::PluginLink;
use crate::dataplane::fence::Fence;
use crate::dataplane::queue::{Pushed, Queue};
use crate::dataplane::routes::{PluginEntry, RouteTable};
use crate::dataplane::services::{RollbackRequest, Services};
use crate::dataplane::stats::{Metrics, by_kind_text};
use crate::dataplane::worker::{Control, Inline, Worker, WorkerHandle, record_push};
use crate::outputs::Outputs;
use crate::outputs::deadletter::DeadLetters;
use crate::sandbox::Runtime;
use crate::sandbox::bindings::{self, EndReason, Frame, SessionInfo};
use crate::sandbox::store::InstanceCtx;

/// What every session shares: the host's services (which workers see too), the published
/// routing table and the live sessions. Derefs to [`Services`].
pub struct Registry {
    pub services: Arc<Services>,
    pub table: ArcSwap<RouteTable>,
    sessions: Mutex<HashMap<u64, std::sync::Weak<LiveStream>>>,
    next_session: AtomicU64,
}

impl std::ops::Deref for Registry {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

impl Registry {
    pub fn new(
        rt: Runtime,
        table: RouteTable,
        outputs: Outputs,
        dead_letters: DeadLetters,
        metrics: Arc<Metrics>,
        rollback_tx: Option<mpsc::UnboundedSender<RollbackRequest>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            services: Arc::new(Services {
                rt,
                outputs,
                dead_letters,
                metrics,
                rollback_tx,
                handing_off: Default::default(),
                cores: Default::default(),
                video: Default::default(),
            }),
            table: ArcSwap::from_pointee(table),
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
        })
    }

    /// Opens a session: spawns a worker for every plugin whose filters match.
    pub fn open_session(self: &Arc<Self>, desc: SessionDesc) -> Arc<LiveStream> {
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
        let session = Arc::new(LiveStream {
            shared: self.clone(),
            fence: desc.fence,
            product: desc.product,
            stream_id: desc.stream_id.as_str().into(),
            info,
            details: desc.details,
            state: Mutex::new(SessionState {
                table: Arc::new(RouteTable::default()),
                workers: Vec::new(),
                retired: Vec::new(),
                ended: false,
                drain_until: None,
            }),
        });
        {
            let mut st = session.state.lock();
            session.reconcile_locked(&mut st, self.table.load_full());
        }
        self.metrics
            .sessions_started
            .fetch_add(1, Ordering::Relaxed);
        self.sessions.lock().insert(id, Arc::downgrade(&session));
        session
    }

    /// The live sessions.
    pub fn sessions(&self) -> Vec<Arc<LiveStream>> {
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
    /// The started webhook's details, for plugins of contract 0.3.
    pub details: Arc<bindings::SessionDetails>,
    /// The stream's right to run here (a cluster's lease); unfenced on a single host.
    pub fence: Fence,
}

/// One live session (one RTMS stream) and its plugin workers.
pub struct LiveStream {
    shared: Arc<Registry>,
    /// Frames are taken and plugins called only while it holds.
    fence: Fence,
    product: Product,
    pub stream_id: Arc<str>,
    pub info: SessionInfo,
    /// The started webhook's details, for plugins of contract 0.3.
    pub details: Arc<bindings::SessionDetails>,
    /// Never held across an await.
    state: Mutex<SessionState>,
}

struct SessionState {
    /// The table the workers were last reconciled with.
    table: Arc<RouteTable>,
    workers: Vec<WorkerHandle>,
    /// Workers of removed plugins, still draining.
    retired: Vec<WorkerHandle>,
    ended: bool,
    /// Set once the stream is draining after a stop: no push waits past it.
    drain_until: Option<tokio::time::Instant>,
}

/// A worker whose queue was full under `block` when a frame came: the push waits for it
/// (`frame`), or records what its shedding queue refused (`shed`), outside the session lock.
struct Blocked {
    queue: Arc<Queue<Control>>,
    entry: Arc<PluginEntry>,
    ctx: Arc<InstanceCtx>,
    link: Arc<PluginLink>,
    frame: Option<Frame>,
    shed: Option<Pushed>,
}

/// The longest a session's end waits for its dead letters to be written.
const LETTERS_FLUSH_MAX: std::time::Duration = std::time::Duration::from_secs(5);

impl LiveStream {
    /// Whether the host is handing its streams to a successor process.
    pub fn handing_off(&self) -> bool {
        self.shared
            .services
            .handing_off
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The stream drains after a stop until `until`: from now on no push waits past it.
    pub fn drain_until(&self, until: tokio::time::Instant) {
        self.state.lock().drain_until = Some(until);
    }

    /// Routes one frame to every worker that wants it. Queues with room take it at once;
    /// full `block` queues are waited for together, each up to its plugin's block timeout,
    /// without the session lock. Frames pushed after `end` are ignored.
    pub async fn push(&self, frame: Frame) {
        let metrics = &self.shared.metrics;
        if !self.fence.holds() {
            // This host lost the stream's lease: another host may be taking these frames.
            let n = metrics.frames_fenced.fetch_add(1, Ordering::Relaxed) + 1;
            if rtms_client::ratelog::admit("frames-fenced") {
                tracing::warn!(stream = %self.stream_id, dropped_so_far = n, "frame dropped: this host's lease on the stream lapsed (it stops the stream)");
            }
            return;
        }
        metrics.frames_in.fetch_add(1, Ordering::Relaxed);
        metrics.count_frame(
            frame.kind.into(),
            frame.payload.len() + frame.text.as_ref().map_or(0, String::len),
        );
        let (inline, blocked, drain_until) = {
            let mut st = self.state.lock();
            if st.ended {
                return;
            }
            let drain_until = st.drain_until;
            let current = self.shared.table.load();
            if !Arc::ptr_eq(&st.table, &current) {
                self.reconcile_locked(&mut st, current.clone());
            }
            let (inline, blocked) = self.offer(&mut st, frame);
            (inline, blocked, drain_until)
        };
        for (worker, frame) in inline {
            worker.deliver(frame).await;
        }
        if blocked.is_empty() {
            return;
        }
        let services = &self.shared.services;
        // Frames a shedding queue refused at once are dead-lettered here, unlocked.
        let (shed, blocked): (Vec<_>, Vec<_>) = blocked.into_iter().partition(|b| b.shed.is_some());
        for b in shed {
            let pushed = b.shed.expect("partitioned on it");
            record_push(services, &b.entry, &b.ctx, &b.link, pushed);
        }
        futures_util::future::join_all(blocked.into_iter().map(|b| async move {
            let Some(frame) = b.frame else { return };
            // A drain after a stop is bounded as a whole (`rtms.stop_drain_ms`): a full queue
            // is waited for no longer than the drain has left; a frame that would wait longer
            // is shed, counted and dead-lettered like any other.
            let wait = drain_until.map_or(b.entry.block_timeout, |until| {
                b.entry
                    .block_timeout
                    .min(until.saturating_duration_since(tokio::time::Instant::now()))
            });
            let pushed = b.queue.push_within(frame, wait).await;
            record_push(services, &b.entry, &b.ctx, &b.link, pushed);
        }))
        .await;
    }

    /// Offers the frame to every subscribed worker without waiting: straight to the plugin
    /// (returned, to be delivered once the session lock is released) when the worker is idle
    /// and takes it inline, else to its queue. Returns those and the workers that must be
    /// waited for. Every subscriber but the last gets a copy; the last gets the frame itself.
    fn offer(&self, st: &mut SessionState, frame: Frame) -> (Vec<(Inline, Frame)>, Vec<Blocked>) {
        let kind = frame.kind.into();
        let mut left = st
            .workers
            .iter()
            .filter(|w| w.entry.kinds.contains(kind))
            .count();
        let mut frame = Some(frame);
        let mut blocked = Vec::new();
        let mut inline = Vec::new();
        let now = tokio::time::Instant::now();
        for w in st
            .workers
            .iter_mut()
            .filter(|w| w.entry.kinds.contains(kind))
        {
            left -= 1;
            let f = if left == 0 {
                frame.take()
            } else {
                frame.clone()
            };
            let Some(f) = f else { break };
            if let Some(worker) = w.try_inline(now) {
                record_push(
                    &self.shared.services,
                    &w.entry,
                    &w.ctx,
                    &w.link,
                    Pushed::Queued,
                );
                inline.push((worker, f));
                continue;
            }
            let (frame, shed) = match w.queue.try_push(f) {
                Ok(pushed @ Pushed::Shed { .. }) => (None, Some(pushed)),
                Ok(pushed) => {
                    record_push(&self.shared.services, &w.entry, &w.ctx, &w.link, pushed);
                    continue;
                }
                Err(f) => (Some(f), None),
            };
            blocked.push(Blocked {
                queue: w.queue.clone(),
                entry: w.entry.clone(),
                ctx: w.ctx.clone(),
                link: w.link.clone(),
                frame,
                shed,
            });
        }
        (inline, blocked)
    }

    /// Reconciles with the published table if it changed.
    pub async fn reconcile(&self) {
        let mut st = self.state.lock();
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
                    // settings alone (batch, restart policy, byte rates) only update the
                    // worker. Frames pushed after the marker meet the new queue capacity
                    // and policy.
                    w.queue.push_control(Control::Swap(entry.clone()));
                    w.queue.reconfigure(entry.queue_capacity, entry.on_full);
                }
                w.entry = entry.clone();
                kept.push(w);
            } else {
                kept.push(Worker::spawn(
                    self.shared.services.clone(),
                    entry.clone(),
                    (self.info.clone(), self.details.clone()),
                    self.stream_id.clone(),
                    self.fence.clone(),
                ));
            }
        }
        for w in old {
            // Gone from the pipeline, or only filtered off this session.
            let end = match table.get(&w.entry.name) {
                None => Control::Leave,
                Some(_) => Control::End(EndReason::Removed),
            };
            w.queue.close_with(end);
            // The worker drains what is queued, ends, and exits on its own.
            st.retired.push(w);
        }
        st.workers = kept;
        st.table = table;
    }

    /// Shows a frame on the live tap (when someone listens).
    pub fn publish(&self, frame: &Frame) {
        self.shared.outputs.tap().frame(
            self.info.session,
            &self.stream_id,
            &self.info.meeting_id,
            frame,
        );
    }

    /// The session's plugins, each with the frames waiting in its queue.
    pub fn queue_depths(&self) -> Vec<(Arc<str>, usize)> {
        let st = self.state.lock();
        st.workers
            .iter()
            .chain(&st.retired)
            .map(|w| (w.entry.name.clone(), w.queue.len()))
            .collect()
    }

    /// The product of the stream.
    pub fn product(&self) -> Product {
        self.product
    }

    /// The stream's fence (see [`Fence`]).
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Ends the session for every plugin: each worker drains its queue, calls
    /// `on-session-end(reason)`, and stops. Returns when all have; then logs, per plugin,
    /// what it lost on this session.
    pub async fn end(&self, reason: EndReason) {
        self.finish(Control::End(reason)).await;
    }

    /// Ends the session here for another process to resume it (another host of the cluster,
    /// or this host's successor): the plugins get `on-session-end(reload)`, since a new
    /// instance takes over, and their session state stays in the store for the caller to
    /// hand over (and clear).
    pub async fn hand_off(&self) {
        self.finish(Control::HandOff).await;
    }

    async fn finish(&self, end: Control) {
        let (workers, retired) = {
            let mut st = self.state.lock();
            if st.ended {
                return;
            }
            st.ended = true;
            (
                std::mem::take(&mut st.workers),
                std::mem::take(&mut st.retired),
            )
        };
        for w in &workers {
            w.queue.close_with(end.clone());
        }
        for w in retired.into_iter().chain(workers) {
            if let Err(e) = w.task.await {
                tracing::error!(stream = %self.stream_id, plugin = %w.entry.name, error = %e, "plugin worker failed");
            }
            if let Some(l) = w.link.losses.summary() {
                w.entry
                    .stats
                    .sessions_with_losses
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    stream = %self.stream_id,
                    plugin = %w.entry.name,
                    shed = l.shed,
                    dropped = l.dropped,
                    dropped_kinds = %by_kind_text(&l.dropped_by_kind),
                    dead_lettered = l.dead_lettered,
                    discarded = l.discarded,
                    log_lines_dropped = l.log_dropped,
                    outputs_dropped = l.emit_dropped,
                    "plugin lost data on this session (dropped: to make room in its full queue; shed: its queue stayed full past block_timeout_ms, in the dead-letter file; dead-lettered: also batches that trapped; discarded: while stopped; log lines and outputs: over their byte rates)"
                );
            }
        }
        // The session's dead letters are in their files once it has ended.
        let letters = &self.shared.services.dead_letters;
        if tokio::time::timeout(LETTERS_FLUSH_MAX, letters.flush())
            .await
            .is_err()
        {
            tracing::warn!(stream = %self.stream_id, "the dead-letter writer did not catch up within {}s of the session's end: its letters are written when the disk takes them", LETTERS_FLUSH_MAX.as_secs());
        }
        tracing::info!(stream = %self.stream_id, "every plugin ended the session");
        self.shared
            .metrics
            .sessions_ended
            .fetch_add(1, Ordering::Relaxed);
        self.shared.sessions.lock().remove(&self.info.session);
    }
}
