//! The sandbox's limits beyond memory and time, with real compiled code: one linear memory
//! and bounded tables per instance, byte-rate limits on log lines, stdout and outputs, a
//! write quota on granted directories, a compile cache that others can write refused, a
//! stuck plugin shedding instead of stalling the session, and `max_wait_ms` batching.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtms_host::dataplane::stats::Metrics;
use rtms_host::sandbox::store::{MAX_TABLE_ELEMENTS, MAX_TABLES, Rates, store_limits};
use rtms_host::sandbox::{CodeSource, Runtime, RuntimeConfig};

use crate::util::*;

/// Instantiates a core module (binary) in a Store with the host's limits.
async fn instantiate_core(wasm: &[u8]) -> Result<(), String> {
    let rt = runtime();
    let module = wasmtime::Module::new(rt.engine(), wasm).map_err(|e| format!("{e:#}"))?;
    let mut store = wasmtime::Store::new(rt.engine(), store_limits(1 << 20));
    store.limiter(|l| l);
    wasmtime::Linker::new(rt.engine())
        .instantiate_async(&mut store, &module)
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

const HEADER: [u8; 8] = [0, b'a', b's', b'm', 1, 0, 0, 0];

fn module(sections: &[u8]) -> Vec<u8> {
    [&HEADER[..], sections].concat()
}

/// Unsigned LEB128.
fn leb(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A table section of `count` funcref tables of `min` elements each.
fn tables(count: usize, min: u64) -> Vec<u8> {
    let mut payload = leb(count as u64);
    for _ in 0..count {
        payload.push(0x70);
        payload.push(0x00);
        payload.extend(leb(min));
    }
    [vec![0x04], leb(payload.len() as u64), payload].concat()
}

#[tokio::test]
async fn an_instance_gets_one_linear_memory_and_bounded_tables() {
    // One memory of one page, one small table: fine.
    let one = module(&[&tables(1, 10)[..], &[0x05, 0x03, 0x01, 0x00, 0x01]].concat());
    instantiate_core(&one).await.expect("within the limits");
    // A second memory is refused, whatever its size.
    let two = module(&[0x05, 0x05, 0x02, 0x00, 0x01, 0x00, 0x01]);
    let e = instantiate_core(&two).await.expect_err("two memories");
    assert!(e.contains("memor"), "{e}");
    // A table past the element bound is refused.
    let big = module(&tables(1, MAX_TABLE_ELEMENTS as u64 + 1));
    instantiate_core(&big).await.expect_err("a huge table");
    // More tables than the bound are refused.
    instantiate_core(&module(&tables(MAX_TABLES, 1)))
        .await
        .expect("as many tables as allowed");
    let e = instantiate_core(&module(&tables(MAX_TABLES + 1, 1)))
        .await
        .expect_err("one table too many");
    assert!(e.contains("table"), "{e}");
}

#[tokio::test]
async fn log_stdout_and_output_floods_are_cut_to_their_byte_rates() {
    let rate = 8 * 1024;
    let mut flood = Plug::new("flood", "flood")
        .cfg("log_lines", "20")
        .cfg("stdout_lines", "20")
        .cfg("emits", "20")
        .cfg("line_bytes", "1000");
    flood.rates = Rates {
        log_bytes_per_sec: rate,
        emit_bytes_per_sec: rate,
    };
    let h = harness(&[flood]).await;
    let started = Instant::now();
    let s = session(&h, "flood-stream");
    for seq in 1..=10 {
        s.push(transcript(seq, "Ann", "hi")).await;
    }
    end(&s).await;
    let secs = started.elapsed().as_secs_f64();
    let stats = h.metrics.plugin("flood");
    // One second's burst plus the rate over the run, in lines or outputs of ~1000 bytes.
    let allowed = ((rate as f64) * (1.0 + secs) / 1000.0).ceil() as u64;
    let log_dropped = stats.log_dropped.load(Ordering::Relaxed);
    let emit_dropped = stats.emit_dropped.load(Ordering::Relaxed);
    assert!(
        log_dropped >= 400 - allowed,
        "400 log and stdout lines, at most {allowed} pass: {log_dropped} dropped"
    );
    assert!(
        emit_dropped >= 200 - allowed,
        "200 outputs, at most {allowed} pass: {emit_dropped} dropped"
    );
    assert_eq!(stats.sessions_with_losses.load(Ordering::Relaxed), 1);
    drop(s);
    let (outs, _dir) = h.finish().await;
    let emitted = outs.iter().filter(|o| o["kind"] == "flood").count() as u64;
    assert_eq!(
        emitted + emit_dropped,
        200,
        "every output passed or was counted"
    );
    assert!(
        emitted <= allowed,
        "{emitted} outputs passed, at most {allowed}"
    );
}

#[tokio::test]
async fn a_plugin_over_its_write_quota_is_stopped_for_the_session() {
    let quota = 256 * 1024;
    let mut flood = Plug::new("writer", "flood").cfg("write_kib", "64");
    flood.quota_bytes = Some(quota);
    flood.batch_max = 1;
    let h = harness(&[flood, Plug::new("recorder", "seq_recorder")]).await;
    let s = session(&h, "quota-stream");
    for seq in 1..=20 {
        s.push(transcript(seq, "Ann", "hi")).await;
    }
    end(&s).await;
    let stats = h.metrics.plugin("writer");
    assert_eq!(stats.quota_stops.load(Ordering::Relaxed), 1);
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let discarded = stats.discarded.load(Ordering::Relaxed);
    assert_eq!(
        delivered + discarded,
        20,
        "every frame delivered or counted"
    );
    assert!(discarded > 0, "stopped before the end");
    let written = std::fs::metadata(h.out_dir().join("flood-quota-stream.bin"))
        .unwrap()
        .len();
    let used = rtms_host::sandbox::quota::dir_bytes(&h.out_dir());
    assert!(used > quota, "the directory went over: {used}");
    assert!(written < 20 * 64 * 1024, "stopped early: {written}");
    // The other plugin of the session is unaffected.
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-quota-stream.txt")),
        (1..=20).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_compile_cache_others_can_write_is_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let rt = Runtime::new(&RuntimeConfig {
        cache_dir: Some(cache.clone()),
        epoch_tick: Duration::from_millis(5),
        ..Default::default()
    })
    .unwrap();
    let first = rt.load(&component("noop")).await.unwrap();
    let second = rt.load(&component("noop")).await.unwrap();
    assert_eq!(first.source, CodeSource::Compiled);
    assert_eq!(second.source, CodeSource::Compiled, "never from that dir");
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "nothing stored"
    );

    // Made private, the same directory is used.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let rt = Runtime::new(&RuntimeConfig {
        cache_dir: Some(cache.clone()),
        epoch_tick: Duration::from_millis(5),
        ..Default::default()
    })
    .unwrap();
    rt.load(&component("noop")).await.unwrap();
    let again = rt.load(&component("noop")).await.unwrap();
    assert_eq!(again.source, CodeSource::Cache);
    // An entry others can write is not loaded either.
    for e in std::fs::read_dir(&cache).unwrap() {
        std::fs::set_permissions(e.unwrap().path(), std::fs::Permissions::from_mode(0o666))
            .unwrap();
    }
    let refused = rt.load(&component("noop")).await.unwrap();
    assert_eq!(refused.source, CodeSource::Compiled);
}

#[tokio::test]
async fn a_stuck_block_plugin_sheds_after_its_timeout_and_the_others_lose_nothing() {
    let mut spin = Plug::new("spin", "spin");
    spin.call_timeout = Duration::from_secs(3);
    spin.capacity = 4;
    spin.batch_max = 4;
    spin.block_timeout = Duration::from_millis(50);
    let h = harness(&[spin, Plug::new("recorder", "seq_recorder")]).await;
    let s = session(&h, "stuck-stream");
    let started = Instant::now();
    for seq in 1..=200 {
        s.push(transcript(seq, "Ann", "hi")).await;
    }
    let pushing = started.elapsed();
    // One wait of 50 ms starts the shedding; it ends only when the plugin drains.
    assert!(
        pushing < Duration::from_secs(2),
        "200 pushes took {pushing:?}: the stuck plugin stalled the session"
    );
    end(&s).await;
    let st = h.metrics.plugin("spin");
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    assert!(get(&st.shed) > 150, "shed: {}", get(&st.shed));
    assert_eq!(get(&st.routed), 200);
    assert_eq!(
        get(&st.routed),
        get(&st.delivered) + get(&st.dead_lettered) + get(&st.dropped) + get(&st.discarded)
    );
    let letters =
        std::fs::read_to_string(h.dead_letter_dir().join("spin.deadletter.jsonl")).unwrap();
    let lettered: usize = letters
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["frames"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(
        lettered as u64,
        get(&st.dead_lettered),
        "each is in the file"
    );
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-stuck-stream.txt")),
        (1..=200).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_partial_batch_waits_up_to_max_wait_for_more_frames() {
    let mut noop = Plug::new("noop", "noop");
    noop.batch_max = 8;
    noop.batch_wait = Duration::from_millis(500);
    let h = harness(&[noop]).await;
    let s = session(&h, "batch-stream");
    for seq in 1..=5 {
        s.push(transcript(seq, "Ann", "hi")).await;
    }
    end(&s).await;
    drop(s);
    let (outs, _dir) = h.finish().await;
    let count = outs.iter().find(|o| o["kind"] == "count").expect("count");
    assert_eq!(count["data"]["frames"], 5);
    assert_eq!(
        count["data"]["batches"], 1,
        "the five frames waited for each other: {count}"
    );
}

/// The `fs-hog` report the plugin emitted: (made, error).
fn hog_report(outs: &[serde_json::Value], plugin: &str) -> (u64, Option<String>) {
    let out = outs
        .iter()
        .find(|o| o["kind"] == "fs-hog" && o["plugin"] == plugin)
        .unwrap_or_else(|| panic!("{plugin} reported: {outs:?}"));
    let data: serde_json::Value = match &out["data"] {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap(),
        v => v.clone(),
    };
    (
        data["made"].as_u64().expect("made"),
        data["error"].as_str().map(str::to_owned),
    )
}

/// A hostile plugin `hog` beside `seq_recorder` in one session of 20 transcript frames;
/// checks the recorder got every frame, in order, and returns the outputs, the plugins'
/// counters and the harness's directory.
async fn beside_recorder(
    hogs: Vec<Plug>,
    stream: &str,
) -> (Vec<serde_json::Value>, Arc<Metrics>, tempfile::TempDir) {
    let mut plugs = hogs;
    plugs.push(Plug::new("recorder", "seq_recorder"));
    let h = harness(&plugs).await;
    let s = session(&h, stream);
    for seq in 1..=20 {
        s.push(transcript(seq, "Ann", "hi")).await;
    }
    end(&s).await;
    assert_eq!(
        recorded_seqs(&h.out_dir().join(format!("seqs-{stream}.txt"))),
        (1..=20).collect::<Vec<_>>(),
        "the well-behaved plugin got every frame"
    );
    assert_eq!(
        h.metrics
            .plugin("recorder")
            .delivered
            .load(Ordering::Relaxed),
        20
    );
    drop(s);
    let metrics = h.metrics.clone();
    let (outs, dir) = h.finish().await;
    (outs, metrics, dir)
}

fn get(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_descriptor_hog_is_refused_at_max_open_files_and_sees_the_error() {
    let mut hog = Plug::new("hog", "fs_hog").cfg("mode", "files");
    hog.out_sub = Some("hog");
    hog.resources.max_open_files = 16;
    let (outs, m, _dir) = beside_recorder(vec![hog], "fd-stream").await;
    let (made, error) = hog_report(&outs, "hog");
    // 16 descriptors: the granted directory and 15 files kept open.
    assert_eq!(made, 15, "{error:?}");
    let error = error.expect("the guest saw an error");
    assert!(
        error.contains("memory") || error.contains("space"),
        "{error}"
    );
    let st = m.plugin("hog");
    assert_eq!(get(&st.open_files_refused), 1);
    assert_eq!(get(&st.traps), 0, "an error, not a trap");
}

#[tokio::test]
async fn an_inode_hog_is_refused_at_max_inodes_shared_by_every_session() {
    let mut hog = Plug::new("hog", "fs_hog").cfg("mode", "inodes");
    hog.out_sub = Some("hog");
    hog.max_inodes = Some(50);
    let h = harness(&[hog, Plug::new("recorder", "seq_recorder")]).await;
    for stream in ["inode-a", "inode-b"] {
        let s = session(&h, stream);
        for seq in 1..=20 {
            s.push(transcript(seq, "Ann", "hi")).await;
        }
        end(&s).await;
        assert_eq!(
            recorded_seqs(&h.out_dir().join(format!("seqs-{stream}.txt"))),
            (1..=20).collect::<Vec<_>>()
        );
    }
    let entries = std::fs::read_dir(h.out_dir().join("hog")).unwrap().count();
    assert_eq!(entries, 50, "files and directories in the grant");
    let st = h.metrics.plugin("hog");
    assert_eq!(get(&st.inodes_refused), 2, "once per session");
    assert_eq!(get(&st.traps), 0);
    let (outs, _dir) = h.finish().await;
    let reports: Vec<_> = outs
        .iter()
        .filter(|o| o["kind"] == "fs-hog")
        .map(|o| o["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports.iter().any(|r| r.contains("made 50")), "{reports:?}");
    // The second session found the directory full: it reopened the first file, which
    // exists, and was refused the first directory.
    assert!(reports.iter().any(|r| r.contains("made 1")), "{reports:?}");
    assert!(
        reports.iter().all(|r| r.contains("Quota exceeded")),
        "{reports:?}"
    );
}

#[tokio::test]
async fn a_symlink_is_refused_unless_the_grant_allows_links() {
    let mut planter = Plug::new("planter", "fs_hog").cfg("mode", "symlink");
    planter.out_sub = Some("planter");
    let mut allowed = Plug::new("allowed", "fs_hog").cfg("mode", "symlink");
    allowed.out_sub = Some("allowed");
    allowed.symlinks = true;
    let (outs, m, dir) = beside_recorder(vec![planter, allowed], "link-stream").await;
    let (made, error) = hog_report(&outs, "planter");
    assert_eq!(made, 0);
    assert!(error.expect("refused").contains("permitted"));
    assert!(
        dir.path().join("out/planter/x").symlink_metadata().is_err(),
        "no link was planted"
    );
    assert_eq!(get(&m.plugin("planter").symlinks_refused), 1);
    // With `symlinks = true` the same link is made (the guest still cannot follow it).
    assert_eq!(hog_report(&outs, "allowed"), (1, None));
    assert!(dir.path().join("out/allowed/x").symlink_metadata().is_ok());
    assert_eq!(get(&m.plugin("allowed").symlinks_refused), 0);
}

#[tokio::test]
async fn a_full_resource_table_traps_with_a_report_naming_max_resources() {
    // Open files past the table's capacity: only a misconfiguration the config refuses
    // allows it, and then the table is the backstop.
    let mut hog = Plug::new("hog", "fs_hog")
        .cfg("mode", "files")
        .cfg("in", "on-frames");
    hog.out_sub = Some("hog");
    hog.resources.max_resources = 64;
    hog.resources.max_open_files = 1000;
    hog.restart.max_failures = 1;
    let (outs, m, dir) = beside_recorder(vec![hog], "table-stream").await;
    assert!(
        !outs.iter().any(|o| o["kind"] == "fs-hog"),
        "the call trapped before it reported"
    );
    let st = m.plugin("hog");
    assert_eq!(get(&st.resources_exhausted), 1);
    assert_eq!(get(&st.traps), 1);
    assert_eq!(get(&st.breaker_trips), 1, "stopped after one trap");
    let letters = std::fs::read_to_string(dir.path().join("dead/hog.deadletter.jsonl")).unwrap();
    assert!(
        letters.contains("max_resources"),
        "the trap report names the key: {letters}"
    );
}

/// A writer into a shared buffer, for capturing log lines.
#[derive(Clone, Default)]
struct LogBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn plugin_log_and_stdout_text_cannot_forge_log_lines() {
    let forged = "hello\nINFO rtms_host: admin login ok\r\u{1b}[31mred\u{1b}[0m";
    let flood = Plug::new("forger", "flood")
        .cfg("log_lines", "1")
        .cfg("stdout_lines", "1")
        .cfg("text", forged);
    let buf = LogBuf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = harness(&[flood]).await;
    let s = session(&h, "forge-stream");
    s.push(transcript(1, "Ann", "hi")).await;
    end(&s).await;
    drop(s);
    let _ = h.finish().await;
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        !text.contains('\u{1b}'),
        "an ANSI escape reached the log:\n{text}"
    );
    assert!(
        !text.contains('\r'),
        "a carriage return reached the log:\n{text}"
    );
    // Every line holding the plugin's text is attributed to the plugin: none is forged.
    let forged: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("admin login ok") && !l.contains("plugin=forger"))
        .collect();
    assert!(forged.is_empty(), "a plugin forged a log line:\n{text}");
    // host.log: the message is one line, its newline escaped.
    let escaped = r"hello\nINFO rtms_host: admin login ok\r\u{1b}[31mred\u{1b}[0m";
    assert_eq!(
        lines.iter().filter(|l| l.contains(escaped)).count(),
        1,
        "host.log is one escaped line:\n{text}"
    );
    // stdout: a newline ends a line, so two lines, each labelled, the rest escaped.
    let tail = r"stdout: INFO rtms_host: admin login ok\r\u{1b}[31mred\u{1b}[0m";
    assert_eq!(
        lines.iter().filter(|l| l.contains(tail)).count(),
        1,
        "{text}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("stdout: hello "))
            .count(),
        1,
        "{text}"
    );
}
