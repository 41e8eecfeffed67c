//! Webhooks at the running service's HTTP ingress: url validation answered; forged, stale,
//! unsigned, oversize and malformed webhooks refused without opening a stream; replays
//! acknowledged and dropped.

use hyper::StatusCode;
use rtms_proto::Product;
use rtms_sim::{Fault, MeetingOptions, Pace, Simulator};

use crate::harness::*;

#[tokio::test]
async fn url_validation_is_answered_only_when_signed() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let host = start_host(&sim, Setup::default(), |_| {}).await;
    let body = br#"{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680}"#.to_vec();
    // Unsigned, the answer would be a signing oracle: refused, no token.
    let (code, text) = post(&host, &[], body.clone()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(!text.contains("encryptedToken"), "{text}");
    // Signed as Zoom does.
    let headers = signed(&sim.config().webhook_secret, now_secs(), &body);
    let (code, text) = post(&host, &headers, body).await;
    assert_eq!(code, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
    assert_eq!(v["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    let want = rtms_proto::sign::url_validation_token(
        &sim.config().webhook_secret,
        "qgg8vlvZRS6UYooatFL8Aw",
    );
    assert_eq!(v["encryptedToken"], want.as_str());
    // And through the simulator's own check.
    sim.validate_endpoint(&host.webhook_url)
        .await
        .expect("the simulator accepts the answer");
}

#[tokio::test]
async fn bad_webhooks_are_refused_and_open_no_stream() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let host = start_host(
        &sim,
        Setup {
            server_extra: "max_body_bytes = 2048",
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let meeting = sim
        .start_meeting(script(4, vec![]), MeetingOptions::default())
        .expect("meeting");
    let body = meeting.started_body();
    let secret = sim.config().webhook_secret.clone();

    let forged = signed("not-the-secret", now_secs(), &body);
    assert_eq!(
        post(&host, &forged, body.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );

    let stale = signed(&secret, now_secs() - 3600, &body);
    assert_eq!(
        post(&host, &stale, body.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );

    let future = signed(&secret, now_secs() + 3600, &body);
    assert_eq!(
        post(&host, &future, body.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(
        post(&host, &[], body.clone()).await.0,
        StatusCode::UNAUTHORIZED,
        "unsigned"
    );

    let mut altered = body.clone();
    altered.extend_from_slice(b" ");
    let sig_of_original = signed(&secret, now_secs(), &body);
    assert_eq!(
        post(&host, &sig_of_original, altered).await.0,
        StatusCode::UNAUTHORIZED
    );

    let big = vec![b' '; 4096];
    let headers = signed(&secret, now_secs(), &big);
    assert_eq!(
        post(&host, &headers, big).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    for bad in [
        b"{not json".to_vec(),
        br#"{"event":"meeting.rtms_started","payload":{}}"#.to_vec(),
        br#"{"event":"meeting.rtms_started","payload":{"meeting_uuid":"x","rtms_stream_id":"y"}}"#
            .to_vec(),
    ] {
        let headers = signed(&secret, now_secs(), &bad);
        let (code, text) = post(&host, &headers, bad.clone()).await;
        assert_eq!(
            code,
            StatusCode::BAD_REQUEST,
            "{}: {text}",
            String::from_utf8_lossy(&bad)
        );
    }

    assert_eq!(host.svc.sessions().len(), 0, "no stream was opened");
    assert_eq!(
        meeting.ledger().counters.signaling_connections,
        0,
        "nothing connected"
    );
    assert_eq!(host.svc.metrics().sessions_started, 0);
}

#[tokio::test]
async fn replayed_webhooks_are_acknowledged_and_dropped() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let host = start_host(&sim, Setup::default(), |_| {}).await;
    let meeting = start_unannounced(&sim, script(6, vec![]));
    // The same event three times (Zoom's retries), freshly signed each time.
    for _ in 0..3 {
        assert_eq!(post_started(&sim, &host, &meeting).await, StatusCode::OK);
        assert_eq!(host.svc.sessions().len(), 1, "one stream");
    }
    let ledger = finish(&host, &meeting).await;
    assert_eq!(ledger.counters.signaling_connections, 1, "one connection");
    assert_eq!(ledger.counters.duplicate_signaling_rejected, 0);
    let rec = host.record(meeting.stream_id());
    assert_exactly_once(&ledger, &rec);
    assert_eq!(rec.starts, [false], "one session");

    // The simulator's own duplicate delivery (same body, mid-meeting) through the ingress.
    let m2 = start(
        &sim,
        &host,
        script(6, vec![(8, Fault::DuplicateWebhook)]),
        Product::ContactCenter,
        Pace::Fast,
    );
    let l2 = finish(&host, &m2).await;
    let started = l2.webhooks_ending("rtms_started");
    assert!(
        started.len() >= 2,
        "the duplicate was delivered: {started:?}"
    );
    assert!(started.iter().all(|w| w.status == Some(200)), "{started:?}");
    assert_eq!(l2.counters.signaling_connections, 1);
    let rec = host.record(m2.stream_id());
    assert_exactly_once(&l2, &rec);
    assert_eq!(host.svc.metrics().sessions_started, 2);
}
