//! Ingress tests over real HTTP on 127.0.0.1 port 0, with a hyper client.

use std::net::SocketAddr;
use std::sync::Mutex;

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rtms_proto::sign::{url_validation_token, webhook_signature};
use rtms_proto::{Product, WebhookAction};

use super::*;

const SECRET: &str = "whsec";

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<WebhookEvent>>,
}

impl IngressHandler for Recorder {
    fn on_event(&self, ev: WebhookEvent) {
        self.events.lock().unwrap().push(ev);
    }
    fn on_other(&self, method: &Method, path: &str, body: &[u8]) -> Option<(StatusCode, String)> {
        (method == Method::POST && path == "/admin/reload")
            .then(|| (StatusCode::ACCEPTED, format!("reloading {}", body.len())))
    }
}

struct Server {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(cfg: IngressConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, cfg, recorder.clone(), shutdown.clone()));
    Server {
        addr,
        recorder,
        shutdown,
        task,
    }
}

fn cfg() -> IngressConfig {
    IngressConfig {
        secret_token: SECRET.into(),
        ..Default::default()
    }
}

fn started_body(ts: i64) -> Vec<u8> {
    WebhookEvent {
        product: Product::Meeting,
        action: WebhookAction::Started,
        event: "meeting.rtms_started".into(),
        event_ts: ts,
        id: "m==".into(),
        stream_id: "s1".into(),
        server_url: Some("wss://localhost:1/sig".into()),
        operator_id: None,
        stop_reason: None,
    }
    .to_body()
}

async fn post(
    addr: SocketAddr,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::post(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&text).into_owned())
}

fn signed(body: &[u8], ts: i64, secret: &str) -> Vec<(&'static str, String)> {
    let ts = ts.to_string();
    vec![
        ("x-zm-signature", webhook_signature(secret, &ts, body)),
        ("x-zm-request-timestamp", ts),
    ]
}

#[tokio::test]
async fn a_correctly_signed_event_is_accepted_and_handed_on() {
    let s = start(cfg()).await;
    let body = started_body(1);
    let (status, _) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let events = s.recorder.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].stream_id, "s1");
}

#[tokio::test]
async fn forged_unsigned_and_stale_events_get_401() {
    let s = start(cfg()).await;
    let body = started_body(1);
    let (status, _) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), "wrong"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(s.addr, "/webhook", body.clone(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let stale = unix_now() - 301;
    let (status, _) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, stale, SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A body altered after signing.
    let mut headers = signed(&body, unix_now(), SECRET);
    let mut altered = body.clone();
    altered[10] ^= 1;
    headers.truncate(2);
    let (status, _) = post(s.addr, "/webhook", altered, &headers).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(s.recorder.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_replayed_retry_is_acknowledged_but_delivered_once() {
    let s = start(cfg()).await;
    let body = started_body(42);
    for _ in 0..3 {
        let (status, _) = post(
            s.addr,
            "/webhook",
            body.clone(),
            &signed(&body, unix_now(), SECRET),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    // A new event_ts is a new event (the session tells failover from duplicate).
    let body = started_body(43);
    post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(s.recorder.events.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let s = start(IngressConfig {
        max_body_bytes: 1000,
        ..cfg()
    })
    .await;
    let body = vec![b' '; 5000];
    let (status, _) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn malformed_json_and_missing_fields_get_400() {
    let s = start(cfg()).await;
    let body = b"{not json".to_vec();
    let (status, text) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("not JSON"), "{text}");
    let body = br#"{"event":"meeting.rtms_started","event_ts":1,"payload":{"meeting_uuid":"m","rtms_stream_id":"s"}}"#.to_vec();
    let (status, text) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("server_urls"), "{text}");
    assert!(s.recorder.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn url_validation_is_answered_with_or_without_signature() {
    let s = start(cfg()).await;
    let body =
        br#"{"event":"endpoint.url_validation","event_ts":1,"payload":{"plainToken":"abc123"}}"#
            .to_vec();
    let expected = serde_json::json!({"plainToken":"abc123","encryptedToken":url_validation_token(SECRET, "abc123")});
    let (status, text) = post(s.addr, "/webhook", body.clone(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        expected
    );
    let (status, text) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        expected
    );
    // A signature that is present must be right.
    let (status, _) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), "bad"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn health_extra_routes_and_unknown_paths() {
    let s = start(cfg()).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client
        .get(format!("http://{}/healthz", s.addr).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, text) = post(s.addr, "/admin/reload", b"xy".to_vec(), &[]).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::ACCEPTED, "reloading 2")
    );
    let (status, _) = post(s.addr, "/nope", vec![], &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = client
        .get(format!("http://{}/webhook", s.addr).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let s = start(cfg()).await;
    s.shutdown.cancel();
    s.task.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(s.addr).await.is_err());
}

#[test]
fn dedup_forgets_after_ttl_and_beyond_capacity() {
    let mut d = Dedup::new(Duration::from_secs(10), 2);
    let t0 = Instant::now();
    let k = |i: i64| ("e".to_owned(), "s".to_owned(), i);
    assert!(d.first_time(k(1), t0));
    assert!(!d.first_time(k(1), t0 + Duration::from_secs(5)));
    assert!(d.first_time(k(1), t0 + Duration::from_secs(11)), "expired");
    assert!(d.first_time(k(2), t0 + Duration::from_secs(11)));
    assert!(d.first_time(k(3), t0 + Duration::from_secs(11)));
    assert!(d.seen.len() <= 2, "bounded: {}", d.seen.len());
}
