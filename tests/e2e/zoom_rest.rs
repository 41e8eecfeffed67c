//! Starting RTMS on purpose: the host asks Zoom's REST API (the simulator's) with a
//! Server-to-Server OAuth token, then waits for the started webhook; Zoom's REST errors and
//! the timeout come back as errors that say what to check.

use std::process::Stdio;

use hyper::{Method, StatusCode};
use rtms_config::{RestCredentials, Secret};
use rtms_sim::api::{ApiConfig, Failure, ZoomApi};
use rtms_sim::{MeetingOptions, Pace, Simulator};
use serde_json::Value;

use crate::harness::*;

fn api_config() -> ApiConfig {
    ApiConfig {
        account_id: "acct-1".into(),
        oauth_client_id: "s2s-id".into(),
        oauth_client_secret: "s2s-secret".into(),
        ..Default::default()
    }
}

/// A host whose REST calls go to `api`, with the given OAuth secret.
async fn host_for(sim: &Simulator, api: &ZoomApi, secret: &str) -> Host {
    let base = api.base_url();
    let secret = secret.to_owned();
    start_host(
        sim,
        Setup {
            admin: true,
            ..Default::default()
        },
        move |p| {
            p.zoom.api_base_url = base.clone();
            p.zoom.oauth_base_url = base;
            p.zoom.rest = Some(RestCredentials {
                account_id: "acct-1".into(),
                client_id: "s2s-id".into(),
                client_secret: Secret::new(secret),
            });
        },
    )
    .await
}

async fn act(host: &Host, action: &str, meeting: &str) -> (StatusCode, Value) {
    let addr = host.svc.admin_addr().unwrap();
    let id: String = meeting
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let path = format!("/admin/rtms/{action}?meeting={id}");
    call(&format!("http://{addr}"), Method::POST, &path, &[], "").await
}

fn prepare(api: &ZoomApi, host: &Host, lines: usize, deliver: bool) -> String {
    api.prepare(
        script(lines, vec![]),
        MeetingOptions {
            pace: Pace::Fast,
            webhook_url: deliver.then(|| host.webhook_url.clone()),
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_through_the_rest_api_waits_for_the_webhook_and_the_meeting_streams() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, api_config()).await.unwrap();
    let host = host_for(&sim, &api, "s2s-secret").await;
    let id = prepare(&api, &host, 40, true);

    // `rtms-host start` asks the running host, which asks Zoom and waits for the webhook.
    let admin = format!("http://{}", host.svc.admin_addr().unwrap());
    let out = within(
        "rtms-host start",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rtms-host"))
            .args(["start", "--meeting", &id, "--admin", &admin])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = api.meeting(&id).expect("the API started the meeting");
    assert!(
        printed.contains(&format!("streams as {}", m.stream_id())),
        "{printed}"
    );
    let ledger = finish(&host, &m).await;
    assert!(!ledger_transcript(&ledger).is_empty());
    assert_writer_matches(&ledger, &host.writer_lines(m.stream_id()));

    let counts = api.counts();
    assert_eq!(counts.status_calls, [(id.clone(), "start".into(), 204)]);
    assert_eq!(counts.tokens_issued, 1);

    // The token is cached: a second call fetches none.
    let (status, v) = act(&host, "stop", &id).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(api.counts().tokens_issued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_pause_and_resume_reach_the_live_stream() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, api_config()).await.unwrap();
    let mut host = host_for(&sim, &api, "s2s-secret").await;
    let id = api.prepare(
        script(400, vec![]),
        MeetingOptions {
            pace: Pace::Realtime,
            webhook_url: Some(host.webhook_url.clone()),
            ..Default::default()
        },
    );
    let (status, v) = act(&host, "start", &id).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let stream = v["stream_id"].as_str().unwrap().to_owned();
    wait_frame(
        &mut host,
        &stream,
        rtms_host::sandbox::bindings::MediaKind::Transcript,
    )
    .await;
    for action in ["pause", "resume", "stop"] {
        let (status, v) = act(&host, action, &id).await;
        assert_eq!(status, StatusCode::OK, "{action}: {v}");
    }
    host.idle().await;
    let rec = host.record(&stream);
    assert_eq!(rec.ends.len(), 1);
    assert!(
        rec.ends[0].contains("25"),
        "stopped by the API (reason 25): {:?}",
        rec.ends
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zooms_rest_errors_and_the_missing_webhook_are_explained() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, api_config()).await.unwrap();
    let host = host_for(&sim, &api, "s2s-secret").await;

    // 404: no such live meeting.
    let (status, v) = act(&host, "start", "no-such-meeting").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("knows no live meeting") && e.contains("3001"),
        "{e}"
    );

    // 429 twice, then success: retried after Retry-After.
    let id = prepare(&api, &host, 5, true);
    for _ in 0..2 {
        api.fail_next(Failure {
            status: 429,
            body: serde_json::json!({"code": 429, "message": "You have reached the maximum per-second rate limit."}),
            retry_after_secs: Some(0),
        });
    }
    let (status, v) = act(&host, "start", &id).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let statuses: Vec<u16> = api.counts().status_calls.iter().map(|c| c.2).collect();
    assert_eq!(&statuses[1..], [429, 429, 204]);

    // A revoked token: fetched again once, then the call succeeds.
    api.expire_tokens();
    let before = api.counts().tokens_issued;
    let (status, v) = act(&host, "pause", &id).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(api.counts().tokens_issued, before + 1);

    // Zoom accepted, but the webhook never comes: 504 naming the likely causes.
    let silent = prepare(&api, &host, 5, false);
    let (status, v) = act(&host, "start", &silent).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("no started webhook"), "{e}");
    assert!(e.contains("RTMS is not enabled"), "{e}");
    assert!(e.contains("webhook endpoint"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_oauth_credentials_and_missing_ones_say_what_to_fix() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, api_config()).await.unwrap();
    let host = host_for(&sim, &api, "the-wrong-secret").await;
    let (status, v) = act(&host, "start", "any").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("refused the account credentials"), "{e}");
    assert!(e.contains("ZOOM_OAUTH_CLIENT_SECRET"), "{e}");
    assert_eq!(api.counts().token_refusals, 1);

    // Without credentials the host says which variables to export.
    let bare = start_host(
        &sim,
        Setup {
            admin: true,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let (status, v) = act(&bare, "start", "any").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("export ZOOM_ACCOUNT_ID, ZOOM_OAUTH_CLIENT_ID and ZOOM_OAUTH_CLIENT_SECRET"),
        "{e}"
    );
}

/// Sends one request to `base` (`http://IP:PORT`) and returns the status and body.
async fn call(
    base: &str,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (StatusCode, Value) {
    let addr = base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("host", addr);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .unwrap();
    let resp = within("the API's answer", sender.send_request(req))
        .await
        .unwrap();
    let status = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// `rtms-host simulate --zoom-api-listen` serves Zoom's REST side from the command line: its
/// meeting waits until a Server-to-Server OAuth token and a status call start it, exactly as
/// `rtms-host start` drives Zoom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtms_host_simulate_serves_the_rest_api_and_its_meeting_waits_for_a_start() {
    use base64::Engine as _;
    use tokio::io::AsyncBufReadExt;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtms-host"))
        .args([
            "simulate",
            "--zoom-api-listen",
            "127.0.0.1:0",
            "--pace",
            "fast",
            "--connect-timeout-secs",
            "3",
            "--oauth-account-id",
            "acct-cli",
            "--oauth-client-id",
            "cli-id",
            "--oauth-client-secret",
            "cli-secret",
        ])
        .env_remove("ZOOM_ACCOUNT_ID")
        .env_remove("ZOOM_OAUTH_CLIENT_ID")
        .env_remove("ZOOM_OAUTH_CLIENT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        within("a line from rtms-host simulate", lines.next_line())
            .await
            .unwrap()
            .expect("rtms-host simulate ended early")
    };
    let (mut base, mut meeting) = (None, None);
    while meeting.is_none() {
        let line = next_line().await;
        if let Some(rest) = line.strip_prefix("Zoom REST API: ") {
            base = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some((_, id)) = line.split_once("rtms-host start --meeting ") {
            meeting = Some(id.trim().to_owned());
        }
    }
    let (base, meeting) = (base.expect("the API's URL is printed"), meeting.unwrap());

    // Wrong credentials are refused as Zoom refuses them.
    let basic = |id: &str, secret: &str| {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        vec![("authorization", format!("Basic {b}"))]
    };
    let token_path = "/oauth/token?grant_type=account_credentials&account_id=acct-cli";
    let (status, _) = call(
        &base,
        Method::POST,
        token_path,
        &basic("cli-id", "nope"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, v) = call(
        &base,
        Method::POST,
        token_path,
        &basic("cli-id", "cli-secret"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let token = v["access_token"].as_str().expect("a token").to_owned();

    // The meeting has not started: nothing but the printed lines so far.
    let path = format!(
        "/v2/live_meetings/{}/rtms_app/status",
        rtms_host::flows::zoom_rest::meeting_segment(&meeting)
    );
    let headers = vec![
        ("authorization", format!("Bearer {token}")),
        ("content-type", "application/json".to_owned()),
    ];
    let start = r#"{"action": "start", "settings": {"client_id": "test_client_id"}}"#;
    let (status, v) = call(&base, Method::PATCH, &path, &headers, start).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");

    let line = next_line().await;
    assert!(
        line.starts_with(&format!(
            "meeting {meeting} started through the REST API: stream "
        )),
        "{line}"
    );
    // No webhook URL: the started event is printed for the user to deliver.
    let event: Value = serde_json::from_str(&next_line().await).unwrap();
    assert_eq!(event["event"], "meeting.rtms_started");
    assert_eq!(event["payload"]["meeting_uuid"], meeting.as_str());

    // A second start is refused as Zoom refuses it.
    let (status, v) = call(&base, Method::PATCH, &path, &headers, start).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    // No client connects: the meeting gives up after the connect timeout and the command
    // exits.
    let line = next_line().await;
    assert!(line.contains("ended (stop_reason 11)"), "{line}");
    let status = within("rtms-host simulate to exit", child.wait())
        .await
        .unwrap();
    assert!(status.success());
}

/// The token endpoint remembers a bounded number of tokens: asking for one more than
/// `MAX_TOKENS` retires the oldest (it is refused like an expired token), the newest works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_token_store_is_bounded() {
    use base64::Engine as _;
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, api_config()).await.unwrap();
    let base = api.base_url();
    let basic = base64::engine::general_purpose::STANDARD.encode("s2s-id:s2s-secret");
    let auth = vec![("authorization", format!("Basic {basic}"))];
    let path = "/oauth/token?grant_type=account_credentials&account_id=acct-1";
    let mut tokens = Vec::new();
    for _ in 0..=rtms_sim::api::MAX_TOKENS {
        let (status, v) = call(&base, Method::POST, path, &auth, "").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        tokens.push(v["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(api.counts().tokens_issued, tokens.len() as u64);
    let body = format!(
        r#"{{"action": "start", "settings": {{"client_id": "{}"}}}}"#,
        sim.config().client_id
    );
    let status_of = |token: &str| {
        vec![
            ("authorization", format!("Bearer {token}")),
            ("content-type", "application/json".to_owned()),
        ]
    };
    let meeting = "/v2/live_meetings/no-such-meeting/rtms_app/status";
    let (status, v) = call(&base, Method::PATCH, meeting, &status_of(&tokens[0]), &body).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the oldest token was retired: {v}"
    );
    let last = tokens.last().unwrap();
    let (status, v) = call(&base, Method::PATCH, meeting, &status_of(last), &body).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the newest token is accepted: {v}"
    );
}

/// A start by meeting number waits for that meeting's started webhook: another meeting's,
/// arriving first, is not taken for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_by_number_waits_for_its_own_meeting_not_the_next_one_started() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, api_config()).await.unwrap();
    let host = host_for(&sim, &api, "s2s-secret").await;
    let number = "85746065432";
    // Its started webhook is delivered by the test, after the other meeting's.
    let uuid = api.prepare_numbered(
        number,
        script(40, vec![]),
        MeetingOptions {
            pace: Pace::Fast,
            ..Default::default()
        },
    );
    let (answer, mine) = tokio::join!(act(&host, "start", number), async {
        let mine = within("the API to start the meeting", api.started(&uuid)).await;
        let other = sim
            .start_meeting(
                script(40, vec![]),
                MeetingOptions {
                    pace: Pace::Fast,
                    webhook_url: Some(host.webhook_url.clone()),
                    ..Default::default()
                },
            )
            .expect("another meeting");
        eventually("the other meeting to stream", || {
            host.svc.sessions().snapshot(other.stream_id()).is_some()
        })
        .await;
        assert_eq!(post_started(&sim, &host, &mine).await, StatusCode::OK);
        mine
    });
    let (status, v) = answer;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["meeting"], uuid.as_str(), "{v}");
    assert_eq!(v["stream_id"], mine.stream_id(), "{v}");
    assert_eq!(
        api.counts().status_calls,
        [(number.into(), "start".into(), 204)]
    );

    // An unknown number is refused before anything starts, saying what to give instead.
    let (status, v) = act(&host, "start", "99999999999").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("give the meeting uuid"), "{e}");
    assert_eq!(api.counts().status_calls.len(), 1, "no start was asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_center_engagement_starts_and_stops_through_its_rest_endpoint() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, api_config()).await.unwrap();
    let mut host = host_for(&sim, &api, "s2s-secret").await;
    let id = api.prepare(
        script(400, vec![]),
        MeetingOptions {
            product: rtms_proto::Product::ContactCenter,
            pace: Pace::Realtime,
            webhook_url: Some(host.webhook_url.clone()),
            ..Default::default()
        },
    );
    let admin = format!("http://{}", host.svc.admin_addr().unwrap());
    let cli = |action: &'static str, id: String, admin: String| async move {
        within(
            "rtms-host",
            tokio::process::Command::new(env!("CARGO_BIN_EXE_rtms-host"))
                .args([action, "--engagement", &id, "--admin", &admin])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output(),
        )
        .await
        .unwrap()
    };
    // The meetings endpoint does not know an engagement.
    let (status, v) = act(&host, "start", &id).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{v}");
    assert!(v["error"].as_str().unwrap().contains("3001"), "{v}");

    let out = cli("start", id.clone(), admin.clone()).await;
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = api.meeting(&id).expect("the API started the engagement");
    assert!(
        printed.contains(&format!("engagement {id} streams as {}", m.stream_id()))
            && printed.contains("contact-center"),
        "{printed}"
    );
    wait_frame(
        &mut host,
        m.stream_id(),
        rtms_host::sandbox::bindings::MediaKind::Transcript,
    )
    .await;
    let out = cli("stop", id.clone(), admin).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ledger = within("the engagement to end", m.finished()).await;
    host.idle().await;
    assert_eq!(ledger.stop_reason, Some(25), "MANUAL_API_TRIGGERED");
    assert_eq!(host.record(m.stream_id()).end(), "stopped(25)");
    let calls: Vec<(String, String, u16)> = api.counts().status_calls;
    assert_eq!(
        calls,
        [
            (id.clone(), "start".into(), 404),
            (id.clone(), "start".into(), 204),
            (id, "stop".into(), 204)
        ]
    );
}
