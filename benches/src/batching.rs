//! Batching: what `[plugin.batch] max_wait_ms` buys at real-time pace. N meetings (300 and
//! 1000; 10 quick) through the four plugins of the concurrency case, once per wait (0, 20,
//! 100 ms; `--batch-wait`), every plugin with that wait, and the raw reader on the same
//! meetings first as the CPU baseline of the run. With a wait above 0 a worker holds a
//! session's frames until its batch is full (`max_frames`, 32) or its oldest frame has
//! waited that long, then delivers them in one `on-frames` call; at 0 a batch takes what is
//! queued, and an idle plugin gets each frame on the stream's own task.
//!
//! Per case: host CPU (and against the raw reader's), `on-frames` calls per frame delivered
//! for audio-recorder and over all four plugins, latency from the socket read to the return
//! of the audio plugins' call (the wait included), drops and whether every frame arrived.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::concurrency::{self, HostCase, Window};
use crate::isolate::{self, Spec};
use crate::report::{Report, Row};

/// Waits run by default, ms.
const DEFAULT_WAITS: [u64; 3] = [0, 20, 100];

/// `on-frames` calls per frame delivered, for one plugin or (`None`) all of them.
pub fn calls_per_frame(w: &Window, plugin: Option<&str>) -> f64 {
    let (calls, frames) = w
        .plugins
        .iter()
        .filter(|(name, _)| plugin.is_none_or(|p| p == name.as_str()))
        .fold((0, 0), |(c, f), (_, s)| (c + s.calls, f + s.delivered));
    calls as f64 / frames.max(1) as f64
}

/// The host on `n` meetings with every plugin's `max_wait_ms` set to `wait_ms`.
pub async fn host(n: usize, window: Duration, wait_ms: u64) -> Result<Window> {
    let case = HostCase {
        plugins: concurrency::four_plugins()
            .into_iter()
            .map(|p| p.batch_wait(wait_ms))
            .collect(),
        keepalive_ms: None,
        fifo: None,
        threads: None,
    };
    concurrency::run_host_with(n, window, &case).await
}

pub async fn run(
    report: &mut Report,
    quick: bool,
    meetings: &[usize],
    waits: &[u64],
) -> Result<()> {
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    let sizes: &[usize] = match (meetings.is_empty(), quick) {
        (false, _) => meetings,
        (true, true) => &[10],
        (true, false) => &[300, 1000],
    };
    let waits: &[u64] = if waits.is_empty() {
        &DEFAULT_WAITS
    } else {
        waits
    };
    for &n in sizes {
        let raw = isolate::measure(Spec::Raw, n, window, || concurrency::run_raw(n, window))
            .await
            .map_err(|e| eprintln!("batching: the raw reader on {n} meetings failed: {e:#}"))
            .ok();
        for &wait in waits {
            match isolate::measure(Spec::Batching { wait_ms: wait }, n, window, || {
                host(n, window, wait)
            })
            .await
            {
                Ok(w) => push(report, n, wait, raw.as_ref(), &w),
                Err(e) => report.push(
                    Row::new(
                        "batching",
                        &format!("{n} meetings wait {wait} ms"),
                        "-",
                        0.0,
                    )
                    .note(format!("FAILED: {e:#}")),
                ),
            }
        }
    }
    Ok(())
}

fn push(report: &mut Report, n: usize, wait: u64, raw: Option<&Window>, w: &Window) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let recorder = calls_per_frame(w, Some("audio-recorder"));
    let all = calls_per_frame(w, None);
    let kept_up = w.delivered.iter().all(|(_, d)| *d == w.sent.audio);
    let vs_raw = raw.map(|r| w.cpu_pct / r.cpu_pct.max(1e-9));
    let case = format!("{n} meetings wait {wait} ms");
    let mut row = Row::new("batching", &format!("{case} host CPU"), "%", w.cpu_pct).note(format!(
        "{}; calls/frame: audio-recorder {recorder:.3}, all four {all:.3}; p50 / p99 / p999 {:.2} / {:.2} / {:.2} ms from the socket; drops {}; {}; {} of {n} live in time",
        match (raw, vs_raw) {
            (Some(r), Some(x)) => format!("raw reader {:.1} %, host/raw {x:.2}x", r.cpu_pct),
            _ => "no raw reader figure".into(),
        },
        ms(w.p50),
        ms(w.p99),
        ms(w.p999),
        w.dropped,
        if kept_up { "every audio frame to both audio plugins" } else { "did NOT keep up" },
        w.up_in_time,
    ));
    row.extra = json!({"meetings": n, "max_wait_ms": wait, "cpu_pct": w.cpu_pct,
        "raw_cpu_pct": raw.map(|r| r.cpu_pct), "host_vs_raw": vs_raw,
        "calls_per_frame_recorder": recorder, "calls_per_frame_all": all,
        "p50_ms": ms(w.p50), "p99_ms": ms(w.p99), "p999_ms": ms(w.p999), "max_ms": ms(w.max),
        "dropped": w.dropped, "kept_up": kept_up, "sent_audio": w.sent.audio,
        "delivered": w.delivered, "up_in_time": w.up_in_time});
    report.push(row);
    report.push(Row::new(
        "batching",
        &format!("{case} recorder calls/frame"),
        "calls",
        recorder,
    ));
    report.push(
        Row::new("batching", &format!("{case} p99"), "ms", ms(w.p99))
            .note(format!("max {:.1} ms", ms(w.max))),
    );
}
