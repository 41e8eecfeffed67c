//! The pooling allocator (`[runtime] pool`): instances come from slots mapped once, so the
//! process's mappings do not grow with them; a full pool refuses an instance with the
//! setting to raise, counted; a component that does not fit a slot is refused at load.

use std::sync::Arc;
use std::time::Duration;

use rtms_config::{PoolNeed, PoolPlan};
use rtms_host::outputs::start_sinks;
use rtms_host::sandbox::store::InstanceCtx;
use rtms_host::sandbox::{Instance, InstanceSpec, Runtime, RuntimeConfig};

use crate::util::{cache_dir, component};

fn pooled(streams: u64, instances: Option<u64>) -> Runtime {
    let need = PoolNeed {
        streams,
        plugins: 1,
        largest_memory: 64 << 20,
    };
    Runtime::new(&RuntimeConfig {
        cache_dir: Some(cache_dir()),
        epoch_tick: Duration::from_millis(2),
        pool: Some(PoolPlan::size(need, instances).expect("sized")),
        ..Default::default()
    })
    .expect("runtime")
}

fn spec() -> InstanceSpec {
    InstanceSpec {
        memory_bytes: 32 << 20,
        call_timeout: Duration::from_secs(5),
        grants: vec![],
        resources: Default::default(),
        config: vec![],
        caps: Default::default(),
        net: None,
    }
}

/// Lines of /proc/self/maps: the process's mappings (what vm.max_map_count bounds).
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .count()
}

/// `n` live instances of the noop plugin, each past `init` (so each has had its stack).
async fn instances(rt: &Runtime, n: usize, ctx: &Arc<InstanceCtx>) -> Vec<Instance> {
    let code = rt.load(&component("noop")).await.expect("loads");
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let mut i = Instance::new(rt, code.clone(), &spec(), ctx.clone())
            .await
            .expect("instantiates");
        i.init(&[]).await.expect("init");
        v.push(i);
    }
    v
}

fn ctx(outputs: rtms_host::outputs::Outputs) -> Arc<InstanceCtx> {
    Arc::new(InstanceCtx::new(
        "noop".into(),
        1,
        "pool-stream".into(),
        "m".into(),
        Default::default(),
        rtms_host::dataplane::embed::PluginLink::new(outputs, Default::default()),
    ))
}

/// Measures how many mappings each of `n` instances adds to the process, beyond a warm-up
/// of 20 (the runtime's own threads, the compiled code).
async fn mappings_per_instance(rt: &Runtime, n: usize) -> f64 {
    let (outputs, sinks) = start_sinks(vec![]).await.unwrap();
    let ctx = ctx(outputs);
    let warm = instances(rt, 20, &ctx).await;
    let before = mappings();
    let started = std::time::Instant::now();
    let many = instances(rt, n, &ctx).await;
    let took = started.elapsed();
    let after = mappings();
    eprintln!(
        "{n} instances (instantiate + init) in {took:?}, {:.1} us each (pool: {})",
        took.as_secs_f64() * 1e6 / n as f64,
        rt.pool().is_some()
    );
    drop((warm, many, ctx));
    sinks.finish().await;
    (after.saturating_sub(before)) as f64 / n as f64
}

/// Set in the child process that measures alone (other tests of this binary map memory too).
const ALONE: &str = "RTMS_TEST_POOL_MAPPINGS_ALONE";

/// Runs `test` of this binary in a process of its own, with [`ALONE`] set; panics with its
/// output when it fails.
fn run_alone(test: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(ALONE, "1")
        .output()
        .expect("runs the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran nothing: {text}");
    eprintln!("{text}");
}

#[test]
fn a_pooled_instance_adds_two_mappings_where_one_on_demand_adds_seven() {
    if std::env::var_os(ALONE).is_none() {
        return run_alone(
            "pool::a_pooled_instance_adds_two_mappings_where_one_on_demand_adds_seven",
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pooled = mappings_per_instance(&pooled(600, None), 500).await;
        let on_demand = mappings_per_instance(&crate::util::runtime_on_demand(), 500).await;
        eprintln!("mappings per instance: pooled {pooled:.2}, on demand {on_demand:.2}");
        // A pooled instance's memory splits its slot in two places (its accessible part);
        // its stack, tables and image were mapped with the pool.
        assert!(
            pooled <= 2.5,
            "pooled instances add {pooled:.2} mappings each (on demand: {on_demand:.2})"
        );
        assert!(
            on_demand >= 5.0,
            "on-demand instances add {on_demand:.2} mappings each: the comparison measures nothing"
        );
    });
}

#[tokio::test]
async fn a_full_pool_refuses_an_instance_naming_the_setting_and_counts_it() {
    // Two streams of one plugin need 3 instances; the pool holds 4.
    let rt = pooled(2, Some(4));
    let (outputs, sinks) = start_sinks(vec![]).await.unwrap();
    let ctx = ctx(outputs);
    let mut held = instances(&rt, 4, &ctx).await;
    let pool = rt.pool().expect("pooled").clone();
    assert_eq!(pool.usage().instances, 4);
    let code = rt.load(&component("noop")).await.unwrap();
    let Err(e) = Instance::new(&rt, code.clone(), &spec(), ctx.clone()).await else {
        panic!("a fifth instance in a pool of four");
    };
    let e = e.to_string();
    assert!(
        e.contains("instance pool is full") && e.contains("pool_instances"),
        "{e}"
    );
    assert_eq!(pool.usage().exhausted, 1);
    // A slot given back is taken again.
    held.pop();
    let mut again = Instance::new(&rt, code, &spec(), ctx.clone())
        .await
        .expect("a freed slot instantiates");
    again.init(&[]).await.expect("init");
    assert_eq!(pool.usage().instances, 4);
    assert_eq!(pool.usage().exhausted, 1);
    drop((held, again, ctx));
    sinks.finish().await;
}

#[tokio::test]
async fn a_memory_hog_traps_on_its_limit_in_a_bounds_checked_pool() {
    // Five thousand streams: slots of 64 MiB, every access bounds-checked.
    let rt = pooled(5000, None);
    let plan = *rt.pool().unwrap().plan();
    assert!(plan.bounds_checked(), "{plan}");
    let code = rt.load(&component("hog")).await.expect("loads");
    let mut hog = spec();
    hog.memory_bytes = 8 << 20;
    let (outputs, sinks) = start_sinks(vec![]).await.unwrap();
    let ctx = ctx(outputs);
    let mut i = Instance::new(&rt, code, &hog, ctx.clone()).await.unwrap();
    i.init(&[]).await.unwrap();
    let frame = rtms_host::sandbox::bindings::Frame {
        kind: rtms_host::sandbox::bindings::MediaKind::Transcript,
        seq: 1,
        timestamp_ms: 0,
        user_id: "1".into(),
        user_name: "Ann".into(),
        payload: vec![],
        text: Some("hi".into()),
        transcript: None,
        event_type: None,
    };
    let e = i.frames(1, &[frame]).await.expect_err("traps").to_string();
    assert!(
        e.contains("out of memory") && e.contains("memory_mb = 8"),
        "{e}"
    );
    drop((i, ctx));
    sinks.finish().await;
}
