//! The admin listener over real HTTP (hyper's client, 127.0.0.1), with a stand-in backend
//! whose reloads the test finishes: the token, coalescing, the rate limit, the bounds.

use std::sync::atomic::AtomicUsize;

use futures_util::FutureExt as _;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::ALLOW;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::*;

const TOKEN: &str = "0123456789abcdef-admin-token";

/// Reloads wait until the test releases them; counts the calls.
#[derive(Default)]
struct Backend {
    calls: AtomicUsize,
    started: Notify,
    release: Notify,
    not_ready: std::sync::atomic::AtomicBool,
    hub: crate::outputs::tap::TapHub,
}

#[async_trait]
impl AdminBackend for Backend {
    fn metrics(&self) -> Value {
        json!({"frames_in": 7})
    }

    async fn reload(&self) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.started.notify_one();
        self.release.notified().await;
        Outcome::Applied {
            version: 2,
            changed: vec!["x added".into()],
            settings: vec![],
            restart_required: vec![],
            elapsed_ms: 1,
        }
    }

    fn ready(&self) -> Result<(), String> {
        if self.not_ready.load(Ordering::SeqCst) {
            Err("shutting down".into())
        } else {
            Ok(())
        }
    }

    fn tap(&self) -> Option<crate::outputs::tap::TapSubscription> {
        Some(self.hub.subscribe())
    }
}

struct Server {
    addr: SocketAddr,
    backend: Arc<Backend>,
    stats: Arc<ConnStats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(
        bind: &str,
        token: Option<&str>,
        min_interval: Duration,
        limits: Limits,
    ) -> Self {
        let listener = TcpListener::bind(bind).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let backend = Arc::new(Backend::default());
        let stop = CancellationToken::new();
        let stats = Arc::new(ConnStats::default());
        let cfg = AdminConfig {
            token: token.map(str::to_owned),
            token_env: "RTMS_ADMIN_TOKEN".into(),
            reload_min_interval: min_interval,
            limits,
            tls: None,
            stats: stats.clone(),
        };
        let task = tokio::spawn(
            serve(listener, cfg, backend.clone(), stop.clone()).map(|r| {
                r.expect("admin listener ends cleanly");
            }),
        );
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            backend,
            stats,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("listener task");
    }
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request; returns status, headers and body text.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    auth: Option<&str>,
) -> (StatusCode, hyper::HeaderMap, String) {
    try_send(addr, method, path, auth).await.expect("response")
}

async fn try_send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    auth: Option<&str>,
) -> Result<(StatusCode, hyper::HeaderMap, String)> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(a) = auth {
        req = req.header(AUTHORIZATION, a);
    }
    let resp = client().request(req.body(Empty::new())?).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn a_token_is_required_once_set_and_only_the_right_one_passes() {
    let s = Server::start(
        "127.0.0.1:0",
        Some(TOKEN),
        Duration::ZERO,
        Limits::default(),
    )
    .await;
    let (status, headers, _) = send(s.addr, Method::GET, "/admin/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key(WWW_AUTHENTICATE));
    for wrong in [
        bearer("0123456789abcdef-admin-tokeN"),
        bearer(&TOKEN[..TOKEN.len() - 1]),
        bearer(&format!("{TOKEN}x")),
        bearer(""),
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
    ] {
        let (status, _, _) = send(s.addr, Method::GET, "/admin/metrics", Some(&wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
    }
    // Unknown paths are refused before routing: no map of the routes without the token.
    let (status, _, _) = send(s.addr, Method::GET, "/admin/sessions", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(s.addr, Method::POST, "/admin/reload", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.backend.calls.load(Ordering::SeqCst), 0);

    let (status, _, body) = send(
        s.addr,
        Method::GET,
        "/admin/metrics",
        Some(&format!("bearer  {TOKEN} ")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["frames_in"], 7);
    assert_eq!(v["admin"]["unauthorized"], 9);
    // Health answers without a token.
    let (status, _, body) = send(s.addr, Method::GET, "/healthz", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, headers, _) = send(
        s.addr,
        Method::DELETE,
        "/admin/reload",
        Some(&bearer(TOKEN)),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[ALLOW], "GET, POST");
    let (status, headers, _) = send(
        s.addr,
        Method::GET,
        "/admin/sessions/stop",
        Some(&bearer(TOKEN)),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[ALLOW], "POST");
    s.stop().await;
}

#[tokio::test]
async fn without_a_token_loopback_is_open_and_exposure_is_refused() {
    let s = Server::start("127.0.0.1:0", None, Duration::ZERO, Limits::default()).await;
    let (status, _, _) = send(s.addr, Method::GET, "/admin/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;

    let lo: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    let any: SocketAddr = "0.0.0.0:9464".parse().unwrap();
    let v6: SocketAddr = "[::]:9464".parse().unwrap();
    assert!(check_exposure(lo, lo, None, "RTMS_ADMIN_TOKEN").is_ok());
    assert!(check_exposure(lo, "[::1]:1".parse().unwrap(), None, "X").is_ok());
    for (configured, bound) in [(any, any), (lo, any), (any, lo), (lo, v6)] {
        let e = check_exposure(configured, bound, None, "RTMS_ADMIN_TOKEN")
            .unwrap_err()
            .to_string();
        assert!(e.contains("export RTMS_ADMIN_TOKEN="), "{e}");
        assert!(e.contains("admin.listen"), "{e}");
        assert!(check_exposure(configured, bound, Some(""), "T").is_err());
        assert!(check_exposure(configured, bound, Some(TOKEN), "T").is_ok());
    }
}

#[tokio::test]
async fn concurrent_reload_requests_share_one_reload_and_its_outcome() {
    let s = Server::start(
        "127.0.0.1:0",
        Some(TOKEN),
        Duration::from_secs(60),
        Limits::default(),
    )
    .await;
    let auth = bearer(TOKEN);
    let first = tokio::spawn({
        let auth = auth.clone();
        let addr = s.addr;
        async move { send(addr, Method::POST, "/admin/reload", Some(&auth)).await }
    });
    s.backend.started.notified().await;
    let mut joiners = Vec::new();
    for _ in 0..4 {
        let auth = auth.clone();
        let addr = s.addr;
        joiners.push(tokio::spawn(async move {
            send(addr, Method::POST, "/admin/reload", Some(&auth)).await
        }));
    }
    // Every joiner is waiting on the running reload before it is let go.
    loop {
        let (_, _, body) = send(s.addr, Method::GET, "/admin/metrics", Some(&auth)).await;
        let v: Value = serde_json::from_str(&body).expect("JSON");
        if v["admin"]["reloads_joined"] == 4 {
            break;
        }
        tokio::task::yield_now().await;
    }
    s.backend.release.notify_one();
    let (status, _, body) = first.await.expect("task");
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (&v["reload"], &v["joined"], &v["outcome"], &v["changed"][0]),
        (
            &json!(1),
            &json!(false),
            &json!("applied"),
            &json!("x added")
        )
    );
    for j in joiners {
        let (status, _, body) = j.await.expect("task");
        assert_eq!(status, StatusCode::OK, "{body}");
        let w: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!((&w["reload"], &w["joined"]), (&json!(1), &json!(true)));
        assert_eq!(w["changed"], v["changed"]);
    }
    assert_eq!(s.backend.calls.load(Ordering::SeqCst), 1);

    // Right after, the rate limit answers 429 with Retry-After, and nothing reloads.
    let (status, headers, body) = send(s.addr, Method::POST, "/admin/reload", Some(&auth)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    assert!(body.contains("retry after"), "{body}");
    assert_eq!(s.backend.calls.load(Ordering::SeqCst), 1);
    let (_, _, body) = send(s.addr, Method::GET, "/admin/metrics", Some(&auth)).await;
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["admin"]["rate_limited"], 1);
    s.stop().await;
}

/// A backend that answers at once.
struct Instant0(AtomicUsize);

#[async_trait]
impl AdminBackend for Instant0 {
    fn metrics(&self) -> Value {
        json!({})
    }
    async fn reload(&self) -> Outcome {
        self.0.fetch_add(1, Ordering::SeqCst);
        Outcome::Unchanged
    }
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_counts_from_the_end_of_the_last_reload() {
    let gate = ReloadGate::new(Duration::from_secs(1));
    let backend = Arc::new(Instant0(AtomicUsize::new(0)));
    let done = |id| GateAnswer::Done {
        id,
        joined: false,
        outcome: Outcome::Unchanged,
    };
    assert_eq!(gate.request(backend.clone()).await, done(1));
    tokio::time::advance(Duration::from_millis(400)).await;
    assert_eq!(
        gate.request(backend.clone()).await,
        GateAnswer::TooSoon(Duration::from_millis(600))
    );
    tokio::time::advance(Duration::from_millis(600)).await;
    assert_eq!(gate.request(backend.clone()).await, done(2));
    assert_eq!(backend.0.load(Ordering::SeqCst), 2);
    assert_eq!(gate.counts(), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_reload_finishes_even_when_every_requester_hangs_up() {
    let gate = ReloadGate::new(Duration::ZERO);
    let backend = Arc::new(Backend::default());
    let req = tokio::spawn({
        let (gate, backend) = (gate.clone(), backend.clone());
        async move { gate.request(backend).await }
    });
    backend.started.notified().await;
    req.abort();
    let _ = req.await;
    backend.release.notify_one();
    // The next request starts reload 2: reload 1 ended on its own task.
    let next = tokio::spawn({
        let (gate, backend) = (gate.clone(), backend.clone());
        async move { gate.request(backend).await }
    });
    backend.started.notified().await;
    backend.release.notify_one();
    assert!(matches!(
        next.await.unwrap(),
        GateAnswer::Done {
            id: 2,
            joined: false,
            ..
        }
    ));
}

/// Opens `n` connections that send nothing, and waits until the listener holds as many
/// of them as its cap allows (so the probes below meet the steady state).
async fn idle_connections(s: &Server, n: usize, cap: usize) -> Vec<tokio::net::TcpStream> {
    let before = s.stats.accepted.load(Ordering::Relaxed);
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        idle.push(
            tokio::net::TcpStream::connect(s.addr)
                .await
                .expect("connect"),
        );
    }
    while s.stats.accepted.load(Ordering::Relaxed) < before + n as u64 {
        tokio::task::yield_now().await;
    }
    assert!(s.stats.open.load(Ordering::Relaxed) <= cap as u64);
    idle
}

/// `/healthz`, `/readyz` and an authorised `/metrics`, each answered within `bound`.
async fn probes_answer(addr: SocketAddr, bound: Duration) {
    let auth = bearer(TOKEN);
    for (path, auth) in [
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", Some(auth.as_str())),
    ] {
        let started = std::time::Instant::now();
        let (status, _, _) = tokio::time::timeout(bound, send(addr, Method::GET, path, auth))
            .await
            .unwrap_or_else(|_| panic!("{path} answered within {bound:?}"));
        assert_eq!(status, StatusCode::OK, "{path}");
        eprintln!("{path}: {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn idle_connections_past_the_cap_never_lock_the_probes_out() {
    let s = Server::start(
        "127.0.0.1:0",
        Some(TOKEN),
        Duration::ZERO,
        Limits::default(),
    )
    .await;
    let cap = Limits::default().max_connections;
    // The attack that locked the operator out: as many idle connections as the cap.
    let idle = idle_connections(&s, cap, cap).await;
    probes_answer(s.addr, Duration::from_secs(2)).await;
    // ... and reopened: still answered.
    drop(idle);
    let idle = idle_connections(&s, cap, cap).await;
    probes_answer(s.addr, Duration::from_secs(2)).await;
    let evicted = s.stats.closed(Close::Evicted) + s.stats.closed(Close::PerPeer);
    assert!(
        evicted >= 3,
        "the probes' connections pushed idle ones out: {evicted}"
    );
    drop(idle);
    s.stop().await;
}

#[tokio::test]
async fn a_thousand_idle_connections_never_lock_the_probes_out() {
    let s = Server::start(
        "127.0.0.1:0",
        Some(TOKEN),
        Duration::ZERO,
        Limits::default(),
    )
    .await;
    let cap = Limits::default().max_connections;
    let idle = idle_connections(&s, 1_000, cap).await;
    probes_answer(s.addr, Duration::from_secs(2)).await;
    // Every connection past the cap pushed an older idle one out, and each is counted.
    let evicted = s.stats.closed(Close::Evicted) + s.stats.closed(Close::PerPeer);
    assert!(evicted >= 1_000 - cap as u64, "evicted {evicted}");
    let (_, _, text) = send(s.addr, Method::GET, "/admin/metrics", Some(&bearer(TOKEN))).await;
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert!(v["admin"]["connections_closed"]["per_peer_limit"].as_u64() >= Some(900));
    assert!(v["admin"]["connections_open"].as_u64() <= Some(cap as u64));
    drop(idle);
    s.stop().await;
}

#[tokio::test]
async fn a_busy_connection_outlives_idle_ones_past_the_cap() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let s = Server::start("127.0.0.1:0", None, Duration::ZERO, limits).await;
    // A tap: busy for as long as its response streams.
    let tap = client()
        .request(
            Request::get(format!("http://{}/admin/tap?what=frames", s.addr))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .expect("tap answers");
    assert_eq!(tap.status(), StatusCode::OK);
    let idle = idle_connections(&s, 1, 2).await;
    // Two more connections: each pushes out the oldest idle one, never the tap.
    for _ in 0..2 {
        let (status, _, _) = send(s.addr, Method::GET, "/healthz", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(s.stats.closed(Close::Evicted) >= 1);
    let mut body = tap.into_body();
    s.backend.hub.frame(
        1,
        &Arc::<str>::from("s"),
        "m",
        &crate::sandbox::bindings::Frame {
            kind: crate::sandbox::bindings::MediaKind::Chat,
            seq: 1,
            timestamp_ms: 0,
            user_id: "1".into(),
            user_name: "A".into(),
            payload: Vec::new(),
            text: Some("still here".into()),
            transcript: None,
            event_type: None,
        },
    );
    let line = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the tap still streams")
        .expect("a frame")
        .expect("no error");
    assert!(line.is_data());
    drop(idle);
    s.stop().await;
}

#[tokio::test]
async fn a_slow_head_is_cut_off() {
    let limits = Limits {
        header_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let s = Server::start("127.0.0.1:0", None, Duration::ZERO, limits).await;
    // The attack itself: a request head that never ends.
    let mut raw = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    raw.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection")
        .unwrap_or(0);
    assert!(started.elapsed() >= Duration::from_millis(150));
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    while s.stats.closed(Close::HeaderTimeout) == 0 {
        tokio::task::yield_now().await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_large_or_slow_body_is_refused() {
    let limits = Limits {
        body_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let s = Server::start("127.0.0.1:0", None, Duration::ZERO, limits).await;
    let big = Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>()
        .request(
            Request::post(format!("http://{}/admin/reload", s.addr))
                .body(Full::new(Bytes::from(vec![b'x'; 64 * 1024])))
                .unwrap(),
        )
        .await
        .expect("response");
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A body that starts and never ends.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tx.send(Ok(Frame::data(Bytes::from_static(b"{"))))
        .await
        .unwrap();
    let rx = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|f| (f, rx))
    }));
    let slow = Client::builder(TokioExecutor::new())
        .build_http::<StreamBody<_>>()
        .request(
            Request::post(format!("http://{}/admin/reload", s.addr))
                .body(StreamBody::new(rx))
                .unwrap(),
        )
        .await
        .expect("response");
    assert_eq!(slow.status(), StatusCode::REQUEST_TIMEOUT);
    drop(tx);
    assert_eq!(s.backend.calls.load(Ordering::SeqCst), 0);
    s.stop().await;
}

#[tokio::test]
async fn readyz_needs_no_token_and_says_why_it_is_not_ready() {
    let s = Server::start(
        "127.0.0.1:0",
        Some(TOKEN),
        Duration::ZERO,
        Limits::default(),
    )
    .await;
    let (status, _, body) = send(s.addr, Method::GET, "/readyz", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    s.backend.not_ready.store(true, Ordering::SeqCst);
    let (status, _, body) = send(s.addr, Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "not ready: shutting down\n");
    s.stop().await;
}

#[tokio::test]
async fn a_tap_streams_json_lines_and_never_holds_up_the_listeners_stop() {
    let s = Server::start("127.0.0.1:0", None, Duration::ZERO, Limits::default()).await;
    let req = Request::get(format!("http://{}/admin/tap?what=frames", s.addr))
        .body(Empty::new())
        .unwrap();
    let resp = client().request(req).await.expect("tap answers");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/x-ndjson");
    let frame = crate::sandbox::bindings::Frame {
        kind: crate::sandbox::bindings::MediaKind::Chat,
        seq: 3,
        timestamp_ms: 0,
        user_id: "7".into(),
        user_name: "Ann".into(),
        payload: Vec::new(),
        text: Some("hi".into()),
        transcript: None,
        event_type: None,
    };
    let id: Arc<str> = "stream-1".into();
    s.backend.hub.frame(1, &id, "meeting-1", &frame);
    let mut body = resp.into_body();
    let chunk = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("a line within 10 s")
        .expect("a frame")
        .expect("no error")
        .into_data()
        .expect("data");
    let line: Value = serde_json::from_slice(&chunk).expect("a JSON line");
    assert_eq!(line["type"], "frame");
    assert_eq!(line["kind"], "chat");
    assert_eq!(line["text"], "hi");
    assert_eq!(line["stream_id"], "stream-1");
    // The listener stops although the tap's response never ends by itself, and the
    // subscription goes with it.
    let backend = s.backend.clone();
    tokio::time::timeout(Duration::from_secs(10), s.stop())
        .await
        .expect("the listener stopped with a tap attached");
    assert!(!backend.hub.active());
}

/// A self-signed `localhost` certificate written to `dir`: (certificate PEM, files).
fn certificate(dir: &std::path::Path) -> (String, TlsFiles) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let files = TlsFiles {
        cert: dir.join("admin-cert.pem"),
        key: dir.join("admin-key.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    (cert.pem(), files)
}

/// `GET /metrics` with the token over TLS, trusting `ca`; the raw answer.
async fn tls_metrics(addr: SocketAddr, ca: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let req = format!(
        "GET /metrics HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn with_tls_the_token_travels_encrypted_and_plain_http_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, files) = certificate(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ConnStats::default());
    let cfg = AdminConfig {
        token: Some(TOKEN.into()),
        token_env: "RTMS_ADMIN_TOKEN".into(),
        reload_min_interval: Duration::ZERO,
        limits: Limits::default(),
        tls: Some(files),
        stats: stats.clone(),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        cfg,
        Arc::new(Backend::default()),
        stop.clone(),
    ));
    let answer = tls_metrics(addr, &ca).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Plain HTTP on the TLS port: no answer, and the failed handshake is counted.
    let plain = try_send(addr, Method::GET, "/healthz", None).await;
    assert!(plain.is_err(), "{plain:?}");
    while stats.closed(Close::Tls) == 0 {
        tokio::task::yield_now().await;
    }
    stop.cancel();
    task.await.unwrap().expect("stops cleanly");
}

#[tokio::test]
async fn tls_files_that_do_not_load_are_named_by_their_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (_, files) = certificate(dir.path());
    std::fs::write(&files.key, "not a key").unwrap();
    let cfg = AdminConfig {
        token: None,
        token_env: "RTMS_ADMIN_TOKEN".into(),
        reload_min_interval: Duration::ZERO,
        limits: Limits::default(),
        tls: Some(files),
        stats: Arc::default(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = serve(
        listener,
        cfg,
        Arc::new(Backend::default()),
        CancellationToken::new(),
    )
    .await
    .expect_err("refused");
    assert!(e.to_string().contains("(admin.tls.key)"), "{e}");
}
