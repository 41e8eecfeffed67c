//! What every cluster test checks of a meeting, against the simulator's ledger.

use rtms_sim::Ledger;

use crate::record::Record;
use crate::rig::eventually;

/// The meeting ran to its script's end, never with two clients at once, and every
/// transcript line the simulator sent was written exactly once, in order, whichever host
/// wrote it — but for lines written to a socket that died unread with a killed host
/// (`unconfirmed` in the ledger). Returns how many lines were lost that way.
pub fn served_exactly_once(stream: &str, ledger: &Ledger, rec: &Record) -> u64 {
    ledger
        .one_client_at_a_time()
        .unwrap_or_else(|e| panic!("stream {stream}: {e}"));
    assert_eq!(
        ledger.stop_reason,
        Some(6),
        "stream {stream} ran to the end of its meeting (not stopped for want of a client)"
    );
    assert_eq!(
        rec.ends.last().map(String::as_str),
        Some("stopped(6)"),
        "stream {stream}: the plugin saw the meeting end: {:?}",
        rec.ends
    );
    assert_eq!(
        rec.starts.first(),
        Some(&false),
        "stream {stream}: {:?}",
        rec.starts
    );
    assert!(
        rec.starts[1..].iter().all(|r| *r),
        "stream {stream}: every later start is a resumption: {:?}",
        rec.starts
    );
    let sent: Vec<String> = ledger.transcript.iter().map(|l| l.text.clone()).collect();
    let got: Vec<String> = rec.texts("transcript");
    let mut i = 0;
    for line in &got {
        let Some(at) = sent[i..].iter().position(|s| s == line) else {
            panic!(
                "stream {stream}: {line:?} written twice, out of order, or never sent:\n got {got:?}\nsent {sent:?}"
            );
        };
        i += at + 1;
    }
    let missing = (sent.len() - got.len()) as u64;
    assert!(
        missing <= ledger.counters.unconfirmed,
        "stream {stream}: {missing} lines missing, only {} were on sockets that died unread",
        ledger.counters.unconfirmed
    );
    assert_eq!(
        got.last(),
        sent.last(),
        "stream {stream}: the last line arrived"
    );
    let seqs: Vec<u64> = rec.frames.iter().map(|f| f.0).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "stream {stream}: seq keeps increasing across hosts: {seqs:?}"
    );
    missing
}

/// Waits until the seq-recorder wrote the meeting's end (`stopped(6)`) at `path`, then reads
/// what it wrote.
pub async fn meeting_ended(path: &std::path::Path) -> Record {
    eventually("the plugin to end the session", || {
        Record::read(path)
            .ends
            .last()
            .is_some_and(|e| e == "stopped(6)")
    })
    .await;
    Record::read(path)
}
