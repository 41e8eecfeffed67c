//! `rtms-host replay`: push a recorded session through a pipeline with no network.
//!
//! The recording is JSON Lines, one message as it came off a socket per line:
//! `{"at_ms": <ms since the first message>, "socket": "signaling" | "media", "msg": {...}}`
//! (what `rtms-host simulate --record` writes). Every message goes through the same decoder
//! as live traffic; media and event messages become frames with sequence numbers in file
//! order, the confirmed media parameters (msg 4) give the session's audio format, and a
//! stream state 4 or session state 5 gives the stop reason the plugins see at the end.
//! The session's `started-at-ms` is the first frame's timestamp.
//! This is the plugin author's test loop: record once, replay against every build.
//!
//! As fast as possible (the default), every plugin's queue waits for room instead of
//! dropping, so what a plugin gets does not depend on how fast the machine replays;
//! `--realtime` plays the recording at its own pace with the pipeline's queue policies.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rtms_client::{Decoded, decode};
use rtms_config::{LoadOptions, Pipeline, ProcessEnv, QueuePolicy};
use rtms_proto::Product;
use rtms_proto::codes::{session_state, stream_state};
use serde::Deserialize;

use crate::dataplane::bridge::{audio_format, wit_frame};
use crate::dataplane::registry::{LiveStream, Registry, SessionDesc};
use crate::dataplane::stats::{Metrics, MetricsSnapshot};
use crate::outputs::deadletter::DeadLetters;
use crate::outputs::{OutputBounds, SinkSet, start_sinks_with};
use crate::pipeline::build::{build_table, net_settings, runtime_config};
use crate::sandbox::Runtime;
use crate::sandbox::bindings::EndReason;

#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// The recording (JSON Lines, as written by `rtms-host simulate --record`).
    pub file: PathBuf,
    /// The pipeline to push it through.
    #[arg(long, short, default_value = "pipeline.toml")]
    pub config: PathBuf,
    /// Keep the recorded pace instead of going as fast as possible.
    #[arg(long)]
    pub realtime: bool,
    /// The product the session reports to plugins.
    #[arg(long, default_value = "meeting", value_parser = parse_product)]
    pub product: Product,
    /// The meeting id the session reports (default: from the file name).
    #[arg(long)]
    pub meeting_id: Option<String>,
    /// The stream id the session reports (default: the file's stem).
    #[arg(long)]
    pub stream_id: Option<String>,
}

fn parse_product(s: &str) -> Result<Product, String> {
    s.parse()
}

#[derive(Deserialize)]
struct Line {
    at_ms: u64,
    #[serde(default)]
    socket: String,
    msg: Box<serde_json::value::RawValue>,
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    pub frames: u64,
    pub skipped_lines: u64,
    pub end: EndReason,
    pub metrics: MetricsSnapshot,
    pub elapsed: Duration,
}

pub async fn replay(args: ReplayArgs) -> Result<()> {
    let pipeline = Pipeline::load(&args.config, &ProcessEnv, LoadOptions::validate_only())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let s = replay_file(&pipeline, &args).await?;
    println!(
        "replayed {} frames from {} in {:.1} ms ({} lines skipped); session ended with {:?}",
        s.frames,
        args.file.display(),
        s.elapsed.as_secs_f64() * 1e3,
        s.skipped_lines,
        s.end
    );
    for (name, p) in &s.metrics.plugins {
        println!(
            "  {name}: {} frames delivered, {} errors, {} traps, {} dead-lettered, {} dropped ({}), {} shed",
            p.delivered,
            p.errors,
            p.traps,
            p.dead_lettered,
            p.dropped,
            crate::dataplane::stats::by_kind_text(&p.dropped_by_kind),
            p.shed
        );
    }
    Ok(())
}

/// Replays `args.file` through `pipeline` and returns when every plugin has ended the
/// session and every sink has flushed.
pub async fn replay_file(pipeline: &Pipeline, args: &ReplayArgs) -> Result<ReplaySummary> {
    let text = tokio::fs::read_to_string(&args.file)
        .await
        .with_context(|| format!("cannot read recording {}", args.file.display()))?;
    let lossless;
    let pipeline = if args.realtime {
        pipeline
    } else {
        lossless = lossless_queues(pipeline);
        &lossless
    };
    let (shared, sinks, metrics) = start_dataplane(pipeline).await?;
    let stem = file_stem(&args.file);
    let stream_id = args.stream_id.clone().unwrap_or_else(|| stem.clone());
    let meeting_id = args.meeting_id.clone().unwrap_or(stem);

    let lines = recording_lines(&text, &args.file)?;
    // The audio format comes from the first confirmed data handshake, so look ahead.
    let audio = lines
        .iter()
        .find_map(|(_, l)| match decode(l.msg.get().as_bytes()) {
            Ok(Decoded::DataResp(r)) => r.media_params.and_then(|p| p.audio),
            _ => None,
        });
    // The session started when the recording did: its first frame's time (now, if it has none).
    let started_at_ms = lines
        .iter()
        .find_map(|(_, l)| match decode(l.msg.get().as_bytes()) {
            Ok(Decoded::Frame(f)) if f.timestamp_ms > 0 => Some(f.timestamp_ms),
            _ => None,
        })
        .unwrap_or_else(rtms_proto::unix_ms);
    let session = shared.open_session(SessionDesc {
        product: args.product,
        meeting_id,
        stream_id,
        operator_id: None,
        started_at_ms,
        resumed: false,
        audio: Some(audio_format(&audio.unwrap_or_default())),
        details: Default::default(),
        fence: Default::default(),
    });
    let started = Instant::now();
    let played = play(&session, lines, args.realtime).await;
    session.end(played.end).await;
    drop(session);
    let snapshot = metrics.snapshot();
    for (name, p) in &snapshot.plugins {
        p.warn_losses(name);
    }
    drop(shared);
    sinks.finish().await;
    Ok(ReplaySummary {
        frames: played.frames,
        skipped_lines: played.skipped,
        end: played.end,
        metrics: snapshot,
        elapsed: started.elapsed(),
    })
}

/// The runtime, the plugins' table and the sinks of `pipeline`, and their counters.
async fn start_dataplane(pipeline: &Pipeline) -> Result<(Arc<Registry>, SinkSet, Arc<Metrics>)> {
    let rt = Runtime::new(&runtime_config(pipeline))?;
    let metrics = Arc::new(Metrics::default());
    let table = build_table(pipeline, &rt, &metrics, None, 1).await?;
    let bounds = OutputBounds::from(&pipeline.runtime);
    let (outputs, sinks) =
        start_sinks_with(pipeline.sinks.clone(), bounds, &net_settings(pipeline)).await?;
    let shared = Registry::new(
        rt,
        table,
        outputs,
        DeadLetters::with_limits(
            Some(pipeline.runtime.dead_letter_dir.clone()),
            pipeline.runtime.dead_letter_max_bytes,
            pipeline.runtime.dead_letter_files,
        ),
        metrics.clone(),
        None,
    );
    Ok((shared, sinks, metrics))
}

/// The recording's lines with their numbers (blank lines skipped); a line that is not a
/// recording line is an error naming it.
fn recording_lines(text: &str, file: &Path) -> Result<Vec<(usize, Line)>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Line>(l).map(|line| (i + 1, line)).map_err(|e| {
                anyhow::anyhow!(
                    "{}:{}: not a recording line ({e}); expected {{\"at_ms\":…,\"socket\":…,\"msg\":{{…}}}}",
                    file.display(),
                    i + 1
                )
            })
        })
        .collect()
}

/// What playing a recording came to.
struct Played {
    frames: u64,
    skipped: u64,
    end: EndReason,
}

/// Pushes every frame of `lines` into `session` in order (at the recorded pace when
/// `realtime`); a stop in the recording gives the end reason.
async fn play(session: &LiveStream, lines: Vec<(usize, Line)>, realtime: bool) -> Played {
    let started = Instant::now();
    let mut p = Played {
        frames: 0,
        skipped: 0,
        end: EndReason::Stopped(0),
    };
    for (lineno, line) in lines {
        if realtime {
            let due = Duration::from_millis(line.at_ms);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        match decode(line.msg.get().as_bytes()) {
            Ok(Decoded::Frame(f)) => {
                p.frames += 1;
                let mut f = wit_frame(f);
                f.seq = p.frames;
                session.push(f).await;
            }
            Ok(Decoded::StreamState(s)) if s.state == stream_state::TERMINATED => {
                p.end = EndReason::Stopped(s.reason);
            }
            Ok(Decoded::SessionState(s)) if s.state == session_state::STOPPED => {
                p.end = EndReason::Stopped(s.stop_reason.max(s.reason));
            }
            Ok(_) => {}
            Err(e) => {
                p.skipped += 1;
                tracing::warn!(line = lineno, socket = %line.socket, error = %e, "skipping a message the decoder refused");
            }
        }
    }
    p
}

/// The pipeline with every plugin's queue waiting for room, for a replay as fast as
/// possible: frames come faster than any meeting sends them, so a `drop-oldest` kind would
/// lose frames for the replay's speed, not the plugin's. (A stuck plugin still cannot hold
/// the replay for ever: its calls have their deadline.) `--realtime` keeps the pipeline's
/// queue policies.
fn lossless_queues(pipeline: &Pipeline) -> Pipeline {
    let mut p = pipeline.clone();
    for plugin in &mut p.plugins {
        if plugin.queue.on_full != QueuePolicy::BLOCK {
            tracing::info!(plugin = %plugin.name, policy = %plugin.queue.on_full.describe(plugin.media), "replaying as fast as possible: this plugin's queue waits for room instead of dropping (--realtime keeps its queue policy)");
        }
        plugin.queue.on_full = QueuePolicy::BLOCK;
        plugin.queue.block_timeout = plugin.queue.block_timeout.max(REPLAY_BLOCK_TIMEOUT);
    }
    p
}

/// How long a replay as fast as possible waits for a plugin's queue to have room.
const REPLAY_BLOCK_TIMEOUT: Duration = Duration::from_secs(600);

fn file_stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "replay".into())
}
