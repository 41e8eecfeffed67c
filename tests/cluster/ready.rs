//! `/readyz` on a host of a cluster tells a load balancer to steer away: 503 "at the stream
//! cap" while the host carries its `rtms.max_streams` (new streams then go to another host),
//! 503 "draining" from the moment SIGTERM starts its drain; no meeting ends.

use std::time::Duration;

use crate::check::served_exactly_once;
use crate::rig::{LIMIT, ONE_AT_A_TIME, Rig, eventually, frames_in, http_get, within};

/// `/readyz` on the admin listener at `admin`.
async fn readyz(admin: std::net::SocketAddr) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(admin, "/readyz"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_full_then_draining_so_a_balancer_steers_away() {
    let _one = ONE_AT_A_TIME.lock().await;
    // host-a alone first, with room for two streams.
    let mut rig = Rig::start_with(1, |_, spec| {
        spec.admin = true;
        spec.max_streams = 2;
    })
    .await;
    let admin = rig.admin_addr(0);
    assert_eq!(readyz(admin).await, (200, "ready\n".to_owned()));
    let mut meetings: Vec<_> = (0..2).map(|_| rig.meeting(40)).collect();
    for m in &meetings {
        eventually("every meeting to reach its plugin", || {
            frames_in(&rig.seq_file(m.stream_id())) >= 2
        })
        .await;
    }
    assert_eq!(
        readyz(admin).await,
        (
            503,
            "not ready: at the stream cap (rtms.max_streams = 2)\n".to_owned()
        )
    );
    // A second host joins; a new stream goes there, whichever host takes its webhook.
    rig.add_host("host-b").await;
    meetings.push(rig.meeting(40));
    let third = meetings[2].stream_id().to_owned();
    eventually("a new stream to run at the host with room", || {
        frames_in(&rig.seq_file(&third)) >= 2 && rig.owners(&third) == [1]
    })
    .await;

    // The engine paused: the drain holds at its first write, so /readyz is asked while the
    // host certainly drains (a pause far shorter than the lease changes nothing else).
    let nats = rig.nats.as_ref().unwrap().pid().to_string();
    let signal = |sig: &str, pid: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP", &nats);
    rig.signal(0, "TERM");
    let host = rig.hosts[0].take().unwrap();
    rig.rebalance();
    let host = tokio::task::spawn_blocking(move || {
        let draining = host.wait_for_log("cluster: draining", LIMIT);
        (host, draining)
    });
    let (mut host, draining) = host.await.unwrap();
    let answer = readyz(admin).await;
    signal("-CONT", &nats);
    assert!(draining.is_some_and(|l| l.contains("\"streams\":2")));
    assert_eq!(
        answer,
        (
            503,
            "not ready: draining: handing its streams to the other hosts of the cluster\n"
                .to_owned()
        )
    );
    let done = host
        .wait_for_log("cluster: drain done", LIMIT)
        .expect("the drain finished");
    assert!(
        done.contains("\"handed\":2") && done.contains("\"left\":0"),
        "{done}"
    );
    let status = tokio::task::spawn_blocking(move || host.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    for m in &meetings {
        let ledger = within("the meeting to finish", m.finished()).await;
        let rec = crate::check::meeting_ended(&rig.seq_file(m.stream_id())).await;
        assert_eq!(served_exactly_once(m.stream_id(), &ledger, &rec), 0);
    }
}
