//! A hundred concurrent meetings on one host: each stream's record holds exactly its own
//! meeting's lines, once and in order.

use rtms_proto::Product;
use rtms_sim::{MeetingScript, Pace, Simulator};

use crate::harness::*;

const MEETINGS: usize = 100;

fn own_script(i: usize) -> MeetingScript {
    MeetingScript::builder()
        .participant(1001, "Ann")
        .participant(1002, "Bob")
        .utterance(1001, 0, 40, &format!("m{i} first line"))
        .utterance(1002, 40, 40, &format!("m{i} second line"))
        .chat(60, 1001, &format!("m{i} chat"))
        .utterance(1001, 80, 40, &format!("m{i} third line"))
        .build()
        .expect("script")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_meetings_each_get_their_own_transcript() {
    // A hundred meetings start at once on a small machine: keep-alive and connection
    // timings at Zoom's scale, not the tight ones the fault tests use, so a busy moment is
    // not mistaken for a dead peer.
    let sim = Simulator::start(rtms_sim::SimConfig {
        keepalive_interval: std::time::Duration::from_secs(5),
        ..sim_config(false)
    })
    .await
    .expect("simulator");
    let host = start_host(
        &sim,
        Setup {
            seq_media: r#"["transcript", "chat"]"#,
            writer: false,
            ..Setup::default()
        },
        |p| {
            p.rtms.connection_timeout = std::time::Duration::from_secs(10);
            p.rtms.keepalive_timeout = std::time::Duration::from_secs(20);
        },
    )
    .await;
    let meetings: Vec<_> = (0..MEETINGS)
        .map(|i| {
            let product = Product::ALL[i % Product::ALL.len()];
            start(&sim, &host, own_script(i), product, Pace::Fast)
        })
        .collect();
    let mut ledgers = Vec::new();
    for m in &meetings {
        ledgers.push(within("a meeting to finish", m.finished()).await);
    }
    host.idle().await;
    for (i, (m, l)) in meetings.iter().zip(&ledgers).enumerate() {
        let rec = host.record(m.stream_id());
        assert_eq!(
            ledger_transcript(l),
            [
                format!("m{i} first line"),
                format!("m{i} second line"),
                format!("m{i} third line")
            ],
            "meeting {i}: stop reason {:?}, counters {:?}, webhooks {:?}",
            l.stop_reason,
            l.counters,
            l.webhooks
        );
        assert_eq!(ledger_chats(l), [format!("m{i} chat")]);
        assert_eq!(rec.texts("transcript"), ledger_transcript(l), "meeting {i}");
        assert_eq!(rec.texts("chat"), ledger_chats(l), "meeting {i}");
        assert_eq!(rec.frames.len(), 4, "meeting {i}: nothing else");
        assert_eq!(rec.end(), "stopped(6)");
    }
    let files = std::fs::read_dir(host.out_dir()).expect("out").count();
    assert_eq!(files, MEETINGS, "one record per stream");
    assert_eq!(host.svc.metrics().sessions_started, MEETINGS as u64);
}
