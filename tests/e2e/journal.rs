//! Surviving a restart: a real `rtms-host run` process with `[runtime] journal_dir`, killed
//! with `kill -9` mid-meeting and started again on the same journal and pipeline. Within the
//! grace window it reconnects on its own (no new webhook) and the plugins resume; after it,
//! the stream ends with its reason.

use std::time::Duration;

use rtms_sim::Simulator;
use rtms_sim::ledger::{ConnectionChange, SocketKind};

use crate::harness::{Record, within};
use crate::host_process::HostProcess;
use crate::util;

fn pipeline(grace_ms: u64) -> String {
    let plugin = format!(
        r#"[[plugin]]
name = "seqs"
component = {seq:?}
media = ["transcript"]
[[plugin.dir]]
host = "out"
guest = "/out"
[[plugin]]
name = "details"
component = {details:?}
media = ["transcript"]
[[sink]]
type = "jsonl"
path = "outputs.jsonl"
"#,
        seq = util::component("seq_recorder").display().to_string(),
        details = util::component("details_v03").display().to_string(),
    );
    let runtime = format!("journal_dir = \"journal\"\njournal_grace_ms = {grace_ms}\n");
    crate::harness::process_pipeline(&runtime, &plugin)
}

async fn host(dir: Option<tempfile::TempDir>, grace_ms: u64) -> HostProcess {
    tokio::task::spawn_blocking(move || match dir {
        None => HostProcess::start(&pipeline(grace_ms)),
        Some(d) => HostProcess::start_in(d, "pipeline.toml", &pipeline(grace_ms), &[]),
    })
    .await
    .unwrap()
}

/// A real-time meeting of `lines` transcript lines, 200 ms apart.
fn meeting(sim: &Simulator, host: &HostProcess, lines: usize) -> rtms_sim::MeetingHandle {
    crate::harness::realtime_meeting(sim, host.webhook_url(), lines)
}

fn seq_file(dir: &std::path::Path, stream_id: &str) -> std::path::PathBuf {
    dir.join("out").join(format!("seqs-{stream_id}.txt"))
}

/// Waits until the seq-recorder's file holds at least `n` frames.
async fn frames_written(dir: &std::path::Path, stream_id: &str, n: usize) {
    let path = seq_file(dir, stream_id);
    within("the plugin to write frames", async {
        while std::fs::read_to_string(&path)
            .map_or(0, |t| t.lines().filter(|l| !l.starts_with('#')).count())
            < n
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

fn signaling_accepted(l: &rtms_sim::Ledger) -> usize {
    l.connections
        .iter()
        .filter(|c| c.socket == SocketKind::Signaling && c.change == ConnectionChange::Accepted)
        .count()
}

/// One stream across the change of process, never two clients at once, one started webhook,
/// and every transcript line exactly once: no line twice, none the simulator did not send,
/// only lines written to a socket that died unread may be missing, the last one arrived.
/// Returns the lines sent and the lines written.
fn one_stream_lines_once(ledger: &rtms_sim::Ledger, rec: &Record) -> (Vec<String>, Vec<String>) {
    ledger
        .one_client_at_a_time()
        .expect("never two clients at once");
    assert_eq!(
        ledger.webhooks_ending("rtms_started").len(),
        1,
        "no new webhook was needed"
    );
    let sent: Vec<String> = ledger.transcript.iter().map(|l| l.text.clone()).collect();
    let got: Vec<String> = rec.frames.iter().map(|f| f.2.clone()).collect();
    let mut uniq = got.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), got.len(), "no line written twice: {got:?}");
    assert!(got.iter().all(|t| sent.contains(t)), "{got:?} vs {sent:?}");
    let missing = sent.len() - got.len();
    assert!(
        missing as u64 <= ledger.counters.unconfirmed,
        "{missing} lines missing, {} unconfirmed when the first process went",
        ledger.counters.unconfirmed
    );
    assert_eq!(got.last(), sent.last(), "the last line arrived");
    (sent, got)
}

/// The started webhook's April 2026 fields reached the 0.3 plugin of the resumed session as
/// the webhook carried them: the journal kept them across the change of process.
fn started_fields_survived(dir: &std::path::Path, m: &rtms_sim::MeetingHandle) {
    let text = std::fs::read_to_string(dir.join("outputs.jsonl")).unwrap_or_default();
    let resumed: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["plugin"] == "details" && v["kind"] == "details")
        .map(|v| v["data"].clone())
        .filter(|d| d["stream_id"] == m.stream_id() && d["resumed"] == true)
        .collect();
    assert_eq!(resumed.len(), 1, "one resumed session start: {text}");
    let started: serde_json::Value = serde_json::from_slice(&m.started_body()).unwrap();
    let p = &started["payload"];
    let d = &resumed[0];
    assert!(p["account_id"].is_string(), "the webhook carries them: {p}");
    assert_eq!(d["account_id"], p["account_id"], "{d}");
    assert_eq!(d["is_original_host"], p["is_original_host"], "{d}");
    assert_eq!(d["meeting_number"], p["meeting_id"], "{d}");
    assert_eq!(d["webinar_id"], serde_json::Value::Null, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_meeting_and_restarted_resumes_the_stream_on_its_own() {
    let sim = crate::harness::process_simulator().await;
    let first = host(None, 30_000).await;
    let m = meeting(&sim, &first, 40);
    let stream = m.stream_id().to_owned();
    frames_written(first.dir.path(), &stream, 3).await;
    let (_, dir) = tokio::task::spawn_blocking(move || first.kill9())
        .await
        .unwrap();
    let before = Record::read(&seq_file(dir.path(), &stream));
    let second = host(Some(dir), 30_000).await;
    assert!(
        second
            .wait_for_log("resuming a journaled stream", Duration::from_secs(5))
            .is_some(),
        "the restarted host takes the stream from its journal"
    );
    let ledger = within("the meeting to finish", m.finished()).await;
    let path = seq_file(second.dir.path(), &stream);
    within("the plugin to end the session", async {
        while !std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("# end ")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let rec = Record::read(&path);
    assert_eq!(
        rec.starts,
        [false, true],
        "the plugin saw the session resumed"
    );
    assert_eq!(
        rec.ends,
        ["stopped(6)"],
        "the stream lived to the script's end"
    );
    assert_eq!(
        signaling_accepted(&ledger),
        2,
        "a second connection for the same stream"
    );
    let (sent, got) = one_stream_lines_once(&ledger, &rec);
    started_fields_survived(second.dir.path(), &m);
    let max_before = before.frames.iter().map(|f| f.0).max().unwrap();
    let after: Vec<u64> = rec.frames[before.frames.len()..]
        .iter()
        .map(|f| f.0)
        .collect();
    assert!(
        after.iter().all(|s| *s > max_before),
        "seq keeps increasing across the restart: {max_before} then {after:?}"
    );
    eprintln!(
        "resumed: {} lines sent, {} written, {} lost with the killed process",
        sent.len(),
        got.len(),
        sent.len() - got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_the_grace_window_ends_the_stream_with_its_reason() {
    let sim = crate::harness::process_simulator().await;
    let first = host(None, 1_000).await;
    let m = meeting(&sim, &first, 40);
    let stream = m.stream_id().to_owned();
    frames_written(first.dir.path(), &stream, 2).await;
    let (_, dir) = tokio::task::spawn_blocking(move || first.kill9())
        .await
        .unwrap();
    // The grace window (1 s) passes while the host is down.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let second = host(Some(dir), 1_000).await;
    let line = second
        .wait_for_log("journaled stream not resumed", Duration::from_secs(5))
        .expect("the expired stream is logged");
    assert!(line.contains("journal_grace_passed"), "{line}");
    assert!(line.contains(&stream), "{line}");
    let rec = Record::read(&seq_file(second.dir.path(), &stream));
    assert_eq!(rec.starts, [false, true]);
    assert_eq!(
        rec.ends,
        ["connection-lost"],
        "the plugin got on-session-end"
    );
    assert_eq!(
        signaling_accepted(&m.ledger()),
        1,
        "the expired stream was not reconnected"
    );
    // The entry is gone: a third start resumes nothing.
    let (logs, dir) = tokio::task::spawn_blocking(move || second.stop_keeping_dir())
        .await
        .unwrap();
    assert!(logs.iter().any(|l| l.contains("\"ended\":1")), "counted");
    let third = host(Some(dir), 1_000).await;
    let open = third
        .wait_for_log("stream journal open", Duration::from_secs(5))
        .unwrap();
    assert!(
        open.contains("\"resumed\":0") && open.contains("\"ended\":0"),
        "{open}"
    );
    m.stop(6);
}

/// A signed `endpoint.url_validation` webhook to `url`: its status, or the error.
async fn validation(url: &str, n: u64) -> Result<u16, String> {
    let body = serde_json::json!({
        "event": "endpoint.url_validation",
        "event_ts": rtms_proto::unix_ms(),
        "payload": {"plainToken": format!("token-{n}")}
    })
    .to_string();
    let ts = rtms_proto::unix_secs().to_string();
    let sig = rtms_proto::sign::webhook_signature(
        crate::host_process::WEBHOOK_SECRET,
        &ts,
        body.as_bytes(),
    );
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap());
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::post(uri.path())
        .header("host", addr)
        .header("content-type", "application/json")
        .header("x-zm-request-timestamp", ts)
        .header("x-zm-signature", sig)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let res = tx
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    Ok(res.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_hands_the_streams_to_a_successor_with_no_webhook_refused_and_no_meeting_ended() {
    let sim = crate::harness::process_simulator().await;
    let mut first = host(None, 30_000).await;
    let m = meeting(&sim, &first, 60);
    let stream = m.stream_id().to_owned();
    frames_written(first.dir.path(), &stream, 3).await;

    // A steady stream of webhooks through the whole hand-off, each on a new connection.
    let url = first.webhook_url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                match validation(&url, n).await {
                    Ok(200) => ok += 1,
                    other => failed.push(other),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, failed)
        })
    };

    let pid = first.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-USR2", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = first
        .wait_for_log("hand-off: successor started", Duration::from_secs(10))
        .expect("the successor starts");
    let successor: u32 =
        serde_json::from_str::<serde_json::Value>(&started).unwrap()["fields"]["pid"]
            .as_u64()
            .unwrap() as u32;
    let (first_exit, first) =
        tokio::task::spawn_blocking(move || (first.wait_exit(Duration::from_secs(60)), first))
            .await
            .unwrap();
    assert!(
        first_exit.is_some_and(|s| s.success()),
        "the predecessor exits cleanly: {first_exit:?}\n{}",
        first.logs().join("\n")
    );
    assert!(
        first
            .wait_for_log("hand-off: streams taken over", Duration::from_secs(10))
            .is_some_and(|l| l.contains("\"resumed\":1")),
        "the successor resumes the stream:\n{}",
        first.logs().join("\n")
    );

    let ledger = within("the meeting to finish", m.finished()).await;
    let path = seq_file(first.dir.path(), &stream);
    within("the plugin to end the session", async {
        while !std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("# end stopped")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = pinger.await.unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &successor.to_string()])
        .status();

    assert!(
        failed.is_empty(),
        "webhooks refused during the hand-off: {failed:?}"
    );
    assert!(ok > 20, "{ok} webhooks answered");
    let rec = Record::read(&path);
    assert_eq!(
        rec.starts,
        [false, true],
        "the successor's plugin resumed the session"
    );
    assert_eq!(
        rec.ends,
        ["reload", "stopped(6)"],
        "the predecessor's instance ended as for a reload; the meeting ended once, at its end"
    );
    one_stream_lines_once(&ledger, &rec);
    started_fields_survived(first.dir.path(), &m);
}
