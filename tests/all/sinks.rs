//! Output sinks: what plugins emit reaches an HTTP endpoint and a JSON Lines file, filtered
//! by severity, plugin and kind.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rtms_host::outputs::stats::DropReason;
use rtms_host::outputs::{
    Delivery, OutputBounds, OutputRecord, Sink, SinkFilter, SinkTarget, start_sinks,
    start_sinks_with,
};
use rtms_host::sandbox::bindings::{Output, Severity};
use tokio::sync::mpsc;

fn record(plugin: &str, kind: &str, severity: Severity, message: &str) -> OutputRecord {
    OutputRecord::new(
        plugin.into(),
        7,
        "stream-1".into(),
        "meeting-1".into(),
        Output {
            kind: kind.into(),
            severity,
            message: message.into(),
            data: Some(r#"{"n":1}"#.into()),
        },
    )
}

/// A one-route HTTP server on 127.0.0.1:0 that hands every POSTed body to the test.
async fn receiver() -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        assert_eq!(req.uri().path(), "/alerts");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        tx.send(serde_json::from_slice(&body).unwrap()).unwrap();
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn outputs_reach_http_and_jsonl_sinks_through_their_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut posted) = receiver().await;
    let file = dir.path().join("sub/alerts.jsonl");
    let (outputs, sinks) = start_sinks(vec![
        Sink {
            target: SinkTarget::Http { url },
            filter: SinkFilter {
                min_severity: rtms_config::Severity::Warning,
                ..SinkFilter::default()
            },
            ..Sink::all(SinkTarget::Stdout)
        },
        Sink {
            target: SinkTarget::Jsonl { path: file.clone() },
            filter: SinkFilter {
                plugins: Some(vec![rtms_config::PluginName::try_new("alerter").unwrap()]),
                kinds: Some(vec!["keyword".into()]),
                ..SinkFilter::default()
            },
            ..Sink::all(SinkTarget::Stdout)
        },
    ])
    .await
    .unwrap();
    outputs.send(record("alerter", "keyword", Severity::Warning, "one"));
    outputs.send(record("alerter", "summary", Severity::Info, "two"));
    outputs.send(record("writer", "keyword", Severity::Critical, "three"));
    let stats = Arc::clone(outputs.stats());
    drop(outputs);
    sinks.finish().await;

    let mut got = Vec::new();
    while let Ok(v) = posted.try_recv() {
        got.push(v["message"].as_str().unwrap().to_owned());
    }
    got.sort();
    assert_eq!(got, ["one", "three"], "HTTP takes warning and above");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "jsonl takes only the alerter's keyword outputs"
    );
    assert_eq!(lines[0]["message"], "one");
    assert_eq!(lines[0]["data"]["n"], 1);
    assert_eq!(lines[0]["stream_id"], "stream-1");
    assert_eq!(
        stats
            .sink_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn an_unreachable_http_sink_counts_its_failures() {
    // Bind and drop: nothing listens on this port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (outputs, sinks) = start_sinks(vec![Sink::all(SinkTarget::Http {
        url: format!("http://127.0.0.1:{port}/x"),
    })])
    .await
    .unwrap();
    outputs.send(record("p", "k", Severity::Info, "lost?"));
    let stats = Arc::clone(outputs.stats());
    drop(outputs);
    sinks.finish().await;
    assert_eq!(
        stats
            .sink_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn invalid_json_data_is_kept_not_lost() {
    let r = OutputRecord::new(
        "p".into(),
        1,
        "s".into(),
        "m".into(),
        Output {
            kind: "k".into(),
            severity: Severity::Info,
            message: "x".into(),
            data: Some("{not json".into()),
        },
    );
    let data: serde_json::Value = serde_json::from_str(r.data.unwrap().get()).unwrap();
    assert_eq!(data["invalid_json"], "{not json");
}

#[test]
fn oversized_outputs_are_cut_and_marked() {
    let r = OutputRecord::new(
        "p".into(),
        1,
        "s".into(),
        "m".into(),
        Output {
            kind: "k".repeat(500),
            severity: Severity::Info,
            message: "é".repeat(20_000),
            data: Some(format!("\"{}\"", "x".repeat(300_000))),
        },
    );
    assert!(r.truncated);
    assert_eq!(r.kind.len(), 64);
    assert!(r.message.len() <= 16 * 1024 && r.message.chars().all(|c| c == 'é'));
    let data: serde_json::Value = serde_json::from_str(r.data.unwrap().get()).unwrap();
    assert_eq!(data["oversized_data_bytes"], 300_002);
}

/// A server on 127.0.0.1:0 that accepts connections and never answers; reports each one.
async fn black_hole() -> (String, mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            let _ = tx.send(());
        }
    });
    (url, rx)
}

fn http_sink(url: String, queue_bytes: u64, delivery: Delivery) -> Sink {
    Sink {
        queue_bytes,
        delivery,
        ..Sink::all(SinkTarget::Http { url })
    }
}

fn big_record(n: usize) -> OutputRecord {
    let mut r = record("p", "k", Severity::Info, &format!("output {n}"));
    r.data = Some(serde_json::value::to_raw_value(&"x".repeat(4000)).unwrap());
    r
}

#[tokio::test]
async fn a_hung_http_sink_holds_no_more_than_its_queue_bytes_and_the_file_sink_gets_everything() {
    const N: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let (url, _conns) = black_hole().await;
    let file = dir.path().join("all.jsonl");
    let delivery = Delivery {
        request_timeout: Duration::from_millis(100),
        retries: 0,
        ..Delivery::default()
    };
    let bounds = OutputBounds {
        queue_bytes: 16 << 20,
        tap_bytes: 1 << 20,
    };
    let (outputs, sinks) = start_sinks_with(
        vec![
            http_sink(url, 64 * 1024, delivery),
            Sink::all(SinkTarget::Jsonl { path: file.clone() }),
        ],
        bounds,
        &rtms_client::ClientSettings::direct(),
    )
    .await
    .unwrap();
    // Full rate: nothing yields between emits, as in a guest call.
    for n in 0..N {
        outputs.send(big_record(n));
    }
    let stats = Arc::clone(outputs.stats());
    drop(outputs);
    sinks.finish().await;

    let (http, jsonl) = (&stats.sinks[0], &stats.sinks[1]);
    assert_eq!(http.label, "http-0");
    assert!(
        http.budget.peak() <= 64 * 1024,
        "the hung sink held {} bytes",
        http.budget.peak()
    );
    assert!(stats.queue.peak() <= 16 << 20);
    assert_eq!(http.budget.held(), 0, "every byte is given back");
    assert_eq!(http.delivered.load(Relaxed), 0);
    let (full, failed) = (
        http.drops.get(DropReason::QueueBytes),
        http.drops.get(DropReason::Failed),
    );
    assert!(full > (N as u64) * 9 / 10, "{full} dropped for its queue");
    assert_eq!(full + failed, N as u64, "every output is counted");
    assert_eq!(stats.sink_failures.load(Relaxed), N as u64);
    assert_eq!(
        stats.dropped.load(Relaxed),
        0,
        "the emit queue never dropped"
    );
    assert_eq!(jsonl.delivered.load(Relaxed), N as u64);
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.lines().count(), N, "the file sink got every output");
}

#[tokio::test]
async fn the_emit_queue_is_bounded_in_bytes() {
    let bounds = OutputBounds {
        queue_bytes: 100 * 1024,
        tap_bytes: 1 << 20,
    };
    let (outputs, sinks) = start_sinks_with(vec![], bounds, &rtms_client::ClientSettings::direct())
        .await
        .unwrap();
    // Nothing yields, so the dispatcher cannot take any: the queue fills in bytes.
    for n in 0..100 {
        outputs.send(big_record(n));
    }
    let stats = Arc::clone(outputs.stats());
    assert!(stats.queue.held() <= 100 * 1024);
    let dropped = stats.emit_drops.get(DropReason::QueueBytes);
    assert!((70..100).contains(&dropped), "{dropped}");
    assert_eq!(stats.dropped.load(Relaxed), dropped);
    drop(outputs);
    sinks.finish().await;
    assert_eq!(stats.queue.held(), 0);
}

/// A server that answers 503 to its first `failures` requests, then 200.
async fn flaky(failures: usize) -> (String, mpsc::UnboundedReceiver<u16>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, seen) = (tx.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let n = seen.fetch_add(1, Relaxed);
                    let status = if n < failures { 503 } else { 200 };
                    tx.send(status).unwrap();
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn the_http_sink_retries_with_backoff_until_the_endpoint_recovers() {
    let (url, mut seen) = flaky(2).await;
    let delivery = Delivery {
        retries: 3,
        retry_backoff: Duration::from_millis(50),
        ..Delivery::default()
    };
    let (outputs, sinks) = start_sinks(vec![http_sink(url, 1 << 20, delivery)])
        .await
        .unwrap();
    let started = Instant::now();
    outputs.send(record("p", "k", Severity::Info, "eventually"));
    let stats = Arc::clone(outputs.stats());
    drop(outputs);
    sinks.finish().await;
    let s = &stats.sinks[0];
    assert_eq!(s.delivered.load(Relaxed), 1);
    assert_eq!(s.retries.load(Relaxed), 2);
    assert_eq!(stats.sink_failures.load(Relaxed), 0);
    let mut statuses = Vec::new();
    while let Ok(st) = seen.try_recv() {
        statuses.push(st);
    }
    assert_eq!(statuses, [503, 503, 200]);
    // Two backoffs: 50 ms, then 100 ms.
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn the_http_sink_gives_up_on_a_hung_endpoint_after_its_timeouts() {
    let (url, mut conns) = black_hole().await;
    let delivery = Delivery {
        request_timeout: Duration::from_millis(200),
        retries: 1,
        retry_backoff: Duration::from_millis(10),
        ..Delivery::default()
    };
    let (outputs, sinks) = start_sinks(vec![http_sink(url, 1 << 20, delivery)])
        .await
        .unwrap();
    let started = Instant::now();
    outputs.send(record("p", "k", Severity::Info, "never answered"));
    let stats = Arc::clone(outputs.stats());
    drop(outputs);
    sinks.finish().await;
    let elapsed = started.elapsed();
    let s = &stats.sinks[0];
    assert_eq!(s.drops.get(DropReason::Failed), 1);
    assert_eq!(s.retries.load(Relaxed), 1);
    assert_eq!(s.delivered.load(Relaxed), 0);
    let mut n = 0;
    while conns.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(n, 2, "one connection per attempt");
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn the_jsonl_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let fresh = dir.path().join("fresh.jsonl");
    let old = dir.path().join("old.jsonl");
    std::fs::write(&old, "").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (outputs, sinks) = start_sinks(vec![
        Sink::all(SinkTarget::Jsonl {
            path: fresh.clone(),
        }),
        Sink::all(SinkTarget::Jsonl { path: old.clone() }),
    ])
    .await
    .unwrap();
    outputs.send(record("p", "k", Severity::Info, "private"));
    drop(outputs);
    sinks.finish().await;
    assert_eq!(mode(&fresh), 0o600, "created private");
    assert_eq!(mode(&old), 0o600, "narrowed");
    assert!(std::fs::read_to_string(&fresh).unwrap().contains("private"));
}
