//! Concurrency: N live meetings at real-time pace (20 ms audio from two alternating
//! speakers, a transcript line each 2 s, a chat message each 3 s) against one receiver, for
//! a bounded window; N = 100, 1000, 2000 by default (10, 100 quick; any list with
//! `--meetings`).
//!
//! The simulator (pre-encoded audio) runs in a child process (`rtms-bench sim-child`) pinned
//! to its own core, so the receiver's CPU and memory are this process's alone and its tail
//! latency is not CPU contention with the sender. For each N two receivers run one after the
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

use std::collections::HashMap;
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
}

/// What the child reports when every meeting has ended.
#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy)]
pub struct ChildDone {
    pub audio: u64,
    pub transcript: u64,
    pub chat: u64,
    pub events: u64,
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
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).await?;
    let req: ChildRequest = serde_json::from_str(&line).context("bad request from the parent")?;
    let sim = Simulator::start(rtms_sim::SimConfig {
        preencoded_audio: true,
        ..setup::sim_config()
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
            println!(
                "{}",
                serde_json::to_string(&String::from_utf8(h.started_body())?)?
            );
        }
        handles.push(h);
    }
    println!("started");
    let mut done = ChildDone::default();
    for h in handles {
        let l = h.finished().await;
        done.audio += l.count(rtms_sim::MediaKind::Audio);
        done.transcript += l.count(rtms_sim::MediaKind::Transcript);
        done.chat += l.count(rtms_sim::MediaKind::Chat);
        done.events += l.events.len() as u64;
    }
    println!("{}", serde_json::to_string(&done)?);
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
#[derive(Debug, Default, Clone)]
struct Window {
    live: usize,
    connect_s: f64,
    cpu_pct: f64,
    sim_pct: f64,
    rss_before: u64,
    rss_during: u64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    timed: u64,
    sent: ChildDone,
    /// Host only: drops, and what each audio plugin got.
    dropped: u64,
    delivered: Vec<(String, u64)>,
}

/// A started simulator child.
struct SimChild {
    child: tokio::process::Child,
    /// Held open until the receiver is done: the child exits when it closes.
    stdin: Option<tokio::process::ChildStdin>,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pid: String,
    bodies: Vec<String>,
}

async fn start_child(req: &ChildRequest) -> Result<SimChild> {
    let exe = std::env::current_exe()?;
    let mut child = probe::sender_command(&exe)
        .arg("sim-child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the simulator child process")?;
    let pid = child.id().context("child has no pid")?.to_string();
    let mut stdin = child.stdin.take().context("child stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
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
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Waits until `live()` reaches `n` (within `slack`); returns the time it took.
async fn wait_live(n: usize, slack: Duration, live: impl Fn() -> usize) -> Result<f64> {
    let t = Instant::now();
    while live() < n {
        anyhow::ensure!(
            t.elapsed() < slack,
            "only {} of {n} streams live within {slack:?}",
            live()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Measures `window` after a warm-up: receiver CPU, sender CPU, RSS, latency.
async fn measure(w: &mut Window, hist: &Histogram, sim_pid: &str, window: Duration) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    hist.reset();
    let cpu = CpuMark::now("self");
    let sim_cpu = CpuMark::now(sim_pid);
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

fn timing(n: usize, window: Duration) -> (Duration, Duration) {
    let slack = Duration::from_secs(5) + Duration::from_millis(12 * n as u64);
    (slack, window + Duration::from_secs(1) + slack)
}

/// The raw reader on N real-time meetings.
async fn run_raw(n: usize, window: Duration) -> Result<Window> {
    let (slack, duration) = timing(n, window);
    let mut w = Window {
        rss_before: probe::rss_bytes("self").unwrap_or(0),
        ..Default::default()
    };
    let sim = start_child(&ChildRequest {
        meetings: n,
        webhook_url: None,
        duration_ms: duration.as_millis() as u64,
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
    w.connect_s = wait_live(n, slack, || live.load(std::sync::atomic::Ordering::Relaxed)).await?;
    w.live = n;
    measure(&mut w, &hist, &sim.pid.clone(), window).await;
    let mut sim = sim;
    w.sent = sim.done(duration + Duration::from_secs(60)).await?;
    for t in tasks {
        t.await.context("raw reader task")??;
    }
    sim.close().await;
    Ok(w)
}

/// The host on N real-time meetings, with `threads` core threads (`None`: the default).
async fn run_host(n: usize, window: Duration, threads: Option<u32>) -> Result<Window> {
    let (slack, duration) = timing(n, window);
    let dir = tempfile::tempdir()?;
    let mut pipe = PipeDef::new(
        [
            PluginDef::audio_recorder(),
            PluginDef::rms_meter(),
            PluginDef::transcript_writer("transcript_writer"),
            PluginDef::keyword_alerter(),
        ]
        .into_iter()
        .map(PluginDef::no_batch_wait)
        .collect(),
    );
    pipe.threads = threads;
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
    })
    .await?;
    w.connect_s = wait_live(n, slack, || svc.shared().sessions().len()).await?;
    measure(&mut w, &hist, &sim.pid.clone(), window).await;
    w.live = svc.shared().sessions().len();
    let mut sim = sim;
    w.sent = sim.done(duration + Duration::from_secs(60)).await?;
    tokio::time::timeout(Duration::from_secs(60), svc.sessions().idle())
        .await
        .context("sessions did not end")?;
    sim.close().await;
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
        "{} audio frames timed at 2 plugins in {:.0} s; {} live; connect {:.1} s; sim {:.0} % CPU; sent audio {} (transcript {}, chat {}), got {}; drops {}",
        host.timed,
        window.as_secs_f64(),
        host.live,
        host.connect_s,
        host.sim_pct,
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
        format!(
            "did not keep up: sent {}, got {}",
            host.sent.audio,
            got.join(", ")
        )
    });
    if n >= 1000 {
        r = r.target("0, keeps up", host.dropped == 0 && kept_up);
    }
    report.push(r);
}

/// Meeting counts run by default. 3000 is left out: on the machine of docs/benchmarks.md
/// it makes plugin instantiation fail with ENOMEM and the process abort; run it with
/// `--meetings 3000`.
const DEFAULT_SIZES: [usize; 3] = [100, 1000, 2000];

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
    for &n in sizes {
        let raw = match run_raw(n, window).await {
            Ok(r) => {
                report.push(
                    Row::new("concurrency", &format!("{n} meetings raw CPU"), "%", r.cpu_pct).note(
                        format!(
                            "raw reader: p50 {:.3} ms, p99 {:.3} ms from the socket read to decoded; sim {:.0} % CPU; connect {:.1} s",
                            ms(r.p50),
                            ms(r.p99),
                            r.sim_pct,
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
            // More core threads than the receiver's cores: let them use the sender's too.
            let spread = t.is_some_and(|t| t as usize > probe::cpus().saturating_sub(1));
            let result = if spread {
                probe::unpinned(run_host(n, window, t))
                    .await
                    .map_err(anyhow::Error::msg)
                    .and_then(|r| r)
            } else {
                run_host(n, window, t).await
            };
            match result {
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
