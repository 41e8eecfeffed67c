//! What every benchmark shares: component and cache paths, the pipeline text, starting a
//! host [`Service`] against the simulator's credentials, meeting scripts, and a recorder of
//! first/last frame times.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rtms_config::{LoadOptions, MapEnv, Pipeline};
use rtms_host::service::{Service, StartOptions};
use rtms_sim::{MeetingScript, SimConfig};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The simulator's default credentials (`rtms-protocol.md` decision 3), which the host is
/// given too.
pub const CLIENT_ID: &str = "test_client_id";
pub const CLIENT_SECRET: &str = "test_client_secret";
pub const WEBHOOK_SECRET: &str = "test_webhook_secret";

/// The workspace root (the parent of `benches/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A component built by the host's build script.
pub fn component(name: &str) -> PathBuf {
    Path::new(rtms_host::cli::demo::BUILT_PLUGINS_DIR).join(format!("{name}.wasm"))
}

/// Where results and the warm compile cache live.
pub fn bench_dir() -> PathBuf {
    workspace().join("target/bench")
}

/// The compile cache shared by runs, so only the cold start-up case compiles.
pub fn warm_cache() -> PathBuf {
    bench_dir().join("component-cache")
}

pub fn env() -> MapEnv {
    MapEnv::new()
        .with("ZM_RTMS_CLIENT", CLIENT_ID)
        .with("ZM_RTMS_SECRET", CLIENT_SECRET)
        .with("ZOOM_SECRET_TOKEN", WEBHOOK_SECRET)
}

/// A simulator configuration matching [`env`], plain `ws://`.
pub fn sim_config() -> SimConfig {
    SimConfig {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        ..SimConfig::default()
    }
}

/// One `[[plugin]]` of a benchmark pipeline.
#[derive(Clone, Debug)]
pub struct PluginDef {
    pub name: String,
    pub component: PathBuf,
    pub media: Vec<&'static str>,
    /// `"block"` or `"drop-oldest"`; `None` keeps the default for the media.
    pub on_full: Option<&'static str>,
    pub capacity: usize,
    pub batch_max: usize,
    /// `[plugin.batch] max_wait_ms`; `None` keeps the default (0).
    pub batch_wait_ms: Option<u64>,
    /// `[plugin.queue] block_timeout_ms`; `None` keeps the default.
    pub block_timeout_ms: Option<u64>,
    /// More tables of this plugin, as TOML text (`[plugin.limits]`, `[plugin.restart]`).
    pub tables: String,
    /// `key = <toml value>` lines of `[plugin.config]`.
    pub config: Vec<(String, String)>,
}

impl PluginDef {
    pub fn new(name: &str, component_name: &str, media: &[&'static str]) -> Self {
        Self {
            name: name.into(),
            component: component(component_name),
            media: media.to_vec(),
            on_full: None,
            capacity: 1024,
            batch_max: 32,
            batch_wait_ms: None,
            block_timeout_ms: None,
            tables: String::new(),
            config: Vec::new(),
        }
    }

    pub fn cfg(mut self, key: &str, toml_value: &str) -> Self {
        self.config.push((key.into(), toml_value.into()));
        self
    }

    /// A batch takes what is queued, without waiting for a fuller one.
    pub fn no_batch_wait(mut self) -> Self {
        self.batch_wait_ms = Some(0);
        self
    }

    /// A batch waits up to `ms` after its oldest frame for more (`[plugin.batch]
    /// max_wait_ms`).
    pub fn batch_wait(mut self, ms: u64) -> Self {
        self.batch_wait_ms = Some(ms);
        self
    }

    pub fn block(mut self) -> Self {
        self.on_full = Some("block");
        self
    }

    /// noop on the given kinds.
    pub fn noop(media: &[&'static str]) -> Self {
        Self::new("noop", "noop", media)
    }

    /// transcript-writer writing text files to `/out`.
    pub fn transcript_writer(component_name: &str) -> Self {
        Self::new("transcript-writer", component_name, &["transcript", "chat"])
            .cfg("dir", "\"/out\"")
            .cfg("format", "\"text\"")
            .cfg("include_chat", "true")
    }

    /// audio-recorder writing WAV files to `/out`.
    pub fn audio_recorder() -> Self {
        Self::new("audio-recorder", "audio_recorder", &["audio"]).cfg("dir", "\"/out\"")
    }

    /// The rms-meter fixture: reads every audio sample.
    pub fn rms_meter() -> Self {
        Self::new("rms-meter", "rms_meter", &["audio"])
    }

    pub fn keyword_alerter() -> Self {
        Self::new(
            "keyword-alerter",
            "keyword_alerter",
            &["transcript", "chat"],
        )
        .cfg("keywords", "[\"refund\", \"escalate\"]")
        .cfg("include_chat", "true")
    }
}

/// A benchmark pipeline.
#[derive(Clone, Debug)]
pub struct PipeDef {
    pub plugins: Vec<PluginDef>,
    /// `[rtms] media`; `None` requests what the plugins subscribe to.
    pub media: Option<Vec<&'static str>>,
    pub frame_ms: u32,
    pub cache_dir: PathBuf,
    pub debounce_ms: u64,
    /// `[rtms] max_streams`; `None` keeps the default (2000).
    pub max_streams: Option<usize>,
    /// `[runtime] threads`; `None` leaves the default (one per CPU the process may run on).
    pub threads: Option<u32>,
}

impl PipeDef {
    pub fn new(plugins: Vec<PluginDef>) -> Self {
        Self {
            plugins,
            media: None,
            frame_ms: 20,
            cache_dir: warm_cache(),
            debounce_ms: 200,
            max_streams: None,
            threads: None,
        }
    }

    /// The `[server]` section. The simulator posts every meeting's started webhook at once,
    /// all from 127.0.0.1; Zoom posts from many addresses. Without room for them, a
    /// saturated host's listener would close the oldest of one peer's connections to admit
    /// new ones, and the bench would measure that defence instead of the host.
    fn server(&self) -> String {
        let mut t = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
        if let Some(n) = self.max_streams {
            let room = (2 * n).max(1024);
            t += &format!("max_connections = {room}\nmax_connections_per_peer = {room}\n");
        }
        t
    }

    /// The pipeline.toml text; `dir` holds the output directory and files.
    pub fn toml(&self, dir: &Path) -> String {
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let mut t = format!("version = 1\n\n{}\n", self.server());
        t += "[rtms]\nsocket_mode = \"unified\"\n";
        t += "allowed_hosts = [\"127.0.0.1\", \"localhost\"]\nallow_insecure_ws = true\n";
        if let Some(n) = self.max_streams {
            t += &format!("max_streams = {n}\n");
        }
        if let Some(m) = &self.media {
            let list: Vec<String> = m.iter().map(|k| format!("{k:?}")).collect();
            t += &format!("media = [{}]\n", list.join(", "));
        }
        let audio = self.media.as_ref().map_or_else(
            || self.plugins.iter().any(|p| p.media.contains(&"audio")),
            |m| m.contains(&"audio"),
        );
        if audio {
            t += &format!(
                "\n[rtms.audio]\ncodec = \"l16\"\nsample_rate = 16000\nframe_ms = {}\n",
                self.frame_ms
            );
        }
        t += &format!(
            "\n[runtime]\ncache_dir = {}\nepoch_tick_ms = 5\ndead_letter_dir = {}\nshutdown_grace_ms = 20000\n\n[runtime.reload]\nwatch = false\ndebounce_ms = {}\n",
            q(&self.cache_dir),
            q(&dir.join("dead-letter")),
            self.debounce_ms
        );
        if let Some(n) = self.threads {
            t = t.replacen("[runtime]\n", &format!("[runtime]\nthreads = {n}\n"), 1);
        }
        if let Ok(extra) = std::env::var("RTMS_BENCH_RUNTIME") {
            t = t.replacen(
                "[runtime]\n",
                &format!("[runtime]\n{}\n", extra.replace(';', "\n")),
                1,
            );
        }
        for p in &self.plugins {
            let media: Vec<String> = p.media.iter().map(|k| format!("{k:?}")).collect();
            t += &format!(
                "\n[[plugin]]\nname = {:?}\ncomponent = {}\nmedia = [{}]\n\n[[plugin.dir]]\nhost = {}\nguest = \"/out\"\n\n[plugin.queue]\ncapacity = {}\n",
                p.name,
                q(&p.component),
                media.join(", "),
                q(&dir.join("out")),
                p.capacity
            );
            if let Some(f) = p.on_full {
                t += &format!("on_full = {f:?}\n");
            }
            if let Some(ms) = p.block_timeout_ms {
                t += &format!("block_timeout_ms = {ms}\n");
            }
            t += &format!("\n[plugin.batch]\nmax_frames = {}\n", p.batch_max);
            if let Some(w) = p.batch_wait_ms {
                t += &format!("max_wait_ms = {w}\n");
            }
            t += &p.tables;
            if !p.config.is_empty() {
                t += "\n[plugin.config]\n";
                for (k, v) in &p.config {
                    t += &format!("{k} = {v}\n");
                }
            }
        }
        t += &format!(
            "\n[[sink]]\ntype = \"jsonl\"\npath = {}\n",
            q(&dir.join("outputs.jsonl"))
        );
        t
    }

    /// Writes pipeline.toml into `dir` and validates it.
    pub fn pipeline(&self, dir: &Path) -> Result<Pipeline> {
        std::fs::create_dir_all(dir.join("out"))?;
        let text = self.toml(dir);
        let path = dir.join("pipeline.toml");
        std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        Pipeline::parse(&text, &path, &env(), LoadOptions::default())
            .map_err(|e| anyhow::anyhow!("benchmark pipeline is invalid: {e}\n{text}"))
    }
}

/// Starts a host with `def` in `dir` on a fresh loopback port.
pub async fn start_host(def: &PipeDef, dir: &Path, opts: StartOptions) -> Result<Service> {
    let pipeline = def.pipeline(dir)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Service::start(pipeline, Box::new(env()), listener, opts).await
}

/// The webhook URL of a running host.
pub fn webhook_url(svc: &Service) -> String {
    format!("http://{}/webhook", svc.addr())
}

/// A meeting of one speaker whose audio is exactly `frames` frames of `frame_ms`, in
/// utterances of up to 1000 frames (one transcript line each).
/// With `hold`, the stream pauses (msg 9 PAUSED) after the last frame instead of ending,
/// until the sender is stopped.
pub fn audio_script(frames: u64, frame_ms: u32, hold: bool) -> Result<MeetingScript> {
    let fm = frame_ms as u64;
    let mut b = MeetingScript::builder().participant(1001, "Speaker 1");
    let mut left = frames;
    let mut start = 0;
    let mut i = 0;
    while left > 0 {
        let n = left.min(1000);
        i += 1;
        b = b.utterance(1001, start, n * fm, &format!("synthetic line {i}"));
        start += n * fm;
        left -= n;
    }
    if hold {
        b = b.fault_at(start + 1, rtms_sim::Fault::Pause { duration: None });
    }
    Ok(b.duration_ms(start + 100).build()?)
}

/// Counts frames and stamps the first one and the one that reaches the target.
pub struct Stamps {
    base: Instant,
    first: OnceLock<Instant>,
    /// This process's CPU seconds at the first frame and at the target.
    first_cpu: OnceLock<f64>,
    last_cpu: OnceLock<f64>,
    last_ns: AtomicU64,
    count: AtomicU64,
    target: u64,
    done: Notify,
}

impl Stamps {
    pub fn new(target: u64) -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            first: OnceLock::new(),
            first_cpu: OnceLock::new(),
            last_cpu: OnceLock::new(),
            last_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
            target,
            done: Notify::new(),
        })
    }

    pub fn first(&self) {
        if self.first.get().is_none() {
            let _ = self
                .first_cpu
                .get_or_init(|| crate::probe::cpu_secs("self").unwrap_or(0.0));
            let _ = self.first.get_or_init(Instant::now);
        }
    }

    /// This process's CPU seconds from the first frame to the target.
    pub fn cpu_s(&self) -> f64 {
        match (self.first_cpu.get(), self.last_cpu.get()) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        }
    }

    /// Adds `n` frames; stamps the end when the target is reached.
    pub fn add(&self, n: u64) {
        let before = self.count.fetch_add(n, Ordering::AcqRel);
        if before < self.target && before + n >= self.target {
            self.last_ns
                .store(self.base.elapsed().as_nanos() as u64, Ordering::Release);
            let _ = self
                .last_cpu
                .get_or_init(|| crate::probe::cpu_secs("self").unwrap_or(0.0));
            self.done.notify_one();
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Waits for the target, up to `limit`. Returns the time from the first frame to the
    /// target frame.
    pub async fn wait(&self, limit: Duration) -> Result<Duration> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.done.notified();
            if self.count() >= self.target {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                anyhow::bail!(
                    "only {} of {} frames arrived within {:?}",
                    self.count(),
                    self.target,
                    limit
                );
            }
        }
        let first = *self.first.get().context("no first frame stamped")?;
        let last = self.base + Duration::from_nanos(self.last_ns.load(Ordering::Acquire));
        Ok(last.saturating_duration_since(first))
    }
}

/// A FIFO with no reader, made in a plugin's granted directory: a plugin's open of it for
/// writing never returns. Dropping it opens the reading end once (without blocking), which
/// lets every open waiting on it return, and removes it.
pub struct Fifo(PathBuf);

impl Fifo {
    pub fn make(dir: &Path, name: &str) -> Result<Fifo> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(name);
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .context("cannot run mkfifo (coreutils)")?;
        anyhow::ensure!(
            status.success(),
            "mkfifo {} failed: {status}",
            path.display()
        );
        Ok(Fifo(path))
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        const O_NONBLOCK: i32 = 0o4000;
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(&self.0)
        {
            eprintln!("cannot open the reading end of {}: {e}", self.0.display());
        }
        let _ = std::fs::remove_file(&self.0);
    }
}
