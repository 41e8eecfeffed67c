//! What a signed webhook may ask for: server URLs on the allow-list only (at intake, and
//! the media URLs of the signaling reply before connecting), and ids of bounded length.

use std::time::Duration;

use hyper::StatusCode;
use rtms_proto::WebhookAction;
use rtms_sim::{MeetingOptions, MeetingScript};

use crate::{HostProcess, WEBHOOK_SECRET, lifecycle, pipeline, post, serial, signed, unix_now};

#[tokio::test]
async fn server_urls_outside_the_allow_list_are_refused_with_422_and_start_nothing() {
    let _serial = serial().await;
    // The default allow-list: wss:// on Zoom's hosts.
    let host = HostProcess::start(&pipeline("", ""));
    let url = host.webhook_url();
    for (i, (server_url, names)) in [
        ("not a url", "wss://"),
        ("http://127.0.0.1:9/sig", "rtms.allow_insecure_ws"),
        ("ws://rtms.zoom.us/sig", "rtms.allow_insecure_ws"),
        ("wss://127.0.0.1:9/sig", "rtms.allowed_hosts"),
        (
            "wss://rtms.zoom.us.attacker.example/sig",
            "rtms.allowed_hosts",
        ),
        (
            "wss://rtms.zoom.us@attacker.example/sig",
            "rtms.allowed_hosts",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let body = lifecycle(
            WebhookAction::Started,
            &format!("s{i}"),
            Some(server_url),
            unix_now() * 1000,
        );
        let (status, text) = post(&url, body.clone(), &signed(&body, WEBHOOK_SECRET)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{server_url}: {text}"
        );
        assert!(text.contains(names), "{server_url}: {text}");
    }
    // An interrupted webhook carrying a URL is checked the same way.
    let body = lifecycle(
        WebhookAction::Interrupted,
        "s-int",
        Some("wss://attacker.example/sig"),
        1,
    );
    let (status, _) = post(&url, body.clone(), &signed(&body, WEBHOOK_SECRET)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(host.count_logs("stream starting"), 0);
    // The log line comes through the child's stderr, read on another thread: wait for it.
    assert!(
        host.wait_for_log("server URL not allowed", Duration::from_secs(10))
            .is_some(),
        "logged"
    );
    host.stop();
}

#[tokio::test]
async fn overlong_ids_get_400_naming_the_field_and_are_never_logged_whole() {
    let _serial = serial().await;
    let host = HostProcess::start(&pipeline("", ""));
    let url = host.webhook_url();
    let long = "A".repeat(300);
    for field in [
        "meeting_uuid",
        "rtms_stream_id",
        "operator_id",
        "server_urls",
    ] {
        let mut payload = serde_json::json!({
            "meeting_uuid": "m", "rtms_stream_id": "s", "server_urls": "wss://rtms.zoom.us/sig"
        });
        payload[field] = if field == "server_urls" {
            format!("wss://rtms.zoom.us/{}", "A".repeat(3000)).into()
        } else {
            long.clone().into()
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "event": "meeting.rtms_started", "event_ts": 1, "payload": payload
        }))
        .unwrap();
        let (status, text) = post(&url, body.clone(), &signed(&body, WEBHOOK_SECRET)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {text}");
        assert!(text.contains(field), "{field}: {text}");
        let limit = if field == "server_urls" {
            "2048"
        } else {
            "256"
        };
        assert!(text.contains(limit), "{field}: {text}");
        assert!(text.len() < 200, "the answer echoes no id: {text}");
    }
    assert!(host.logs().iter().all(|l| !l.contains(&long)));
    host.stop();
}

// The simulator runs on this runtime while the test blocks on the host's log: two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_url_outside_the_allow_list_is_never_connected() {
    let _serial = serial().await;
    let sim = crate::simulator().await;
    // Signaling on `localhost` is allowed; the media URLs the simulator hands out name
    // 127.0.0.1, which is not.
    let host = HostProcess::start(&pipeline(
        "",
        "allowed_hosts = [\"localhost\"]\nallow_insecure_ws = true\nconnection_max_attempts = 1\n",
    ));
    let script = MeetingScript::builder()
        .synthetic_speech(1, 20, 5)
        .build()
        .unwrap();
    let meeting = sim
        .start_meeting(script, MeetingOptions::default())
        .unwrap();
    let mut ev = meeting.started_event();
    ev.server_url = ev.server_url.map(|u| u.replace("127.0.0.1", "localhost"));
    let body = ev.to_body();
    let (status, text) = post(
        &host.webhook_url(),
        body.clone(),
        &signed(&body, WEBHOOK_SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let line = host
        .wait_for_log("media socket not opened", Duration::from_secs(20))
        .expect("the stream fails before connecting media");
    assert!(
        line.contains("127.0.0.1") && line.contains("rtms.allowed_hosts"),
        "{line}"
    );
    let ledger = meeting.ledger();
    assert_eq!(
        ledger.counters.signaling_handshakes_ok, 1,
        "signaling was allowed"
    );
    assert_eq!(
        ledger.counters.media_connections, 0,
        "media was never connected"
    );
    host.stop();
}
