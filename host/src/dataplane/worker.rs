//! The worker for one (plugin, session): owns the instance, takes batches from its queue and
//! applies the failure policy.
//!
//! Life of a worker:
//!
//! ```text
//!   spawned ──▶ building ──▶ serving ──(trap)──▶ backing off ──▶ building ──▶ …
//!                  │            │                     └─(End/Swap queued)──▶ building now
//!                  │            │                                    │
//!                  │            ├─(Swap)──▶ end old (reload) ──▶ build new (resumed) ──▶ serving
//!                  │            └─(End)───▶ end instance ──▶ done
//!                  └─(K traps in window)──▶ breaker open: frames discarded and counted
//! ```
//!
//! - A trap drops the Store; the batch that trapped goes to the dead-letter file (never
//!   redelivered to the same version); the next batch waits out the restart backoff (base
//!   delay doubling to a cap, reset after a healthy run) and is served by a fresh instance
//!   (`init`, then `on-session-start` with `resumed = true`).
//! - K traps within the window open the circuit breaker for this session: the plugin is
//!   stopped here, and every frame it then misses is counted.
//! - A version swapped in by a reload that traps repeatedly right away is rolled back to
//!   the version it replaced, for this session, and the reload controller is told so it can
//!   roll back the pipeline.
//! - A writable granted directory over its quota stops the plugin for this session, like an
//!   open breaker (see `crate::sandbox::quota`).
//! - A frame goes straight to the plugin, on the session's task, when that can neither
//!   reorder nor delay anything ([`WorkerHandle::try_inline`]): nothing is queued for the
//!   worker, its instance is live, its batches do not wait to fill (`max_wait_ms = 0`), its
//!   last call was quick, and its previous frame came a while before (frames that arrive
//!   together are worth one batched call). The call is polled once there; one that has to
//!   wait (it ran into an epoch tick, or waits on I/O) finishes on a task of its own, still
//!   holding the worker, so frames queued meanwhile wait their turn. At real-time pace this
//!   is the common case, and a frame then costs no wake-up of another task or thread.
//! - A worker runs on its stream's core thread; a plugin whose calls hold the thread too long
//!   moves its worker to the offload runtime, off the inline path, until its calls are quick
//!   again ([`crate::dataplane::offload`]).
//! - The session's producer never waits long on a worker: a full `block` queue sheds after
//!   the plugin's block timeout ([`record_push`] dead-letters and counts what is shed), and
//!   while the worker waits out a restart delay an `End` or `Swap` ends the wait at once
//!   (the queued frames go to a fresh instance right away).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

use crate::dataplane::embed::PluginLink;
use crate::dataplane::fence::Fence;
use crate::dataplane::offload::{Place, Placement, busy_time};
use crate::dataplane::queue::{Pushed, Queue};
use crate::dataplane::routes::PluginEntry;
pub use crate::dataplane::services::RollbackRequest;
use crate::dataplane::services::Services;
use crate::dataplane::stats::{CallTimes, LOSS_WARN_INTERVAL, PluginStats, by_kind_text};
use crate::outputs::deadletter::LetterMeta;
use crate::sandbox::bindings::{EndReason, Frame, SessionInfo};
use crate::sandbox::filebuf::FileBuf;
use crate::sandbox::state::ScopeKey;
use crate::sandbox::store::InstanceCtx;
use crate::sandbox::{CallError, Instance};

/// Control messages, delivered in band between frames.
#[derive(Clone)]
pub enum Control {
    /// Serve the rest of the session with this (new) version or configuration.
    Swap(Arc<PluginEntry>),
    /// End the session for this plugin and stop.
    End(EndReason),
    /// End the session (`shutdown`) and stop, keeping the session's state: another host
    /// resumes the stream with it.
    HandOff,
    /// The plugin left the pipeline: end the session (`removed`), stop, and clear the
    /// plugin's state (what this drain wrote after the reload cleared it).
    Leave,
}

/// What the session keeps of a worker.
pub struct WorkerHandle {
    pub queue: Arc<Queue<Control>>,
    pub entry: Arc<PluginEntry>,
    /// Who the (plugin, session) is.
    pub ctx: Arc<InstanceCtx>,
    /// Where its outputs and losses go.
    pub link: Arc<PluginLink>,
    pub task: tokio::task::JoinHandle<()>,
    /// The worker's state, its instance included: held by the worker task for each batch,
    /// and by the session for a frame it delivers inline.
    core: Arc<AsyncMutex<Worker>>,
    /// When the session last offered this worker a frame (see [`INLINE_GAP`]).
    last_offer: Option<Instant>,
}

/// A frame is delivered inline only if the worker's previous frame came at least this long
/// before it. Frames closer together (a stream catching up, a burst read from the socket at
/// once) go through the queue, where the worker takes them as one batch: one call for many
/// frames costs much less than a call each. At real-time pace (a frame per 20 ms) every
/// frame is spaced.
pub const INLINE_GAP: Duration = Duration::from_millis(2);

/// A plugin call this long or longer keeps the plugin off the session's task: its frames go
/// through its queue and worker until a call is quick again. Quick calls cost less inline
/// than the wake-up of another task would.
pub const INLINE_CALL_MAX: Duration = Duration::from_micros(500);

impl WorkerHandle {
    /// Takes the worker for one frame delivered on the caller's task, when that can neither
    /// reorder nor delay anything: nothing queued (no frame, no control message), a live
    /// instance, no restart pending, batches that do not wait to fill (`max_wait_ms = 0`), a
    /// last call under [`INLINE_CALL_MAX`], and the worker's previous frame at least
    /// [`INLINE_GAP`] before `now`. `None` when the worker is busy or any of that does
    /// not hold: the frame then goes through the queue.
    pub fn try_inline(&mut self, now: Instant) -> Option<Inline> {
        let spaced = self
            .last_offer
            .is_none_or(|t| now.saturating_duration_since(t) >= INLINE_GAP);
        self.last_offer = Some(now);
        if !spaced {
            return None;
        }
        let worker = self.core.clone().try_lock_owned().ok()?;
        worker.can_inline().then_some(Inline(worker))
    }
}

/// The worker, held for a frame delivered inline.
pub struct Inline(OwnedMutexGuard<Worker>);

impl Inline {
    /// Delivers `frame` as a batch of one. The call is polled once here; if it has to wait
    /// (an epoch tick made it yield, or it waits on I/O), it finishes on a task of its own,
    /// still holding the worker: frames queued meanwhile go after it, in order.
    pub async fn deliver(self, frame: Frame) {
        let mut worker = self.0;
        let stats = worker.entry.stats.clone();
        stats.inline.fetch_add(1, Ordering::Relaxed);
        let mover = worker.placement.mover();
        let mut call = Box::pin(async move { worker.deliver(vec![frame]).await });
        let pending =
            std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx).is_pending())).await;
        if pending {
            stats.inline_handoffs.fetch_add(1, Ordering::Relaxed);
            // Off the core mid-call once it has held the thread too long.
            tokio::spawn(async move { mover.run(call).await });
        }
    }
}

/// Counts what happened to a frame pushed to a worker's queue: routed, dropped to make room
/// (by kind), or shed by a `block` queue (then written to the dead-letter file). Warns when
/// losses start on a session, then at most once per `LOSS_WARN_INTERVAL`, never per frame.
pub fn record_push(
    services: &Services,
    entry: &PluginEntry,
    ctx: &InstanceCtx,
    link: &PluginLink,
    pushed: Pushed,
) {
    let stats = &entry.stats;
    match pushed {
        Pushed::Closed => return,
        Pushed::Queued => {}
        Pushed::DroppedOldest { kind, .. } => {
            let kind: rtms_proto::MediaKind = kind.into();
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            stats.dropped_by_kind.add(kind, 1);
            let l = &link.losses;
            l.dropped.fetch_add(1, Ordering::Relaxed);
            l.dropped_by_kind.add(kind, 1);
            if l.warning_due() {
                tracing::warn!(
                    plugin = %entry.name,
                    stream = %ctx.stream_id,
                    capacity = entry.queue_capacity,
                    dropped = l.dropped.load(Ordering::Relaxed),
                    dropped_kinds = %by_kind_text(&l.dropped_by_kind.snapshot()),
                    policy = %entry.on_full.describe(entry.kinds),
                    "plugin falls behind: its queue is full and frames are dropping to make room (counts so far on this session; warned again at most every {}s; summary at session end; a bigger [plugin.queue] capacity or a faster plugin helps)",
                    LOSS_WARN_INTERVAL.as_secs()
                );
            }
        }
        Pushed::Shed { frame, .. } => {
            stats.shed.fetch_add(1, Ordering::Relaxed);
            stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            link.losses.shed.fetch_add(1, Ordering::Relaxed);
            link.losses.dead_lettered.fetch_add(1, Ordering::Relaxed);
            if link.losses.warning_due() {
                tracing::warn!(plugin = %entry.name, stream = %ctx.stream_id, capacity = entry.queue_capacity, block_timeout_ms = entry.block_timeout.as_millis() as u64, shed = link.losses.shed.load(Ordering::Relaxed), kind = %rtms_proto::MediaKind::from(frame.kind), "plugin is stuck or restarting: its queue stayed full past the block timeout; frames are shed to the dead-letter file until it catches up (counts so far on this session; warned again at most every {}s; summary at session end)", LOSS_WARN_INTERVAL.as_secs());
            }
            let error = "shed: the plugin's queue stayed full past its block timeout";
            let meta = LetterMeta {
                plugin: &entry.name,
                version: entry.code.short_hash(),
                session: ctx.session,
                stream_id: &ctx.stream_id,
                error,
            };
            services
                .dead_letters
                .write_quiet(&meta, std::slice::from_ref(&frame));
        }
    }
    stats.routed.fetch_add(1, Ordering::Relaxed);
}

/// A session's call-duration histogram, folded into its plugin's ended sessions' when the
/// worker goes.
struct SessionCalls {
    stats: Arc<PluginStats>,
    times: Arc<CallTimes>,
}

impl SessionCalls {
    fn new(stats: &Arc<PluginStats>) -> Self {
        Self {
            stats: stats.clone(),
            times: stats.call_seconds.session(),
        }
    }

    fn observe(&self, d: Duration) {
        self.times.observe(d);
    }
}

impl Drop for SessionCalls {
    fn drop(&mut self) {
        self.stats.call_seconds.end(&self.times);
    }
}

pub struct Worker {
    services: Arc<Services>,
    entry: Arc<PluginEntry>,
    /// The version before the last swap, kept for a rollback.
    previous: Option<(Arc<PluginEntry>, Instant)>,
    traps_since_swap: u32,
    info: SessionInfo,
    ctx: Arc<InstanceCtx>,
    link: Arc<PluginLink>,
    queue: Arc<Queue<Control>>,
    instance: Option<Instance>,
    /// True once an instance has started this session: later instances get `resumed`.
    started: bool,
    backoff: Duration,
    not_before: Option<Instant>,
    healthy_since: Instant,
    recent_traps: Vec<Instant>,
    breaker_open: bool,
    /// Set when a granted directory went over its quota: the plugin is stopped.
    over_quota: bool,
    /// Why the last attempt to start an instance failed (for the dead letters it causes).
    start_error: Option<String>,
    /// Set while ending the session: a failure then schedules no restart and trips nothing.
    ending: bool,
    /// How long the last plugin call took (see [`INLINE_CALL_MAX`]).
    last_call: Duration,
    /// Batches the plugin answered with an error on this session (only the 1st, 10th,
    /// 100th, ... are logged).
    batch_errors: u64,
    /// No plugin call starts once it lapsed (see [`Fence`]).
    fence: Fence,
    /// This session's call durations (merged into the plugin's histogram when scraped).
    call_times: SessionCalls,
    /// The file writes of the last instance dropped without ending the session (a trap):
    /// written out before the next instance starts, so the two never interleave.
    retired_files: Option<FileBuf>,
    /// Which runtime the worker's task runs on (its stream's core, or the offload runtime).
    placement: Placement,
}

impl Worker {
    /// Starts a worker for `entry` on the session described by `info` and its details
    /// (contract 0.3).
    pub fn spawn(
        services: Arc<Services>,
        entry: Arc<PluginEntry>,
        (info, details): (SessionInfo, Arc<crate::sandbox::bindings::SessionDetails>),
        stream_id: Arc<str>,
        fence: Fence,
    ) -> WorkerHandle {
        let queue = Queue::new(entry.queue_capacity, entry.on_full);
        let link = PluginLink::with_video(
            services.outputs.clone(),
            entry.stats.clone(),
            services.video.get().cloned(),
        );
        let ctx = Arc::new(
            InstanceCtx::new(
                entry.name.clone(),
                info.session,
                stream_id,
                info.meeting_id.as_str().into(),
                entry.rates,
                link.clone(),
            )
            .with_state(services.rt.state().clone())
            .with_details(details),
        );
        let resumed = info.resumed;
        let offload = services.cores.get().map(|c| c.offload().clone());
        let worker = Worker {
            services,
            entry: entry.clone(),
            // A session that starts right after a reload can roll the new version back.
            previous: entry.replaced_recently(),
            traps_since_swap: 0,
            info,
            ctx: ctx.clone(),
            link: link.clone(),
            queue: queue.clone(),
            instance: None,
            started: resumed,
            backoff: Duration::ZERO,
            not_before: None,
            healthy_since: Instant::now(),
            recent_traps: Vec::new(),
            breaker_open: false,
            over_quota: false,
            start_error: None,
            ending: false,
            last_call: Duration::ZERO,
            batch_errors: 0,
            fence,
            call_times: SessionCalls::new(&entry.stats),
            retired_files: None,
            placement: Placement::here(offload),
        };
        let core = Arc::new(AsyncMutex::new(worker));
        let task = tokio::spawn(Self::run(core.clone(), queue.clone()));
        WorkerHandle {
            queue,
            entry,
            ctx,
            link,
            task,
            core,
            last_offer: None,
        }
    }

    /// The worker task: starts the instance, then serves batches where its placement says
    /// (see [`crate::dataplane::offload`]): on the stream's core, or on the offload runtime
    /// while its calls are slow, this task waiting for it meanwhile.
    async fn run(core: Arc<AsyncMutex<Self>>, queue: Arc<Queue<Control>>) {
        // Start eagerly so the plugin sees the session start before its first frame.
        core.lock().await.ensure_instance().await;
        let mover = core.lock().await.placement.mover();
        let mut at = Place::Home;
        loop {
            let serve = Self::serve(core.clone(), queue.clone(), at);
            let next = match at {
                // A call that turns out slow goes on on the offload runtime.
                Place::Home => mover.run(serve).await.flatten(),
                Place::Offload => {
                    let rt = core.lock().await.placement.runtime(at).clone();
                    match rt.spawn(serve.with_current_subscriber()).await {
                        Ok(next) => next,
                        Err(e) => {
                            tracing::error!(error = %e, "an offloaded plugin worker failed");
                            return;
                        }
                    }
                }
            };
            match next {
                Some(place) => at = place,
                None => return,
            }
        }
    }

    /// Serves batches on the current runtime while the worker's place is `at`: waits
    /// (without holding the worker) until a batch is ready, then holds the worker while it
    /// takes the batch and delivers it, so that no frame can be delivered inline in between.
    /// Returns the new place when it changed, `None` when the worker is done.
    async fn serve(
        core: Arc<AsyncMutex<Self>>,
        queue: Arc<Queue<Control>>,
        at: Place,
    ) -> Option<Place> {
        let (mut max, mut wait, ws) = {
            let w = core.lock().await;
            (w.entry.batch_max, w.entry.batch_wait, w.ctx.ws.clone())
        };
        loop {
            // What the plugin's WebSockets received goes in between batches; frames first
            // when both are ready.
            let frames_ready = tokio::select! {
                biased;
                () = queue.ready(max, wait) => true,
                () = ws.wait() => false,
            };
            let mut w = core.lock().await;
            if w.placement.place() != at {
                return Some(w.placement.place());
            }
            w.deliver_ws().await;
            if !frames_ready {
                continue;
            }
            if let Some(t) = w.not_before
                && Instant::now() < t
                && queue.control_before(t).await
            {
                // An end or a swap while restarting: do not make it wait out the delay;
                // the frames queued before it go to a fresh instance now.
                w.not_before = None;
            }
            let batch = queue.take_now(w.entry.batch_max);
            if !batch.frames.is_empty() {
                w.deliver(batch.frames).await;
            }
            if let Some(control) = batch.control
                && w.control(control).await
            {
                return None;
            }
            (max, wait) = (w.entry.batch_max, w.entry.batch_wait);
        }
    }

    /// See [`WorkerHandle::try_inline`].
    fn can_inline(&self) -> bool {
        self.instance.is_some()
            && !self.stopped()
            && !self.ending
            && self.not_before.is_none()
            && self.entry.batch_wait.is_zero()
            && self.last_call < INLINE_CALL_MAX
            && self.placement.place() == Place::Home
            && self.queue.idle()
    }

    /// Handles a control message; returns true when the worker is done.
    async fn control(&mut self, control: Control) -> bool {
        match control {
            Control::Swap(entry) => {
                self.swap(entry).await;
                false
            }
            Control::End(reason) => {
                self.end_instance(reason).await;
                self.clear_state(false);
                true
            }
            Control::HandOff => {
                // Another process (a successor, or another host of the cluster) resumes the
                // session with this state: for the plugin, a new instance takes over.
                self.end_instance(EndReason::Reload).await;
                true
            }
            Control::Leave => {
                self.end_instance(EndReason::Removed).await;
                self.clear_state(true);
                true
            }
        }
    }

    /// The session has ended for the plugin (after `on-session-end`): its session scope of
    /// state goes; and when the plugin left the pipeline, all its state (the reload cleared
    /// it already; this catches what the drain wrote since). A plugin that only stops
    /// serving this session (its filter changed) keeps its plugin scope.
    fn clear_state(&self, left: bool) {
        let state = self.services.rt.state();
        if left {
            state.clear_plugin(&self.entry.name);
        } else {
            state.clear(&ScopeKey::session(&self.entry.name, &self.ctx.stream_id));
        }
    }

    fn dead_letter(&self, error: &str, frames: &[Frame]) {
        self.services.dead_letters.write(&self.meta(error), frames);
        let n = frames.len() as u64;
        self.entry
            .stats
            .dead_lettered
            .fetch_add(n, Ordering::Relaxed);
        self.link
            .losses
            .dead_lettered
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Drops the instance without ending the session; what it wrote is written out before
    /// the next instance starts ([`Worker::ensure_instance`]).
    fn retire(&mut self) {
        if let Some(inst) = self.instance.take() {
            self.retired_files = Some(inst.files());
        }
    }

    /// Waits (up to the call deadline) until the retired instance's writes are written out.
    async fn settle_retired(&mut self) {
        let Some(files) = self.retired_files.take() else {
            return;
        };
        let within = self.entry.spec.call_timeout;
        if tokio::time::timeout(within, files.settle()).await.is_err() {
            tracing::warn!(plugin = %self.entry.name, stream = %self.ctx.stream_id, pending_bytes = files.pending(), "the file writes of the plugin's previous instance are not all written out: a file does not take them (a FIFO nobody reads, a hung mount); the new instance starts anyway");
        }
    }

    /// Whether the plugin is stopped for this session (breaker open or over quota).
    fn stopped(&self) -> bool {
        self.breaker_open || self.over_quota
    }

    /// Stops the plugin for this session if a granted directory is over its quota (by the
    /// last measure: a walk, when due, runs in the background).
    fn check_quota(&mut self) -> bool {
        let over = self
            .services
            .rt
            .quotas()
            .over(&self.entry.spec.grants, self.info.session);
        self.stop_over_quota(over)
    }

    /// Stops the plugin for this session with the error `over`, if any.
    fn stop_over_quota(&mut self, over: Option<String>) -> bool {
        let Some(msg) = over else {
            return false;
        };
        self.retire();
        self.over_quota = true;
        self.entry.stats.quota_stops.fetch_add(1, Ordering::Relaxed);
        tracing::error!(plugin = %self.entry.name, stream = %self.ctx.stream_id, error = %msg, "plugin stopped for this session: a granted directory is over its write quota; frames it misses are counted as discarded");
        true
    }

    fn meta<'a>(&'a self, error: &'a str) -> LetterMeta<'a> {
        LetterMeta {
            plugin: &self.entry.name,
            version: self.entry.code.short_hash(),
            session: self.info.session,
            stream_id: &self.ctx.stream_id,
            error,
        }
    }

    /// Builds an instance if there is none and the breaker allows: waits out the restart
    /// backoff, instantiates, runs `init` and `on-session-start`. Returns whether an
    /// instance is ready.
    async fn ensure_instance(&mut self) -> bool {
        if self.instance.is_some() {
            return true;
        }
        if self.stopped() || !self.fence.holds() {
            return false;
        }
        if let Some(t) = self.not_before.take() {
            tokio::time::sleep_until(t).await;
        }
        self.settle_retired().await;
        let quotas = self.services.rt.quotas().clone();
        let over = quotas
            .over_now(&self.entry.spec.grants, self.info.session)
            .await;
        if self.stop_over_quota(over) {
            return false;
        }
        let entry = self.entry.clone();
        let result = async {
            let mut inst = Instance::new(
                &self.services.rt,
                entry.code.clone(),
                &entry.spec,
                self.ctx.clone(),
            )
            .await?;
            inst.init(&entry.spec.config).await?;
            let mut info = self.info.clone();
            info.resumed = self.started;
            inst.session_start(&info).await?;
            Ok::<_, CallError>(inst)
        }
        .await;
        match result {
            Ok(inst) => {
                self.instance = Some(inst);
                self.start_error = None;
                self.started = true;
                self.healthy_since = Instant::now();
                true
            }
            Err(e) => {
                tracing::error!(plugin = %entry.name, stream = %self.ctx.stream_id, error = %e, "cannot start the plugin for this session");
                self.on_failure(&e.to_string());
                self.start_error = Some(e.to_string());
                false
            }
        }
    }

    /// Delivers what the plugin's WebSockets received, each message a call of its own. A
    /// trap ends the instance (and its sockets) like a trap on frames.
    async fn deliver_ws(&mut self) {
        let holds = self.fence.holds();
        let Some(inst) = self.instance.as_mut().filter(|_| holds) else {
            // No instance: its sockets went with it; drop what they left.
            let _ = self.ctx.ws.take();
            return;
        };
        let mut errors = 0;
        let result = inst.ws_deliver(&mut errors).await;
        self.entry.stats.errors.fetch_add(errors, Ordering::Relaxed);
        if let Err(e) = result {
            tracing::warn!(plugin = %self.entry.name, stream = %self.ctx.stream_id, error = %e, "plugin trapped on a WebSocket message");
            self.retire();
            self.entry.stats.traps.fetch_add(1, Ordering::Relaxed);
            self.on_failure(&e.to_string());
        }
    }

    async fn deliver(&mut self, frames: Vec<Frame>) {
        let n = frames.len() as u64;
        if !self.fence.holds() {
            // The stream's lease lapsed: another host may be writing for it now.
            self.entry.stats.discarded.fetch_add(n, Ordering::Relaxed);
            self.link.losses.discarded.fetch_add(n, Ordering::Relaxed);
            return;
        }
        if !self.ensure_instance().await {
            if self.stopped() {
                self.entry.stats.discarded.fetch_add(n, Ordering::Relaxed);
                self.link.losses.discarded.fetch_add(n, Ordering::Relaxed);
            } else {
                let error = format!(
                    "no instance: the plugin failed to start: {}",
                    self.start_error.as_deref().unwrap_or("unknown error")
                );
                self.dead_letter(&error, &frames);
            }
            return;
        }
        let inst = self.instance.as_mut().expect("ensured above");
        let started = std::time::Instant::now();
        let placement = &self.placement;
        let call = inst.frames(self.info.session, &frames);
        let (result, busy) = busy_time(call, |spent| placement.during_call(spent)).await;
        self.last_call = started.elapsed();
        self.call_times.observe(self.last_call);
        let stats = &self.entry.stats;
        self.placement.after_call(busy, stats, &self.entry.name);
        self.entry.stats.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = self.services.metrics.batch_hook() {
            (hook.0)(self.info.session, &self.entry.name, &frames);
        }
        match result {
            Ok(()) => {
                self.entry.stats.delivered.fetch_add(n, Ordering::Relaxed);
                if self.healthy_since.elapsed() >= self.entry.restart.healthy_reset {
                    self.backoff = Duration::ZERO;
                }
                self.check_quota();
            }
            Err(CallError::Plugin(msg)) => {
                self.entry.stats.delivered.fetch_add(n, Ordering::Relaxed);
                self.entry.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.batch_errors += 1;
                // A plugin failing every batch cannot flood the log: all are counted
                // (rtms_plugin_errors_total), the 1st, 10th, 100th, ... of a session logged.
                if crate::sandbox::store::is_power_of_ten(self.batch_errors) {
                    tracing::warn!(plugin = %self.entry.name, stream = %self.ctx.stream_id, first_seq = frames[0].seq, errors = self.batch_errors, error = %msg, "plugin reported an error for a batch");
                }
                self.check_quota();
            }
            Err(CallError::Trap(msg)) => {
                self.retire();
                self.entry.stats.traps.fetch_add(1, Ordering::Relaxed);
                self.dead_letter(&msg, &frames);
                self.on_failure(&msg);
            }
        }
    }

    /// Records a trap or failed start: schedules the restart, trips the breaker, and rolls
    /// back a freshly swapped version that keeps failing.
    fn on_failure(&mut self, error: &str) {
        if self.ending {
            return;
        }
        let now = Instant::now();
        let policy = self.entry.restart.clone();
        if let Some((prev, swapped_at)) = &self.previous
            && !policy.rollback_window.is_zero()
            && now.duration_since(*swapped_at) <= policy.rollback_window
        {
            self.traps_since_swap += 1;
            if self.traps_since_swap >= policy.rollback_traps {
                let prev = prev.clone();
                tracing::error!(plugin = %self.entry.name, stream = %self.ctx.stream_id, undone = %self.entry.change_from(&prev), "new version keeps trapping after the reload; rolling back");
                self.entry.stats.rollbacks.fetch_add(1, Ordering::Relaxed);
                if let Some(tx) = &self.services.rollback_tx {
                    let _ = tx.send(RollbackRequest {
                        plugin: self.entry.name.clone(),
                        bad_hash: self.entry.code.hash.clone(),
                        error: error.to_owned(),
                    });
                }
                self.entry = prev;
                self.previous = None;
                self.traps_since_swap = 0;
                self.recent_traps.clear();
                self.backoff = Duration::ZERO;
                self.not_before = None;
                return;
            }
        }
        self.recent_traps
            .retain(|t| now.duration_since(*t) <= policy.window);
        self.recent_traps.push(now);
        if self.recent_traps.len() as u32 >= policy.max_failures {
            self.breaker_open = true;
            self.entry
                .stats
                .breaker_trips
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(plugin = %self.entry.name, stream = %self.ctx.stream_id, traps = self.recent_traps.len(), window_s = policy.window.as_secs(), "plugin stopped for this session: it keeps failing (circuit breaker open); frames it misses are counted as discarded; fix the plugin and reload it");
            return;
        }
        self.backoff = next_backoff(self.backoff, policy.base_delay, policy.max_delay);
        self.not_before = Some(now + self.backoff);
        self.entry.stats.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = %self.entry.name, stream = %self.ctx.stream_id, delay_ms = self.backoff.as_millis() as u64, "plugin instance will be rebuilt");
    }

    async fn swap(&mut self, entry: Arc<PluginEntry>) {
        // The byte rates belong to the session, not the instance: in band either way.
        // (The session took the new queue capacity and policy when it queued the marker;
        // the batch size and wait, the block timeout and the restart policy are read from
        // the entry.)
        self.ctx.set_rates(entry.rates);
        if entry.generation == self.entry.generation && entry.code.hash == self.entry.code.hash {
            // Same code and instance settings: only the worker's settings changed, or the
            // table a rollback publishes names the version this worker already rolled back
            // to. Keep the instance.
            self.entry = entry;
            return;
        }
        let old = std::mem::replace(&mut self.entry, entry);
        self.entry.stats.swaps.fetch_add(1, Ordering::Relaxed);
        if let Some(mut inst) = self.instance.take()
            && let Err(e) = inst.session_end(self.info.session, EndReason::Reload).await
        {
            tracing::warn!(plugin = %old.name, stream = %self.ctx.stream_id, error = %e, "old version failed to end the session cleanly during reload");
        }
        tracing::debug!(plugin = %self.entry.name, stream = %self.ctx.stream_id, change = %self.entry.change_from(&old), "swapped version");
        self.previous = Some((old, Instant::now()));
        self.traps_since_swap = 0;
        self.breaker_open = false;
        self.over_quota = false;
        self.recent_traps.clear();
        self.backoff = Duration::ZERO;
        self.not_before = None;
        self.ensure_instance().await;
    }

    /// Ends the session for the plugin. When no instance is live (the last batch trapped,
    /// a restart delay was pending, or the breaker is open) a fresh one is built now for the
    /// end alone (`init`, `on-session-start` with `resumed = true`, `on-session-end`), so an
    /// end-of-session summary is still written. Not when the plugin is stopped over its
    /// directory quota (it would write more), nor when the fresh instance fails to start.
    async fn end_instance(&mut self, reason: EndReason) {
        if !self.fence.holds() {
            if self.instance.is_some() {
                self.retire();
                tracing::warn!(plugin = %self.entry.name, stream = %self.ctx.stream_id, "the session ends here without on-session-end: this host lost the stream's lease, and the host that took it over resumes the session");
            }
            return;
        }
        if self.instance.is_none() && !self.over_quota {
            self.ending = true;
            let breaker_was_open = self.breaker_open;
            self.breaker_open = false;
            self.not_before = None;
            if self.ensure_instance().await {
                tracing::info!(plugin = %self.entry.name, stream = %self.ctx.stream_id, ?reason, breaker_was_open, "built a fresh instance to end the session (resumed = true)");
                self.entry
                    .stats
                    .end_instances
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                tracing::warn!(plugin = %self.entry.name, stream = %self.ctx.stream_id, ?reason, "the session ends without on-session-end for this plugin: a fresh instance could not be started");
            }
        }
        if let Some(mut inst) = self.instance.take()
            && let Err(e) = inst.session_end(self.info.session, reason).await
        {
            tracing::warn!(plugin = %self.entry.name, stream = %self.ctx.stream_id, error = %e, "plugin failed to end the session cleanly");
        }
    }
}

/// The restart delay after `current`: `base` first, then doubling, capped at `max`.
pub fn next_backoff(current: Duration, base: Duration, max: Duration) -> Duration {
    if current.is_zero() {
        base.min(max)
    } else {
        (current * 2).min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let (b, m) = (Duration::from_secs(1), Duration::from_secs(30));
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..7 {
            d = next_backoff(d, b, m);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30]);
    }
}
