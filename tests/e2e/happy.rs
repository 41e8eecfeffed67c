//! The happy path: each of the four products over wss (unified sockets), and split sockets
//! once; every transcript line, chat message and audio frame reaches the plugins once, in
//! order, and the session ends with the meeting's stop reason.

use rtms_proto::Product;
use rtms_sim::{Pace, Simulator};

use crate::harness::*;

async fn happy(product: Product, tls: bool, split: bool) {
    let sim = Simulator::start(sim_config(tls)).await.expect("simulator");
    if tls {
        assert!(sim.signaling_url().starts_with("wss://"));
    }
    let host = start_host(
        &sim,
        Setup {
            split,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let meeting = start(&sim, &host, script(6, vec![]), product, Pace::Fast);
    let ledger = finish(&host, &meeting).await;
    let rec = host.record(meeting.stream_id());
    assert_exactly_once(&ledger, &rec);
    assert!(rec.count("audio") > 0 && rec.count("chat") == 2);
    assert_eq!(
        rec.end(),
        "stopped(6)",
        "the meeting ended normally (MEETING_ENDED)"
    );
    assert_writer_matches(&ledger, &host.writer_lines(meeting.stream_id()));
    assert_eq!(ledger.counters.signaling_connections, 1, "no reconnection");
    if split {
        assert!(
            ledger.counters.media_connections >= 3,
            "one media socket per kind"
        );
    } else {
        assert_eq!(
            ledger.counters.media_connections, 1,
            "one unified media socket"
        );
    }
    let m = host.svc.shutdown().await;
    let seq = m.plugins.get("seq").expect("seq metrics");
    assert_eq!(
        seq.delivered,
        rec.frames.len() as u64,
        "metrics count what the plugin got"
    );
}

#[tokio::test]
async fn meeting_over_wss() {
    happy(Product::Meeting, true, false).await;
}

#[tokio::test]
async fn webinar_over_wss() {
    happy(Product::Webinar, true, false).await;
}

#[tokio::test]
async fn video_sdk_over_wss() {
    happy(Product::VideoSdk, true, false).await;
}

#[tokio::test]
async fn contact_center_over_wss() {
    happy(Product::ContactCenter, true, false).await;
}

#[tokio::test]
async fn meeting_over_wss_with_split_sockets() {
    happy(Product::Meeting, true, true).await;
}

#[tokio::test]
async fn webinar_over_ws_with_split_sockets() {
    happy(Product::Webinar, false, true).await;
}
