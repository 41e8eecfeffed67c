//! The attacks on rtms-host's internet-facing intake, each run through real sockets against
//! a real `rtms-host run` process (see `shared/host_process.rs` for which binary).
//!
//! - `oracle`: the url-validation signing oracle and a forged failover.
//! - `intake`: the server URL allow-list and the length limits on webhook ids.
//! - `streams`: a flood of validly signed started webhooks against `rtms.max_streams`, and
//!   the memory and log volume it leaves behind.
//! - `lockout`: idle connections and a slowloris against the admin and webhook ports while
//!   the probes, the metrics and signed webhooks keep being answered.
//! - `slow`: slow clients against the connection cap and the read timeouts; TLS with a
//!   certificate replaced on disk.
//!
//! Tests run one at a time ([`serial`]): each owns a host process and the machine's cores,
//! and timing assertions must not depend on another test's load.

#[path = "../shared/host_process.rs"]
mod host_process;
mod intake;
mod lockout;
mod oracle;
mod secrets;
mod slow;
mod streams;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rtms_proto::sign::webhook_signature;
use rtms_proto::{Product, WebhookAction, WebhookEvent};

pub use host_process::{HostProcess, WEBHOOK_SECRET};

/// `[rtms]` keys that let a host connect to the simulator (127.0.0.1 / localhost, ws and
/// wss).
pub const SIM_ALLOW: &str =
    "allowed_hosts = [\"127.0.0.1\", \"localhost\"]\nallow_insecure_ws = true\n";

/// A simulator that signs with the host process's webhook secret and knows its credentials.
pub async fn simulator() -> rtms_sim::Simulator {
    rtms_sim::Simulator::start(rtms_sim::SimConfig {
        webhook_secret: WEBHOOK_SECRET.into(),
        client_id: host_process::CLIENT_ID.into(),
        client_secret: host_process::CLIENT_SECRET.into(),
        ..Default::default()
    })
    .await
    .expect("simulator")
}

/// Holds the one-test-at-a-time lock.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A pipeline with no plugins: `server` and `rtms` are extra keys of those sections.
pub fn pipeline(server: &str, rtms: &str) -> String {
    format!(
        "version = 1\n\n[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\n\
         [rtms]\nmedia = [\"transcript\"]\n{rtms}\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [runtime]\ncache_dir = \"cache\"\ndead_letter_dir = \"dead\"\nshutdown_grace_ms = 3000\n\n\
         [runtime.reload]\nwatch = false\n"
    )
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The headers of a body signed with `secret` now.
pub fn signed(body: &[u8], secret: &str) -> Vec<(&'static str, String)> {
    let ts = unix_now().to_string();
    vec![
        ("x-zm-signature", webhook_signature(secret, &ts, body)),
        ("x-zm-request-timestamp", ts),
    ]
}

/// A lifecycle webhook body for a meeting stream.
pub fn lifecycle(action: WebhookAction, stream_id: &str, url: Option<&str>, ts: i64) -> Vec<u8> {
    WebhookEvent {
        details: Default::default(),
        product: Product::Meeting,
        action,
        event: Product::Meeting.event_name(action),
        event_ts: ts,
        id: format!("m-{stream_id}"),
        stream_id: stream_id.to_owned(),
        server_url: url.map(str::to_owned),
        operator_id: None,
        stop_reason: (action == WebhookAction::Stopped).then_some(6),
    }
    .to_body()
}

/// An HTTP client (keep-alive pool).
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// POSTs `body` with `headers`; returns status, headers and text. Fails after 10 s.
pub async fn post_with(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let send = async {
        let resp = client
            .request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .expect("the host answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&text).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), send)
        .await
        .expect("answered within 10 s")
}

/// POSTs with a fresh client.
pub async fn post(url: &str, body: Vec<u8>, headers: &[(&str, String)]) -> (StatusCode, String) {
    let (s, _, t) = post_with(&client(), url, body, headers).await;
    (s, t)
}
