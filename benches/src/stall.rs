//! Stall: N real-time meetings (100; 10 quick) through the four plugins of the concurrency
//! case, once as they are (the baseline) and once with a fifth plugin on audio that is stuck
//! on its filesystem: the `fs_stall` fixture opening a FIFO with no reader in its granted
//! directory in every batch (the open never returns), as the e2e `stalls::` tests run it.
//! Not part of `all`.
//!
//! The simulator sends a keep-alive request on each socket idle for 500 ms and times every
//! answer (`rtms_sim::Ledger::keepalive_answer_times`); a stream's task that waited on the
//! stuck plugin would answer late or not at all. The other plugins' frame counts are compared
//! exactly with the simulator's ledgers, and the stuck plugin's losses are read from its
//! counters: `shed` (its `block` queue full past `block_timeout_ms`), `dead_lettered`,
//! `discarded`, all of `routed` accounted for.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::concurrency::{self, HostCase, Window};
use crate::isolate::{self, Spec};
use crate::report::{Report, Row};
use crate::setup::PluginDef;

/// The simulator's keep-alive interval in this case.
const KEEPALIVE_MS: u64 = 500;

/// The stuck plugin's name in the pipeline.
pub const STUCK: &str = "fs-stall";

/// The `fs_stall` fixture in `fifo` mode on audio: a `block` queue of 8 that sheds after
/// 50 ms, a call deadline of 300 ms, restarts after 10 ms.
fn stuck_plugin() -> PluginDef {
    PluginDef {
        capacity: 8,
        batch_max: 8,
        block_timeout_ms: Some(50),
        tables: "\n[plugin.limits]\ncall_timeout_ms = 300\n\n[plugin.restart]\nbase_delay_ms = 10\nmax_delay_ms = 10\nmax_failures = 1000\n".into(),
        ..PluginDef::new(STUCK, "fs_stall", &["audio"])
            .cfg("mode", "\"fifo\"")
            .block()
            .no_batch_wait()
    }
}

/// The baseline and the stalled run.
#[derive(Debug)]
pub struct Outcome {
    pub baseline: Window,
    pub stalled: Window,
}

/// Each well-behaved plugin: (name, frames it got, frames the ledgers say were sent to it).
pub fn others(w: &Window) -> Vec<(String, u64, u64)> {
    concurrency::four_plugins()
        .iter()
        .map(|p| {
            let sent: u64 = p
                .media
                .iter()
                .map(|k| match *k {
                    "audio" => w.sent.audio,
                    "transcript" => w.sent.transcript,
                    "chat" => w.sent.chat,
                    _ => 0,
                })
                .sum();
            let got = w.plugins.get(&p.name).map_or(0, |s| s.delivered);
            (p.name.clone(), got, sent)
        })
        .collect()
}

/// The host on `n` meetings, with the stuck plugin or without.
pub async fn host(n: usize, window: Duration, stuck: bool) -> Result<Window> {
    let mut plugins = concurrency::four_plugins();
    if stuck {
        plugins.push(stuck_plugin());
    }
    let case = HostCase {
        plugins,
        keepalive_ms: Some(KEEPALIVE_MS),
        fifo: stuck.then_some("fifo"),
        threads: None,
    };
    concurrency::run_host_with(n, window, &case).await
}

/// Runs both, each in a process of its own: `n` meetings for `window` each.
pub async fn measure(n: usize, window: Duration) -> Result<Outcome> {
    let baseline = isolate::measure(Spec::Stall { stuck: false }, n, window, || {
        host(n, window, false)
    })
    .await?;
    let stalled = isolate::measure(Spec::Stall { stuck: true }, n, window, || {
        host(n, window, true)
    })
    .await?;
    Ok(Outcome { baseline, stalled })
}

pub async fn run(report: &mut Report, quick: bool, meetings: &[usize]) -> Result<()> {
    let n = meetings
        .first()
        .copied()
        .unwrap_or(if quick { 10 } else { 100 });
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    let o = measure(n, window).await?;
    push(report, n, "baseline", &o.baseline);
    push(report, n, "stalled", &o.stalled);
    Ok(())
}

fn push(report: &mut Report, n: usize, label: &str, w: &Window) {
    let ka = &w.sent.keepalive;
    let others = others(w);
    let exact = others.iter().all(|(_, got, sent)| got == sent);
    let counts: Vec<String> = others
        .iter()
        .map(|(p, got, sent)| format!("{p} {got}/{sent}"))
        .collect();
    let case = format!("{n} meetings {label}");
    report.push(
        Row::new("stall", &format!("{case} keep-alive p99"), "ms", ka.p99_ms)
            .note(format!(
                "{} answers, p50 {:.2} ms, max {:.1} ms, {} keep-alive timeouts; {} of {n} live in time",
                ka.answered, ka.p50_ms, ka.max_ms, ka.timeouts, w.up_in_time
            ))
            .target("every keep-alive answered", ka.timeouts == 0),
    );
    let mut row = Row::new(
        "stall",
        &format!("{case} others exact"),
        "plugins",
        others.iter().filter(|(_, g, s)| g == s).count() as f64,
    )
    .note(format!(
        "frames got/sent: {}; host CPU {:.1} %, audio p99 {:.2} ms from the socket",
        counts.join(", "),
        w.cpu_pct,
        w.p99.as_secs_f64() * 1e3
    ))
    .target("every frame to each of the four", exact);
    row.extra = json!({"meetings": n, "case": label, "keepalive": ka, "others": others,
        "cpu_pct": w.cpu_pct, "p99_ms": w.p99.as_secs_f64() * 1e3,
        "stuck": w.plugins.get(STUCK)});
    report.push(row);
    if let Some(s) = w.plugins.get(STUCK) {
        let accounted = s.delivered + s.dead_lettered + s.dropped + s.discarded;
        report.push(
            Row::new("stall", &format!("{case} stuck shed"), "frames", s.shed as f64)
                .note(format!(
                    "{STUCK}: routed {}, delivered {}, dead-lettered {}, dropped {}, discarded {}, traps {}",
                    s.routed, s.delivered, s.dead_lettered, s.dropped, s.discarded, s.traps
                ))
                .target("every routed frame accounted for", accounted == s.routed),
        );
    }
}
