//! Retry and reconnection timing against the configured delays, in real time with small
//! values. Only bounds that cannot flake are checked: lower bounds that the host's own
//! sleeps guarantee, generous upper bounds, and exact attempt counts from the simulator's
//! ledger. (The client crate checks the exact delays with paused time.)

use std::time::{Duration, Instant};

use rtms_host::sandbox::bindings::MediaKind;
use rtms_proto::Product;
use rtms_proto::codes::status;
use rtms_sim::{Fault, Simulator, SocketSel};

use crate::harness::*;

/// Slack for scheduling and connection set-up on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(5);

#[tokio::test]
async fn first_connection_retries_wait_the_configured_delay() {
    let delay = Duration::from_millis(250);
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let mut host = start_host(&sim, Setup::default(), |p| {
        p.rtms.connection_retry_delay = delay;
        p.rtms.connection_max_attempts = 5;
    })
    .await;
    let meeting = start_unannounced(&sim, script(4, vec![]));
    meeting.inject(Fault::RejectHandshakes {
        socket: SocketSel::Signaling,
        count: 3,
        status: status::INVALID_SIGNATURE,
        reason: "not yet".into(),
    });
    let t0 = Instant::now();
    assert_eq!(
        post_started(&sim, &host, &meeting).await,
        hyper::StatusCode::OK
    );
    let first = wait_frame(&mut host, meeting.stream_id(), MediaKind::Transcript).await;
    let took = first - t0;
    assert!(
        took >= delay * 3,
        "three refused attempts, each followed by the {delay:?} retry delay, took only {took:?}"
    );
    assert!(took < delay * 3 + SLACK, "took {took:?}");
    let ledger = finish(&host, &meeting).await;
    assert_eq!(ledger.counters.handshakes_rejected, 3);
    assert_eq!(ledger.counters.signaling_connections, 4);
    assert_exactly_once(&ledger, &host.record(meeting.stream_id()));
}

#[tokio::test]
async fn reconnection_budget_and_backoff_bounds_are_kept() {
    let base = Duration::from_millis(100);
    let max = Duration::from_millis(200);
    let wait = Duration::from_millis(500);
    let attempts = 4u32;
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let mut host = start_host(&sim, Setup::default(), |p| {
        p.rtms.reconnect_max_attempts = attempts;
        p.rtms.reconnect_base_delay = base;
        p.rtms.reconnect_max_delay = max;
        p.rtms.webhook_wait_timeout = wait;
    })
    .await;
    let meeting = start_live(&sim, &mut host, Product::Meeting).await;
    meeting.inject(Fault::RefuseConnections {
        duration: Duration::from_secs(60),
    });
    let t0 = Instant::now();
    meeting.inject(Fault::DropSignaling);
    host.idle().await;
    let took = t0.elapsed();
    // Attempt n waits d = min(base * 2^n, max) plus up to 20 % jitter, never above max.
    let floors: Duration = (0..attempts).map(|n| (base * 2u32.pow(n)).min(max)).sum();
    let bounds: Duration = (0..attempts)
        .map(|n| (base * 2u32.pow(n)).mul_f64(1.2).min(max))
        .sum();
    assert!(
        took >= floors + wait,
        "gave up before {attempts} delays of at least {floors:?} and {wait:?} for a webhook: {took:?}"
    );
    assert!(
        took < bounds + wait + SLACK,
        "{attempts} attempts (delays up to {bounds:?}) and {wait:?} took {took:?}"
    );
    let l = meeting.ledger();
    assert_eq!(
        l.counters.connections_refused,
        u64::from(attempts),
        "exactly reconnect_max_attempts attempts"
    );
    let rec = host.record(meeting.stream_id());
    assert_exactly_once(&l, &rec);
    assert_eq!(rec.end(), "connection-lost");
    meeting.stop(6);
}

#[tokio::test]
async fn a_dropped_socket_is_reopened_within_the_first_backoff_bound() {
    let base = Duration::from_millis(300);
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let mut host = start_host(&sim, Setup::default(), |p| {
        p.rtms.reconnect_base_delay = base;
        p.rtms.reconnect_max_delay = base;
    })
    .await;
    let meeting = start_live(&sim, &mut host, Product::Webinar).await;
    let t0 = Instant::now();
    meeting.inject(Fault::DropSignaling);
    eventually("the second signaling handshake", || {
        meeting.ledger().counters.signaling_handshakes_ok >= 2
    })
    .await;
    let took = t0.elapsed();
    assert!(took < base + SLACK, "reconnected after {took:?}");
    meeting.stop(6);
    let l = finish(&host, &meeting).await;
    assert_eq!(l.counters.signaling_handshakes_ok, 2);
    let rec = host.record(meeting.stream_id());
    assert_exactly_once(&l, &rec);
    assert_eq!(rec.end(), "stopped(6)");
}
