//! Chaos: several meetings at once while the simulator injects faults of every kind a stream
//! recovers from, at random times, seeded so a failure reproduces (`CHAOS_SEED`), beside two
//! hostile plugins (`tests/shared/chaos_hostile.toml`: a descriptor hog and a memory hog).
//!
//! Each meeting must reach its scripted end on one session: every transcript line, chat and
//! audio frame the client read is written exactly once and in order by the seq-recorder,
//! the transcript writer holds exactly the lines read, and the simulator never saw two
//! clients of one stream at once ([`rtms_sim::chaos::judge`], the rules the long run
//! `rtms-bench chaos` applies too). The short version runs here; `CHAOS_MEETINGS`,
//! `CHAOS_LINES` and `CHAOS_FAULTS` make it longer (docs/resilience.md).

use std::time::Duration;

use rtms_proto::Product;
use rtms_sim::chaos::{FaultKind, Plan, judge};
use rtms_sim::{Pace, Simulator};

use crate::harness::*;
use crate::util;

/// The hostile plugins' tables, for a pipeline whose plugins write under `out`.
pub fn hostile_plugins(out: &str) -> String {
    include_str!("../shared/chaos_hostile.toml")
        .replace("{fs_hog}", &util::component("fs_hog").display().to_string())
        .replace("{hog}", &util::component("hog").display().to_string())
        .replace("{out}", out)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetings_under_random_faults_beside_hostile_plugins_deliver_every_line_read_exactly_once()
{
    let seed = env_or("CHAOS_SEED", 0x5eed_c4a0);
    let meetings = env_or("CHAOS_MEETINGS", 6) as usize;
    let lines = env_or("CHAOS_LINES", 40) as usize;
    let faults = env_or("CHAOS_FAULTS", 4) as usize;
    eprintln!(
        "chaos: seed {seed:#x}, {meetings} meetings of {lines} lines, {faults} faults each (CHAOS_SEED reproduces)"
    );
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let setup = Setup {
        extra: hostile_plugins("out"),
        ..Setup::default()
    };
    let host = start_host(&sim, setup, |p| {
        let r = &mut p.rtms;
        r.reconnect_max_attempts = 5;
        r.reconnect_healthy_after = Duration::from_millis(1_000);
    })
    .await;
    let mut plan = Plan::new(seed);
    let mut running = Vec::new();
    for _ in 0..meetings {
        let script = plan.meeting(lines, faults).expect("script");
        running.push(start(&sim, &host, script, Product::Meeting, Pace::Realtime));
    }
    if meetings * faults >= FaultKind::ALL.len() {
        assert_eq!(
            plan.tally.missing(),
            Vec::<&str>::new(),
            "every kind planned"
        );
    }
    for meeting in &running {
        let ledger = finish(&host, meeting).await;
        let id = meeting.stream_id();
        let writer: Vec<(String, String)> = host
            .writer_lines(id)
            .iter()
            .map(|v| {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (s("kind"), s("text"))
            })
            .collect();
        judge(&ledger, &host.record(id), &writer).unwrap_or_else(|e| panic!("stream {id}: {e}"));
    }
    let m = host.svc.metrics();
    let (fd, mem) = (&m.plugins["fd-hog"], &m.plugins["mem-hog"]);
    assert_eq!(
        fd.open_files_refused, meetings as u64,
        "the descriptor hog stopped at max_open_files once per session: {fd:?}"
    );
    assert!(
        mem.traps >= meetings as u64,
        "the memory hog trapped: {mem:?}"
    );
    assert_eq!(host.svc.shared().rt.descriptors().in_use(), 0);
    eprintln!(
        "chaos: {} faults injected ({}), every stream whole (seed {seed:#x})",
        plan.tally.total(),
        plan.tally
    );
}
