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
use crate::sender::{self, Sender, SenderReq};
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
    let plugins = case.audio_plugins();
    let stamps = Stamps::new(frames * plugins.len() as u64);
    let dir = tempfile::tempdir()?;
    let pipe = case.pipe(frame_ms);
    let mut req = SenderReq {
        frames,
        frame_ms,
        webhook_url: None,
        tls: false,
        ca_out: None,
        preencoded: true,
        ready_settle_ms: None,
        hold_end: false,
    };
    let mut dropped = 0;
    let sender_cpu_s;
    let (elapsed, sent) = match case {
        Case::Raw => {
            let (snd, body) = Sender::start(&req, in_process).await?;
            let ev = sender::started_event(&body)?;
            let s = stamps.clone();
            let task = tokio::spawn(async move { crate::raw::run(&ev, frame_ms, s, None).await });
            let e = stamps.wait(LIMIT).await?;
            task.await.context("raw reader task")??;
            sender_cpu_s = snd.pid().and_then(crate::probe::cpu_secs);
            (e, snd.finished().await?)
        }
        Case::Client => {
            let pipeline = pipe.pipeline(dir.path())?;
            let cfg = rtms_host::pipeline::build::client_config(&pipeline)?;
            let sessions =
                Sessions::new(cfg, WsConnector::new(None)?, CountFactory(stamps.clone()));
            let (snd, body) = Sender::start(&req, in_process).await?;
            sessions
                .handle(sender::started_event(&body)?)
                .map_err(|r| anyhow::anyhow!("the stream was refused: {r:?}"))?;
            let e = stamps.wait(LIMIT).await?;
            sender_cpu_s = snd.pid().and_then(crate::probe::cpu_secs);
            let sent = snd.finished().await?;
            sessions.idle().await;
            (e, sent)
        }
        Case::HostNoop | Case::HostAudio => {
            let s = stamps.clone();
            let tap: rtms_host::dataplane::bridge::Tap = Arc::new(move |_sess, f| {
                if f.kind == MediaKind::Audio {
                    s.first();
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
            let e = stamps.wait(LIMIT).await?;
            sender_cpu_s = snd.pid().and_then(crate::probe::cpu_secs);
            let sent = snd.finished().await?;
            tokio::time::timeout(LIMIT, svc.sessions().idle())
                .await
                .context("session did not end")?;
            let m = svc.shutdown().await;
            dropped = m
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
            (e, sent)
        }
        Case::Sdk => unreachable!("handled above"),
    };
    anyhow::ensure!(
        sent.audio == frames,
        "the sender's ledger counts {} audio frames, not {frames}",
        sent.audio
    );
    Ok(Outcome {
        rate: frames as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed,
        cpu_s: stamps.cpu_s(),
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
    for (frame_ms, frames, sdk_frames) in sizes(quick) {
        let bytes = 32 * frame_ms;
        let mut got: BTreeMap<Case, Vec<Outcome>> = BTreeMap::new();
        let mut failed: BTreeMap<Case, String> = BTreeMap::new();
        // Per round: each case's rate over raw's and over the SDK's.
        let mut over_raw: BTreeMap<Case, Vec<f64>> = BTreeMap::new();
        let mut over_sdk: BTreeMap<Case, Vec<f64>> = BTreeMap::new();
        for round in 0..rounds {
            let mut this: BTreeMap<Case, f64> = BTreeMap::new();
            for &case in &cases {
                if failed.contains_key(&case) {
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
                        got.entry(case).or_default().push(o);
                    }
                    Err(e) => {
                        failed.insert(case, format!("{e:#}"));
                    }
                }
            }
            for (c, r) in &this {
                if let Some(raw) = this.get(&Case::Raw) {
                    over_raw.entry(*c).or_default().push(r / raw);
                }
                if let Some(sdk) = this.get(&Case::Sdk) {
                    over_sdk.entry(*c).or_default().push(r / sdk);
                }
            }
        }
        for &case in &cases {
            let name = format!("{} {bytes} B", case.name());
            if let Some(e) = failed.get(&case) {
                report.push(Row::new("drain", &name, "msgs/s", 0.0).note(format!("FAILED: {e}")));
                continue;
            }
            let Some(os) = got.get(&case) else { continue };
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
            let vs_raw = over_raw.get(&case).map(|v| median(v));
            let vs_sdk = over_sdk.get(&case).map(|v| median(v));
            if let Some(r) = vs_raw.filter(|_| case != Case::Raw) {
                note += &format!("; {:.0} % of raw", 100.0 * r);
            }
            if let Some(r) = vs_sdk.filter(|_| case != Case::Sdk) {
                note += &format!("; {r:.1}x the SDK");
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
                "elapsed_s": os.iter().map(|o| o.elapsed.as_secs_f64()).collect::<Vec<_>>(), "over_raw": over_raw.get(&case),
                "over_sdk": over_sdk.get(&case), "dropped": dropped});
            if case == Case::HostAudio && frame_ms == 20 {
                let met = vs_raw.is_some_and(|r| r >= 0.5) && dropped == 0;
                row = row.target(">= 50 % of raw", met);
            }
            report.push(row);
            if case == Case::HostAudio
                && frame_ms == 20
                && let Some(r) = vs_sdk
            {
                report.push(
                    Row::new("drain", &format!("host audio / sdk {bytes} B"), "x", r)
                        .note("median of the per-round ratios")
                        .target(">= 25x", r >= 25.0),
                );
            }
        }
    }
    Ok(())
}

/// A few hundred frames through the host with both audio plugins and an in-process
/// sender: the harness smoke test.
#[cfg(test)]
pub async fn smoke(frames: u64) -> Result<Outcome> {
    run_one(Case::HostAudio, frames, 20, true).await
}
