//! The harness shared by the test modules: component paths, a host core with sinks, and
//! builders for plugin entries.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rtms_host::dataplane::queue::QueuePolicy;
use rtms_host::dataplane::registry::{LiveStream, Registry, SessionDesc};
use rtms_host::dataplane::routes::{Filter, MediaKinds, PluginEntry, RestartPolicy, RouteTable};
use rtms_host::dataplane::stats::Metrics;
use rtms_host::outputs::deadletter::DeadLetters;
use rtms_host::outputs::{Sink, SinkSet, SinkTarget, start_sinks};
use rtms_host::sandbox::bindings::{EndReason, Frame, MediaKind, TranscriptInfo};
use rtms_host::sandbox::store::{Grant, Rates, ResourceLimits};
use rtms_host::sandbox::{InstanceSpec, Runtime, RuntimeConfig};

/// A compiled component of the plugins workspace.
pub fn component(name: &str) -> PathBuf {
    Path::new(rtms_host::cli::demo::BUILT_PLUGINS_DIR).join(format!("{name}.wasm"))
}

/// The compile cache shared by every test run, so components compile once.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// A runtime as the host runs by default: instances from a pool (`[runtime] pool = "auto"`),
/// here sized for 200 streams of one plugin (4 GiB slots, as a small pipeline gets).
pub fn runtime() -> Runtime {
    let need = rtms_config::PoolNeed {
        streams: 200,
        plugins: 1,
        largest_memory: 256 << 20,
    };
    Runtime::new(&RuntimeConfig {
        cache_dir: Some(cache_dir()),
        epoch_tick: Duration::from_millis(2),
        pool: Some(rtms_config::PoolPlan::size(need, None).expect("sized")),
        ..Default::default()
    })
    .expect("runtime")
}

/// A runtime whose instances each map their own memory (`[runtime] pool = "off"`).
pub fn runtime_on_demand() -> Runtime {
    Runtime::new(&RuntimeConfig {
        cache_dir: Some(cache_dir()),
        epoch_tick: Duration::from_millis(2),
        ..Default::default()
    })
    .expect("runtime")
}

/// How a test wants one plugin set up.
#[derive(Clone)]
pub struct Plug {
    pub name: &'static str,
    pub component: &'static str,
    pub kinds: Vec<MediaKind>,
    pub config: Vec<(String, String)>,
    pub grant_out: bool,
    pub call_timeout: Duration,
    pub memory_mb: usize,
    pub restart: RestartPolicy,
    pub capacity: usize,
    pub on_full: QueuePolicy,
    pub block_timeout: Duration,
    pub batch_max: usize,
    pub batch_wait: Duration,
    pub rates: Rates,
    pub quota_bytes: Option<u64>,
    /// The grant's `max_inodes`.
    pub max_inodes: Option<u64>,
    /// The grant's `symlinks`.
    pub symlinks: bool,
    /// Grant this subdirectory of the output directory (created) as `/out` instead.
    pub out_sub: Option<&'static str>,
    pub resources: ResourceLimits,
}

impl Plug {
    pub fn new(name: &'static str, component: &'static str) -> Self {
        Self {
            name,
            component,
            kinds: vec![
                MediaKind::Audio,
                MediaKind::Transcript,
                MediaKind::Chat,
                MediaKind::Event,
            ],
            config: Vec::new(),
            grant_out: true,
            call_timeout: Duration::from_millis(500),
            memory_mb: 32,
            restart: fast_restart(),
            capacity: 1024,
            on_full: QueuePolicy::BLOCK,
            block_timeout: Duration::from_secs(60),
            batch_max: 16,
            batch_wait: Duration::ZERO,
            rates: Rates::default(),
            quota_bytes: None,
            max_inodes: Some(100_000),
            symlinks: false,
            out_sub: None,
            resources: ResourceLimits::default(),
        }
    }

    pub fn cfg(mut self, k: &str, v: &str) -> Self {
        self.config.push((k.into(), v.into()));
        self
    }
}

/// Restarts quick enough for tests.
pub fn fast_restart() -> RestartPolicy {
    RestartPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        healthy_reset: Duration::from_secs(10),
        max_failures: 1000,
        window: Duration::from_secs(60),
        rollback_traps: 2,
        rollback_window: Duration::from_secs(10),
    }
}

pub struct Harness {
    pub shared: Arc<Registry>,
    pub sinks: Option<SinkSet>,
    pub dir: tempfile::TempDir,
    pub metrics: Arc<Metrics>,
}

impl Harness {
    pub fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn outputs_file(&self) -> PathBuf {
        self.dir.path().join("outputs.jsonl")
    }

    pub fn dead_letter_dir(&self) -> PathBuf {
        self.dir.path().join("dead")
    }

    /// Drops the host's output senders and waits for the sinks to flush; returns the
    /// outputs written, parsed.
    pub async fn finish(mut self) -> (Vec<serde_json::Value>, tempfile::TempDir) {
        let Harness {
            shared, sinks, dir, ..
        } = &mut self;
        let _ = shared;
        let sinks = sinks.take().expect("finish once");
        let dir = std::mem::replace(dir, tempfile::tempdir().unwrap());
        drop(self);
        sinks.finish().await;
        let text = std::fs::read_to_string(dir.path().join("outputs.jsonl")).unwrap_or_default();
        let outs = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("output line is JSON"))
            .collect();
        (outs, dir)
    }
}

pub async fn entry(
    rt: &Runtime,
    p: &Plug,
    out: &Path,
    generation: u64,
    metrics: &Metrics,
) -> Arc<PluginEntry> {
    let code = rt
        .load(&component(p.component))
        .await
        .expect("component loads");
    let grants = if p.grant_out {
        let host = match p.out_sub {
            Some(sub) => {
                let d = out.join(sub);
                std::fs::create_dir_all(&d).expect("create the granted subdirectory");
                d
            }
            None => out.to_owned(),
        };
        vec![Grant {
            host,
            guest: "/out".into(),
            read_only: false,
            quota_bytes: p.quota_bytes,
            max_inodes: p.max_inodes,
            symlinks: p.symlinks,
        }]
    } else {
        vec![]
    };
    Arc::new(PluginEntry {
        name: p.name.into(),
        code,
        spec: Arc::new(InstanceSpec {
            memory_bytes: p.memory_mb << 20,
            call_timeout: p.call_timeout,
            grants,
            resources: p.resources,
            config: p.config.clone(),
            caps: Default::default(),
            net: None,
        }),
        kinds: MediaKinds::of(p.kinds.iter().map(|&k| k.into())),
        filter: Filter::default(),
        queue_capacity: p.capacity,
        on_full: p.on_full,
        block_timeout: p.block_timeout,
        batch_max: p.batch_max,
        batch_wait: p.batch_wait,
        rates: p.rates,
        restart: p.restart.clone(),
        generation,
        replaced: Default::default(),
        stats: metrics.plugin(p.name),
    })
}

pub async fn table(
    rt: &Runtime,
    plugs: &[Plug],
    out: &Path,
    version: u64,
    metrics: &Metrics,
) -> RouteTable {
    let mut plugins = Vec::new();
    for p in plugs {
        plugins.push(entry(rt, p, out, version, metrics).await);
    }
    RouteTable { version, plugins }
}

pub async fn harness(plugs: &[Plug]) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let rt = runtime();
    let metrics = Arc::new(Metrics::default());
    let table = table(&rt, plugs, &dir.path().join("out"), 1, &metrics).await;
    let (outputs, sinks) = start_sinks(vec![Sink::all(SinkTarget::Jsonl {
        path: dir.path().join("outputs.jsonl"),
    })])
    .await
    .unwrap();
    let shared = Registry::new(
        rt,
        table,
        outputs,
        DeadLetters::new(Some(dir.path().join("dead"))),
        metrics.clone(),
        None,
    );
    Harness {
        shared,
        sinks: Some(sinks),
        dir,
        metrics,
    }
}

pub fn session(h: &Harness, stream: &str) -> Arc<LiveStream> {
    h.shared.open_session(SessionDesc {
        product: rtms_proto::Product::Meeting,
        meeting_id: format!("meeting-{stream}"),
        stream_id: stream.into(),
        operator_id: None,
        started_at_ms: 1_700_000_000_000,
        resumed: false,
        audio: None,
        details: Default::default(),
        fence: Default::default(),
    })
}

pub fn transcript(seq: u64, who: &str, text: &str) -> Frame {
    Frame {
        kind: MediaKind::Transcript,
        seq,
        timestamp_ms: 1_700_000_000_000 + seq * 1000,
        user_id: "16778240".into(),
        user_name: who.into(),
        payload: Vec::new(),
        text: Some(text.into()),
        transcript: Some(TranscriptInfo {
            start_ms: seq * 1000,
            end_ms: seq * 1000 + 900,
            language: 9,
        }),
        event_type: None,
    }
}

pub fn audio(seq: u64) -> Frame {
    Frame {
        kind: MediaKind::Audio,
        seq,
        timestamp_ms: 1_700_000_000_000 + seq * 20,
        user_id: "-1".into(),
        user_name: String::new(),
        payload: vec![0u8; 640],
        text: None,
        transcript: None,
        event_type: None,
    }
}

/// The seqs a seq-recorder (or trap) file lists, in order, skipping `#` lines.
pub fn recorded_seqs(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect()
}

pub async fn end(s: &LiveStream) {
    s.end(EndReason::Stopped(6)).await;
}

/// An embedder for one instance driven directly: keeps what the guest emits and what its
/// outgoing requests did, counts nothing else.
#[derive(Default)]
pub struct Recorder {
    pub outputs: parking_lot::Mutex<Vec<rtms_host::sandbox::bindings::Output>>,
    pub events: parking_lot::Mutex<Vec<rtms_host::sandbox::net::NetEvent>>,
}

impl rtms_host::sandbox::store::Embedder for Recorder {
    fn emit(
        &self,
        _ctx: &rtms_host::sandbox::store::InstanceCtx,
        out: rtms_host::sandbox::bindings::Output,
    ) {
        self.outputs.lock().push(out);
    }

    fn dropped(&self, _what: rtms_host::sandbox::store::Dropped) -> u64 {
        0
    }

    fn charged(&self, _what: &str, _units: u64) {}

    fn refused(&self, _what: rtms_host::sandbox::fs_limits::Refused) -> u64 {
        0
    }

    fn net(&self, event: rtms_host::sandbox::net::NetEvent) {
        self.events.lock().push(event);
    }
}

impl Recorder {
    /// How many of the guest's requests were stopped for `reason`.
    pub fn stopped(&self, reason: rtms_host::sandbox::net::Reason) -> usize {
        let e = self.events.lock();
        e.iter()
            .filter(|e| **e == rtms_host::sandbox::net::NetEvent::Stopped(reason))
            .count()
    }
}

/// A `[plugin.net]` allowing `patterns` (HTTP or WebSocket), with the defaults otherwise.
pub fn net_grant(patterns: &[&str]) -> rtms_config::Net {
    rtms_config::Net {
        http: patterns
            .iter()
            .map(|p| rtms_config::HttpRule::parse(p).unwrap())
            .collect(),
        allow_private: false,
        connect_timeout: Duration::from_secs(5),
        first_byte_timeout: Duration::from_secs(10),
        between_bytes_timeout: Duration::from_secs(10),
        max_response_bytes: 1024 * 1024,
        max_concurrent: 4,
        requests_per_minute: 60,
    }
}
