//! Faults from the simulator, each ending with the exactly-once-in-order check of what was
//! sent while the host was connected: dropped sockets, keep-alive loss both ways, handshake
//! rejections (transient and permanent), refused connections, failover scenarios 1-3, stop
//! reasons and no reconnection after a stop.
//!
//! Meetings play at `Pace::Fast`, so the simulator holds its timeline while the host is away
//! and the whole script must arrive.

use std::time::Duration;

use rtms_proto::Product;
use rtms_proto::codes::status;
use rtms_sim::{Fault, Pace, Simulator, SocketSel};

use crate::harness::*;

/// The stream carried on after the fault to the script's last line. (Frames the simulator
/// had queued on a socket when the fault dropped it are lost, as on Zoom, and never enter
/// the ledger; everything else arrives.)
fn assert_resumed_to_the_end(ledger: &rtms_sim::Ledger) {
    let sent = ledger_transcript(ledger);
    assert_eq!(
        sent.last().map(String::as_str),
        Some("synthetic line 8 from 1002"),
        "the meeting resumed and played to its end: {sent:?}"
    );
    assert!(
        sent.len() >= 6,
        "at most what was in flight was lost: {sent:?}"
    );
}

/// Plays a fast meeting with `faults` against a fresh host and checks the record.
async fn survive(
    product: Product,
    faults: Vec<(u64, Fault)>,
    tweak: impl FnOnce(&mut rtms_config::Pipeline),
) -> (rtms_sim::Ledger, Record) {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let host = start_host(&sim, Setup::default(), tweak).await;
    let meeting = start(&sim, &host, script(8, faults), product, Pace::Fast);
    let ledger = finish(&host, &meeting).await;
    let rec = host.record(meeting.stream_id());
    assert_exactly_once(&ledger, &rec);
    assert_resumed_to_the_end(&ledger);
    assert_eq!(rec.end(), "stopped(6)");
    assert_eq!(rec.starts, [false], "one session across reconnections");
    assert_writer_matches(&ledger, &host.writer_lines(meeting.stream_id()));
    (ledger, rec)
}

#[tokio::test]
async fn signaling_socket_drop_is_survived() {
    let (l, _) = survive(Product::Meeting, vec![(12, Fault::DropSignaling)], |_| {}).await;
    assert_eq!(l.counters.signaling_connections, 2);
    assert_eq!(l.counters.signaling_handshakes_ok, 2);
}

#[tokio::test]
async fn media_socket_drop_is_survived_with_signaling_kept() {
    let (l, _) = survive(
        Product::Webinar,
        vec![(12, Fault::DropMedia { kind: None })],
        |_| {},
    )
    .await;
    assert_eq!(l.counters.signaling_connections, 1, "signaling stays up");
    assert_eq!(l.counters.media_handshakes_ok, 2);
}

#[tokio::test]
async fn server_silence_is_detected_by_the_keepalive_timeout() {
    // The server pauses the stream and stops its keep-alive requests: nothing arrives, the
    // client's keepalive_timeout (800 ms) fires and it reconnects.
    let faults = vec![
        (12, Fault::StopKeepalives),
        (
            12,
            Fault::Pause {
                duration: Some(Duration::from_millis(2000)),
            },
        ),
    ];
    let (l, _) = survive(Product::VideoSdk, faults, |p| {
        p.rtms.keepalive_interval = Duration::from_millis(200);
        p.rtms.keepalive_timeout = Duration::from_millis(800);
    })
    .await;
    assert!(
        l.counters.signaling_connections >= 2,
        "the silent stream was reopened"
    );
    assert_eq!(
        l.counters.keepalive_timeouts, 0,
        "the client noticed, not the server"
    );
}

#[tokio::test]
async fn ignored_keepalive_answers_make_the_server_end_the_socket() {
    // The server throws the client's answers away, so after 3 unanswered requests it ends the
    // socket; the client reconnects.
    let faults = vec![
        (
            12,
            Fault::IgnoreKeepaliveAnswers {
                socket: SocketSel::Any,
            },
        ),
        (
            12,
            Fault::Pause {
                duration: Some(Duration::from_millis(1500)),
            },
        ),
    ];
    let (l, _) = survive(Product::Meeting, faults, |p| {
        p.rtms.reconnect_max_attempts = 20;
    })
    .await;
    assert!(
        l.counters.keepalive_timeouts >= 1,
        "the server ended a socket: {:?}",
        l.counters
    );
    assert!(l.counters.keepalive_answers_ignored >= 3);
    assert!(l.counters.signaling_connections + l.counters.media_connections >= 3);
}

#[tokio::test]
async fn transient_handshake_rejections_are_retried() {
    // After a signaling drop, the next two signaling handshakes are refused.
    let reject = Fault::RejectHandshakes {
        socket: SocketSel::Signaling,
        count: 2,
        status: status::INVALID_SIGNATURE,
        reason: "signature check failed".into(),
    };
    let (l, _) = survive(
        Product::ContactCenter,
        vec![(12, reject), (12, Fault::DropSignaling)],
        |_| {},
    )
    .await;
    assert_eq!(l.counters.handshakes_rejected, 2);
    assert_eq!(l.counters.signaling_handshakes_ok, 2);
}

#[tokio::test]
async fn first_connection_rejected_once_then_accepted() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let host = start_host(&sim, Setup::default(), |_| {}).await;
    // No webhook URL: the fault is armed before the host hears of the stream.
    let meeting = start_unannounced(&sim, script(6, vec![]));
    meeting.inject(Fault::RejectHandshakes {
        socket: SocketSel::Any,
        count: 1,
        status: status::INVALID_MEDIA_PARAMS,
        reason: "try again".into(),
    });
    assert_eq!(
        post_started(&sim, &host, &meeting).await,
        hyper::StatusCode::OK
    );
    let ledger = finish(&host, &meeting).await;
    let rec = host.record(meeting.stream_id());
    assert_exactly_once(&ledger, &rec);
    assert_eq!(rec.end(), "stopped(6)");
    assert_eq!(ledger.counters.handshakes_rejected, 1);
    assert_eq!(ledger.counters.signaling_connections, 2);
}

#[tokio::test]
async fn permanent_rejection_of_a_new_stream_gives_up_without_a_session() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let host = start_host(&sim, Setup::default(), |p| {
        p.rtms.connection_max_attempts = 3
    })
    .await;
    let meeting = start_unannounced(&sim, script(6, vec![]));
    meeting.inject(Fault::RejectHandshakes {
        socket: SocketSel::Signaling,
        count: u32::MAX,
        status: status::INVALID_SIGNATURE,
        reason: "invalid signature".into(),
    });
    assert_eq!(
        post_started(&sim, &host, &meeting).await,
        hyper::StatusCode::OK
    );
    assert_eq!(host.svc.sessions().len(), 1, "the webhook opened a stream");
    host.idle().await;
    let l = meeting.ledger();
    assert_eq!(
        l.counters.handshakes_rejected, 3,
        "exactly connection_max_attempts attempts"
    );
    assert_eq!(l.counters.signaling_handshakes_ok, 0);
    assert!(
        !host.seq_file(meeting.stream_id()).exists(),
        "no session was opened for plugins"
    );
    let m = host.svc.metrics();
    assert_eq!(m.sessions_started, 0);
    meeting.stop(6);
}

#[tokio::test]
async fn permanent_rejection_after_a_drop_ends_with_connection_lost() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let mut host = start_host(&sim, Setup::default(), |p| {
        p.rtms.reconnect_max_attempts = 3
    })
    .await;
    let reject = Fault::RejectHandshakes {
        socket: SocketSel::Signaling,
        count: u32::MAX,
        status: status::INVALID_RTMS_STREAM_ID,
        reason: "stream gone".into(),
    };
    // Realtime and long, so the faults land mid-meeting, after a transcript line arrived.
    let meeting = start_live(&sim, &mut host, Product::Meeting).await;
    meeting.inject(reject);
    meeting.inject(Fault::DropSignaling);
    host.idle().await;
    let l = meeting.ledger();
    let rec = host.record(meeting.stream_id());
    assert_exactly_once(&l, &rec);
    assert!(
        ledger_transcript(&l).len() < 400,
        "the script was cut short"
    );
    assert_eq!(
        rec.end(),
        "connection-lost",
        "the plugin learns the stream is lost"
    );
    assert_eq!(
        l.counters.handshakes_rejected, 3,
        "exactly reconnect_max_attempts attempts"
    );
    assert_eq!(l.counters.signaling_handshakes_ok, 1);
    meeting.stop(6);
}

#[tokio::test]
async fn refused_connections_are_outlasted() {
    let faults = vec![
        (
            12,
            Fault::RefuseConnections {
                duration: Duration::from_millis(400),
            },
        ),
        (12, Fault::DropSignaling),
    ];
    let (l, _) = survive(Product::Meeting, faults, |p| {
        p.rtms.reconnect_max_attempts = 20
    })
    .await;
    assert!(l.counters.connections_refused >= 1);
    assert_eq!(l.counters.signaling_handshakes_ok, 2);
}

#[tokio::test]
async fn failover_scenario_1_new_started_webhook() {
    let (l, _) = survive(Product::Meeting, vec![(12, Fault::Failover)], |_| {}).await;
    assert!(
        l.webhooks_ending("rtms_started").len() >= 2,
        "a second started webhook"
    );
    assert!(
        l.webhooks_ending("rtms_started")
            .iter()
            .all(|w| w.status == Some(200))
    );
    assert_eq!(l.counters.signaling_handshakes_ok, 2);
}

#[tokio::test]
async fn failover_scenario_2_interrupted_webhook() {
    let (l, _) = survive(
        Product::Webinar,
        vec![(12, Fault::InterruptSignaling)],
        |_| {},
    )
    .await;
    assert_eq!(l.webhooks_ending("rtms_interrupted").len(), 1);
    assert_eq!(l.counters.signaling_handshakes_ok, 2);
}

#[tokio::test]
async fn failover_scenario_3_media_interrupted() {
    let (l, _) = survive(Product::VideoSdk, vec![(12, Fault::InterruptMedia)], |_| {}).await;
    assert_eq!(l.counters.signaling_handshakes_ok, 1, "signaling kept");
    assert_eq!(l.counters.media_handshakes_ok, 2);
}

#[tokio::test]
async fn stop_reasons_reach_the_plugin_and_nothing_reconnects() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let mut host = start_host(&sim, Setup::default(), |_| {}).await;
    let mut meetings = Vec::new();
    for (i, reason) in [1u32, 3, 8, 19].into_iter().enumerate() {
        let faults = vec![(10 + i as u64, Fault::Terminate { reason })];
        meetings.push((
            reason,
            start(&sim, &host, script(8, faults), Product::Meeting, Pace::Fast),
        ));
    }
    for (_, m) in &meetings {
        within("meeting end", m.finished()).await;
    }
    host.idle().await;
    for (reason, m) in &meetings {
        let l = m.ledger();
        let rec = host.record(m.stream_id());
        assert_exactly_once(&l, &rec);
        assert_eq!(l.stop_reason, Some(*reason));
        assert_eq!(rec.end(), format!("stopped({reason})"));
        assert_eq!(
            l.counters.signaling_connections, 1,
            "no reconnection after the stop"
        );
    }
    // A live realtime meeting stopped from outside, mid-script.
    let m = start_live(&sim, &mut host, Product::Webinar).await;
    m.stop(2);
    let l = finish(&host, &m).await;
    let rec = host.record(m.stream_id());
    assert_exactly_once(&l, &rec);
    assert_eq!(rec.end(), "stopped(2)");
    assert!(ledger_transcript(&l).len() < 400, "stopped mid-script");
    assert_eq!(l.counters.signaling_connections, 1);
    assert_eq!(host.svc.sessions().len(), 0);
}
