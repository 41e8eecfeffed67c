//! Plugin call cost: `on-frames` on one noop instance, called directly through
//! `rtms_host::runtime::Instance` (no queue, no session), by batch size. Only the Rust noop
//! is measured: plugins in other languages are not built by this repository yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rtms_host::bindings::{AudioCodec, AudioFormat, Frame, MediaKind, Product, SessionInfo};
use rtms_host::output::start_sinks;
use rtms_host::runtime::host::InstanceCtx;
use rtms_host::runtime::{Instance, InstanceSpec, Runtime, RuntimeConfig};
use serde_json::json;

use crate::report::{Report, Row};
use crate::setup;

fn audio(seq: u64, bytes: usize) -> Frame {
    Frame {
        kind: MediaKind::Audio,
        seq,
        timestamp_ms: 1_700_000_000_000 + seq * 20,
        user_id: "16778240".into(),
        user_name: "Speaker 1".into(),
        payload: vec![7u8; bytes],
        text: None,
        transcript: None,
        event_type: None,
    }
}

pub async fn run(report: &mut Report, quick: bool) -> Result<()> {
    let rt = Runtime::new(&RuntimeConfig {
        cache_dir: Some(setup::warm_cache()),
        epoch_tick: Duration::from_millis(5),
    })?;
    let code = rt.load(&setup::component("noop")).await?;
    let (outputs, sinks) = start_sinks(vec![]).await?;
    let ctx = Arc::new(InstanceCtx::new(
        "noop".into(),
        1,
        "bench".into(),
        "bench".into(),
        outputs,
        Default::default(),
        Default::default(),
    ));
    let spec = InstanceSpec {
        memory_bytes: 64 << 20,
        call_timeout: Duration::from_secs(1),
        grants: vec![],
        config: vec![],
    };
    let mut inst = Instance::new(&rt, code, &spec, ctx).await?;
    inst.init(&[]).await?;
    inst.session_start(&SessionInfo {
        session: 1,
        product: Product::Meeting,
        meeting_id: "bench".into(),
        stream_id: "bench".into(),
        operator_id: None,
        started_at_ms: 0,
        resumed: false,
        audio: Some(AudioFormat {
            codec: AudioCodec::L16,
            sample_rate: 16_000,
            channels: 1,
            frame_ms: 20,
            per_speaker: false,
        }),
    })
    .await?;
    let budget = Duration::from_millis(if quick { 150 } else { 700 });
    for (batch, bytes) in [
        (1usize, 640usize),
        (8, 640),
        (32, 640),
        (128, 640),
        (32, 3200),
    ] {
        let frames: Vec<Frame> = (0..batch as u64).map(|s| audio(s, bytes)).collect();
        for _ in 0..20 {
            inst.frames(1, &frames).await?;
        }
        let started = Instant::now();
        let mut calls = 0u64;
        while started.elapsed() < budget {
            for _ in 0..16 {
                inst.frames(1, &frames).await?;
            }
            calls += 16;
        }
        let per_call = started.elapsed().as_secs_f64() / calls as f64;
        let per_frame_ns = per_call * 1e9 / batch as f64;
        let mut row = Row::new(
            "call",
            &format!("noop batch {batch} x {bytes} B"),
            "ns/frame",
            per_frame_ns,
        )
        .note(format!(
            "{:.2} us/call, {:.0} frames/s on one core",
            per_call * 1e6,
            batch as f64 / per_call
        ));
        row.extra =
            json!({"batch": batch, "bytes": bytes, "calls": calls, "us_per_call": per_call * 1e6});
        report.push(row);
    }
    drop(inst);
    sinks.finish().await;
    Ok(())
}
