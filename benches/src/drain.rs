//! Single-stream drain: one meeting sends N audio messages as fast as the receiver takes
//! them (`Pace::Fast`), from the pre-encoded sender ([`crate::sender`]) in a child process
//! on its own core, to each receiver in turn. Cases run interleaved (round 1: every case,
//! round 2: every case, ...), and each figure is the median over the rounds with the
//! spread (min-max); ratios are the median of the per-round ratios, so a slow moment of the
//! shared machine hits a case and its baseline alike.
//!
//! Receivers:
//! - `raw`: the honest baseline ([`crate::raw`]): handshakes, then JSON parse and base64
//!   decode of every audio message into a reused buffer, through the client's connector;
//! - `client`: the RTMS client (`rtms_client::Sessions`) with a counting `FrameSink`;
//! - `host noop`: the whole host, noop on audio (`block` queue);
//! - `host audio`: the whole host with two audio consumers, audio-recorder (writing the WAV
//!   file) and rms-meter (reading every sample), both on `block` queues, plus
//!   transcript-writer and keyword-alerter on transcripts; done when both audio plugins
//!   returned from the call holding the N-th frame;
//! - `zoom sdk`: Zoom's official Python SDK counting audio callbacks ([`crate::sdk`]), over
//!   `wss://` (it needs TLS; the others use `ws://`).
//!
//! Rate = N / (first audio frame received .. N-th finished by the last stage). CPU per
//! message = the receiver process's CPU time over that interval / N.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rtms_client::{
    EndReason, FrameSink, MediaKind as ClientKind, Sessions, SinkFactory, StreamInfo, WsConnector,
};
use rtms_host::dataplane::stats::BatchHook;
use rtms_host::sandbox::bindings::MediaKind;
use rtms_host::service::StartOptions;
use serde_json::json;

use crate::report::{Report, Row};
use crate::sender::{self, Sender, SenderReq, Sent};
use crate::setup::{self, PipeDef, PluginDef, Stamps};

const LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Case {
    Raw,
    Client,
    HostNoop,
    HostAudio,
    Sdk,
}

impl Case {
    pub fn name(self) -> &'static str {
        match self {
            Case::Raw => "raw",
            Case::Client => "client",
            Case::HostNoop => "host noop",
            Case::HostAudio => "host audio (recorder+meter+tw+ka)",
            Case::Sdk => "zoom sdk (python rtms)",
        }
    }

    fn pipe(self, frame_ms: u32) -> PipeDef {
        let mut p = match self {
            Case::HostAudio => PipeDef::new(vec![
                PluginDef::audio_recorder().block(),
                PluginDef::rms_meter().block(),
                PluginDef::transcript_writer("transcript_writer"),
                PluginDef::keyword_alerter(),
            ]),
            _ => PipeDef::new(vec![PluginDef::noop(&["audio"]).block()]),
        };
        p.frame_ms = frame_ms;
        p
    }

    /// The plugins whose calls finish a frame.
    fn audio_plugins(self) -> &'static [&'static str] {
        match self {
            Case::HostAudio => &["audio-recorder", "rms-meter"],
            _ => &["noop"],
        }
    }
}

/// Counts audio frames for the client baseline.
#[derive(Clone)]
struct CountFactory(Arc<Stamps>);
struct CountSink(Arc<Stamps>);

impl SinkFactory for CountFactory {
    type Sink = CountSink;
    fn open(&self, _info: &StreamInfo) -> CountSink {
        CountSink(self.0.clone())
    }
}

impl FrameSink for CountSink {
    async fn frame(&self, frame: rtms_client::Frame) {
        if frame.kind == ClientKind::Audio {
            self.0.first();
            self.0.add(1);
        }
    }
    async fn end(self, _reason: EndReason) {}
}

#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub rate: f64,
    pub elapsed: Duration,
    /// Receiver CPU seconds over the measured interval.
    pub cpu_s: f64,
    /// The sender child's CPU seconds, start-up included.
    pub sender_cpu_s: Option<f64>,
    pub dropped: u64,
}

impl Outcome {
    fn cpu_us_per_msg(&self, frames: u64) -> f64 {
        self.cpu_s * 1e6 / frames as f64
    }
}

/// One case, one run. `in_process` runs the sender in this process (the smoke test).
pub async fn run_one(case: Case, frames: u64, frame_ms: u32, in_process: bool) -> Result<Outcome> {
    if case == Case::Sdk {
        let py = tokio::task::spawn_blocking(crate::sdk::python)
            .await?
            .map_err(|e| anyhow::anyhow!("Zoom's SDK is not available: {e}"))?;
        let r = crate::sdk::drain(&py, frames, frame_ms).await?;
        return Ok(Outcome {
            rate: r.frames as f64 / r.wall_s.max(1e-9),
            elapsed: Duration::from_secs_f64(r.wall_s),
            cpu_s: r.cpu_s,
            sender_cpu_s: None,
            dropped: 0,
        });
    }
    let stamps = Stamps::new(frames * case.audio_plugins().len() as u64);
    let req = SenderReq {
        frames,
        frame_ms,
        webhook_url: None,
        tls: false,
        ca_out: None,
        preencoded: true,
        ready_settle_ms: None,
        hold_end: false,
    };
    let d = match case {
        Case::Raw => drain_raw(req, &stamps, in_process).await?,
        Case::Client => drain_client(case, req, &stamps, in_process).await?,
        Case::HostNoop | Case::HostAudio => drain_host(case, req, &stamps, in_process).await?,
        Case::Sdk => unreachable!("handled above"),
    };
    anyhow::ensure!(
        d.sent.audio == frames,
        "the sender's ledger counts {} audio frames, not {frames}",
        d.sent.audio
    );
    Ok(Outcome {
        rate: frames as f64 / d.elapsed.as_secs_f64().max(1e-9),
        elapsed: d.elapsed,
        cpu_s: stamps.cpu_s(),
        sender_cpu_s: d.sender_cpu_s,
        dropped: d.dropped,
    })
}

/// What one receiver's drain came to.
struct Drained {
    elapsed: Duration,
    sent: Sent,
    sender_cpu_s: Option<f64>,
    dropped: u64,
}

/// The raw reader drains the meeting.
async fn drain_raw(req: SenderReq, stamps: &Arc<Stamps>, in_process: bool) -> Result<Drained> {
    let (snd, body) = Sender::start(&req, in_process).await?;
    let ev = sender::started_event(&body)?;
    let s = stamps.clone();
    let frame_ms = req.frame_ms;
    let task = tokio::spawn(async move { crate::raw::run(&ev, frame_ms, s, None).await });
    let elapsed = stamps.wait(LIMIT).await?;
    task.await.context("raw reader task")??;
    let sender_cpu_s = snd.pid().and_then(crate::probe::cpu_secs);
    Ok(Drained {
        elapsed,
        sent: snd.finished().await?,
        sender_cpu_s,
        dropped: 0,
    })
}

/// The RTMS client alone drains the meeting into a counting sink.
async fn drain_client(
    case: Case,
    req: SenderReq,
    stamps: &Arc<Stamps>,
    in_process: bool,
) -> Result<Drained> {
    let dir = tempfile::tempdir()?;
    let pipeline = case.pipe(req.frame_ms).pipeline(dir.path())?;
    let cfg = rtms_host::pipeline::build::client_config(&pipeline)?;
    let sessions = Sessions::new(cfg, WsConnector::new(None)?, CountFactory(stamps.clone()));
    let (snd, body) = Sender::start(&req, in_process).await?;
    sessions
        .handle(sender::started_event(&body)?)
        .map_err(|r| anyhow::anyhow!("the stream was refused: {r:?}"))?;
    let elapsed = stamps.wait(LIMIT).await?;
    let sender_cpu_s = snd.pid().and_then(crate::probe::cpu_secs);
    let sent = snd.finished().await?;
    sessions.idle().await;
    Ok(Drained {
        elapsed,
        sent,
        sender_cpu_s,
        dropped: 0,
    })
}

/// The whole host drains the meeting; every audio plugin must get every frame.
async fn drain_host(
    case: Case,
    mut req: SenderReq,
    stamps: &Arc<Stamps>,
    in_process: bool,
) -> Result<Drained> {
    let plugins = case.audio_plugins();
    let dir = tempfile::tempdir()?;
    let s = stamps.clone();
    let tap: rtms_host::dataplane::bridge::Tap = Arc::new(move |_sess, f| {
        if f.kind == MediaKind::Audio {
            s.first();
        }
    });
    let opts = StartOptions {
        tap: Some(tap),
        watch: None,
        ..Default::default()
    };
    let svc = setup::start_host(&case.pipe(req.frame_ms), dir.path(), opts).await?;
    let s = stamps.clone();
    svc.shared()
        .metrics
        .set_batch_hook(BatchHook(Arc::new(move |_, plugin, frames| {
            if plugins.contains(&plugin) {
                s.add(frames.iter().filter(|f| f.kind == MediaKind::Audio).count() as u64);
            }
        })));
    req.webhook_url = Some(setup::webhook_url(&svc));
    let (snd, _body) = Sender::start(&req, in_process).await?;
    let elapsed = stamps.wait(LIMIT).await?;
    let sender_cpu_s = snd.pid().and_then(crate::probe::cpu_secs);
    let sent = snd.finished().await?;
    tokio::time::timeout(LIMIT, svc.sessions().idle())
        .await
        .context("session did not end")?;
    let m = svc.shutdown().await;
    let dropped = m
        .plugins
        .values()
        .map(|p| p.dropped + p.discarded + p.dead_lettered)
        .sum();
    for p in plugins {
        let d = m.plugins.get(*p).map_or(0, |p| p.delivered);
        anyhow::ensure!(
            d == sent.audio,
            "{p} got {d} frames of the {} audio frames the sender's ledger counts",
            sent.audio
        );
    }
    Ok(Drained {
        elapsed,
        sent,
        sender_cpu_s,
        dropped,
    })
}

/// Sizes per frame length: (frame_ms, frames, frames for the SDK).
fn sizes(quick: bool) -> [(u32, u64, u64); 2] {
    if quick {
        [(20, 30_000, 10_000), (100, 10_000, 4_000)]
    } else {
        [(20, 200_000, 40_000), (100, 60_000, 15_000)]
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return 0.0;
    }
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.0}-{hi:.0}")
}

/// Runs every case `rounds` times, interleaved, for 20 ms and 100 ms frames.
pub async fn run(report: &mut Report, quick: bool, rounds: usize, only: &[String]) -> Result<()> {
    let all = [
        (Case::Raw, "raw"),
        (Case::Client, "client"),
        (Case::HostNoop, "noop"),
        (Case::HostAudio, "audio"),
        (Case::Sdk, "sdk"),
    ];
    if let Some(bad) = only.iter().find(|c| !all.iter().any(|(_, n)| n == c)) {
        anyhow::bail!("unknown drain case {bad:?}: use raw, client, noop, audio or sdk");
    }
    let cases: Vec<Case> = all
        .iter()
        .filter(|(_, n)| only.is_empty() || only.iter().any(|c| c == n))
        .map(|(c, _)| *c)
        .collect();
    for size in sizes(quick) {
        let r = run_rounds(&cases, size, rounds).await;
        for &case in &cases {
            push_rows(report, case, size, &r);
        }
    }
    Ok(())
}

/// What the rounds of one frame size measured.
#[derive(Default)]
struct Rounds {
    got: BTreeMap<Case, Vec<Outcome>>,
    failed: BTreeMap<Case, String>,
    /// Per round: each case's rate over raw's and over the SDK's.
    over_raw: BTreeMap<Case, Vec<f64>>,
    over_sdk: BTreeMap<Case, Vec<f64>>,
}

/// Runs `cases` interleaved, `rounds` times, at one size `(frame_ms, frames, sdk_frames)`;
/// a case that fails is not run again.
async fn run_rounds(cases: &[Case], size: (u32, u64, u64), rounds: usize) -> Rounds {
    let (frame_ms, frames, sdk_frames) = size;
    let mut r = Rounds::default();
    for round in 0..rounds {
        let mut this: BTreeMap<Case, f64> = BTreeMap::new();
        for &case in cases {
            if r.failed.contains_key(&case) {
                continue;
            }
            let n = if case == Case::Sdk {
                sdk_frames
            } else {
                frames
            };
            match run_one(case, n, frame_ms, false).await {
                Ok(o) => {
                    tracing::info!(case = case.name(), frame_ms, round, rate = o.rate, "drain");
                    eprintln!(
                        "  drain {frame_ms} ms round {} {:<36} {:>9.0} msgs/s",
                        round + 1,
                        case.name(),
                        o.rate
                    );
                    this.insert(case, o.rate);
                    r.got.entry(case).or_default().push(o);
                }
                Err(e) => {
                    r.failed.insert(case, format!("{e:#}"));
                }
            }
        }
        for (c, rate) in &this {
            if let Some(raw) = this.get(&Case::Raw) {
                r.over_raw.entry(*c).or_default().push(rate / raw);
            }
            if let Some(sdk) = this.get(&Case::Sdk) {
                r.over_sdk.entry(*c).or_default().push(rate / sdk);
            }
        }
    }
    r
}

/// The report's rows for one case at one size.
fn push_rows(report: &mut Report, case: Case, size: (u32, u64, u64), r: &Rounds) {
    let (frame_ms, frames, sdk_frames) = size;
    let bytes = 32 * frame_ms;
    let name = format!("{} {bytes} B", case.name());
    if let Some(e) = r.failed.get(&case) {
        report.push(Row::new("drain", &name, "msgs/s", 0.0).note(format!("FAILED: {e}")));
        return;
    }
    let Some(os) = r.got.get(&case) else { return };
    let rates: Vec<f64> = os.iter().map(|o| o.rate).collect();
    let n = if case == Case::Sdk {
        sdk_frames
    } else {
        frames
    };
    let cpus: Vec<f64> = os.iter().map(|o| o.cpu_us_per_msg(n)).collect();
    let rate = median(&rates);
    let mut note = format!(
        "{} runs of {n} msgs: {} msgs/s; CPU {:.2} us/msg",
        rates.len(),
        spread(&rates),
        median(&cpus)
    );
    let vs_raw = r.over_raw.get(&case).map(|v| median(v));
    let vs_sdk = r.over_sdk.get(&case).map(|v| median(v));
    if let Some(x) = vs_raw.filter(|_| case != Case::Raw) {
        note += &format!("; {:.0} % of raw", 100.0 * x);
    }
    if let Some(x) = vs_sdk.filter(|_| case != Case::Sdk) {
        note += &format!("; {x:.1}x the SDK");
    }
    let sender: Vec<f64> = os
        .iter()
        .filter_map(|o| o.sender_cpu_s)
        .map(|c| c * 1e6 / n as f64)
        .collect();
    if !sender.is_empty() {
        note += &format!("; sender {:.2} us/msg", median(&sender));
    }
    let dropped: u64 = os.iter().map(|o| o.dropped).sum();
    if matches!(case, Case::HostNoop | Case::HostAudio) {
        note += &format!("; drops {dropped}");
    }
    let mut row = Row::new("drain", &name, "msgs/s", rate).note(note);
    row.extra = json!({"frames": n, "frame_ms": frame_ms, "bytes": bytes,
        "rates": rates, "cpu_us_per_msg": cpus, "sender_cpu_us_per_msg": sender,
        "elapsed_s": os.iter().map(|o| o.elapsed.as_secs_f64()).collect::<Vec<_>>(), "over_raw": r.over_raw.get(&case),
        "over_sdk": r.over_sdk.get(&case), "dropped": dropped});
    if case == Case::HostAudio && frame_ms == 20 {
        let met = vs_raw.is_some_and(|x| x >= 0.5) && dropped == 0;
        row = row.target(">= 50 % of raw", met);
    }
    report.push(row);
    if case == Case::HostAudio
        && frame_ms == 20
        && let Some(x) = vs_sdk
    {
        report.push(
            Row::new("drain", &format!("host audio / sdk {bytes} B"), "x", x)
                .note("median of the per-round ratios")
                .target(">= 25x", x >= 25.0),
        );
    }
}

/// A few hundred frames through the host with both audio plugins and an in-process
/// sender: the harness smoke test.
#[cfg(test)]
pub async fn smoke(frames: u64) -> Result<Outcome> {
    run_one(Case::HostAudio, frames, 20, true).await
}
