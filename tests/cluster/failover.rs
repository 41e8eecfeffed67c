//! `kill -9` of a host in the middle of its meetings: every one goes on at another host.

use std::time::{Duration, Instant};

use crate::check::served_exactly_once;
use crate::record::Record;
use crate::rig::{ONE_AT_A_TIME, Rig, eventually, frames_in, within};

/// Live meetings across the three hosts.
const MEETINGS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_meeting_loses_no_meeting_and_no_line_twice() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(3).await;
    // 60 lines, 200 ms apart: 12 s each.
    let meetings: Vec<_> = (0..MEETINGS).map(|_| rig.meeting(60)).collect();
    let streams: Vec<String> = meetings.iter().map(|m| m.stream_id().to_owned()).collect();
    for s in &streams {
        eventually("every meeting to reach its plugin", || {
            frames_in(&rig.seq_file(s)) >= 2
        })
        .await;
    }
    let victims: Vec<&String> = streams.iter().filter(|s| rig.owners(s) == [0]).collect();
    assert!(!victims.is_empty(), "host-a runs some of the meetings");
    let killed = Instant::now();
    let host = rig.hosts[0].take().unwrap();
    tokio::task::spawn_blocking(move || host.kill9())
        .await
        .unwrap();
    rig.rebalance();
    let mut takeover = Duration::ZERO;
    for s in &victims {
        let path = rig.seq_file(s);
        eventually("a killed host's stream to resume elsewhere", || {
            Record::read(&path).starts.len() == 2
        })
        .await;
        takeover = takeover.max(killed.elapsed());
    }
    let mut lost = 0;
    for (m, s) in meetings.iter().zip(&streams) {
        let ledger = within("the meeting to finish", m.finished()).await;
        let path = rig.seq_file(s);
        let rec = crate::check::meeting_ended(&path).await;
        let resumed = victims.contains(&s);
        assert_eq!(
            rec.starts.len(),
            1 + usize::from(resumed),
            "{s}: {:?}",
            rec.starts
        );
        lost += served_exactly_once(s, &ledger, &rec);
    }
    eprintln!(
        "kill -9 of 1 host of 3 with {MEETINGS} live meetings: {} taken over, the last resumed {takeover:?} after the kill (lease {} ms); {lost} lines lost on sockets that died unread",
        victims.len(),
        crate::rig::LEASE_MS
    );
}
