//! Plugins' outgoing HTTP: the `http_call` fixture makes real requests through
//! `wasi:http/outgoing-handler` against servers on 127.0.0.1, behind `[plugin.net]`.
//!
//! Refusals happen before any connection: a test that names a public host never sends a
//! packet anywhere.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rtms_config::Net;
use rtms_host::sandbox::net::{ClientSettings, NetEvent, NetGate, Reason};
use rtms_host::sandbox::store::{InstanceCtx, Rates};
use rtms_host::sandbox::{Instance, InstanceSpec, Runtime, RuntimeConfig};
use tokio::net::TcpListener;

use crate::util::{Recorder, component, runtime};

impl Recorder {
    /// The guest's verdict per URL, in order: `ok 200 5`, `err HttpRequestDenied`, ...
    fn verdicts(&self) -> Vec<String> {
        self.outputs
            .lock()
            .iter()
            .map(|o| o.message.clone())
            .collect()
    }

    fn bytes_in(&self) -> u64 {
        let e = self.events.lock();
        e.iter()
            .map(|e| match e {
                NetEvent::BytesIn(n) => *n,
                _ => 0,
            })
            .sum()
    }
}

/// Runs one `on-frames` round of the fixture requesting `urls` under `net`.
async fn call(
    net: Option<Net>,
    urls: &[String],
    parallel: bool,
    ca: Option<&std::path::Path>,
) -> Arc<Recorder> {
    call_on(&runtime(), net, urls, parallel, ca).await
}

/// [`call`] on the runtime `rt`.
async fn call_on(
    rt: &Runtime,
    net: Option<Net>,
    urls: &[String],
    parallel: bool,
    ca: Option<&std::path::Path>,
) -> Arc<Recorder> {
    let code = rt
        .load(&component("http_call"))
        .await
        .expect("http_call component");
    let gate = net.map(|n| {
        let settings = ClientSettings {
            extra_ca_file: ca.map(std::path::Path::to_path_buf),
            proxy: rtms_client::ProxySetting::None,
        };
        Arc::new(NetGate::new("caller".into(), n, settings).expect("gate"))
    });
    let config = vec![
        ("urls".to_owned(), serde_json::to_string(urls).unwrap()),
        ("parallel".to_owned(), parallel.to_string()),
    ];
    let spec = InstanceSpec {
        memory_bytes: 64 << 20,
        call_timeout: Duration::from_secs(30),
        grants: vec![],
        config: config.clone(),
        net: gate,
        caps: Default::default(),
        resources: Default::default(),
    };
    let rec = Arc::new(Recorder::default());
    let ctx = Arc::new(InstanceCtx::new(
        "caller".into(),
        1,
        "stream".into(),
        "meeting".into(),
        Rates::default(),
        rec.clone(),
    ));
    let mut inst = Instance::new(rt, code, &spec, ctx).await.expect("instance");
    inst.init(&config).await.expect("init");
    inst.frames(1, &[])
        .await
        .expect("a refused request is an error code, never a trap");
    rec
}

/// What the test server does for a path.
async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    match req.uri().path() {
        "/hang" => std::future::pending().await,
        "/big" => Ok(Response::new(Full::new(Bytes::from(vec![b'x'; 2 << 20])))),
        _ => Ok(Response::new(Full::new(Bytes::from_static(b"hello")))),
    }
}

/// An HTTP (or, with `tls`, HTTPS) server on 127.0.0.1.
async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(answer);
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(t) => {
                        if let Ok(s) = t.accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_plugin_without_a_net_table_is_denied_every_request() {
    let addr = serve(None).await;
    let rec = call(None, &[format!("http://{addr}/")], false, None).await;
    assert_eq!(rec.verdicts(), ["err HttpRequestDenied"]);
    assert_eq!(rec.stopped(Reason::NoGrant), 1);
}

#[tokio::test]
async fn unlisted_urls_ip_literals_and_names_resolving_to_loopback_are_refused() {
    let addr = serve(None).await;
    let port = addr.port();
    let urls = [
        // Not listed at all (never contacted: refused before any lookup).
        "https://other.example.org/".to_owned(),
        // The listed host on another path prefix.
        "https://api.example.com/v10".to_owned(),
        // An IP literal no pattern names.
        format!("http://127.0.0.1:{port}/"),
        // A name that resolves to 127.0.0.1, listed by name only.
        format!("http://localhost:{port}/"),
    ];
    let policy = crate::util::net_grant(&[
        "https://api.example.com/v1",
        &format!("http://localhost:{port}"),
    ]);
    let rec = call(Some(policy), &urls, false, None).await;
    assert_eq!(
        rec.verdicts(),
        [
            "err HttpRequestDenied",
            "err HttpRequestDenied",
            "err HttpRequestDenied",
            "err DestinationIpProhibited",
        ]
    );
    assert_eq!(rec.stopped(Reason::NotListed), 2);
    assert_eq!(rec.stopped(Reason::IpLiteral), 1);
    assert_eq!(rec.stopped(Reason::PrivateAddress), 1);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_reached_when_the_operator_allows_private_addresses() {
    let addr = serve(None).await;
    let mut policy = crate::util::net_grant(&[&format!("http://localhost:{}", addr.port())]);
    policy.allow_private = true;
    let rec = call(
        Some(policy),
        &[format!("http://localhost:{}/", addr.port())],
        false,
        None,
    )
    .await;
    assert_eq!(rec.verdicts(), ["ok 200 5"]);
}

#[tokio::test]
async fn a_connection_past_the_process_descriptor_budget_is_an_error_code_until_a_slot_frees() {
    let addr = serve(None).await;
    let rt = Runtime::new(&RuntimeConfig {
        cache_dir: Some(crate::util::cache_dir()),
        plugin_open_files: Some(2),
        ..Default::default()
    })
    .expect("runtime");
    let held: Vec<_> = (0..2)
        .map(|_| rt.descriptors().take().expect("slot"))
        .collect();
    assert!(rt.descriptors().take().is_none());
    let policy = crate::util::net_grant(&[&format!("http://{addr}")]);
    let url = [format!("http://{addr}/hello")];
    let rec = call_on(&rt, Some(policy.clone()), &url, false, None).await;
    assert_eq!(rec.verdicts(), ["err ConnectionLimitReached"]);
    assert_eq!(rec.stopped(Reason::Descriptors), 1);
    drop(held);
    let rec = call_on(&rt, Some(policy), &url, false, None).await;
    assert_eq!(rec.verdicts(), ["ok 200 5"]);
    assert_eq!(rec.stopped(Reason::Descriptors), 0);
    assert_eq!(rt.descriptors().peak(), 2);
    assert_eq!(
        rt.descriptors().in_use(),
        0,
        "the connection's slot went back"
    );
}

#[tokio::test]
async fn an_allowed_http_call_to_a_listed_address_works_and_counts_its_bytes() {
    let addr = serve(None).await;
    let policy = crate::util::net_grant(&[&format!("http://{addr}")]);
    let rec = call(Some(policy), &[format!("http://{addr}/hello")], false, None).await;
    assert_eq!(rec.verdicts(), ["ok 200 5"]);
    assert_eq!(rec.bytes_in(), 5);
    assert!(rec.events.lock().contains(&NetEvent::Started));
}

#[tokio::test]
async fn https_works_with_the_configured_extra_ca_and_fails_without_it() {
    let tls = rtms_sim::tls::SimTls::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let addr = serve(Some(tls.acceptor.clone())).await;
    let url = format!("https://{addr}/");
    let policy = crate::util::net_grant(&[&format!("https://{addr}")]);
    let rec = call(
        Some(policy.clone()),
        std::slice::from_ref(&url),
        false,
        Some(&ca),
    )
    .await;
    assert_eq!(rec.verdicts(), ["ok 200 5"]);
    let rec = call(Some(policy), &[url], false, None).await;
    assert_eq!(rec.verdicts(), ["err TlsCertificateError"]);
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_first_byte_timeout() {
    let addr = serve(None).await;
    let mut policy = crate::util::net_grant(&[&format!("http://{addr}")]);
    policy.first_byte_timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let rec = call(Some(policy), &[format!("http://{addr}/hang")], false, None).await;
    assert_eq!(rec.verdicts(), ["err ConnectionTimeout"]);
    assert_eq!(rec.stopped(Reason::Timeout), 1);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_response_past_the_size_cap_fails_the_read() {
    let addr = serve(None).await;
    let mut policy = crate::util::net_grant(&[&format!("http://{addr}")]);
    policy.max_response_bytes = 64 * 1024;
    let rec = call(Some(policy), &[format!("http://{addr}/big")], false, None).await;
    assert_eq!(rec.verdicts(), ["err HttpResponseBodySize(Some(65536))"]);
    assert_eq!(rec.stopped(Reason::TooLarge), 1);
}

#[tokio::test]
async fn the_concurrency_limit_refuses_requests_past_it() {
    let addr = serve(None).await;
    let mut policy = crate::util::net_grant(&[&format!("http://{addr}")]);
    policy.max_concurrent = 2;
    let urls: Vec<String> = (0..4).map(|i| format!("http://{addr}/{i}")).collect();
    let rec = call(Some(policy), &urls, true, None).await;
    let v = rec.verdicts();
    assert_eq!(v.iter().filter(|m| *m == "ok 200 5").count(), 2, "{v:?}");
    assert_eq!(
        v.iter()
            .filter(|m| *m == "err ConnectionLimitReached")
            .count(),
        2,
        "{v:?}"
    );
    assert_eq!(rec.stopped(Reason::Concurrency), 2);
}

#[tokio::test]
async fn the_requests_per_minute_budget_stops_the_plugin_at_its_number() {
    let addr = serve(None).await;
    let mut policy = crate::util::net_grant(&[&format!("http://{addr}")]);
    policy.requests_per_minute = 3;
    let urls: Vec<String> = (0..5).map(|i| format!("http://{addr}/{i}")).collect();
    let rec = call(Some(policy), &urls, false, None).await;
    assert_eq!(
        rec.verdicts(),
        [
            "ok 200 5",
            "ok 200 5",
            "ok 200 5",
            "err ConnectionLimitReached",
            "err ConnectionLimitReached"
        ]
    );
    assert_eq!(rec.stopped(Reason::Rate), 2);
}
