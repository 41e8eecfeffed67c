//! Plugin call cost: `on-frames` on one instance, called directly through
//! `rtms_host::sandbox::Instance` (no queue, no session), by batch size; and what each
//! language costs to load: the first compile, the load from the compile cache, and one
//! instantiation (with `init` and `on-session-start`).
//!
//! The Rust `noop` fixture is the baseline. Every language is measured with the same plugin,
//! the `rtms-host plugin new` skeleton (it counts transcript words, so audio frames only cross
//! the boundary), built with `rtms-host plugin build` into `target/bench/scaffolds/`; a
//! language whose toolchain cannot be had is skipped with the reason. Ratios are against the
//! Rust skeleton in the same run.
//!
//! Each plugin is measured twice: with the host's default, the pooling allocator
//! (`[runtime] pool = "auto"`, here sized as for 3,000 meetings of four plugins: 64 MiB slots,
//! bounds-checked memory accesses), and with `pool = "off"` (each instance maps its own
//! memory, tables and fiber stack). Both keep the same guarantees: the call is an async
//! wasmtime call on the instance's own Store (reused from call to call, with its fiber
//! stack), under an epoch deadline that yields and then traps, and a wall-clock deadline for
//! a call that waits on the host.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use anyhow::Result;
use rtms_host::outputs::start_sinks;
use rtms_host::plugin_dev::{Lang, Manifest, compile, scaffold};
use rtms_host::sandbox::bindings::{
    AudioCodec, AudioFormat, Frame, MediaKind, Product, SessionInfo,
};
use rtms_host::sandbox::store::InstanceCtx;
use rtms_host::sandbox::{Instance, InstanceSpec, Runtime, RuntimeConfig};
use serde_json::json;

use crate::report::{Report, Row};
use crate::setup;

fn audio(seq: u64, bytes: usize) -> Frame {
    Frame {
        kind: MediaKind::Audio,
        seq,
        timestamp_ms: 1_700_000_000_000 + seq * 20,
        user_id: "16778240".into(),
        user_name: "Speaker 1".into(),
        payload: vec![7u8; bytes],
        text: None,
        transcript: None,
        event_type: None,
    }
}

/// The skeleton of `lang`, built (cached after the first run); `None` with the reason printed
/// when its toolchain cannot be had.
fn skeleton(lang: Lang) -> Option<PathBuf> {
    let dir = setup::bench_dir()
        .join("scaffolds")
        .join(format!("bench-{}", lang.as_str()));
    if !dir.join("rtms-plugin.toml").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = scaffold::create(&format!("bench-{}", lang.as_str()), lang, &dir) {
            eprintln!("call: skipped {}: {e:#}", lang.as_str());
            return None;
        }
        if lang == Lang::Rust {
            let shared = setup::bench_dir().join("scaffold-rust-target");
            let _ = std::fs::create_dir_all(&shared);
            let _ = std::os::unix::fs::symlink(&shared, dir.join("target"));
        }
    }
    match Manifest::load(&dir).and_then(|m| compile::build(&m, false)) {
        Ok(b) => Some(b.component),
        Err(e) => {
            eprintln!("call: skipped {}: {e:#}", lang.as_str());
            None
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub async fn run(report: &mut Report, quick: bool) -> Result<()> {
    let mut plugins = vec![("noop (rust)".to_owned(), setup::component("noop"))];
    for lang in [Lang::Rust, Lang::C, Lang::Python, Lang::Js] {
        let l = lang;
        if let Some(p) = tokio::task::spawn_blocking(move || skeleton(l)).await? {
            plugins.push((format!("skeleton ({})", lang.as_str()), p));
        }
    }
    let mut base: Option<(f64, f64, f64)> = None; // rust skeleton: call batch 32, cold, warm
    for (name, path) in &plugins {
        let r = one(report, name, path, quick, base).await?;
        if name == "skeleton (rust)" {
            base = Some(r);
        }
    }
    Ok(())
}

/// Loads `path` cold and warm, then measures calls; returns (ns/frame at batch 32, cold ms,
/// warm ms).
async fn one(
    report: &mut Report,
    name: &str,
    path: &Path,
    quick: bool,
    base: Option<(f64, f64, f64)>,
) -> Result<(f64, f64, f64)> {
    let (cold, warm) = load_times(report, name, path, quick, base).await?;
    let mut at32 = 0.0;
    for pooled in [true, false] {
        let r = calls(report, name, path, quick, base, pooled).await?;
        if pooled {
            at32 = r;
        }
    }
    Ok((at32, cold, warm))
}

/// The pool of a host of 3,000 meetings with four plugins.
fn bench_pool() -> Result<rtms_config::PoolPlan> {
    let need = rtms_config::PoolNeed {
        streams: 3000,
        plugins: 4,
        largest_memory: 256 << 20,
    };
    rtms_config::PoolPlan::size(need, None).map_err(anyhow::Error::msg)
}

/// Instantiation and call rows of one plugin, with the pool or without; returns ns/frame at
/// batch 32.
async fn calls(
    report: &mut Report,
    plugin: &str,
    path: &Path,
    quick: bool,
    base: Option<(f64, f64, f64)>,
    pooled: bool,
) -> Result<f64> {
    let name = if pooled {
        plugin.to_owned()
    } else {
        format!("{plugin} pool=off")
    };
    let name = name.as_str();
    let rt = Runtime::new(&RuntimeConfig {
        cache_dir: Some(setup::warm_cache()),
        epoch_tick: Duration::from_millis(5),
        pool: if pooled { Some(bench_pool()?) } else { None },
        ..Default::default()
    })?;
    let code = rt.load(path).await?;
    let (outputs, sinks) = start_sinks(vec![]).await?;
    let ctx = Arc::new(InstanceCtx::new(
        name.into(),
        1,
        "bench".into(),
        "bench".into(),
        Default::default(),
        rtms_host::dataplane::embed::PluginLink::new(outputs, Default::default()),
    ));
    // Instantiation: a fresh instance, init and on-session-start, as a new session costs.
    // The skeletons write their counts under /out.
    let out = tempfile::tempdir()?;
    let (spec, info) = (bench_spec(out.path()), bench_session());
    let mut starts = Vec::new();
    let mut inst = None;
    for _ in 0..if quick { 5 } else { 21 } {
        let t = Instant::now();
        let mut i = Instance::new(&rt, code.clone(), &spec, ctx.clone()).await?;
        i.init(&[]).await?;
        i.session_start(&info).await?;
        starts.push(t.elapsed().as_secs_f64() * 1e6);
        inst = Some(i);
    }
    let mut inst = inst.expect("at least one instance");
    report.push(Row::new(
        "call",
        &format!("{name} instantiate + init + start"),
        "us",
        median(starts),
    ));
    let at32 = call_rates(report, name, &mut inst, quick, base).await?;
    // The sinks finish once every sender is gone: the instance and the context it shares.
    drop(inst);
    drop(ctx);
    sinks.finish().await;
    Ok(at32)
}

/// The ratio to the Rust skeleton's figure, as a note.
fn ratio(v: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!(", x{:.1} the rust skeleton", v / b),
        _ => String::new(),
    }
}

/// The first compile (an empty cache each time) and the load from the cache it filled (a
/// new runtime), medians in ms; reported.
async fn load_times(
    report: &mut Report,
    name: &str,
    path: &Path,
    quick: bool,
    base: Option<(f64, f64, f64)>,
) -> Result<(f64, f64)> {
    let bytes = std::fs::read(path)?;
    let runs = if quick { 1 } else { 3 };
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let cfg = RuntimeConfig {
            cache_dir: Some(dir.path().to_owned()),
            epoch_tick: Duration::from_millis(5),
            ..Default::default()
        };
        let rt = Runtime::new(&cfg)?;
        let t = Instant::now();
        rt.load(path).await?;
        cold.push(t.elapsed().as_secs_f64() * 1e3);
        drop(rt);
        let rt = Runtime::new(&cfg)?;
        let t = Instant::now();
        rt.load(path).await?;
        warm.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (cold, warm) = (median(cold), median(warm));
    let mut row = Row::new("call", &format!("{name} first compile"), "ms", cold).note(format!(
        "{:.1} MB component{}",
        bytes.len() as f64 / 1e6,
        ratio(cold, base.map(|b| b.1))
    ));
    row.extra = json!({"component_bytes": bytes.len(), "runs": runs});
    report.push(row);
    report.push(
        Row::new("call", &format!("{name} load from cache"), "ms", warm).note(
            ratio(warm, base.map(|b| b.2))
                .trim_start_matches(", ")
                .to_owned(),
        ),
    );
    Ok((cold, warm))
}

/// The instance's limits: CPython and SpiderMonkey need more than the default 64 MiB; `out`
/// is granted as /out.
fn bench_spec(out: &Path) -> InstanceSpec {
    InstanceSpec {
        memory_bytes: 256 << 20,
        call_timeout: Duration::from_secs(1),
        grants: vec![rtms_host::sandbox::store::Grant {
            host: out.to_owned(),
            guest: "/out".into(),
            read_only: false,
            quota_bytes: None,
            max_inodes: None,
            symlinks: false,
        }],
        resources: Default::default(),
        config: vec![],
        caps: Default::default(),
        net: None,
    }
}

/// The session the instance is started on: 16 kHz mono L16 in 20 ms frames.
fn bench_session() -> SessionInfo {
    SessionInfo {
        session: 1,
        product: Product::Meeting,
        meeting_id: "bench".into(),
        stream_id: "bench".into(),
        operator_id: None,
        started_at_ms: 0,
        resumed: false,
        audio: Some(AudioFormat {
            codec: AudioCodec::L16,
            sample_rate: 16_000,
            channels: 1,
            frame_ms: 20,
            per_speaker: false,
        }),
    }
}

/// `on-frames` calls for a time budget per batch shape; reported; returns ns/frame at
/// batch 32 x 640 B.
async fn call_rates(
    report: &mut Report,
    name: &str,
    inst: &mut Instance,
    quick: bool,
    base: Option<(f64, f64, f64)>,
) -> Result<f64> {
    let mut at32 = 0.0;
    let budget = Duration::from_millis(if quick { 150 } else { 700 });
    for (batch, bytes) in [
        (1usize, 640usize),
        (8, 640),
        (32, 640),
        (128, 640),
        (32, 3200),
    ] {
        let frames: Vec<Frame> = (0..batch as u64).map(|s| audio(s, bytes)).collect();
        for _ in 0..20 {
            inst.frames(1, &frames).await?;
        }
        let started = Instant::now();
        let mut calls = 0u64;
        while started.elapsed() < budget {
            for _ in 0..16 {
                inst.frames(1, &frames).await?;
            }
            calls += 16;
        }
        let per_call = started.elapsed().as_secs_f64() / calls as f64;
        let per_frame_ns = per_call * 1e9 / batch as f64;
        let at_32 = batch == 32 && bytes == 640;
        if at_32 {
            at32 = per_frame_ns;
        }
        let vs = if at_32 {
            ratio(per_frame_ns, base.map(|b| b.0))
        } else {
            String::new()
        };
        let mut row = Row::new(
            "call",
            &format!("{name} batch {batch} x {bytes} B"),
            "ns/frame",
            per_frame_ns,
        )
        .note(format!(
            "{:.2} us/call, {:.0} frames/s on one core{vs}",
            per_call * 1e6,
            batch as f64 / per_call
        ));
        row.extra =
            json!({"batch": batch, "bytes": bytes, "calls": calls, "us_per_call": per_call * 1e6});
        report.push(row);
    }
    Ok(at32)
}
