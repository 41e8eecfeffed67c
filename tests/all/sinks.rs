//! Output sinks: what plugins emit reaches an HTTP endpoint and a JSON Lines file, filtered
//! by severity, plugin and kind.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rtms_host::outputs::{OutputRecord, Sink, SinkFilter, SinkTarget, start_sinks};
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
        },
        Sink {
            target: SinkTarget::Jsonl { path: file.clone() },
            filter: SinkFilter {
                plugins: Some(vec![rtms_config::PluginName::try_new("alerter").unwrap()]),
                kinds: Some(vec!["keyword".into()]),
                ..SinkFilter::default()
            },
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
    assert_eq!(r.data.unwrap()["invalid_json"], "{not json");
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
    assert_eq!(r.data.unwrap()["oversized_data_bytes"], 300_002);
}
