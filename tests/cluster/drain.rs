//! SIGTERM on a host of a cluster hands its streams to the others: no meeting ends.

use crate::check::served_exactly_once;
use crate::rig::{ONE_AT_A_TIME, Rig, eventually, frames_in, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_a_hosts_streams_to_the_others_with_no_meeting_ended() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(3).await;
    let meetings: Vec<_> = (0..9).map(|_| rig.meeting(60)).collect();
    let streams: Vec<String> = meetings.iter().map(|m| m.stream_id().to_owned()).collect();
    for s in &streams {
        eventually("every meeting to reach its plugin", || {
            frames_in(&rig.seq_file(s)) >= 2
        })
        .await;
    }
    let drained: Vec<&String> = streams.iter().filter(|s| rig.owners(s) == [0]).collect();
    assert!(!drained.is_empty(), "host-a runs some of the meetings");
    let host = rig.hosts[0].take().unwrap();
    rig.rebalance();
    let logs = tokio::task::spawn_blocking(move || host.stop())
        .await
        .unwrap();
    let done = logs
        .iter()
        .find(|l| l.contains("cluster: drain done"))
        .expect("the drain finished");
    assert!(
        done.contains(&format!("\"handed\":{}", drained.len())) && done.contains("\"left\":0"),
        "{done}"
    );
    for (m, s) in meetings.iter().zip(&streams) {
        let ledger = within("the meeting to finish", m.finished()).await;
        let path = rig.seq_file(s);
        let rec = crate::check::meeting_ended(&path).await;
        if drained.contains(&s) {
            assert_eq!(rec.starts, [false, true], "{s}");
            assert_eq!(rec.ends, ["reload", "stopped(6)"], "{s}");
        } else {
            assert_eq!(rec.starts, [false], "{s}");
        }
        let lost = served_exactly_once(s, &ledger, &rec);
        assert_eq!(lost, 0, "{s}: a hand-over loses nothing");
    }
}
