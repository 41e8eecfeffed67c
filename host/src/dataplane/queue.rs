//! The bounded queue between a session and one plugin worker.
//!
//! It carries frames and, in band, control messages (swap to a new version, end), so a
//! reload or an end takes effect exactly between two frames: everything queued before the
//! marker goes to the old instance, everything after to the new one. Control messages are
//! never dropped, never wait and do not count against the capacity.
//!
//! When the queue holds `capacity` frames, the plugin's queue policy decides, per kind of
//! frame (`[plugin.queue] on_full`, see [`QueuePolicy`]):
//!
//! - When a kind the policy lets drop (by default audio, video and share) is queued, the
//!   oldest such frame is discarded and counted to make room, whatever the kind of the new
//!   frame: real-time media is skipped rather than lagged on, and transcript, chat and events
//!   are never dropped to make room for it.
//! - Otherwise a new frame of a droppable kind is itself discarded and counted (there is
//!   nothing older to drop).
//! - Otherwise (`block`) the producer waits for space, but only up to a bounded time
//!   (`block_timeout`): a plugin that is stuck or restarting must never stall the session's
//!   socket reader (keep-alives) or the session's other plugins. Past the timeout the queue
//!   *sheds*: the frame is handed back to the producer, which dead-letters and counts it.
//!   While shedding, a full queue sheds at once without waiting again; shedding ends when
//!   the consumer has drained the queue to half its capacity.
//!
//! Either way the producer learns when a run of losses *starts* and which kind was lost, so
//! it can count by kind and warn once per run (rate-limited) instead of once per frame.
//!
//! The consumer takes batches: up to `max_frames` consecutive frames, waiting at most
//! `max_wait` (counted from when the oldest of them was queued) for a partial batch to fill.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::sandbox::bindings::{Frame, MediaKind};

/// What a full queue does for one kind (`Block` waits up to the block timeout, then sheds;
/// `DropOldest` discards the oldest queued frame of a droppable kind), and the policy per
/// kind (`[plugin.queue] on_full`).
pub use rtms_config::{OnFull, QueuePolicy};

/// A message in a worker's queue.
enum Item<C> {
    Frame(Frame, Instant),
    Control(C),
}

/// What happened to a pushed frame.
#[derive(Debug)]
pub enum Pushed {
    /// Queued, nothing lost.
    Queued,
    /// A frame of `kind` was discarded to make room: the oldest queued frame of a kind the
    /// policy drops, or, when none is queued, the pushed frame itself (then of a droppable
    /// kind). `first` is true when this starts a run of losses.
    DroppedOldest { kind: MediaKind, first: bool },
    /// Not queued: the queue stayed full past the block timeout (or is shedding). The frame
    /// is handed back for the dead-letter file. `first` is true when this starts a run.
    Shed { frame: Frame, first: bool },
    /// Not queued: the consumer has ended (the plugin was removed or the session ended).
    Closed,
}

pub struct Queue<C> {
    inner: Mutex<Inner<C>>,
    /// Signalled when an item is pushed (one consumer).
    items: Notify,
    /// Signalled when frames are taken (producers waiting under `Block`).
    space: Notify,
    /// Frames discarded to make room.
    pub dropped: AtomicU64,
    /// Frames shed under `Block`.
    pub shed: AtomicU64,
}

struct Inner<C> {
    items: VecDeque<Item<C>>,
    /// Frames held before the policy applies; a reload may change it ([`Queue::reconfigure`]).
    capacity: usize,
    /// What a full queue does, per kind; a reload may change it.
    policy: QueuePolicy,
    frames: usize,
    /// Queued frames of kinds the policy drops.
    droppable: usize,
    /// Set by [`Queue::close_with`]: no frame is accepted after the final control message.
    closed: bool,
    /// In a run of losses (shedding or dropping); cleared at half capacity.
    losing: bool,
    /// Shedding: a `block` frame found the queue full past the block timeout; until the
    /// queue drains to half, further `block` frames are shed at once. (Drops alone never
    /// make a `block` frame shed: it waits.)
    shedding: bool,
    /// Control messages queued.
    controls: usize,
}

impl<C> Inner<C> {
    /// Whether the policy lets `frame` be dropped to make room.
    fn drops(&self, frame: &Frame) -> bool {
        self.policy.drops(frame.kind.into())
    }
}

/// What the consumer takes in one go: a run of frames, then maybe a control message that
/// followed them.
pub struct Batch<C> {
    pub frames: Vec<Frame>,
    pub control: Option<C>,
}

impl<C> Queue<C> {
    pub fn new(capacity: usize, policy: QueuePolicy) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                capacity: capacity.max(1),
                policy,
                frames: 0,
                droppable: 0,
                closed: false,
                losing: false,
                shedding: false,
                controls: 0,
            }),
            items: Notify::new(),
            space: Notify::new(),
            dropped: AtomicU64::new(0),
            shed: AtomicU64::new(0),
        })
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.inner.lock().frames
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a control message is queued.
    pub fn has_control(&self) -> bool {
        self.inner.lock().controls > 0
    }

    /// Waits until `deadline` or until a control message is queued, whichever comes first;
    /// returns whether one is. (For the one consumer, e.g. waiting out a restart delay.)
    pub async fn control_before(&self, deadline: Instant) -> bool {
        loop {
            let ready = self.items.notified();
            if self.has_control() {
                return true;
            }
            if tokio::time::timeout_at(deadline, ready).await.is_err() {
                return self.has_control();
            }
        }
    }

    /// Queues a frame without waiting. Hands the frame back (`Err`) only when the queue is
    /// full under `Block` and not shedding: the caller then waits with
    /// [`Queue::push_within`], outside any lock.
    // The frame goes back by value: boxing it would cost an allocation per push.
    #[allow(clippy::result_large_err)]
    pub fn try_push(&self, frame: Frame) -> Result<Pushed, Frame> {
        let mut q = self.inner.lock();
        if q.closed {
            return Ok(Pushed::Closed);
        }
        let drops = q.drops(&frame);
        if q.frames < q.capacity {
            q.items.push_back(Item::Frame(frame, Instant::now()));
            q.frames += 1;
            q.droppable += usize::from(drops);
            drop(q);
            self.items.notify_one();
            return Ok(Pushed::Queued);
        }
        if q.droppable > 0 || drops {
            let kind = if q.droppable > 0 {
                let policy = q.policy;
                let pos = q
                    .items
                    .iter()
                    .position(|i| matches!(i, Item::Frame(f, _) if policy.drops(f.kind.into())))
                    .expect("a droppable frame is queued");
                let Some(Item::Frame(old, _)) = q.items.remove(pos) else {
                    unreachable!("position found a frame")
                };
                q.items.push_back(Item::Frame(frame, Instant::now()));
                q.droppable = q.droppable - 1 + usize::from(drops);
                old.kind
            } else {
                frame.kind
            };
            let first = !std::mem::replace(&mut q.losing, true);
            drop(q);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.items.notify_one();
            return Ok(Pushed::DroppedOldest { kind, first });
        }
        if q.shedding {
            drop(q);
            self.shed.fetch_add(1, Ordering::Relaxed);
            return Ok(Pushed::Shed {
                frame,
                first: false,
            });
        }
        Err(frame)
    }

    /// Takes a new capacity and policy (a reload, at its swap marker): frames pushed from
    /// now on are held to them. Frames already queued stay, even beyond a smaller capacity,
    /// and a full queue drops by the new policy, those frames included. A larger capacity
    /// wakes producers waiting for room.
    pub fn reconfigure(&self, capacity: usize, policy: QueuePolicy) {
        let mut q = self.inner.lock();
        let grew = capacity.max(1) > q.capacity;
        q.capacity = capacity.max(1);
        q.policy = policy;
        q.droppable = q
            .items
            .iter()
            .filter(|i| matches!(i, Item::Frame(f, _) if policy.drops(f.kind.into())))
            .count();
        drop(q);
        if grew {
            self.space.notify_waiters();
        }
    }

    /// The capacity and policy in force.
    pub fn limits(&self) -> (usize, QueuePolicy) {
        let q = self.inner.lock();
        (q.capacity, q.policy)
    }

    /// Queues a frame, waiting up to `timeout` for space under `Block`; past it the frame
    /// is shed and the queue starts shedding.
    pub async fn push_within(&self, frame: Frame, timeout: Duration) -> Pushed {
        let deadline = Instant::now() + timeout;
        let mut frame = frame;
        loop {
            let space = self.space.notified();
            frame = match self.try_push(frame) {
                Ok(p) => return p,
                Err(f) => f,
            };
            if tokio::time::timeout_at(deadline, space).await.is_err() {
                let mut q = self.inner.lock();
                if q.closed {
                    return Pushed::Closed;
                }
                // Room, or a droppable frame queued meanwhile: take the room or drop that
                // frame instead of shedding this one.
                if q.frames < q.capacity || q.droppable > 0 {
                    drop(q);
                    continue;
                }
                let first = !std::mem::replace(&mut q.losing, true);
                q.shedding = true;
                drop(q);
                self.shed.fetch_add(1, Ordering::Relaxed);
                return Pushed::Shed { frame, first };
            }
        }
    }

    /// Queues a control message behind everything already queued. Never waits.
    pub fn push_control(&self, c: C) {
        {
            let mut q = self.inner.lock();
            q.items.push_back(Item::Control(c));
            q.controls += 1;
        }
        self.items.notify_one();
    }

    /// Queues the final control message: frames pushed after it are refused as `Closed`.
    pub fn close_with(&self, c: C) {
        {
            let mut q = self.inner.lock();
            q.items.push_back(Item::Control(c));
            q.controls += 1;
            q.closed = true;
        }
        self.items.notify_one();
        self.space.notify_waiters();
    }

    /// Waits for at least one item, then takes up to `max_frames` consecutive frames and
    /// the control message right after them, if any. A partial batch (fewer than
    /// `max_frames` frames and no control message behind them) waits for more until
    /// `max_wait` after its oldest frame was queued.
    pub async fn next_batch(&self, max_frames: usize, max_wait: Duration) -> Batch<C> {
        self.ready(max_frames, max_wait).await;
        self.take_now(max_frames)
    }

    /// Waits until [`Queue::next_batch`] would take something: at least one item, and a
    /// partial batch has waited out `max_wait`. Takes nothing: the one consumer then takes
    /// with [`Queue::take_now`] (the worker does so holding its instance, so nothing can be
    /// delivered around the batch in between).
    pub async fn ready(&self, max_frames: usize, max_wait: Duration) {
        let max_frames = max_frames.max(1);
        loop {
            let ready = self.items.notified();
            let wait_until = {
                let q = self.inner.lock();
                match q.items.front() {
                    None => None,
                    Some(Item::Frame(_, at))
                        if !max_wait.is_zero()
                            && q.frames < max_frames
                            && !q.closed
                            && q.controls == 0
                            && Instant::now() < *at + max_wait =>
                    {
                        Some(*at + max_wait)
                    }
                    Some(_) => return,
                }
            };
            match wait_until {
                None => ready.await,
                Some(t) => {
                    if tokio::time::timeout_at(t, ready).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Takes up to `max_frames` consecutive frames and the control message right after
    /// them, if any, without waiting (an empty batch when nothing is queued).
    pub fn take_now(&self, max_frames: usize) -> Batch<C> {
        let mut q = self.inner.lock();
        self.take(&mut q, max_frames.max(1))
    }

    /// Whether nothing at all is queued (no frame, no control message) and the queue still
    /// takes frames: a frame may then bypass it and go straight to the plugin without
    /// overtaking anything.
    pub fn idle(&self) -> bool {
        let q = self.inner.lock();
        q.items.is_empty() && !q.closed
    }

    fn take(&self, q: &mut Inner<C>, max_frames: usize) -> Batch<C> {
        let mut frames = Vec::new();
        let mut control = None;
        while frames.len() < max_frames {
            match q.items.pop_front() {
                Some(Item::Frame(f, _)) => {
                    q.droppable -= usize::from(q.drops(&f));
                    frames.push(f);
                }
                Some(Item::Control(c)) => {
                    q.controls -= 1;
                    control = Some(c);
                    break;
                }
                None => break,
            }
        }
        q.frames -= frames.len();
        if q.losing && q.frames <= q.capacity / 2 {
            q.losing = false;
            q.shedding = false;
        }
        if !frames.is_empty() {
            self.space.notify_waiters();
        }
        Batch { frames, control }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::bindings::MediaKind;

    fn frame(seq: u64) -> Frame {
        Frame {
            kind: MediaKind::Audio,
            seq,
            timestamp_ms: 0,
            user_id: String::new(),
            user_name: String::new(),
            payload: Vec::new(),
            text: None,
            transcript: None,
            event_type: None,
        }
    }

    const NO_WAIT: Duration = Duration::ZERO;

    async fn push(q: &Queue<impl Sized>, seq: u64) -> Pushed {
        q.push_within(frame(seq), Duration::from_secs(3600)).await
    }

    #[tokio::test]
    async fn controls_split_batches_and_keep_order() {
        let q = Queue::<&'static str>::new(8, QueuePolicy::BLOCK);
        push(&q, 1).await;
        push(&q, 2).await;
        q.push_control("swap");
        push(&q, 3).await;
        let b = q.next_batch(10, NO_WAIT).await;
        assert_eq!(b.frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(b.control, Some("swap"));
        let b = q.next_batch(10, NO_WAIT).await;
        assert_eq!(b.frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [3]);
        assert!(b.control.is_none());
    }

    #[tokio::test]
    async fn drop_oldest_discards_and_counts_and_reports_the_start_of_a_run() {
        let q = Queue::<()>::new(2, QueuePolicy::all(OnFull::DropOldest));
        let mut firsts = Vec::new();
        for s in 1..=5 {
            if let Pushed::DroppedOldest { first, .. } = push(&q, s).await {
                firsts.push(first);
            }
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(firsts, [true, false, false], "one start per run");
        let b = q.next_batch(10, NO_WAIT).await;
        assert_eq!(b.frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [4, 5]);
    }

    fn framed(kind: MediaKind, seq: u64) -> Frame {
        Frame { kind, ..frame(seq) }
    }

    #[tokio::test]
    async fn the_default_policy_drops_audio_to_make_room_and_never_transcript() {
        use MediaKind::{Audio, Transcript};
        let media = rtms_config::MediaKinds::of([
            rtms_config::MediaKind::Audio,
            rtms_config::MediaKind::Transcript,
        ]);
        let q = Queue::<()>::new(3, QueuePolicy::default_for(media));
        // The test looks only at what happened, not at a frame handed back.
        let push = |k, s| q.try_push(framed(k, s)).map_err(|f| f.seq);
        assert!(matches!(push(Transcript, 1), Ok(Pushed::Queued)));
        assert!(matches!(push(Audio, 2), Ok(Pushed::Queued)));
        assert!(matches!(push(Audio, 3), Ok(Pushed::Queued)));
        // Full: a transcript frame makes room by dropping the oldest audio frame (2).
        let p = push(Transcript, 4);
        assert!(
            matches!(
                p,
                Ok(Pushed::DroppedOldest {
                    kind: Audio,
                    first: true
                })
            ),
            "{p:?}"
        );
        // An audio frame drops the oldest audio frame (3), not the older transcript.
        let p = push(Audio, 5);
        assert!(
            matches!(
                p,
                Ok(Pushed::DroppedOldest {
                    kind: Audio,
                    first: false
                })
            ),
            "{p:?}"
        );
        let b = q.next_batch(10, NO_WAIT).await;
        assert_eq!(
            b.frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [1, 4, 5]
        );
        // Full of transcript: a new audio frame is itself dropped; a transcript frame waits.
        for s in 6..=8 {
            assert!(matches!(push(Transcript, s), Ok(Pushed::Queued)));
        }
        let p = push(Audio, 9);
        assert!(
            matches!(p, Ok(Pushed::DroppedOldest { kind: Audio, .. })),
            "{p:?}"
        );
        assert!(
            push(Transcript, 10).is_err(),
            "full of transcript: wait for room"
        );
        assert_eq!(q.dropped.load(Ordering::Relaxed), 3);
        let b = q.next_batch(10, NO_WAIT).await;
        assert_eq!(
            b.frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [6, 7, 8]
        );
    }

    #[tokio::test]
    async fn block_waits_for_space_and_loses_nothing() {
        let q = Queue::<()>::new(2, QueuePolicy::BLOCK);
        let producer = {
            let q = q.clone();
            tokio::spawn(async move {
                for s in 1..=100 {
                    assert!(matches!(push(&q, s).await, Pushed::Queued));
                }
            })
        };
        let mut seen = Vec::new();
        while seen.len() < 100 {
            let b = q.next_batch(3, NO_WAIT).await;
            assert!(b.frames.len() <= 3);
            seen.extend(b.frames.iter().map(|f| f.seq));
        }
        producer.await.unwrap();
        assert_eq!(seen, (1..=100).collect::<Vec<_>>());
        assert_eq!(q.dropped.load(Ordering::Relaxed), 0);
    }

    // Tokio's paused clock needs its `test-util` feature, which this crate does not build
    // with; these use short real waits and assert bounds, not exact times.
    #[tokio::test]
    async fn a_full_block_queue_sheds_after_the_timeout_then_at_once_until_drained() {
        let q = Queue::<()>::new(4, QueuePolicy::BLOCK);
        for s in 1..=4 {
            assert!(matches!(q.try_push(frame(s)), Ok(Pushed::Queued)));
        }
        let t0 = Instant::now();
        let p = q.push_within(frame(5), Duration::from_millis(100)).await;
        assert!(matches!(p, Pushed::Shed { first: true, .. }), "{p:?}");
        assert!(
            t0.elapsed() >= Duration::from_millis(100),
            "waited the timeout"
        );
        // Shedding now: no further wait, even with a long timeout.
        let t1 = Instant::now();
        let p = q.push_within(frame(6), Duration::from_secs(3600)).await;
        assert!(matches!(p, Pushed::Shed { first: false, .. }), "{p:?}");
        assert!(t1.elapsed() < Duration::from_secs(1), "no second wait");
        // Taking one frame leaves 3 > 2: still shedding while full again.
        q.next_batch(1, NO_WAIT).await;
        assert!(matches!(q.try_push(frame(7)), Ok(Pushed::Queued)));
        assert!(matches!(q.try_push(frame(8)), Ok(Pushed::Shed { .. })));
        // Drained to half: shedding ends, the next full push waits again.
        q.next_batch(2, NO_WAIT).await;
        assert!(matches!(q.try_push(frame(9)), Ok(Pushed::Queued)));
        assert!(matches!(q.try_push(frame(10)), Ok(Pushed::Queued)));
        assert!(q.try_push(frame(11)).is_err(), "full, not shedding: wait");
        assert_eq!(q.shed.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn a_partial_batch_waits_at_most_max_wait_for_more_frames() {
        let q = Queue::<()>::new(16, QueuePolicy::BLOCK);
        // A lone frame is delivered once max_wait has passed since it was queued.
        let wait = Duration::from_millis(50);
        let t0 = Instant::now();
        q.try_push(frame(1)).unwrap();
        let b = q.next_batch(4, wait).await;
        assert_eq!(b.frames.len(), 1);
        assert!(t0.elapsed() >= wait);
        // A batch that fills is delivered as soon as it is full, long before max_wait.
        let long = Duration::from_secs(30);
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move { q.next_batch(4, long).await.frames.len() })
        };
        let t1 = Instant::now();
        for s in 2..=5 {
            tokio::task::yield_now().await;
            q.try_push(frame(s)).unwrap();
        }
        assert_eq!(consumer.await.unwrap(), 4);
        assert!(t1.elapsed() < Duration::from_secs(5), "delivered when full");
        // A control message ends the wait at once.
        q.try_push(frame(6)).unwrap();
        q.push_control(());
        let t2 = Instant::now();
        let b = q.next_batch(4, long).await;
        assert_eq!((b.frames.len(), b.control.is_some()), (1, true));
        assert!(t2.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_reconfigured_queue_holds_new_frames_to_the_new_capacity_and_policy() {
        let q = Queue::<()>::new(2, QueuePolicy::BLOCK);
        assert!(matches!(q.try_push(frame(1)), Ok(Pushed::Queued)));
        assert!(matches!(q.try_push(frame(2)), Ok(Pushed::Queued)));
        assert!(q.try_push(frame(3)).is_err(), "full under block: wait");
        // Bigger: room at once, and a producer waiting for room is woken.
        let waiting = {
            let q = q.clone();
            tokio::spawn(async move { q.push_within(frame(3), Duration::from_secs(3600)).await })
        };
        tokio::task::yield_now().await;
        q.reconfigure(3, QueuePolicy::BLOCK);
        assert!(matches!(waiting.await.unwrap(), Pushed::Queued));
        assert!(q.try_push(frame(4)).is_err(), "full at the new capacity");
        // Drop-oldest: the frames queued under block may now be dropped to make room.
        q.reconfigure(3, QueuePolicy::all(OnFull::DropOldest));
        assert!(matches!(
            q.try_push(frame(4)),
            Ok(Pushed::DroppedOldest { first: true, .. })
        ));
        // Smaller: what is queued stays; new frames meet the smaller bound.
        q.reconfigure(1, QueuePolicy::BLOCK);
        assert_eq!(q.len(), 3);
        assert!(q.try_push(frame(5)).is_err());
        assert_eq!(q.limits().0, 1);
        let b = q.next_batch(10, NO_WAIT).await;
        assert_eq!(
            b.frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [2, 3, 4]
        );
    }

    #[tokio::test]
    async fn a_closed_queue_refuses_frames() {
        let q = Queue::<()>::new(4, QueuePolicy::BLOCK);
        q.close_with(());
        assert!(matches!(q.try_push(frame(1)), Ok(Pushed::Closed)));
    }
}
