//! Single-stream drain: one meeting sends N audio messages as fast as the client takes them
//! (`Pace::Fast`), through four receivers measured in the same run:
//!
//! - `raw`: a bare tokio-tungstenite reader that only counts (the simulator and loopback
//!   ceiling);
//! - `client`: the RTMS client (`rtms_client::Sessions`) with a counting `FrameSink` and no
//!   host core — the baseline for what the host adds;
//! - `host-no-audio-plugin`: the full host whose only plugin (noop) takes transcripts, so audio
//!   frames are decoded, converted and routed to nobody;
//! - `host-noop`: noop subscribed to audio;
//! - `host-noop+tw+ka`: noop on audio plus transcript-writer and keyword-alerter on
//!   transcript and chat (they never see audio, so the audio rate is bounded by noop while
//!   the other two run beside it);
//! - `core-direct noop+tw+ka`: the same pipeline with no sockets at all: decoded frames are
//!   pushed straight into a host session (`HostSession::push`), which shows what the host
//!   core and the plugins can take when the simulator is not the limit.
//!
//! Throughput is counted from the first audio frame received to the N-th one the last
//! stage finished with (the plugin's call returned, for the plugin cases).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rtms_client::{
    EndReason, FrameSink, MediaKind as ClientKind, Sessions, SinkFactory, StreamInfo, WsConnector,
};
use rtms_host::app::StartOptions;
use rtms_host::bindings::{EndReason as HostEnd, Frame, MediaKind};
use rtms_host::core::SessionDesc;
use rtms_host::metrics::BatchHook;
use rtms_sim::{MeetingOptions, Pace, Simulator};
use serde_json::json;

use crate::report::{Report, Row};
use crate::setup::{self, PipeDef, PluginDef, Stamps};

const LIMIT: Duration = Duration::from_secs(40);

#[derive(Clone, Copy, Debug)]
enum Receiver {
    Raw,
    Client,
    HostNoAudioPlugin,
    HostNoop,
    HostThree,
    CoreDirect,
}

impl Receiver {
    fn name(self) -> &'static str {
        match self {
            Receiver::Raw => "raw",
            Receiver::Client => "client",
            Receiver::HostNoAudioPlugin => "host-no-audio-plugin",
            Receiver::HostNoop => "host-noop",
            Receiver::HostThree => "host-noop+tw+ka",
            Receiver::CoreDirect => "core-direct noop+tw+ka",
        }
    }

    fn pipe(self, frame_ms: u32) -> PipeDef {
        let mut p = match self {
            Receiver::Raw | Receiver::Client => {
                PipeDef::new(vec![PluginDef::noop(&["audio"]).block()])
            }
            Receiver::HostNoAudioPlugin => {
                let mut p = PipeDef::new(vec![PluginDef::noop(&["transcript"]).block()]);
                p.media = Some(vec!["audio", "transcript"]);
                p
            }
            Receiver::HostNoop => PipeDef::new(vec![PluginDef::noop(&["audio"]).block()]),
            Receiver::HostThree | Receiver::CoreDirect => PipeDef::new(vec![
                PluginDef::noop(&["audio"]).block(),
                PluginDef::transcript_writer("transcript_writer"),
                PluginDef::keyword_alerter(),
            ]),
        };
        p.frame_ms = frame_ms;
        p
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

struct Outcome {
    rate: f64,
    elapsed: Duration,
    dropped: u64,
}

async fn run_one(recv: Receiver, frames: u64, frame_ms: u32) -> Result<Outcome> {
    let sim = Simulator::start(setup::sim_config()).await?;
    let script = setup::audio_script(frames, frame_ms)?;
    let stamps = Stamps::new(frames);
    let dir = tempfile::tempdir()?;
    let pipe = recv.pipe(frame_ms);
    let opts = |url: Option<String>| MeetingOptions {
        pace: Pace::Fast,
        webhook_url: url,
        ..Default::default()
    };
    let mut dropped = 0;
    let elapsed = match recv {
        Receiver::CoreDirect => {
            drop(sim);
            let svc = setup::start_host(&pipe, dir.path(), StartOptions::default()).await?;
            let s = stamps.clone();
            svc.shared()
                .metrics
                .set_batch_hook(BatchHook(Arc::new(move |_, plugin, frames| {
                    if plugin == "noop" {
                        s.add(frames.len() as u64);
                    }
                })));
            let session = svc.shared().open_session(SessionDesc {
                product: rtms_proto::Product::Meeting,
                meeting_id: "bench-meeting".into(),
                stream_id: "bench-stream".into(),
                operator_id: None,
                started_at_ms: 0,
                resumed: false,
                audio: None,
            });
            let bytes = 16 * 2 * frame_ms as usize;
            let template = Frame {
                kind: MediaKind::Audio,
                seq: 0,
                timestamp_ms: 0,
                user_id: "16778240".into(),
                user_name: "Speaker 1".into(),
                payload: vec![7u8; bytes],
                text: None,
                transcript: None,
                event_type: None,
            };
            for seq in 0..frames {
                let mut f = template.clone();
                f.seq = seq;
                if seq == 0 {
                    stamps.first();
                }
                session.push(f).await;
            }
            let e = stamps.wait(LIMIT).await?;
            session.end(HostEnd::Stopped(6)).await;
            // The session holds the host's output senders: drop it so the sinks can flush.
            drop(session);
            let m = svc.shutdown().await;
            dropped = m
                .plugins
                .values()
                .map(|p| p.dropped + p.discarded + p.dead_lettered)
                .sum();
            e
        }
        Receiver::Raw => {
            let h = sim.start_meeting(script, opts(None))?;
            let s = stamps.clone();
            let task = tokio::spawn(async move { crate::raw::run(&h, frame_ms, s).await });
            let e = stamps.wait(LIMIT).await?;
            task.await.context("raw reader task")??;
            e
        }
        Receiver::Client => {
            let pipeline = pipe.pipeline(dir.path())?;
            let cfg = rtms_host::pipeline::client_config(&pipeline)?;
            let sessions =
                Sessions::new(cfg, WsConnector::new(None)?, CountFactory(stamps.clone()));
            let h = sim.start_meeting(script, opts(None))?;
            sessions
                .handle(h.started_event())
                .map_err(|r| anyhow::anyhow!("the stream was refused: {r:?}"))?;
            let e = stamps.wait(LIMIT).await?;
            h.finished().await;
            sessions.idle().await;
            e
        }
        Receiver::HostNoAudioPlugin | Receiver::HostNoop | Receiver::HostThree => {
            let through_plugin = !matches!(recv, Receiver::HostNoAudioPlugin);
            let s = stamps.clone();
            let tap: rtms_host::session::Tap = Arc::new(move |_sess, f| {
                if f.kind == MediaKind::Audio {
                    s.first();
                    if !through_plugin {
                        s.add(1);
                    }
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
            if through_plugin {
                let s = stamps.clone();
                svc.shared().metrics.set_batch_hook(BatchHook(Arc::new(
                    move |_, plugin, frames| {
                        if plugin == "noop" {
                            s.add(
                                frames.iter().filter(|f| f.kind == MediaKind::Audio).count() as u64
                            );
                        }
                    },
                )));
            }
            let h = sim.start_meeting(script, opts(Some(setup::webhook_url(&svc))))?;
            let e = stamps.wait(LIMIT).await?;
            h.finished().await;
            tokio::time::timeout(LIMIT, svc.sessions().idle())
                .await
                .context("session did not end")?;
            let m = svc.shutdown().await;
            dropped = m
                .plugins
                .values()
                .map(|p| p.dropped + p.discarded + p.dead_lettered)
                .sum();
            if through_plugin {
                let d = m.plugins.get("noop").map_or(0, |p| p.delivered);
                anyhow::ensure!(d == frames, "noop got {d} of {frames} audio frames");
            }
            e
        }
    };
    Ok(Outcome {
        rate: frames as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed,
        dropped,
    })
}

/// Runs every receiver for 100 ms (3200 B) and 20 ms (640 B) frames.
pub async fn run(report: &mut Report, quick: bool) -> Result<()> {
    for (frame_ms, frames) in [
        (100u32, if quick { 5_000 } else { 60_000 }),
        (20, if quick { 10_000 } else { 150_000 }),
    ] {
        let bytes = 16_000 * 2 * frame_ms as u64 / 1000;
        let mut raw_rate = None;
        let mut client_rate = None;
        for recv in [
            Receiver::Raw,
            Receiver::Client,
            Receiver::HostNoAudioPlugin,
            Receiver::HostNoop,
            Receiver::HostThree,
            Receiver::CoreDirect,
        ] {
            let started = Instant::now();
            let o = match run_one(recv, frames, frame_ms).await {
                Ok(o) => o,
                Err(e) => {
                    let row = Row::new(
                        "drain",
                        &format!("{} {bytes} B", recv.name()),
                        "msgs/s",
                        0.0,
                    )
                    .note(format!("FAILED: {e:#}"));
                    report.push(row);
                    continue;
                }
            };
            tracing::info!(
                receiver = recv.name(),
                frame_ms,
                rate = o.rate,
                wall_s = started.elapsed().as_secs_f64(),
                "drain"
            );
            match recv {
                Receiver::Raw => raw_rate = Some(o.rate),
                Receiver::Client => client_rate = Some(o.rate),
                _ => {}
            }
            let mut note = format!("{frames} msgs in {:.2} s", o.elapsed.as_secs_f64());
            if let Some(r) = raw_rate.filter(|_| !matches!(recv, Receiver::Raw)) {
                note += &format!("; {:.0} % of raw", 100.0 * o.rate / r);
            }
            if let Some(c) =
                client_rate.filter(|_| !matches!(recv, Receiver::Raw | Receiver::Client))
            {
                note += &format!(", {:.0} % of client", 100.0 * o.rate / c);
            }
            if !matches!(recv, Receiver::Raw | Receiver::Client) {
                note += &format!(", drops {}", o.dropped);
            }
            let mut row = Row::new(
                "drain",
                &format!("{} {bytes} B", recv.name()),
                "msgs/s",
                o.rate,
            )
            .note(note);
            row.extra = json!({"frames": frames, "frame_ms": frame_ms, "bytes": bytes, "elapsed_s": o.elapsed.as_secs_f64(), "dropped": o.dropped});
            if matches!(recv, Receiver::HostThree | Receiver::CoreDirect) {
                row = row.target(">= 60000 msgs/s", o.rate >= 60_000.0 && o.dropped == 0);
            }
            report.push(row);
        }
    }
    Ok(())
}

/// A few hundred frames through the host with noop: the harness smoke test.
#[cfg(test)]
pub async fn smoke(frames: u64) -> Result<f64> {
    Ok(run_one(Receiver::HostNoop, frames, 20).await?.rate)
}
