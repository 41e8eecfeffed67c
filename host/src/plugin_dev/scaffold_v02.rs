//! `rtms-host plugin new NAME --lang python|js|c` (contract 0.2, the default for these
//! languages): a plugin folder that builds and passes its test unchanged, and shows the
//! 0.2 capabilities in a few lines each.
//!
//! The plugin counts a meeting's transcript lines and words in session state (`state`: the
//! host keeps the counters, so a reload or a restart mid-meeting goes on counting), and at
//! the end POSTs them to a notes service with one synchronous `wasi:http` call, its key a
//! granted secret, and emits the counts with what the service answered. The HTTP call is
//! in a file of its own (`http_call.py`, `http.js`, `http.c` + `http.h`) to copy into other
//! plugins.
//!
//! Its test serves the notes service from `fakes.jsonl` (see [`super::test_net`]) and
//! grants the secret a test value from `[test.secrets]`.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::contract::Contract;
use super::manifest::{Lang, valid_name};
use super::scaffold::{EXPECTED_LINES, EXPECTED_WORDS, REVIEW};

const SAMPLE: &str = include_str!("templates/sample.jsonl");
const PYTHON_APP: &str = include_str!("templates/v02/app.py");
const PYTHON_HTTP: &str = include_str!("templates/v02/http_call.py");
const JS_PLUGIN: &str = include_str!("templates/v02/plugin.js");
const JS_HTTP: &str = include_str!("templates/v02/http.js");
const C_PLUGIN: &str = include_str!("templates/v02/plugin.c");
const C_HTTP: &str = include_str!("templates/v02/http.c");
const C_HTTP_H: &str = include_str!("templates/v02/http.h");

/// The notes service the skeleton posts to, as its config names it.
pub const NOTES_URL: &str = "https://api.example.com/v1/notes";
/// The secret holding the notes service's key, and its value in the test.
pub const SECRET: (&str, &str) = ("NOTES_API_KEY", "test-key");
/// What the notes service answers in the skeleton's fakes file.
pub const NOTE: &str = r#"{"id":"note-1"}"#;

/// The sources of `lang`: (path in the folder, text), and the `[plugin]` keys naming them.
fn sources(lang: Lang, name: &str) -> Result<(Vec<(&'static str, String)>, &'static str)> {
    let fill = |t: &str| t.replace("{{name}}", name);
    Ok(match lang {
        Lang::Python => (
            vec![
                ("src/app.py", fill(PYTHON_APP)),
                ("src/http_call.py", PYTHON_HTTP.to_owned()),
            ],
            "source = \"src\"\nentry = \"app\"",
        ),
        Lang::Js => (
            vec![
                ("src/plugin.js", fill(JS_PLUGIN)),
                ("src/http.js", JS_HTTP.to_owned()),
            ],
            "source = \"src\"\nentry = \"plugin.js\"",
        ),
        Lang::C => (
            vec![
                ("src/plugin.c", fill(C_PLUGIN)),
                ("src/http.c", C_HTTP.to_owned()),
                ("src/http.h", C_HTTP_H.to_owned()),
            ],
            "source = \"src\"",
        ),
        Lang::Rust => bail!(
            "the Rust skeleton targets contract 0.1; a Rust plugin reaches state, secrets, \
             budgets, WebSockets and HTTP through the rtms-plugin SDK (docs/plugin-guide/rust.md)"
        ),
    })
}

fn manifest(name: &str, lang: Lang, source_keys: &str, component: &str) -> String {
    let (secret, value) = SECRET;
    format!(
        r#"# How `rtms-host plugin build` and `rtms-host plugin test` treat this folder.
# The keys are described in docs/plugin-guide/README.md of rtms-host.

[plugin]
name = "{name}"
lang = "{lang}"
contract = "0.2"
{source_keys}
component = "{component}"
# The kinds it takes: `media` of its [[plugin]] in pipeline.toml ([test] pipeline below),
# the one place they are declared.

# Its config and what it may call: [plugin.config] and [plugin.net] of its [[plugin]] in
# pipeline.toml, which the test uses too (a [config] or [net] table here would replace them
# in the test alone).

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
# The notes service's answers: the test serves them on 127.0.0.1 in its place and fails on
# any request they do not hold. `plugin test --record` rewrites them from the real service.
http = "fakes.jsonl"

# The secrets the plugin is granted in the test, with test values (never the environment's).
[test.secrets]
{secret} = "{value}"
"#,
        lang = lang.as_str()
    )
}

fn pipeline(name: &str, component: &str) -> String {
    let (secret, _) = SECRET;
    format!(
        r#"# Runs {name} in rtms-host. Set your notes service's URL and key first, then:
#   export {secret}=...
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
secrets = ["{secret}"]

[plugin.net]
http = ["https://api.example.com/v1"]

[plugin.limits]
memory_mb = 256

[plugin.config]
notes_url = "{NOTES_URL}"

[[sink]]
type = "stdout"
"#
    )
}

/// The exchange the skeleton's test expects, as a fakes file line.
fn fakes() -> String {
    let (_, value) = SECRET;
    let line = serde_json::json!({
        "request": {
            "method": "POST",
            "url": NOTES_URL,
            "headers": {
                "authorization": format!("Bearer {value}"),
                "content-type": "application/json",
            },
            "body": {"lines": EXPECTED_LINES, "words": EXPECTED_WORDS},
        },
        "response": {
            "status": 201,
            "headers": {"content-type": "application/json"},
            "body": serde_json::from_str::<serde_json::Value>(NOTE).unwrap_or_default(),
        },
    });
    format!("{line}\n")
}

/// The output the skeleton emits for the sample meeting, as `plugin test` keeps it.
pub fn expected_output() -> String {
    let line = serde_json::json!({
        "kind": "words",
        "severity": "info",
        "message": format!("{EXPECTED_LINES} transcript lines, {EXPECTED_WORDS} words (notes service: 201)"),
        "data": {
            "lines": EXPECTED_LINES,
            "words": EXPECTED_WORDS,
            "note": serde_json::from_str::<serde_json::Value>(NOTE).unwrap_or_default(),
        },
    });
    super::harness::normalise_outputs(&line.to_string()).unwrap_or_default()
}

/// Creates the 0.2 plugin folder `dir` for `name` in `lang` (python, js or c).
pub fn create(name: &str, lang: Lang, dir: &Path) -> Result<()> {
    valid_name(name)?;
    let (sources, source_keys) = sources(lang, name)?;
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
    let component = format!("build/{}.wasm", name.replace('-', "_"));
    let mut files: Vec<(&str, String)> = vec![
        (
            "rtms-plugin.toml",
            manifest(name, lang, source_keys, &component),
        ),
        ("pipeline.toml", pipeline(name, &component)),
        ("meetings/sample.jsonl", SAMPLE.to_owned()),
        ("meetings/review.toml", REVIEW.to_owned()),
        ("fakes.jsonl", fakes()),
        ("expected/outputs.jsonl", expected_output()),
        (".gitignore", "/build/\n/out/\n/.cache/\n".to_owned()),
    ];
    files.extend(sources);
    for (rel, text) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Contract::V02.write(&dir.join("wit"))
}
