//! A webhook acknowledged by a host that dies before acting on it is still served.

use crate::check::served_exactly_once;
use crate::record::Record;
use crate::rig::{ONE_AT_A_TIME, Rig, eventually, frames_in, within};

/// Host `a` is alone and full (`max_streams = 1`, one meeting running): it answers a new
/// meeting's started webhook 200 once the log has it, takes it from the log and cannot act
/// on it (no host has room), and is killed. Host `b`, started afterwards, serves it from the
/// log — and takes over `a`'s first meeting too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_acknowledged_by_a_host_that_dies_before_acting_is_still_served() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start_with(1, |_, spec| spec.max_streams = 1).await;
    let first = rig.meeting(60);
    eventually("the first meeting to run", || {
        frames_in(&rig.seq_file(first.stream_id())) >= 2
    })
    .await;
    let second = rig.meeting(30);
    eventually(
        "the second meeting's started webhook to be answered 200",
        || {
            second
                .ledger()
                .webhooks_ending("rtms_started")
                .iter()
                .any(|w| w.status == Some(200))
        },
    )
    .await;
    let a = rig.host(0);
    assert!(
        tokio::task::block_in_place(|| {
            a.wait_for_log("no live host has room", std::time::Duration::from_secs(10))
        })
        .is_some(),
        "host-a took the webhook from the log and could not act on it"
    );
    assert_eq!(rig.owners(second.stream_id()), Vec::<usize>::new());
    let host = rig.hosts[0].take().unwrap();
    tokio::task::spawn_blocking(move || host.kill9())
        .await
        .unwrap();
    let b = rig.add_host("host-b").await;
    for m in [&first, &second] {
        let ledger = within("the meeting to finish", m.finished()).await;
        let path = rig.seq_file(m.stream_id());
        let rec = crate::check::meeting_ended(&path).await;
        served_exactly_once(m.stream_id(), &ledger, &rec);
        assert!(rig.owners(m.stream_id()).contains(&b), "host-b served it");
    }
    let ledger = second.ledger();
    let started = ledger.webhooks_ending("rtms_started");
    assert_eq!(started.len(), 1, "Zoom never had to retry: {started:?}");
    assert_eq!(
        Record::read(&rig.seq_file(second.stream_id())).starts,
        [false],
        "the second meeting started fresh at host-b"
    );
}
