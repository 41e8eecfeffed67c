//! Graceful shutdown with a live meeting: the plugins get `on-session-end(shutdown)`, their
//! files hold every line received, once, and the sinks are flushed.

use rtms_host::sandbox::bindings::MediaKind;
use rtms_proto::Product;
use rtms_sim::Simulator;

use crate::harness::*;

#[tokio::test]
async fn shutdown_ends_live_sessions_and_flushes() {
    let sim = Simulator::start(sim_config(true)).await.expect("simulator");
    let mut host = start_host(&sim, Setup::default(), |_| {}).await;
    let meeting = start_live(&sim, &mut host, Product::Meeting).await;
    // A second transcript line in: well into the meeting.
    wait_frame(&mut host, meeting.stream_id(), MediaKind::Transcript).await;
    let stream = meeting.stream_id().to_owned();
    let out = host.out_dir();
    let outputs = host.dir.path().join("outputs.jsonl");
    let Host { svc, dir, .. } = host;
    let metrics = within("shutdown", svc.shutdown()).await;
    let rec = Record::read(&out.join(format!("seqs-{stream}.txt")));
    assert_eq!(rec.end(), "shutdown");
    // What the plugin got is exactly what was sent, in order, up to the shutdown (lines the
    // simulator wrote after the host stopped reading never arrive).
    let sent = ledger_transcript(&meeting.ledger());
    let got = rec.texts("transcript");
    assert!(got.len() >= 2, "{got:?}");
    assert_eq!(got, sent[..got.len()], "exactly once, in order");
    assert!(
        !meeting.is_finished() || sent.len() < 400,
        "stopped mid-meeting"
    );
    assert_eq!(metrics.plugins["seq"].delivered, rec.frames.len() as u64);
    // The transcript-writer flushed its file and its summary reached the JSON Lines sink.
    let writer_file = std::fs::read_dir(&out)
        .expect("out")
        .filter_map(Result::ok)
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(&format!("_{stream}.jsonl"))
        })
        .expect("writer file");
    let written: Vec<serde_json::Value> = std::fs::read_to_string(writer_file.path())
        .expect("writer file")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let written_transcript: Vec<&str> = written
        .iter()
        .filter(|v| v["kind"] == "transcript")
        .filter_map(|v| v["text"].as_str())
        .collect();
    assert_eq!(written_transcript, got);
    let summaries: Vec<serde_json::Value> = std::fs::read_to_string(&outputs)
        .expect("outputs.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("output JSON"))
        .filter(|v: &serde_json::Value| v["kind"] == "summary")
        .collect();
    assert_eq!(
        summaries.len(),
        1,
        "the writer's summary was flushed to the sink"
    );
    assert_eq!(summaries[0]["data"]["lines"], written.len());
    drop(dir);
}
