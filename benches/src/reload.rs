//! Hot reload under load: a live real-time meeting (audio to noop, a transcript line every
//! 100 ms to transcript-writer) while transcript_writer and transcript_writer_b are
//! alternately written onto the component path the pipeline names, with the watcher on and
//! a warm compile cache. Measures the time from the write (rename into place) to the reload
//! being applied (`reloads_applied`) and to the live session swapping versions (`swaps`),
//! and afterwards compares the transcript file with what the simulator sent: no line may be
//! lost or written twice across the swaps.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rtms_host::dataplane::stats::MetricsSnapshot;
use rtms_host::sandbox::{Runtime, RuntimeConfig};
use rtms_host::service::{Service, StartOptions};
use rtms_sim::{Ledger, MeetingHandle, MeetingOptions, MeetingScript, Pace, Simulator};
use serde_json::json;

use crate::report::{Report, Row};
use crate::setup::{self, PipeDef, PluginDef};

const DEBOUNCE_MS: u64 = 10;

fn put(src: &Path, dest: &Path) -> Result<()> {
    let tmp = dest.with_extension("tmp");
    std::fs::copy(src, &tmp)?;
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub async fn run(report: &mut Report, quick: bool) -> Result<()> {
    let reloads = if quick { 4 } else { 12 };
    let gap = Duration::from_millis(400);
    let a = setup::component("transcript_writer");
    let b = setup::component("transcript_writer_b");
    // Warm cache: both versions compiled before the host starts.
    let rt = Runtime::new(&RuntimeConfig {
        cache_dir: Some(setup::warm_cache()),
        epoch_tick: Duration::from_millis(5),
        ..Default::default()
    })?;
    rt.load(&a).await?;
    rt.load(&b).await?;
    drop(rt);

    let dir = tempfile::tempdir()?;
    let comp = dir.path().join("components");
    std::fs::create_dir_all(&comp)?;
    let tw_path = comp.join("tw.wasm");
    put(&a, &tw_path)?;
    let mut tw = PluginDef::transcript_writer("transcript_writer");
    tw.component = tw_path.clone();
    tw.media = vec!["transcript"];
    let mut pipe = PipeDef::new(vec![PluginDef::noop(&["audio"]).block(), tw]);
    pipe.debounce_ms = DEBOUNCE_MS;
    let svc = setup::start_host(
        &pipe,
        dir.path(),
        StartOptions {
            tap: None,
            watch: Some(true),
            ..Default::default()
        },
    )
    .await?;

    let sim = Simulator::start(setup::sim_config()).await?;
    let lines = (reloads as u64 * gap.as_millis() as u64 + 3000) / 100;
    let h = start_meeting(&sim, &svc, lines).await?;
    let (applied_ms, swapped_ms) = time_reloads(&svc, [&b, &a], &tw_path, reloads, gap).await?;
    let ledger = h.finished().await;
    tokio::time::timeout(Duration::from_secs(30), svc.sessions().idle())
        .await
        .context("session did not end")?;
    let m = svc.shutdown().await;

    let file = dir
        .path()
        .join("out")
        .join(format!("meeting_{}.txt", h.stream_id()));
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let timed = Timed {
        reloads,
        applied_ms,
        swapped_ms,
    };
    push_rows(report, &timed, &text, &ledger, &m);
    Ok(())
}

/// A real-time meeting of `lines` transcript lines, 100 ms apart, to `svc`; returns once
/// the transcript writer took its first line (and half a second more).
async fn start_meeting(sim: &Simulator, svc: &Service, lines: u64) -> Result<MeetingHandle> {
    let mut sb = MeetingScript::builder().participant(1001, "Speaker 1");
    for i in 0..lines {
        sb = sb.utterance(1001, i * 100, 100, &format!("reload line {i}"));
    }
    let script = sb.build()?;
    let h = sim.start_meeting(
        script,
        MeetingOptions {
            pace: Pace::Realtime,
            webhook_url: Some(setup::webhook_url(svc)),
            ..Default::default()
        },
    )?;
    let t = Instant::now();
    while svc
        .metrics()
        .plugins
        .get("transcript-writer")
        .map_or(0, |p| p.delivered)
        == 0
    {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(10),
            "the meeting did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(h)
}

/// Writes the two versions onto `tw_path` in turn, `reloads` times, `gap` apart; the time
/// from each write to the reload applied and to the live session's swap, in ms.
async fn time_reloads(
    svc: &Service,
    versions: [&Path; 2],
    tw_path: &Path,
    reloads: usize,
    gap: Duration,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut applied_ms = Vec::new();
    let mut swapped_ms = Vec::new();
    for i in 0..reloads {
        let before = svc.metrics();
        let swaps0 = before
            .plugins
            .get("transcript-writer")
            .map_or(0, |p| p.swaps);
        let t0 = Instant::now();
        put(versions[i % 2], tw_path)?;
        let (mut applied, mut swapped) = (None, None);
        while applied.is_none() || swapped.is_none() {
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(10),
                "reload {i} did not take effect within 10 s"
            );
            let m = svc.metrics();
            if applied.is_none() && m.reloads_applied > before.reloads_applied {
                applied = Some(t0.elapsed());
            }
            if swapped.is_none()
                && m.plugins.get("transcript-writer").map_or(0, |p| p.swaps) > swaps0
            {
                swapped = Some(t0.elapsed());
            }
            anyhow::ensure!(
                m.reloads_refused == before.reloads_refused,
                "reload {i} was refused"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        applied_ms.push(applied.unwrap_or_default().as_secs_f64() * 1e3);
        swapped_ms.push(swapped.unwrap_or_default().as_secs_f64() * 1e3);
        tokio::time::sleep(gap.saturating_sub(t0.elapsed())).await;
    }
    Ok((applied_ms, swapped_ms))
}

/// The reloads and their times.
struct Timed {
    reloads: usize,
    applied_ms: Vec<f64>,
    swapped_ms: Vec<f64>,
}

/// The rows: the swap times, and the transcript file `text` against what the simulator
/// sent (no line lost or written twice).
fn push_rows(report: &mut Report, t: &Timed, text: &str, ledger: &Ledger, m: &MetricsSnapshot) {
    let reloads = t.reloads;
    let written: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.find("reload line ").map(|p| &l[p..]))
        .collect();
    let b_lines = text.lines().filter(|l| l.starts_with("B ")).count();
    let unique: HashSet<&str> = written.iter().copied().collect();
    let sent: HashSet<String> = ledger
        .transcript_lines()
        .into_iter()
        .map(|l| l.text)
        .collect();
    let lost = sent.iter().filter(|s| !unique.contains(s.as_str())).count();
    let dup = written.len() - unique.len();
    let worst_swap = t.swapped_ms.iter().copied().fold(0.0, f64::max);
    let med_applied = median(&mut t.applied_ms.clone());
    let med_swap = median(&mut t.swapped_ms.clone());
    let dropped: u64 = m
        .plugins
        .values()
        .map(|p| p.dropped + p.dead_lettered + p.discarded)
        .sum();
    let note = format!(
        "{reloads} reloads, debounce {DEBOUNCE_MS} ms, median applied {med_applied:.1} ms, worst swap {worst_swap:.1} ms"
    );
    let mut row = Row::new("reload", "write -> swapped (median)", "ms", med_swap)
        .target("<= 100 ms", worst_swap <= 100.0)
        .note(note);
    row.extra = json!({"applied_ms": t.applied_ms, "swapped_ms": t.swapped_ms, "debounce_ms": DEBOUNCE_MS,
        "swaps": m.plugins.get("transcript-writer").map_or(0, |p| p.swaps), "reloads_applied": m.reloads_applied});
    report.push(row);
    let mut row = Row::new("reload", "lines lost + duplicated", "lines", (lost + dup) as f64)
        .target("0", lost + dup == 0 && dropped == 0)
        .note(format!("{} sent, {} written ({b_lines} by version B), lost {lost}, duplicated {dup}, dropped {dropped}", sent.len(), written.len()));
    row.extra = json!({"sent": sent.len(), "written": written.len(), "b_lines": b_lines, "lost": lost, "duplicated": dup});
    report.push(row);
}
