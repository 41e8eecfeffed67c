//! The demo end to end (fast pace): the simulator and the host in one process over wss://,
//! the example plugins writing transcripts and alerts into the output directory.

use rtms_host::demo::{DemoArgs, run_demo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_writes_transcripts_and_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let s = run_demo(
        &DemoArgs {
            out: dir.path().to_owned(),
            meeting: None,
            pace: "fast".into(),
            product: rtms_proto::Product::Meeting,
            no_tls: false,
            record: None,
        },
        false,
    )
    .await
    .unwrap();
    assert!(s.transcript_lines_sent > 5);
    assert_eq!(
        s.frames_by_kind.get("transcript").copied(),
        Some(s.transcript_lines_sent as u64),
        "every transcript line sent reached the host"
    );
    assert!(
        s.alerts >= 3,
        "the stand-up says budget, deadline and blocker"
    );
    let txt = s
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "txt"))
        .expect("a text transcript");
    let text = std::fs::read_to_string(txt).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with('[') && !l.contains("(chat)"))
            .count(),
        s.transcript_lines_sent
    );
    assert!(s.files.iter().any(|f| f.ends_with("alerts.jsonl")));
}
