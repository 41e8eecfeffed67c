//! What happened to outputs: counters for the metrics, the byte budgets of the emit queue
//! and of each sink's queue, and the rate-limited log of drops.
//!
//! A byte budget is a [`Semaphore`] with one permit per byte: a record takes its size
//! before it goes on a queue and gives it back when the queue's consumer is done with it,
//! so `max - available` is what the queue holds right now.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::outputs::record::OutputRecord;
use rtms_config::{Sink, SinkTarget};

/// Why an output was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The queue held its byte bound.
    QueueBytes,
    /// The queue held its record bound.
    QueueFull,
    /// The sink could not deliver it (after its retries).
    Failed,
    /// The output path was shutting down.
    Closed,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueBytes,
        DropReason::QueueFull,
        DropReason::Failed,
        DropReason::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueBytes => "queue_bytes",
            DropReason::QueueFull => "queue_full",
            DropReason::Failed => "failed",
            DropReason::Closed => "closed",
        }
    }
}

/// Counters by [`DropReason`].
#[derive(Debug, Default)]
pub struct Drops([AtomicU64; 4]);

impl Drops {
    fn add(&self, r: DropReason) -> u64 {
        self.0[r as usize].fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize].load(Ordering::Relaxed)
    }
}

/// A queue's byte budget.
#[derive(Debug)]
pub struct Budget {
    pub(crate) permits: Arc<Semaphore>,
    /// The bound, in bytes.
    pub max: u64,
    /// The most the queue ever held.
    peak: AtomicU64,
}

impl Budget {
    fn new(max: u64) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS as u64);
        Self {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            peak: AtomicU64::new(0),
        }
    }

    /// Takes `n` bytes, or `None` when fewer are left; given back when the permit drops.
    pub(crate) fn take(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(u32::try_from(n).ok()?)
            .ok()?;
        self.peak.fetch_max(self.held(), Ordering::Relaxed);
        Some(permit)
    }

    /// The most the queue ever held, in bytes.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Bytes the queue holds now.
    pub fn held(&self) -> u64 {
        self.max - self.permits.available_permits() as u64
    }
}

/// One sink's counters and budget.
#[derive(Debug)]
pub struct SinkStats {
    /// `<type>-<index>`, as in pipeline.toml's order: `jsonl-0`, `http-1` (the metrics'
    /// `sink` label; never a path or URL).
    pub label: String,
    pub budget: Budget,
    pub delivered: AtomicU64,
    /// Attempts of an HTTP sink after a failed one.
    pub retries: AtomicU64,
    pub drops: Drops,
}

/// Counters of what happened to outputs.
#[derive(Debug)]
pub struct OutputStats {
    pub emitted: AtomicU64,
    /// Delivered by a sink (printed, written, or answered with a 2xx).
    pub delivered: AtomicU64,
    /// Dropped before the sinks, in all (see `emit_drops` for why).
    pub dropped: AtomicU64,
    pub emit_drops: Drops,
    /// Dropped by a sink (queue full or delivery failed), in all sinks.
    pub sink_failures: AtomicU64,
    /// The emit queue's byte budget.
    pub queue: Budget,
    /// One per `[[sink]]`, in order.
    pub sinks: Vec<Arc<SinkStats>>,
}

impl OutputStats {
    pub fn new(specs: &[Sink], queue_bytes: u64) -> Self {
        let sinks = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let kind = match s.target {
                    SinkTarget::Stdout => "stdout",
                    SinkTarget::Jsonl { .. } => "jsonl",
                    SinkTarget::Http { .. } => "http",
                };
                Arc::new(SinkStats {
                    label: format!("{kind}-{i}"),
                    budget: Budget::new(s.queue_bytes),
                    delivered: AtomicU64::new(0),
                    retries: AtomicU64::new(0),
                    drops: Drops::default(),
                })
            })
            .collect();
        Self {
            emitted: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            emit_drops: Drops::default(),
            sink_failures: AtomicU64::new(0),
            queue: Budget::new(queue_bytes),
            sinks,
        }
    }

    /// Counts and (rate-limited) logs an output dropped before the sinks.
    pub(crate) fn drop_emit(&self, rec: &OutputRecord, reason: DropReason) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        self.emit_drops.add(reason);
        if rtms_client::ratelog::admit("outputs-dropped") {
            tracing::warn!(plugin = %rec.plugin, stream = %rec.stream_id, kind = %rec.kind, reason = reason.as_str(), total, queued_bytes = self.queue.held(), max_bytes = self.queue.max, "outputs dropped: the output queue is full (the sinks fall behind; raise runtime.output_queue_mb or slow the plugin)");
        }
    }

    /// Counts and (rate-limited) logs an output a sink dropped.
    pub(crate) fn drop_sink(&self, sink: &SinkStats, rec: &OutputRecord, reason: DropReason) {
        self.sink_failures.fetch_add(1, Ordering::Relaxed);
        let n = sink.drops.add(reason);
        if reason != DropReason::Failed && rtms_client::ratelog::admit("sink-dropped") {
            tracing::warn!(sink = %sink.label, plugin = %rec.plugin, reason = reason.as_str(), dropped = n, queued_bytes = sink.budget.held(), max_bytes = sink.budget.max, "outputs dropped: the sink's queue is full (it falls behind; raise its queue_mb or fix the endpoint)");
        }
    }

    pub(crate) fn delivered(&self, sink: &SinkStats) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        sink.delivered.fetch_add(1, Ordering::Relaxed);
    }
}
