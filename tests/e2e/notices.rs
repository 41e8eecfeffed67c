//! Zoom's concurrency notices (`meeting.rtms_concurrency_limited`, `*_near_limit`,
//! `rtms.start_failed`): counted in `/metrics`, emitted to the sinks as outputs of the host.
//! The event WebSocket's are in `event_ws`.

use hyper::StatusCode;
use rtms_proto::Product;
use rtms_proto::webhook::NoticeKind;
use rtms_sim::Simulator;
use serde_json::Value;

use crate::harness::*;
use crate::ops::Exposition;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_webhooks_reach_the_metrics_and_the_sinks() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let setup = Setup {
        admin: true,
        ..Default::default()
    };
    let mut host = start_host(&sim, setup, |_| {}).await;
    let m = start_live(&sim, &mut host, Product::Meeting).await;
    for kind in [
        NoticeKind::ConcurrencyLimited,
        NoticeKind::ConcurrencyNearLimit,
    ] {
        let sent = m
            .send_notice(kind)
            .expect("the meeting has a webhook target");
        within("the notice to be delivered", sent).await.unwrap();
    }
    let ledger = m.ledger();
    let notices: Vec<_> = ledger
        .webhooks
        .iter()
        .filter(|w| w.event.contains("concurrency"))
        .collect();
    assert_eq!(notices.len(), 2, "{:?}", ledger.webhooks);
    assert!(notices.iter().all(|w| w.status == Some(200)), "{notices:?}");
    let x = Exposition::scrape(&host).await;
    let count = |kind| x.get("rtms_concurrency_notices_total", &[("kind", kind)]);
    assert_eq!(count("concurrency_limited"), 1.0);
    assert_eq!(count("concurrency_near_limit"), 1.0);
    assert_eq!(count("start_failed"), 0.0);
    assert_eq!(
        x.get(
            "rtms_webhooks_total",
            &[
                ("event", "meeting.rtms_concurrency_limited"),
                ("outcome", "accepted")
            ]
        ),
        1.0
    );
    // The stream goes on.
    assert_eq!(host.svc.sessions().len(), 1);

    // After the shutdown the sink is flushed: one output per notice.
    let meeting = m.meeting_id().to_owned();
    let outputs = host.dir.path().join("outputs.jsonl");
    let Host { svc, dir, .. } = host;
    within("shutdown", svc.shutdown()).await;
    let got: Vec<Value> = std::fs::read_to_string(&outputs)
        .expect("outputs.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("output JSON"))
        .filter(|v: &Value| v["plugin"] == "rtms-host")
        .collect();
    let kinds: Vec<&str> = got.iter().filter_map(|v| v["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["zoom.concurrency_limited", "zoom.concurrency_near_limit"]
    );
    for v in &got {
        assert_eq!(v["meeting_id"], meeting.as_str(), "{v}");
        assert_eq!(
            v["data"]["payload"]["meeting_uuid"],
            meeting.as_str(),
            "{v}"
        );
        assert!(v["message"].as_str().unwrap().contains(&meeting), "{v}");
    }
    assert_eq!(got[0]["severity"], "critical");
    assert_eq!(got[1]["severity"], "warning");
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_notice_is_counted_once() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let setup = Setup {
        admin: true,
        ..Default::default()
    };
    let host = start_host(&sim, setup, |_| {}).await;
    let secret = sim.config().webhook_secret.clone();
    let body = br#"{"event":"rtms.start_failed","event_ts":42,"payload":{"meeting_uuid":"m=="}}"#;
    for _ in 0..2 {
        let (status, _) = post(&host, &signed(&secret, now_secs(), body), body.to_vec()).await;
        assert_eq!(status, StatusCode::OK);
    }
    let x = Exposition::scrape(&host).await;
    assert_eq!(
        x.get(
            "rtms_concurrency_notices_total",
            &[("kind", "start_failed")]
        ),
        1.0
    );
    assert_eq!(
        x.get(
            "rtms_webhooks_total",
            &[("event", "rtms.start_failed"), ("outcome", "duplicate")]
        ),
        1.0
    );
}
