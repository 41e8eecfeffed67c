//! What a reload reports beyond plugins, and the admin listener of a real service over real
//! HTTP (hyper's client): reload and metrics there and not on the webhook port, the token when
//! the listener is exposed, reload coalescing and the rate limit.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rtms_host::pipeline::reload::Outcome;

use crate::rig::*;
use crate::util::component;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_need_a_restart_are_reported_not_ignored() {
    let rig = Rig::new().await;
    let mut p = PipelineToml::new(vec![PluginToml::new("rec", component("seq_recorder"))]);
    let svc = rig.start(&p).await;
    p.listen = "127.0.0.1:9".into();
    rig.write_pipeline(&p);
    match svc.reload().await {
        Outcome::Applied {
            restart_required,
            changed,
            ..
        } => {
            assert!(changed.is_empty(), "{changed:?}");
            assert!(
                restart_required
                    .iter()
                    .any(|r| r.contains("server.listen") && r.contains("127.0.0.1:9")),
                "{restart_required:?}"
            );
        }
        other => panic!("a listen change must be reported: {other:?}"),
    }
    // Nothing new: unchanged.
    assert_eq!(svc.reload().await, Outcome::Unchanged);
    // Sinks are not rebuilt live: reported too, with the listen change still pending.
    p.extra = format!(
        "\n[[sink]]\ntype = \"jsonl\"\npath = \"{}\"\n",
        rig.path().join("alerts.jsonl").display()
    );
    rig.write_pipeline(&p);
    match svc.reload().await {
        Outcome::Applied {
            restart_required, ..
        } => {
            assert!(
                restart_required.iter().any(|r| r.contains("sink")),
                "{restart_required:?}"
            );
            assert!(
                restart_required.iter().any(|r| r.contains("server.listen")),
                "{restart_required:?}"
            );
        }
        other => panic!("a sink change must be reported: {other:?}"),
    }
    // A plugin change applies live; the settings waiting for a restart are still listed.
    p.plugins.push(PluginToml::new("noop", component("noop")));
    rig.write_pipeline(&p);
    match svc.reload().await {
        Outcome::Applied {
            restart_required,
            changed,
            ..
        } => {
            assert_eq!(changed, vec!["noop added".to_owned()]);
            assert_eq!(restart_required.len(), 2, "{restart_required:?}");
        }
        other => panic!("adding a plugin: {other:?}"),
    }
    assert!(serving_hash(&svc, "noop").is_some());
    svc.shutdown().await;
}

const TOKEN: &str = "reload-admin-token-0123456789";

/// One request over a fresh connection: status, `Retry-After` if any, body as JSON (or a
/// string holding the text).
async fn http(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>()
        .request(req.body(Empty::new()).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    let json = serde_json::from_str(text.trim()).unwrap_or(serde_json::Value::String(text));
    (status, retry, json)
}

fn admin(svc: &rtms_host::service::Service) -> SocketAddr {
    svc.admin_addr().expect("the admin listener runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_admin_reload_reloads_and_answers_with_the_outcome() {
    let rig = Rig::new().await;
    let mut p = PipelineToml::new(vec![PluginToml::new("rec", component("seq_recorder"))]);
    let svc = rig.start(&p).await;
    p.plugins.push(PluginToml::new("noop", component("noop")));
    rig.write_pipeline(&p);
    let (status, _, v) = http(admin(&svc), Method::POST, "/admin/reload", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "applied", "{v}");
    assert_eq!(v["changed"], serde_json::json!(["noop added"]));
    assert!(serving_hash(&svc, "noop").is_some());

    rig.write_pipeline_text("version = 1\n[server\n");
    let (status, _, v) = http(admin(&svc), Method::POST, "/admin/reload", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["outcome"], "refused");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("pipeline.toml"),
        "{v}"
    );

    let (status, _, v) = http(admin(&svc), Method::GET, "/admin/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["reloads_applied"], 1);
    assert_eq!(v["reloads_refused"], 1);
    assert_eq!(v["live_streams"], 0);
    assert_eq!(v["admin"]["reloads_started"], 2);
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_port_serves_no_admin_route() {
    let rig = Rig::new().await;
    let p = PipelineToml::new(vec![PluginToml::new("rec", component("seq_recorder"))]);
    let svc = rig.start(&p).await;
    for (method, path) in [
        (Method::POST, "/admin/reload"),
        (Method::GET, "/admin/metrics"),
    ] {
        let (status, _, _) = http(svc.addr(), method, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _, _) = http(svc.addr(), Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        svc.metrics().reloads_applied + svc.metrics().reloads_refused,
        0
    );
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_admin_listener_without_a_token_is_refused() {
    let rig = Rig::new().await;
    let mut p = PipelineToml::new(vec![PluginToml::new("rec", component("seq_recorder"))]);
    // Bound beyond loopback while the file says loopback: the service refuses to start.
    let e = rig
        .try_start(&p, &env(), "0.0.0.0:0")
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("export RTMS_ADMIN_TOKEN="), "{e}");
    // The file says beyond loopback: loading refuses, naming the key and the variable.
    p.admin = "[admin]\nlisten = \"0.0.0.0:0\"\n".into();
    let e = rig
        .try_start(&p, &env(), "127.0.0.1:0")
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("admin.listen = \"0.0.0.0:0\""), "{e}");
    assert!(e.contains("RTMS_ADMIN_TOKEN"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_admin_listener_takes_only_its_token() {
    let rig = Rig::new().await;
    let mut p = PipelineToml::new(vec![PluginToml::new("rec", component("seq_recorder"))]);
    p.admin = "[admin]\nlisten = \"0.0.0.0:0\"\n".into();
    let env = env().with("RTMS_ADMIN_TOKEN", TOKEN);
    let svc = rig
        .try_start(&p, &env, "0.0.0.0:0")
        .await
        .expect("starts with a token");
    // Bound on every interface; reached through loopback only.
    let addr = SocketAddr::from(([127, 0, 0, 1], admin(&svc).port()));
    for token in [None, Some("reload-admin-token-012345678"), Some("")] {
        let (status, _, _) = http(addr, Method::GET, "/admin/metrics", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        let (status, _, _) = http(addr, Method::POST, "/admin/reload", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    assert_eq!(
        svc.metrics().reloads_applied + svc.metrics().reloads_refused,
        0
    );
    let (status, _, v) = http(addr, Method::GET, "/admin/metrics", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["admin"]["unauthorized"], 6);
    let (status, _, v) = http(addr, Method::POST, "/admin/reload", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "unchanged");
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_requests_are_coalesced_then_rate_limited() {
    let rig = Rig::new().await;
    let mut p = PipelineToml::new(vec![PluginToml::new("rec", component("seq_recorder"))]);
    p.admin = "[admin]\nlisten = \"127.0.0.1:0\"\nreload_min_interval_ms = 60000\n".into();
    let svc = rig.start(&p).await;
    p.plugins.push(PluginToml::new("noop", component("noop")));
    rig.write_pipeline(&p);
    let addr = admin(&svc);
    let requests: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { http(addr, Method::POST, "/admin/reload", None).await }))
        .collect();
    let mut answers = Vec::new();
    for r in requests {
        answers.push(r.await.expect("request task"));
    }
    // One reload ran; every request either shared it (same reload, same outcome) or came
    // after it ended and was told to wait.
    assert_eq!(svc.metrics().reloads_applied, 1);
    let done: Vec<_> = answers.iter().filter(|a| a.0 == StatusCode::OK).collect();
    assert!(!done.is_empty());
    for (_, _, v) in &done {
        assert_eq!(v["reload"], 1, "{v}");
        assert_eq!(v["changed"], serde_json::json!(["noop added"]), "{v}");
    }
    for (status, retry, v) in &answers {
        if *status != StatusCode::OK {
            assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{v}");
            assert!(retry.is_some());
        }
    }
    // After it: 429 with Retry-After, and no reload.
    let (status, retry, v) = http(addr, Method::POST, "/admin/reload", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(svc.metrics().reloads_applied, 1);
    svc.shutdown().await;
}
