//! Chaos, the long run: N real-time meetings (50 by default) of M minutes (5) while the
//! simulator injects F faults (1,000) of every kind a stream recovers from, at seeded random
//! times, against a host that runs a seq-recorder and a transcript writer beside two hostile
//! plugins (a descriptor hog and a memory hog, `tests/shared/chaos_hostile.toml`).
//!
//! The fault plan and the verdict are `rtms_sim::chaos`, the ones the short test
//! (`tests/e2e/chaos.rs`) uses. The host runs as a process of its own (`rtms-bench
//! host-child`, pinned to the sender core) so that its resident memory (VmRSS) and open
//! descriptors (`/proc/<pid>/fd`) are its alone: sampled before the meetings, every second
//! during them (the peak), and after the last stream ended and memory settled. The run
//! passes when every stream reached its scripted end on one session, every transcript line
//! and chat message read by the host was written exactly once by both plugins, no frame was
//! delivered twice, no stream had two clients at once, and RSS and descriptors ended within
//! the set bounds of where they started; otherwise `rtms-bench` exits non-zero.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rtms_config::{LoadOptions, Pipeline};
use rtms_host::service::{Service, StartOptions};
use rtms_proto::Product;
use rtms_sim::chaos::{LINE_MS, Plan, SeqRecord, judge, ledger_chats, ledger_transcript};
use rtms_sim::{Ledger, MeetingHandle, MeetingOptions, Pace, Simulator};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::probe;
use crate::report::{Report, Row};
use crate::setup::{self, PipeDef, PluginDef};

/// What to run and the bounds it is held to.
#[derive(Clone, Debug)]
pub struct Opts {
    pub meetings: usize,
    pub minutes: f64,
    /// Faults in all, over every meeting.
    pub faults: usize,
    pub seed: u64,
    /// RSS may end at most this far above where it started.
    pub rss_slack_mib: u64,
    /// Open descriptors may end at most this many above where they started.
    pub fd_slack: u64,
}

/// The hostile plugins' tables, for a pipeline whose plugins write under `out`.
fn hostile_plugins(out: &Path) -> String {
    include_str!("../../tests/shared/chaos_hostile.toml")
        .replace(
            "{fs_hog}",
            &setup::component("fs_hog").display().to_string(),
        )
        .replace("{hog}", &setup::component("hog").display().to_string())
        .replace("{out}", &out.display().to_string())
}

/// The pipeline: the seq-recorder (the record the verdict reads) and a JSON Lines
/// transcript writer on `block` queues, then the hostile plugins.
fn pipeline_text(dir: &Path) -> String {
    let seq = PluginDef {
        capacity: 4096,
        ..PluginDef::new("seq", "seq_recorder", &["audio", "transcript", "chat"]).block()
    };
    let writer = PluginDef::new("writer", "transcript_writer", &["transcript", "chat"])
        .cfg("dir", "\"/out\"")
        .cfg("format", "\"jsonl\"")
        .cfg("include_chat", "true")
        .block();
    let mut text = PipeDef::new(vec![seq, writer]).toml(dir);
    text += &hostile_plugins(&dir.join("out"));
    text
}

/// The simulator's timers: Zoom's grace (60 s for signaling, 30 s for media), keep-alives
/// every 200 ms as the e2e tests send them, so a keep-alive loss is noticed within a second.
fn sim_config() -> rtms_sim::SimConfig {
    rtms_sim::SimConfig {
        keepalive_interval: Duration::from_millis(200),
        ..setup::sim_config()
    }
}

/// The host's timings in a chaos run: those of the e2e harness (quick retries, keep-alive
/// loss noticed in 1.5 s), and a flapping bound no planned fault rate reaches, since the run
/// injects faults faster than a real network fails.
fn chaos_timings(p: &mut Pipeline) {
    let r = &mut p.rtms;
    r.connection_timeout = Duration::from_secs(2);
    r.connection_max_attempts = 5;
    r.connection_retry_delay = Duration::from_millis(100);
    r.reconnect_max_attempts = 5;
    r.reconnect_base_delay = Duration::from_millis(100);
    r.reconnect_max_delay = Duration::from_millis(400);
    r.reconnect_healthy_after = Duration::from_millis(1_000);
    r.reconnect_flap_max = 100_000;
    r.keepalive_interval = Duration::from_millis(300);
    r.keepalive_timeout = Duration::from_millis(1500);
    r.webhook_wait_timeout = Duration::from_millis(500);
}

/// `rtms-bench host-child --pipeline FILE`: the host as a process of its own. Prints
/// `ready <addr>`; then on each stdin line `idle` waits until no stream is live and prints
/// `idle`, on `metrics` prints one JSON line of counters; shuts down when stdin closes.
pub async fn host_child(path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut pipeline = Pipeline::parse(&text, path, &setup::env(), LoadOptions::default())
        .map_err(|e| anyhow::anyhow!("chaos pipeline is invalid: {e}"))?;
    chaos_timings(&mut pipeline);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let opts = StartOptions {
        watch: Some(false),
        ..Default::default()
    };
    let svc = Service::start(pipeline, Box::new(setup::env()), listener, opts).await?;
    println!("ready {}", setup::webhook_url(&svc));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "idle" => {
                svc.sessions().idle().await;
                println!("idle");
            }
            "metrics" => println!("{}", child_metrics(&svc)),
            other => eprintln!("host-child: unknown request {other:?}"),
        }
    }
    svc.shutdown().await;
    Ok(())
}

/// What the hostile plugins met, and the descriptor budget.
fn child_metrics(svc: &Service) -> serde_json::Value {
    let m = svc.metrics();
    let plugin = |n: &str| {
        m.plugins.get(n).map(|s| {
            json!({"open_files_refused": s.open_files_refused,
                "descriptors_refused": s.descriptors_refused, "traps": s.traps,
                "restarts": s.restarts, "breaker_trips": s.breaker_trips,
                "dead_lettered": s.dead_lettered, "discarded": s.discarded,
                "delivered": s.delivered, "dropped": s.dropped, "shed": s.shed})
        })
    };
    let d = svc.shared().rt.descriptors();
    json!({"fd-hog": plugin("fd-hog"), "mem-hog": plugin("mem-hog"), "seq": plugin("seq"),
        "writer": plugin("writer"),
        "descriptors": {"limit": d.limit(), "peak": d.peak(), "in_use": d.in_use()}})
}

/// The host child: its pid, its webhook URL, and the pipes to talk to it.
struct HostChild {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pid: String,
    webhook_url: String,
}

impl HostChild {
    /// Starts the host on `pipeline`; its log goes to `log`.
    async fn start(pipeline: &Path, log: &Path) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let log = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = probe::sender_command(&exe)
            .arg("host-child")
            .arg("--pipeline")
            .arg(pipeline)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the host child process")?;
        let pid = child.id().context("child has no pid")?.to_string();
        let stdin = child.stdin.take().context("child stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        let first = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .context("the host did not start within 120 s")??
            .context("the host child ended before it was ready")?;
        let webhook_url = first
            .strip_prefix("ready ")
            .with_context(|| format!("the host child said {first:?}"))?
            .to_owned();
        Ok(Self {
            child,
            stdin,
            lines,
            pid,
            webhook_url,
        })
    }

    /// Sends `request` and returns the answer line.
    async fn ask(&mut self, request: &str, limit: Duration) -> Result<String> {
        self.stdin
            .write_all(format!("{request}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        tokio::time::timeout(limit, self.lines.next_line())
            .await
            .with_context(|| format!("no answer to {request:?} within {limit:?}"))??
            .context("the host child ended")
    }

    async fn stop(self) {
        let Self {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    }
}

/// Open descriptors of process `pid`.
fn fd_count(pid: &str) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// RSS and descriptors of the host: at start, the peak, at the end.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    rss_start: u64,
    rss_peak: u64,
    rss_end: u64,
    fd_start: u64,
    fd_peak: u64,
    fd_end: u64,
}

/// Samples the host every second until `stop`, keeping the peaks.
fn sample_peaks(pid: String, stop: Arc<AtomicBool>) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
    let (rss, fds) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (r, f) = (rss.clone(), fds.clone());
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            r.fetch_max(probe::rss_bytes(&pid).unwrap_or(0), Ordering::Relaxed);
            f.fetch_max(fd_count(&pid), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    (rss, fds)
}

/// RSS once it stopped falling (freed memory goes back to the system in the background):
/// sampled every 2 s until two samples differ by under 1 MiB, for at most 30 s.
async fn settled_rss(pid: &str) -> u64 {
    let mut last = probe::rss_bytes(pid).unwrap_or(0);
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = probe::rss_bytes(pid).unwrap_or(0);
        if last.abs_diff(now) < 1 << 20 {
            return now;
        }
        last = now;
    }
    last
}

/// What the verdict found over every stream.
#[derive(Debug, Default)]
struct Tallies {
    recovered: usize,
    lines_sent: u64,
    lines_written: u64,
    chats_sent: u64,
    audio_read: u64,
    /// Messages written to sockets whose client never confirmed reading them, and of those
    /// the ones the plugins did not get (each stream's at most its unconfirmed).
    unconfirmed: u64,
    missed: u64,
    /// Streams with any unconfirmed message.
    unconfirmed_streams: usize,
    failures: Vec<String>,
}

/// The transcript writer's `(kind, text)` lines for `stream`.
fn writer_lines(out: &Path, stream: &str) -> Result<Vec<(String, String)>> {
    let suffix = format!("_{stream}.jsonl");
    let entry = std::fs::read_dir(out)?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        .with_context(|| format!("no transcript-writer file for stream {stream}"))?;
    let text = std::fs::read_to_string(entry.path())?;
    let mut lines = Vec::new();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(l).context("a writer line is not JSON")?;
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        lines.push((s("kind"), s("text")));
    }
    Ok(lines)
}

/// Judges every stream against its ledger.
fn judge_all(out: &Path, finished: &[(String, Ledger)]) -> Tallies {
    let mut t = Tallies::default();
    for (stream, ledger) in finished {
        t.lines_sent += ledger_transcript(ledger).len() as u64;
        t.chats_sent += ledger_chats(ledger).len() as u64;
        t.audio_read += ledger.count(rtms_sim::MediaKind::Audio);
        let verdict = (|| -> Result<(u64, rtms_sim::chaos::Verdict)> {
            let path = out.join(format!("seqs-{stream}.txt"));
            let rec =
                SeqRecord::parse(&std::fs::read_to_string(&path)?).map_err(anyhow::Error::msg)?;
            let writer = writer_lines(out, stream)?;
            let v = judge(ledger, &rec, &writer).map_err(anyhow::Error::msg)?;
            let written = writer.iter().filter(|(k, _)| k == "transcript").count() as u64;
            Ok((written, v))
        })();
        match verdict {
            Ok((written, v)) => {
                t.recovered += 1;
                t.lines_written += written;
                t.unconfirmed += v.unconfirmed;
                t.missed += v.missed;
                t.unconfirmed_streams += usize::from(v.unconfirmed > 0);
            }
            Err(e) => t.failures.push(format!("stream {stream}: {e:#}")),
        }
    }
    t
}

/// Starts every meeting of the plan against the host.
fn start_meetings(
    sim: &Simulator,
    plan: &mut Plan,
    o: &Opts,
    webhook_url: &str,
) -> Result<Vec<MeetingHandle>> {
    let lines = ((o.minutes * 60_000.0) as u64 / LINE_MS).max(20) as usize;
    let per_meeting = o.faults.div_ceil(o.meetings.max(1));
    let mut handles = Vec::new();
    for _ in 0..o.meetings {
        let script = plan.meeting(lines, per_meeting)?;
        handles.push(sim.start_meeting(
            script,
            MeetingOptions {
                product: Product::Meeting,
                pace: Pace::Realtime,
                webhook_url: Some(webhook_url.to_owned()),
                ..Default::default()
            },
        )?);
    }
    Ok(handles)
}

/// Runs the meetings to their end; returns each stream's ledger and the usage.
async fn play(
    o: &Opts,
    plan: &mut Plan,
    host: &mut HostChild,
) -> Result<(Vec<(String, Ledger)>, Usage)> {
    let mut u = Usage {
        rss_start: probe::rss_bytes(&host.pid).unwrap_or(0),
        fd_start: fd_count(&host.pid),
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (rss_peak, fd_peak) = sample_peaks(host.pid.clone(), stop.clone());
    let sim = Simulator::start(sim_config()).await?;
    let handles = start_meetings(&sim, plan, o, &host.webhook_url)?;
    let limit = Duration::from_secs_f64(o.minutes * 60.0 * 2.0) + Duration::from_secs(120);
    let all = futures_util::future::join_all(handles.iter().map(|h| h.finished()));
    let ledgers = tokio::time::timeout(limit, all)
        .await
        .with_context(|| format!("the meetings did not end within {limit:?}"))?;
    host.ask("idle", Duration::from_secs(120)).await?;
    drop(sim);
    stop.store(true, Ordering::Relaxed);
    u.rss_end = settled_rss(&host.pid).await;
    u.fd_end = fd_count(&host.pid);
    u.rss_peak = rss_peak.load(Ordering::Relaxed).max(u.rss_end);
    u.fd_peak = fd_peak.load(Ordering::Relaxed).max(u.fd_end);
    let finished = handles
        .iter()
        .zip(ledgers)
        .map(|(h, l)| (h.stream_id().to_owned(), l))
        .collect();
    Ok((finished, u))
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// Runs the chaos case; `Ok(false)` when a pass criterion failed (printed).
pub async fn run(report: &mut Report, o: &Opts) -> Result<bool> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("out"))?;
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, pipeline_text(dir.path()))?;
    let log = dir.path().join("host.log");
    println!(
        "chaos: seed {:#x}, {} meetings of {} min, {} faults; host pipeline {}, its log {}",
        o.seed,
        o.meetings,
        o.minutes,
        o.faults,
        path.display(),
        log.display()
    );
    let mut host = HostChild::start(&path, &log).await?;
    let mut plan = Plan::new(o.seed);
    let started = Instant::now();
    let (finished, usage) = play(o, &mut plan, &mut host).await?;
    let took = started.elapsed();
    let metrics: serde_json::Value =
        serde_json::from_str(&host.ask("metrics", Duration::from_secs(10)).await?)?;
    host.stop().await;
    let out = Outcome {
        tallies: judge_all(&dir.path().join("out"), &finished),
        plan,
        usage,
        took,
        metrics,
    };
    let pass = verdict(report, o, &out);
    if !pass {
        let kept = dir.keep();
        println!("  the run's files are kept in {}", kept.display());
    }
    Ok(pass)
}

/// What a run found.
struct Outcome {
    plan: Plan,
    tallies: Tallies,
    usage: Usage,
    took: Duration,
    /// The host's counters of the hostile plugins and the descriptor budget.
    metrics: serde_json::Value,
}

/// Prints the pass criteria and pushes the rows; true when every one holds.
fn verdict(report: &mut Report, o: &Opts, out: &Outcome) -> bool {
    let (plan, t, u, took, metrics) = (&out.plan, &out.tallies, out.usage, out.took, &out.metrics);
    let rss_ok = u.rss_end <= u.rss_start + (o.rss_slack_mib << 20);
    let fd_ok = u.fd_end <= u.fd_start + o.fd_slack;
    let faults_ok = plan.tally.total() >= o.faults as u64 && plan.tally.missing().is_empty();
    let streams_ok = t.failures.is_empty() && t.recovered == o.meetings;
    let checks = [
        (
            faults_ok,
            format!(
                "faults: {} planned ({}), every kind",
                plan.tally.total(),
                plan.tally
            ),
        ),
        (
            streams_ok,
            format!(
                "recovered: {} of {} streams reached their scripted end on one session",
                t.recovered, o.meetings
            ),
        ),
        (
            streams_ok,
            format!(
                "exactly once, never twice: {} transcript lines and {} chats read, each written once in order by the recorder and the writer ({} lines); {} audio frames; {} messages on {} streams written to sockets the host left before confirming them, {} of those not delivered",
                t.lines_sent,
                t.chats_sent,
                t.lines_written,
                t.audio_read,
                t.unconfirmed,
                t.unconfirmed_streams,
                t.missed
            ),
        ),
        (
            rss_ok,
            format!(
                "RSS: start {:.1} MiB, peak {:.1}, end {:.1} (bound: start + {} MiB)",
                mib(u.rss_start),
                mib(u.rss_peak),
                mib(u.rss_end),
                o.rss_slack_mib
            ),
        ),
        (
            fd_ok,
            format!(
                "descriptors: start {}, peak {}, end {} (bound: start + {})",
                u.fd_start, u.fd_peak, u.fd_end, o.fd_slack
            ),
        ),
    ];
    println!("\nchaos verdict ({:.0} s):", took.as_secs_f64());
    for (ok, line) in &checks {
        println!("  [{}] {line}", if *ok { "pass" } else { "FAIL" });
    }
    for f in t.failures.iter().take(10) {
        println!("  {f}");
    }
    println!("  hostile plugins and budget: {metrics}");
    let pass = checks.iter().all(|(ok, _)| *ok);
    push_row(report, o, out, pass);
    pass
}

/// The run as a report row, every figure in its JSON.
fn push_row(report: &mut Report, o: &Opts, out: &Outcome, pass: bool) {
    let (plan, t, u, took, metrics) = (&out.plan, &out.tallies, out.usage, out.took, &out.metrics);
    let mut row = Row::new("chaos", &format!("{} meetings", o.meetings), "streams recovered", t.recovered as f64)
        .note(format!("{:.0} s, seed {:#x}, {} faults; lines {} sent / {} written; RSS {:.0}/{:.0}/{:.0} MiB, fds {}/{}/{} (start/peak/end)", took.as_secs_f64(), o.seed, plan.tally.total(), t.lines_sent, t.lines_written, mib(u.rss_start), mib(u.rss_peak), mib(u.rss_end), u.fd_start, u.fd_peak, u.fd_end))
        .target("every check passes", pass);
    row.extra = json!({"seed": o.seed, "meetings": o.meetings, "minutes": o.minutes,
        "faults": plan.tally, "recovered": t.recovered, "lines_sent": t.lines_sent,
        "lines_written": t.lines_written, "chats_sent": t.chats_sent, "audio_read": t.audio_read,
        "unconfirmed": t.unconfirmed, "unconfirmed_streams": t.unconfirmed_streams, "missed": t.missed,
        "rss": [u.rss_start, u.rss_peak, u.rss_end], "fds": [u.fd_start, u.fd_peak, u.fd_end],
        "seconds": took.as_secs_f64(), "failures": t.failures, "host": metrics});
    report.push(row);
}
