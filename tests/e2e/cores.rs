//! Thread per core (`[runtime] threads`): streams spread over the core threads, every frame
//! of every meeting reaches the plugins once, a slow plugin moves off its core without
//! holding up the other streams there, and a shutdown with streams on two cores loses nothing.

use std::collections::BTreeSet;

use hyper::Method;
use rtms_host::dataplane::cores::CoreCounts;
use rtms_proto::Product;
use rtms_sim::{Pace, Simulator};

use crate::harness::*;

/// Each core's live streams.
fn live(host: &Host) -> Vec<usize> {
    let cores = host
        .svc
        .shared()
        .cores
        .get()
        .expect("the service runs core threads");
    cores.counts().iter().map(|c: &CoreCounts| c.live).collect()
}

fn frame_threads(host: &Host) -> BTreeSet<String> {
    host.frame_threads.lock().unwrap().clone()
}

fn two_cores(p: &mut rtms_config::Pipeline) {
    p.runtime.threads = Some(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_spread_over_two_core_threads_and_every_frame_reaches_the_plugins_once() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let setup = Setup {
        admin: true,
        ..Setup::default()
    };
    let host = start_host(&sim, setup, two_cores).await;
    let meetings: Vec<_> = (0..4)
        .map(|i| {
            let product = Product::ALL[i % Product::ALL.len()];
            start(&sim, &host, script(40, vec![]), product, Pace::Realtime)
        })
        .collect();
    eventually("four streams live", || host.svc.sessions().len() == 4).await;
    assert_eq!(
        live(&host),
        [2, 2],
        "each new stream on the core with fewest"
    );
    let (_, metrics) = crate::ops::admin(&host, Method::GET, "/metrics", None).await;
    for core in ["0", "1"] {
        let line = format!("rtms_core_streams{{core=\"{core}\"}} 2");
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
    for m in &meetings {
        let ledger = finish(&host, m).await;
        assert_exactly_once(&ledger, &host.record(m.stream_id()));
        assert_writer_matches(&ledger, &host.writer_lines(m.stream_id()));
        assert_eq!(ledger.counters.keepalive_timeouts, 0);
    }
    assert_eq!(
        frame_threads(&host),
        BTreeSet::from(["rtms-core-0".to_owned(), "rtms-core-1".to_owned()]),
        "frames are read and routed on the core threads only"
    );
    assert_eq!(live(&host), [0, 0], "ended streams leave their core");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_plugin_moves_off_its_core_and_the_other_streams_there_keep_pace() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    // Every audio batch costs the slow plugin 20 ms of CPU; on one core thread without the
    // move it would run there between every other stream's frames.
    let slow = format!(
        r#"
[[plugin]]
name = "slow"
component = {:?}
media = ["audio"]
[[plugin.dir]]
host = "slow"
guest = "/slow"
[plugin.queue]
capacity = 4096
on_full = "block"
[plugin.limits]
call_timeout_ms = 5000
[plugin.config]
dir = "/slow"
delay_ms = 20
"#,
        crate::util::component("seq_recorder").display().to_string()
    );
    let setup = Setup {
        extra: slow,
        ..Setup::default()
    };
    let host = start_host(&sim, setup, |p| p.runtime.threads = Some(1)).await;
    let meetings: Vec<_> = (0..3)
        .map(|_| {
            start(
                &sim,
                &host,
                script(30, vec![]),
                Product::Meeting,
                Pace::Realtime,
            )
        })
        .collect();
    for m in &meetings {
        let ledger = finish(&host, m).await;
        assert_exactly_once(&ledger, &host.record(m.stream_id()));
        assert_eq!(
            ledger.counters.keepalive_timeouts, 0,
            "keep-alives answered"
        );
        let slow = Record::read(
            &host
                .dir
                .path()
                .join("slow")
                .join(format!("seqs-{}.txt", m.stream_id())),
        );
        let audio = ledger.kinds.get(&rtms_sim::MediaKind::Audio);
        assert_eq!(
            slow.frames.len() as u64,
            audio.map_or(0, |a| a.count),
            "the slow plugin got every audio frame too"
        );
    }
    let m = host.svc.metrics();
    let slow = &m.plugins["slow"];
    assert!(slow.offloaded >= 1, "the slow plugin moved: {slow:?}");
    assert_eq!(m.plugins["seq"].shed + m.plugins["seq"].dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_with_streams_on_two_cores_loses_nothing() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let mut host = start_host(&sim, Setup::default(), two_cores).await;
    let a = start_live(&sim, &mut host, Product::Meeting).await;
    let b = start_live(&sim, &mut host, Product::Webinar).await;
    assert_eq!(live(&host), [1, 1]);
    let out = host.out_dir();
    let Host { svc, dir, .. } = host;
    let metrics = within("shutdown", svc.shutdown()).await;
    let mut delivered = 0;
    for m in [&a, &b] {
        let rec = Record::read(&out.join(format!("seqs-{}.txt", m.stream_id())));
        assert_eq!(rec.end(), "shutdown", "every plugin ended the session");
        let sent = ledger_transcript(&m.ledger());
        let got = rec.texts("transcript");
        assert!(!got.is_empty());
        assert_eq!(got, sent[..got.len()], "exactly once, in order");
        delivered += rec.frames.len() as u64;
    }
    assert_eq!(
        metrics.plugins["seq"].delivered, delivered,
        "every frame delivered is in the files"
    );
    drop(dir);
}
