//! The end-to-end harness: a real [`Service`] (webhook ingress, RTMS client, plugins) against
//! a real [`Simulator`], the plugins writing into a temp dir, and the comparison of what the
//! plugins wrote with the simulator's ledger.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use rtms_config::{LoadOptions, MapEnv, Pipeline};
use rtms_host::dataplane::bridge::Tap;
use rtms_host::service::{Service, StartOptions};
pub use rtms_sim::chaos::{ledger_chats, ledger_transcript};
use rtms_sim::{Ledger, MeetingHandle, MeetingOptions, MeetingScript, Pace, SimConfig, Simulator};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::util;

pub use crate::record::Record;

/// Every wait in a test is bounded by this; tests take far less.
pub const LIMIT: Duration = Duration::from_secs(15);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The log lines of everything running on this thread (a `#[tokio::test]` runtime runs the
/// host, its workers and the simulator on the test's thread) while the guard lives.
pub struct LogCapture {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    /// Captures `warn` and above of every target.
    pub fn start() -> LogCapture {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = {
            let buf = buf.clone();
            move || CaptureWriter(buf.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_ansi(false)
            .with_writer(writer)
            .finish();
        LogCapture {
            buf,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The lines captured so far.
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.buf.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

struct CaptureWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `fut` to completion within [`LIMIT`], failing the test with `what` otherwise.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {LIMIT:?} waiting for {what}"),
    }
}

/// Polls `cond` every 20 ms until it holds, for conditions no event announces (the
/// simulator's ledger counters).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The simulator's timers, short enough for tests.
/// A simulator whose credentials match a host started by `host_process` (a real
/// `rtms-host run` process).
pub async fn process_simulator() -> Simulator {
    Simulator::start(SimConfig {
        webhook_secret: crate::host_process::WEBHOOK_SECRET.into(),
        client_id: crate::host_process::CLIENT_ID.into(),
        client_secret: crate::host_process::CLIENT_SECRET.into(),
        ..Default::default()
    })
    .await
    .unwrap()
}

pub fn sim_config(tls: bool) -> SimConfig {
    SimConfig {
        tls,
        keepalive_interval: Duration::from_millis(200),
        signaling_grace: Duration::from_secs(10),
        media_grace: Duration::from_secs(10),
        ..Default::default()
    }
}

/// How a host is set up.
#[derive(Clone)]
pub struct Setup {
    /// `socket_mode = "split"`.
    pub split: bool,
    /// Media the seq-recorder subscribes to.
    pub seq_media: &'static str,
    /// Add a transcript-writer writing JSON Lines.
    pub writer: bool,
    /// Extra `[server]` keys.
    pub server_extra: &'static str,
    /// The seq-recorder's `[plugin.queue]` keys.
    pub seq_queue: &'static str,
    /// Tables appended to the seq-recorder's (`[plugin.batch]`, `[plugin.config]`, ...).
    pub seq_extra: &'static str,
    /// Serve the admin listener on 127.0.0.1:0.
    pub admin: bool,
    /// The admin token (`RTMS_ADMIN_TOKEN`), if any.
    pub admin_token: Option<&'static str>,
    /// Text appended to the pipeline (more `[[plugin]]` tables, `[rtms.*]` sections).
    pub extra: String,
    /// `[rtms] events`.
    pub events: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            split: false,
            seq_media: r#"["audio", "transcript", "chat", "event"]"#,
            writer: true,
            server_extra: "",
            seq_queue: "capacity = 4096\non_full = \"block\"",
            seq_extra: "",
            admin: false,
            events: r#"["participant-join", "participant-leave", "active-speaker-change"]"#,
            admin_token: None,
            extra: String::new(),
        }
    }
}

/// The resilience numbers every test starts from; tests adjust the pipeline further.
/// Values below the config's minimums (keep-alive interval 3000 ms, webhook wait 1000 ms) are
/// set on the parsed pipeline directly.
pub fn fast_rtms(p: &mut Pipeline) {
    let r = &mut p.rtms;
    r.connection_timeout = Duration::from_secs(2);
    r.connection_max_attempts = 5;
    r.connection_retry_delay = Duration::from_millis(100);
    r.reconnect_max_attempts = 5;
    r.reconnect_base_delay = Duration::from_millis(100);
    r.reconnect_max_delay = Duration::from_millis(400);
    r.keepalive_interval = Duration::from_millis(300);
    r.keepalive_timeout = Duration::from_millis(1500);
    r.webhook_wait_timeout = Duration::from_millis(500);
}

/// A running host and the temp dir its plugins write into.
pub struct Host {
    pub svc: Service,
    pub dir: tempfile::TempDir,
    pub webhook_url: String,
    /// Every frame the host received: (stream id, kind, seq).
    pub frames: mpsc::UnboundedReceiver<(String, rtms_host::sandbox::bindings::MediaKind, u64)>,
    /// The names of the threads frames were received on (the streams' core threads).
    pub frame_threads: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl Host {
    pub fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn seq_file(&self, stream_id: &str) -> PathBuf {
        self.out_dir().join(format!("seqs-{stream_id}.txt"))
    }

    pub fn record(&self, stream_id: &str) -> Record {
        Record::read(&self.seq_file(stream_id))
    }

    /// The transcript-writer's JSON Lines file for the stream.
    pub fn writer_lines(&self, stream_id: &str) -> Vec<serde_json::Value> {
        let suffix = format!("_{stream_id}.jsonl");
        let entry = std::fs::read_dir(self.out_dir())
            .expect("out dir")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))
            .unwrap_or_else(|| panic!("no transcript-writer file for stream {stream_id}"));
        std::fs::read_to_string(entry.path())
            .expect("writer file")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("writer line is JSON"))
            .collect()
    }

    /// Waits until the host has no live stream.
    pub async fn idle(&self) {
        within("the host's streams to end", self.svc.sessions().idle()).await;
    }
}

/// Starts a service for `sim`, with `tweak` applied to the parsed pipeline.
pub async fn start_host(sim: &Simulator, setup: Setup, tweak: impl FnOnce(&mut Pipeline)) -> Host {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let ca = match sim.ca_pem() {
        Some(pem) => {
            let path = root.join("sim-ca.pem");
            std::fs::write(&path, pem).expect("write CA");
            format!("ca_file = {:?}\n", path.display().to_string())
        }
        None => String::new(),
    };
    let writer = if setup.writer {
        format!(
            r#"
[[plugin]]
name = "writer"
component = {:?}
media = ["transcript", "chat"]
[[plugin.dir]]
host = "out"
guest = "/out"
[plugin.config]
dir = "/out"
format = "jsonl"
include_chat = true
"#,
            util::component("transcript_writer").display().to_string()
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
webhook_path = "/webhook"
{server_extra}
[zoom]
{ca}
[rtms]
socket_mode = "{mode}"
allowed_hosts = ["127.0.0.1", "localhost"]
allow_insecure_ws = true
events = {events}
[runtime]
cache_dir = {cache:?}
dead_letter_dir = "dead"
shutdown_grace_ms = 5000
[runtime.reload]
watch = false

[[plugin]]
name = "seq"
component = {seq:?}
media = {seq_media}
[[plugin.dir]]
host = "out"
guest = "/out"
[plugin.queue]
{seq_queue}
[plugin.limits]
call_timeout_ms = 5000
{seq_extra}
{writer}
{extra}
[[sink]]
type = "jsonl"
path = "outputs.jsonl"
"#,
        server_extra = setup.server_extra,
        events = setup.events,
        mode = if setup.split { "split" } else { "unified" },
        cache = util::cache_dir().display().to_string(),
        seq = util::component("seq_recorder").display().to_string(),
        seq_media = setup.seq_media,
        seq_queue = setup.seq_queue,
        seq_extra = setup.seq_extra,
        extra = setup.extra,
    );
    let c = sim.config();
    let mut env = MapEnv::new()
        .with("ZM_RTMS_CLIENT", &c.client_id)
        .with("ZM_RTMS_SECRET", &c.client_secret)
        .with("ZOOM_SECRET_TOKEN", &c.webhook_secret);
    if let Some(t) = setup.admin_token {
        env = env.with("RTMS_ADMIN_TOKEN", t);
    }
    let mut pipeline = Pipeline::parse(
        &text,
        &root.join("pipeline.toml"),
        &env,
        LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("test pipeline is invalid: {e}"));
    fast_rtms(&mut pipeline);
    tweak(&mut pipeline);
    let (tx, frames) = mpsc::unbounded_channel();
    let frame_threads: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> =
        Default::default();
    let threads = frame_threads.clone();
    let tap: Tap = std::sync::Arc::new(move |s, f| {
        let _ = tx.send((s.stream_id.to_string(), f.kind, f.seq));
        let name = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        let mut seen = threads.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.contains(&name) {
            seen.insert(name);
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_listener = if setup.admin {
        Some(TcpListener::bind("127.0.0.1:0").await.expect("bind admin"))
    } else {
        None
    };
    let svc = Service::start(
        pipeline,
        Box::new(env),
        listener,
        StartOptions {
            tap: Some(tap),
            watch: Some(false),
            admin_listener,
            ..Default::default()
        },
    )
    .await
    .expect("service starts");
    let webhook_url = format!("http://{}/webhook", svc.addr());
    Host {
        svc,
        dir,
        webhook_url,
        frames,
        frame_threads,
    }
}

/// A small meeting: two speakers, `lines` utterances of 5 audio frames each, two chats,
/// and `faults` after that many media frames.
pub fn script(lines: usize, faults: Vec<(u64, rtms_sim::Fault)>) -> MeetingScript {
    let mut b = MeetingScript::builder()
        .synthetic_speech(2, lines, 5)
        .chat(30, 1001, "hello all")
        .chat(90, 1002, "second chat");
    for (after, fault) in faults {
        b = b.fault_after_frames(after, fault);
    }
    b.build().expect("script")
}

/// Starts a meeting whose webhooks go to the host.
pub fn start(
    sim: &Simulator,
    host: &Host,
    script: MeetingScript,
    product: rtms_proto::Product,
    pace: Pace,
) -> MeetingHandle {
    sim.start_meeting(
        script,
        MeetingOptions {
            product,
            pace,
            webhook_url: Some(host.webhook_url.clone()),
            ..Default::default()
        },
    )
    .expect("meeting starts")
}

/// Starts a meeting whose webhooks are *not* delivered: the test arms faults first, then
/// delivers the started event itself (`post_started`).
pub fn start_unannounced(sim: &Simulator, script: MeetingScript) -> MeetingHandle {
    sim.start_meeting(
        script,
        MeetingOptions {
            pace: Pace::Fast,
            ..Default::default()
        },
    )
    .expect("meeting starts")
}

/// Starts a long real-time meeting and waits until its first transcript line reached the
/// host, so a fault injected next lands mid-meeting.
pub async fn start_live(
    sim: &Simulator,
    host: &mut Host,
    product: rtms_proto::Product,
) -> MeetingHandle {
    let m = start(sim, host, script(400, vec![]), product, Pace::Realtime);
    wait_frame(
        host,
        m.stream_id(),
        rtms_host::sandbox::bindings::MediaKind::Transcript,
    )
    .await;
    m
}

/// Waits for the meeting to finish and the host to end its stream; returns the ledger.
pub async fn finish(host: &Host, meeting: &MeetingHandle) -> Ledger {
    let ledger = within("the meeting to finish", meeting.finished()).await;
    host.idle().await;
    ledger
}

/// Every transcript line and chat message the simulator put on a socket reached the plugin
/// exactly once and in order; audio counts match; seqs strictly increase; one start, one end
/// ([`rtms_sim::chaos::exactly_once`]).
pub fn assert_exactly_once(ledger: &Ledger, rec: &Record) {
    if let Err(e) = rtms_sim::chaos::exactly_once(ledger, rec) {
        panic!("{e}");
    }
}

/// The transcript-writer's JSON Lines hold exactly the ledger's transcript and chat, in order.
pub fn assert_writer_matches(ledger: &Ledger, lines: &[serde_json::Value]) {
    let text_of = |kind: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|v| v["kind"] == kind)
            .map(|v| v["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        text_of("transcript"),
        ledger_transcript(ledger),
        "writer transcript"
    );
    assert_eq!(text_of("chat"), ledger_chats(ledger), "writer chat");
}

// === raw HTTP ===

/// POSTs `body` with `headers` to the host's webhook path; returns status and body.
pub async fn post(host: &Host, headers: &[(&str, String)], body: Vec<u8>) -> (StatusCode, String) {
    let stream = tokio::net::TcpStream::connect(host.svc.addr())
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("http handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::post("/webhook")
        .header("host", host.svc.addr().to_string())
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub fn now_secs() -> i64 {
    rtms_proto::unix_secs() as i64
}

/// `x-zm-request-timestamp` and `x-zm-signature` for `body`, signed with `secret` at `ts`.
pub fn signed(secret: &str, ts: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = ts.to_string();
    vec![
        (
            "x-zm-signature",
            rtms_proto::sign::webhook_signature(secret, &ts, body),
        ),
        ("x-zm-request-timestamp", ts),
    ]
}

/// Delivers the meeting's current started webhook to the host, signed as Zoom would.
pub async fn post_started(sim: &Simulator, host: &Host, meeting: &MeetingHandle) -> StatusCode {
    let body = meeting.started_body();
    let headers = signed(&sim.config().webhook_secret, now_secs(), &body);
    post(host, &headers, body).await.0
}

/// Waits until the host received a frame of `kind` on `stream_id` (seen through the tap).
pub async fn wait_frame(
    host: &mut Host,
    stream_id: &str,
    kind: rtms_host::sandbox::bindings::MediaKind,
) -> std::time::Instant {
    within("a frame", async {
        loop {
            match host.frames.recv().await {
                Some((s, k, _)) if s == stream_id && k == kind => return std::time::Instant::now(),
                Some(_) => {}
                None => panic!("the tap channel closed"),
            }
        }
    })
    .await
}

/// A pipeline for a host run as its own process (`rtms-host run`): a loopback listener, no
/// admin listener, the simulator's hosts allowed, the shared compile cache, dead letters in
/// `dead`, no file watcher; `runtime` is appended to `[runtime]`, then `plugins`.
pub fn process_pipeline(runtime: &str, plugins: &str) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
[admin]
enabled = false
[rtms]
allowed_hosts = ["127.0.0.1", "localhost"]
allow_insecure_ws = true
[runtime]
cache_dir = {cache:?}
dead_letter_dir = "dead"
{runtime}[runtime.reload]
watch = false
{plugins}"#,
        cache = util::cache_dir().display().to_string(),
    )
}

/// A real-time meeting of `lines` transcript lines, 200 ms apart, announced to `webhook_url`.
pub fn realtime_meeting(sim: &Simulator, webhook_url: String, lines: usize) -> MeetingHandle {
    let script = MeetingScript::builder()
        .synthetic_speech(2, lines, 10)
        .build()
        .expect("script");
    sim.start_meeting(
        script,
        MeetingOptions {
            product: rtms_proto::Product::Meeting,
            pace: Pace::Realtime,
            webhook_url: Some(webhook_url),
            ..Default::default()
        },
    )
    .unwrap()
}
