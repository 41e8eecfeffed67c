//! What the leases cost the engine: the bytes and messages a host sends per renewal, read
//! from its own metrics while meetings run.

use std::net::SocketAddr;
use std::time::Duration;

use crate::rig::{ONE_AT_A_TIME, Rig, eventually, frames_in, http_get};

/// A counter of `/metrics` on `admin`.
fn counter(admin: SocketAddr, name: &str) -> u64 {
    let (_, text) = http_get(admin, "/metrics");
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics")) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_renewal_costs_the_engine_one_small_message() {
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = Rig::start_with(2, |_, spec| spec.admin = true).await;
    let meetings: Vec<_> = (0..10).map(|_| rig.meeting(60)).collect();
    for m in &meetings {
        eventually("every meeting to reach its plugin", || {
            frames_in(&rig.seq_file(m.stream_id())) >= 2
        })
        .await;
    }
    let admins: Vec<SocketAddr> = (0..2).map(|i| rig.admin_addr(i)).collect();
    let read = |a: SocketAddr| {
        (
            counter(a, "rtms_cluster_engine_sent_bytes"),
            counter(a, "rtms_cluster_engine_sent_messages"),
            counter(a, "rtms_cluster_lease_renewals"),
        )
    };
    let before: Vec<_> = admins.iter().map(|a| read(*a)).collect();
    // A window of renewals: nothing to wait for but time.
    let window = Duration::from_secs(4);
    tokio::time::sleep(window).await;
    let after: Vec<_> = admins.iter().map(|a| read(*a)).collect();
    let (mut bytes, mut messages, mut renewals) = (0, 0, 0);
    for (b, a) in before.iter().zip(&after) {
        bytes += a.0 - b.0;
        messages += a.1 - b.1;
        renewals += a.2 - b.2;
    }
    // 10 streams renewed every 500 ms for 4 s.
    assert!(renewals >= 60, "{renewals} renewals in {window:?}");
    let per_renewal = bytes / renewals;
    assert!(
        per_renewal < 2048,
        "{per_renewal} bytes sent per renewal: the lease record grew"
    );
    assert!(
        messages <= renewals * 2 + 40,
        "{messages} messages for {renewals} renewals"
    );
    eprintln!(
        "lease renewals: {renewals} in {window:?} over 10 streams; {per_renewal} bytes and {:.2} messages sent per renewal (renew_ms = 500: {} bytes/s per stream)",
        messages as f64 / renewals as f64,
        per_renewal * 2
    );
}
