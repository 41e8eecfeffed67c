//! The url-validation signing oracle: `encryptedToken` = HMAC(secret, plainToken) is the
//! webhook signature's construction, so answering an unsigned challenge whose plainToken is
//! `v0:<ts>:<body>` would sign any body. And the failover it enabled: a forged started
//! webhook for a live stream, redirecting it to the attacker's server.

use std::time::Duration;

use rtms_proto::WebhookAction;
use rtms_proto::sign::url_validation_token;
use rtms_sim::{MeetingOptions, MeetingScript, Pace};
use tokio::net::TcpListener;

use crate::{
    HostProcess, SIM_ALLOW, WEBHOOK_SECRET, lifecycle, pipeline, post, serial, signed, unix_now,
};

fn challenge(plain: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "event": "endpoint.url_validation",
        "event_ts": unix_now() * 1000,
        "payload": {"plainToken": plain},
    }))
    .unwrap()
}

/// Asks the host to sign `body` through the url-validation answer; returns the signature
/// headers an oracle would yield, or `None` when the host refuses.
async fn ask_oracle(url: &str, body: &[u8]) -> Option<Vec<(&'static str, String)>> {
    let ts = unix_now().to_string();
    let plain = format!("v0:{ts}:{}", String::from_utf8_lossy(body));
    let (status, text) = post(url, challenge(&plain), &[]).await;
    assert_eq!(status, hyper::StatusCode::UNAUTHORIZED, "{text}");
    let token = serde_json::from_str::<serde_json::Value>(&text)
        .ok()?
        .get("encryptedToken")?
        .as_str()?
        .to_owned();
    Some(vec![
        ("x-zm-signature", format!("v0={token}")),
        ("x-zm-request-timestamp", ts),
    ])
}

#[tokio::test]
async fn the_url_validation_oracle_ends_in_401_and_no_session() {
    let _serial = serial().await;
    let host = HostProcess::start(&pipeline("", SIM_ALLOW));
    let url = host.webhook_url();
    let forged = lifecycle(
        WebhookAction::Started,
        "forged-stream",
        Some("ws://127.0.0.1:9/sig"),
        unix_now() * 1000,
    );
    assert_eq!(ask_oracle(&url, &forged).await, None, "no signature leaks");
    // What the attacker can still send: the body with a guessed signature, or none.
    let guess = format!("v0={}", url_validation_token("", "x"));
    for headers in [
        vec![],
        vec![
            ("x-zm-signature", guess),
            ("x-zm-request-timestamp", unix_now().to_string()),
        ],
    ] {
        let (status, _) = post(&url, forged.clone(), &headers).await;
        assert_eq!(status, hyper::StatusCode::UNAUTHORIZED);
    }
    // Zoom's own (signed) challenge is still answered.
    let body = challenge("zoomToken123");
    let (status, text) = post(&url, body.clone(), &signed(&body, WEBHOOK_SECRET)).await;
    assert_eq!(status, hyper::StatusCode::OK, "{text}");
    assert!(text.contains(&url_validation_token(WEBHOOK_SECRET, "zoomToken123")));
    assert_eq!(host.count_logs("stream starting"), 0);
    host.stop();
}

// The simulator runs on this runtime while the test blocks on the host's log: two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_failover_cannot_redirect_a_live_stream() {
    let _serial = serial().await;
    let sim = crate::simulator().await;
    let host = HostProcess::start(&pipeline("", SIM_ALLOW));
    let url = host.webhook_url();
    let script = MeetingScript::builder()
        .synthetic_speech(2, 400, 5)
        .build()
        .unwrap();
    let meeting = sim
        .start_meeting(
            script,
            MeetingOptions {
                pace: Pace::Realtime,
                webhook_url: Some(url.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    if host
        .wait_for_log("\"message\":\"streaming\"", Duration::from_secs(20))
        .is_none()
    {
        panic!(
            "the stream never went live; the host said:\n{}",
            host.logs().join("\n")
        );
    }

    // The attacker's server, and a failover to it for the live stream.
    let attacker = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil = format!("ws://{}/sig", attacker.local_addr().unwrap());
    let forged = lifecycle(
        WebhookAction::Started,
        meeting.stream_id(),
        Some(&evil),
        unix_now() * 1000 + 1,
    );
    let oracle = ask_oracle(&url, &forged).await;
    assert_eq!(oracle, None, "no signature leaks");
    let (status, _) = post(&url, forged.clone(), &[]).await;
    assert_eq!(status, hyper::StatusCode::UNAUTHORIZED, "unsigned");
    // Signed with the real secret but naming a host outside the allow-list: refused too.
    let outside = lifecycle(
        WebhookAction::Started,
        meeting.stream_id(),
        Some("wss://rtms.attacker.example/sig"),
        unix_now() * 1000 + 2,
    );
    let (status, text) = post(&url, outside.clone(), &signed(&outside, WEBHOOK_SECRET)).await;
    assert_eq!(status, hyper::StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("rtms.allowed_hosts"), "{text}");

    // Nothing connects to the attacker, and the stream stays where it was.
    let connected = tokio::time::timeout(Duration::from_secs(1), attacker.accept()).await;
    assert!(connected.is_err(), "the host connected to the attacker");
    assert_eq!(host.count_logs("failover"), 0, "no failover happened");
    assert!(!meeting.is_finished());
    meeting.stop(6);
    host.wait_for_log("stream stopped by Zoom", Duration::from_secs(10))
        .expect("the stream ends normally");
    host.stop();
}
