//! Chaos: several meetings at once while the simulator injects faults of every kind a stream
//! recovers from, at random times, seeded so a failure reproduces (`CHAOS_SEED`).
//!
//! Each meeting must reach its scripted end on one session: every transcript line, chat and
//! audio frame the client read is written exactly once and in order, and the simulator never
//! saw two clients of one stream at once. The short version runs here; `CHAOS_MEETINGS`,
//! `CHAOS_LINES` and `CHAOS_FAULTS` make it longer (docs/resilience.md).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtms_proto::Product;
use rtms_proto::codes::status;
use rtms_sim::{Fault, MeetingScript, Pace, Simulator, SocketSel};

use crate::harness::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fault a stream recovers from within Zoom's grace, chosen by `rng`; some come as a pair
/// (an outage: refused connections, then the drop that needs them).
fn random_fault(rng: &mut StdRng) -> Vec<(u64, Fault)> {
    let short = Duration::from_millis(rng.random_range(100..500));
    match rng.random_range(0..10) {
        0 => vec![(0, Fault::DropSignaling)],
        1 => vec![(0, Fault::DropMedia { kind: None })],
        2 => vec![(0, Fault::InterruptSignaling)],
        3 => vec![(0, Fault::InterruptMedia)],
        4 => vec![(0, Fault::Failover)],
        5 => vec![(0, Fault::DuplicateWebhook)],
        6 => vec![
            (
                0,
                Fault::RejectHandshakes {
                    socket: SocketSel::Signaling,
                    count: 1,
                    status: status::INVALID_MEDIA_PARAMS,
                    reason: "chaos".into(),
                },
            ),
            (0, Fault::DropSignaling),
        ],
        7 => vec![
            (0, Fault::RefuseConnections { duration: short }),
            (0, Fault::DropSignaling),
        ],
        8 => vec![(0, Fault::StopKeepalives), (1_000, Fault::ResumeKeepalives)],
        _ => vec![(
            0,
            Fault::Pause {
                duration: Some(short),
            },
        )],
    }
}

/// A meeting of `lines` utterances of 200 ms with `faults` recoverable faults at random times.
fn chaos_script(rng: &mut StdRng, lines: usize, faults: usize) -> (MeetingScript, usize) {
    let span = lines as u64 * 200;
    let mut b = MeetingScript::builder()
        .synthetic_speech(2, lines, 10)
        .chat(30, 1001, "hello all");
    let mut n = 0;
    for _ in 0..faults {
        let at = rng.random_range(500..span.saturating_sub(1_500).max(600));
        for (offset, f) in random_fault(rng) {
            b = b.fault_at(at + offset, f);
            n += 1;
        }
    }
    (b.build().expect("script"), n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetings_under_random_faults_deliver_every_line_read_exactly_once() {
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
    let host = start_host(&sim, Setup::default(), |p| {
        let r = &mut p.rtms;
        r.reconnect_max_attempts = 5;
        r.reconnect_healthy_after = Duration::from_millis(1_000);
    })
    .await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut running = Vec::new();
    let mut injected = 0;
    for _ in 0..meetings {
        let (script, n) = chaos_script(&mut rng, lines, faults);
        injected += n;
        running.push(start(&sim, &host, script, Product::Meeting, Pace::Realtime));
    }
    for meeting in &running {
        let ledger = finish(&host, meeting).await;
        let id = meeting.stream_id();
        let rec = host.record(id);
        assert_exactly_once(&ledger, &rec);
        assert_eq!(rec.end(), "stopped(6)", "stream {id} lived to its end");
        assert_eq!(rec.starts, [false], "stream {id}: one session");
        ledger
            .one_client_at_a_time()
            .unwrap_or_else(|e| panic!("stream {id}: {e}"));
    }
    eprintln!("chaos: {injected} faults injected, every stream whole (seed {seed:#x})");
}
