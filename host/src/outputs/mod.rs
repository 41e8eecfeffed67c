//! Outputs plugins emit (`host.emit`) and the sinks they go to: stdout, a JSON Lines file,
//! an HTTP endpoint.
//!
//! `emit` runs inside a guest call, so it never blocks: it puts the record on a bounded
//! channel (a full channel drops the record, counted and logged). One dispatcher task fans
//! records out to the sinks; each sink runs in its own task behind its own bounded queue so a
//! slow HTTP endpoint never delays the stdout or file sinks.

pub mod deadletter;
pub mod record;
pub mod tap;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use rtms_config::{Severity, Sink, SinkFilter, SinkTarget};

use crate::outputs::tap::TapHub;
pub use record::OutputRecord;

/// Records waiting for the dispatcher before `emit` starts dropping.
const OUTPUT_QUEUE: usize = 65_536;
/// Records waiting for one sink before that sink starts dropping.
const SINK_QUEUE: usize = 16_384;

/// The sending side handed to every instance. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outputs {
    tx: mpsc::Sender<OutputRecord>,
    stats: Arc<OutputStats>,
    /// The live tap (frames are published there by the sessions, outputs here).
    tap: Arc<TapHub>,
}

/// Counters of what happened to outputs.
#[derive(Debug, Default)]
pub struct OutputStats {
    pub emitted: AtomicU64,
    /// Delivered by a sink (printed, written, or answered with a 2xx).
    pub delivered: AtomicU64,
    /// Dropped because the dispatcher queue was full.
    pub dropped: AtomicU64,
    /// Dropped by a sink (queue full or delivery failed).
    pub sink_failures: AtomicU64,
    drop_warning: Throttle,
    sink_warning: Throttle,
}

/// Reports a run of drops once when it starts, then at most once every ten seconds with the
/// count since the last report, instead of once per item.
#[derive(Debug, Default)]
struct Throttle {
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Throttle {
    /// Counts one drop; returns the drops to report now, if a report is due.
    fn due(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.1 += 1;
        let now = std::time::Instant::now();
        if st
            .0
            .is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(10))
        {
            st.0 = Some(now);
            return Some(std::mem::take(&mut st.1));
        }
        None
    }
}

impl Outputs {
    pub fn send(&self, rec: OutputRecord) {
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        self.tap.output(&rec);
        if let Err(e) = self.tx.try_send(rec) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            let rec = match e {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            if let Some(n) = self.stats.drop_warning.due() {
                tracing::warn!(plugin = %rec.plugin, stream = %rec.stream_id, kind = %rec.kind, dropped = n, total = self.stats.dropped.load(Ordering::Relaxed), "outputs dropped: the output queue is full or closed");
            }
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

/// Starts the sinks and returns the handle instances emit through.
pub async fn start_sinks(specs: Vec<Sink>) -> anyhow::Result<(Outputs, SinkSet)> {
    let stats = Arc::new(OutputStats::default());
    let (tx, mut rx) = mpsc::channel::<OutputRecord>(OUTPUT_QUEUE);
    let mut lanes = Vec::new();
    let mut tasks = JoinSet::new();
    for spec in specs {
        let (stx, srx) = mpsc::channel::<Arc<OutputRecord>>(SINK_QUEUE);
        match &spec.target {
            SinkTarget::Stdout => {
                tasks.spawn(run_stdout(srx, stats.clone()));
            }
            SinkTarget::Jsonl { path } => {
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir).await.ok();
                }
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("cannot open output file {}: {e}", path.display())
                    })?;
                tasks.spawn(run_jsonl(srx, file, stats.clone()));
            }
            SinkTarget::Http { url } => {
                tasks.spawn(run_http(srx, url.clone(), stats.clone()));
            }
        }
        lanes.push((spec, stx));
    }
    let dstats = stats.clone();
    let dispatcher = tokio::spawn(async move {
        while let Some(rec) = rx.recv().await {
            let rec = Arc::new(rec);
            for (spec, lane) in &lanes {
                if spec.filter.matches(&rec.plugin, &rec.kind, rec.severity)
                    && lane.try_send(rec.clone()).is_err()
                {
                    dstats.sink_failures.fetch_add(1, Ordering::Relaxed);
                    if let Some(n) = dstats.sink_warning.due() {
                        tracing::warn!(sink = ?spec.target, plugin = %rec.plugin, dropped = n, "outputs dropped: sink queue full");
                    }
                }
            }
        }
        drop(lanes);
        while tasks.join_next().await.is_some() {}
    });
    let outputs = Outputs {
        tx,
        stats,
        tap: Arc::default(),
    };
    Ok((outputs, SinkSet { dispatcher }))
}

impl SinkSet {
    /// Waits until every record sent before the last `Outputs` was dropped is written.
    pub async fn finish(self) {
        let _ = self.dispatcher.await;
    }
}

async fn run_stdout(mut rx: mpsc::Receiver<Arc<OutputRecord>>, stats: Arc<OutputStats>) {
    while let Some(r) = rx.recv().await {
        println!("{}", r.human());
        stats.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

async fn run_jsonl(
    mut rx: mpsc::Receiver<Arc<OutputRecord>>,
    file: tokio::fs::File,
    stats: Arc<OutputStats>,
) {
    let mut w = tokio::io::BufWriter::new(file);
    while let Some(r) = rx.recv().await {
        let mut line = serde_json::to_vec(&*r).unwrap_or_default();
        line.push(b'\n');
        if let Err(e) = w.write_all(&line).await {
            stats.sink_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot write output to the JSON Lines sink");
        } else {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        }
        // Flush when the queue is drained, so the file is current without a syscall per line.
        if rx.is_empty() {
            let _ = w.flush().await;
        }
    }
    let _ = w.flush().await;
}

async fn run_http(mut rx: mpsc::Receiver<Arc<OutputRecord>>, url: String, stats: Arc<OutputStats>) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    while let Some(r) = rx.recv().await {
        let body = serde_json::to_vec(&*r).unwrap_or_default();
        let req = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)));
        let result = match req {
            Ok(req) => client
                .request(req)
                .await
                .map_err(|e| e.to_string())
                .and_then(|resp| {
                    if resp.status().is_success() {
                        Ok(())
                    } else {
                        Err(format!("HTTP {}", resp.status()))
                    }
                }),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            stats.sink_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(url = %url, error = %e, plugin = %r.plugin, "HTTP sink could not deliver an output");
        } else {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}
