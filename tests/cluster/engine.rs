//! The engine restarted under load: no meeting ends, no webhook that was answered 200 is
//! lost; webhooks sent while it is down are answered 503 and served once Zoom retries.

use crate::check::served_exactly_once;
use crate::rig::{ONE_AT_A_TIME, Rig, eventually, frames_in, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_restart_under_load_ends_no_meeting_and_loses_no_webhook() {
    let _one = ONE_AT_A_TIME.lock().await;
    // A lease long enough for the restart: owners keep their streams through it.
    let mut rig = Rig::start_with(3, |_, spec| {
        spec.lease_ms = 8_000;
        spec.renew_ms = 1_000;
    })
    .await;
    let mut meetings: Vec<_> = (0..6).map(|_| rig.meeting(60)).collect();
    for m in &meetings {
        eventually("every meeting to reach its plugin", || {
            frames_in(&rig.seq_file(m.stream_id())) >= 2
        })
        .await;
    }
    let nats = rig.nats.take().unwrap();
    let dir = tokio::task::spawn_blocking(move || nats.stop())
        .await
        .unwrap();
    // Meetings that start while the engine is down: their webhooks are refused with 503
    // until Zoom's retries find it back.
    meetings.extend((0..3).map(|_| rig.meeting(30)));
    eventually("a webhook refused while the engine is down", || {
        meetings[6..].iter().any(|m| {
            m.ledger()
                .webhooks_ending("rtms_started")
                .iter()
                .any(|w| w.status == Some(503))
        })
    })
    .await;
    let port = rig.specs[0]
        .nats_url
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    rig.nats = Some(
        tokio::task::spawn_blocking(move || crate::nats::NatsServer::start_at(dir, port))
            .await
            .unwrap(),
    );
    meetings.extend((0..3).map(|_| rig.meeting(30)));
    let mut refused = 0;
    for m in &meetings {
        let ledger = within("the meeting to finish", m.finished()).await;
        let path = rig.seq_file(m.stream_id());
        let rec = crate::check::meeting_ended(&path).await;
        assert_eq!(rec.starts, [false], "{}: never resumed", m.stream_id());
        served_exactly_once(m.stream_id(), &ledger, &rec);
        let started = ledger.webhooks_ending("rtms_started");
        assert_eq!(
            started.iter().filter(|w| w.status == Some(200)).count(),
            1,
            "{started:?}"
        );
        refused += started.iter().filter(|w| w.status == Some(503)).count();
    }
    assert!(refused > 0, "some webhooks came while the engine was down");
    for h in rig.hosts.iter().flatten() {
        assert_eq!(
            h.count_logs("cluster: lease lost"),
            0,
            "no host lost a lease"
        );
    }
    eprintln!(
        "engine restart: {} meetings, none ended; {refused} webhooks answered 503 while it was down, all served after Zoom's retry",
        meetings.len()
    );
}
