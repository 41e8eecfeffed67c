//! `rtms-host plugin new NAME --lang …`: a plugin folder that builds and passes its test
//! unchanged. Every language gets the same small plugin (it counts the transcript lines and
//! words of a meeting, writes each line to a file named after the stream as it comes —
//! truncated for a new session, appended to when `resumed` — or, in JavaScript, which has no
//! files, emits it, and reports the counts at session end), a manifest, a pipeline to run it
//! in a host (the one place its `media` is declared), a short sample recording, and the
//! expected outputs of its test.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::compile::WIT;
use super::manifest::{Lang, valid_name};

const SAMPLE: &str = include_str!("templates/sample.jsonl");
/// The design review of examples/meetings: every media kind, four speakers at different
/// levels, links and questions in the chat (a skeleton's `meetings/review.toml`).
pub const REVIEW: &str = include_str!("../../../examples/meetings/review.toml");
const RUST_LIB: &str = include_str!("templates/rust.lib.rs");
const RUST_CARGO: &str = include_str!("templates/rust.Cargo.toml");
const PYTHON_APP: &str = include_str!("templates/app.py");
const JS_PLUGIN: &str = include_str!("templates/plugin.js");
const C_PLUGIN: &str = include_str!("templates/plugin.c");

/// What the scaffold's plugin reports for `SAMPLE`.
pub const EXPECTED_LINES: u64 = 11;
pub const EXPECTED_WORDS: u64 = 136;

/// Creates the plugin folder `dir` for `name` in `lang`.
pub fn create(name: &str, lang: Lang, dir: &Path) -> Result<()> {
    valid_name(name)?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} already exists and is not empty: choose another name or --dir",
            dir.display()
        );
    }
    let shape = Shape::of(name, lang);
    let lines = sample_lines();
    let mut expected_outputs = String::new();
    if !shape.writes_files {
        for l in &lines {
            expected_outputs.push_str(&crate::plugin_dev::harness::normalise_outputs(
                &serde_json::json!({"kind": "line", "severity": "info", "message": l.trim_end()})
                    .to_string(),
            )?);
        }
    }
    expected_outputs.push_str(&format!(
        "{{\"kind\":\"words\",\"severity\":\"info\",\"message\":\"{EXPECTED_LINES} transcript lines, {EXPECTED_WORDS} words\",\"data\":{{\"lines\":{EXPECTED_LINES},\"words\":{EXPECTED_WORDS}}}}}\n"
    ));
    let mut files: Vec<(&str, String)> = vec![
        ("rtms-plugin.toml", manifest(name, lang, &shape)),
        ("pipeline.toml", pipeline(name, &shape)),
        ("wit/plugin.wit", WIT.to_owned()),
        ("meetings/sample.jsonl", SAMPLE.to_owned()),
        ("meetings/review.toml", REVIEW.to_owned()),
        ("expected/outputs.jsonl", expected_outputs),
        (
            ".gitignore",
            "/build/\n/target/\n/out/\n/.cache/\n".to_owned(),
        ),
    ];
    if shape.writes_files {
        files.push((SAMPLE_FILE, lines.concat()));
    }
    files.extend(shape.sources);
    write_all(dir, files)
}

/// Where the skeleton's test expects the file it writes for the sample (its stream id is
/// the recording's stem).
pub const SAMPLE_FILE: &str = "expected/files/words-sample.txt";

/// The lines the skeleton writes for `SAMPLE`: `#<seq> <speaker>: <n> words`, with the
/// sequence numbers a replay gives (every frame of the recording counts, in file order).
pub fn sample_lines() -> Vec<String> {
    let mut seq = 0;
    let mut out = Vec::new();
    for line in SAMPLE.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Ok(rtms_client::Decoded::Frame(f)) =
            rtms_client::decode(v["msg"].to_string().as_bytes())
        {
            seq += 1;
            if f.kind == rtms_client::MediaKind::Transcript {
                let n = f
                    .text
                    .as_deref()
                    .unwrap_or_default()
                    .split_whitespace()
                    .count();
                out.push(format!("#{seq} {}: {n} words\n", f.user_name));
            }
        }
    }
    out
}

/// What differs between the languages: the source files, where the component lands, how
/// the manifest names the source, and whether the plugin writes a file.
struct Shape {
    sources: Vec<(&'static str, String)>,
    component: String,
    source_key: &'static str,
    writes_files: bool,
}

impl Shape {
    fn of(name: &str, lang: Lang) -> Self {
        let snake = name.replace('-', "_");
        let fill = |t: &str| t.replace("{{name}}", name).replace("{{snake}}", &snake);
        let shape = |sources, component, source_key, writes_files| Shape {
            sources,
            component,
            source_key,
            writes_files,
        };
        match lang {
            Lang::Rust => shape(
                vec![
                    ("Cargo.toml", fill(RUST_CARGO)),
                    ("src/lib.rs", fill(RUST_LIB)),
                ],
                format!("target/wasm32-wasip2/release/{snake}.wasm"),
                "source = \".\"",
                true,
            ),
            Lang::Python => shape(
                vec![("src/app.py", fill(PYTHON_APP))],
                format!("build/{snake}.wasm"),
                "source = \"src\"\nentry = \"app\"",
                true,
            ),
            Lang::Js => shape(
                vec![("src/plugin.js", fill(JS_PLUGIN))],
                format!("build/{snake}.wasm"),
                "source = \"src\"\nentry = \"plugin.js\"",
                false,
            ),
            Lang::C => shape(
                vec![("src/plugin.c", fill(C_PLUGIN))],
                format!("build/{snake}.wasm"),
                "source = \"src\"",
                true,
            ),
        }
    }
}

/// The folder's `rtms-plugin.toml`.
fn manifest(name: &str, lang: Lang, shape: &Shape) -> String {
    format!(
        r#"# How `rtms-host plugin build` and `rtms-host plugin test` treat this folder.
# The keys are described in docs/plugin-guide/README.md of rtms-host.

[plugin]
name = "{name}"
lang = "{lang}"
{source_key}
component = "{component}"
# The kinds it takes: `media` of its [[plugin]] in pipeline.toml ([test] pipeline below),
# the one place they are declared.

# Its config: [plugin.config] of its [[plugin]] in pipeline.toml, which the test uses too
# (a [config] table here would replace it in the test alone).

[test]
# A recording (.jsonl, from `rtms-host simulate --record`) or a meeting script (.toml).
# meetings/review.toml is a script to try a plugin on: a 45 s design review, four speakers
# at different levels, every media kind, links and questions in the chat.
meeting = "meetings/sample.jsonl"
# outputs.jsonl and files/ as the plugin should produce them; `plugin test --update` rewrites them.
expected = "expected"
# The guest path of the scratch directory the plugin may write during the test.
dir = "/out"
# The test runs with the media and the [plugin.limits] (memory, call deadline) this
# pipeline gives the plugin, as in production; a trap names the key to change there.
pipeline = "pipeline.toml"
"#,
        lang = lang.as_str(),
        source_key = shape.source_key,
        component = shape.component,
    )
}

/// The folder's `pipeline.toml`, to run the plugin in a host.
fn pipeline(name: &str, shape: &Shape) -> String {
    let plugin_config = if shape.writes_files {
        "[[plugin.dir]]\nhost = \"out\"\nguest = \"/out\"\n\n[plugin.limits]\nmemory_mb = 256\n\n[plugin.config]\ndir = \"/out\"\n"
    } else {
        "[plugin.limits]\nmemory_mb = 256\n"
    };
    format!(
        r#"# Runs {name} in rtms-host. Live against the local simulator, in one command:
#   rtms-host plugin run
# On the sample meeting, with no network:
#   rtms-host plugin build && RUST_LOG=warn,plugin=info rtms-host replay meetings/sample.jsonl --config pipeline.toml
# (RUST_LOG shows the plugin's own log lines beside the host's warnings.)
# Every key is described in examples/pipeline.toml of rtms-host.
version = 1

[runtime]
cache_dir = ".cache"
dead_letter_dir = "out/dead-letter"

[runtime.reload]
watch = false

[[plugin]]
name = "{name}"
component = "{component}"
media = ["transcript"]

{plugin_config}
[[sink]]
type = "stdout"
"#,
        component = shape.component,
    )
}

/// Writes each file under `dir`, creating its folders.
fn write_all(dir: &Path, files: Vec<(&str, String)>) -> Result<()> {
    for (rel, text) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}
