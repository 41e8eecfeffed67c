//! Concurrency: N live meetings at real-time pace (20 ms audio, transcript lines, chat)
//! against one host, for a bounded window.
//!
//! The simulator runs in a child process (`rtms-bench sim-child`), so the host's CPU and
//! memory are this process's alone. Latency is measured from the moment the host's session
//! gets a decoded frame from the client (the `Tap`) to the return of the noop plugin's
//! `on-frames` call that took it (the metrics batch hook); noop takes every kind, so every
//! frame is timed. Measured once every session is live, after a short warm-up.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rtms_host::app::StartOptions;
use rtms_host::bindings::MediaKind;
use rtms_host::metrics::BatchHook;
use rtms_sim::{MeetingOptions, MeetingScript, Pace, Simulator};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::hist::Histogram;
use crate::probe::{self, CpuMark};
use crate::report::{Report, Row};
use crate::setup::{self, PipeDef, PluginDef};

/// What the parent asks the simulator child for.
#[derive(Serialize, Deserialize)]
pub struct ChildRequest {
    pub meetings: usize,
    pub webhook_url: String,
    pub duration_ms: u64,
}

/// What the child reports when every meeting has ended.
#[derive(Serialize, Deserialize, Default, Debug)]
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
    let mut line = String::new();
    BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await?;
    let req: ChildRequest = serde_json::from_str(&line).context("bad request from the parent")?;
    let sim = Simulator::start(setup::sim_config()).await?;
    let mut handles = Vec::new();
    for i in 0..req.meetings {
        handles.push(sim.start_meeting(
            meeting(req.duration_ms, i as u64)?,
            MeetingOptions {
                pace: Pace::Realtime,
                webhook_url: Some(req.webhook_url.clone()),
                ..Default::default()
            },
        )?);
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
    Ok(())
}

/// (session, kind, seq) of a frame.
type FrameKey = (u64, u8, u64);
type Shard = Mutex<HashMap<FrameKey, Instant>>;

/// Receive times of frames in flight, sharded by session.
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

fn kind_tag(k: MediaKind) -> u8 {
    k as u8
}

async fn run_one(report: &mut Report, n: usize, window: Duration) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut pipe = PipeDef::new(vec![
        PluginDef::noop(&["audio", "transcript", "chat"]),
        PluginDef::transcript_writer("transcript_writer"),
        PluginDef::keyword_alerter(),
    ]);
    pipe.plugins[0].batch_max = 32;
    let inflight = Arc::new(InFlight::new());
    let hist = Arc::new(Histogram::default());
    let f = inflight.clone();
    let tap: rtms_host::session::Tap = Arc::new(move |s, fr| {
        let key = (s.info.session, kind_tag(fr.kind), fr.seq);
        if let Ok(mut m) = f.shard(s.info.session).lock() {
            m.insert(key, Instant::now());
        }
    });
    let svc = setup::start_host(
        &pipe,
        dir.path(),
        StartOptions {
            tap: Some(tap),
            watch: None,
            ..Default::default()
        },
    )
    .await?;
    let (f, h) = (inflight.clone(), hist.clone());
    svc.shared()
        .metrics
        .set_batch_hook(BatchHook(Arc::new(move |session, plugin, frames| {
            if plugin != "noop" {
                return;
            }
            let now = Instant::now();
            if let Ok(mut m) = f.shard(session).lock() {
                for fr in frames {
                    if let Some(t) = m.remove(&(session, kind_tag(fr.kind), fr.seq)) {
                        h.record(now - t);
                    }
                }
            }
        })));
    let rss_before = probe::rss_bytes("self").unwrap_or(0);
    let warmup = Duration::from_secs(1);
    let slack = Duration::from_secs(4) + Duration::from_millis(12 * n as u64);
    let duration = window + warmup + slack;

    let exe = std::env::current_exe()?;
    let mut child = probe::sender_command(&exe)
        .arg("sim-child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the simulator child process")?;
    let child_pid = child.id().context("child has no pid")?.to_string();
    let mut stdin = child.stdin.take().context("child stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
    let req = ChildRequest {
        meetings: n,
        webhook_url: setup::webhook_url(&svc),
        duration_ms: duration.as_millis() as u64,
    };
    stdin
        .write_all(format!("{}\n", serde_json::to_string(&req)?).as_bytes())
        .await?;
    stdin.flush().await?;
    let first = lines.next_line().await?.context("child ended early")?;
    anyhow::ensure!(first == "started", "child said {first:?}");

    let t_start = Instant::now();
    while svc.shared().sessions().len() < n {
        anyhow::ensure!(
            t_start.elapsed() < slack,
            "only {} of {n} sessions opened within {slack:?}",
            svc.shared().sessions().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_s = t_start.elapsed().as_secs_f64();
    tokio::time::sleep(warmup).await;
    hist.reset();
    let cpu = CpuMark::now("self");
    let sim_cpu = CpuMark::now(&child_pid);
    tokio::time::sleep(window).await;
    let cpu_pct = cpu.percent();
    let sim_pct = sim_cpu.percent();
    let rss_during = probe::rss_bytes("self").unwrap_or(0);
    let live = svc.shared().sessions().len();
    let (p50, p99, p999, max, count) = (
        hist.quantile(0.5),
        hist.quantile(0.99),
        hist.quantile(0.999),
        hist.max(),
        hist.count(),
    );

    let done_line = tokio::time::timeout(duration + Duration::from_secs(60), lines.next_line())
        .await
        .context("meetings did not end")??
        .context("child ended without a summary")?;
    let sent: ChildDone = serde_json::from_str(&done_line)?;
    let _ = child.wait().await;
    tokio::time::timeout(Duration::from_secs(60), svc.sessions().idle())
        .await
        .context("sessions did not end")?;
    let m = svc.shutdown().await;
    let dropped: u64 = m
        .plugins
        .values()
        .map(|p| p.dropped + p.discarded + p.dead_lettered)
        .sum();
    let sent_frames = sent.audio + sent.transcript + sent.chat;
    let noop_got = m.plugins.get("noop").map_or(0, |p| p.delivered);

    let per_session = rss_during.saturating_sub(rss_before) as f64 / n as f64 / (1 << 20) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let half = 50.0 * probe::cpus() as f64;
    let case = format!("{n} meetings");
    let note = format!(
        "{count} frames timed in {:.0} s; {live} live; connect {connect_s:.1} s; sim {sim_pct:.0} % CPU; noop got {noop_got} of {sent_frames} sent (audio {}, transcript {}, chat {}); drops {dropped}",
        window.as_secs_f64(),
        sent.audio,
        sent.transcript,
        sent.chat
    );
    let mut row = Row::new("concurrency", &format!("{case} p50"), "ms", ms(p50)).note(note);
    row.extra = json!({"meetings": n, "p50_ms": ms(p50), "p99_ms": ms(p99), "p999_ms": ms(p999), "max_ms": ms(max),
        "timed_frames": count, "cpu_pct": cpu_pct, "sim_cpu_pct": sim_pct, "rss_before": rss_before, "rss_during": rss_during,
        "rss_per_session_mib": per_session, "dropped": dropped, "sent": sent_frames, "noop_delivered": noop_got,
        "frames_in": m.frames_in, "connect_s": connect_s});
    report.push(row);
    let big = n >= 1000;
    let mut r = Row::new("concurrency", &format!("{case} p99"), "ms", ms(p99));
    if big {
        r = r.target("p99 < 5 ms", ms(p99) < 5.0);
    }
    report.push(r);
    report.push(
        Row::new("concurrency", &format!("{case} p999"), "ms", ms(p999))
            .note(format!("max {:.2} ms", ms(max))),
    );
    let mut r = Row::new("concurrency", &format!("{case} host CPU"), "%", cpu_pct).note(format!(
        "of one core; {} cores = {:.0} %",
        probe::cpus(),
        2.0 * half
    ));
    if big {
        r = r.target("< half the CPU", cpu_pct < half);
    }
    report.push(r);
    let mut r = Row::new(
        "concurrency",
        &format!("{case} RSS/session"),
        "MiB",
        per_session,
    )
    .note(format!(
        "RSS {:.0} -> {:.0} MiB",
        rss_before as f64 / 1048576.0,
        rss_during as f64 / 1048576.0
    ));
    if big {
        r = r.target("<= 2 MiB", per_session <= 2.0);
    }
    report.push(r);
    let mut r = Row::new(
        "concurrency",
        &format!("{case} drops"),
        "frames",
        dropped as f64,
    );
    if big {
        r = r.target("0", dropped == 0);
    }
    report.push(r);
    Ok(())
}

pub async fn run(report: &mut Report, quick: bool) -> Result<()> {
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    for n in [10, 100, 1000] {
        if let Err(e) = run_one(report, n, window).await {
            report.push(
                Row::new("concurrency", &format!("{n} meetings"), "-", 0.0)
                    .note(format!("FAILED: {e:#}")),
            );
        }
    }
    Ok(())
}
