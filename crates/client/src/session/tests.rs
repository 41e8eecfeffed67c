//! Session tests against in-memory peers ([`crate::testing`]) with paused time, so
//! reconnection timing is checked exactly against the configured backoff.

use std::time::Duration;

use rtms_proto::codes::media_type;
use rtms_proto::{Product, WebhookAction, WebhookEvent};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::allow::AllowList;
use crate::config::{ClientConfig, MediaMode};
use crate::frame::MediaKind;
use crate::sessions::Sessions;
use crate::sink::{CollectingSink, EndReason, GiveUp, StreamStatus};
use crate::testing::{ChanConnector, ServerEnd};

const SIG: &str = "ws://zoom/sig";

fn event(action: WebhookAction, url: Option<&str>, stop: Option<u32>) -> WebhookEvent {
    WebhookEvent {
        details: Default::default(),
        product: Product::Meeting,
        action,
        event: Product::Meeting.event_name(action),
        event_ts: 1,
        id: "m==".into(),
        stream_id: "s1".into(),
        server_url: url.map(str::to_owned),
        operator_id: Some("op".into()),
        stop_reason: stop,
    }
}

fn config() -> ClientConfig {
    ClientConfig {
        client_id: "cid".into(),
        client_secret: "secret".into(),
        allow: AllowList::new(["zoom", "other", "new", "b"], true).unwrap(),
        ..Default::default()
    }
}

struct Rig {
    sessions: Sessions<CollectingSink, ChanConnector>,
    sink: CollectingSink,
    connector: ChanConnector,
    accepted: UnboundedReceiver<ServerEnd>,
}

fn rig(cfg: ClientConfig) -> Rig {
    let (connector, accepted) = ChanConnector::new();
    let sink = CollectingSink::new();
    let sessions = Sessions::new(cfg, connector.clone(), sink.clone());
    Rig {
        sessions,
        sink,
        connector,
        accepted,
    }
}

impl Rig {
    async fn accept(&mut self) -> ServerEnd {
        self.accepted.recv().await.expect("connector dropped")
    }

    /// Accepts the signaling socket and answers msg 1 with status 0.
    async fn signaling(&mut self) -> (ServerEnd, Value) {
        let mut s = self.accept().await;
        assert!(s.url.ends_with("/sig"), "expected signaling, got {}", s.url);
        let hello = s.recv_json().await.expect("msg 1");
        s.send_json(
            json!({"msg_type":2,"status_code":0,"media_server":{"server_urls":{
            "all":"ws://zoom/all","audio":"ws://zoom/audio","transcript":"ws://zoom/transcript"}}}),
        );
        (s, hello)
    }

    /// Accepts a media socket and answers msg 3 with status 0.
    async fn media(&mut self) -> (ServerEnd, Value) {
        let mut m = self.accept().await;
        let hello = m.recv_json().await.expect("msg 3");
        m.send_json(json!({"msg_type":4,"status_code":0,"payload_encrypted":false,
            "media_params":{"audio":{"content_type":2,"sample_rate":3,"channel":1,"codec":1,"data_opt":1,"send_rate":20}}}));
        (m, hello)
    }

    /// Full unified connect: signaling + one media socket + msg 7.
    async fn connect(&mut self) -> (ServerEnd, ServerEnd) {
        let (mut s, _) = self.signaling().await;
        let (m, _) = self.media().await;
        let ack = s.recv_json().await.expect("msg 7");
        assert_eq!(ack["msg_type"], 7);
        (s, m)
    }

    async fn end(&self) -> EndReason {
        self.sink
            .wait_for("s1", |c| c.end.is_some())
            .await
            .end
            .unwrap()
    }

    async fn frames(&self, n: usize) -> Vec<crate::Frame> {
        self.sink
            .wait_for("s1", |c| c.frames.len() >= n)
            .await
            .frames
    }

    async fn status(&self, pred: impl Fn(&StreamStatus) -> bool) -> StreamStatus {
        let c = self
            .sink
            .wait_for("s1", |c| c.statuses.iter().any(&pred))
            .await;
        c.statuses.into_iter().rev().find(|s| pred(s)).unwrap()
    }
}

fn audio(n: u8) -> Value {
    json!({"msg_type":14,"content":{"user_id":1,"user_name":"A","data":base64_of(&[n; 4]),"timestamp":n}})
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test(start_paused = true)]
async fn happy_path_streams_frames_echoes_keepalives_and_stops_cleanly() {
    let mut cfg = config();
    cfg.events = vec![2, 3];
    let mut r = rig(cfg);
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (mut s, hello) = r.signaling().await;
    assert_eq!(hello["msg_type"], 1);
    assert_eq!(hello["protocol_version"], 1);
    assert_eq!(hello["meeting_uuid"], "m==");
    assert_eq!(
        hello["signature"],
        rtms_proto::sign::handshake_signature("cid", "secret", "m==", "s1")
    );
    let sub = s.recv_json().await.unwrap();
    assert_eq!(sub["msg_type"], 5);
    assert_eq!(sub["events"][1]["event_type"], 3);
    let (mut m, hello) = r.media().await;
    assert_eq!(m.url, "ws://zoom/all");
    assert_eq!(hello["media_type"], media_type::ALL);
    assert_eq!(
        s.recv_json().await.unwrap(),
        json!({"msg_type":7,"rtms_stream_id":"s1"})
    );

    m.send_json(audio(1));
    m.send_binary_json(json!({"msg_type":17,"content":{"user_id":2,"user_name":"B","data":"hi","timestamp":5,"start_time":1,"end_time":4,"language":9}}));
    s.send_json(
        json!({"msg_type":6,"event":{"event_type":3,"participants":[{"user_id":2}],"timestamp":6}}),
    );
    let frames = r.frames(3).await;
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [0, 1, 2]);
    let kinds: Vec<_> = frames.iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&MediaKind::Audio) && kinds.contains(&MediaKind::Transcript));
    assert!(kinds.contains(&MediaKind::Event));
    let info = r.sink.get("s1").unwrap().info.unwrap();
    assert_eq!(
        info.audio.sample_rate,
        Some(3),
        "confirmed params from msg 4"
    );
    assert_eq!(info.operator_id.as_deref(), Some("op"));

    m.send_json(json!({"msg_type":12,"timestamp":111,"sequence":7}));
    assert_eq!(
        m.recv_json().await.unwrap(),
        json!({"msg_type":13,"timestamp":111,"sequence":7})
    );
    s.send_binary_json(json!({"msg_type":12,"timestamp":222,"sequence":8}));
    assert_eq!(
        s.recv_json().await.unwrap(),
        json!({"msg_type":13,"timestamp":222,"sequence":8})
    );
    assert_eq!(r.sessions.snapshot("s1").unwrap().next_seq, 3);

    s.send_json(json!({"msg_type":8,"state":4,"reason":6,"timestamp":9}));
    assert_eq!(r.end().await, EndReason::Stopped(6));
    assert_eq!(
        m.rx.recv().await,
        Some(Message::Close(None)),
        "media closed with a close frame"
    );
    assert_eq!(
        s.rx.recv().await,
        Some(Message::Close(None)),
        "signaling closed with a close frame"
    );
    r.sessions.idle().await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(r.accepted.try_recv().is_err(), "no reconnect after a stop");
}

#[tokio::test(start_paused = true)]
async fn split_mode_opens_one_socket_per_type_with_fallback_to_all() {
    let mut cfg = config();
    cfg.mode = MediaMode::Split;
    cfg.media_types = media_type::AUDIO | media_type::TRANSCRIPT | media_type::CHAT;
    let mut r = rig(cfg);
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (mut s, _) = r.signaling().await;
    let mut urls = Vec::new();
    let mut socks = Vec::new();
    for _ in 0..3 {
        let (m, hello) = r.media().await;
        urls.push((m.url.clone(), hello["media_type"].as_u64().unwrap()));
        socks.push(m);
    }
    assert_eq!(
        urls,
        [
            ("ws://zoom/audio".to_owned(), 1),
            ("ws://zoom/transcript".to_owned(), 8),
            ("ws://zoom/all".to_owned(), 16)
        ]
    );
    for _ in 0..3 {
        assert_eq!(s.recv_json().await.unwrap()["msg_type"], 7);
    }
    socks[2].send_json(
        json!({"msg_type":18,"content":{"user_id":1,"user_name":"A","data":"hello","timestamp":1}}),
    );
    socks[0].send_json(audio(2));
    let frames = r.frames(2).await;
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [0, 1]);
    // A keep-alive on one media socket is answered on that socket.
    socks[1].send_json(json!({"msg_type":12,"timestamp":5,"sequence":1}));
    assert_eq!(socks[1].recv_json().await.unwrap()["msg_type"], 13);
}

#[tokio::test(start_paused = true)]
async fn reconnects_after_signaling_loss_within_the_backoff_bound_and_continues_seq() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (s, mut m) = r.connect().await;
    m.send_json(audio(1));
    r.frames(1).await;
    let lost_at = Instant::now();
    drop(s);
    let status = r
        .status(|s| matches!(s, StreamStatus::Reconnecting { .. }))
        .await;
    let StreamStatus::Reconnecting { attempt, delay } = status else {
        unreachable!()
    };
    assert_eq!(attempt, 1);
    assert!(
        delay >= Duration::from_secs(2) && delay <= Duration::from_millis(2_400),
        "the first delay is the base delay plus at most 20 %: {delay:?}"
    );
    let (_s2, m2) = r.connect().await;
    let waited = lost_at.elapsed();
    assert!(
        waited >= delay && waited <= delay + Duration::from_millis(50),
        "{waited:?} vs {delay:?}"
    );
    m2.send_json(audio(2));
    let frames = r.frames(2).await;
    assert_eq!(frames[1].seq, 1, "seq continues across reconnections");
    assert_eq!(
        m.rx.recv().await,
        Some(Message::Close(None)),
        "old media socket closed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_socket_is_declared_dead_after_the_keepalive_timeout() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (_s, _m) = r.connect().await;
    let t0 = Instant::now();
    // Nothing is sent: after 15 s both sockets are considered dead and reopened.
    let (_s2, _m2) = r.connect().await;
    let waited = t0.elapsed();
    let timeout = Duration::from_secs(15);
    assert!(waited >= timeout, "{waited:?}");
    assert!(
        waited <= timeout + Duration::from_secs(2) + Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn keepalives_keep_an_idle_stream_alive() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (mut s, mut m) = r.connect().await;
    for i in 0..10u64 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        s.send_json(json!({"msg_type":12,"timestamp":i,"sequence":i}));
        m.send_json(json!({"msg_type":12,"timestamp":i,"sequence":i}));
        assert_eq!(s.recv_json().await.unwrap()["sequence"], i);
        assert_eq!(m.recv_json().await.unwrap()["sequence"], i);
    }
    assert!(
        r.accepted.try_recv().is_err(),
        "no reconnection while keep-alives flow"
    );
}

#[tokio::test(start_paused = true)]
async fn scenario_1_new_started_url_moves_both_sockets() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (mut s, mut m) = r.connect().await;
    // The same URL again is a duplicate: nothing happens.
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    r.sessions
        .handle(event(WebhookAction::Started, Some("ws://other/sig"), None))
        .unwrap();
    assert_eq!(m.rx.recv().await, Some(Message::Close(None)));
    assert_eq!(s.rx.recv().await, Some(Message::Close(None)));
    let (s2, _) = r.signaling().await;
    assert_eq!(s2.url, "ws://other/sig");
    r.status(
        |s| matches!(s, StreamStatus::Failover { server_url } if server_url == "ws://other/sig"),
    )
    .await;
    assert_eq!(
        r.sessions.snapshot("s1").unwrap().server_url,
        "ws://other/sig"
    );
}

#[tokio::test(start_paused = true)]
async fn scenario_2_interrupted_webhook_reconnects_both_sockets() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (mut s, _m) = r.connect().await;
    r.sessions
        .handle(event(WebhookAction::Interrupted, None, None))
        .unwrap();
    assert_eq!(s.rx.recv().await, Some(Message::Close(None)));
    let (s2, _m2) = r.connect().await;
    assert_eq!(s2.url, SIG);
}

#[tokio::test(start_paused = true)]
async fn scenario_3_media_interruption_reopens_media_only() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (mut s, mut m) = r.connect().await;
    s.send_json(json!({"msg_type":6,"event":{"event_type":7,"timestamp":1}}));
    assert_eq!(m.rx.recv().await, Some(Message::Close(None)));
    let (m2, _) = r.media().await;
    assert_eq!(m2.url, "ws://zoom/all");
    assert_eq!(
        s.recv_json().await.unwrap()["msg_type"],
        7,
        "ready ack on the kept signaling"
    );
    // msg 8 state 2 reason 14 does the same.
    s.send_json(json!({"msg_type":8,"state":2,"reason":14}));
    let (_m3, _) = r.media().await;
    assert_eq!(s.recv_json().await.unwrap()["msg_type"], 7);
    r.status(|s| matches!(s, StreamStatus::MediaReconnecting { .. }))
        .await;
}

#[tokio::test(start_paused = true)]
async fn scenario_4_stop_webhook_and_session_stop_end_for_good() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (_s, _m) = r.connect().await;
    r.sessions
        .handle(event(WebhookAction::Stopped, None, Some(6)))
        .unwrap();
    assert_eq!(r.end().await, EndReason::Stopped(6));
    r.sessions.idle().await;
    // A late interrupted webhook without URL for the ended stream starts nothing, and is
    // told apart from one for a live stream (answered, but counted as for an unknown stream).
    assert!(matches!(
        r.sessions
            .handle(event(WebhookAction::Interrupted, None, None)),
        Err(crate::Refusal::UnknownStream(_))
    ));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(r.accepted.try_recv().is_err());

    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (s, _m) = r.connect().await;
    s.send_json(
        json!({"msg_type":9,"rtms_session_id":"x","state":5,"stop_reason":3,"timestamp":1}),
    );
    assert_eq!(r.end().await, EndReason::Stopped(3));
}

#[tokio::test(start_paused = true)]
async fn duplicate_rejection_is_retried_after_a_delay() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let mut s = r.accept().await;
    s.recv_json().await.unwrap();
    let t0 = Instant::now();
    s.send_json(json!({"msg_type":2,"status_code":8,"reason":"duplicate signal request"}));
    let (_s2, _m2) = r.connect().await;
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "duplicates wait at least half the base delay"
    );
}

#[tokio::test(start_paused = true)]
async fn a_handshake_without_answer_times_out_then_retries_after_the_constant_delay() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let mut s = r.accept().await;
    s.recv_json().await.unwrap();
    let t0 = Instant::now();
    let (_s2, _m2) = r.connect().await;
    // 10 s connection timeout + 5 s retry delay.
    assert_eq!(t0.elapsed().as_secs(), 15);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_the_budget_then_waits_for_a_webhook_then_ends_connection_lost() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (s, _m) = r.connect().await;
    r.connector.refuse(SIG, true);
    let t0 = Instant::now();
    drop(s);
    r.status(|s| matches!(s, StreamStatus::AwaitingWebhook { .. }))
        .await;
    let gave_up = t0.elapsed();
    assert!(
        gave_up >= Duration::from_secs(2 + 4 + 8) && gave_up <= Duration::from_millis(16_800),
        "three attempts, each delay within [d, 1.2 d]: {gave_up:?}"
    );
    assert_eq!(r.end().await, EndReason::ConnectionLost);
    assert!(t0.elapsed() >= Duration::from_secs(300));
}

#[tokio::test(start_paused = true)]
async fn a_started_webhook_while_waiting_revives_the_stream() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (s, _m) = r.connect().await;
    r.connector.refuse(SIG, true);
    drop(s);
    r.status(|s| matches!(s, StreamStatus::AwaitingWebhook { .. }))
        .await;
    r.sessions
        .handle(event(WebhookAction::Started, Some("ws://new/sig"), None))
        .unwrap();
    let (s2, _) = r.signaling().await;
    assert_eq!(s2.url, "ws://new/sig");
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_every_stream_with_shutdown_and_close_frames() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (mut s, _m) = r.connect().await;
    let mut other = event(WebhookAction::Started, Some("ws://b/sig"), None);
    other.stream_id = "s2".into();
    r.sessions.handle(other).unwrap();
    let (_s2, _m2) = r.connect().await;
    assert_eq!(r.sessions.len(), 2);
    assert_eq!(r.sessions.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(r.end().await, EndReason::Shutdown);
    assert_eq!(r.sink.get("s2").unwrap().end, Some(EndReason::Shutdown));
    assert_eq!(s.rx.recv().await, Some(Message::Close(None)));
    assert!(r.sessions.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_session_does_not_stall_another() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    let (_s, _m) = r.connect().await; // this one's peer never sends anything again
    let mut other = event(WebhookAction::Started, Some("ws://b/sig"), None);
    other.stream_id = "s2".into();
    r.sessions.handle(other).unwrap();
    let (_s2, m2) = r.connect().await;
    m2.send_json(audio(1));
    r.sink.wait_for("s2", |c| c.frames.len() == 1).await;
}

#[tokio::test(start_paused = true)]
async fn an_outage_longer_than_the_budget_waits_within_the_documented_bounds_then_gives_up() {
    let mut cfg = config();
    let r0 = &mut cfg.resilience;
    r0.reconnect_max_attempts = 4;
    r0.reconnect_base_delay = Duration::from_millis(1_000);
    r0.reconnect_max_delay = Duration::from_millis(5_000);
    r0.reconnect_jitter_percent = 20;
    let mut r = rig(cfg);
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .expect("the event is accepted");
    let (s, _m) = r.connect().await;
    r.connector.refuse(SIG, true);
    let lost_at = Instant::now();
    drop(s);
    r.status(|s| matches!(s, StreamStatus::AwaitingWebhook { .. }))
        .await;
    let attempts: Vec<Instant> = r
        .connector
        .attempts(SIG)
        .into_iter()
        .filter(|t| *t > lost_at)
        .collect();
    assert_eq!(attempts.len(), 4, "exactly reconnect_max_attempts attempts");
    // Attempt n waits d = min(5 s, 1 s * 2^n), then up to 20 % more, never above 5 s.
    let mut prev = lost_at;
    for (n, at) in attempts.iter().enumerate() {
        let d = (Duration::from_millis(1_000) * (1 << n)).min(Duration::from_secs(5));
        let hi = d.mul_f64(1.2).min(Duration::from_secs(5));
        let waited = *at - prev;
        assert!(
            d <= waited && waited <= hi + Duration::from_millis(5),
            "attempt {n} waited {waited:?}, outside [{d:?}, {hi:?}]"
        );
        prev = *at;
    }
    let statuses = r.sink.get("s1").unwrap().statuses;
    let delays: Vec<(u32, Duration)> = statuses
        .iter()
        .filter_map(|s| match s {
            StreamStatus::Reconnecting { attempt, delay } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect();
    assert_eq!(
        delays.iter().map(|d| d.0).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "each attempt is reported with its delay"
    );
}

fn keepalive(i: u64) -> Value {
    json!({"msg_type":12,"timestamp":i,"sequence":i})
}

#[tokio::test(start_paused = true)]
async fn after_a_stop_the_drain_ends_within_the_bound_and_keepalives_are_answered_meanwhile() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .expect("the event is accepted");
    let (mut s, mut m) = r.connect().await;
    m.send_json(audio(0));
    r.frames(1).await;
    let stopped_at = Instant::now();
    r.sessions
        .handle(event(WebhookAction::Stopped, None, Some(6)))
        .expect("the event is accepted");
    // The server goes on sending a frame every 100 ms and keep-alives on both sockets.
    let mut sent = 1;
    for i in 1..=18u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        m.send_json(audio(i as u8));
        sent += 1;
        if i % 5 == 3 {
            s.send_json(keepalive(i));
            m.send_json(keepalive(i + 100));
            let answer = s
                .recv_json()
                .await
                .expect("signaling answers during the drain");
            assert_eq!(answer, json!({"msg_type":13,"timestamp":i,"sequence":i}));
            let answer = m.recv_json().await.expect("media answers during the drain");
            assert_eq!(answer["sequence"], i + 100);
        }
    }
    let closed_at = loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        m.send_json(audio(7));
        if let Ok(Message::Close(_)) = s.rx.try_recv() {
            break Instant::now();
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(10),
            "the drain never ended"
        );
    };
    let drained = closed_at - stopped_at;
    let bound = Duration::from_secs(2);
    assert!(
        drained >= bound && drained <= bound + Duration::from_millis(20),
        "the drain took {drained:?}, bound {bound:?}"
    );
    assert_eq!(m.rx.recv().await, Some(Message::Close(None)));
    assert_eq!(r.end().await, EndReason::Stopped(6));
    let got = r.sink.get("s1").unwrap().frames.len();
    assert!(
        got >= sent,
        "frames sent during the drain were delivered: {got} of at least {sent}"
    );
}

#[tokio::test(start_paused = true)]
async fn unified_mode_opens_one_socket_per_type_when_msg_2_has_no_all_url() {
    let mut cfg = config();
    cfg.media_types = media_type::AUDIO | media_type::TRANSCRIPT;
    let mut r = rig(cfg);
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .expect("the event is accepted");
    let mut s = r.accept().await;
    s.recv_json().await.expect("msg 1");
    s.send_json(
        json!({"msg_type":2,"status_code":0,"media_server":{"server_urls":{
        "audio":"ws://zoom/audio","transcript":"ws://zoom/transcript"}}}),
    );
    let (a, hello_a) = r.media().await;
    let (t, hello_t) = r.media().await;
    assert_eq!(
        (a.url.as_str(), hello_a["media_type"].as_u64()),
        ("ws://zoom/audio", Some(1))
    );
    assert_eq!(
        (t.url.as_str(), hello_t["media_type"].as_u64()),
        ("ws://zoom/transcript", Some(8))
    );
    for _ in 0..2 {
        assert_eq!(s.recv_json().await.unwrap()["msg_type"], 7);
    }
    a.send_json(audio(1));
    let frames = r.frames(1).await;
    assert_eq!(frames[0].kind, MediaKind::Audio);
    r.status(|s| {
        matches!(
            s,
            StreamStatus::Connected {
                media_sockets: 2,
                ..
            }
        )
    })
    .await;
}

/// The reconnection statuses a stream reported: `(attempt, delay)`.
fn reconnections(r: &Rig) -> Vec<(u32, Duration)> {
    r.sink
        .get("s1")
        .map(|c| c.statuses)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| match s {
            StreamStatus::Reconnecting { attempt, delay } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect()
}

/// Drops the server's ends (the client sees its sockets end) and refuses new connections
/// for `outage`.
async fn outage(r: &Rig, s: ServerEnd, m: ServerEnd, outage: Duration) {
    r.connector.refuse(SIG, true);
    drop(s);
    drop(m);
    tokio::time::sleep(outage).await;
    r.connector.refuse(SIG, false);
}

#[tokio::test(start_paused = true)]
async fn a_flapping_network_keeps_the_stream_and_reconnection_delays_do_not_grow() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .expect("the event is accepted");
    let t0 = Instant::now();
    let (mut s, mut m) = r.connect().await;
    // A simulated minute: a 0.5 s outage every 5 s, frames flowing in between.
    for n in 1..=12u32 {
        m.send_json(audio(n as u8));
        r.frames(n as usize).await;
        tokio::time::sleep_until(t0 + Duration::from_secs(5) * n).await;
        outage(&r, s, m, Duration::from_millis(500)).await;
        // A stream that gave up would never connect again: fail, not hang.
        (s, m) = tokio::time::timeout(Duration::from_secs(10), r.connect())
            .await
            .unwrap_or_else(|_| panic!("outage {n}: no reconnection within 10 s"));
    }
    m.send_json(audio(13));
    let frames = r.frames(13).await;
    assert_eq!(
        frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
        (0..13).collect::<Vec<_>>(),
        "one stream, seq continuous across the outages"
    );
    let delays = reconnections(&r);
    assert_eq!(delays.len(), 12, "one reconnection per outage: {delays:?}");
    for (n, (attempt, delay)) in delays.iter().enumerate() {
        assert_eq!(*attempt, 1, "outage {n} needed one attempt: {delays:?}");
        assert!(
            Duration::from_secs(2) <= *delay && *delay <= Duration::from_millis(2_400),
            "outage {n} waited {delay:?}: the delay restarts from the base each time"
        );
    }
    let c = r.sink.get("s1").expect("the stream's sink");
    assert_eq!(c.end, None, "the stream is still up");
    assert!(
        !c.statuses
            .iter()
            .any(|s| matches!(s, StreamStatus::AwaitingWebhook { .. })),
        "never gave up"
    );
    assert_eq!(r.sessions.snapshot("s1").expect("live").state, "streaming");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_accepts_and_drops_every_reconnection_is_given_up_with_the_reason() {
    let mut r = rig(config());
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .expect("the event is accepted");
    let (s, m) = r.connect().await;
    m.send_json(audio(1));
    r.frames(1).await;
    let lost_at = Instant::now();
    drop((s, m));
    // Every reconnection completes its handshakes and is dropped before any frame.
    for _ in 0..3 {
        let (s, m) = r.connect().await;
        drop((s, m));
    }
    let status = r
        .status(|s| matches!(s, StreamStatus::AwaitingWebhook { .. }))
        .await;
    assert_eq!(
        status,
        StreamStatus::AwaitingWebhook {
            timeout: Duration::from_secs(300),
            reason: GiveUp::Reconnect
        }
    );
    let attempts = r.connector.attempts(SIG);
    assert_eq!(
        attempts.iter().filter(|t| **t > lost_at).count(),
        3,
        "exactly reconnect_max_attempts attempts"
    );
    let delays: Vec<u32> = reconnections(&r).iter().map(|d| d.0).collect();
    assert_eq!(delays, [1, 2, 3], "the drops spent the budget");
    assert_eq!(r.end().await, EndReason::ConnectionLost);
    assert!(r.accepted.try_recv().is_err(), "no attempt after giving up");
}

#[tokio::test(start_paused = true)]
async fn reaching_the_flap_limit_gives_up_with_its_own_reason() {
    let mut cfg = config();
    cfg.resilience.reconnect_flap_max = 3;
    cfg.resilience.reconnect_flap_window = Duration::from_secs(60);
    let mut r = rig(cfg);
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .expect("the event is accepted");
    let (mut s, mut m) = r.connect().await;
    for n in 1..=3u8 {
        m.send_json(audio(n));
        r.frames(usize::from(n)).await;
        outage(&r, s, m, Duration::from_millis(500)).await;
        (s, m) = r.connect().await;
    }
    m.send_json(audio(4));
    r.frames(4).await;
    let attempts_before = r.connector.attempts(SIG).len();
    drop((s, m));
    let status = r
        .status(|s| matches!(s, StreamStatus::AwaitingWebhook { .. }))
        .await;
    assert_eq!(
        status,
        StreamStatus::AwaitingWebhook {
            timeout: Duration::from_secs(300),
            reason: GiveUp::Flapping
        }
    );
    assert_eq!(reconnections(&r).len(), 3, "no fourth reconnection");
    assert_eq!(r.end().await, EndReason::ConnectionLost);
    assert_eq!(
        r.connector.attempts(SIG).len(),
        attempts_before,
        "no attempt after the flap limit"
    );
}

/// Starts stream s1 and connects it; returns the signaling and media server ends.
async fn live(r: &mut Rig) -> (ServerEnd, ServerEnd) {
    r.sessions
        .handle(event(WebhookAction::Started, Some(SIG), None))
        .unwrap();
    r.connect().await
}

#[tokio::test(start_paused = true)]
async fn a_stop_sends_stream_close_and_an_accepted_close_ends_with_receiver_request_close() {
    let mut r = rig(config());
    let (mut s, _m) = live(&mut r).await;
    assert!(r.sessions.stop("s1"));
    let req = s.recv_json().await.expect("msg 21");
    assert_eq!(req["msg_type"], 21);
    assert_eq!(req["rtms_stream_id"], "s1");
    s.send_json(json!({"msg_type":22,"status_code":0,"reason":"","timestamp":1}));
    s.send_json(json!({"msg_type":8,"state":4,"reason":20,"timestamp":2}));
    assert_eq!(r.end().await, EndReason::Stopped(20));
    assert_eq!(EndReason::Stopped(20).name(), "receiver-request-close");
}

#[tokio::test(start_paused = true)]
async fn a_refused_or_unanswered_close_ends_this_side_only_within_the_bound() {
    // Refused: ends at once, as a shutdown.
    let mut r = rig(config());
    let (mut s, _m) = live(&mut r).await;
    assert!(r.sessions.stop("s1"));
    assert_eq!(s.recv_json().await.expect("msg 21")["msg_type"], 21);
    s.send_json(json!({"msg_type":22,"status_code":2,"reason":"no such stream"}));
    assert_eq!(r.end().await, EndReason::Shutdown);

    // Unanswered: ends after close_timeout, not before.
    let cfg = ClientConfig {
        close_timeout: Duration::from_secs(3),
        ..config()
    };
    let mut r = rig(cfg);
    let (mut s, _m) = live(&mut r).await;
    let asked = Instant::now();
    assert!(r.sessions.stop("s1"));
    assert_eq!(s.recv_json().await.expect("msg 21")["msg_type"], 21);
    assert_eq!(r.end().await, EndReason::Shutdown);
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_closes_streams_when_configured() {
    let cfg = ClientConfig {
        close_on_shutdown: true,
        ..config()
    };
    let mut r = rig(cfg);
    let (mut s, _m) = live(&mut r).await;
    let sessions = r.sessions.clone();
    let shutdown = tokio::spawn(async move { sessions.shutdown(Duration::from_secs(10)).await });
    assert_eq!(s.recv_json().await.expect("msg 21")["msg_type"], 21);
    s.send_json(json!({"msg_type":22,"status_code":0}));
    assert_eq!(shutdown.await.unwrap(), 0);
    assert_eq!(r.end().await, EndReason::Stopped(20));
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_keeps_streams_at_zoom_when_they_go_on_elsewhere() {
    let cfg = ClientConfig {
        close_on_shutdown: true,
        ..config()
    };
    let mut r = rig(cfg);
    let (mut s, _m) = live(&mut r).await;
    r.sessions.keep_streams_at_zoom();
    assert_eq!(r.sessions.shutdown(Duration::from_secs(10)).await, 0);
    assert_eq!(r.end().await, EndReason::Shutdown);
    assert_eq!(
        s.rx.recv().await,
        Some(Message::Close(None)),
        "no STREAM_CLOSE_REQ: the socket just closes"
    );
}
