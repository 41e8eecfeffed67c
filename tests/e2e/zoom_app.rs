//! The in-client Zoom App served by the host: the page in headless Chromium with the Zoom
//! Apps SDK stubbed (the buttons make the right SDK calls, the status follows
//! `onRTMSStatusChange`), and its server-side start, which must carry a context sealed with
//! the app's client secret.

use std::path::Path;
use std::process::Stdio;

use rtms_config::{RestCredentials, Secret};
use rtms_host::flows::zoom_app::{AppContext, encrypt_context};
use rtms_sim::api::{ApiConfig, ZoomApi};
use rtms_sim::{MeetingOptions, Pace, Simulator};
use serde_json::Value;

use crate::harness::*;

const CHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/ops/zoom_app_check.py"
);

async fn app_host(sim: &Simulator, api: &ZoomApi) -> Host {
    let base = api.base_url();
    let setup = Setup {
        admin: true,
        ..Default::default()
    };
    start_host(sim, setup, move |p| {
        p.server.zoom_app = true;
        p.zoom.api_base_url = base.clone();
        p.zoom.oauth_base_url = base;
        p.zoom.rest = Some(RestCredentials {
            account_id: "sim-account".into(),
            client_id: "sim-oauth-client".into(),
            client_secret: Secret::new("sim-oauth-secret"),
        });
    })
    .await
}

fn context_for(meeting: &str, secret: &str) -> String {
    encrypt_context(&app_context(meeting, "host"), secret)
}

fn app_context(meeting: &str, role: &str) -> AppContext {
    AppContext {
        typ: "meeting".into(),
        uid: "user-1".into(),
        mid: Some(meeting.into()),
        ts: Some(rtms_proto::unix_ms()),
        exp: Some(rtms_proto::unix_ms() + 60_000),
        attendrole: Some(role.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zoom_app_page_drives_the_sdk_and_starts_the_meeting_from_the_server() {
    tokio::task::spawn_blocking(crate::ops::chromium)
        .await
        .unwrap();
    let py = tokio::task::spawn_blocking(crate::ops::ops_python)
        .await
        .unwrap();
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, ApiConfig::default()).await.unwrap();
    let host = app_host(&sim, &api).await;
    let id = api.prepare(
        script(20, vec![]),
        MeetingOptions {
            pace: Pace::Fast,
            webhook_url: Some(host.webhook_url.clone()),
            ..Default::default()
        },
    );
    let context = context_for(&id, &sim.config().client_secret);
    let url = format!("http://{}/zoom-app/", host.svc.addr());
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("zoom-app.png");
    let out = within(
        "the browser check",
        tokio::process::Command::new(py)
            .arg(CHECK)
            .args([url.as_str(), context.as_str()])
            .arg(&shot)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls: Vec<&str> = seen["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        calls,
        [
            "config",
            "onRTMSStatusChange",
            "getRTMSStatus",
            "startRTMS",
            "stopRTMS",
            "getAppContext"
        ],
        "{seen}"
    );
    for cap in [
        "startRTMS",
        "stopRTMS",
        "getRTMSStatus",
        "onRTMSStatusChange",
    ] {
        assert!(
            seen["capabilities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == cap),
            "config asks for {cap}: {seen}"
        );
    }
    assert_eq!(
        seen["statuses"],
        serde_json::json!(["stopped", "connecting", "started", "stopped"])
    );
    assert_eq!(seen["error"], "", "{seen}");
    // The server start reached Zoom's API and the stream reached the host.
    let m = api.meeting(&id).expect("started through the API");
    assert_eq!(
        seen["server_result"],
        format!("streaming as {}", m.stream_id()),
        "{seen}"
    );
    let ledger = finish(&host, &m).await;
    assert_writer_matches(&ledger, &host.writer_lines(m.stream_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_start_refuses_a_context_not_sealed_by_zoom() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, ApiConfig::default()).await.unwrap();
    let host = app_host(&sim, &api).await;
    let id = api.prepare(script(5, vec![]), MeetingOptions::default());
    for (header, why) in [
        (None, "x-zoom-app-context"),
        (
            Some(context_for(&id, "someone-elses-secret")),
            "does not verify",
        ),
        (Some("bm90IGEgY29udGV4dA==".to_owned()), "cut short"),
    ] {
        let stream = tokio::net::TcpStream::connect(host.svc.addr())
            .await
            .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = hyper::Request::post("/zoom-app/api/rtms/start")
            .header("host", host.svc.addr().to_string());
        if let Some(h) = &header {
            req = req.header("x-zoom-app-context", h);
        }
        let resp = sender
            .send_request(
                req.body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), hyper::StatusCode::UNAUTHORIZED, "{why}");
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(String::from_utf8_lossy(&body).contains(why), "{why}");
    }
    assert!(api.counts().status_calls.is_empty(), "Zoom was never asked");
    // Each refusal is counted (and logged at a bounded rate: anyone can send these).
    let (_, metrics) = crate::ops::admin(&host, hyper::Method::GET, "/metrics", None).await;
    let refusals = metrics
        .lines()
        .find(|l| l.starts_with("rtms_zoom_app_refusals_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(refusals, Some(3.0), "{metrics}");
    assert!(api.meeting(&id).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_undated_and_non_host_contexts_are_refused_before_zoom_is_asked() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, ApiConfig::default()).await.unwrap();
    let host = app_host(&sim, &api).await;
    let id = api.prepare(script(5, vec![]), MeetingOptions::default());
    let secret = sim.config().client_secret.clone();
    let year_old = AppContext {
        ts: Some(rtms_proto::unix_ms() - 365 * 24 * 3600 * 1000),
        ..app_context(&id, "host")
    };
    let no_exp = AppContext {
        exp: None,
        ..app_context(&id, "host")
    };
    for (action, ctx, status, why) in [
        ("start", year_old, 401, "at most 300 s old"),
        ("start", no_exp, 401, "no exp"),
        (
            "stop",
            app_context(&id, "attendee"),
            403,
            "host or a co-host",
        ),
        (
            "pause",
            app_context(&id, "attendee"),
            403,
            "host or a co-host",
        ),
    ] {
        let stream = tokio::net::TcpStream::connect(host.svc.addr())
            .await
            .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::post(format!("/zoom-app/api/rtms/{action}"))
            .header("host", host.svc.addr().to_string())
            .header("x-zoom-app-context", encrypt_context(&ctx, &secret));
        let resp = sender
            .send_request(
                req.body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{why}");
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains(why),
            "{why}: {body:?}"
        );
    }
    assert!(api.counts().status_calls.is_empty(), "Zoom was never asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_context_reaches_zoom_at_most_its_allowed_uses() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, ApiConfig::default()).await.unwrap();
    let host = app_host(&sim, &api).await;
    let id = api.prepare(script(5, vec![]), MeetingOptions::default());
    let header = context_for(&id, &sim.config().client_secret);
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for _ in 0..200 {
        let stream = tokio::net::TcpStream::connect(host.svc.addr())
            .await
            .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::post("/zoom-app/api/rtms/start")
            .header("host", host.svc.addr().to_string())
            .header("x-zoom-app-context", &header);
        let resp = sender
            .send_request(
                req.body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        *statuses.entry(resp.status().as_u16()).or_default() += 1;
    }
    assert_eq!(statuses.get(&409), Some(&197), "{statuses:?}");
    let calls = api.counts().status_calls.len();
    assert!((1..=3).contains(&calls), "{calls} calls reached Zoom");
}
