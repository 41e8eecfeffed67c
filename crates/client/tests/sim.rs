//! End-to-end tests against the real Zoom simulator (`rtms-sim`): webhooks through the
//! ingress, sessions over real WebSockets (ws and wss), faults and Zoom's failover scenarios.

use std::sync::Arc;
use std::time::Duration;

use rtms_client::ingress::{IngressConfig, serve};
use rtms_client::{
    AllowList, ClientConfig, CollectingSink, EndReason, MediaKind, MediaMode, Resilience, Sessions,
    WsConnector,
};
use rtms_proto::Product;
use rtms_sim::{Fault, MeetingOptions, MeetingScript, Pace, SimConfig, Simulator, SocketSel};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every test must finish well within this.
const LIMIT: Duration = Duration::from_secs(20);

struct Host {
    sessions: Sessions<CollectingSink, WsConnector>,
    sink: CollectingSink,
    webhook_url: String,
    _stop: tokio_util::sync::DropGuard,
}

fn sim_config(tls: bool) -> SimConfig {
    SimConfig {
        tls,
        keepalive_interval: Duration::from_millis(200),
        signaling_grace: Duration::from_secs(10),
        media_grace: Duration::from_secs(10),
        ..Default::default()
    }
}

fn client_config(sim: &Simulator, mode: MediaMode) -> ClientConfig {
    ClientConfig {
        client_id: sim.config().client_id.clone(),
        client_secret: sim.config().client_secret.clone(),
        mode,
        events: vec![2, 3, 4, 7],
        resilience: Resilience {
            connection_timeout: Duration::from_secs(2),
            connection_retry_delay: Duration::from_millis(100),
            reconnect_base_delay: Duration::from_millis(100),
            reconnect_max_delay: Duration::from_millis(400),
            keepalive_timeout: Duration::from_millis(1500),
            keepalive_interval: Duration::from_millis(500),
            webhook_wait_timeout: Duration::from_secs(2),
            ..Default::default()
        },
        allow: AllowList::loopback(),
        ..Default::default()
    }
}

async fn host(sim: &Simulator, cfg: ClientConfig) -> Host {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let connector = match sim.ca_pem() {
        Some(pem) => WsConnector::with_ca_pem(&pem).expect("simulator CA"),
        None => WsConnector::new(None).expect("connector"),
    };
    let sink = CollectingSink::new();
    let sessions = Sessions::new(cfg, connector, sink.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let ingress = IngressConfig {
        secret_token: sim.config().webhook_secret.clone(),
        ..Default::default()
    };
    tokio::spawn(serve(
        listener,
        ingress,
        Arc::new(sessions.clone()),
        stop.clone(),
    ));
    Host {
        sessions,
        sink,
        webhook_url: format!("http://{addr}/webhook"),
        _stop: stop.drop_guard(),
    }
}

fn script(faults: Vec<(u64, Fault)>) -> MeetingScript {
    let mut b = MeetingScript::builder()
        .synthetic_speech(2, 6, 10)
        .chat(50, 1001, "hello all");
    for (after, fault) in faults {
        b = b.fault_after_frames(after, fault);
    }
    b.build().expect("script")
}

struct Outcome {
    ledger: rtms_sim::Ledger,
    collected: rtms_client::Collected,
}

/// Plays a meeting against the host and returns what both sides saw.
async fn play(sim: &Simulator, h: &Host, product: Product, faults: Vec<(u64, Fault)>) -> Outcome {
    play_script(sim, h, product, script(faults), Pace::Fast).await
}

/// Plays `script` at `pace` against the host and returns what both sides saw.
async fn play_script(
    sim: &Simulator,
    h: &Host,
    product: Product,
    script: MeetingScript,
    pace: Pace,
) -> Outcome {
    let meeting = sim
        .start_meeting(
            script,
            MeetingOptions {
                product,
                pace,
                webhook_url: Some(h.webhook_url.clone()),
                ..Default::default()
            },
        )
        .expect("meeting");
    let stream_id = meeting.stream_id().to_owned();
    let run = async {
        let ledger = meeting.finished().await;
        let collected = h.sink.wait_for(&stream_id, |c| c.end.is_some()).await;
        Outcome { ledger, collected }
    };
    tokio::time::timeout(LIMIT, run)
        .await
        .expect("meeting did not finish in time")
}

fn count(c: &rtms_client::Collected, kind: MediaKind) -> u64 {
    c.frames.iter().filter(|f| f.kind == kind).count() as u64
}

fn assert_complete(o: &Outcome) {
    let (l, c) = (&o.ledger, &o.collected);
    let kinds: Vec<_> = c
        .frames
        .iter()
        .map(|f| (f.kind, f.user_id.clone()))
        .collect();
    eprintln!(
        "product {:?} info {:?} frames {:?} ledger {:?}",
        c.info.as_ref().map(|i| i.product),
        c.info,
        kinds,
        l.kinds
    );
    assert_eq!(
        count(c, MediaKind::Audio),
        l.count(rtms_sim::MediaKind::Audio)
    );
    assert_eq!(
        count(c, MediaKind::Transcript),
        l.count(rtms_sim::MediaKind::Transcript)
    );
    assert_eq!(
        count(c, MediaKind::Chat),
        l.count(rtms_sim::MediaKind::Chat)
    );
    assert!(l.count(rtms_sim::MediaKind::Audio) > 0);
}

fn assert_seq_dense(c: &rtms_client::Collected) {
    for (i, f) in c.frames.iter().enumerate() {
        assert_eq!(f.seq, i as u64, "seq is dense and in receive order");
    }
}

#[tokio::test]
async fn every_product_streams_completely_over_ws_unified() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let h = host(&sim, client_config(&sim, MediaMode::Unified)).await;
    for product in Product::ALL {
        let o = play(&sim, &h, product, vec![]).await;
        assert_complete(&o);
        assert_seq_dense(&o.collected);
        assert_eq!(o.collected.end, Some(EndReason::Stopped(6)), "{product:?}");
        assert_eq!(o.collected.info.as_ref().unwrap().product, product);
        assert_eq!(o.ledger.counters.signaling_connections, 1);
    }
    h.sessions.idle().await;
}

#[tokio::test]
async fn every_product_streams_completely_over_wss_split() {
    let sim = Simulator::start(sim_config(true)).await.unwrap();
    assert!(sim.signaling_url().starts_with("wss://"));
    let h = host(&sim, client_config(&sim, MediaMode::Split)).await;
    for product in Product::ALL {
        let o = play(&sim, &h, product, vec![]).await;
        assert_complete(&o);
        assert_eq!(o.collected.end, Some(EndReason::Stopped(6)), "{product:?}");
        assert!(
            o.ledger.counters.media_connections >= 2,
            "split mode opens several media sockets"
        );
    }
}

#[tokio::test]
async fn signaling_and_media_drops_are_survived() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let h = host(&sim, client_config(&sim, MediaMode::Unified)).await;
    let o = play(&sim, &h, Product::Meeting, vec![(10, Fault::DropSignaling)]).await;
    assert_eq!(o.collected.end, Some(EndReason::Stopped(6)));
    assert!(o.ledger.counters.signaling_connections >= 2);
    let o = play(
        &sim,
        &h,
        Product::Meeting,
        vec![(10, Fault::DropMedia { kind: None })],
    )
    .await;
    assert_eq!(o.collected.end, Some(EndReason::Stopped(6)));
    assert!(o.ledger.counters.media_connections >= 2);
    assert_seq_dense(&o.collected);
}

#[tokio::test]
async fn failover_scenarios_1_2_3_are_followed() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let h = host(&sim, client_config(&sim, MediaMode::Unified)).await;
    // Scenario 1: a new started webhook with a new URL.
    let o = play(&sim, &h, Product::Meeting, vec![(10, Fault::Failover)]).await;
    assert_eq!(o.collected.end, Some(EndReason::Stopped(6)));
    assert!(o.ledger.counters.signaling_handshakes_ok >= 2);
    // Scenario 2: interrupted webhook.
    let o = play(
        &sim,
        &h,
        Product::Meeting,
        vec![(10, Fault::InterruptSignaling)],
    )
    .await;
    assert_eq!(o.collected.end, Some(EndReason::Stopped(6)));
    assert!(o.ledger.counters.signaling_handshakes_ok >= 2);
    // Scenario 3: media only; signaling stays.
    let o = play(
        &sim,
        &h,
        Product::Meeting,
        vec![(10, Fault::InterruptMedia)],
    )
    .await;
    assert_eq!(o.collected.end, Some(EndReason::Stopped(6)));
    assert_eq!(
        o.ledger.counters.signaling_handshakes_ok, 1,
        "signaling kept"
    );
    assert!(o.ledger.counters.media_handshakes_ok >= 2);
}

#[tokio::test]
async fn terminate_ends_with_the_stop_reason_and_no_reconnect() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let h = host(&sim, client_config(&sim, MediaMode::Unified)).await;
    let o = play(
        &sim,
        &h,
        Product::Webinar,
        vec![(5, Fault::Terminate { reason: 1 })],
    )
    .await;
    assert_eq!(o.collected.end, Some(EndReason::Stopped(1)));
    h.sessions.idle().await;
    assert_eq!(o.ledger.counters.signaling_connections, 1);
}

#[tokio::test]
async fn rejected_and_refused_handshakes_are_retried() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let h = host(&sim, client_config(&sim, MediaMode::Unified)).await;
    let dup = Fault::RejectHandshakes {
        socket: SocketSel::Signaling,
        count: 1,
        status: 8,
        reason: "duplicate signal request".into(),
    };
    let o = play(
        &sim,
        &h,
        Product::Meeting,
        vec![(5, Fault::DropSignaling), (5, dup)],
    )
    .await;
    assert_eq!(o.collected.end, Some(EndReason::Stopped(6)));
    assert!(o.ledger.counters.handshakes_rejected >= 1);
    // Refused upgrades (HTTP 503) for 300 ms: enough attempts to outlast them.
    let mut cfg = client_config(&sim, MediaMode::Unified);
    cfg.resilience.reconnect_max_attempts = 10;
    let h = host(&sim, cfg).await;
    let refuse = Fault::RefuseConnections {
        duration: Duration::from_millis(300),
    };
    let o = play(
        &sim,
        &h,
        Product::Meeting,
        vec![(5, refuse), (5, Fault::DropSignaling)],
    )
    .await;
    assert_eq!(o.collected.end, Some(EndReason::Stopped(6)));
    assert!(o.ledger.counters.connections_refused >= 1);
}

#[tokio::test]
async fn silence_without_keepalives_is_detected_and_recovered() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let h = host(&sim, client_config(&sim, MediaMode::Unified)).await;
    let o = play(
        &sim,
        &h,
        Product::VideoSdk,
        vec![
            (
                5,
                Fault::Pause {
                    duration: Some(Duration::from_secs(3)),
                },
            ),
            (5, Fault::StopKeepalives),
        ],
    )
    .await;
    assert_eq!(o.collected.end, Some(EndReason::Stopped(6)));
    assert!(
        o.ledger.counters.signaling_connections >= 2,
        "the silent stream was reopened"
    );
}

#[tokio::test]
async fn duplicate_webhooks_do_not_start_a_second_session() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let h = host(&sim, client_config(&sim, MediaMode::Unified)).await;
    let o = play(
        &sim,
        &h,
        Product::ContactCenter,
        vec![(3, Fault::DuplicateWebhook)],
    )
    .await;
    assert_eq!(o.collected.end, Some(EndReason::Stopped(6)));
    assert_eq!(o.ledger.counters.signaling_connections, 1);
    assert_eq!(o.ledger.counters.duplicate_signaling_rejected, 0);
}

// === individual video ===

use rtms_client::video::{Follow, VideoFollow};
use rtms_sim::{EventKind, VideoSubscription};

/// Ann, Bo and Cy, and a script of video turning on and off.
fn video_script(duration_ms: u64, events: &[(u64, EventKind, i64)]) -> MeetingBuilderExt {
    let mut b = MeetingScript::builder()
        .participant(1, "Ann")
        .participant(2, "Bo")
        .participant(3, "Cy")
        .duration_ms(duration_ms);
    for &(at, kind, user) in events {
        b = b.event(at, kind, user);
    }
    b
}
type MeetingBuilderExt = rtms_sim::MeetingBuilder;

/// A client following video with `follow`, at most `max` at once, video only.
fn video_config(sim: &Simulator, follow: Follow, max: usize) -> ClientConfig {
    let mut cfg = client_config(sim, MediaMode::Unified);
    cfg.media_types = rtms_proto::codes::media_type::VIDEO;
    cfg.media_params.video = Some(rtms_proto::params::VideoParams {
        data_opt: Some(rtms_proto::params::data_opt::VIDEO_SINGLE_INDIVIDUAL_STREAM),
        fps: Some(10),
        ..Default::default()
    });
    cfg.video = Some(VideoFollow { follow, max });
    cfg
}

/// Plays `script` in real time (subscriptions answer events as they happen).
async fn play_video(sim: &Simulator, h: &Host, script: MeetingScript) -> Outcome {
    play_script(sim, h, Product::Meeting, script, Pace::Realtime).await
}

fn video_by_user(c: &rtms_client::Collected) -> std::collections::BTreeMap<i64, u64> {
    let mut m = std::collections::BTreeMap::new();
    for f in c.frames.iter().filter(|f| f.kind == MediaKind::Video) {
        *m.entry(f.user_id.parse::<i64>().expect("numeric user id"))
            .or_default() += 1;
    }
    m
}

fn sub(user_id: i64, subscribe: bool, status: u32) -> VideoSubscription {
    VideoSubscription {
        user_id,
        subscribe,
        status,
    }
}

#[tokio::test]
async fn individual_video_follows_participants_turning_video_on_and_off() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let h = host(&sim, video_config(&sim, Follow::FirstWithVideo, 2)).await;
    use EventKind::{VideoOff, VideoOn};
    let script = video_script(
        2600,
        &[
            (100, VideoOn, 1),
            (400, VideoOn, 2),
            (700, VideoOn, 3),
            (1100, VideoOff, 1),
            (1500, VideoOn, 1),
            (1900, VideoOff, 3),
        ],
    )
    .build()
    .unwrap();
    let o = play_video(&sim, &h, script).await;
    // Two at once, in the order video turned on; a place freed goes to the next in line.
    assert_eq!(
        o.ledger.video_subscriptions,
        vec![
            sub(1, true, 0),
            sub(2, true, 0),
            sub(1, false, 0),
            sub(3, true, 0),
            sub(3, false, 0),
            sub(1, true, 0),
        ]
    );
    let got = video_by_user(&o.collected);
    assert_eq!(
        got, o.ledger.video_by_user,
        "each participant's frames, exactly"
    );
    assert_eq!(
        got.len(),
        3,
        "all three were followed at some point: {got:?}"
    );
}

#[tokio::test]
async fn a_video_subscription_past_the_limit_is_refused_and_not_asked_again() {
    let sim = Simulator::start(SimConfig {
        individual_video_limit: 2,
        ..sim_config(false)
    })
    .await
    .unwrap();
    let h = host(&sim, video_config(&sim, Follow::FirstWithVideo, 3)).await;
    use EventKind::VideoOn;
    let script = video_script(
        1500,
        &[(100, VideoOn, 1), (300, VideoOn, 2), (500, VideoOn, 3)],
    )
    .build()
    .unwrap();
    let o = play_video(&sim, &h, script).await;
    let refused = rtms_proto::codes::status::INVALID_MEDIA_VIDEO_PARAMS;
    assert_eq!(
        o.ledger.video_subscriptions,
        vec![sub(1, true, 0), sub(2, true, 0), sub(3, true, refused)]
    );
    let got = video_by_user(&o.collected);
    assert_eq!(got, o.ledger.video_by_user);
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
}

#[tokio::test]
async fn video_subscriptions_are_sent_again_after_a_media_reconnection() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let h = host(
        &sim,
        video_config(&sim, Follow::Users(vec!["Bo".into()]), 1),
    )
    .await;
    let script = video_script(2000, &[(100, EventKind::VideoOn, 2)])
        .fault_at(700, Fault::DropMedia { kind: None })
        .build()
        .unwrap();
    let o = play_video(&sim, &h, script).await;
    assert_eq!(
        o.ledger.video_subscriptions,
        vec![sub(2, true, 0), sub(2, true, 0)],
        "asked once, and again on the new media connection"
    );
    assert!(o.ledger.counters.media_connections >= 2);
    let got = video_by_user(&o.collected);
    let sent = o.ledger.video_by_user[&2];
    assert!(got[&2] + o.ledger.counters.unconfirmed >= sent && got[&2] <= sent);
    assert_eq!(o.collected.end, Some(EndReason::Stopped(6)));
}
