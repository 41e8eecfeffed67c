//! The operator's view, against a live simulated meeting: the Prometheus exposition (read by
//! the official `prometheus_client` parser) against the simulator's ledger, the admin API,
//! the token rule, `rtms-host tap`, and the dashboard rendered by headless Chromium.
//!
//! The Python parser and Playwright live in a virtualenv under the cargo target dir
//! (created on first use); Chromium is Debian's, installed with apt-get when missing. When
//! either cannot be had the tests fail saying so: they never skip.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rtms_proto::Product;
use rtms_sim::{Pace, Simulator};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::*;
use crate::pyvenv::{self, run};

const PARSE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/ops/parse_metrics.py");
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/ops/dashboard_check.py"
);

/// The venv's python with `prometheus_client` and `playwright`, created on first use.
pub fn ops_python() -> PathBuf {
    static PY: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops-venv");
        pyvenv::python(
            &venv,
            &["prometheus_client", "playwright"],
            "prometheus_client, playwright",
        )
    })
    .clone()
    .unwrap_or_else(|e| panic!("the test's Python tools are not available: {e}"))
}

/// Installs Debian packages with apt-get unless `path` exists; one install at a time in this
/// process, waiting for dpkg's lock rather than failing on it.
pub fn apt_install(path: &str, packages: &[&str], why: &str) {
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = APT.lock().unwrap_or_else(|p| p.into_inner());
    if Path::new(path).exists() {
        return;
    }
    let install = || {
        run(std::process::Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q"])
            .arg("--no-install-recommends")
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_err() {
        let _ = run(std::process::Command::new("apt-get").args([
            "-o",
            "DPkg::Lock::Timeout=300",
            "update",
            "-q",
        ]));
        if let Err(e) = install() {
            panic!("{why}, and apt-get could not install {packages:?}: {e}");
        }
    }
    assert!(
        Path::new(path).exists(),
        "apt-get installed {packages:?} but {path} is missing"
    );
}

/// Debian's Chromium, installed with apt-get when missing.
pub fn chromium() {
    apt_install(
        "/usr/bin/chromium",
        &["chromium"],
        "headless Chromium is needed for the dashboard and Zoom App tests",
    );
}

/// GET or POST `path` on the admin listener; status and body.
pub async fn admin(
    host: &Host,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let addr = host.svc.admin_addr().expect("the admin listener runs");
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = within(path, client.request(req.body(Empty::new()).unwrap()))
        .await
        .expect("the admin listener answers");
    let status = resp.status();
    let body = within(path, resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn admin_json(host: &Host, path: &str) -> Value {
    let (status, body) = admin(host, Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
}

/// The exposition parsed by the official parser: sample name to `(labels, value)`.
/// Sample name to its `(labels, value)` rows.
type Samples = HashMap<String, Vec<(HashMap<String, String>, f64)>>;

/// The parsed samples and the raw text.
pub struct Exposition(Samples, String);

impl Exposition {
    pub async fn scrape(host: &Host) -> Self {
        let (status, text) = admin(host, Method::GET, "/metrics", None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let py = tokio::task::spawn_blocking(ops_python).await.unwrap();
        let mut child = tokio::process::Command::new(py)
            .arg(PARSE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the parser");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .await
            .unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "the official parser refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Samples = serde_json::from_slice(&out.stdout).expect("parser output");
        Self(v, text)
    }

    /// The value of the sample `name` whose labels include `labels`; 0 when absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<f64> = self
            .0
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(l, _)| {
                labels
                    .iter()
                    .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, v)| *v)
            .collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} matches {matching:?}"
        );
        matching.first().copied().unwrap_or(0.0)
    }
}

fn ops_setup() -> Setup {
    Setup {
        admin: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counters_follow_the_simulators_ledger() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let host = start_host(&sim, ops_setup(), |_| {}).await;
    let m = start(
        &sim,
        &host,
        script(12, vec![]),
        Product::Meeting,
        Pace::Fast,
    );
    let ledger = finish(&host, &m).await;
    let x = Exposition::scrape(&host).await;

    for kind in ["audio", "transcript", "chat"] {
        let sent = ledger
            .kinds
            .iter()
            .find(|(k, _)| k.as_str() == kind)
            .map_or(0, |(_, s)| s.count);
        assert!(sent > 0, "the script sends {kind}");
        assert_eq!(
            x.get("rtms_frames_received_total", &[("kind", kind)]),
            sent as f64,
            "{kind} frames"
        );
    }
    let lifecycle = |event: &str, outcome: &str| {
        x.get(
            "rtms_webhooks_total",
            &[("event", event), ("outcome", outcome)],
        )
    };
    assert_eq!(lifecycle("meeting.rtms_started", "accepted"), 1.0);
    assert_eq!(lifecycle("meeting.rtms_stopped", "accepted"), 1.0);
    assert_eq!(x.get("rtms_first_frame_seconds_count", &[]), 1.0);
    assert_eq!(
        x.get("rtms_connection_attempts_total", &[("scope", "full")]),
        1.0
    );
    assert_eq!(x.get("rtms_sessions_opened_total", &[]), 1.0);
    assert_eq!(x.get("rtms_sessions_ended_total", &[]), 1.0);
    // No live stream is left in any state.
    let live: f64 =
        x.0.get("rtms_sessions")
            .into_iter()
            .flatten()
            .map(|(_, v)| v)
            .sum();
    assert_eq!(live, 0.0);

    let texts = ledger_transcript(&ledger).len() + ledger_chats(&ledger).len();
    assert_eq!(
        x.get(
            "rtms_plugin_frames_delivered_total",
            &[("plugin", "writer")]
        ),
        texts as f64
    );
    for plugin in ["seq", "writer"] {
        let batches = x.get("rtms_plugin_batches_total", &[("plugin", plugin)]);
        assert!(batches > 0.0, "{plugin} was called");
        assert_eq!(
            x.get("rtms_plugin_call_seconds_count", &[("plugin", plugin)]),
            batches,
            "every {plugin} call is timed"
        );
        assert_eq!(
            x.get("rtms_plugin_frames_dropped_total", &[("plugin", plugin)]),
            0.0
        );
        assert_eq!(x.get("rtms_plugin_queue_depth", &[("plugin", plugin)]), 0.0);
    }
    assert_eq!(x.get("rtms_ready", &[]), 1.0);
    // The instance pool ([runtime] pool = "auto"): every slot given back at the session's
    // end, none refused.
    assert!(x.get("rtms_plugin_pool_instances_limit", &[]) > 0.0);
    assert_eq!(x.get("rtms_plugin_pool_instances", &[]), 0.0);
    assert_eq!(x.get("rtms_plugin_pool_exhausted_total", &[]), 0.0);

    // Every metric the example Grafana dashboard queries is exposed.
    let grafana = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/grafana/rtms-host.json"
    ))
    .unwrap();
    let mut names: Vec<&str> = grafana
        .match_indices("rtms_")
        .map(|(i, _)| {
            let rest = &grafana[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| n.len() > "rtms_".len() && *n != "rtms_host")
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() > 10, "{names:?}");
    for name in names {
        let base = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            x.1.contains(&format!("# TYPE {base} ")),
            "the Grafana dashboard queries {name}, which /metrics does not expose"
        );
    }

    // A retry of the same event is counted as a duplicate, a forged one as unauthorized.
    let started = m.started_body();
    let ts = now_secs();
    let (status, _) = post(
        &host,
        &signed(&sim.config().webhook_secret, ts, &started),
        started.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(&host, &signed("not-the-secret", ts, &started), started).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let x = Exposition::scrape(&host).await;
    assert_eq!(
        x.get(
            "rtms_webhooks_total",
            &[("event", "meeting.rtms_started"), ("outcome", "duplicate")]
        ),
        1.0
    );
    assert_eq!(
        x.get(
            "rtms_webhooks_total",
            &[
                ("event", "meeting.rtms_started"),
                ("outcome", "unauthorized")
            ]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_taps_and_stops_a_live_session() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let mut host = start_host(&sim, ops_setup(), |p| p.rtms.ws_ping = true).await;
    let m = start_live(&sim, &mut host, Product::Meeting).await;
    let stream = m.stream_id().to_owned();

    // With rtms.ws_ping the signaling socket's ping round trip is measured.
    within("a keep-alive round trip in /metrics", async {
        loop {
            let (_, text) = admin(&host, Method::GET, "/metrics", None).await;
            let count = text
                .lines()
                .find_map(|l| l.strip_prefix("rtms_keepalive_rtt_seconds_count "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            if count > 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    let (status, body) = admin(&host, Method::GET, "/readyz", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));

    let sessions = admin_json(&host, "/admin/sessions").await;
    let list = sessions.as_array().expect("a list");
    assert_eq!(list.len(), 1, "{sessions}");
    let s = &list[0];
    assert_eq!(s["stream_id"], stream.as_str());
    assert_eq!(s["state"], "streaming");
    assert_eq!(s["product"], "meeting");
    let names: Vec<&str> = s["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["seq", "writer"], "{s}");

    let plugins = admin_json(&host, "/admin/plugins").await;
    for p in plugins.as_array().unwrap() {
        assert_eq!(p["hash"].as_str().map(str::len), Some(12), "{p}");
        assert!(p["stats"]["routed"].as_u64().is_some(), "{p}");
    }

    let (status, config) = admin(&host, Method::GET, "/admin/config", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(config.contains("Secret(***)"), "{config}");
    assert!(
        !config.contains(&sim.config().client_secret),
        "a secret leaked: {config}"
    );

    // `rtms-host tap` prints the session's transcript lines as they pass.
    let admin_url = format!("http://{}", host.svc.admin_addr().unwrap());
    let mut tap = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtms-host"))
        .args(["tap", "--admin", &admin_url, "--session", &stream])
        .args([
            "--kind",
            "transcript",
            "--what",
            "frames",
            "--json",
            "--count",
            "2",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run rtms-host tap");
    let mut lines = BufReader::new(tap.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = within("a tapped transcript line", lines.next_line())
            .await
            .unwrap()
            .expect("the tap printed a line");
        let ev: Value = serde_json::from_str(&line).expect("JSON line");
        assert_eq!(ev["type"], "frame", "{ev}");
        assert_eq!(ev["kind"], "transcript", "{ev}");
        assert_eq!(ev["stream_id"], stream.as_str(), "{ev}");
        assert!(ev["text"].as_str().is_some_and(|t| !t.is_empty()), "{ev}");
    }
    let status = within("the tap to exit after --count", tap.wait())
        .await
        .unwrap();
    assert!(status.success());

    // Stopping the stream asks Zoom to close it (STREAM_CLOSE_REQ): it ends with
    // RECEIVER_REQUEST_CLOSE on both sides; a second stop finds nothing.
    let path = format!("/admin/sessions/stop?stream_id={stream}");
    let (status, body) = admin(&host, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ledger = within("the simulator to end the stream", m.finished()).await;
    host.idle().await;
    assert_eq!(ledger.counters.stream_close_requests, 1);
    assert_eq!(
        ledger.stop_reason,
        Some(rtms_proto::codes::stop_reason::RECEIVER_REQUEST_CLOSE)
    );
    let record = host.record(&stream);
    assert_eq!(
        record.ends,
        ["stopped(20)"],
        "the plugin saw the stream end"
    );
    let (status, body) = admin(&host, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("GET /admin/sessions"), "{body}");
    let x = Exposition::scrape(&host).await;
    assert_eq!(x.get("rtms_sessions_stopped_by_admin_total", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_every_route_but_health_and_the_page() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let host = start_host(
        &sim,
        Setup {
            admin: true,
            admin_token: Some("a-long-admin-token"),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    for path in [
        "/metrics",
        "/admin/sessions",
        "/admin/plugins",
        "/admin/config",
        "/admin/tap",
    ] {
        let (status, _) = admin(&host, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a token");
        let (status, _) = admin(&host, Method::GET, path, Some("wrong")).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
    }
    let (status, _) = admin(
        &host,
        Method::POST,
        "/admin/sessions/stop?stream_id=x",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, text) = admin(&host, Method::GET, "/metrics", Some("a-long-admin-token")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("rtms_ready 1"), "{text}");
    for path in ["/healthz", "/readyz", "/dashboard", "/"] {
        let (status, _) = admin(&host, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path} needs no token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_live_session_and_its_transcript_in_chromium() {
    tokio::task::spawn_blocking(chromium).await.unwrap();
    let py = tokio::task::spawn_blocking(ops_python).await.unwrap();
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let mut host = start_host(&sim, ops_setup(), |_| {}).await;
    let m = start_live(&sim, &mut host, Product::Meeting).await;
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("dashboard.png");
    let url = format!("http://{}/dashboard", host.svc.admin_addr().unwrap());
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(py)
            .arg(DASHBOARD)
            .args([url.as_str(), m.stream_id(), "3"])
            .arg(&shot)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser check finished within 60 s")
    .expect("run the browser check");
    assert!(
        out.status.success(),
        "{}\n(screenshot: {})",
        String::from_utf8_lossy(&out.stderr),
        shot.display()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the check's JSON");
    assert_eq!(seen["rows"], serde_json::json!([m.stream_id()]), "{seen}");
    assert_eq!(
        seen["plugins"],
        serde_json::json!(["seq", "writer"]),
        "{seen}"
    );
    // Each rendered line is "<speaker>: <text>" of a line the simulator sent
    // ("synthetic line N from ID", said by "Speaker K").
    for line in seen["transcript"].as_array().unwrap() {
        let line = line.as_str().unwrap();
        let (who, text) = line.split_once(": ").expect("speaker: text");
        assert!(who.starts_with("Speaker "), "{line:?}");
        assert!(
            text.starts_with("synthetic line "),
            "{line:?} was never said"
        );
    }
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_at_the_stream_cap_and_200_again_below_it() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let mut host = start_host(&sim, ops_setup(), |p| p.rtms.max_streams = 1).await;
    let (status, body) = admin(&host, Method::GET, "/readyz", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    let m = start_live(&sim, &mut host, Product::Meeting).await;
    let stream = m.stream_id().to_owned();
    // The host carries its maximum: a load balancer must move on.
    let (status, body) = admin(&host, Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body,
        "not ready: at the stream cap (rtms.max_streams = 1)\n"
    );
    let path = format!("/admin/sessions/stop?stream_id={stream}");
    let (status, body) = admin(&host, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    host.idle().await;
    let (status, body) = admin(&host, Method::GET, "/readyz", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_operator_stopped_is_not_taken_back_by_its_next_webhooks() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let mut host = start_host(&sim, ops_setup(), |_| {}).await;
    let m = start_live(&sim, &mut host, Product::Meeting).await;
    let stream = m.stream_id().to_owned();
    let path = format!("/admin/sessions/stop?stream_id={stream}");
    let (status, body) = admin(&host, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    host.idle().await;
    // Zoom still holds the stream: an interrupted webhook, then a started one, for it.
    // New events (a new event_ts), not retries the ingress would drop as duplicates.
    let started: Value = serde_json::from_slice(&m.started_body()).unwrap();
    let mut interrupted = started.clone();
    interrupted["event"] = "meeting.rtms_interrupted".into();
    let secret = sim.config().webhook_secret.clone();
    for (i, mut ev) in [interrupted, started].into_iter().enumerate() {
        ev["event_ts"] = (rtms_proto::unix_ms() + 1 + i as u64).into();
        let body = ev.to_string().into_bytes();
        let (status, answer) = post(&host, &signed(&secret, now_secs(), &body), body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(
            answer.contains("stopped by this host's operator"),
            "{answer}"
        );
    }
    let sessions = admin_json(&host, "/admin/sessions").await;
    assert_eq!(sessions, serde_json::json!([]), "the stream stays stopped");
    assert_eq!(host.svc.sessions().refused_operator_stopped(), 2);
}
