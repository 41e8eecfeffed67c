//! Nothing outside locks the operator out: idle connections to the admin port (32, the old
//! cap that refused everyone past it, then a thousand) while `/healthz`, `/readyz` and an
//! authorised `/metrics` keep answering; the same against the webhook port while signed
//! webhooks keep being accepted; a slowloris on the admin port cut at the header deadline
//! and counted in the exposition.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use rtms_proto::WebhookAction;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{HostProcess, SIM_ALLOW, WEBHOOK_SECRET, lifecycle, pipeline, post, serial, signed};

const TOKEN: &str = "lockout-test-admin-token-7f9c2e4b8d1a";
/// Every probe must be answered within this.
const BOUND: Duration = Duration::from_secs(2);

fn start() -> (HostProcess, SocketAddr) {
    let host =
        HostProcess::start_with_env(&pipeline("", SIM_ALLOW), &[("RTMS_ADMIN_TOKEN", TOKEN)]);
    let line = host
        .wait_for_log("admin listener listening", Duration::from_secs(10))
        .expect("the admin listener runs");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let admin = v["fields"]["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr in {line}"));
    (host, admin)
}

/// Opens `n` connections that send nothing.
async fn idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    held
}

/// GET `path` on a new connection, within [`BOUND`]; status and body.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = hyper::Request::get(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let client = crate::client();
    let started = Instant::now();
    let resp = tokio::time::timeout(BOUND, async {
        let resp = client
            .request(req.body(Default::default()).unwrap())
            .await
            .expect("answered");
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
    .await
    .unwrap_or_else(|_| panic!("{path} not answered within {BOUND:?}"));
    eprintln!("{path}: {:?}", started.elapsed());
    resp
}

async fn probes(admin: SocketAddr) {
    assert_eq!(get(admin, "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(get(admin, "/readyz", None).await.0, StatusCode::OK);
    assert_eq!(get(admin, "/metrics", Some(TOKEN)).await.0, StatusCode::OK);
}

/// The value of one exposition line starting with `series`.
async fn metric(admin: SocketAddr, series: &str) -> u64 {
    let (_, text) = get(admin, "/metrics", Some(TOKEN)).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the exposition"))
}

#[tokio::test]
async fn idle_admin_connections_never_lock_the_operator_out() {
    let _serial = serial().await;
    let (host, admin) = start();
    for n in [32, 32, 1_000] {
        let held = idle(admin, n).await;
        probes(admin).await;
        drop(held);
    }
    let evicted = metric(
        admin,
        "rtms_listener_connections_closed_total{listener=\"admin\",reason=\"per_peer_limit\"}",
    )
    .await;
    assert!(evicted >= 1_000, "idle connections pushed out: {evicted}");
    host.stop();
}

#[tokio::test]
async fn idle_webhook_connections_never_stop_signed_webhooks() {
    let _serial = serial().await;
    let (host, admin) = start();
    let held = idle(host.addr, 1_000).await;
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let body = lifecycle(WebhookAction::Stopped, &format!("legit{i}"), None, 1);
        let t = Instant::now();
        let (status, text) = tokio::time::timeout(
            BOUND,
            post(
                &host.webhook_url(),
                body.clone(),
                &signed(&body, WEBHOOK_SECRET),
            ),
        )
        .await
        .expect("a webhook answered within the bound");
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    eprintln!("20 signed webhooks among 1,000 idle connections: slowest {slowest:?}");
    probes(admin).await;
    drop(held);
    let evicted = metric(
        admin,
        "rtms_listener_connections_closed_total{listener=\"webhook\",reason=\"per_peer_limit\"}",
    )
    .await;
    assert!(evicted >= 700, "idle connections pushed out: {evicted}");
    host.stop();
}

#[tokio::test]
async fn a_slowloris_on_the_admin_port_is_cut_at_the_header_deadline_and_counted() {
    let _serial = serial().await;
    let (host, admin) = start();
    let mut sock = TcpStream::connect(admin).await.unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut buf = [0u8; 256];
    let cut = loop {
        tokio::select! {
            r = sock.read(&mut buf) => break r.unwrap_or(0),
            _ = tick.tick() => {
                if sock.write_all(b"a").await.is_err() {
                    break 0;
                }
            }
        }
    };
    let took = started.elapsed();
    eprintln!("slowloris cut after {took:?} ({cut} bytes answered)");
    assert!(
        took >= Duration::from_millis(4_500) && took < Duration::from_secs(8),
        "cut at the 5 s header deadline, took {took:?}"
    );
    let counted = metric(
        admin,
        "rtms_listener_connections_closed_total{listener=\"admin\",reason=\"header_timeout\"}",
    )
    .await;
    assert!(counted >= 1, "the cut is counted");
    host.stop();
}
