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
    /// Refuse the next events with this.
    refuse: Mutex<Option<Refusal>>,
}

impl IngressHandler for Recorder {
    fn on_event(&self, ev: WebhookEvent) -> EventFuture<'_> {
        let r = match self.refuse.lock().unwrap().clone() {
            Some(r) => Err(r),
            None => {
                self.events.lock().unwrap().push(ev);
                Ok(())
            }
        };
        Box::pin(std::future::ready(r))
    }
}

struct Server {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    stats: Arc<IngressStats>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(cfg: IngressConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let stats = cfg.stats.clone();
    let task = tokio::spawn(serve(listener, cfg, recorder.clone(), shutdown.clone()));
    Server {
        addr,
        recorder,
        stats,
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
        details: Default::default(),
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
async fn url_validation_is_answered_only_when_signed() {
    let s = start(cfg()).await;
    let body =
        br#"{"event":"endpoint.url_validation","event_ts":1,"payload":{"plainToken":"abc123"}}"#
            .to_vec();
    let expected = serde_json::json!({"plainToken":"abc123","encryptedToken":url_validation_token(SECRET, "abc123")});
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
    let (status, text) = post(s.addr, "/webhook", body.clone(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!text.contains(&url_validation_token(SECRET, "abc123")));
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
async fn the_url_validation_answer_cannot_be_turned_into_a_webhook_signature() {
    // The attack: ask the host to "validate" plainToken = "v0:<ts>:<forged body>"; its
    // answer would be the x-zm-signature of the forged body.
    let s = start(cfg()).await;
    let ts = unix_now().to_string();
    let forged = started_body(7);
    let plain = format!("v0:{ts}:{}", String::from_utf8(forged.clone()).unwrap());
    let challenge = serde_json::to_vec(&serde_json::json!({
        "event": "endpoint.url_validation", "event_ts": 1, "payload": {"plainToken": plain}
    }))
    .unwrap();
    let (status, text) = post(s.addr, "/webhook", challenge.clone(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    let stolen = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["encryptedToken"].as_str().map(str::to_owned));
    assert_eq!(stolen, None);
    // Even signed by Zoom, a token shaped like a signature's input is not answered.
    let (status, _) = post(
        s.addr,
        "/webhook",
        challenge.clone(),
        &signed(&challenge, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The signature the oracle would have produced is refused.
    let sig = format!("v0={}", url_validation_token(SECRET, &plain));
    assert_eq!(
        sig,
        webhook_signature(SECRET, &ts, &forged),
        "the attack's premise"
    );
    let (status, _) = post(
        s.addr,
        "/webhook",
        forged,
        &[
            ("x-zm-signature", "v0=00".into()),
            ("x-zm-request-timestamp", ts),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(s.recorder.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn health_and_unknown_paths_are_answered_without_reading_bodies() {
    let s = start(cfg()).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client
        .get(format!("http://{}/healthz", s.addr).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, _) = post(s.addr, "/admin/reload", b"xy".to_vec(), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = client
        .get(format!("http://{}/webhook", s.addr).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    // A body that never comes: the 404 is sent at once all the same.
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    sock.write_all(b"POST /nope HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\nab")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf))
        .await
        .expect("404 without waiting for the body")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 404"), "{:?}", &buf[..n]);
}

#[tokio::test]
async fn a_body_slower_than_the_body_timeout_gets_408() {
    let s = start(IngressConfig {
        body_timeout: Duration::from_millis(300),
        ..cfg()
    })
    .await;
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    sock.write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.read(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 408"), "{:?}", &buf[..n]);
    assert_eq!(s.stats.body_timeouts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn past_max_connections_the_oldest_connection_is_closed() {
    let s = start(IngressConfig {
        max_connections: 4,
        ..cfg()
    })
    .await;
    use tokio::io::AsyncReadExt;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(s.addr).await.unwrap());
    }
    // The fifth connection gets through; the first is closed to make room.
    let body = started_body(1);
    let (status, _) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(2), idle[0].read(&mut buf))
        .await
        .expect("the oldest connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(s.stats.listener.closed(crate::listener::Close::Evicted) >= 1);
}

#[tokio::test]
async fn refusals_get_503_with_retry_after_or_422_and_the_retry_is_not_a_duplicate() {
    let s = start(cfg()).await;
    *s.recorder.refuse.lock().unwrap() = Some(Refusal::Busy {
        retry_after: Duration::from_secs(30),
        reason: "full".into(),
    });
    let body = started_body(5);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::post(format!("http://{}/webhook", s.addr));
    for (k, v) in signed(&body, unix_now(), SECRET) {
        req = req.header(k, v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body.clone()))).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[RETRY_AFTER], "30");
    *s.recorder.refuse.lock().unwrap() = Some(Refusal::Unacceptable("bad url".into()));
    let (status, text) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text.contains("bad url"));
    // Zoom's retry of the same event, now that there is room, is delivered.
    *s.recorder.refuse.lock().unwrap() = None;
    let (status, _) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.recorder.events.lock().unwrap().len(), 1);
    assert_eq!(s.stats.refused_busy.load(Ordering::Relaxed), 1);
    assert_eq!(s.stats.refused_unacceptable.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_event_for_an_unknown_stream_is_answered_but_not_counted_as_delivered() {
    let s = start(cfg()).await;
    *s.recorder.refuse.lock().unwrap() = Some(Refusal::UnknownStream("no such stream".into()));
    let body = started_body(6);
    let (status, _) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "Zoom is not asked to retry");
    assert_eq!(s.stats.unknown_stream.load(Ordering::Relaxed), 1);
    assert_eq!(s.stats.delivered.load(Ordering::Relaxed), 0, "not accepted");
    // Zoom's retry stays answered: it is a duplicate, not a second unknown event.
    *s.recorder.refuse.lock().unwrap() = None;
    let (status, _) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(s.recorder.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn overlong_ids_get_400_naming_the_field() {
    let s = start(cfg()).await;
    let body = serde_json::to_vec(&serde_json::json!({"event": "meeting.rtms_started", "event_ts": 1,
        "payload": {"meeting_uuid": "m", "rtms_stream_id": "s".repeat(300), "server_urls": "wss://a.zoom.us/s"}}))
    .unwrap();
    let (status, text) = post(
        s.addr,
        "/webhook",
        body.clone(),
        &signed(&body, unix_now(), SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("rtms_stream_id") && text.contains("256"),
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let s = start(cfg()).await;
    s.shutdown.cancel();
    s.task.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(s.addr).await.is_err());
}

#[tokio::test]
async fn slow_and_oversized_heads_are_cut_and_counted_by_reason() {
    use crate::listener::Close;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start(IngressConfig {
        header_timeout: Duration::from_millis(300),
        ..cfg()
    })
    .await;
    // A head that never ends: cut at the deadline, counted as a header timeout.
    let mut slow = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\nx-slow: a")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf))
        .await
        .expect("closed at the header deadline")
        .ok();
    // One 100 KiB header: 431, counted as too large.
    let mut big = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut raw = b"POST /webhook HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 100 * 1024));
    raw.extend(b"\r\n\r\n");
    let _ = big.write_all(&raw).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), big.read_to_end(&mut answer)).await;
    assert!(answer.starts_with(b"HTTP/1.1 431"), "{answer:?}");
    let conns = &s.stats.listener;
    tokio::time::timeout(Duration::from_secs(10), async {
        while conns.closed(Close::HeaderTimeout) < 1 || conns.closed(Close::HeaderTooLarge) < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("both closes counted");
    assert_eq!(conns.accepted.load(Ordering::Relaxed), 2);
}
