//! Outputs plugins emit (`host.emit`) and the sinks they go to: stdout, a JSON Lines file,
//! an HTTP endpoint.
//!
//! `emit` runs inside a guest call, so it never blocks: it puts the record on a channel
//! bounded in records and in bytes (`[runtime] output_queue_mb`); a full one drops the
//! record, counted with its reason and logged at a bounded rate. One dispatcher task fans
//! records out to the sinks; each sink runs in its own task behind its own queue, bounded
//! the same way (`[[sink]] queue_mb`), so a slow or hung HTTP endpoint never delays the
//! stdout or file sinks and never holds more than its queue's bytes. A record is built once
//! and shared (`Arc`) by the sinks and the tap; its bytes count against every queue that
//! holds it until that queue's sink is done with it.
//!
//! The HTTP sink is in [`http`]; the byte accounting and counters in [`stats`].

pub mod deadletter;
pub mod http;
pub mod record;
pub mod stats;
pub mod tap;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rtms_client::ClientSettings;
use tokio::io::AsyncWriteExt;

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;

pub use rtms_config::{Delivery, Severity, Sink, SinkFilter, SinkTarget};

use crate::outputs::stats::{DropReason, SinkStats};
use crate::outputs::tap::TapHub;
pub use record::OutputRecord;
pub use stats::OutputStats;

/// Records waiting for the dispatcher before `emit` starts dropping (the byte bound
/// usually comes first).
const OUTPUT_QUEUE: usize = 65_536;
/// Records waiting for one sink before that sink starts dropping.
const SINK_QUEUE: usize = 16_384;

/// A record on a queue, with the bytes it holds of that queue's budget (given back when
/// the item is dropped).
pub(crate) struct Queued {
    pub rec: Arc<OutputRecord>,
    _bytes: OwnedSemaphorePermit,
}

/// The byte bounds of the output path (`[runtime] output_queue_mb`, `tap_mb`).
#[derive(Clone, Copy, Debug)]
pub struct OutputBounds {
    pub queue_bytes: u64,
    pub tap_bytes: u64,
}

impl Default for OutputBounds {
    fn default() -> Self {
        Self {
            queue_bytes: 64 << 20,
            tap_bytes: tap::DEFAULT_TAP_BYTES as u64,
        }
    }
}

impl From<&rtms_config::Runtime> for OutputBounds {
    fn from(r: &rtms_config::Runtime) -> Self {
        Self {
            queue_bytes: r.output_queue_bytes,
            tap_bytes: r.tap_bytes,
        }
    }
}

/// The sending side handed to every instance. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outputs {
    tx: mpsc::Sender<Queued>,
    stats: Arc<OutputStats>,
    /// The live tap (frames are published there by the sessions, outputs here).
    tap: Arc<TapHub>,
}

impl Outputs {
    pub fn send(&self, rec: OutputRecord) {
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        let rec = Arc::new(rec);
        self.tap.output(&rec);
        let Some(bytes) = self.stats.queue.take(rec.bytes()) else {
            return self.stats.drop_emit(&rec, DropReason::QueueBytes);
        };
        if let Err(e) = self.tx.try_send(Queued { rec, _bytes: bytes }) {
            let (reason, q) = match e {
                mpsc::error::TrySendError::Full(q) => (DropReason::QueueFull, q),
                mpsc::error::TrySendError::Closed(q) => (DropReason::Closed, q),
            };
            self.stats.drop_emit(&q.rec, reason);
        }
    }

    pub fn stats(&self) -> &Arc<OutputStats> {
        &self.stats
    }

    /// The live tap.
    pub fn tap(&self) -> &Arc<TapHub> {
        &self.tap
    }
}

/// The running sinks. Dropping every `Outputs` clone and awaiting [`SinkSet::finish`]
/// flushes and closes them.
pub struct SinkSet {
    dispatcher: tokio::task::JoinHandle<()>,
}

/// Starts the sinks with the default byte bounds; HTTP sinks connect directly.
pub async fn start_sinks(specs: Vec<Sink>) -> anyhow::Result<(Outputs, SinkSet)> {
    start_sinks_with(specs, OutputBounds::default(), &ClientSettings::direct()).await
}

/// Starts the sinks and returns the handle instances emit through; HTTP sinks reach their
/// endpoints as `net` says (`rtms.proxy`, `zoom.ca_file`).
pub async fn start_sinks_with(
    specs: Vec<Sink>,
    bounds: OutputBounds,
    net: &ClientSettings,
) -> anyhow::Result<(Outputs, SinkSet)> {
    let stats = Arc::new(OutputStats::new(&specs, bounds.queue_bytes));
    let (tx, rx) = mpsc::channel::<Queued>(OUTPUT_QUEUE);
    let mut lanes = Vec::new();
    let mut tasks = JoinSet::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let (stx, srx) = mpsc::channel::<Queued>(SINK_QUEUE);
        let sink = stats.sinks[i].clone();
        match &spec.target {
            SinkTarget::Stdout => {
                tasks.spawn(run_stdout(srx, stats.clone(), sink));
            }
            SinkTarget::Jsonl { path } => {
                let file = open_private(path).await?;
                tasks.spawn(run_jsonl(srx, file, stats.clone(), sink));
            }
            SinkTarget::Http { url } => {
                let d = spec.delivery.clone();
                let client = http::client(&d, net)
                    .map_err(|e| anyhow::anyhow!("sink {url}: cannot set up its client: {e}"))?;
                tasks.spawn(http::run(srx, client, url.clone(), d, stats.clone(), sink));
            }
        }
        lanes.push((spec.filter, stats.sinks[i].clone(), stx));
    }
    let dispatcher = tokio::spawn(dispatch(rx, lanes, tasks, stats.clone()));
    let outputs = Outputs {
        tx,
        stats,
        tap: Arc::new(TapHub::new(bounds.tap_bytes as usize)),
    };
    Ok((outputs, SinkSet { dispatcher }))
}

type Lane = (SinkFilter, Arc<SinkStats>, mpsc::Sender<Queued>);

/// Fans each record out to the sinks whose filter it passes, each taking its bytes from
/// that sink's budget; ends when every `Outputs` is gone and the sinks have finished.
async fn dispatch(
    mut rx: mpsc::Receiver<Queued>,
    lanes: Vec<Lane>,
    mut tasks: JoinSet<()>,
    stats: Arc<OutputStats>,
) {
    while let Some(q) = rx.recv().await {
        let rec = &q.rec;
        for (filter, sink, lane) in &lanes {
            if !filter.matches(&rec.plugin, &rec.kind, rec.severity) {
                continue;
            }
            let Some(bytes) = sink.budget.take(rec.bytes()) else {
                stats.drop_sink(sink, rec, DropReason::QueueBytes);
                continue;
            };
            let item = Queued {
                rec: rec.clone(),
                _bytes: bytes,
            };
            if lane.try_send(item).is_err() {
                stats.drop_sink(sink, rec, DropReason::QueueFull);
            }
        }
    }
    drop(lanes);
    while tasks.join_next().await.is_some() {}
}

impl SinkSet {
    /// Waits until every record sent before the last `Outputs` was dropped is written.
    pub async fn finish(self) {
        let _ = self.dispatcher.await;
    }
}

/// Opens (or creates) a JSON Lines file for appending, readable by its owner only: outputs
/// carry what was said in meetings. A file left wider by an earlier version is narrowed.
async fn open_private(path: &std::path::Path) -> anyhow::Result<tokio::fs::File> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.ok();
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open output file {}: {e}", path.display()))?;
    restrict(&file.into_std().await, path)
        .map(tokio::fs::File::from_std)
        .map_err(|e| anyhow::anyhow!("cannot make {} private (0600): {e}", path.display()))
}

/// Narrows an open file to mode 0600 when its group or others may read or write it.
pub(crate) fn restrict(
    f: &std::fs::File,
    path: &std::path::Path,
) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::PermissionsExt;
    let mode = f.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o7777), "output file was readable by others: narrowed to 0600");
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.try_clone()
}

/// The stdout sink: tokio's stdout writes on the blocking pool, so a terminal or a pipe that
/// does not read holds up this lane only, never a runtime thread (`println!` would).
async fn run_stdout(mut rx: mpsc::Receiver<Queued>, stats: Arc<OutputStats>, sink: Arc<SinkStats>) {
    let mut w = tokio::io::BufWriter::new(tokio::io::stdout());
    while let Some(q) = rx.recv().await {
        let mut line = q.rec.human();
        line.push('\n');
        if let Err(e) = w.write_all(line.as_bytes()).await {
            stats.drop_sink(&sink, &q.rec, DropReason::Failed);
            if rtms_client::ratelog::admit("stdout-sink-failed") {
                tracing::error!(error = %e, "cannot write output to stdout");
            }
        } else {
            stats.delivered(&sink);
        }
        if rx.is_empty() {
            let _ = w.flush().await;
        }
    }
    let _ = w.flush().await;
}

async fn run_jsonl(
    mut rx: mpsc::Receiver<Queued>,
    file: tokio::fs::File,
    stats: Arc<OutputStats>,
    sink: Arc<SinkStats>,
) {
    let mut w = tokio::io::BufWriter::new(file);
    while let Some(q) = rx.recv().await {
        let mut line = serde_json::to_vec(&*q.rec).unwrap_or_default();
        line.push(b'\n');
        if let Err(e) = w.write_all(&line).await {
            stats.drop_sink(&sink, &q.rec, DropReason::Failed);
            if rtms_client::ratelog::admit("jsonl-sink-failed") {
                tracing::error!(error = %e, "cannot write output to the JSON Lines sink");
            }
        } else {
            stats.delivered(&sink);
        }
        // Flush when the queue is drained, so the file is current without a syscall per line.
        if rx.is_empty() {
            let _ = w.flush().await;
        }
    }
    let _ = w.flush().await;
}
