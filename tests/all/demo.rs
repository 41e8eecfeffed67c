//! The demo end to end (fast pace): the simulator and the host in one process over wss://,
//! the example plugins (Rust, and the Python, JavaScript and C examples) writing transcripts
//! and alerts into the output directory.

use rtms_host::cli::demo::{DemoArgs, run_demo};

/// A fast demo over wss:// into `out`.
fn args(out: &std::path::Path, rust_only: bool, with_fakes: bool) -> DemoArgs {
    DemoArgs {
        out: out.to_owned(),
        meeting: None,
        pace: "fast".into(),
        product: rtms_proto::Product::Meeting,
        no_tls: false,
        record: None,
        rust_only,
        with_fakes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_writes_transcripts_and_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let s = run_demo(&args(dir.path(), false, false), false)
        .await
        .unwrap();
    assert!(s.transcript_lines_sent > 5);
    assert_eq!(
        s.frames_by_kind.get("transcript").copied(),
        Some(s.transcript_lines_sent as u64),
        "every transcript line sent reached the host"
    );
    assert!(
        s.alerts >= 3,
        "the stand-up says budget, deadline and blocker"
    );
    let txt = s
        .files
        .iter()
        .find(|f| {
            f.extension().is_some_and(|e| e == "txt")
                && f.parent().is_some_and(|d| d.ends_with("transcripts"))
        })
        .expect("a text transcript");
    let text = std::fs::read_to_string(txt).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with('[') && !l.contains("(chat)"))
            .count(),
        s.transcript_lines_sent
    );
    assert!(s.files.iter().any(|f| f.ends_with("alerts.jsonl")));

    // The examples in other languages run beside the Rust ones; one that cannot be built
    // here is named with the reason.
    let c_missing = rtms_host::plugin_dev::toolchain::clang().is_err()
        && std::env::var_os("RTMS_REQUIRE_TOOLCHAINS").is_none_or(|v| v != "1");
    for (plugin, at_least) in [("talk-time", 1), ("tagger", 5), ("audio-levels", 1)] {
        if plugin == "audio-levels" && c_missing {
            assert!(
                s.skipped
                    .iter()
                    .any(|(p, why)| p.starts_with("audio-levels") && why.contains("clang-19")),
                "{:?}",
                s.skipped
            );
            continue;
        }
        let n = s.outputs_by_plugin.get(plugin).copied().unwrap_or(0);
        assert!(
            n >= at_least,
            "{plugin}: {n} outputs ({:?}; skipped {:?})",
            s.outputs_by_plugin,
            s.skipped
        );
    }
    assert!(
        s.files
            .iter()
            .any(|f| f.to_string_lossy().contains("talk-time/talk-time-")),
        "{:?}",
        s.files
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_fakes_transcribes_summarises_and_posts() {
    let dir = tempfile::tempdir().unwrap();
    let s = run_demo(&args(dir.path(), true, true), false)
        .await
        .unwrap_or_else(|e| panic!("the demo with fakes failed: {e:#}"));
    let file = |dir: &str, suffix: &str| {
        let f = s
            .files
            .iter()
            .find(|f| {
                f.to_string_lossy().ends_with(suffix)
                    && f.parent().is_some_and(|d| d.ends_with(dir))
            })
            .unwrap_or_else(|| panic!("no {dir}/*{suffix} in {:?}", s.files));
        std::fs::read_to_string(f).unwrap()
    };
    let stt = file("speech-to-text", ".stt.txt");
    assert!(
        stt.lines().count() >= s.transcript_lines_sent / 2,
        "the provider's text for the meeting's audio:\n{stt}"
    );
    let summary = file("summaries", ".summary.md");
    assert!(
        summary.contains(&format!("Summary of {} lines", s.transcript_lines_sent)),
        "{summary}"
    );
    assert_eq!(s.providers.len(), 3, "{:?}", s.providers);
    assert!(
        s.providers[2].contains("1 message(s) posted"),
        "{:?}",
        s.providers
    );
}
