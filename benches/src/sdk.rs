//! Zoom's official RTMS SDK (PyPI `rtms`, Python bindings over Zoom's native core) as a
//! drain receiver: `benches/sdk/sdk_drain.py` counts audio callbacks and reports its rate
//! and CPU. The SDK is installed into the virtualenv the conformance test uses
//! (`target/tmp/rtms-sdk-venv`, `crates/sim/tests/official_sdk.rs`), creating it with pip
//! when missing. When it cannot be installed the case reports why; it never passes silently.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::sender::{Sender, SenderReq};
use crate::setup;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/sdk_drain.py");

/// The virtualenv of the conformance test.
pub fn venv_dir() -> PathBuf {
    setup::workspace().join("target/tmp/rtms-sdk-venv")
}

#[path = "../../tests/shared/pyvenv.rs"]
mod pyvenv;

/// The venv's python with `rtms` importable, creating the venv on first use.
pub fn python() -> Result<PathBuf, String> {
    pyvenv::python(&venv_dir(), &["rtms"], "rtms")
        .map_err(|e| format!("Zoom's SDK (PyPI package `rtms`) is not installable: {e}"))
}

#[derive(Debug, Deserialize)]
pub struct SdkResult {
    pub frames: u64,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub reason: String,
}

/// Drains `frames` audio messages of `frame_ms` into the SDK over `wss://`.
pub async fn drain(py: &Path, frames: u64, frame_ms: u32) -> Result<SdkResult> {
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    let mut child = tokio::process::Command::new(py)
        .arg(SCRIPT)
        .current_dir(dir.path())
        .env("ZM_RTMS_CLIENT", setup::CLIENT_ID)
        .env("ZM_RTMS_SECRET", setup::CLIENT_SECRET)
        .env("ZM_RTMS_CA", &ca)
        .env("ZM_RTMS_PATH", "/webhook")
        .env("SDK_FRAMES", frames.to_string())
        .env("SDK_FRAME_MS", frame_ms.to_string())
        .env("SDK_TIMEOUT", "150")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the SDK script")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut next = async || -> Result<serde_json::Value> {
        loop {
            let l = tokio::time::timeout(Duration::from_secs(180), lines.next_line())
                .await
                .context("the SDK script went quiet")??
                .context("the SDK script ended")?;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                return Ok(v);
            }
        }
    };
    let port = next().await?["webhook_port"]
        .as_u64()
        .context("the SDK script did not report its webhook port")?;
    // The CA file must exist before the SDK connects: the sender writes it before the
    // started webhook goes out. The stream pauses after the last frame rather than stop:
    // the SDK drops the frames it has not yet handed to Python when a stream stops.
    let req = SenderReq {
        frames,
        frame_ms,
        webhook_url: Some(format!("http://127.0.0.1:{port}/webhook")),
        tls: true,
        ca_out: Some(ca.clone()),
        preencoded: true,
        ready_settle_ms: Some(1000),
        hold_end: true,
    };
    let (sender, _body) = Sender::start(&req, false).await?;
    let r: SdkResult = serde_json::from_value(next().await?)?;
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let _ = child.kill().await;
    drop(sender);
    anyhow::ensure!(
        r.frames == frames,
        "the SDK got {} of {frames} audio frames ({})",
        r.frames,
        r.reason
    );
    Ok(r)
}
