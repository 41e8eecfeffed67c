//! A host paused past its lease (SIGSTOP) writes nothing for the stream once resumed.

use std::time::Duration;

use crate::check::served_exactly_once;
use crate::record::Record;
use crate::rig::{ONE_AT_A_TIME, Rig, eventually, frames_in, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_paused_past_its_lease_writes_nothing_after_losing_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = Rig::start(2).await;
    let m = rig.meeting(70);
    let stream = m.stream_id().to_owned();
    let path = rig.seq_file(&stream);
    eventually("frames", || frames_in(&path) >= 3).await;
    let owner = rig.owners(&stream)[0];
    let other = 1 - owner;
    rig.signal(owner, "STOP");
    eventually("the other host to take the stream over", || {
        rig.host(other).logs().iter().any(|l| {
            l.contains("cluster: stream taken") && l.contains(&stream) && l.contains("Takeover")
        })
    })
    .await;
    eventually("the new owner to write", || {
        let rec = Record::read(&path);
        rec.starts.len() == 2 && rec.frames.iter().filter(|f| f.0 >= 1 << 20).count() >= 2
    })
    .await;
    rig.signal(owner, "CONT");
    let paused = rig.host(owner);
    assert!(
        tokio::task::block_in_place(
            || paused.wait_for_log("cluster: lease lost", Duration::from_secs(20))
        )
        .is_some(),
        "the paused host finds out it lost the lease"
    );
    let ledger = within("the meeting to finish", m.finished()).await;
    let rec = crate::check::meeting_ended(&path).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let after: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "# start resumed=true")
        .collect();
    let old_owner_lines: Vec<&&str> = after
        .iter()
        .filter(|l| {
            l.starts_with("# end shutdown")
                || l.split('\t')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|s| s < 1 << 20)
        })
        .collect();
    assert!(
        old_owner_lines.is_empty(),
        "the paused host wrote after losing its lease: {old_owner_lines:?}"
    );
    assert_eq!(
        rec.ends,
        ["stopped(6)"],
        "only the new owner ended the session"
    );
    served_exactly_once(&stream, &ledger, &rec);
    let logs = paused.logs();
    assert!(
        !logs.iter().any(|l| l.contains("cluster: stream taken")
            && l.contains(&stream)
            && l.contains("Takeover")),
        "the paused host did not take the stream back"
    );
}
