//! Fuzz targets for pipeline.toml ([`Pipeline::parse`], which `load` calls with the file's
//! text): whatever the operator writes gets a `ConfigError` naming the file, never a panic.
//!
//! Inputs: arbitrary bytes, sequences of TOML-ish tokens, structure-aware edits of valid
//! pipelines (the small samples below and `examples/pipeline.toml`: keys removed, values
//! replaced by values of any type, keys added) and line edits of the example. Properties:
//! nothing panics, every error names the file, and a valid pipeline written back out by the
//! TOML serializer resolves to the same [`Pipeline`]. `FUZZ_CASES` scales the run
//! (docs/fuzzing.md).

#[path = "../../proto/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use std::path::{Path, PathBuf};

use fuzz_support::*;
use proptest::prelude::*;
use rtms_config::{LoadOptions, MapEnv, Pipeline};
use serde_json::Value;

/// Where the samples pretend to live: `noop.wasm` beside it exists.
fn file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/config/fixtures/pipeline.toml")
}

fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipeline.toml");
    std::fs::read_to_string(path).expect("examples/pipeline.toml")
}

fn env() -> MapEnv {
    MapEnv::new()
        .with("ZM_RTMS_CLIENT", "client-id")
        .with("ZM_RTMS_SECRET", "client-secret")
        .with("ZOOM_SECRET_TOKEN", "webhook-secret")
        .with("RTMS_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef")
        .with("A", "client-id")
        .with("B", "client-secret")
        .with("C", "webhook-secret")
}

const OPTIONS: [LoadOptions; 2] = [
    LoadOptions {
        require_secrets: true,
        check_components: true,
    },
    LoadOptions {
        require_secrets: false,
        check_components: false,
    },
];

/// Small valid pipelines touching every section.
const SAMPLES: &[&str] = &[
    "version = 1\n",
    "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\nwebhook_path = \"/hook\"\nmax_body_bytes = 4096\ntimestamp_window_secs = 60\n",
    "version = 1\n[admin]\nenabled = true\nlisten = \"0.0.0.0:9464\"\ntoken_env = \"RTMS_ADMIN_TOKEN\"\nreload_min_interval_ms = 1000\n",
    "version = 1\n[zoom]\nclient_id_env = \"A\"\nclient_secret_env = \"B\"\nwebhook_secret_env = \"C\"\n",
    "version = 1\n[rtms]\nkeepalive_interval_ms = 5000\nkeepalive_timeout_ms = 15000\nmedia = [\"audio\", \"transcript\"]\nsocket_mode = \"split\"\n[rtms.audio]\nsample_rate = 16000\n",
    "version = 1\n[runtime]\nshutdown_grace_ms = 500\n[runtime.reload]\nwatch = false\ndebounce_ms = 50\n",
    "version = 1\n[[plugin]]\nname = \"noop\"\ncomponent = \"noop.wasm\"\nmedia = [\"transcript\"]\n[plugin.queue]\ncapacity = 8\non_full = \"block\"\n[plugin.config]\nmodel = \"x\"\nlimits = { a = 1, b = [1, 2] }\n",
    "version = 1\n[[plugin]]\nname = \"a\"\ncomponent = \"noop.wasm\"\nmedia = [\"audio\", \"event\"]\n[[plugin]]\nname = \"b\"\ncomponent = \"noop.wasm\"\nmedia = [\"chat\"]\n[[sink]]\ntype = \"stdout\"\nplugins = [\"a\"]\n",
];

const KEYS: &[&str] = &[
    "version",
    "server",
    "admin",
    "zoom",
    "rtms",
    "runtime",
    "plugin",
    "sink",
    "listen",
    "enabled",
    "token_env",
    "name",
    "component",
    "media",
    "queue",
    "capacity",
    "on_full",
    "config",
    "type",
    "path",
    "url",
    "plugins",
    "events",
    "reload",
    "watch",
    "restart",
];

/// Parses `text` every way the host does; panics only on a broken property.
fn check(text: &str) {
    let path = file();
    for opts in OPTIONS {
        match Pipeline::parse(text, &path, &env(), opts) {
            Ok(p) => round_trip(text, &p, opts),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("pipeline.toml"),
                    "the error names no file: {msg}"
                );
            }
        }
    }
}

/// A valid pipeline, re-serialized, resolves to the same pipeline. Warnings name a line and
/// column of the text they came from, which re-serializing moves: they are compared without
/// their location.
fn round_trip(text: &str, p: &Pipeline, opts: LoadOptions) {
    let table: toml::Table = text.parse().expect("a valid pipeline is valid TOML");
    let again = toml::to_string(&table).expect("a TOML table serializes");
    match Pipeline::parse(&again, &file(), &env(), opts) {
        Ok(q) => assert_eq!(unplaced(q), unplaced(p.clone()), "{again}"),
        Err(e) => panic!("re-serialized pipeline refused: {e}\n{again}"),
    }
}

/// `p` with each warning's `file:line:column: ` prefix taken off.
fn unplaced(mut p: Pipeline) -> Pipeline {
    for w in &mut p.warnings {
        if let Some((_, rest)) = w.split_once(".toml:")
            && let Some((_, message)) = rest.split_once(": ")
        {
            *w = message.to_owned();
        }
    }
    p
}

/// TOML text for an edited sample, or `None` when the edit made something TOML cannot
/// write (a null, a top level that is not a table).
fn to_toml(v: &Value) -> Option<String> {
    fn strip(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Array(a) => Some(Value::Array(a.iter().filter_map(strip).collect())),
            Value::Object(m) => Some(Value::Object(
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), strip(v)?)))
                    .collect(),
            )),
            other => Some(other.clone()),
        }
    }
    let v = strip(v)?;
    if !v.is_object() {
        return None;
    }
    toml::to_string(&v).ok()
}

fn sample_values() -> Vec<Value> {
    let mut texts: Vec<String> = SAMPLES.iter().map(|s| (*s).to_owned()).collect();
    texts.push(example());
    texts
        .iter()
        .map(|t| {
            let table: toml::Table = t.parse().expect("sample is TOML");
            serde_json::to_value(table).expect("TOML converts to JSON")
        })
        .collect()
}

const TOKENS: &[&str] = &[
    "version",
    " = ",
    "1",
    "2",
    "\n",
    "[",
    "]",
    "[[",
    "]]",
    "plugin",
    "sink",
    "rtms",
    "server",
    "admin",
    ".",
    "\"",
    "'",
    "{",
    "}",
    ",",
    "name",
    "media",
    "[\"audio\"]",
    "-1",
    "1e999",
    "nan",
    "18446744073709551616",
    "true",
    "#",
    "é",
    "\u{0}",
    "queue",
    "capacity",
    "type",
    "http",
    "url",
    "dir",
    "guest",
    "host",
    "config",
    "=",
    "1979-05-27",
    "\"\"\"",
    "0x10",
    "listen",
    "\"0.0.0.0:1\"",
    "token_env",
];

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        check(&text);
        check(&format!("version = 1\n{text}"));
    }

    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..40)) {
        let text: String = tokens.concat();
        check(&text);
        check(&format!("version = 1\n{text}"));
    }

    #[test]
    fn edited_pipelines_never_panic(
        sample in proptest::sample::select(sample_values()),
        edits in proptest::collection::vec(arb_edit(KEYS), 1..4),
    ) {
        if let Some(text) = to_toml(&apply_edits(&sample, &edits)) {
            check(&text);
        }
    }

    #[test]
    fn byte_edited_samples_never_panic(
        sample in proptest::sample::select(SAMPLES),
        edits in proptest::collection::vec(arb_byte_edit(), 1..6),
    ) {
        check(&String::from_utf8_lossy(&apply_byte_edits(sample.as_bytes(), &edits)));
    }

    #[test]
    fn line_edits_of_the_example_never_panic(
        edits in proptest::collection::vec((0u8..6, any::<usize>(), any::<usize>(), 0usize..6), 1..5),
    ) {
        let original = example();
        let mut text: Vec<String> = original.lines().map(str::to_owned).collect();
        for (op, i, j, pick) in edits {
            let i = i % text.len();
            let j = j % text.len();
            match op {
                0 => { text.remove(i); }
                1 => text.swap(i, j),
                2 => { let dup = text[i].clone(); text.insert(i, dup); }
                3 => {
                    let l = &text[i];
                    let cut = l.char_indices().map(|(k, _)| k).nth(j % (l.chars().count() + 1)).unwrap_or(l.len());
                    text[i] = l[..cut].to_owned();
                }
                4 => if let (Some((k, _)), Some((_, v))) = (text[i].split_once('='), text[j].split_once('=')) {
                    text[i] = format!("{k}={v}");
                },
                _ => {
                    let values = ["0", "99999999999999999999", "-5", "\"x\"", "[]", "{}"];
                    if let Some((k, _)) = text[i].split_once('=') {
                        text[i] = format!("{k}= {}", values[pick]);
                    }
                }
            }
        }
        check(&text.join("\n"));
    }
}

#[test]
fn every_sample_is_valid_and_round_trips() {
    // The example's components are not built here: it is checked without them.
    let mut texts: Vec<(String, &[LoadOptions])> = SAMPLES
        .iter()
        .map(|s| ((*s).to_owned(), &OPTIONS[..]))
        .collect();
    texts.push((example(), &OPTIONS[1..]));
    for (s, options) in &texts {
        for &opts in *options {
            match Pipeline::parse(s, &file(), &env(), opts) {
                Ok(p) => round_trip(s, &p, opts),
                Err(e) => panic!("{s}\n{e}"),
            }
        }
    }
}
