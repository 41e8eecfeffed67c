//! A real `nats-server` with JetStream for tests and benchmarks: on 127.0.0.1, ports the
//! server picks itself (`-p -1` for clients, `-m -1` for its monitoring endpoint; both read
//! back from its log), a fresh data directory per server, stopped when dropped. A test that needs one fails, never skips, when the binary is missing.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The binary, `RTMS_NATS_SERVER` when set.
fn binary() -> String {
    std::env::var("RTMS_NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    closed: bool,
}

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    /// The HTTP monitoring port (`/varz`: the server's message and byte counters).
    pub monitor_port: u16,
    /// The JetStream data directory (`-sd`), kept across [`NatsServer::restart`].
    pub dir: tempfile::TempDir,
    log: Arc<(Mutex<Log>, Condvar)>,
}

impl NatsServer {
    /// Starts a server with a fresh data directory; waits until it accepts clients.
    pub fn start() -> Self {
        Self::spawn(tempfile::tempdir().expect("temp dir"), None)
    }

    fn spawn(dir: tempfile::TempDir, port: Option<u16>) -> Self {
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        let mut child = Command::new(binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port_arg, "-m", "-1", "-sd"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): the cluster tests need Debian's nats-server (2.9 or later) \
                     on PATH. Install it with scripts/install-nats (apt-get install nats-server), \
                     or point RTMS_NATS_SERVER at the binary",
                    binary()
                )
            });
        let log: Arc<(Mutex<Log>, Condvar)> = Arc::default();
        let sink = log.clone();
        let stderr = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().lines.push(line);
                sink.1.notify_all();
            }
            sink.0.lock().unwrap().closed = true;
            sink.1.notify_all();
        });
        let mut server = Self {
            child,
            port: 0,
            monitor_port: 0,
            dir,
            log,
        };
        let listening = server
            .wait_for(
                "Listening for client connections on",
                Duration::from_secs(30),
            )
            .unwrap_or_else(|| panic!("nats-server did not start:\n{}", server.logs().join("\n")));
        let port_of = |line: &str| -> u16 {
            line.rsplit(':')
                .next()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("no port in {line:?}"))
        };
        server.port = port_of(&listening);
        let monitor = server
            .wait_for("Starting http monitor on", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no monitoring port:\n{}", server.logs().join("\n")));
        server.monitor_port = port_of(&monitor);
        server
            .wait_for("Server is ready", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("nats-server is not ready:\n{}", server.logs().join("\n")));
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.log.0.lock().unwrap().lines.clone()
    }

    /// The first log line containing `needle`, waiting up to `timeout`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.log;
        let mut log = lock.lock().unwrap();
        loop {
            if let Some(l) = log.lines.iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if log.closed || now >= deadline {
                return None;
            }
            log = cv.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and starts it again on the same
    /// port and data directory: what an engine restart looks like to the hosts.
    pub fn restart(self) -> Self {
        let port = self.port;
        let dir = self.stop();
        Self::spawn(dir, Some(port))
    }

    /// Starts a server on `port` with the data directory of a stopped one.
    pub fn start_at(dir: tempfile::TempDir, port: u16) -> Self {
        Self::spawn(dir, Some(port))
    }

    /// Stops the server (SIGTERM; SIGKILL after 10 s) and hands over its data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if wait.recv_timeout(Duration::from_secs(10)).is_err() {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        });
        let _ = self.child.wait();
        let _ = done.send(());
        let _ = watchdog.join();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
