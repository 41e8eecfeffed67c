//! The traffic source of the drain benchmark: the simulator with pre-encoded audio
//! ([`rtms_sim::SimConfig::preencoded_audio`]) playing one fast-paced meeting, in a child
//! process (`rtms-bench sender-child`) pinned to its own core, so the receiver's CPU is its
//! own and the sender is not the limit. The smoke test runs it in-process instead (a test
//! binary cannot re-execute itself as the bench).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use rtms_proto::WebhookEvent;
use rtms_proto::webhook::Envelope;
use rtms_sim::{MeetingHandle, MeetingOptions, Pace, SimConfig, Simulator};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::probe;
use crate::setup;

/// How long a meeting may take before the sender gives up.
const LIMIT: Duration = Duration::from_secs(120);

/// What the sender is asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SenderReq {
    pub frames: u64,
    pub frame_ms: u32,
    /// Where the started webhook goes; `None`: the caller delivers it itself.
    pub webhook_url: Option<String>,
    /// `wss://` with a generated CA (Zoom's SDK needs TLS), written to `ca_out`.
    pub tls: bool,
    pub ca_out: Option<PathBuf>,
    /// The pre-encoded sender (the default); `false`: the simulator's normal one, which
    /// synthesises, encodes and serialises every frame as it sends it.
    pub preencoded: bool,
    /// How long the timeline waits after the client's ready for more media sockets
    /// ([`SimConfig::ready_settle`]); `None` keeps the simulator's default. Zoom's SDK
    /// opens its audio socket well after its first ready.
    pub ready_settle_ms: Option<u64>,
    /// Pause the stream after the last frame instead of ending it (Zoom's SDK drops the
    /// frames it has not handed over yet when a stream stops); the sender then never
    /// finishes: drop it.
    pub hold_end: bool,
}

/// What the simulator's ledger says it sent.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Sent {
    pub audio: u64,
    pub transcript: u64,
    pub bytes: u64,
}

fn sim_config(req: &SenderReq) -> SimConfig {
    SimConfig {
        preencoded_audio: req.preencoded,
        ready_settle: req
            .ready_settle_ms
            .map_or(setup::sim_config().ready_settle, Duration::from_millis),
        tls: req.tls,
        advertise_host: if req.tls { "localhost" } else { "127.0.0.1" }.into(),
        ..setup::sim_config()
    }
}

async fn start_meeting(req: &SenderReq) -> Result<(Simulator, MeetingHandle)> {
    let sim = Simulator::start(sim_config(req)).await?;
    if let (Some(pem), Some(path)) = (sim.ca_pem(), &req.ca_out) {
        std::fs::write(path, pem)?;
    }
    let h = sim.start_meeting(
        setup::audio_script(req.frames, req.frame_ms, req.hold_end)?,
        MeetingOptions {
            pace: Pace::Fast,
            webhook_url: req.webhook_url.clone(),
            ..Default::default()
        },
    )?;
    Ok((sim, h))
}

async fn finish(h: &MeetingHandle) -> Result<Sent> {
    let l = tokio::time::timeout(LIMIT, h.finished())
        .await
        .context("the meeting did not end")?;
    Ok(Sent {
        audio: l.count(rtms_sim::MediaKind::Audio),
        transcript: l.count(rtms_sim::MediaKind::Transcript),
        bytes: l
            .kinds
            .get(&rtms_sim::MediaKind::Audio)
            .map_or(0, |k| k.bytes),
    })
}

/// The started webhook body as an event.
pub fn started_event(body: &[u8]) -> Result<WebhookEvent> {
    Envelope::parse(body)?
        .rtms_event()?
        .context("the started body is not an RTMS event")
}

/// `rtms-bench sender-child`: one [`SenderReq`] line on stdin; prints the started webhook
/// body (a JSON string) once the meeting exists, then the [`Sent`] line when it ended.
pub async fn child() -> Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).await?;
    let req: SenderReq = serde_json::from_str(&line).context("bad request from the parent")?;
    let (sim, h) = start_meeting(&req).await?;
    let body = String::from_utf8(h.started_body())?;
    println!("{}", serde_json::to_string(&body)?);
    println!("{}", serde_json::to_string(&finish(&h).await?)?);
    // Stay until the parent is done reading: exiting now would reset sockets that still
    // hold frames the receiver has not read.
    let mut rest = String::new();
    let _ = stdin.read_line(&mut rest).await;
    drop(sim);
    Ok(())
}

/// A running sender.
pub enum Sender {
    Child {
        child: Box<Child>,
        lines: Lines<BufReader<ChildStdout>>,
        pid: String,
    },
    InProcess {
        _sim: Simulator,
        h: MeetingHandle,
    },
}

impl Sender {
    /// Starts the meeting; returns the sender and the started webhook body.
    pub async fn start(req: &SenderReq, in_process: bool) -> Result<(Self, Vec<u8>)> {
        if in_process {
            let (sim, h) = start_meeting(req).await?;
            let body = h.started_body();
            return Ok((Self::InProcess { _sim: sim, h }, body));
        }
        let exe = std::env::current_exe()?;
        let mut child = probe::sender_command(&exe)
            .arg("sender-child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the sender child process")?;
        let pid = child.id().context("child has no pid")?.to_string();
        let stdin = child.stdin.as_mut().context("child stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        stdin
            .write_all(format!("{}\n", serde_json::to_string(req)?).as_bytes())
            .await?;
        stdin.flush().await?;
        let first = tokio::time::timeout(LIMIT, lines.next_line())
            .await
            .context("the sender did not start")??
            .context("the sender ended early")?;
        let body: String =
            serde_json::from_str(&first).with_context(|| format!("the sender said {first:?}"))?;
        let child = Box::new(child);
        Ok((Self::Child { child, lines, pid }, body.into_bytes()))
    }

    /// The child's pid, for its CPU time.
    pub fn pid(&self) -> Option<&str> {
        match self {
            Self::Child { pid, .. } => Some(pid),
            Self::InProcess { .. } => None,
        }
    }

    /// Waits for the meeting to end; what the ledger says was sent.
    pub async fn finished(self) -> Result<Sent> {
        match self {
            Self::InProcess { h, .. } => finish(&h).await,
            Self::Child {
                mut child,
                mut lines,
                ..
            } => {
                // Closing stdin lets the child exit once it reported.
                drop(child.stdin.take());
                let line = tokio::time::timeout(LIMIT, lines.next_line())
                    .await
                    .context("the sender did not finish")??
                    .context("the sender ended without a summary")?;
                let _ = child.wait().await;
                Ok(serde_json::from_str(&line)?)
            }
        }
    }
}
