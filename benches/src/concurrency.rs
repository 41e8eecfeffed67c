//! Concurrency: N live meetings at real-time pace (20 ms audio from two alternating
//! speakers, a transcript line each 2 s, a chat message each 3 s) against one receiver, for
//! a bounded window; N = 100, 1000, 2000, 3000 by default (10, 100 quick; any list with
//! `--meetings`).
//!
//! The simulator (pre-encoded audio) runs in a child process (`rtms-bench sim-child`) pinned
//! to its own core, so the receiver's CPU and memory are its process's alone and its tail
//! latency is not CPU contention with the sender. Each receiver runs in a process of its own
//! ([`crate::isolate`]), which starts its own simulator child. Nothing in the bench caps
//! a size: every process raises RLIMIT_NOFILE to its hard limit, the host's `max_streams`
//! is at least N, the simulator gives webhooks and handshakes 60 s; streams that are not
//! live within the time allowed (5 s + 12 ms per meeting) are reported, with the reason
//! each meeting's ledger shows for those that never came up, and the window is measured on
//! the streams that are. For each N two receivers run one after the
//! other in the same run: the raw reader ([`crate::raw`], parse + base64 decode, one task per
//! stream) and the host with audio-recorder and rms-meter on audio (default `drop-oldest`
//! queues) plus transcript-writer and keyword-alerter on transcripts and chat, every plugin
//! with the default `[plugin.batch] max_wait_ms = 0` (a batch takes what is queued; an idle
//! plugin gets each frame on the stream's task).
//!
//! `--threads 1,2` runs the host once per `[runtime] threads` value (its rows say which);
//! the raw reader runs once per size. A value above the receiver's cores (every core but the
//! sender's) lets the host run on the sender's core too for that run.
//!
//! Latency (host): from the moment the socket read carrying an audio frame returned (before
//! the client decoded it; the host's read tap) to the return of each audio plugin's
//! `on-frames` call that took it (the metrics batch hook); every audio frame is timed at
//! both plugins. For the raw reader: from the socket read to the end of its decode.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rtms_host::dataplane::stats::BatchHook;
use rtms_host::sandbox::bindings::MediaKind;
use rtms_host::service::StartOptions;
use rtms_sim::{MeetingOptions, MeetingScript, Pace, Simulator};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::hist::Histogram;
use crate::isolate::{self, Spec};
use crate::probe::{self, CpuMark};
use crate::report::{Report, Row};
use crate::setup::{self, PipeDef, PluginDef};

/// What the parent asks the simulator child for.
#[derive(Serialize, Deserialize)]
pub struct ChildRequest {
    pub meetings: usize,
    /// `None`: print each started webhook body (a JSON string line) for the parent.
    pub webhook_url: Option<String>,
    pub duration_ms: u64,
    /// The simulator's keep-alive interval in ms (`None`: its default, Zoom's 10 s): a
    /// socket idle that long gets a keep-alive request, and its answer is timed.
    #[serde(default)]
    pub keepalive_ms: Option<u64>,
}

/// What the child reports when every meeting has ended.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub struct ChildDone {
    pub audio: u64,
    pub transcript: u64,
    pub chat: u64,
    pub events: u64,
    /// Meetings whose media handshake was accepted at some point.
    #[serde(default)]
    pub up: u64,
    /// Meetings that never came up, by the reason their ledger shows.
    #[serde(default)]
    pub not_up: BTreeMap<String, u64>,
    /// Keep-alive answer times over every meeting and socket.
    #[serde(default)]
    pub keepalive: KeepaliveTimes,
    /// Messages written to a socket that then ended before its client confirmed reading
    /// them (`rtms_sim::Counters::unconfirmed`): 0 when the receiver read everything.
    #[serde(default)]
    pub unconfirmed: u64,
}

/// How fast the receiver answered the simulator's keep-alive requests.
#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy)]
pub struct KeepaliveTimes {
    pub answered: u64,
    /// Sockets the simulator ended after too many unanswered requests.
    pub timeouts: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl KeepaliveTimes {
    fn of(mut times: Vec<Duration>, timeouts: u64) -> Self {
        times.sort_unstable();
        let at = |q: f64| {
            let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len().max(1)) - 1;
            times.get(i).map_or(0.0, |d| ms(*d))
        };
        Self {
            answered: times.len() as u64,
            timeouts,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: times.last().map_or(0.0, |d| ms(*d)),
        }
    }
}

/// Why a meeting's stream never came up, from its ledger; `None` when it did. The started
/// webhook's last attempt first (when one was sent: the raw reader gets the event
/// directly), then the connections.
fn not_up_reason(l: &rtms_sim::Ledger) -> Option<String> {
    let c = &l.counters;
    if c.media_handshakes_ok > 0 {
        return None;
    }
    let refused = || l.refusals.keys().copied().collect::<Vec<_>>().join(",");
    let hook = l.webhooks_ending("rtms_started").into_iter().last();
    let (status, error) = hook.map_or((Some(200), None), |w| (w.status, w.error.clone()));
    Some(match (status, &error) {
        (Some(s), _) if !(200..300).contains(&s) => format!("webhook answered HTTP {s}"),
        (None, Some(e)) if e.contains("no answer within") || e.contains("timed out") => {
            "webhook timed out".into()
        }
        (None, Some(e)) if e.contains("refused") => "webhook connection refused".into(),
        (None, e) => {
            let e = e.as_deref().unwrap_or("no answer");
            let why = e.split_once("failed: ").map_or(e, |(_, r)| r);
            format!(
                "webhook failed: {}",
                why.chars().take(60).collect::<String>()
            )
        }
        _ if c.signaling_connections == 0 => "no signaling connection".into(),
        _ if c.signaling_handshakes_ok == 0 => format!("signaling refused ({})", refused()),
        _ if c.media_connections == 0 => "no media connection".into(),
        _ => format!("media handshake refused ({})", refused()),
    })
}

/// A real-time meeting: two speakers taking turns (20 ms audio), a transcript line each
/// 2 s, a chat message each 3 s.
fn meeting(duration_ms: u64, seed: u64) -> Result<MeetingScript> {
    let mut b = MeetingScript::builder()
        .seed(seed)
        .participant(1001, "Speaker 1")
        .participant(1002, "Speaker 2");
    let mut t = 0;
    let mut i = 0;
    while t + 2000 <= duration_ms {
        i += 1;
        let who = 1001 + (i % 2);
        b = b.utterance(who, t, 2000, &format!("line {i} about the budget"));
        t += 2000;
    }
    let mut c = 1000;
    while c < duration_ms {
        b = b.chat(c, 1001, "please escalate the refund");
        c += 3000;
    }
    Ok(b.duration_ms(duration_ms).build()?)
}

/// `rtms-bench sim-child`: reads one [`ChildRequest`] line on stdin, starts the meetings,
/// prints `started`, then a [`ChildDone`] line when they have all ended.
pub async fn child() -> Result<()> {
    serve_child(tokio::io::stdin(), tokio::io::stdout()).await
}

/// What [`child`] does, on any pair of pipes (the unit tests run it in-process).
async fn serve_child<R, W>(input: R, mut out: W) -> Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut stdin = BufReader::new(input);
    let mut line = String::new();
    stdin.read_line(&mut line).await?;
    let req: ChildRequest = serde_json::from_str(&line).context("bad request from the parent")?;
    let base = setup::sim_config();
    let sim = Simulator::start(rtms_sim::SimConfig {
        preencoded_audio: true,
        // Thousands of streams starting at once on a busy receiver: the bench measures how
        // many come up and how long it takes, so Zoom's 3 s webhook timeout and 10 s
        // handshake timeout must not be what refuses them.
        webhook_timeout: Duration::from_secs(60),
        handshake_timeout: Duration::from_secs(60),
        keepalive_interval: req
            .keepalive_ms
            .map_or(base.keepalive_interval, Duration::from_millis),
        ..base
    })
    .await?;
    let mut handles = Vec::new();
    for i in 0..req.meetings {
        let h = sim.start_meeting(
            meeting(req.duration_ms, i as u64)?,
            MeetingOptions {
                pace: Pace::Realtime,
                webhook_url: req.webhook_url.clone(),
                ..Default::default()
            },
        )?;
        if req.webhook_url.is_none() {
            let body = serde_json::to_string(&String::from_utf8(h.started_body())?)?;
            out.write_all(format!("{body}\n").as_bytes()).await?;
        }
        handles.push(h);
    }
    out.write_all(b"started\n").await?;
    out.flush().await?;
    let mut done = ChildDone::default();
    let (mut times, mut timeouts) = (Vec::new(), 0);
    for h in handles {
        let l = h.finished().await;
        done.audio += l.count(rtms_sim::MediaKind::Audio);
        done.transcript += l.count(rtms_sim::MediaKind::Transcript);
        done.chat += l.count(rtms_sim::MediaKind::Chat);
        done.events += l.events.len() as u64;
        match not_up_reason(&l) {
            None => done.up += 1,
            Some(why) => *done.not_up.entry(why).or_default() += 1,
        }
        times.extend_from_slice(&l.keepalive_answer_times);
        timeouts += l.counters.keepalive_timeouts;
        done.unconfirmed += l.counters.unconfirmed;
    }
    done.keepalive = KeepaliveTimes::of(times, timeouts);
    out.write_all(format!("{}\n", serde_json::to_string(&done)?).as_bytes())
        .await?;
    out.flush().await?;
    // Stay until the parent closes stdin: exiting now would reset sockets that still hold
    // frames the receiver has not read.
    let mut rest = String::new();
    let _ = stdin.read_line(&mut rest).await;
    drop(sim);
    Ok(())
}

/// (session, seq) of an audio frame.
type FrameKey = (u64, u64);
/// Read time and how many audio plugins have still to return.
type Shard = Mutex<HashMap<FrameKey, (Instant, u8)>>;

/// Read times of audio frames in flight, sharded by session.
struct InFlight {
    shards: Vec<Shard>,
}

impl InFlight {
    fn new() -> Self {
        Self {
            shards: (0..64).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
    fn shard(&self, session: u64) -> &Shard {
        &self.shards[(session % 64) as usize]
    }
}

/// The audio consumers every audio frame is timed at.
const AUDIO_PLUGINS: [&str; 2] = ["audio-recorder", "rms-meter"];

/// One receiver's window.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Window {
    pub live: usize,
    /// Streams live when the time allowed to come up ran out.
    pub up_in_time: usize,
    pub connect_s: f64,
    pub cpu_pct: f64,
    pub sim_pct: f64,
    /// The CPUs the receiver and the sender may run on during the window
    /// (`Cpus_allowed_list`), e.g. `receiver 1, sender 0`.
    #[serde(default)]
    pub cpus: String,
    pub rss_before: u64,
    pub rss_during: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    pub timed: u64,
    pub sent: ChildDone,
    /// Raw reader only: streams that ended in an error, by error.
    pub errors: BTreeMap<String, u64>,
    /// Host only: drops, and what each audio plugin got.
    pub dropped: u64,
    pub delivered: Vec<(String, u64)>,
    /// Host only: every plugin's counters at shutdown.
    pub plugins: BTreeMap<String, Counts>,
}

/// A plugin's counters at the host's shutdown (of `rtms_host`'s `PluginSnapshot`).
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub routed: u64,
    pub delivered: u64,
    pub calls: u64,
    pub shed: u64,
    pub dropped: u64,
    pub discarded: u64,
    pub dead_lettered: u64,
    pub traps: u64,
    /// Calls that returned an error.
    #[serde(default)]
    pub errors: u64,
    /// Filesystem calls refused under a directory with too many parked calls.
    #[serde(default)]
    pub parked_refused: u64,
}

impl From<&rtms_host::dataplane::stats::PluginSnapshot> for Counts {
    fn from(s: &rtms_host::dataplane::stats::PluginSnapshot) -> Self {
        Self {
            routed: s.routed,
            delivered: s.delivered,
            calls: s.calls,
            shed: s.shed,
            dropped: s.dropped,
            discarded: s.discarded,
            dead_lettered: s.dead_lettered,
            errors: s.errors,
            parked_refused: s.parked_refused,
            traps: s.traps,
        }
    }
}

/// A started simulator child.
struct SimChild {
    /// `None` when the simulator runs in this process (unit tests).
    child: Option<tokio::process::Child>,
    /// Held open until the receiver is done: the child exits when it closes.
    stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    lines: tokio::io::Lines<BufReader<Box<dyn tokio::io::AsyncRead + Send + Unpin>>>,
    pid: String,
    bodies: Vec<String>,
}

type Pipes = (
    Option<tokio::process::Child>,
    String,
    Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    Box<dyn tokio::io::AsyncRead + Send + Unpin>,
);

/// The simulator as a child process pinned to the sender's core; in a unit test (whose
/// executable is not `rtms-bench`), a task of this process on in-memory pipes.
fn spawn_child() -> Result<Pipes> {
    if cfg!(test) {
        let (to_child, child_in) = tokio::io::duplex(1 << 16);
        let (child_out, from_child) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            if let Err(e) = serve_child(child_in, child_out).await {
                eprintln!("simulator: {e:#}");
            }
        });
        return Ok((
            None,
            "self".into(),
            Box::new(to_child),
            Box::new(from_child),
        ));
    }
    let exe = std::env::current_exe()?;
    let mut child = probe::sender_command(&exe)
        .arg("sim-child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the simulator child process")?;
    let pid = child.id().context("child has no pid")?.to_string();
    let stdin = child.stdin.take().context("child stdin")?;
    let stdout = child.stdout.take().context("child stdout")?;
    Ok((Some(child), pid, Box::new(stdin), Box::new(stdout)))
}

async fn start_child(req: &ChildRequest) -> Result<SimChild> {
    let (child, pid, mut stdin, stdout) = spawn_child()?;
    let mut lines = BufReader::new(stdout).lines();
    stdin
        .write_all(format!("{}\n", serde_json::to_string(req)?).as_bytes())
        .await?;
    stdin.flush().await?;
    let mut bodies = Vec::new();
    loop {
        let l = lines.next_line().await?.context("child ended early")?;
        if l == "started" {
            break;
        }
        let body: String = serde_json::from_str(&l).with_context(|| format!("child said {l:?}"))?;
        bodies.push(body);
    }
    Ok(SimChild {
        child,
        stdin: Some(stdin),
        lines,
        pid,
        bodies,
    })
}

impl SimChild {
    /// Waits for the summary; the child stays until [`SimChild::close`].
    async fn done(&mut self, limit: Duration) -> Result<ChildDone> {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .context("meetings did not end")??
            .context("child ended without a summary")?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Lets the child exit, once the receiver has read everything.
    async fn close(mut self) {
        drop(self.stdin.take());
        if let Some(c) = self.child.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
        }
    }
}

/// Waits until `live()` reaches `n`, at most `slack`; returns how many were live then and
/// the time it took. Fewer than `n` is not an error: the run goes on with those, and the
/// simulator's ledgers say why the rest did not come up.
async fn wait_live(n: usize, slack: Duration, live: impl Fn() -> usize) -> (usize, f64) {
    let t = Instant::now();
    while live() < n && t.elapsed() < slack {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (live().min(n), t.elapsed().as_secs_f64())
}

/// Measures `window` after a warm-up: receiver CPU, sender CPU, RSS, latency.
async fn measure(w: &mut Window, hist: &Histogram, sim_pid: &str, window: Duration) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    hist.reset();
    let cpu = CpuMark::now("self");
    let sim_cpu = CpuMark::now(sim_pid);
    let (mine, sim) = (probe::allowed_cpus("self"), probe::allowed_cpus(sim_pid));
    w.cpus = format!("receiver {mine}, sender {sim}");
    if probe::pinned() && mine == sim {
        eprintln!(
            "warning: the sender runs on the receiver's CPUs ({}): the figures mix the two",
            w.cpus
        );
    }
    tokio::time::sleep(window).await;
    w.cpu_pct = cpu.percent();
    w.sim_pct = sim_cpu.percent();
    w.rss_during = probe::rss_bytes("self").unwrap_or(0);
    w.p50 = hist.quantile(0.5);
    w.p99 = hist.quantile(0.99);
    w.p999 = hist.quantile(0.999);
    w.max = hist.max();
    w.timed = hist.count();
}

/// The time allowed for N streams to come up (5 s + 12 ms each), and the meetings' length:
/// that time, the warm-up and the window, and half the time allowed more, so a window that
/// starts only when the time allowed ran out still ends before the meetings do.
fn timing(n: usize, window: Duration) -> (Duration, Duration) {
    let slack = Duration::from_secs(5) + Duration::from_millis(12 * n as u64);
    (slack, window + Duration::from_secs(1) + slack + slack / 2)
}

/// The raw reader on N real-time meetings.
pub(crate) async fn run_raw(n: usize, window: Duration) -> Result<Window> {
    let (slack, duration) = timing(n, window);
    let mut w = Window {
        rss_before: probe::rss_bytes("self").unwrap_or(0),
        ..Default::default()
    };
    let sim = start_child(&ChildRequest {
        meetings: n,
        webhook_url: None,
        duration_ms: duration.as_millis() as u64,
        keepalive_ms: None,
    })
    .await?;
    let hist = Arc::new(Histogram::default());
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for body in &sim.bodies {
        let ev = crate::sender::started_event(body.as_bytes())?;
        let (h, l) = (hist.clone(), live.clone());
        let first = std::sync::OnceLock::new();
        let on_audio: Arc<dyn Fn(Instant) + Send + Sync> = Arc::new(move |read_at: Instant| {
            h.record(read_at.elapsed());
            first.get_or_init(|| l.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        });
        let stamps = crate::setup::Stamps::new(u64::MAX);
        tasks.push(tokio::spawn(async move {
            crate::raw::run(&ev, 20, stamps, Some(on_audio)).await
        }));
    }
    let count = || live.load(std::sync::atomic::Ordering::Relaxed);
    (w.up_in_time, w.connect_s) = wait_live(n, slack, count).await;
    measure(&mut w, &hist, &sim.pid.clone(), window).await;
    w.live = count();
    let mut sim = sim;
    w.sent = sim.done(duration + Duration::from_secs(60)).await?;
    for t in tasks {
        let why = match t.await {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => format!("{e:#}"),
            Err(e) => format!("task: {e}"),
        };
        *w.errors.entry(why.chars().take(80).collect()).or_default() += 1;
    }
    sim.close().await;
    Ok(w)
}

/// The four plugins of every real-time case: audio-recorder and rms-meter on audio,
/// transcript-writer and keyword-alerter on transcripts and chat, default queue policies,
/// a batch taking what is queued.
pub(crate) fn four_plugins() -> Vec<PluginDef> {
    [
        PluginDef::audio_recorder(),
        PluginDef::rms_meter(),
        PluginDef::transcript_writer("transcript_writer"),
        PluginDef::keyword_alerter(),
    ]
    .into_iter()
    .map(PluginDef::no_batch_wait)
    .collect()
}

/// What a host run is given: its plugins, the simulator's keep-alive interval, and a FIFO
/// to make in the plugins' directory before the host starts (released at the end).
pub(crate) struct HostCase {
    pub plugins: Vec<PluginDef>,
    pub keepalive_ms: Option<u64>,
    pub fifo: Option<&'static str>,
    /// `[runtime] threads`; `None` leaves the host's default.
    pub threads: Option<u32>,
}

/// The host on N real-time meetings with the [`four_plugins`] and `threads` core threads
/// (`None`: the default). More core threads than the receiver's cores let the host run on
/// the sender's core too.
pub(crate) async fn run_host(n: usize, window: Duration, threads: Option<u32>) -> Result<Window> {
    let case = HostCase {
        plugins: four_plugins(),
        keepalive_ms: None,
        fifo: None,
        threads,
    };
    if threads.is_some_and(|t| t as usize > probe::cpus().saturating_sub(1)) {
        probe::unpinned(run_host_with(n, window, &case))
            .await
            .map_err(anyhow::Error::msg)
            .and_then(|r| r)
    } else {
        run_host_with(n, window, &case).await
    }
}

/// The host on N real-time meetings with `case`'s plugins.
pub(crate) async fn run_host_with(n: usize, window: Duration, case: &HostCase) -> Result<Window> {
    let (slack, duration) = timing(n, window);
    let dir = tempfile::tempdir()?;
    let pipe = PipeDef {
        max_streams: Some(n.max(2000)),
        threads: case.threads,
        ..PipeDef::new(case.plugins.clone())
    };
    let fifo = match case.fifo {
        Some(name) => Some(setup::Fifo::make(&dir.path().join("out"), name)?),
        None => None,
    };
    let inflight = Arc::new(InFlight::new());
    let hist = Arc::new(Histogram::default());
    let opts = StartOptions {
        read_tap: Some(read_stamp(inflight.clone())),
        watch: None,
        ..Default::default()
    };
    let svc = setup::start_host(&pipe, dir.path(), opts).await?;
    svc.shared()
        .metrics
        .set_batch_hook(latency_hook(inflight.clone(), hist.clone()));
    let mut w = Window {
        rss_before: probe::rss_bytes("self").unwrap_or(0),
        ..Default::default()
    };
    let sim = start_child(&ChildRequest {
        meetings: n,
        webhook_url: Some(setup::webhook_url(&svc)),
        duration_ms: duration.as_millis() as u64,
        keepalive_ms: case.keepalive_ms,
    })
    .await?;
    (w.up_in_time, w.connect_s) = wait_live(n, slack, || svc.shared().sessions().len()).await;
    measure(&mut w, &hist, &sim.pid.clone(), window).await;
    w.live = svc.shared().sessions().len();
    let mut sim = sim;
    w.sent = sim.done(duration + Duration::from_secs(60)).await?;
    tokio::time::timeout(Duration::from_secs(60), svc.sessions().idle())
        .await
        .context("sessions did not end")?;
    sim.close().await;
    // Opens still waiting on the FIFO return before the host ends.
    drop(fifo);
    let m = svc.shutdown().await;
    w.dropped = m
        .plugins
        .values()
        .map(|p| p.dropped + p.discarded + p.dead_lettered)
        .sum();
    w.delivered = AUDIO_PLUGINS
        .iter()
        .map(|p| (p.to_string(), m.plugins.get(*p).map_or(0, |s| s.delivered)))
        .collect();
    w.plugins = m
        .plugins
        .iter()
        .map(|(k, v)| (k.clone(), Counts::from(v)))
        .collect();
    Ok(w)
}

/// Stamps each audio frame with the moment its socket read returned, to be taken by both
/// audio plugins.
fn read_stamp(inflight: Arc<InFlight>) -> rtms_host::dataplane::bridge::ReadTap {
    Arc::new(move |s, fr, at| {
        if fr.kind == MediaKind::Audio
            && let Ok(mut m) = inflight.shard(s.info.session).lock()
        {
            m.insert((s.info.session, fr.seq), (at, AUDIO_PLUGINS.len() as u8));
        }
    })
}

/// Records, for each audio frame an audio plugin's call returned with, the time since its
/// socket read; a frame is forgotten once both took it.
fn latency_hook(inflight: Arc<InFlight>, hist: Arc<Histogram>) -> BatchHook {
    BatchHook(Arc::new(move |session, plugin, frames| {
        if !AUDIO_PLUGINS.contains(&plugin) {
            return;
        }
        let now = Instant::now();
        if let Ok(mut m) = inflight.shard(session).lock() {
            for fr in frames.iter().filter(|fr| fr.kind == MediaKind::Audio) {
                let key = (session, fr.seq);
                if let Some((t, left)) = m.get_mut(&key) {
                    hist.record(now - *t);
                    *left -= 1;
                    if *left == 0 {
                        m.remove(&key);
                    }
                }
            }
        }
    }))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn push_rows(report: &mut Report, n: usize, window: Duration, raw: Option<&Window>, host: &Window) {
    let case = format!("{n} meetings");
    let kept_up = host.delivered.iter().all(|(_, d)| *d == host.sent.audio);
    let got: Vec<String> = host
        .delivered
        .iter()
        .map(|(p, d)| format!("{p} {d}"))
        .collect();
    let note = format!(
        "{} audio frames timed at 2 plugins in {:.0} s; {} live; connect {:.1} s; sim {:.0} % CPU; CPUs: {}; sent audio {} (transcript {}, chat {}), got {}; drops {}",
        host.timed,
        window.as_secs_f64(),
        host.live,
        host.connect_s,
        host.sim_pct,
        host.cpus,
        host.sent.audio,
        host.sent.transcript,
        host.sent.chat,
        got.join(", "),
        host.dropped
    );
    let mut row = Row::new("concurrency", &format!("{case} p50"), "ms", ms(host.p50)).note(note);
    row.extra = json!({"meetings": n, "p50_ms": ms(host.p50), "p99_ms": ms(host.p99),
        "p999_ms": ms(host.p999), "max_ms": ms(host.max), "timed": host.timed,
        "cpu_pct": host.cpu_pct, "sim_cpu_pct": host.sim_pct, "rss_before": host.rss_before,
        "rss_during": host.rss_during, "dropped": host.dropped, "sent_audio": host.sent.audio,
        "delivered": host.delivered, "connect_s": host.connect_s,
        "raw": raw.map(|r| json!({"cpu_pct": r.cpu_pct, "sim_cpu_pct": r.sim_pct,
            "p50_ms": ms(r.p50), "p99_ms": ms(r.p99), "p999_ms": ms(r.p999),
            "connect_s": r.connect_s, "sent_audio": r.sent.audio}))});
    report.push(row);
    let mut r = Row::new("concurrency", &format!("{case} p99"), "ms", ms(host.p99));
    if n == 1000 {
        r = r.target("p99 < 5 ms", ms(host.p99) < 5.0);
    }
    report.push(r);
    report.push(
        Row::new("concurrency", &format!("{case} p999"), "ms", ms(host.p999))
            .note(format!("max {:.2} ms", ms(host.max))),
    );
    push_cost_rows(report, n, raw, host, kept_up, &got);
    push_up_row(report, n, raw, host);
}

/// `k reason, ...` of a count map.
fn reasons(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(why, k)| format!("{k} {why}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The row of how many streams came up within the time allowed, and why the rest did not.
fn push_up_row(report: &mut Report, n: usize, raw: Option<&Window>, host: &Window) {
    let (slack, _) = timing(n, Duration::ZERO);
    let late = (host.sent.up as usize).saturating_sub(host.up_in_time);
    let mut note = format!(
        "{} of {n} live within {:.0} s; {late} came up later; {} never",
        host.up_in_time,
        slack.as_secs_f64(),
        n.saturating_sub(host.sent.up as usize),
    );
    if !host.sent.not_up.is_empty() {
        note += &format!(" ({})", reasons(&host.sent.not_up));
    }
    if let Some(r) = raw {
        note += &format!("; raw reader {} of {n} in time", r.up_in_time);
        if !r.sent.not_up.is_empty() {
            note += &format!(", never: {}", reasons(&r.sent.not_up));
        }
        if !r.errors.is_empty() {
            note += &format!(", errors: {}", reasons(&r.errors));
        }
    }
    let mut row = Row::new(
        "concurrency",
        &format!("{n} meetings streams up"),
        "streams",
        host.up_in_time as f64,
    )
    .note(note);
    row.extra = json!({"meetings": n, "up_in_time": host.up_in_time, "up": host.sent.up,
        "not_up": host.sent.not_up, "allowed_s": slack.as_secs_f64(),
        "raw_up_in_time": raw.map(|r| r.up_in_time), "raw_errors": raw.map(|r| &r.errors)});
    if n >= 3000 {
        row = row.target("all come up", host.up_in_time == n);
    }
    report.push(row);
}

/// The rows of what the host cost and whether it kept up: CPU against the raw reader's,
/// RSS per session, drops.
fn push_cost_rows(
    report: &mut Report,
    n: usize,
    raw: Option<&Window>,
    host: &Window,
    kept_up: bool,
    got: &[String],
) {
    let case = format!("{n} meetings");
    let mut r = Row::new(
        "concurrency",
        &format!("{case} host CPU"),
        "%",
        host.cpu_pct,
    );
    match raw {
        Some(raw) => {
            let ratio = host.cpu_pct / raw.cpu_pct.max(1e-9);
            r = r.note(format!(
                "of one core; raw reader {:.1} % (raw p99 {:.3} ms), host/raw {ratio:.2}x; sim {:.0} % with the raw reader",
                raw.cpu_pct,
                ms(raw.p99),
                raw.sim_pct
            ));
            if n == 1000 {
                r = r.target("<= 1.5x raw", ratio <= 1.5);
            }
        }
        None => r = r.note("of one core; the raw reader failed"),
    }
    report.push(r);
    let per_session =
        host.rss_during.saturating_sub(host.rss_before) as f64 / n as f64 / (1 << 20) as f64;
    report.push(
        Row::new(
            "concurrency",
            &format!("{case} RSS/session"),
            "MiB",
            per_session,
        )
        .note(format!(
            "RSS {:.0} -> {:.0} MiB",
            host.rss_before as f64 / 1048576.0,
            host.rss_during as f64 / 1048576.0
        )),
    );
    let mut r = Row::new(
        "concurrency",
        &format!("{case} drops"),
        "frames",
        host.dropped as f64,
    )
    .note(if kept_up {
        "every audio frame sent reached both audio plugins".to_owned()
    } else {
        let routed: Vec<String> = AUDIO_PLUGINS
            .iter()
            .map(|p| format!("{p} {}", host.plugins.get(*p).map_or(0, |s| s.routed)))
            .collect();
        format!(
            "did not keep up: sent {}, got {}; routed {}; unread when sockets ended {}; keep-alive timeouts {}",
            host.sent.audio,
            got.join(", "),
            routed.join(", "),
            host.sent.unconfirmed,
            host.sent.keepalive.timeouts
        )
    });
    if n >= 1000 {
        r = r.target("0, keeps up", host.dropped == 0 && kept_up);
    }
    report.push(r);
}

/// Meeting counts run by default: one below the host's saturation as a reference, then
/// the sizes of the goals. Each runs in processes of its own ([`crate::isolate`]), so a
/// size that aborts its process is reported and the next one still runs.
const DEFAULT_SIZES: [usize; 4] = [100, 1000, 2000, 3000];

/// A warning when this process's descriptor limit or the local port range is too small for
/// `n` meetings (about 8 descriptors per meeting in the host's process with four plugins,
/// 3 local ports: signaling, media, the webhook).
fn limits_note(n: usize) -> Option<String> {
    let nofile = probe::nofile();
    let mut warn = Vec::new();
    if (nofile as usize) < 8 * n + 256 {
        warn.push(format!(
            "RLIMIT_NOFILE is {nofile}, fewer than the {} descriptors {n} meetings may take: raise the hard limit (ulimit -Hn)",
            8 * n + 256
        ));
    }
    if let Some((lo, hi)) = probe::local_ports()
        && ((hi.saturating_sub(lo)) as usize) < 3 * n
    {
        warn.push(format!(
            "net.ipv4.ip_local_port_range {lo}-{hi} has fewer than the {} ports {n} meetings take",
            3 * n
        ));
    }
    (!warn.is_empty()).then(|| warn.join("; "))
}

/// `threads`: the host's `[runtime] threads` to run each size with (`--threads 1,2`); empty
/// runs the default once. The raw reader runs once per size whatever the list.
pub async fn run(
    report: &mut Report,
    quick: bool,
    meetings: &[usize],
    threads: &[u32],
) -> Result<()> {
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    let sizes: &[usize] = match (meetings.is_empty(), quick) {
        (false, _) => meetings,
        (true, true) => &[10, 100],
        (true, false) => &DEFAULT_SIZES,
    };
    if let Some(note) = limits_note(sizes.iter().copied().max().unwrap_or(0)) {
        report.push(Row::new("concurrency", "limits", "-", 0.0).note(note));
    }
    for &n in sizes {
        let raw = match isolate::measure(Spec::Raw, n, window, || run_raw(n, window)).await {
            Ok(r) => {
                report.push(
                    Row::new("concurrency", &format!("{n} meetings raw CPU"), "%", r.cpu_pct).note(
                        format!(
                            "raw reader: p50 {:.3} ms, p99 {:.3} ms from the socket read to decoded; sim {:.0} % CPU; CPUs: {}; connect {:.1} s",
                            ms(r.p50),
                            ms(r.p99),
                            r.sim_pct,
                            r.cpus,
                            r.connect_s
                        ),
                    ),
                );
                Some(r)
            }
            Err(e) => {
                report.push(
                    Row::new("concurrency", &format!("{n} meetings raw"), "-", 0.0)
                        .note(format!("FAILED: {e:#}")),
                );
                None
            }
        };
        let runs: Vec<Option<u32>> = if threads.is_empty() {
            vec![None]
        } else {
            threads.iter().copied().map(Some).collect()
        };
        for t in runs {
            let first = report.rows.len();
            let spec = Spec::Host { threads: t };
            match isolate::measure(spec, n, window, || run_host(n, window, t)).await {
                Ok(host) => push_rows(report, n, window, raw.as_ref(), &host),
                Err(e) => report.push(
                    Row::new("concurrency", &format!("{n} meetings"), "-", 0.0)
                        .note(format!("FAILED: {e:#}")),
                ),
            }
            if let Some(t) = t {
                name_threads(&mut report.rows[first..], t);
            }
        }
    }
    Ok(())
}

/// Marks the rows of a host run with its core threads: `100 meetings, 2 threads p99`.
fn name_threads(rows: &mut [Row], threads: u32) {
    let label = format!(
        "meetings, {threads} thread{}",
        if threads == 1 { "" } else { "s" }
    );
    for r in rows {
        r.case = r.case.replacen("meetings", &label, 1);
        if let Some(extra) = r.extra.as_object_mut() {
            extra.insert("threads".into(), threads.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(status: Option<u16>, error: Option<&str>) -> rtms_sim::WebhookDelivery {
        rtms_sim::WebhookDelivery {
            event: "meeting.rtms_started".into(),
            body: String::new(),
            attempt: 1,
            status,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn a_meeting_that_never_came_up_is_given_the_reason_its_ledger_shows() {
        let mut l = rtms_sim::Ledger::default();
        assert_eq!(
            not_up_reason(&l).as_deref(),
            Some("no signaling connection"),
            "no webhook (the raw reader): the connections say"
        );
        l.webhooks = vec![started(Some(503), None)];
        assert_eq!(
            not_up_reason(&l).as_deref(),
            Some("webhook answered HTTP 503")
        );
        l.webhooks = vec![started(
            None,
            Some("POST to http://127.0.0.1:1/webhook got no answer within 60 s"),
        )];
        assert_eq!(not_up_reason(&l).as_deref(), Some("webhook timed out"));
        l.webhooks = vec![started(Some(200), None)];
        assert_eq!(
            not_up_reason(&l).as_deref(),
            Some("no signaling connection")
        );
        l.counters.signaling_connections = 1;
        l.counters.signaling_handshakes_ok = 1;
        assert_eq!(not_up_reason(&l).as_deref(), Some("no media connection"));
        l.counters.media_handshakes_ok = 1;
        assert_eq!(not_up_reason(&l), None, "up");
    }

    #[test]
    fn keepalive_quantiles_are_taken_from_the_sorted_times() {
        let times: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let k = KeepaliveTimes::of(times, 2);
        assert_eq!((k.answered, k.timeouts), (100, 2));
        assert_eq!((k.p50_ms, k.p99_ms, k.max_ms), (50.0, 99.0, 100.0));
        let none = KeepaliveTimes::of(Vec::new(), 0);
        assert_eq!((none.answered, none.max_ms), (0, 0.0));
    }
}
