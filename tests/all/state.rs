//! Contract 0.2's state calls from a real component, timed: a plugin makes 100,000
//! `increment` calls in one `on-session-start`; the count is exact and the cost per call is
//! printed (run with `--nocapture`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtms_host::outputs::start_sinks;
use rtms_host::sandbox::bindings::{Product, SessionInfo};
use rtms_host::sandbox::state::{ScopeKey, StateStore};
use rtms_host::sandbox::store::InstanceCtx;
use rtms_host::sandbox::{Instance, InstanceSpec};

use crate::util::{component, runtime};

#[tokio::test]
async fn a_hundred_thousand_increments_count_exactly() {
    const N: u64 = 100_000;
    let rt = runtime();
    let code = rt.load(&component("stateful")).await.expect("loads");
    assert_eq!(code.pre.contract(), "rtms:plugin@0.2.0");
    let (outputs, sinks) = start_sinks(vec![]).await.unwrap();
    let store: Arc<dyn StateStore> = rt.state().clone();
    let ctx = Arc::new(
        InstanceCtx::new(
            "bench".into(),
            1,
            "bench-stream".into(),
            "m".into(),
            Default::default(),
            rtms_host::dataplane::embed::PluginLink::new(outputs, Default::default()),
        )
        .with_state(store.clone()),
    );
    let config = vec![("increments".to_owned(), N.to_string())];
    let spec = InstanceSpec {
        memory_bytes: 64 << 20,
        call_timeout: Duration::from_secs(30),
        grants: vec![],
        config: config.clone(),
        caps: Default::default(),
        resources: Default::default(),
        net: None,
    };
    let mut inst = Instance::new(&rt, code, &spec, ctx)
        .await
        .expect("instantiates");
    inst.init(&config).await.expect("init");
    let info = SessionInfo {
        session: 1,
        product: Product::Meeting,
        meeting_id: "m".into(),
        stream_id: "bench-stream".into(),
        operator_id: None,
        started_at_ms: 0,
        resumed: false,
        audio: None,
    };
    let started = Instant::now();
    inst.session_start(&info).await.expect("session start");
    let elapsed = started.elapsed();
    let scope = ScopeKey::session("bench", "bench-stream");
    let v = store.get(&scope, "bench", 0).unwrap().unwrap();
    assert_eq!(String::from_utf8(v).unwrap(), N.to_string());
    eprintln!(
        "state.increment from a guest: {:.0} ns a call ({N} calls in {:.1} ms)",
        elapsed.as_nanos() as f64 / N as f64,
        elapsed.as_secs_f64() * 1e3
    );
    drop(inst);
    sinks.finish().await;
}
