//! Network blips and the end of a stream, against the simulator: repeated short outages each
//! get the whole reconnection budget, unified mode copes with a signaling reply that names
//! per-type media URLs only, and the drain after a stop is bounded while keep-alives are
//! still answered.

use std::time::{Duration, Instant};

use rtms_host::sandbox::bindings::MediaKind;
use rtms_proto::{Product, WebhookAction, WebhookEvent};
use rtms_sim::{Fault, MeetingScript, Pace, SimConfig, Simulator};

use crate::harness::*;

/// Slack for scheduling and connection set-up on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(1);

#[tokio::test]
async fn three_half_second_outages_two_seconds_apart_are_survived_with_every_line_delivered() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    // Each outage takes two attempts (200-240 ms, then 400-480 ms): six in under 6 s on a
    // budget of three, so the budget must come back once the stream is up for 1 s again.
    let host = start_host(&sim, Setup::default(), |p| {
        let r = &mut p.rtms;
        r.reconnect_max_attempts = 3;
        r.reconnect_base_delay = Duration::from_millis(200);
        r.reconnect_max_delay = Duration::from_millis(2_000);
        r.reconnect_jitter_percent = 20;
        r.reconnect_healthy_after = Duration::from_millis(1_000);
    })
    .await;
    // 40 lines of 200 ms: 8 s of meeting, outages at 1.5 s, 3.5 s and 5.5 s.
    let mut b = MeetingScript::builder().synthetic_speech(2, 40, 10);
    for at in [1_500, 3_500, 5_500] {
        b = b
            .fault_at(
                at,
                Fault::RefuseConnections {
                    duration: Duration::from_millis(500),
                },
            )
            .fault_at(at, Fault::DropSignaling);
    }
    let meeting = start(
        &sim,
        &host,
        b.build().expect("script"),
        Product::Meeting,
        Pace::Realtime,
    );
    let ledger = finish(&host, &meeting).await;
    let rec = host.record(meeting.stream_id());
    assert_exactly_once(&ledger, &rec);
    assert_eq!(
        rec.end(),
        "stopped(6)",
        "the stream lived to the script's end"
    );
    assert_eq!(rec.starts, [false], "one session across the outages");
    assert_eq!(
        ledger.counters.signaling_handshakes_ok, 4,
        "three reconnections"
    );
    assert!(
        ledger.counters.connections_refused >= 3,
        "each outage refused an attempt: {:?}",
        ledger.counters
    );
    let sent = ledger_transcript(&ledger);
    assert_eq!(
        sent.last().map(String::as_str),
        Some("synthetic line 40 from 1002"),
        "the last line was sent and delivered: {sent:?}"
    );
    assert_writer_matches(&ledger, &host.writer_lines(meeting.stream_id()));
}

#[tokio::test]
async fn unified_mode_streams_when_msg_2_names_per_type_urls_only() {
    let sim = Simulator::start(SimConfig {
        omit_all_media_url: true,
        ..sim_config(false)
    })
    .await
    .expect("simulator");
    let host = start_host(&sim, Setup::default(), |_| {}).await;
    let meeting = start(&sim, &host, script(8, vec![]), Product::Webinar, Pace::Fast);
    let ledger = finish(&host, &meeting).await;
    let rec = host.record(meeting.stream_id());
    assert_exactly_once(&ledger, &rec);
    assert_eq!(rec.end(), "stopped(6)");
    assert_eq!(
        ledger.counters.signaling_handshakes_ok, 1,
        "no retry needed"
    );
    assert_eq!(
        ledger.counters.media_handshakes_ok, 3,
        "one socket each for audio, transcript and chat"
    );
    assert_eq!(ledger.counters.handshakes_rejected, 0);
    assert_writer_matches(&ledger, &host.writer_lines(meeting.stream_id()));
}

#[tokio::test]
async fn after_a_stop_webhook_the_drain_ends_within_the_bound_and_keepalives_are_answered() {
    let bound = Duration::from_millis(1_500);
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let mut host = start_host(&sim, Setup::default(), |p| p.rtms.stop_drain = bound).await;
    // One speaker: after the first events signaling stays idle, so the simulator sends a
    // keep-alive request on it every 200 ms while audio keeps the media socket busy.
    let script = MeetingScript::builder()
        .synthetic_speech(1, 60, 25)
        .build()
        .expect("script");
    let meeting = start(&sim, &host, script, Product::Meeting, Pace::Realtime);
    wait_frame(&mut host, meeting.stream_id(), MediaKind::Transcript).await;
    // The stopped webhook reaches the host while the simulator keeps streaming.
    let started = meeting.started_event();
    let stopped = WebhookEvent {
        details: Default::default(),
        action: WebhookAction::Stopped,
        event: started.product.event_name(WebhookAction::Stopped),
        server_url: None,
        operator_id: None,
        stop_reason: Some(6),
        ..started
    };
    let body = stopped.to_body();
    let headers = signed(&sim.config().webhook_secret, now_secs(), &body);
    while host.frames.try_recv().is_ok() {}
    let answers_before = meeting.ledger().counters.keepalive_answers;
    let t0 = Instant::now();
    assert_eq!(post(&host, &headers, body).await.0, hyper::StatusCode::OK);
    host.idle().await;
    let drained = t0.elapsed();
    assert!(
        drained >= bound,
        "the server kept sending, so the drain ran to its bound: {drained:?}"
    );
    assert!(
        drained < bound + SLACK,
        "the drain ended within the bound: {drained:?}"
    );
    let l = meeting.ledger();
    assert!(
        l.counters.keepalive_answers >= answers_before + 3,
        "keep-alives sent during the drain were answered: {} before, {} after",
        answers_before,
        l.counters.keepalive_answers
    );
    assert_eq!(l.counters.keepalive_timeouts, 0);
    let mut during = 0;
    while host.frames.try_recv().is_ok() {
        during += 1;
    }
    assert!(
        during > 0,
        "frames arriving during the drain were delivered"
    );
    assert_eq!(host.record(meeting.stream_id()).end(), "stopped(6)");
    assert!(!meeting.is_finished(), "the simulator was still streaming");
    meeting.stop(6);
}

/// The drain bound covers the whole drain: a plugin too slow for the stream keeps its `block`
/// queue full, so every frame waits for room, and the server keeps the sockets full; the drain
/// still ends at `rtms.stop_drain_ms`, not when the server stops sending.
#[tokio::test]
async fn the_stop_drain_bound_holds_while_a_slow_plugin_keeps_its_queue_full() {
    let bound = Duration::from_millis(1_000);
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let mut host = start_host(
        &sim,
        Setup {
            writer: false,
            seq_queue: "capacity = 8\non_full = \"block\"\nblock_timeout_ms = 10000",
            // 100 ms per frame: ten frames a second, against fifty of audio alone.
            seq_extra: "[plugin.batch]\nmax_frames = 1\n[plugin.config]\ndelay_ms = 100\n",
            ..Setup::default()
        },
        |p| p.rtms.stop_drain = bound,
    )
    .await;
    let script = MeetingScript::builder()
        .synthetic_speech(1, 60, 25)
        .build()
        .expect("script");
    let meeting = start(&sim, &host, script, Product::Meeting, Pace::Realtime);
    wait_frame(&mut host, meeting.stream_id(), MediaKind::Audio).await;
    let started = meeting.started_event();
    let stopped = WebhookEvent {
        details: Default::default(),
        action: WebhookAction::Stopped,
        event: started.product.event_name(WebhookAction::Stopped),
        server_url: None,
        operator_id: None,
        stop_reason: Some(6),
        ..started
    };
    let body = stopped.to_body();
    let headers = signed(&sim.config().webhook_secret, now_secs(), &body);
    let t0 = Instant::now();
    assert_eq!(post(&host, &headers, body).await.0, hyper::StatusCode::OK);
    within("the stream to end", host.idle()).await;
    let drained = t0.elapsed();
    // Besides the drain: the stop may wait for one frame's room (100 ms) before the drain
    // starts, and after it the plugin works off its queue of 8 (800 ms) before its session
    // ends. Without the bound covering the whole drain, it would last as long as the server
    // kept sending (a minute here; `within` gives up after 15 s).
    let queue_work = Duration::from_millis(900);
    assert!(
        drained < bound + queue_work + SLACK,
        "the drain ended within its bound although the plugin's queue stayed full: {drained:?}"
    );
    assert_eq!(host.record(meeting.stream_id()).end(), "stopped(6)");
    assert!(!meeting.is_finished(), "the simulator was still streaming");
    meeting.stop(6);
}
