//! A real `rtms-host run` process for tests: the binary chosen as a deployment would run it,
//! a pipeline file in a temporary directory, JSON logs on stderr collected by a thread, the
//! webhook port read from the "rtms-host ready" line, and the process's RSS from /proc.
//!
//! The binary is `RTMS_HOST_BIN` when set, else `target/release/rtms-host` when it exists
//! and is newer than the test build's own binary (a stale release build would test old
//! code), else the binary cargo built for this test run. Outside the host crate's tests (the
//! benchmarks, which cargo builds no host binary for) it is `target/release/rtms-host`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Credentials every test host gets.
pub const CLIENT_ID: &str = "test-client-id";
pub const CLIENT_SECRET: &str = "test-client-secret";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";

/// The binary to run, and why it was chosen.
pub fn host_binary() -> (PathBuf, &'static str) {
    if let Some(p) = std::env::var_os("RTMS_HOST_BIN") {
        return (PathBuf::from(p), "RTMS_HOST_BIN");
    }
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/rtms-host");
    let Some(built) = option_env!("CARGO_BIN_EXE_rtms-host").map(PathBuf::from) else {
        return (
            release,
            "target/release (cargo build --release -p rtms-host)",
        );
    };
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (mtime(&release), mtime(&built)) {
        (Some(r), Some(b)) if r >= b => (release, "target/release (newer than the test build)"),
        (Some(_), _) => (built, "the test build (target/release/rtms-host is older)"),
        _ => (built, "the test build (no target/release/rtms-host)"),
    }
}

#[derive(Default)]
struct Logs {
    lines: Vec<String>,
    closed: bool,
}

/// A running host process; killed when dropped.
pub struct HostProcess {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    logs: Arc<(Mutex<Logs>, Condvar)>,
}

impl HostProcess {
    /// Writes `pipeline` (a complete pipeline.toml) and runs `rtms-host run` on it. Waits
    /// for "rtms-host ready" (at most 60 s).
    pub fn start(pipeline: &str) -> Self {
        Self::start_with_env(pipeline, &[])
    }

    /// Like [`HostProcess::start`], with extra environment variables.
    pub fn start_with_env(pipeline: &str, env: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), "pipeline.toml", pipeline, env)
    }

    /// Like [`HostProcess::start_with_env`], with the pipeline written at `rel` inside `dir`
    /// (relative paths in it resolve against that file's folder).
    pub fn start_in(
        dir: tempfile::TempDir,
        rel: &str,
        pipeline: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, pipeline).unwrap();
        let (bin, why) = host_binary();
        eprintln!("host binary: {} ({why})", bin.display());
        let mut child = Command::new(&bin)
            .args(["run", "--config"])
            .arg(&path)
            .env("ZM_RTMS_CLIENT", CLIENT_ID)
            .env("ZM_RTMS_SECRET", CLIENT_SECRET)
            .env("ZOOM_SECRET_TOKEN", WEBHOOK_SECRET)
            .env("RUST_LOG", "info")
            .env("RTMS_LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let logs: Arc<(Mutex<Logs>, Condvar)> = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().lines.push(line);
                sink.1.notify_all();
            }
            sink.0.lock().unwrap().closed = true;
            sink.1.notify_all();
        });
        let mut host = Self {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            dir,
            logs,
        };
        let ready = host
            .wait_for_log("rtms-host ready", Duration::from_secs(60))
            .unwrap_or_else(|| panic!("the host did not start:\n{}", host.logs().join("\n")));
        let v: serde_json::Value = serde_json::from_str(&ready).unwrap();
        host.addr = v["fields"]["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no addr in {ready}"));
        host
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.0.lock().unwrap().lines.clone()
    }

    /// Lines containing `needle` so far.
    pub fn count_logs(&self, needle: &str) -> usize {
        self.logs
            .0
            .lock()
            .unwrap()
            .lines
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The first line containing `needle`, waiting up to `timeout` for it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.logs;
        let mut logs = lock.lock().unwrap();
        loop {
            if let Some(l) = logs.lines.iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if logs.closed || now >= deadline {
                return None;
            }
            logs = cv.wait_timeout(logs, deadline - now).unwrap().0;
        }
    }

    /// Waits until at least `n` lines contain `needle`; false after `timeout`.
    pub fn wait_for_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.logs;
        let mut logs = lock.lock().unwrap();
        let mut seen = 0;
        let mut counted = 0;
        loop {
            seen += logs.lines[counted..]
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            counted = logs.lines.len();
            if seen >= n {
                return true;
            }
            let now = Instant::now();
            if logs.closed || now >= deadline {
                return false;
            }
            logs = cv.wait_timeout(logs, deadline - now).unwrap().0;
        }
    }

    /// Waits (at most `timeout`) for the process to exit on its own; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size in KiB (VmRSS of /proc/<pid>/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Like [`HostProcess::stop`], and hands over the pipeline's directory, which would
    /// otherwise go with the process.
    pub fn stop_keeping_dir(mut self) -> (Vec<String>, tempfile::TempDir) {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (self.stop(), dir)
    }

    /// Kills the process with SIGKILL (`kill -9`: no shutdown, no flush) and hands over the
    /// pipeline's directory and every log line.
    pub fn kill9(mut self) -> (Vec<String>, tempfile::TempDir) {
        let pid = self.pid().to_string();
        let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        assert!(status.success(), "kill -9 {pid} failed");
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let (lock, cv) = &*self.logs;
        let mut logs = lock.lock().unwrap();
        while !logs.closed {
            logs = cv.wait(logs).unwrap();
        }
        (logs.lines.clone(), dir)
    }

    /// Sends SIGTERM and waits for a clean exit (killed after 30 s); returns every log line.
    pub fn stop(mut self) -> Vec<String> {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if wait.recv_timeout(Duration::from_secs(30)).is_err() {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                return false;
            }
            true
        });
        let status = self.child.wait().unwrap();
        let _ = done.send(());
        assert!(
            watchdog.join().unwrap(),
            "the host did not exit within 30 s of SIGTERM"
        );
        assert!(status.success(), "exit status {status:?}");
        let (lock, cv) = &*self.logs;
        let mut logs = lock.lock().unwrap();
        while !logs.closed {
            logs = cv.wait(logs).unwrap();
        }
        logs.lines.clone()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir`, with its bytes: what a run left, for tests that search all of it
/// (for a secret, say).
pub fn every_file(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}
