//! The bounded queue between a session and one plugin worker.
//!
//! It carries frames and, in band, control messages (swap to a new version, end), so a
//! reload or an end takes effect exactly between two frames: everything queued before the
//! marker goes to the old instance, everything after to the new one. When the queue holds
//! `capacity` frames, the plugin's policy decides: `Block` makes the producer wait (lossless;
//! the session's socket reader slows down), `DropOldest` discards the oldest queued frame
//! and counts it (real-time plugins that would rather skip than lag). Control messages are
//! never dropped and do not count against the capacity.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::bindings::Frame;

/// What a full queue does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullPolicy {
    Block,
    DropOldest,
}

/// A message in a worker's queue.
pub enum Item<C> {
    Frame(Frame),
    Control(C),
}

pub struct Queue<C> {
    inner: Mutex<Inner<C>>,
    /// Signalled when an item is pushed (one consumer).
    items: Notify,
    /// Signalled when frames are taken (producers waiting under `Block`).
    space: Notify,
    capacity: usize,
    policy: FullPolicy,
    /// Frames discarded under `DropOldest`.
    pub dropped: AtomicU64,
}

struct Inner<C> {
    items: VecDeque<Item<C>>,
    frames: usize,
}

/// What the consumer takes in one go: a run of frames, then maybe a control message that
/// followed them.
pub struct Batch<C> {
    pub frames: Vec<Frame>,
    pub control: Option<C>,
}

impl<C> Queue<C> {
    pub fn new(capacity: usize, policy: FullPolicy) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                frames: 0,
            }),
            items: Notify::new(),
            space: Notify::new(),
            capacity: capacity.max(1),
            policy,
            dropped: AtomicU64::new(0),
        })
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.inner.lock().frames
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a frame, waiting for space under `Block`. Returns the number of frames it
    /// had to drop (0 or 1) under `DropOldest`.
    pub async fn push_frame(&self, frame: Frame) -> u64 {
        let mut frame = Some(frame);
        loop {
            let space = self.space.notified();
            {
                let mut q = self.inner.lock();
                if q.frames < self.capacity {
                    q.items
                        .push_back(Item::Frame(frame.take().expect("pushed once")));
                    q.frames += 1;
                    drop(q);
                    self.items.notify_one();
                    return 0;
                }
                if self.policy == FullPolicy::DropOldest
                    && let Some(pos) = q.items.iter().position(|i| matches!(i, Item::Frame(_)))
                {
                    q.items.remove(pos);
                    q.items
                        .push_back(Item::Frame(frame.take().expect("pushed once")));
                    drop(q);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    self.items.notify_one();
                    return 1;
                }
            }
            space.await;
        }
    }

    /// Queues a control message behind everything already queued. Never waits.
    pub fn push_control(&self, c: C) {
        self.inner.lock().items.push_back(Item::Control(c));
        self.items.notify_one();
    }

    /// Waits for at least one item, then takes up to `max_frames` consecutive frames and
    /// the control message right after them, if any.
    pub async fn next_batch(&self, max_frames: usize) -> Batch<C> {
        loop {
            let ready = self.items.notified();
            {
                let mut q = self.inner.lock();
                if !q.items.is_empty() {
                    let mut frames = Vec::new();
                    let mut control = None;
                    while frames.len() < max_frames.max(1) {
                        match q.items.pop_front() {
                            Some(Item::Frame(f)) => frames.push(f),
                            Some(Item::Control(c)) => {
                                control = Some(c);
                                break;
                            }
                            None => break,
                        }
                    }
                    q.frames -= frames.len();
                    drop(q);
                    if !frames.is_empty() {
                        self.space.notify_waiters();
                    }
                    return Batch { frames, control };
                }
            }
            ready.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::MediaKind;

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

    #[tokio::test]
    async fn controls_split_batches_and_keep_order() {
        let q = Queue::<&'static str>::new(8, FullPolicy::Block);
        q.push_frame(frame(1)).await;
        q.push_frame(frame(2)).await;
        q.push_control("swap");
        q.push_frame(frame(3)).await;
        let b = q.next_batch(10).await;
        assert_eq!(b.frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(b.control, Some("swap"));
        let b = q.next_batch(10).await;
        assert_eq!(b.frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [3]);
        assert!(b.control.is_none());
    }

    #[tokio::test]
    async fn drop_oldest_discards_and_counts() {
        let q = Queue::<()>::new(2, FullPolicy::DropOldest);
        for s in 1..=5 {
            q.push_frame(frame(s)).await;
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 3);
        let b = q.next_batch(10).await;
        assert_eq!(b.frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [4, 5]);
    }

    #[tokio::test]
    async fn block_waits_for_space_and_loses_nothing() {
        let q = Queue::<()>::new(2, FullPolicy::Block);
        let producer = {
            let q = q.clone();
            tokio::spawn(async move {
                for s in 1..=100 {
                    q.push_frame(frame(s)).await;
                }
            })
        };
        let mut seen = Vec::new();
        while seen.len() < 100 {
            let b = q.next_batch(3).await;
            assert!(b.frames.len() <= 3);
            seen.extend(b.frames.iter().map(|f| f.seq));
        }
        producer.await.unwrap();
        assert_eq!(seen, (1..=100).collect::<Vec<_>>());
        assert_eq!(q.dropped.load(Ordering::Relaxed), 0);
    }
}
