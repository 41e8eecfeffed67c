//! The simulator against a raw WebSocket client on real sockets: handshakes, every product
//! on ws and wss in unified and split mode, keep-alives, duplicates, webhooks and faults.

mod support;

use std::time::{Duration, Instant};

use rtms_proto::Product;
use rtms_sim::{
    EventKind, Fault, MediaKind, MeetingOptions, MeetingScript, Pace, SimConfig, Simulator,
    SocketSel,
};
use serde_json::json;
use support::*;

fn small_script() -> MeetingScript {
    MeetingScript::builder()
        .participant(101, "Ann Example")
        .participant(202, "Bo Example")
        .utterance(101, 0, 100, "first line about the budget")
        .utterance(202, 100, 60, "second line, a blocker")
        .utterance(101, 200, 40, "third line")
        .chat(50, 202, "hello chat")
        .event(20, EventKind::SharingStart, 101)
        .event(180, EventKind::SharingStop, 101)
        .build()
        .unwrap()
}

fn fast(product: Product) -> MeetingOptions {
    MeetingOptions {
        product,
        pace: Pace::Fast,
        ..Default::default()
    }
}

#[tokio::test]
async fn signature_test_vector_is_computed_and_accepted() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let opts = MeetingOptions {
        meeting_id: Some("4lo+kM3nQ/ut1P2xQ9Zy2w==".into()),
        stream_id: Some("03db704592624398931a588dd78200cb".into()),
        ..fast(Product::Meeting)
    };
    let h = sim.start_meeting(small_script(), opts).unwrap();
    let vector = "135383de5afab1a093f6ef16af806a37e4adaf003220311d01ba6ead52551633";
    assert_eq!(h.expected_signature(), vector);

    // A wrong signature is refused with INVALID_SIGNATURE and the socket closes.
    let mut bad = Raw::connect(&h.signaling_url(), None).await.unwrap();
    let mut req = sig_req(&h);
    req["signature"] = json!("00".repeat(32));
    bad.send(req).await;
    let r = bad.recv().await.unwrap();
    assert_eq!(
        (r["msg_type"].clone(), r["status_code"].clone()),
        (json!(2), json!(3))
    );
    assert!(
        bad.recv().await.is_none(),
        "socket closes after a rejection"
    );

    // The literal test vector is accepted, without protocol_version or sequence.
    let mut ok = Raw::connect(&sim.signaling_url(), None).await.unwrap();
    ok.send(
        json!({"msg_type": 1, "meeting_uuid": "4lo+kM3nQ/ut1P2xQ9Zy2w==",
        "rtms_stream_id": "03db704592624398931a588dd78200cb", "signature": vector}),
    )
    .await;
    let r = ok.recv_type(2).await.unwrap();
    assert_eq!(r["status_code"], 0, "{r}");
    assert_eq!(h.ledger().counters.handshakes_rejected, 1);
}

async fn happy(sim: &Simulator, product: Product, mode: Mode) {
    let ca = sim.ca_pem();
    let h = sim.start_meeting(small_script(), fast(product)).unwrap();
    let kinds = ["audio", "video", "deskshare", "transcript", "chat"];
    let got = run_session(&h, ca.as_deref(), mode, &kinds).await;
    let ledger = h.finished().await;
    let what = format!("{product:?} {mode:?} tls={}", ca.is_some());
    assert_eq!(ledger.stop_reason, Some(6), "{what}");
    // Audio only while someone speaks: 100+60+40 ms of speech in 20 ms frames.
    assert_eq!(ledger.count(MediaKind::Audio), 10, "{what}");
    assert_eq!(got.count(14), 10, "{what}");
    assert_eq!(
        got.count(15) as u64,
        ledger.count(MediaKind::Video),
        "{what}"
    );
    assert!(ledger.count(MediaKind::Video) >= 9, "{what}");
    assert_eq!(
        got.count(16) as u64,
        ledger.count(MediaKind::Share),
        "{what}"
    );
    assert!(ledger.count(MediaKind::Share) >= 1, "{what}");
    assert_eq!(got.count(18), 1, "{what}");
    let lines: Vec<_> = ledger
        .transcript_lines()
        .into_iter()
        .map(|l| (l.user_name, l.text, l.start_time, l.end_time))
        .collect();
    assert_eq!(got.transcripts(), lines, "{what}");
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1].3 - lines[1].2, 60);
    for m in &got.media {
        let c = &m["content"];
        assert!(c["user_id"].is_i64() && c["user_name"].is_string(), "{m}");
        assert!(c["timestamp"].is_u64() && c["data"].is_string(), "{m}");
        if m["msg_type"] == 17 {
            assert_eq!(c["language"], 9);
        }
    }
    // Mixed audio (the default) is tagged as Zoom tags it: user id -1, no name.
    for m in got.media.iter().filter(|m| m["msg_type"] == 14) {
        let c = &m["content"];
        assert_eq!(
            (c["user_id"].as_i64(), c["user_name"].as_str()),
            (Some(-1), Some("")),
            "{what}: {m}"
        );
    }
    let audio = got.media.iter().find(|m| m["msg_type"] == 14).unwrap();
    use base64::Engine;
    let pcm = base64::engine::general_purpose::STANDARD
        .decode(audio["content"]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(pcm.len(), 640, "{what}");
    // Signaling: stream/session state, events, and the final state 4.
    let types: Vec<u64> = got
        .signaling
        .iter()
        .map(|v| v["msg_type"].as_u64().unwrap())
        .collect();
    assert!(
        types.contains(&9) && types.contains(&6),
        "{what}: {types:?}"
    );
    let first9 = got.signaling.iter().find(|v| v["msg_type"] == 9).unwrap();
    assert!(first9["rtms_session_id"].is_string() && first9["reason"].is_u64());
    let last8 = got
        .signaling
        .iter()
        .rev()
        .find(|v| v["msg_type"] == 8)
        .unwrap();
    assert_eq!(
        (last8["state"].clone(), last8["reason"].clone()),
        (json!(4), json!(6))
    );
    // Zoom's samples read `stop_reason`: msg 8 carries it as msg 9 does.
    assert_eq!(last8["stop_reason"], json!(6), "{what}: {last8}");
    let last9 = got
        .signaling
        .iter()
        .rev()
        .find(|v| v["msg_type"] == 9)
        .unwrap();
    assert_eq!(last9["stop_reason"], last9["reason"], "{what}: {last9}");
    let join = got
        .signaling
        .iter()
        .find(|v| v["msg_type"] == 6 && v["event"]["event_type"] == 3)
        .expect("participant join event");
    assert!(join["event"]["participants"][0]["user_name"].is_string());
    assert!(
        got.signaling
            .iter()
            .any(|v| v["msg_type"] == 6 && v["event"]["event_type"] == 5),
        "sharing start"
    );
    assert_eq!(ledger.counters.signaling_handshakes_ok, 1);
}

#[tokio::test]
async fn happy_path_every_product_ws_unified_and_split() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    for product in Product::ALL {
        happy(&sim, product, Mode::Unified).await;
        happy(&sim, product, Mode::Split).await;
    }
}

#[tokio::test]
async fn happy_path_every_product_wss_unified_and_split() {
    let sim = Simulator::start(fast_config(true)).await.unwrap();
    assert!(sim.signaling_url().starts_with("wss://127.0.0.1:"));
    for product in Product::ALL {
        happy(&sim, product, Mode::Unified).await;
        happy(&sim, product, Mode::Split).await;
    }
}

#[tokio::test]
async fn wss_certificate_also_serves_localhost() {
    let cfg = SimConfig {
        advertise_host: "localhost".into(),
        ..fast_config(true)
    };
    let sim = Simulator::start(cfg).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    assert!(h.signaling_url().starts_with("wss://localhost:"));
    let got = run_session(
        &h,
        sim.ca_pem().as_deref(),
        Mode::Unified,
        &["audio", "transcript"],
    )
    .await;
    assert_eq!(got.count(14), 10);
    assert_eq!(got.count(15), 0, "video was not asked for");
}

#[tokio::test]
async fn a_client_trusting_the_ca_dir_before_start_connects_to_a_later_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || SimConfig {
        ca_dir: Some(dir.path().join("ca")),
        ..fast_config(true)
    };
    let first = Simulator::start(cfg()).await.unwrap();
    drop(first);
    // The client reads the CA from disk before the next run starts.
    let trusted = std::fs::read_to_string(dir.path().join("ca/ca.pem")).unwrap();
    let sim = Simulator::start(cfg()).await.unwrap();
    assert_eq!(sim.ca_pem().as_deref(), Some(trusted.as_str()));
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let got = run_session(&h, Some(&trusted), Mode::Unified, &["audio"]).await;
    assert_eq!(got.count(14), 10);
    // A fresh CA (no directory) is not trusted by that client.
    let other = Simulator::start(fast_config(true)).await.unwrap();
    assert!(
        Raw::connect(&other.signaling_url(), Some(&trusted))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn realtime_pace_takes_the_script_time() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), MeetingOptions::default())
        .unwrap();
    let t = Instant::now();
    let got = run_session(&h, None, Mode::Unified, &["audio", "transcript"]).await;
    assert!(
        t.elapsed() >= Duration::from_millis(240),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(got.count(14), 10);
}

#[tokio::test]
async fn media_waits_for_client_ready_ack() {
    let cfg = SimConfig {
        missed_keepalive_limit: 100,
        ..fast_config(false)
    };
    let sim = Simulator::start(cfg).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let (mut m, _) = media(
        &h,
        resp["media_server"]["server_urls"]["all"].as_str().unwrap(),
        32,
        None,
    )
    .await;
    // Nothing but keep-alives before msg 7.
    let t = tokio::time::timeout(Duration::from_millis(300), m.recv()).await;
    assert!(t.is_err(), "no media before CLIENT_READY_ACK");
    assert!(!m.keepalives().is_empty(), "idle sockets get keep-alives");
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    let first = m.recv().await.unwrap();
    assert!((14..=18).contains(&first["msg_type"].as_u64().unwrap()));
}

#[tokio::test]
async fn duplicate_signaling_is_rejected_with_status_8() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Webinar))
        .unwrap();
    let (_live, r) = signal(&h, &h.signaling_url(), None).await;
    assert_eq!(r["status_code"], 0);
    let (mut dup, r) = signal(&h, &h.signaling_url(), None).await;
    assert_eq!(r["status_code"], 8, "{r}");
    assert!(r["reason"].as_str().unwrap().contains("duplicate"));
    assert!(dup.recv().await.is_none());
    let ledger = h.ledger();
    assert_eq!(ledger.counters.duplicate_signaling_rejected, 1);
    let e = ledger.one_client_at_a_time().unwrap_err();
    assert!(e.contains("status 8"), "{e}");
}

#[tokio::test]
async fn duplicate_media_is_rejected_with_status_16_and_recorded() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let (_sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let audio = resp["media_server"]["server_urls"]["audio"]
        .as_str()
        .unwrap();
    let (_live, r) = media(&h, audio, 1, None).await;
    assert_eq!(r["status_code"], 0);
    assert_eq!(h.ledger().one_client_at_a_time(), Ok(()));
    let (mut dup, r) = media(&h, audio, 1, None).await;
    assert_eq!(r["status_code"], 16, "DUPLICATE_MEDIA_DATA_CONNECTION: {r}");
    assert!(dup.recv().await.is_none(), "the duplicate is closed");
    let ledger = h.ledger();
    assert_eq!(ledger.counters.duplicate_media_rejected, 1);
    let e = ledger.one_client_at_a_time().unwrap_err();
    assert!(e.contains("Media") && e.contains("status 16"), "{e}");
}

#[tokio::test]
async fn a_transcript_language_outside_zooms_table_is_refused_with_status_43() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let (_sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let url = resp["media_server"]["server_urls"]["transcript"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut m = Raw::connect(&url, None).await.unwrap();
    let mut req = media_req(&h, 8);
    req["media_params"]["transcript"]["src_language"] = json!(99);
    m.send(req).await;
    let r = m.recv_type(4).await.expect("msg 4");
    assert_eq!(r["status_code"], 43, "{r}");
    let ledger = h.ledger();
    assert_eq!(
        ledger
            .refusals
            .get("INVALID_MEDIA_TRANSCRIPT_SROUCE_LANGUAGE"),
        Some(&1)
    );
    assert_eq!(
        ledger.transcript_params, None,
        "a refused handshake asked nothing"
    );
    // A valid one is accepted and recorded as asked.
    let (_t, r) = media(&h, &url, 8, None).await;
    assert_eq!(r["status_code"], 0, "{r}");
    let asked = h.ledger().transcript_params.unwrap();
    assert_eq!(
        (asked.src_language, asked.enable_lid),
        (Some(9), Some(false))
    );
}

#[tokio::test]
async fn a_client_reconnecting_after_its_socket_closed_or_died_is_not_a_duplicate() {
    let cfg = SimConfig {
        missed_keepalive_limit: 2,
        ..fast_config(false)
    };
    let sim = Simulator::start(cfg).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    // Closed: the client closes its signaling socket and connects again at once.
    let (sig, r) = signal(&h, &h.signaling_url(), None).await;
    assert_eq!(r["status_code"], 0);
    sig.close().await;
    let (mut sig, r) = signal(&h, &h.signaling_url(), None).await;
    assert_eq!(r["status_code"], 0, "a closed socket is not live: {r}");
    // Dead: the client stops answering, the server ends the socket after two misses.
    sig.answer_keepalives(false);
    while sig.recv_or_closed().await.is_some() {}
    let (_sig, r) = signal(&h, &h.signaling_url(), None).await;
    assert_eq!(r["status_code"], 0, "a dead socket is not live: {r}");
    let ledger = h.ledger();
    assert_eq!(ledger.counters.keepalive_timeouts, 1);
    assert_eq!(ledger.counters.signaling_handshakes_ok, 3);
    assert_eq!(ledger.counters.duplicate_signaling_rejected, 0);
    assert_eq!(
        ledger.one_client_at_a_time(),
        Ok(()),
        "{:?}",
        ledger.connections
    );
}

#[tokio::test]
async fn signaling_keepalive_misses_end_both_sockets_and_send_interrupted() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let (url, mut hooks) = receiver("test_webhook_secret", false, 0).await;
    let opts = MeetingOptions {
        webhook_url: Some(url),
        ..fast(Product::VideoSdk)
    };
    let h = sim.start_meeting(small_script(), opts).unwrap();
    assert_eq!(
        next_hook(&mut hooks).await.json()["event"],
        "session.rtms_started"
    );
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let (mut m, _) = media(
        &h,
        resp["media_server"]["server_urls"]["audio"]
            .as_str()
            .unwrap(),
        1,
        None,
    )
    .await;
    sig.answer_keepalives(false);
    let media_task = tokio::spawn(async move { m.drain().await });
    assert!(sig.drain().await.is_empty());
    assert_eq!(
        sig.keepalives().len(),
        3,
        "closed after the 3rd unanswered request"
    );
    let seqs: Vec<_> = sig
        .keepalives()
        .iter()
        .map(|k| k["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    media_task.await.unwrap();
    let hook = next_hook(&mut hooks).await;
    assert_eq!(hook.json()["event"], "session.rtms_interrupted");
    assert_eq!(hook.json()["payload"]["rtms_stream_id"], h.stream_id());
    assert_eq!(h.ledger().counters.keepalive_timeouts, 1);
}

#[tokio::test]
async fn media_keepalive_misses_drop_media_and_send_event_7() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let (mut m, _) = media(
        &h,
        resp["media_server"]["server_urls"]["all"].as_str().unwrap(),
        32,
        None,
    )
    .await;
    m.answer_keepalives(false);
    let media_task = tokio::spawn(async move { m.drain().await });
    let ev = sig.recv_type(6).await.unwrap();
    assert!(media_task.await.unwrap().is_empty());
    assert_eq!(ev["event"]["event_type"], 7, "{ev}");
    let st = sig.recv_type(8).await.unwrap();
    assert_eq!(
        (st["state"].clone(), st["reason"].clone()),
        (json!(2), json!(14))
    );
    // Signaling stays up; a new media socket is accepted.
    let (_m2, r) = media(
        &h,
        resp["media_server"]["server_urls"]["all"].as_str().unwrap(),
        32,
        None,
    )
    .await;
    assert_eq!(r["status_code"], 0);
}

#[tokio::test]
async fn timestamp_only_and_duplicate_keepalive_answers_are_tolerated() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let (mut sig, _) = signal(&h, &h.signaling_url(), None).await;
    sig.answer_keepalives(false);
    for _ in 0..6 {
        let k = sig.take_keepalive().await;
        let ans = json!({"msg_type": 13, "timestamp": k["timestamp"]});
        sig.send(ans.clone()).await;
        sig.send(ans).await;
    }
    eventually(|| h.ledger().counters.keepalive_answers >= 12).await;
    assert_eq!(h.ledger().counters.keepalive_timeouts, 0);
}

#[tokio::test]
async fn the_ledger_times_each_keepalive_from_request_to_answer() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let (mut sig, _) = signal(&h, &h.signaling_url(), None).await;
    sig.answer_keepalives(false);
    let held = Duration::from_millis(80);
    for i in 0..3 {
        let k = sig.take_keepalive().await;
        if i == 1 {
            // The answer is held back: the time measured must include the wait.
            tokio::time::sleep(held).await;
        }
        sig.send(json!({"msg_type": 13, "timestamp": k["timestamp"], "sequence": k["sequence"]}))
            .await;
    }
    eventually(|| h.ledger().keepalive_answer_times.len() >= 3).await;
    let times = h.ledger().keepalive_answer_times;
    assert_eq!(times.len(), 3, "one time per answer: {times:?}");
    assert!(times[1] >= held, "the held answer: {times:?}");
}

#[tokio::test]
async fn webhooks_are_signed_and_url_validation_is_checked() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let (url, mut hooks) = receiver("test_webhook_secret", false, 0).await;
    sim.validate_endpoint(&url).await.unwrap();
    let v = next_hook(&mut hooks).await;
    assert_eq!(v.json()["event"], "endpoint.url_validation");
    assert!(
        v.signature.is_some(),
        "the validation request is signed too"
    );
    let (bad_url, _bad) = receiver("test_webhook_secret", true, 0).await;
    let e = sim
        .validate_endpoint(&bad_url)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("encryptedToken"), "{e}");

    for product in Product::ALL {
        let opts = MeetingOptions {
            webhook_url: Some(url.clone()),
            ..fast(product)
        };
        let h = sim.start_meeting(small_script(), opts).unwrap();
        let hook = next_hook(&mut hooks).await;
        let now = rtms_proto::unix_secs() as i64;
        rtms_proto::sign::verify_webhook(
            "test_webhook_secret",
            hook.timestamp.as_deref(),
            hook.signature.as_deref(),
            &hook.body,
            now,
            300,
        )
        .expect("signature verifies over the raw body");
        assert!(!hook.body.contains(&b' '), "compact JSON");
        assert_eq!(hook.body, h.started_body());
        assert_eq!(
            hook.json()["payload"]["account_id"].is_string(),
            product != Product::ContactCenter
        );
        let ev = rtms_proto::webhook::Envelope::parse(&hook.body)
            .unwrap()
            .rtms_event()
            .unwrap()
            .unwrap();
        assert_eq!(ev.product, product);
        assert_eq!(ev.id, h.meeting_id());
        assert_eq!(ev.server_url.as_deref(), Some(h.signaling_url().as_str()));
        h.stop(2);
        let stopped = next_hook(&mut hooks).await.json();
        assert_eq!(
            stopped["event"],
            product.event_name(rtms_proto::WebhookAction::Stopped)
        );
        assert_eq!(stopped["payload"]["stop_reason"], 2);
    }
}

#[tokio::test]
async fn failed_webhooks_are_retried_with_the_same_body() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let (url, mut hooks) = receiver("test_webhook_secret", false, 1).await;
    let opts = MeetingOptions {
        webhook_url: Some(url),
        ..fast(Product::ContactCenter)
    };
    let h = sim.start_meeting(small_script(), opts).unwrap();
    let a = next_hook(&mut hooks).await;
    let b = next_hook(&mut hooks).await;
    assert_eq!(a.body, b.body);
    assert_eq!(a.json()["event"], "contact_center.voice_rtms_started");
    assert!(a.json()["payload"]["engagement_id"].is_string());
    eventually(|| h.ledger().webhooks.len() == 2).await;
    let l = h.ledger();
    assert_eq!(
        (l.webhooks[0].status, l.webhooks[1].attempt),
        (Some(500), 2)
    );
}

#[tokio::test]
async fn recording_holds_every_message_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.jsonl");
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let opts = MeetingOptions {
        record: Some(path.clone()),
        ..fast(Product::Meeting)
    };
    let h = sim.start_meeting(small_script(), opts).unwrap();
    let got = run_session(&h, None, Mode::Split, &["audio", "transcript"]).await;
    h.finished().await;
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let media_lines = |lines: &[serde_json::Value]| {
        lines
            .iter()
            .filter(|l| l["socket"] == "media" && l["msg"]["msg_type"].as_u64().unwrap() >= 14)
            .count()
    };
    eventually(|| media_lines(&read()) == got.media.len()).await;
    let lines = read();
    assert_eq!(lines[0]["at_ms"], 0);
    assert_eq!(lines[0]["msg"]["msg_type"], 2);
    assert!(
        lines
            .iter()
            .any(|l| l["socket"] == "signaling" && l["msg"]["msg_type"] == 8)
    );
    assert!(lines.iter().any(|l| l["msg"]["msg_type"] == 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_meetings_run_at_once() {
    // Under this load a test client may not read a socket for a while: use Zoom-like
    // keep-alive timing here, so only real failures fail the test.
    let cfg = SimConfig {
        keepalive_interval: Duration::from_secs(5),
        // A thousand clients connecting at once on a busy machine may take longer than the
        // other tests' 8 s before each meeting has its client.
        connect_timeout: Duration::from_secs(60),
        ..fast_config(false)
    };
    let sim = Simulator::start(cfg).await.unwrap();
    let script = MeetingScript::builder()
        .synthetic_speech(2, 2, 5)
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..1000 {
        let product = Product::ALL[i % 4];
        handles.push(sim.start_meeting(script.clone(), fast(product)).unwrap());
    }
    let tasks: Vec<_> = handles
        .iter()
        .cloned()
        .map(|h| {
            tokio::spawn(async move {
                let got = run_session(&h, None, Mode::Unified, &["audio", "transcript"]).await;
                (got.count(14), got.count(17))
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), (10, 2));
    }
    for h in &handles {
        assert_eq!(h.finished().await.count(MediaKind::Audio), 10);
    }
    assert_eq!(sim.live_meetings(), 0);
}

// === faults ===

async fn started(
    sim: &Simulator,
    product: Product,
) -> (rtms_sim::MeetingHandle, Raw, Raw, serde_json::Value) {
    let h = sim
        .start_meeting(
            MeetingScript::builder()
                .synthetic_speech(2, 50, 50)
                .build()
                .unwrap(),
            MeetingOptions {
                product,
                ..Default::default()
            },
        )
        .unwrap();
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let urls = resp["media_server"]["server_urls"].clone();
    let (m, r) = media(&h, urls["all"].as_str().unwrap(), 32, None).await;
    check_msg4(&r);
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    (h, sig, m, urls)
}

#[tokio::test]
async fn drop_signaling_closes_sockets_and_a_reconnect_is_accepted() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let (h, mut sig, mut m, _) = started(&sim, Product::Meeting).await;
    assert!(m.recv_type(14).await.is_some());
    h.inject(Fault::DropSignaling);
    sig.drain().await;
    m.drain().await;
    let (_sig2, r) = signal(&h, &h.signaling_url(), None).await;
    assert_eq!(r["status_code"], 0, "reconnection within grace is accepted");
    assert_eq!(h.ledger().counters.signaling_handshakes_ok, 2);
    assert!(h.ledger().webhooks_ending("interrupted").is_empty());
}

#[tokio::test]
async fn drop_media_closes_only_media() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let (h, mut sig, mut m, urls) = started(&sim, Product::Meeting).await;
    assert!(m.recv_type(14).await.is_some());
    h.inject(Fault::DropMedia {
        kind: Some(MediaKind::Audio),
    });
    m.drain().await;
    let (mut m2, r) = media(&h, urls["all"].as_str().unwrap(), 32, None).await;
    assert_eq!(r["status_code"], 0);
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    assert!(m2.recv_type(14).await.is_some(), "media flows again");
}

#[tokio::test]
async fn stop_keepalives_means_silence_on_idle_sockets() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    h.inject(Fault::StopKeepalives);
    let (mut sig, _) = signal(&h, &h.signaling_url(), None).await;
    let r = tokio::time::timeout(Duration::from_millis(400), sig.recv()).await;
    assert!(r.is_err() && sig.keepalives().is_empty());
    h.inject(Fault::ResumeKeepalives);
    let _ = tokio::time::timeout(Duration::from_millis(400), sig.recv()).await;
    assert!(!sig.keepalives().is_empty());
}

#[tokio::test]
async fn ignored_keepalive_answers_get_the_socket_killed() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    h.inject(Fault::IgnoreKeepaliveAnswers {
        socket: SocketSel::Signaling,
    });
    let (mut sig, _) = signal(&h, &h.signaling_url(), None).await;
    sig.drain().await;
    assert_eq!(sig.keepalives().len(), 3);
    let l = h.ledger();
    assert_eq!(l.counters.keepalive_answers_ignored, 3);
    assert_eq!(l.counters.keepalive_timeouts, 1);
}

#[tokio::test]
async fn rejected_and_delayed_handshakes() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    h.inject(Fault::RejectHandshakes {
        socket: SocketSel::Signaling,
        count: 2,
        status: 10,
        reason: "internal error, try again".into(),
    });
    for _ in 0..2 {
        let (_s, r) = signal(&h, &h.signaling_url(), None).await;
        assert_eq!(
            (r["status_code"].clone(), r["reason"].clone()),
            (json!(10), json!("internal error, try again"))
        );
    }
    h.inject(Fault::DelayHandshake {
        socket: SocketSel::Any,
        delay: Duration::from_millis(300),
    });
    let t = Instant::now();
    let (_s, r) = signal(&h, &h.signaling_url(), None).await;
    assert_eq!(r["status_code"], 0);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn refused_connections_get_http_503_for_a_while() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    h.inject(Fault::RefuseConnections {
        duration: Duration::from_millis(300),
    });
    let e = Raw::connect(&h.signaling_url(), None)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("503"), "{e}");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (_s, r) = signal(&h, &h.signaling_url(), None).await;
    assert_eq!(r["status_code"], 0);
    assert_eq!(h.ledger().counters.connections_refused, 1);
}

#[tokio::test]
async fn failover_sends_a_new_started_event_with_a_new_url() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let (url, mut hooks) = receiver("test_webhook_secret", false, 0).await;
    let h = sim
        .start_meeting(
            MeetingScript::builder()
                .synthetic_speech(2, 50, 50)
                .build()
                .unwrap(),
            MeetingOptions {
                webhook_url: Some(url),
                ..Default::default()
            },
        )
        .unwrap();
    let first = next_hook(&mut hooks).await.json();
    let old_url = first["payload"]["server_urls"].as_str().unwrap().to_owned();
    let (mut sig, _) = signal(&h, &old_url, None).await;
    h.inject(Fault::Failover);
    let second = next_hook(&mut hooks).await.json();
    assert_eq!(second["event"], "meeting.rtms_started");
    let new_url = second["payload"]["server_urls"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_url, old_url);
    assert_eq!(second["payload"]["rtms_stream_id"], h.stream_id());
    sig.drain().await;
    let (_old, r) = signal(&h, &old_url, None).await;
    assert_ne!(
        r["status_code"], 0,
        "the old server no longer serves the stream"
    );
    let (_new, r) = signal(&h, &new_url, None).await;
    assert_eq!(r["status_code"], 0);
}

#[tokio::test]
async fn interrupt_signaling_sends_interrupted_and_stops_after_grace() {
    let cfg = SimConfig {
        signaling_grace: Duration::from_millis(300),
        ..fast_config(false)
    };
    let sim = Simulator::start(cfg).await.unwrap();
    let (h, mut sig, mut m, _) = started(&sim, Product::Webinar).await;
    let mut hooks = h.subscribe_webhooks();
    assert!(m.recv_type(14).await.is_some());
    h.inject(Fault::InterruptSignaling);
    sig.drain().await;
    m.drain().await;
    let ev = hooks.recv().await.unwrap();
    assert_eq!(ev.event, "webinar.rtms_interrupted");
    let l = tokio::time::timeout(WAIT, h.finished()).await.unwrap();
    assert_eq!(l.stop_reason, Some(19), "AWAIT_RECONNECTION_TIMEOUT");
    let ev = hooks.recv().await.unwrap();
    assert_eq!(
        (ev.event.as_str(), ev.stop_reason),
        ("webinar.rtms_stopped", Some(19))
    );
}

#[tokio::test]
async fn interrupt_media_sends_event_7_and_state_2_reason_14() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let (h, mut sig, mut m, urls) = started(&sim, Product::Meeting).await;
    assert!(m.recv_type(14).await.is_some());
    h.inject(Fault::InterruptMedia);
    m.drain().await;
    let ev = sig.recv_type(6).await;
    let mut seen7 = ev.as_ref().is_some_and(|e| e["event"]["event_type"] == 7);
    while !seen7 {
        let e = sig.recv_type(6).await.expect("event 7 arrives");
        seen7 = e["event"]["event_type"] == 7;
    }
    let st = sig.recv_type(8).await.unwrap();
    assert_eq!(
        (st["state"].clone(), st["reason"].clone()),
        (json!(2), json!(14))
    );
    let (_m2, r) = media(&h, urls["all"].as_str().unwrap(), 32, None).await;
    assert_eq!(r["status_code"], 0);
}

#[tokio::test]
async fn duplicate_webhook_resends_the_same_body() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let (url, mut hooks) = receiver("test_webhook_secret", false, 0).await;
    let h = sim
        .start_meeting(
            small_script(),
            MeetingOptions {
                webhook_url: Some(url),
                ..fast(Product::Meeting)
            },
        )
        .unwrap();
    let a = next_hook(&mut hooks).await;
    h.inject(Fault::DuplicateWebhook);
    let b = next_hook(&mut hooks).await;
    assert_eq!(a.body, b.body);
    eventually(|| h.ledger().webhooks.len() == 2).await;
    assert_eq!(h.ledger().webhooks[1].attempt, 2);
}

#[tokio::test]
async fn terminate_sends_state_4_then_stopped_webhook() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let (url, mut hooks) = receiver("test_webhook_secret", false, 0).await;
    let h = sim
        .start_meeting(
            MeetingScript::builder()
                .synthetic_speech(2, 50, 50)
                .build()
                .unwrap(),
            MeetingOptions {
                webhook_url: Some(url),
                ..Default::default()
            },
        )
        .unwrap();
    next_hook(&mut hooks).await;
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let (mut m, _) = media(
        &h,
        resp["media_server"]["server_urls"]["all"].as_str().unwrap(),
        32,
        None,
    )
    .await;
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    assert!(m.recv_type(14).await.is_some());
    h.inject(Fault::Terminate { reason: 1 });
    let rest = sig.drain().await;
    let st = rest.iter().rev().find(|v| v["msg_type"] == 8).unwrap();
    assert_eq!(
        (st["state"].clone(), st["reason"].clone()),
        (json!(4), json!(1))
    );
    let stopped = next_hook(&mut hooks).await.json();
    assert_eq!(stopped["event"], "meeting.rtms_stopped");
    assert_eq!(stopped["payload"]["stop_reason"], 1);
    assert_eq!(h.finished().await.stop_reason, Some(1));
}

#[tokio::test]
async fn scripted_fault_after_frames_fires() {
    let text = r#"
[[participant]]
name = "Ann"
[[utterance]]
speaker = "Ann"
start = 0.0
duration = 2.0
text = "a long sentence"
[[fault]]
after_frames = 5
kind = "terminate"
stop_reason = 3
"#;
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(
            MeetingScript::from_toml_str(text).unwrap(),
            fast(Product::Meeting),
        )
        .unwrap();
    let got = run_session(&h, None, Mode::Unified, &["audio"]).await;
    let l = h.finished().await;
    assert_eq!(l.stop_reason, Some(3));
    assert!(
        got.count(14) >= 5 && got.count(14) < 100,
        "{}",
        got.count(14)
    );
}

#[tokio::test]
async fn pause_holds_the_timeline_and_resume_continues() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let (h, mut sig, mut m, _) = started(&sim, Product::Meeting).await;
    assert!(m.recv_type(14).await.is_some());
    h.inject(Fault::Pause { duration: None });
    let st = sig.recv_type(9).await.unwrap();
    let st = if st["state"] == 2 {
        sig.recv_type(9).await.unwrap()
    } else {
        st
    };
    assert_eq!(st["state"], 3, "PAUSED");
    let before = h.ledger().count(MediaKind::Audio);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.ledger().count(MediaKind::Audio) <= before + 2);
    h.inject(Fault::Resume);
    let st = sig.recv_type(9).await.unwrap();
    assert_eq!(st["state"], 4, "RESUMED");
}

#[tokio::test]
async fn event_subscription_is_honoured() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    sig.send(
        json!({"msg_type": 5, "events": [{"event_type": 3, "subscribe": false},
        {"event_type": 2, "subscribe": true}]}),
    )
    .await;
    let (mut m, _) = media(
        &h,
        resp["media_server"]["server_urls"]["all"].as_str().unwrap(),
        32,
        None,
    )
    .await;
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    let task = tokio::spawn(async move { m.drain().await });
    let msgs = sig.drain().await;
    task.await.unwrap();
    let events: Vec<_> = msgs
        .iter()
        .filter(|v| v["msg_type"] == 6)
        .map(|v| v["event"]["event_type"].as_u64().unwrap())
        .collect();
    assert!(events.contains(&2) && !events.contains(&3), "{events:?}");
}

#[tokio::test]
async fn simulate_cli_runs_meetings_to_their_end() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: rtms_sim::cli::SimulateArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let rec = dir.path().join("rec.jsonl");
    let (url, mut hooks) = receiver("test_webhook_secret", false, 0).await;
    let cli = Cli::try_parse_from([
        "simulate",
        "--count",
        "2",
        "--pace",
        "fast",
        "--product",
        "video-sdk",
        "--tls",
        "--validate-endpoint",
        "--webhook-url",
        &url,
        "--ca-out",
        ca.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
        "--connect-timeout-secs",
        "1",
    ])
    .unwrap();
    rtms_sim::cli::simulate(cli.args).await.unwrap();
    assert!(
        std::fs::read_to_string(&ca)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(dir.path().join("rec-2.jsonl").exists());
    let mut events = Vec::new();
    while let Ok(Some(h)) = tokio::time::timeout(Duration::from_millis(200), hooks.recv()).await {
        events.push(h.json()["event"].as_str().unwrap().to_owned());
    }
    assert_eq!(events[0], "endpoint.url_validation");
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "session.rtms_started")
            .count(),
        2
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "session.rtms_stopped")
            .count(),
        2
    );
}

fn simulate_args(argv: &[&str]) -> rtms_sim::cli::SimulateArgs {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: rtms_sim::cli::SimulateArgs,
    }
    Cli::try_parse_from(std::iter::once("simulate").chain(argv.iter().copied()))
        .unwrap()
        .args
}

#[tokio::test]
async fn a_shutdown_signal_stops_meetings_with_reason_17_and_closes_whole_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let (url, mut hooks) = receiver("test_webhook_secret", false, 0).await;
    let args = simulate_args(&["--webhook-url", &url, "--record", rec.to_str().unwrap()]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(rtms_sim::cli::simulate_until(args, async move {
        let _ = stopped.await;
    }));
    // The client: the built-in stand-up (80 s) at real-time pace, over ws.
    let ev = next_hook(&mut hooks).await.json();
    let p = &ev["payload"];
    let (uuid, stream) = (
        p["meeting_uuid"].as_str().unwrap(),
        p["rtms_stream_id"].as_str().unwrap(),
    );
    let signature =
        rtms_proto::sign::handshake_signature("test_client_id", "test_client_secret", uuid, stream);
    let mut sig = Raw::connect(p["server_urls"].as_str().unwrap(), None)
        .await
        .unwrap();
    sig.send(
        json!({"msg_type": 1, "meeting_uuid": uuid, "rtms_stream_id": stream,
        "signature": signature}),
    )
    .await;
    let resp = sig.recv_type(2).await.unwrap();
    let all = resp["media_server"]["server_urls"]["all"].as_str().unwrap();
    let mut m = Raw::connect(all, None).await.unwrap();
    m.send(
        json!({"msg_type": 3, "meeting_uuid": uuid, "rtms_stream_id": stream,
        "signature": signature, "media_type": 32}),
    )
    .await;
    assert_eq!(m.recv_type(4).await.unwrap()["status_code"], 0);
    sig.send(json!({"msg_type": 7, "rtms_stream_id": stream}))
        .await;
    assert!(m.recv().await.is_some(), "media flows");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("simulate returns after the signal")
        .unwrap()
        .unwrap();
    let last8 = sig
        .drain()
        .await
        .into_iter()
        .rev()
        .find(|v| v["msg_type"] == 8)
        .unwrap();
    assert_eq!(
        (last8["state"].as_u64(), last8["reason"].as_u64()),
        (Some(4), Some(17))
    );
    // Every line of the recording is whole, down to the stop.
    let text = std::fs::read_to_string(&rec).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a whole JSON line"))
        .collect();
    assert!(
        lines.iter().any(|l| l["msg"]["msg_type"] == 8
            && l["msg"]["state"] == 4
            && l["msg"]["reason"] == 17),
        "the stop is recorded"
    );
    let mut got_stopped = false;
    while let Ok(Some(h)) = tokio::time::timeout(Duration::from_millis(500), hooks.recv()).await {
        let v = h.json();
        if v["event"] == "meeting.rtms_stopped" {
            assert_eq!(v["payload"]["stop_reason"], 17);
            got_stopped = true;
        }
    }
    assert!(got_stopped, "the stopped webhook went out");
}

#[tokio::test]
async fn dropping_the_simulator_closes_every_socket() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let (h, mut sig, mut m, _) = started(&sim, Product::Meeting).await;
    assert!(m.recv_type(14).await.is_some());
    drop(sim);
    sig.drain().await;
    m.drain().await;
    assert!(
        !h.is_finished(),
        "a shut-down simulator does not play the end of the meeting"
    );
}

#[tokio::test]
async fn media_handshake_errors_use_the_ga_status_codes() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let (mut first, resp) = signal(&h, &h.signaling_url(), None).await;
    let urls = resp["media_server"]["server_urls"].clone();
    h.inject(Fault::DropSignaling);
    first.drain().await;
    // Without a live signaling connection, media handshakes are refused.
    let (_m, r) = media(&h, urls["all"].as_str().unwrap(), 32, None).await;
    assert_eq!(r["status_code"], 2, "{r}");
    let (_sig, _) = signal(&h, &h.signaling_url(), None).await;
    let (_a, r) = media(&h, urls["audio"].as_str().unwrap(), 1, None).await;
    assert_eq!(r["status_code"], 0);
    let (_b, r) = media(&h, urls["audio"].as_str().unwrap(), 1, None).await;
    assert_eq!(r["status_code"], 16, "DUPLICATE_MEDIA_DATA_CONNECTION: {r}");
    let (_c, r) = media(&h, urls["all"].as_str().unwrap(), 32, None).await;
    assert_eq!(r["status_code"], 15, "MEDIA_DATA_ALL_CONNECTION_EXIST: {r}");
    let (_d, r) = media(&h, urls["video"].as_str().unwrap(), 64, None).await;
    assert_eq!(r["status_code"], 7, "INVALID_MEDIA_TYPE: {r}");
    let (_e, r) = media(&h, urls["video"].as_str().unwrap(), 1, None).await;
    assert_eq!(r["status_code"], 7, "audio asked on the video URL: {r}");
}

#[tokio::test]
async fn requested_audio_params_are_confirmed_and_honoured() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let mut req = media_req(&h, 1);
    req["media_params"] = json!({"audio": {"sample_rate": 3, "channel": 2, "codec": 4,
        "send_rate": 100, "data_opt": 2}});
    let mut m = Raw::connect(
        resp["media_server"]["server_urls"]["audio"]
            .as_str()
            .unwrap(),
        None,
    )
    .await
    .unwrap();
    m.send(req).await;
    let r = m.recv_type(4).await.unwrap();
    let a = &r["media_params"]["audio"];
    assert_eq!(
        (a["sample_rate"].clone(), a["channel"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(
        a["codec"], 1,
        "Opus is confirmed as L16, which is what is sent"
    );
    assert_eq!(a["send_rate"], 100);
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    let frame = m.recv_type(14).await.unwrap();
    // Per-speaker audio (data_opt 2) says whose it is.
    let c = &frame["content"];
    assert!(
        c["user_id"].as_i64().is_some_and(|id| id > 0)
            && c["user_name"].as_str().is_some_and(|n| !n.is_empty()),
        "{frame}"
    );
    use base64::Engine;
    let pcm = base64::engine::general_purpose::STANDARD
        .decode(frame["content"]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        pcm.len(),
        48_000 / 10 * 2 * 2,
        "100 ms of 48 kHz stereo L16"
    );
    let l = h.finished().await;
    // 100+60+40 ms of speech in 100 ms frames: 1 + 1 + 1.
    assert_eq!(l.count(MediaKind::Audio), 3);
}

/// Two speakers talking over each other: 0-100 ms and 40-140 ms, in 20 ms frames.
fn overlapping_script() -> MeetingScript {
    MeetingScript::builder()
        .participant(101, "Ann Example")
        .participant(202, "Bo Example")
        .utterance(101, 0, 100, "first")
        .utterance(202, 40, 100, "second")
        .build()
        .unwrap()
}

#[tokio::test]
async fn overlapping_speakers_are_mixed_into_one_frame_per_slot_unless_per_speaker() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    // Mixed audio (the default): one frame per 20 ms slot from 0 to 140 ms, none attributed.
    let h = sim
        .start_meeting(overlapping_script(), fast(Product::Meeting))
        .unwrap();
    let got = run_session(&h, None, Mode::Unified, &["audio"]).await;
    let ledger = h.finished().await;
    assert_eq!(got.count(14), 7, "one mixed frame per slot");
    assert_eq!(ledger.count(MediaKind::Audio), 7);
    for m in got.media.iter().filter(|m| m["msg_type"] == 14) {
        assert_eq!(m["content"]["user_id"], -1, "{m}");
    }
    // Per-speaker audio: one frame per speaker per slot, each naming its speaker.
    let h = sim
        .start_meeting(overlapping_script(), fast(Product::Meeting))
        .unwrap();
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let mut req = media_req(&h, 1);
    req["media_params"] = json!({"audio": {"data_opt": 2}});
    let mut m = Raw::connect(
        resp["media_server"]["server_urls"]["audio"]
            .as_str()
            .unwrap(),
        None,
    )
    .await
    .unwrap();
    m.send(req).await;
    m.recv_type(4).await.unwrap();
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    let mut speakers = std::collections::BTreeMap::new();
    for _ in 0..10 {
        let f = m.recv_type(14).await.unwrap();
        *speakers
            .entry(f["content"]["user_id"].as_i64().unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(speakers, [(101, 5), (202, 5)].into_iter().collect());
    assert_eq!(h.finished().await.count(MediaKind::Audio), 10);
}

#[tokio::test]
async fn event_subscriptions_are_opt_in() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let got = run_session_with_events(
        &h,
        None,
        Mode::Unified,
        &["audio", "video", "deskshare"],
        &[2, 3, 4],
    )
    .await;
    h.finished().await;
    let types: Vec<u64> = got
        .signaling
        .iter()
        .filter(|v| v["msg_type"] == 6)
        .map(|v| v["event"]["event_type"].as_u64().unwrap())
        .collect();
    assert!(
        types.contains(&3),
        "participant join, subscribed: {types:?}"
    );
    assert!(
        types.iter().all(|t| [2, 3, 4].contains(t)),
        "only the subscribed types arrive: {types:?}"
    );
}

#[tokio::test]
async fn a_client_that_never_subscribes_gets_no_events() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(small_script(), fast(Product::Meeting))
        .unwrap();
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let all = resp["media_server"]["server_urls"]["all"].as_str().unwrap();
    let (mut m, r) = media(&h, all, 32, None).await;
    check_msg4(&r);
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    let task = tokio::spawn(async move { m.drain().await });
    let msgs = sig.drain().await;
    let media = task.await.unwrap();
    let ledger = h.finished().await;
    assert!(
        msgs.iter().all(|v| v["msg_type"] != 6),
        "no msg 5, no msg 6: {msgs:?}"
    );
    assert!(ledger.events.is_empty(), "{:?}", ledger.events);
    assert!(!media.is_empty(), "media still flows");
    assert!(msgs.iter().any(|v| v["msg_type"] == 8), "states still flow");
}

/// A pause without a duration ends at a resume scheduled later in the script, in both paces.
async fn pause_then_scheduled_resume(pace: Pace) {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let script = MeetingScript::builder()
        .participant(101, "Ann Example")
        .utterance(101, 0, 400, "a long line")
        .fault_at(100, Fault::Pause { duration: None })
        .fault_at(250, Fault::Resume)
        .build()
        .unwrap();
    let h = sim
        .start_meeting(
            script,
            MeetingOptions {
                pace,
                ..Default::default()
            },
        )
        .unwrap();
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        run_session(&h, None, Mode::Unified, &["audio"]),
    )
    .await
    .expect("the meeting resumes and ends");
    let ledger = h.finished().await;
    let states: Vec<u32> = ledger.stream_states.iter().map(|s| s.0).collect();
    assert!(
        states.windows(2).any(|w| w == [5, 6]),
        "{pace:?}: paused (5), then resumed (6): {states:?}"
    );
    assert_eq!(
        ledger.stop_reason,
        Some(6),
        "{pace:?}: the meeting ran to its end"
    );
    // Every 20 ms of the 400 ms line is sent: nothing is lost across the pause.
    assert_eq!(ledger.count(MediaKind::Audio), 20, "{pace:?}");
    assert_eq!(got.count(14), 20, "{pace:?}");
}

#[tokio::test]
async fn a_pause_without_duration_ends_at_a_scheduled_resume() {
    pause_then_scheduled_resume(Pace::Fast).await;
    pause_then_scheduled_resume(Pace::Realtime).await;
}

#[tokio::test]
async fn a_terminate_mid_speech_delivers_every_frame_sent_before_it_then_the_state() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let script = MeetingScript::builder()
        .participant(101, "Ann Example")
        .utterance(101, 0, 2000, "a long line cut short")
        .fault_after_frames(40, Fault::Terminate { reason: 25 })
        .build()
        .unwrap();
    let h = sim.start_meeting(script, fast(Product::Meeting)).unwrap();
    let got = run_session(&h, None, Mode::Unified, &["audio"]).await;
    let ledger = h.finished().await;
    assert_eq!(ledger.stop_reason, Some(25));
    let sent = ledger.count(MediaKind::Audio);
    assert!(sent >= 40, "the frames before the fault were sent: {sent}");
    assert_eq!(
        got.count(14) as u64,
        sent,
        "every frame the ledger counts reached the client"
    );
    let last8 = got
        .signaling
        .iter()
        .rev()
        .find(|v| v["msg_type"] == 8)
        .unwrap();
    assert_eq!(
        (last8["state"].as_u64(), last8["stop_reason"].as_u64()),
        (Some(4), Some(25))
    );
}

#[tokio::test]
async fn fast_pace_holds_the_timeline_across_a_media_drop() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(
            MeetingScript::builder()
                .synthetic_speech(1, 10, 20)
                .fault_after_frames(60, Fault::DropMedia { kind: None })
                .build()
                .unwrap(),
            fast(Product::Meeting),
        )
        .unwrap();
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let urls = resp["media_server"]["server_urls"].clone();
    let (m1, r) = media(&h, urls["all"].as_str().unwrap(), 1, None).await;
    check_msg4(&r);
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    let mut m1 = m1;
    let before: Vec<_> = m1.drain().await;
    let (mut m2, r) = media(&h, urls["all"].as_str().unwrap(), 1, None).await;
    assert_eq!(r["status_code"], 0);
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    let after: Vec<_> = m2.drain().await;
    let ledger = h.finished().await;
    let seqs = |v: &[serde_json::Value]| v.iter().filter(|m| m["msg_type"] == 14).count();
    let got = seqs(&before) + seqs(&after);
    assert_eq!(
        ledger.count(MediaKind::Audio),
        200,
        "the whole script was sent"
    );
    assert_eq!(
        got,
        200,
        "none lost across the drop ({} before, {} after)",
        seqs(&before),
        seqs(&after)
    );
    let ranges = &ledger.kinds[&MediaKind::Audio].seq_ranges;
    assert_eq!(ranges, &vec![(0, 199)], "no seq skipped");
}

/// Reads a media socket (answering keep-alives) until the server closes it, or, as a
/// client that tears everything down when signaling goes, until `sig` closes: whatever the
/// media socket still holds unread is then abandoned. Returns the audio frames read.
async fn read_media_until_signaling_closes(
    h: &rtms_sim::MeetingHandle,
    url: &str,
    sig: &mut Raw,
) -> u64 {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text(media_req(h, 1).to_string()))
        .await
        .unwrap();
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    let mut frames = 0;
    loop {
        tokio::select! {
            biased;
            v = sig.recv_or_closed() => if v.is_none() { break },
            m = ws.next() => {
                let v: serde_json::Value = match m {
                    Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).unwrap(),
                    Some(Ok(_)) => continue,
                    _ => break,
                };
                match v["msg_type"].as_u64() {
                    Some(12) => {
                        let ans = json!({"msg_type": 13, "timestamp": v["timestamp"],
                            "sequence": v["sequence"]});
                        if ws.send(Message::text(ans.to_string())).await.is_err() {
                            break;
                        }
                    }
                    Some(14) => frames += 1,
                    _ => {}
                }
            }
        }
    }
    frames
}

#[tokio::test]
async fn the_ledger_counts_exactly_what_a_client_read_across_an_interrupted_signaling_socket() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(
            MeetingScript::builder()
                .synthetic_speech(1, 55, 20)
                .fault_after_frames(400, Fault::InterruptSignaling)
                .build()
                .unwrap(),
            fast(Product::Meeting),
        )
        .unwrap();
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let audio = resp["media_server"]["server_urls"]["audio"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = read_media_until_signaling_closes(&h, &audio, &mut sig).await;
    // Reconnect both sockets and read to the end.
    let (mut sig, r) = signal(&h, &h.signaling_url(), None).await;
    assert_eq!(r["status_code"], 0, "{r}");
    let after = read_media_until_signaling_closes(&h, &audio, &mut sig).await;
    let ledger = h.finished().await;
    assert_eq!(ledger.stop_reason, Some(6));
    assert_eq!(
        before + after,
        ledger.count(MediaKind::Audio),
        "read {before} before the interruption and {after} after"
    );
    assert_eq!(
        ledger.count(MediaKind::Audio),
        1100,
        "fast pace skips nothing"
    );
    assert_eq!(ledger.seq_ranges(MediaKind::Audio), vec![(0, 1099)]);
    assert_eq!(ledger.counters.unconfirmed, 0);
    assert_eq!(ledger.one_client_at_a_time(), Ok(()));
}

#[tokio::test]
async fn a_client_that_never_confirms_is_counted_as_unconfirmed() {
    let sim = Simulator::start(fast_config(false)).await.unwrap();
    let h = sim
        .start_meeting(
            MeetingScript::builder()
                .synthetic_speech(1, 5, 20)
                .build()
                .unwrap(),
            MeetingOptions::default(),
        )
        .unwrap();
    let (mut sig, resp) = signal(&h, &h.signaling_url(), None).await;
    let all = resp["media_server"]["server_urls"]["all"].as_str().unwrap();
    let (mut m, _) = media(&h, all, 1, None).await;
    m.answer_keepalives(false);
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    assert!(m.recv_type(14).await.is_some());
    // A drop while the client answers nothing: after the drain limit the socket goes anyway,
    // and what it wrote since the handshake stays unconfirmed.
    h.inject(Fault::DropMedia { kind: None });
    while m.recv_or_closed().await.is_some() {}
    h.stop(6);
    let ledger = h.finished().await;
    assert!(ledger.counters.unconfirmed >= 1, "{:?}", ledger.counters);
}

/// Overlapping speakers, a chat in the middle of speech, and a run longer than a burst.
fn preencode_script() -> MeetingScript {
    MeetingScript::builder()
        .participant(101, "Ann Example")
        .participant(202, "Bo Example")
        .utterance(101, 0, 6000, "a long first line")
        .utterance(202, 1000, 1000, "an overlapping line")
        .utterance(101, 6000, 410, "a short last line")
        .chat(1500, 202, "a chat while both speak")
        .build()
        .unwrap()
}

/// What a client can compare across two runs of one script: every media message's type,
/// speaker, payload size (text for transcripts and chat) and time since the first one.
fn shape(got: &Received) -> Vec<(u64, i64, String, String, i64)> {
    let t0 = got.media[0]["content"]["timestamp"].as_i64().unwrap();
    got.media
        .iter()
        .map(|m| {
            let c = &m["content"];
            let data = c["data"].as_str().unwrap();
            let data = if m["msg_type"] == 14 {
                format!("{} base64 chars", data.len())
            } else {
                data.to_owned()
            };
            (
                m["msg_type"].as_u64().unwrap(),
                c["user_id"].as_i64().unwrap(),
                c["user_name"].as_str().unwrap().to_owned(),
                data,
                c["timestamp"].as_i64().unwrap() - t0,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preencoded_audio_sends_what_the_normal_sender_sends() {
    let mut runs = Vec::new();
    for preencoded_audio in [false, true] {
        let sim = Simulator::start(SimConfig {
            preencoded_audio,
            ..fast_config(false)
        })
        .await
        .unwrap();
        let h = sim
            .start_meeting(preencode_script(), fast(Product::Meeting))
            .unwrap();
        let got = run_session(&h, None, Mode::Unified, &["audio", "transcript", "chat"]).await;
        let ledger = h.finished().await;
        runs.push((got, ledger));
    }
    let (plain, plain_ledger) = &runs[0];
    let (pre, pre_ledger) = &runs[1];
    // Mixed audio (Zoom's default): one frame per 20 ms slot, the overlap mixed into the
    // first speaker's frames.
    assert_eq!(pre_ledger.count(MediaKind::Audio), 300 + 21);
    assert_eq!(
        pre_ledger.kinds, plain_ledger.kinds,
        "per-kind counts, bytes, seq ranges"
    );
    let lines = |l: &rtms_sim::Ledger| {
        l.transcript
            .iter()
            .map(|t| (t.user_id, t.text.clone(), t.end_time - t.start_time))
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(pre_ledger), lines(plain_ledger));
    let chats = |l: &rtms_sim::Ledger| l.chats.iter().map(|c| c.text.clone()).collect::<Vec<_>>();
    assert_eq!(chats(pre_ledger), chats(plain_ledger));
    assert_eq!(pre_ledger.events, plain_ledger.events);
    assert_eq!(pre_ledger.stream_states, plain_ledger.stream_states);
    assert_eq!(pre_ledger.stop_reason, plain_ledger.stop_reason);
    // On the wire: the same messages in the same order, the same speakers, payload sizes
    // and timestamps (relative to the first message).
    assert_eq!(pre.media.len() as u64, pre_ledger.total_frames());
    assert_eq!(shape(pre), shape(plain));
    // The ring's frames are distinct, and decode to the frame size the ledger counts.
    let audio: Vec<&str> = pre
        .media
        .iter()
        .filter(|m| m["msg_type"] == 14)
        .map(|m| m["content"]["data"].as_str().unwrap())
        .collect();
    // (The first 50 frames, before the second speaker starts, are consecutive in the ring.)
    let first: std::collections::HashSet<&str> = audio[..50].iter().copied().collect();
    assert_eq!(first.len(), 50);
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD
        .decode(audio[0])
        .unwrap();
    assert_eq!(b.len(), 640);
}

/// A media loss's grace ends when its media comes back: its timer does not end the stream
/// when the media is lost again later and the client is still within that new loss's grace.
#[tokio::test]
async fn a_media_grace_ends_with_the_reconnection_not_at_a_later_loss() {
    let cfg = SimConfig {
        media_grace: Duration::from_millis(2_000),
        ..fast_config(false)
    };
    let sim = Simulator::start(cfg).await.unwrap();
    let (h, mut sig, mut m, urls) = started(&sim, Product::Meeting).await;
    let all = urls["all"].as_str().unwrap().to_owned();
    assert!(m.recv_type(14).await.is_some());
    let t0 = tokio::time::Instant::now();
    h.inject(Fault::DropMedia { kind: None });
    m.drain().await;
    let (mut m2, r) = media(&h, &all, 32, None).await;
    assert_eq!(r["status_code"], 0);
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    assert!(
        m2.recv_type(14).await.is_some(),
        "media back after the first loss"
    );
    // Lost again 1 s after the first loss, and back 2.5 s after it: past the first loss's
    // grace, within the second's.
    tokio::time::sleep_until(t0 + Duration::from_millis(1_000)).await;
    h.inject(Fault::DropMedia { kind: None });
    m2.drain().await;
    tokio::time::sleep_until(t0 + Duration::from_millis(2_500)).await;
    assert!(!h.is_finished(), "the first loss's grace ended the stream");
    let (mut m3, r) = media(&h, &all, 32, None).await;
    assert_eq!(
        r["status_code"], 0,
        "the reconnection within grace is accepted"
    );
    sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
        .await;
    assert!(m3.recv_type(14).await.is_some(), "media flows again");
    assert_eq!(h.ledger().stop_reason, None);
}
