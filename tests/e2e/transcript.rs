//! Transcript settings (`[rtms.transcript] src_language`, `enable_lid`) reach Zoom in the data
//! handshake: the simulator's ledger records what was asked.

use rtms_proto::Product;
use rtms_proto::params::TranscriptParams;
use rtms_sim::{Pace, Simulator};

use crate::harness::*;

#[tokio::test]
async fn the_transcript_language_is_sent_in_the_data_handshake() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let setup = Setup {
        extra: "[rtms.transcript]\nsrc_language = \"japanese\"\nenable_lid = false\n".into(),
        ..Default::default()
    };
    let host = start_host(&sim, setup, |_| {}).await;
    let m = start(&sim, &host, script(6, vec![]), Product::Meeting, Pace::Fast);
    let ledger = finish(&host, &m).await;
    assert_eq!(
        ledger.transcript_params,
        Some(TranscriptParams {
            content_type: Some(5),
            src_language: Some(20),
            enable_lid: Some(false),
        })
    );
    assert!(!ledger_transcript(&ledger).is_empty());
    assert_eq!(host.record(m.stream_id()).end(), "stopped(6)");
}
