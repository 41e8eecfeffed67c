//! Losses on the live frame path are never silent, and never hit the wrong kind: a plugin
//! that takes audio *and* transcript and falls behind a fast meeting has audio dropped to make
//! room, never its transcript or chat (the default queue policy per kind); the drops are
//! counted, warned about when they start (with counts), and summarised when the session ends
//! and when the host shuts down.

use rtms_proto::Product;
use rtms_sim::{Pace, Simulator};

use crate::harness::*;

#[tokio::test]
async fn a_plugin_falling_behind_loses_audio_only_and_says_so() {
    let logs = LogCapture::start();
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let host = start_host(
        &sim,
        Setup {
            seq_media: r#"["audio", "transcript", "chat"]"#,
            writer: false,
            // A small queue with no on_full: the default policy for its kinds applies.
            seq_queue: "capacity = 8\nblock_timeout_ms = 10000",
            // 20 ms per frame: far slower than a meeting played as fast as possible.
            seq_extra: "[plugin.batch]\nmax_frames = 1\n[plugin.config]\ndelay_ms = 20\n",
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let meeting = start(
        &sim,
        &host,
        script(30, vec![]),
        Product::Meeting,
        Pace::Fast,
    );
    let ledger = finish(&host, &meeting).await;
    let rec = host.record(meeting.stream_id());

    // Transcript and chat: every line, once, in order.
    assert_eq!(
        rec.texts("transcript"),
        ledger_transcript(&ledger),
        "no transcript line was dropped to make room for audio"
    );
    assert_eq!(
        rec.texts("chat"),
        ledger_chats(&ledger),
        "no chat message was dropped to make room for audio"
    );
    // Audio: what did not arrive was dropped and counted.
    let sent_audio = ledger.count(rtms_sim::MediaKind::Audio);
    let got_audio = rec.count("audio") as u64;
    let stream = meeting.stream_id().to_owned();
    let m = host.svc.shutdown().await;
    let seq = &m.plugins["seq"];
    assert!(seq.dropped > 0, "the slow plugin fell behind: {seq:?}");
    assert_eq!(
        got_audio + seq.dropped,
        sent_audio,
        "every audio frame was delivered or counted as dropped"
    );
    assert_eq!(seq.shed + seq.dead_lettered + seq.discarded, 0, "{seq:?}");

    let lines = logs.lines();
    let with = |needles: &[&str]| -> Vec<&String> {
        lines
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .collect()
    };
    let started = with(&["WARN", "plugin=seq", &stream, "frames are dropping"]);
    assert!(
        !started.is_empty(),
        "a warning when the drops start; logs:\n{}",
        lines.join("\n")
    );
    assert!(
        started.len() <= 2,
        "rate-limited, not one per run of drops: {started:#?}"
    );
    assert!(
        started[0].contains("dropped_kinds=audio "),
        "the warning counts the drops by kind: {}",
        started[0]
    );
    let session_summary = with(&["plugin=seq", &stream, "lost data on this session"]);
    assert_eq!(session_summary.len(), 1, "{}", lines.join("\n"));
    assert!(
        session_summary[0].contains(&format!("dropped={}", seq.dropped))
            && session_summary[0].contains(&format!("dropped_kinds=audio {}", seq.dropped)),
        "the session summary has the counts: {}",
        session_summary[0]
    );
    let shutdown_summary = with(&["plugin=seq", "lost data since the host started"]);
    assert_eq!(shutdown_summary.len(), 1, "{}", lines.join("\n"));
    assert!(
        shutdown_summary[0].contains(&format!("dropped={}", seq.dropped)),
        "{}",
        shutdown_summary[0]
    );
}
