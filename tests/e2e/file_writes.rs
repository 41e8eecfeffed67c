//! Plugins' buffered file writes reach the disk: at session end, across a reload (the old
//! instance's writes before the new one's), at SIGTERM, and after `kill -9` up to the
//! documented interval. A real `rtms-host run` process runs the `fs_stall` fixture in
//! `append` mode, which logs each line once it has written it: what the plugin wrote is read
//! from the log, what reached the disk from its file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rtms_sim::Simulator;

use crate::harness::within;
use crate::host_process::HostProcess;
use crate::util;

fn pipeline(mb: u64) -> String {
    let plugin = format!(
        r#"[[plugin]]
name = "lines"
component = {component:?}
media = ["transcript"]
[[plugin.dir]]
host = "out"
guest = "/out"
[plugin.config]
mode = "append"
mb = "{mb}"
"#,
        component = util::component("fs_stall").display().to_string(),
    );
    crate::harness::process_pipeline("", &plugin)
}

async fn host() -> HostProcess {
    tokio::task::spawn_blocking(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        HostProcess::start_in(dir, "pipeline.toml", &pipeline(1), &[])
    })
    .await
    .unwrap()
}

/// A real-time meeting of `lines` transcript lines, 200 ms apart.
fn meeting(sim: &Simulator, host: &HostProcess, lines: usize) -> rtms_sim::MeetingHandle {
    crate::harness::realtime_meeting(sim, host.webhook_url(), lines)
}

/// The host's log line once every plugin has ended a session.
const SESSION_OVER: &str = "every plugin ended the session";

fn lines_file(dir: &Path, stream_id: &str) -> PathBuf {
    dir.join("out").join(format!("lines-{stream_id}.txt"))
}

/// The lines of the plugin's file.
fn on_disk(dir: &Path, stream_id: &str) -> Vec<String> {
    std::fs::read_to_string(lines_file(dir, stream_id))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What the plugin logged it wrote, in order (`<seq>` or `end`).
fn written(logs: &[String]) -> Vec<String> {
    logs.iter()
        .filter_map(|l| {
            let rest = &l[l.find("fs-stall wrote ")? + "fs-stall wrote ".len()..];
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            Some(word)
        })
        .collect()
}

/// Waits until the plugin has logged `n` lines written.
async fn wrote_at_least(host: &HostProcess, n: usize) {
    within("the plugin to write lines", async {
        while written(&host.logs()).len() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Seqs strictly increase across the file (no line twice, none out of order).
fn seqs_increase(lines: &[String]) {
    let seqs: Vec<u64> = lines.iter().filter_map(|l| l.parse().ok()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs increase: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_writes_are_on_disk_at_session_end_reload_and_sigterm() {
    let sim = crate::harness::process_simulator().await;
    let host = host().await;
    let dir = host.dir.path().to_owned();

    // Session end: the file holds every line once the session has ended.
    let first = meeting(&sim, &host, 6);
    let first_id = first.stream_id().to_owned();
    let ledger = within("the first meeting", first.finished()).await;
    // Every plugin has ended the session (and written out its files) when the host says so:
    // the file is read once, then.
    let over = host.wait_for_count(SESSION_OVER, 1, Duration::from_secs(30));
    assert!(over, "the session ended");
    let lines = on_disk(&dir, &first_id);
    assert_eq!(
        lines,
        written(&host.logs()),
        "the file is what the plugin wrote"
    );
    assert_eq!(lines.len(), ledger.transcript.len() + 1, "{lines:?}");

    // A reload that gives the plugin a new instance mid-meeting, then SIGTERM.
    let before = written(&host.logs()).len();
    let second = meeting(&sim, &host, 40);
    let second_id = second.stream_id().to_owned();
    wrote_at_least(&host, before + 3).await;
    std::fs::write(dir.join("pipeline.toml"), pipeline(2)).unwrap();
    let pid = host.pid().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    within("the reload", async {
        while !host.logs().iter().any(|l| l.contains("reload applied")) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let ends = |logs: &[String]| written(logs).iter().filter(|w| *w == "end").count();
    within("the old instance to end", async {
        while ends(&host.logs()) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let after_reload = written(&host.logs()).len();
    wrote_at_least(&host, after_reload + 2).await;
    let (logs, dir) = tokio::task::spawn_blocking(move || host.stop_keeping_dir())
        .await
        .unwrap();
    let lines = on_disk(dir.path(), &second_id);
    let wrote = written(&logs);
    let wrote_second = &wrote[before..];
    assert_eq!(lines, wrote_second, "the file is what the plugin wrote");
    assert_eq!(
        lines.iter().filter(|l| *l == "end").count(),
        2,
        "ended by the reload, then by the shutdown: {lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("end"));
    seqs_increase(&lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_file_holds_what_was_written_up_to_the_flush_interval() {
    let sim = crate::harness::process_simulator().await;
    let host = host().await;
    let m = meeting(&sim, &host, 40);
    let stream = m.stream_id().to_owned();
    wrote_at_least(&host, 5).await;
    let promised = written(&host.logs());
    // Everything written before this point is due on disk within the interval.
    tokio::time::sleep(rtms_host::sandbox::filebuf::FLUSH_INTERVAL + Duration::from_millis(50))
        .await;
    let (logs, dir) = tokio::task::spawn_blocking(move || host.kill9())
        .await
        .unwrap();
    let lines = on_disk(dir.path(), &stream);
    assert!(
        lines.starts_with(&promised),
        "the file {lines:?} holds every line written at least the interval before the kill {promised:?}"
    );
    let wrote = written(&logs);
    assert!(
        wrote.starts_with(&lines),
        "the file {lines:?} holds nothing the plugin did not write {wrote:?}"
    );
    seqs_increase(&lines);
}
