//! `rtms-host replay` of the sample meeting in examples/recordings: the transcript writer's
//! files and the keyword alerter's alerts must match the golden files in
//! tests/golden/replay byte for byte. `BLESS=1` rewrites the golden files after an
//! intended change.

use std::path::{Path, PathBuf};

use rtms_config::{LoadOptions, MapEnv, Pipeline};
use rtms_host::bindings::EndReason;
use rtms_host::replay::{ReplayArgs, replay_file};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pipeline(dir: &Path) -> Pipeline {
    let text = format!(
        r#"
version = 1
[runtime]
cache_dir = "{cache}"
dead_letter_dir = "{out}/dead"
[runtime.reload]
watch = false

[[plugin]]
name = "transcript-text"
component = "{plugins}/transcript_writer.wasm"
media = ["transcript", "chat"]
[[plugin.dir]]
host = "{out}/transcripts"
guest = "/out"
[plugin.config]
format = "text"
include_chat = true

[[plugin]]
name = "transcript-jsonl"
component = "{plugins}/transcript_writer.wasm"
media = ["transcript", "chat"]
[[plugin.dir]]
host = "{out}/transcripts"
guest = "/out"
[plugin.config]
format = "jsonl"
include_chat = true

[[plugin]]
name = "keyword-alerter"
component = "{plugins}/keyword_alerter.wasm"
media = ["transcript", "chat"]
[plugin.config]
keywords = ["deadline", "budget", "blocker"]
cooldown_ms = 10000
include_chat = true

[[sink]]
type = "jsonl"
path = "{out}/alerts.jsonl"
"#,
        cache = crate::util::cache_dir().display(),
        out = dir.display(),
        plugins = rtms_host::demo::BUILT_PLUGINS_DIR,
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, &text).unwrap();
    Pipeline::parse(&text, &path, &MapEnv::new(), LoadOptions::validate_only()).unwrap()
}

/// Outputs without the fields that change from run to run (wall-clock time, session
/// handle), grouped by plugin: each plugin's outputs keep their order, but plugins run
/// concurrently, so their interleaving is not part of the contract.
fn stable_alerts(text: &str) -> String {
    let mut lines: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("time_ms");
            o.remove("session");
            let plugin = o["plugin"].as_str().unwrap().to_owned();
            (plugin, serde_json::to_string(&v).unwrap() + "\n")
        })
        .collect();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    lines.into_iter().map(|(_, l)| l).collect()
}

fn check_golden(name: &str, actual: &str) {
    let path = root().join("tests/golden/replay").join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with BLESS=1 to create it)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from {}:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[tokio::test]
async fn replay_of_the_sample_meeting_matches_the_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let summary = replay_file(
        &p,
        &ReplayArgs {
            file: root().join("examples/recordings/standup.jsonl"),
            config: p.path.clone(),
            realtime: false,
            product: rtms_proto::Product::Meeting,
            meeting_id: Some("standup-meeting".into()),
            stream_id: Some("standup".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.skipped_lines, 0);
    assert!(
        matches!(summary.end, EndReason::Stopped(_)),
        "{:?}",
        summary.end
    );
    for (name, m) in &summary.metrics.plugins {
        assert_eq!(m.traps + m.errors + m.dead_lettered, 0, "{name}: {m:?}");
    }
    let text = std::fs::read_to_string(dir.path().join("transcripts/meeting_standup.txt")).unwrap();
    let jsonl =
        std::fs::read_to_string(dir.path().join("transcripts/meeting_standup.jsonl")).unwrap();
    let alerts = stable_alerts(&std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap());
    assert!(text.lines().count() > 10, "{text}");
    assert!(alerts.lines().count() >= 3, "{alerts}");
    check_golden("meeting_standup.txt", &text);
    check_golden("meeting_standup.jsonl", &jsonl);
    check_golden("alerts.jsonl", &alerts);
}
