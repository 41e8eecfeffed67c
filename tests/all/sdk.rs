//! The Rust SDK (`plugins/sdk`, crate `rtms-plugin`) outside this repository: copied to a
//! folder of its own, used as a path dependency by a new plugin crate, built for
//! wasm32-wasip2 with nothing from the plugins workspace, and that plugin replays the sample
//! meeting. Also: the contract vendored in the SDK is the repository's.

use std::path::{Path, PathBuf};
use std::process::Command;

use rtms_config::{LoadOptions, MapEnv, Pipeline};
use rtms_host::service::replay::{ReplayArgs, replay_file};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_sdk_vendors_the_repository_s_contract() {
    let repo = std::fs::read_to_string(root().join("wit/v0.2/plugin.wit")).unwrap();
    let sdk = std::fs::read_to_string(root().join("plugins/sdk/wit/plugin.wit")).unwrap();
    assert!(
        repo == sdk,
        "plugins/sdk/wit/plugin.wit differs from wit/v0.2/plugin.wit: copy it (cp wit/v0.2/plugin.wit plugins/sdk/wit/)"
    );
}

/// Copies `from` into `to`, recursively, leaving out `target`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "target" {
            continue;
        }
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

const PLUGIN_TOML: &str = r#"[package]
name = "talk-counter"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
rtms-plugin = { path = "../rtms-plugin" }

[workspace]
"#;

const PLUGIN_RS: &str = r#"
use std::collections::BTreeMap;
use rtms_plugin::{Config, EndReason, Frame, MediaKind, Output, Plugin, SessionInfo, Severity};

pub struct TalkCounter {
    min_words: u64,
    words: BTreeMap<String, u64>,
}

impl Plugin for TalkCounter {
    fn init(config: Config) -> Result<Self, String> {
        let min_words = config.u64_or("min_words", 0)?;
        config.finish()?;
        Ok(Self { min_words, words: BTreeMap::new() })
    }

    fn on_session_start(&mut self, _info: SessionInfo) -> Result<(), String> {
        Ok(())
    }

    fn on_frames(&mut self, _session: u64, frames: Vec<Frame>) -> Result<(), String> {
        for f in frames.iter().filter(|f| f.kind == MediaKind::Transcript) {
            let n = f.text.as_deref().unwrap_or("").split_whitespace().count() as u64;
            *self.words.entry(rtms_plugin::speaker_name(&f.user_name, &f.user_id)).or_default() += n;
        }
        Ok(())
    }

    fn on_session_end(&mut self, _session: u64, _reason: EndReason) -> Result<(), String> {
        for (speaker, n) in self.words.iter().filter(|(_, n)| **n >= self.min_words) {
            rtms_plugin::emit(&Output {
                kind: "word-count".into(),
                severity: Severity::Info,
                message: format!("{speaker} said {n} words"),
                data: None,
            });
        }
        Ok(())
    }
}

rtms_plugin::export_plugin!(TalkCounter);
"#;

#[tokio::test]
async fn the_sdk_copied_out_of_the_repository_builds_a_plugin_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&root().join("plugins/sdk"), &dir.path().join("rtms-plugin"));
    let plugin = dir.path().join("talk-counter");
    std::fs::create_dir_all(plugin.join("src")).unwrap();
    std::fs::write(plugin.join("Cargo.toml"), PLUGIN_TOML).unwrap();
    std::fs::write(plugin.join("src/lib.rs"), PLUGIN_RS).unwrap();
    // The plugins workspace's lock pins the same dependency versions, so the build needs
    // nothing beyond what the host's build already fetched.
    std::fs::copy(root().join("plugins/Cargo.lock"), plugin.join("Cargo.lock")).unwrap();
    // A target dir kept between runs, so only the first run compiles the dependencies.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-outside-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--offline", "--target", "wasm32-wasip2"])
        .current_dir(&plugin)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "the plugin builds against the copied SDK:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let component = target.join("wasm32-wasip2/debug/talk_counter.wasm");
    assert!(component.is_file(), "{}", component.display());

    let text = format!(
        r#"
version = 1
[runtime]
cache_dir = "{cache}"
dead_letter_dir = "{out}/dead"
[runtime.reload]
watch = false
[[plugin]]
name = "talk-counter"
component = "{component}"
media = ["transcript"]
[plugin.config]
min_words = 10
[[sink]]
type = "jsonl"
path = "{out}/outputs.jsonl"
"#,
        cache = crate::util::cache_dir().display(),
        out = dir.path().display(),
        component = component.display(),
    );
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, &text).unwrap();
    let p = Pipeline::parse(&text, &path, &MapEnv::new(), LoadOptions::validate_only()).unwrap();
    let summary = replay_file(
        &p,
        &ReplayArgs {
            file: root().join("examples/recordings/standup.jsonl"),
            config: p.path.clone(),
            realtime: false,
            product: rtms_proto::Product::Meeting,
            meeting_id: None,
            stream_id: None,
        },
    )
    .await
    .unwrap();
    let m = &summary.metrics.plugins["talk-counter"];
    assert_eq!(m.traps + m.errors, 0, "{m:?}");
    let outputs = std::fs::read_to_string(dir.path().join("outputs.jsonl")).unwrap();
    let messages: Vec<String> = outputs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
        .collect();
    assert_eq!(messages.len(), 4, "one count per speaker: {messages:?}");
    assert!(
        messages.iter().any(|m| m.contains("Priya Raman said")),
        "{messages:?}"
    );
}
