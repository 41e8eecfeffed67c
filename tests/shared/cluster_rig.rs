//! A cluster on one machine, as the cluster tests and the `cluster` benchmark need it: a real
//! nats-server with JetStream (fresh data directory), real `rtms-host run` processes joined
//! to it, the simulator, and a TCP balancer in front of the hosts, as a load balancer would
//! be: each new connection goes to the next host that accepts it.
//!
//! Every host's seq-recorder writes into one shared directory, so the file of a stream holds
//! what every host that ran it wrote, in order: a takeover appends to it.
//!
//! The module that includes this file provides `crate::host_process`, `crate::nats` and
//! `crate::util::{cache_dir, component}` (the compile cache and the built components).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rtms_proto::Product;
use rtms_sim::{MeetingHandle, MeetingOptions, MeetingScript, Pace, SimConfig, Simulator};
use tokio::net::{TcpListener, TcpStream};

use crate::host_process::{CLIENT_ID, CLIENT_SECRET, HostProcess, WEBHOOK_SECRET};
use crate::nats::NatsServer;

/// Every wait of a cluster test is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(60);
/// The lease the test hosts hold (renewed every 500 ms): a takeover comes within ~3 s.
pub const LEASE_MS: u64 = 2_000;

/// Cluster tests run one at a time: each starts several processes, and leases are timing.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `fut` within [`LIMIT`], failing the test with `what` otherwise.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {LIMIT:?} waiting for {what}"),
    }
}

/// Polls `cond` every 50 ms (for conditions only files and logs show) until it holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A TCP balancer: each accepted connection goes to the next backend that accepts it.
pub struct Balancer {
    pub addr: SocketAddr,
    backends: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    pub async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backends = Arc::new(std::sync::Mutex::new(backends));
        let list = backends.clone();
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let list = list.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let start = next.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    for i in 0..list.len() {
                        let to = list[(start + i) % list.len()];
                        if let Ok(mut server) = TcpStream::connect(to).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            backends,
            task,
        }
    }

    pub fn set(&self, backends: Vec<SocketAddr>) {
        *self.backends.lock().unwrap_or_else(|p| p.into_inner()) = backends;
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The simulator the hosts are set up for: short keep-alives (a silent client is dropped
/// within a second), webhooks retried after 300 ms.
pub async fn simulator() -> Simulator {
    Simulator::start(SimConfig {
        webhook_secret: WEBHOOK_SECRET.into(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        keepalive_interval: Duration::from_millis(250),
        webhook_retry_delay: Duration::from_millis(300),
        webhook_max_attempts: 20,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// How a test host is set up.
#[derive(Clone)]
pub struct HostSpec {
    pub id: String,
    pub nats_url: String,
    /// The seq-recorder's shared output directory.
    pub out: PathBuf,
    /// Serve the admin listener on 127.0.0.1:0.
    pub admin: bool,
    pub max_streams: usize,
    pub lease_ms: u64,
    pub renew_ms: u64,
    /// `[cluster] placement`.
    pub placement: &'static str,
    /// Join the cluster; `false` writes no `[cluster]` section (a host alone, for
    /// comparisons).
    pub cluster: bool,
    /// More TOML, appended to the pipeline (a `[zoom]` table, say).
    pub extra: String,
    /// More environment variables for the process.
    pub env: Vec<(String, String)>,
}

impl HostSpec {
    pub fn pipeline(&self) -> String {
        let admin = if self.admin {
            "[admin]\nlisten = \"127.0.0.1:0\"\n"
        } else {
            "[admin]\nenabled = false\n"
        };
        let cluster = if self.cluster {
            format!(
                "[cluster]\nnats_url = {nats:?}\nhost_id = {id:?}\nlease_ms = {lease}\nrenew_ms = {renew}\nack_wait_ms = 2000\ndrain_ms = 15000\nplacement = {placement:?}\n",
                nats = self.nats_url,
                id = self.id,
                lease = self.lease_ms,
                renew = self.renew_ms,
                placement = self.placement,
            )
        } else {
            String::new()
        };
        format!(
            r#"version = 1
[server]
listen = "127.0.0.1:0"
{admin}
[rtms]
allowed_hosts = ["127.0.0.1", "localhost"]
allow_insecure_ws = true
max_streams = {max}
[runtime]
cache_dir = {cache:?}
dead_letter_dir = "dead"
[runtime.reload]
watch = false
{cluster}
[[plugin]]
name = "seqs"
component = {seq:?}
media = ["transcript"]
[[plugin.dir]]
host = {out:?}
guest = "/out"
{extra}"#,
            max = self.max_streams,
            cache = crate::util::cache_dir().display().to_string(),
            seq = crate::util::component("seq_recorder").display().to_string(),
            out = self.out.display().to_string(),
            extra = self.extra,
        )
    }
}

/// Starts a host process (blocking work off the runtime).
pub async fn start_host(spec: HostSpec) -> HostProcess {
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        HostProcess::start_with_env(&spec.pipeline(), &env)
    })
    .await
    .unwrap()
}

/// A cluster: the engine, hosts `a`, `b`, `c`... (a slot is `None` once its host is gone),
/// the simulator and the balancer.
pub struct Rig {
    pub nats: Option<NatsServer>,
    pub hosts: Vec<Option<HostProcess>>,
    pub specs: Vec<HostSpec>,
    pub sim: Simulator,
    pub lb: Balancer,
    pub out: tempfile::TempDir,
}

impl Rig {
    /// The engine and `n` hosts, all started.
    pub async fn start(n: usize) -> Rig {
        Self::start_with(n, |_, _| {}).await
    }

    /// Like [`Rig::start`], with `tweak` applied to each host's spec first.
    pub async fn start_with(n: usize, tweak: impl Fn(usize, &mut HostSpec)) -> Rig {
        Self::start_on(n, simulator().await, tweak).await
    }

    /// Like [`Rig::start_with`], with the hosts set up for `sim`'s credentials.
    pub async fn start_on(n: usize, sim: Simulator, tweak: impl Fn(usize, &mut HostSpec)) -> Rig {
        let nats = tokio::task::spawn_blocking(NatsServer::start)
            .await
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let specs: Vec<HostSpec> = (0..n)
            .map(|i| {
                let mut spec = HostSpec {
                    id: format!("host-{}", (b'a' + i as u8) as char),
                    nats_url: nats.url(),
                    out: out.path().to_path_buf(),
                    admin: false,
                    max_streams: 1000,
                    lease_ms: LEASE_MS,
                    renew_ms: 500,
                    placement: "least_loaded",
                    cluster: true,
                    extra: String::new(),
                    env: Vec::new(),
                };
                tweak(i, &mut spec);
                spec
            })
            .collect();
        let mut hosts = Vec::new();
        for s in &specs {
            hosts.push(Some(start_host(s.clone()).await));
        }
        let lb = Balancer::start(hosts.iter().flatten().map(|h| h.addr).collect()).await;
        Rig {
            nats: Some(nats),
            hosts,
            specs,
            sim,
            lb,
            out,
        }
    }

    /// The host at `i`.
    pub fn host(&self, i: usize) -> &HostProcess {
        self.hosts[i].as_ref().expect("host is running")
    }

    /// Starts one more host, like the first one but named `id`, and points the balancer at
    /// it too.
    pub async fn add_host(&mut self, id: &str) -> usize {
        let mut spec = self.specs[0].clone();
        spec.id = id.into();
        spec.max_streams = 1000;
        self.hosts.push(Some(start_host(spec.clone()).await));
        self.specs.push(spec);
        self.rebalance();
        self.hosts.len() - 1
    }

    /// The admin listener of the host at `i` (started with `admin = true`), from its
    /// ready line.
    pub fn admin_addr(&self, i: usize) -> SocketAddr {
        let ready = self
            .host(i)
            .wait_for_log("rtms-host ready", Duration::from_secs(1))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&ready).unwrap();
        v["fields"]["admin"]
            .as_str()
            .and_then(|a| a.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
            .unwrap_or_else(|| panic!("no admin address in {ready}"))
    }

    /// Sends `signal` (`STOP`, `CONT`) to the host at `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.host(i).pid().to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Points the balancer at the hosts still running.
    pub fn rebalance(&self) {
        self.lb
            .set(self.hosts.iter().flatten().map(|h| h.addr).collect());
    }

    /// Starts a real-time meeting of `lines` transcript lines, 200 ms apart, its webhooks
    /// through the balancer.
    pub fn meeting(&self, lines: usize) -> MeetingHandle {
        self.meeting_at(&self.lb.webhook_url(), lines, 10)
    }

    /// Starts a real-time meeting of `lines` transcript lines, `frames` audio frames (20 ms
    /// each) apart, its webhooks to `webhook_url`.
    pub fn meeting_at(&self, webhook_url: &str, lines: usize, frames: u64) -> MeetingHandle {
        let script = MeetingScript::builder()
            .synthetic_speech(2, lines, frames)
            .build()
            .unwrap();
        self.sim
            .start_meeting(
                script,
                MeetingOptions {
                    product: Product::Meeting,
                    pace: Pace::Realtime,
                    webhook_url: Some(webhook_url.to_owned()),
                    ..Default::default()
                },
            )
            .unwrap()
    }

    /// The seq-recorder's file for `stream`.
    pub fn seq_file(&self, stream: &str) -> PathBuf {
        self.out.path().join(format!("seqs-{stream}.txt"))
    }

    /// The hosts (by index) that took `stream`, from their logs.
    pub fn owners(&self, stream: &str) -> Vec<usize> {
        self.hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                let h = h.as_ref()?;
                h.logs()
                    .iter()
                    .any(|l| l.contains("cluster: stream taken") && l.contains(stream))
                    .then_some(i)
            })
            .collect()
    }
}

/// Frames written for a stream so far (lines that are not `#` comments).
pub fn frames_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().filter(|l| !l.starts_with('#')).count())
}

/// `GET path` on `addr` (see [`http`]).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path)
}

/// `method path` with no body on `addr` over a fresh HTTP/1.0 connection (blocking; the
/// answer is read to its end, never chunked): the status code and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("cannot connect to {addr} for {method} {path}: {e}"));
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in the answer to {method} {path}: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}
