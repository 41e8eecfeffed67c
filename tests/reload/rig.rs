//! The rig the reload tests share: a real simulator, a real `Service` started from a
//! pipeline.toml written into a temporary directory, and helpers to rewrite that file, swap
//! component files in place, and read what the plugins wrote.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rtms_config::{LoadOptions, MapEnv, Pipeline};
use rtms_host::dataplane::stats::{MetricsSnapshot, PluginSnapshot};
use rtms_host::service::{Service, StartOptions};
use rtms_sim::{MeetingHandle, MeetingOptions, MeetingScript, Pace, SimConfig, Simulator};

use crate::util::{cache_dir, component};

pub const CLIENT_ID: &str = "reload-client";
pub const CLIENT_SECRET: &str = "reload-client-secret";
pub const WEBHOOK_SECRET: &str = "reload-webhook-secret";

pub fn env() -> MapEnv {
    MapEnv::new()
        .with("ZM_RTMS_CLIENT", CLIENT_ID)
        .with("ZM_RTMS_SECRET", CLIENT_SECRET)
        .with("ZOOM_SECRET_TOKEN", WEBHOOK_SECRET)
}

/// Installs a log writer for the test (once per process); `RUST_LOG` refines it.
pub fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// One `[[plugin]]` section.
#[derive(Clone)]
pub struct PluginToml {
    pub name: String,
    pub component: PathBuf,
    /// `[plugin.config]` pairs; values are written as TOML strings unless they parse as an
    /// integer.
    pub config: Vec<(String, String)>,
    pub batch_max: Option<usize>,
    /// `[plugin.restart] max_failures` (the circuit breaker).
    pub max_failures: u32,
    /// Appended to the section verbatim (`[plugin.queue]`, `[plugin.limits]` ...).
    pub extra: String,
}

impl PluginToml {
    pub fn new(name: &str, component: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            component: component.into(),
            config: Vec::new(),
            batch_max: None,
            max_failures: 1000,
            extra: String::new(),
        }
    }

    /// Appends `toml` to the section.
    pub fn with(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self
    }

    pub fn cfg(mut self, k: &str, v: &str) -> Self {
        self.config.push((k.into(), v.into()));
        self
    }

    fn render(&self, out_dir: &Path) -> String {
        let mut s = format!(
            "\n[[plugin]]\nname = \"{}\"\ncomponent = \"{}\"\nmedia = [\"transcript\"]\n\n\
             [[plugin.dir]]\nhost = \"{}\"\nguest = \"/out\"\n\n\
             [plugin.restart]\nbase_delay_ms = 10\nmax_delay_ms = 50\nmax_failures = {}\nwindow_ms = 60000\n",
            self.name,
            self.component.display(),
            out_dir.display(),
            self.max_failures
        );
        if let Some(n) = self.batch_max {
            s.push_str(&format!("\n[plugin.batch]\nmax_frames = {n}\n"));
        }
        s.push_str(&self.extra);
        if !self.config.is_empty() {
            s.push_str("\n[plugin.config]\n");
            for (k, v) in &self.config {
                if v.parse::<i64>().is_ok() {
                    s.push_str(&format!("{k} = {v}\n"));
                } else {
                    s.push_str(&format!("{k} = \"{v}\"\n"));
                }
            }
        }
        s
    }
}

/// A whole pipeline.toml.
#[derive(Clone)]
pub struct PipelineToml {
    pub listen: String,
    pub watch: bool,
    pub plugins: Vec<PluginToml>,
    /// The `[admin]` section, verbatim.
    pub admin: String,
    /// Appended verbatim (broken files, extra sections).
    pub extra: String,
}

impl PipelineToml {
    pub fn new(plugins: Vec<PluginToml>) -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            watch: false,
            plugins,
            admin: "[admin]\nlisten = \"127.0.0.1:0\"\nreload_min_interval_ms = 0\n".into(),
            extra: String::new(),
        }
    }

    pub fn render(&self, dir: &Path) -> String {
        let mut s = format!(
            "version = 1\n\n[server]\nlisten = \"{}\"\n\n{}\n\
             [rtms]\nmedia = [\"transcript\"]\nallowed_hosts = [\"127.0.0.1\", \"localhost\"]\nallow_insecure_ws = true\n\n\
             [runtime]\ncache_dir = \"{}\"\nepoch_tick_ms = 5\ndead_letter_dir = \"{}\"\nshutdown_grace_ms = 5000\n\n\
             [runtime.reload]\nwatch = {}\ndebounce_ms = 50\n",
            self.listen,
            self.admin,
            cache_dir().display(),
            dir.join("dead").display(),
            self.watch
        );
        for p in &self.plugins {
            s.push_str(&p.render(&dir.join("out")));
        }
        s.push_str(&self.extra);
        s
    }
}

/// A temporary directory holding pipeline.toml, `out/` (granted to every plugin as `/out`)
/// and `dead/` (dead letters).
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
}

impl Rig {
    pub async fn new() -> Self {
        logs();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("out")).expect("out dir");
        let sim = Simulator::start(SimConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            webhook_secret: WEBHOOK_SECRET.into(),
            ..Default::default()
        })
        .await
        .expect("simulator starts");
        Self { dir, sim }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn pipeline_path(&self) -> PathBuf {
        self.path().join("pipeline.toml")
    }

    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    pub fn dead(&self) -> PathBuf {
        self.path().join("dead")
    }

    /// Writes pipeline.toml the way an editor that saves atomically does.
    pub fn write_pipeline(&self, p: &PipelineToml) {
        write_atomic(&self.pipeline_path(), p.render(self.path()).as_bytes());
    }

    pub fn write_pipeline_text(&self, text: &str) {
        write_atomic(&self.pipeline_path(), text.as_bytes());
    }

    /// Copies a built component into the rig directory under `name`.
    pub fn install(&self, build: &str, name: &str) -> PathBuf {
        let dst = self.path().join(name);
        let bytes = std::fs::read(component(build)).expect("built component");
        write_atomic(&dst, &bytes);
        dst
    }

    /// Writes `p`, loads it and starts a service on 127.0.0.1 port 0, with its admin
    /// listener on another.
    pub async fn start(&self, p: &PipelineToml) -> Service {
        self.try_start(p, &env(), "127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("service starts: {e:#}"))
    }

    /// Writes `p`, loads it with `env` and starts a service with its admin listener bound to
    /// `admin_bind`.
    pub async fn try_start(
        &self,
        p: &PipelineToml,
        env: &MapEnv,
        admin_bind: &str,
    ) -> anyhow::Result<Service> {
        self.write_pipeline(p);
        let pipeline = Pipeline::load(&self.pipeline_path(), env, LoadOptions::default())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin_listener = tokio::net::TcpListener::bind(admin_bind)
            .await
            .expect("bind the admin listener");
        Service::start(
            pipeline,
            Box::new(env.clone()),
            listener,
            StartOptions {
                tap: None,
                watch: Some(p.watch),
                admin_listener: Some(admin_listener),
                ..Default::default()
            },
        )
        .await
    }

    /// Starts a real-time meeting of `lines` transcript lines, one every 20 ms, with its
    /// webhook pointed at `svc`.
    pub fn meeting(&self, svc: &Service, stream: &str, lines: usize) -> MeetingHandle {
        let script = MeetingScript::builder()
            .synthetic_speech(2, lines, 1)
            .build()
            .expect("script");
        self.sim
            .start_meeting(
                script,
                MeetingOptions {
                    pace: Pace::Realtime,
                    webhook_url: Some(format!("http://{}/webhook", svc.addr())),
                    stream_id: Some(stream.into()),
                    ..Default::default()
                },
            )
            .expect("meeting starts")
    }
}

/// Writes `bytes` beside `path` and renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

pub fn plugin(m: &MetricsSnapshot, name: &str) -> PluginSnapshot {
    m.plugins.get(name).cloned().unwrap_or_default()
}

/// Polls `cond` every 5 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for a plugin to have delivered more than `n` frames.
pub async fn delivered_beyond(svc: &Service, name: &str, n: u64) -> u64 {
    wait_for(
        &format!("{name} to get frames beyond {n}"),
        Duration::from_secs(8),
        || plugin(&svc.metrics(), name).delivered > n,
    )
    .await;
    plugin(&svc.metrics(), name).delivered
}

/// Stops the meeting and waits for the host to end its session; the host keeps running.
pub async fn end_meeting(svc: &Service, meeting: MeetingHandle) {
    meeting.stop(rtms_proto::codes::stop_reason::MEETING_ENDED);
    tokio::time::timeout(Duration::from_secs(20), meeting.finished())
        .await
        .expect("the meeting finishes");
    tokio::time::timeout(Duration::from_secs(20), svc.sessions().idle())
        .await
        .expect("the host ends the session");
}

/// The frames waiting in `plugin`'s queue on the live session of `stream` (0 when there is
/// none).
pub fn queue_depth(svc: &Service, stream: &str, plugin: &str) -> usize {
    svc.shared()
        .sessions()
        .iter()
        .filter(|s| &*s.stream_id == stream)
        .flat_map(|s| s.queue_depths())
        .find(|(name, _)| &**name == plugin)
        .map_or(0, |(_, n)| n)
}

/// Stops the meeting, waits for the host to end its session, shuts the host down.
/// Returns the texts the simulator sent and the final metrics.
pub async fn finish(svc: Service, meeting: MeetingHandle) -> (Vec<String>, MetricsSnapshot) {
    meeting.stop(rtms_proto::codes::stop_reason::MEETING_ENDED);
    let ledger = tokio::time::timeout(Duration::from_secs(10), meeting.finished())
        .await
        .expect("the meeting finishes");
    tokio::time::timeout(Duration::from_secs(10), svc.sessions().idle())
        .await
        .expect("the host ends the session");
    let m = svc.shutdown().await;
    let texts = ledger
        .transcript_lines()
        .into_iter()
        .map(|l| l.text)
        .collect();
    (texts, m)
}

/// The lines (`seq`, text) a seq-recorder file lists, and its `#` lines.
pub fn recorder_file(path: &Path) -> (Vec<(u64, String)>, Vec<String>) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut frames = Vec::new();
    let mut marks = Vec::new();
    for l in text.lines() {
        if l.starts_with('#') {
            marks.push(l.to_owned());
        } else {
            let mut parts = l.splitn(3, '\t');
            let seq = parts.next().and_then(|s| s.parse().ok()).expect("seq");
            let _kind = parts.next();
            frames.push((seq, parts.next().unwrap_or("").to_owned()));
        }
    }
    (frames, marks)
}

/// The transcript writer's JSON Lines file in `out` (the one `.jsonl` there).
pub fn writer_lines(out: &Path) -> Vec<serde_json::Value> {
    let file = std::fs::read_dir(out)
        .expect("out dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("the transcript writer wrote a .jsonl file");
    std::fs::read_to_string(&file)
        .expect("read transcript")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// The seqs of the frames in a plugin's dead-letter file.
pub fn dead_letter_seqs(dead: &Path, plugin: &str) -> Vec<u64> {
    let path = dead.join(format!("{plugin}.deadletter.jsonl"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    text.lines()
        .flat_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("dead letter is JSON");
            v["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .map(|f| f["seq"].as_u64().expect("seq"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The content hash of a file, as the runtime names component versions.
pub fn file_hash(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The hash of the component the published table runs for `name`.
pub fn serving_hash(svc: &Service, name: &str) -> Option<String> {
    svc.shared()
        .table
        .load()
        .get(name)
        .map(|e| e.code.hash.clone())
}

/// Waits until the published table runs the component with `hash` for `name`.
pub async fn serving(svc: &Service, name: &str, hash: &str) {
    wait_for(
        &format!("{name} to run version {}", &hash[..12]),
        Duration::from_secs(8),
        || serving_hash(svc, name).as_deref() == Some(hash),
    )
    .await;
}
