//! Zoom's event WebSocket as the intake: the host opens the simulator's event WebSocket with
//! a Server-to-Server OAuth token, receives the started and stopped events there (no webhook is
//! POSTed), sends heartbeats, and reconnects when the connection drops.

use std::time::Duration;

use rtms_config::{EventWs, RestCredentials, Secret};
use rtms_proto::webhook::NoticeKind;
use rtms_sim::api::{ApiConfig, ZoomApi};
use rtms_sim::{MeetingOptions, Pace, Simulator};

use crate::harness::*;

async fn host_for(sim: &Simulator, api: &ZoomApi, heartbeat: Duration) -> Host {
    host_subscribed(sim, api, heartbeat, "sim-subscription").await
}

/// A host on the event WebSocket with `subscription`, with its admin listener (`/metrics`).
async fn host_subscribed(
    sim: &Simulator,
    api: &ZoomApi,
    heartbeat: Duration,
    subscription: &str,
) -> Host {
    let base = api.base_url();
    let url = api.event_ws_url();
    let subscription = subscription.to_owned();
    let setup = Setup {
        admin: true,
        ..Default::default()
    };
    start_host(sim, setup, move |p| {
        p.zoom.api_base_url = base.clone();
        p.zoom.oauth_base_url = base;
        p.zoom.rest = Some(RestCredentials {
            account_id: "sim-account".into(),
            client_id: "sim-oauth-client".into(),
            client_secret: Secret::new("sim-oauth-secret"),
        });
        p.zoom.event_ws = Some(EventWs {
            url,
            subscription_id: subscription,
            heartbeat,
        });
    })
    .await
}

/// A fast meeting whose events go only through the event WebSocket.
async fn meeting_over_ws(sim: &Simulator, api: &ZoomApi, host: &Host) {
    let m = sim
        .start_meeting(
            script(10, vec![]),
            MeetingOptions {
                pace: Pace::Fast,
                webhook_url: None,
                ..Default::default()
            },
        )
        .unwrap();
    api.forward(&m);
    let ledger = finish(host, &m).await;
    assert!(!ledger_transcript(&ledger).is_empty());
    assert_writer_matches(&ledger, &host.writer_lines(m.stream_id()));
    assert!(
        ledger.webhooks.is_empty(),
        "no webhook was POSTed: {:?}",
        ledger.webhooks
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_over_the_event_websocket_start_and_stop_streams_and_it_reconnects() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, ApiConfig::default()).await.unwrap();
    let host = host_for(&sim, &api, Duration::from_secs(30)).await;
    eventually("the host to subscribe", || api.event_subscribers() == 1).await;
    meeting_over_ws(&sim, &api, &host).await;

    // The connection drops: the host reconnects (a fresh token) and the next meeting streams.
    api.drop_event_connections();
    eventually("the host to reconnect", || {
        api.counts().event_ws_connections == 2 && api.event_subscribers() == 1
    })
    .await;
    meeting_over_ws(&sim, &api, &host).await;
    assert_eq!(api.counts().event_ws_refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_notices_on_the_event_websocket_are_counted() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, ApiConfig::default()).await.unwrap();
    let host = host_for(&sim, &api, Duration::from_secs(30)).await;
    eventually("the host to subscribe", || api.event_subscribers() == 1).await;
    let m = sim
        .start_meeting(
            script(10, vec![]),
            MeetingOptions {
                pace: Pace::Fast,
                webhook_url: None,
                ..Default::default()
            },
        )
        .unwrap();
    api.publish_notice(NoticeKind::ConcurrencyLimited, &m);
    api.publish_notice(NoticeKind::StartFailed, &m);
    // The notices arrive on the event WebSocket, not as a request to wait for: poll.
    within("both notices in /metrics", async {
        loop {
            let (_, text) = crate::ops::admin(&host, hyper::Method::GET, "/metrics", None).await;
            if text.contains(r#"rtms_concurrency_notices_total{kind="concurrency_limited"} 1"#)
                && text.contains(r#"rtms_concurrency_notices_total{kind="start_failed"} 1"#)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_the_connection_open() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(
        &sim,
        ApiConfig {
            heartbeat_timeout: Duration::from_millis(600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let _host = host_for(&sim, &api, Duration::from_millis(150)).await;
    // Ten heartbeats span more than two of the server's timeouts: the first connection lives.
    eventually("ten heartbeats", || api.counts().heartbeats >= 10).await;
    assert_eq!(api.counts().event_ws_connections, 1);
}

/// A connection Zoom refuses (here: a subscription it does not know) is retried with backoff,
/// and every failed attempt is counted in `rtms_event_ws_failures_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_counted_in_the_metrics() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let api = ZoomApi::start(&sim, ApiConfig::default()).await.unwrap();
    let host = host_subscribed(&sim, &api, Duration::from_secs(30), "not-ours").await;
    eventually("the simulator to refuse the host", || {
        api.counts().event_ws_refused >= 1
    })
    .await;
    let failures = within("the failure in /metrics", async {
        loop {
            let (_, text) = crate::ops::admin(&host, hyper::Method::GET, "/metrics", None).await;
            let n = text
                .lines()
                .find_map(|l| l.strip_prefix("rtms_event_ws_failures_total"))
                .and_then(|v| v.trim_start_matches("{}").trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            if n >= 1.0 {
                break n;
            }

            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(failures <= api.counts().event_ws_refused as f64);
    assert_eq!(api.event_subscribers(), 0);
}
