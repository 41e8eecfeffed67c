//! The plugin runtime with real components, including deliberately hostile ones: a spinning
//! guest stopped by the call deadline, a memory hog stopped by the limit, a guest that traps
//! every N frames (rebuilt, the trapping batch dead-lettered, other plugins unaffected), and
//! one that tries to leave its sandbox; trap reports that name the limit, its key and the
//! panic's message, and sandbox errors named.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rtms_host::sandbox::bindings::MediaKind;

use crate::util::*;

/// The `error` of the first dead letter in a dead-letter file's text.
fn first_letter_error(letters: &str) -> String {
    let first = letters.lines().next().expect("a dead letter");
    let v: serde_json::Value = serde_json::from_str(first).expect("a JSON letter");
    v["error"].as_str().expect("an error").to_owned()
}

#[tokio::test]
async fn a_panic_s_message_reaches_the_dead_letter_and_sandbox_errors_are_named() {
    let mut trap = Plug::new("trap", "trap").cfg("every", "2");
    trap.batch_max = 1;
    // Its directory is not granted: on-session-start fails with the guest's I/O error.
    let lost = Plug::new("lost", "seq_recorder").cfg("dir", "/nowhere");
    let h = harness(&[trap, lost]).await;
    let s = session(&h, "panic-stream");
    for seq in 1..=2 {
        s.push(transcript(seq, "Ann", "hi")).await;
    }
    end(&s).await;
    let letters =
        std::fs::read_to_string(h.dead_letter_dir().join("trap.deadletter.jsonl")).unwrap();
    let error = first_letter_error(&letters);
    assert!(
        error.contains("trap fixture: trapping on frame seq 2 as configured")
            && error.contains("panicked at"),
        "the panic's message and place, not only its last line: {error}"
    );
    assert!(!error.contains("RUST_BACKTRACE"), "{error}");
    let letters =
        std::fs::read_to_string(h.dead_letter_dir().join("lost.deadletter.jsonl")).unwrap();
    let error = first_letter_error(&letters);
    assert!(
        error.contains("failed to start")
            && error.contains("cannot open /nowhere/")
            && error.contains("(os error 44 = WASI ENOENT)")
            && error.contains("only the directories pipeline.toml grants it"),
        "the sandbox's error is named and explained: {error}"
    );
}

fn seq_recorder() -> Plug {
    Plug::new("recorder", "seq_recorder")
}

#[tokio::test]
async fn spinning_plugin_is_stopped_by_the_deadline_and_others_get_every_frame() {
    let mut spin = Plug::new("spin", "spin");
    spin.call_timeout = Duration::from_millis(50);
    let h = harness(&[spin, seq_recorder()]).await;
    let s = session(&h, "spin-stream");
    for seq in 1..=20 {
        s.push(transcript(seq, "Ann", "hello")).await;
    }
    end(&s).await;
    let spin = h.metrics.plugin("spin");
    assert!(
        spin.traps.load(Ordering::Relaxed) >= 1,
        "the deadline must interrupt the loop"
    );
    assert_eq!(spin.delivered.load(Ordering::Relaxed), 0);
    assert_eq!(
        spin.dead_lettered.load(Ordering::Relaxed),
        20,
        "every frame the spinning plugin could not take is dead-lettered"
    );
    let letters =
        std::fs::read_to_string(h.dead_letter_dir().join("spin.deadletter.jsonl")).unwrap();
    assert!(
        letters.contains("call deadline exceeded")
            && letters.contains("[plugin.limits] call_timeout_ms = 50"),
        "dead letter names the deadline, its key and its value: {letters}"
    );
    let seqs = recorded_seqs(&h.out_dir().join("seqs-spin-stream.txt"));
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn memory_hog_is_stopped_by_the_limit() {
    let mut hog = Plug::new("hog", "hog");
    hog.memory_mb = 8;
    let h = harness(&[hog, seq_recorder()]).await;
    let s = session(&h, "hog-stream");
    for seq in 1..=3 {
        s.push(transcript(seq, "Ann", "hi")).await;
    }
    end(&s).await;
    let hog = h.metrics.plugin("hog");
    assert!(hog.traps.load(Ordering::Relaxed) >= 1);
    assert_eq!(hog.delivered.load(Ordering::Relaxed), 0);
    let letters =
        std::fs::read_to_string(h.dead_letter_dir().join("hog.deadletter.jsonl")).unwrap();
    let error = first_letter_error(&letters);
    assert!(
        error.starts_with("out of memory")
            && error.contains("past [plugin.limits] memory_mb = 8")
            && !error.contains("<unknown>"),
        "the report names memory, the key and its value, without a backtrace: {error}"
    );
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-hog-stream.txt")),
        vec![1, 2, 3]
    );
}

#[tokio::test]
async fn trapping_plugin_is_rebuilt_and_the_trapping_batches_are_dead_lettered() {
    let mut trap = Plug::new("trap", "trap").cfg("every", "5");
    trap.batch_max = 1;
    let h = harness(&[trap, seq_recorder()]).await;
    let s = session(&h, "trap-stream");
    for seq in 1..=50 {
        s.push(transcript(seq, "Ann", "words")).await;
    }
    end(&s).await;
    let stats = h.metrics.plugin("trap");
    let traps = stats.traps.load(Ordering::Relaxed);
    // Each fresh instance traps on its 5th frame: 50 frames = 10 traps.
    assert_eq!(traps, 10);
    assert_eq!(stats.restarts.load(Ordering::Relaxed), 10);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 10);
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 40);
    // The trap plugin saw every frame but the ones it trapped on, in order, and was told it
    // resumed each time it was rebuilt.
    let text = std::fs::read_to_string(h.out_dir().join("trap-trap-stream.txt")).unwrap();
    let expected: Vec<u64> = (1..=50).filter(|s| s % 5 != 0).collect();
    assert_eq!(
        recorded_seqs(&h.out_dir().join("trap-trap-stream.txt")),
        expected
    );
    // Rebuilt lazily for the next batch; after the last trap (seq 50) a fresh instance is
    // built for the session's end alone, so the plugin still ends the session.
    assert_eq!(text.matches("# start resumed=true").count(), 10);
    assert!(
        text.ends_with("# trap 50\n# start resumed=true\n# end stopped(6)\n"),
        "the last batch trapped, then a fresh instance ended the session:\n{text}"
    );
    assert_eq!(stats.end_instances.load(Ordering::Relaxed), 1);
    // The dead letters hold exactly the trapping frames.
    let letters =
        std::fs::read_to_string(h.dead_letter_dir().join("trap.deadletter.jsonl")).unwrap();
    let dead: Vec<u64> = letters
        .lines()
        .flat_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["seq"].as_u64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(dead, (1..=10).map(|i| i * 5).collect::<Vec<_>>());
    // The other plugin lost nothing.
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-trap-stream.txt")),
        (1..=50).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn circuit_breaker_stops_a_plugin_that_keeps_failing() {
    let mut trap = Plug::new("trap", "trap").cfg("every", "1");
    trap.batch_max = 1;
    trap.restart.max_failures = 3;
    let h = harness(&[trap, seq_recorder()]).await;
    let s = session(&h, "breaker-stream");
    for seq in 1..=10 {
        s.push(transcript(seq, "Ann", "words")).await;
    }
    end(&s).await;
    let stats = h.metrics.plugin("trap");
    assert_eq!(stats.traps.load(Ordering::Relaxed), 3);
    assert_eq!(stats.breaker_trips.load(Ordering::Relaxed), 1);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 3);
    assert_eq!(
        stats.discarded.load(Ordering::Relaxed),
        7,
        "every frame after the trip is counted"
    );
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-breaker-stream.txt")),
        (1..=10).collect::<Vec<_>>()
    );
    // The breaker stopped it for the session, yet the session still ends for it: a fresh
    // instance, told it resumes, gets on-session-end.
    let text = std::fs::read_to_string(h.out_dir().join("trap-breaker-stream.txt")).unwrap();
    assert!(
        text.ends_with("# trap 3\n# start resumed=true\n# end stopped(6)\n"),
        "{text}"
    );
    assert_eq!(stats.end_instances.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn plugin_cannot_leave_its_sandbox() {
    let h = harness(&[Plug::new("escape", "escape")]).await;
    let s = session(&h, "escape-stream");
    s.push(transcript(1, "Ann", "hi")).await;
    end(&s).await;
    drop(s);
    let (outs, dir) = h.finish().await;
    let report = outs
        .iter()
        .find(|o| o["kind"] == "escape")
        .expect("escape fixture reports");
    assert_eq!(report["data"]["escaped"], false, "report: {report}");
    assert_eq!(
        report["data"]["control_ok"], true,
        "the granted dir works: {report}"
    );
    assert!(!std::path::Path::new("/etc/rtms-escape").exists());
    assert!(!dir.path().join("rtms-escape").exists());
}

#[tokio::test]
async fn drop_oldest_queue_counts_what_it_drops() {
    // A plugin slower than the producer, behind a tiny drop-oldest queue.
    let mut slow = Plug::new("slow", "seq_recorder");
    slow.capacity = 2;
    slow.on_full = rtms_host::dataplane::queue::QueuePolicy::all(
        rtms_host::dataplane::queue::OnFull::DropOldest,
    );
    slow.kinds = vec![MediaKind::Audio];
    slow.batch_max = 1;
    let h = harness(&[slow]).await;
    let s = session(&h, "drop-stream");
    for seq in 1..=500 {
        s.push(audio(seq)).await;
    }
    end(&s).await;
    let stats = h.metrics.plugin("slow");
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let dropped = stats.dropped.load(Ordering::Relaxed);
    assert_eq!(
        delivered + dropped,
        500,
        "every frame is delivered or counted as dropped"
    );
    let seqs = recorded_seqs(&h.out_dir().join("seqs-drop-stream.txt"));
    assert_eq!(seqs.len() as u64, delivered);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "order is kept");
    assert_eq!(
        *seqs.last().unwrap(),
        500,
        "the newest frame is never the one dropped"
    );
}

#[tokio::test]
async fn a_core_module_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let err = runtime()
        .load(&path)
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("core wasm module, not a component"), "{err}");
    std::fs::write(&path, b"hello").unwrap();
    let err = runtime()
        .load(&path)
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("not a WebAssembly file"), "{err}");
}

#[tokio::test]
async fn second_load_comes_from_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rtms_host::sandbox::Runtime::new(&rtms_host::sandbox::RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        epoch_tick: Duration::from_millis(5),
        ..Default::default()
    })
    .unwrap();
    let first = rt.load(&component("noop")).await.unwrap();
    assert_eq!(first.source, rtms_host::sandbox::CodeSource::Compiled);
    let second = rt.load(&component("noop")).await.unwrap();
    assert_eq!(second.source, rtms_host::sandbox::CodeSource::Cache);
    assert_eq!(first.hash, second.hash);
}

/// What a log says a reload changed names the settings when the code is the same, never the
/// same hash on both sides alone.
#[tokio::test]
async fn a_change_of_limits_alone_is_described_by_its_settings() {
    let rt = runtime();
    let metrics = rtms_host::dataplane::stats::Metrics::default();
    let out = tempfile::tempdir().unwrap();
    let old = entry(&rt, &seq_recorder(), out.path(), 1, &metrics).await;
    let mut p = seq_recorder();
    p.memory_mb = 48;
    p.call_timeout = Duration::from_millis(2500);
    let new = entry(&rt, &p, out.path(), 2, &metrics).await;
    let hash = old.code.short_hash();
    assert_eq!(
        new.change_from(&old),
        format!("code {hash} (unchanged), memory_mb 32 -> 48, call_timeout_ms 500 -> 2500")
    );
}
