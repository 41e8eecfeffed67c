//! Start-up: time from nothing to ready (pipeline parsed, components loaded and trial-run,
//! webhook server bound: `Service::start` returned), with a cold compile cache (a fresh
//! empty directory) and a warm one (the same directory again).

use std::time::{Duration, Instant};

use anyhow::Result;
use rtms_host::service::StartOptions;
use serde_json::json;

use crate::report::{Report, Row};
use crate::setup::{self, PipeDef, PluginDef};

async fn once(pipe: &PipeDef) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let svc = setup::start_host(pipe, dir.path(), StartOptions::default()).await?;
    let ready = t.elapsed();
    svc.shutdown().await;
    Ok(ready)
}

pub async fn run(report: &mut Report, quick: bool) -> Result<()> {
    let cache = tempfile::tempdir()?;
    let mut pipe = PipeDef::new(vec![
        PluginDef::noop(&["audio"]),
        PluginDef::transcript_writer("transcript_writer"),
        PluginDef::keyword_alerter(),
    ]);
    pipe.cache_dir = cache.path().to_owned();
    let cold = once(&pipe).await?;
    let runs = if quick { 3 } else { 7 };
    let mut warm = Vec::new();
    for _ in 0..runs {
        warm.push(once(&pipe).await?.as_secs_f64() * 1e3);
    }
    let mut sorted = warm.clone();
    sorted.sort_by(f64::total_cmp);
    let med = sorted[sorted.len() / 2];
    let mut row = Row::new(
        "startup",
        "cold cache (3 plugins)",
        "ms",
        cold.as_secs_f64() * 1e3,
    )
    .note("compiles noop, transcript-writer, keyword-alerter with Cranelift");
    row.extra = json!({"cold_ms": cold.as_secs_f64() * 1e3});
    report.push(row);
    let mut row = Row::new("startup", "warm cache (3 plugins, median)", "ms", med)
        .target("<= 300 ms", med <= 300.0)
        .note(format!(
            "{runs} runs, min {:.1} max {:.1} ms",
            sorted[0],
            sorted[sorted.len() - 1]
        ));
    row.extra = json!({"warm_ms": warm});
    report.push(row);
    Ok(())
}
