//! Closing a stream from the host's side (STREAM_CLOSE_REQ, msg 21): `rtms-host stop
//! --stream`, a shutdown with `[runtime] close_streams_on_shutdown`, and Zoom's refusals
//! counted by their GA status name.

use std::process::Stdio;

use hyper::StatusCode;
use rtms_proto::Product;
use rtms_proto::codes::{status, stop_reason};
use rtms_sim::Simulator;
use rtms_sim::faults::{Fault, SocketSel};

use crate::harness::*;
use crate::ops::Exposition;

fn admin_setup() -> Setup {
    Setup {
        admin: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtms_host_stop_stream_closes_it_at_zoom_with_receiver_request_close() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let mut host = start_host(&sim, admin_setup(), |_| {}).await;
    let m = start_live(&sim, &mut host, Product::Meeting).await;
    let stream = m.stream_id().to_owned();
    let admin = format!("http://{}", host.svc.admin_addr().unwrap());
    let out = within(
        "rtms-host stop --stream",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rtms-host"))
            .args(["stop", "--stream", &stream, "--admin", &admin])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("STREAM_CLOSE_REQ"), "{printed}");
    let ledger = within("the simulator to end the stream", m.finished()).await;
    host.idle().await;
    assert_eq!(ledger.counters.stream_close_requests, 1);
    assert_eq!(
        ledger.stop_reason,
        Some(stop_reason::RECEIVER_REQUEST_CLOSE)
    );
    let rec = host.record(&stream);
    assert_eq!(rec.end(), "stopped(20)");
    // What the plugin got before the close is what was sent, in order.
    let sent = ledger_transcript(&ledger);
    let got = rec.texts("transcript");
    assert!(!got.is_empty());
    assert_eq!(got, sent[..got.len()]);

    // --stream is for stop only, and a start names its target.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtms-host"))
        .args(["pause", "--stream", &stream, "--admin", &admin])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--stream works with stop only"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_closes_live_streams_when_configured() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let mut host = start_host(&sim, Setup::default(), |p| {
        p.runtime.close_streams_on_shutdown = true
    })
    .await;
    let m = start_live(&sim, &mut host, Product::Meeting).await;
    let stream = m.stream_id().to_owned();
    let out = host.out_dir();
    let Host { svc, dir, .. } = host;
    within("shutdown", svc.shutdown()).await;
    let ledger = within("the simulator to end the stream", m.finished()).await;
    assert_eq!(ledger.counters.stream_close_requests, 1);
    assert_eq!(
        ledger.stop_reason,
        Some(stop_reason::RECEIVER_REQUEST_CLOSE)
    );
    let rec = Record::read(&out.join(format!("seqs-{stream}.txt")));
    assert_eq!(rec.end(), "stopped(20)");
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_their_ga_status_name() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let host = start_host(&sim, admin_setup(), |_| {}).await;
    let meeting = start_unannounced(&sim, script(6, vec![]));
    meeting.inject(Fault::RejectHandshakes {
        socket: SocketSel::Media,
        count: 1,
        status: status::INVALID_MEDIA_AUDIO_SAMPLE_RATE,
        reason: "sample rate not served".into(),
    });
    assert_eq!(post_started(&sim, &host, &meeting).await, StatusCode::OK);
    let ledger = finish(&host, &meeting).await;
    assert_eq!(ledger.counters.handshakes_rejected, 1);
    assert_eq!(
        ledger.refusals.get("INVALID_MEDIA_AUDIO_SAMPLE_RATE"),
        Some(&1),
        "the simulator names the code from the same table"
    );
    let x = Exposition::scrape(&host).await;
    assert_eq!(
        x.get(
            "rtms_zoom_refusals_total",
            &[
                ("what", "media"),
                ("status", "INVALID_MEDIA_AUDIO_SAMPLE_RATE")
            ]
        ),
        1.0
    );
}
