//! The plugin author's tools with real toolchains: every language's example plugin is built
//! and run through its meeting with the outputs asserted, every language's scaffold (0.1, and
//! 0.2 for Python, JavaScript and C, whose HTTP call the harness answers from recorded
//! exchanges on 127.0.0.1) builds and passes its own test unchanged, `plugin test` fails with
//! a diff when an output changes and names an HTTP request the recording does not hold, and
//! `plugin test --record` writes a recording that replays, with the secret redacted.
//!
//! The toolchains are installed by `rtms-host plugin build` itself on first use (PyPI, npm)
//! into the toolchain cache, except C's clang-19 and wasi-libc, which are Debian packages
//! (`scripts/plugin-toolchains`). Without them the C tests say so and pass, unless
//! `RTMS_REQUIRE_TOOLCHAINS=1` (set by CI), where a missing toolchain fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use rtms_host::plugin_dev::contract::Contract;
use rtms_host::plugin_dev::harness::{Outcome, TestOptions, run};
use rtms_host::plugin_dev::{Lang, Manifest, compile, scaffold, scaffold_v02, toolchain};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compiled components persist here between runs (an 18 MB Python component takes seconds
/// to compile; its cached artefact loads in milliseconds).
fn compile_cache() -> Option<PathBuf> {
    Some(root().join("target/component-cache"))
}

/// Builds are serialised: two Python builds at once on two cores only slow each other.
static BUILDS: Mutex<()> = Mutex::new(());

/// False (after saying why) when C plugins cannot be built here and CI does not demand it.
fn c_toolchain_present() -> bool {
    match toolchain::clang() {
        Ok(_) => true,
        Err(e) if std::env::var_os("RTMS_REQUIRE_TOOLCHAINS").is_some_and(|v| v == "1") => {
            panic!("{e:#}")
        }
        Err(e) => {
            eprintln!("SKIPPED the C plugin: {e:#}");
            false
        }
    }
}

async fn build_and_test(dir: &Path, update: bool) -> (Manifest, Outcome) {
    let m = Manifest::load(dir).unwrap();
    let mb = m.clone();
    tokio::task::spawn_blocking(move || {
        let _g = BUILDS.lock().unwrap_or_else(|p| p.into_inner());
        compile::build(&mb, true)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("building {}: {e:#}", dir.display()));
    let o = run(
        &m,
        &TestOptions {
            meeting: None,
            update,
            compile_cache: compile_cache(),
            record: false,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("testing {}: {e:#}", dir.display()));
    (m, o)
}

fn assert_passed(m: &Manifest, o: &Outcome) {
    assert!(
        o.passed(),
        "{} failed its test:\n{}{}",
        m.name,
        o.diffs.join(""),
        o.problems.join("\n")
    );
    assert_eq!(o.plugin.traps, 0);
    assert_eq!(o.plugin.errors, 0);
}

fn expected_outputs(m: &Manifest) -> String {
    std::fs::read_to_string(m.test.expected.join("outputs.jsonl")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_talk_time_summarises_the_standup() {
    let (m, o) = build_and_test(&root().join("plugins/talk-time-py"), false).await;
    assert_passed(&m, &o);
    // What the script says: Priya speaks 29.5 s in four turns, 55 words.
    let out = expected_outputs(&m);
    assert!(
        out.contains("\"speaker\":\"Priya Raman\",\"talk_ms\":29500,\"turns\":4,\"words\":55"),
        "{out}"
    );
    let table =
        std::fs::read_to_string(m.test.expected.join("files/talk-time-standup.txt")).unwrap();
    assert!(table.contains("Priya Raman"), "{table}");
    assert_eq!(o.files, 1);
    assert_eq!(o.plugin.delivered, 11, "the 11 transcript segments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_tagger_tags_action_items_questions_and_dates() {
    let (m, o) = build_and_test(&root().join("plugins/tagger-js"), false).await;
    assert_passed(&m, &o);
    let out = expected_outputs(&m);
    for needle in [
        r#""kind":"action-item","severity":"notice","message":"Priya Raman: I'll get you new credentials"#,
        r#""kind":"question","severity":"info","message":"Tomás Ortega (chat): Roadmap link please?""#,
        r#""kind":"date","severity":"info","message":"Jonah Becker: Sorry I'm late."#,
        r#""kind":"tag-summary""#,
    ] {
        assert!(out.contains(needle), "{needle} missing from\n{out}");
    }
    assert_eq!(o.outputs, out.lines().count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_audio_levels_reports_silence_and_clipping() {
    if !c_toolchain_present() {
        return;
    }
    // Its meeting is a script: this also covers the record-then-replay path.
    let (m, o) = build_and_test(&root().join("plugins/audio-levels-c"), false).await;
    assert_passed(&m, &o);
    let out = expected_outputs(&m);
    assert!(
        out.contains(r#""message":"5.0 s without voice (from 4.5 s)""#),
        "{out}"
    );
    assert!(out.contains(r#""kind":"clipping""#), "{out}");
    // 2.5 s + 1.8 s + 3.0 s of speech in 20 ms frames.
    assert_eq!(o.plugin.delivered, 365);
}

/// A scaffold in a fresh folder, built and tested unchanged.
async fn scaffold_passes(lang: Lang) {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join(format!("hello-{}", lang.as_str()));
    scaffold::create(&format!("hello-{}", lang.as_str()), lang, &plugin).unwrap();
    if lang == Lang::Rust {
        // cargo's output persists between runs, so only the first run compiles wit-bindgen.
        let shared = root().join("target/scaffold-rust-target");
        std::fs::create_dir_all(&shared).unwrap();
        std::os::unix::fs::symlink(&shared, plugin.join("target")).unwrap();
    }
    let (m, o) = build_and_test(&plugin, false).await;
    assert_passed(&m, &o);
    let words = format!(
        "{} transcript lines, {} words",
        scaffold::EXPECTED_LINES,
        scaffold::EXPECTED_WORDS
    );
    assert!(expected_outputs(&m).contains(&words));
    // JavaScript, which has no files, emits each line; the others write it to a file named
    // after the stream.
    let lines = scaffold::sample_lines();
    assert_eq!(lines.len() as u64, scaffold::EXPECTED_LINES);
    if lang == Lang::Js {
        assert_eq!(o.outputs, lines.len() + 1);
        assert!(expected_outputs(&m).contains(lines[0].trim_end()));
    } else {
        assert_eq!(o.outputs, 1);
        assert_eq!(o.files, 1);
        let written = std::fs::read_to_string(plugin.join(scaffold::SAMPLE_FILE)).unwrap();
        assert_eq!(written, lines.concat());
    }
    for f in [
        "rtms-plugin.toml",
        "pipeline.toml",
        "wit/plugin.wit",
        ".gitignore",
    ] {
        assert!(plugin.join(f).is_file(), "the scaffold has {f}");
    }
}

/// Every skeleton carries the design review of examples/meetings as `meetings/review.toml`
/// (an author outside this repository has no examples/), a script that parses.
#[test]
fn every_skeleton_carries_the_review_meeting() {
    let review = std::fs::read_to_string(root().join("examples/meetings/review.toml")).unwrap();
    for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::C] {
        for v02 in [false, true] {
            if v02 && lang == Lang::Rust {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let plugin = dir.path().join("p");
            if v02 {
                scaffold_v02::create("p", lang, &plugin).unwrap();
            } else {
                scaffold::create("p", lang, &plugin).unwrap();
            }
            let copy = plugin.join("meetings/review.toml");
            assert_eq!(std::fs::read_to_string(&copy).unwrap(), review, "{lang:?}");
            rtms_host::plugin_dev::script::check(&copy).unwrap();
            let manifest = std::fs::read_to_string(plugin.join("rtms-plugin.toml")).unwrap();
            assert!(manifest.contains("meetings/review.toml"), "{manifest}");
        }
    }
}

/// The C skeleton pointed at its `meetings/review.toml` counts what the review says: eight
/// transcript lines, 102 words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skeleton_tried_on_the_review_meeting_counts_it() {
    if !c_toolchain_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("review-c");
    scaffold::create("review-c", Lang::C, &plugin).unwrap();
    let manifest = plugin.join("rtms-plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "meeting = \"meetings/sample.jsonl\"",
        "meeting = \"meetings/review.toml\"",
    );
    std::fs::write(&manifest, text).unwrap();
    let (m, o) = build_and_test(&plugin, true).await;
    assert_eq!(o.plugin.traps + o.plugin.errors, 0, "{o:?}");
    assert_eq!(o.plugin.delivered, 8);
    let out = expected_outputs(&m);
    assert!(out.contains("8 transcript lines, 102 words"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_scaffold_builds_and_passes_its_test() {
    scaffold_passes(Lang::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_scaffold_builds_and_passes_its_test() {
    scaffold_passes(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_scaffold_builds_and_passes_its_test() {
    scaffold_passes(Lang::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_scaffold_builds_and_passes_its_test() {
    if c_toolchain_present() {
        scaffold_passes(Lang::C).await;
    }
}

/// A 0.2 skeleton in a fresh folder, built and tested unchanged: it counts in session state,
/// posts the counts to the notes service (the harness serves `fakes.jsonl` on 127.0.0.1 in
/// its place) with the secret's test value, and emits the service's answer.
async fn v02_scaffold_passes(lang: Lang) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("hello2-{}", lang.as_str());
    let plugin = dir.path().join(&name);
    scaffold_v02::create(&name, lang, &plugin).unwrap();
    let (m, o) = build_and_test(&plugin, false).await;
    assert_passed(&m, &o);
    assert_eq!(m.contract, Contract::V02);
    let out = expected_outputs(&m);
    assert_eq!(out, scaffold_v02::expected_output());
    // The answer of the fake came back through the plugin: the test asserts what it read.
    assert!(out.contains(r#""note":{"id":"note-1"}"#), "{out}");
    assert_eq!(o.outputs, 1);
    for f in [
        "wit/plugin.wit",
        "wit/deps/rtms-plugin.wit",
        "wit/deps/http.wit",
        "fakes.jsonl",
    ] {
        assert!(plugin.join(f).is_file(), "the skeleton has {f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_v02_scaffold_calls_the_fake_service_and_passes_its_test() {
    v02_scaffold_passes(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_v02_scaffold_calls_the_fake_service_and_passes_its_test() {
    v02_scaffold_passes(Lang::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_v02_scaffold_calls_the_fake_service_and_passes_its_test() {
    if c_toolchain_present() {
        v02_scaffold_passes(Lang::C).await;
    }
}

/// A request the fakes file does not hold fails the test, naming the request and why the
/// nearest exchange does not match; the exchange it held is reported unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unexpected_http_request_fails_plugin_test_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // The Python skeleton's test uses the same name: same sources, one build and one compile.
    let plugin = dir.path().join("hello2-python");
    scaffold_v02::create("hello2-python", Lang::Python, &plugin).unwrap();
    let fakes = plugin.join("fakes.jsonl");
    let text = std::fs::read_to_string(&fakes).unwrap();
    std::fs::write(&fakes, text.replace("Bearer test-key", "Bearer other-key")).unwrap();
    let (_, o) = build_and_test(&plugin, false).await;
    assert!(!o.passed());
    let problems = o.problems.join("\n");
    assert!(
        problems.contains(
            "unexpected HTTP request POST https://api.example.com/v1/notes: no unused exchange \
             matches (the nearest, line 1: header authorization is \"Bearer test-key\", not \
             \"Bearer other-key\")"
        ),
        "{problems}"
    );
    assert!(
        problems.contains("record it with `rtms-host plugin test --record`"),
        "{problems}"
    );
    assert!(
        problems.contains("the exchange on line 1 of") && problems.contains("was never requested"),
        "{problems}"
    );
    // The plugin saw the fake's 404, returned an error, and emitted nothing.
    assert_eq!(o.outputs, 0);
}

/// `plugin test --record`: the plugin's request goes to the real service (here one on
/// 127.0.0.1) with the secret from the environment, and the recording holds the exchange with
/// the secret's test value in its place; replaying it afterwards passes with no environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_writes_the_exchanges_with_the_secret_redacted_and_they_replay() {
    use rtms_fakes::recorded::Exchange;
    let service_origin = "http://notes.test".to_string();
    let answer: Exchange = serde_json::from_str(
        r#"{"request":{"method":"POST","url":"http://notes.test/v1/notes","headers":{"authorization":"Bearer real-secret-value"}},
            "response":{"status":201,"headers":{"content-type":"application/json"},"body":{"id":"note-7"}}}"#,
    )
    .unwrap();
    let service =
        rtms_fakes::HttpFakes::replay(std::slice::from_ref(&service_origin), vec![answer])
            .await
            .unwrap();
    let base = service.base_url(&service_origin).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("hello2-python");
    scaffold_v02::create("hello2-python", Lang::Python, &plugin).unwrap();
    // The service's URL and grant are in the pipeline the manifest's [test] pipeline names.
    let pipeline = plugin.join("pipeline.toml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    assert!(text.contains("https://api.example.com"), "{text}");
    std::fs::write(&pipeline, text.replace("https://api.example.com", &base)).unwrap();
    std::fs::remove_file(plugin.join("fakes.jsonl")).unwrap();

    let cli = |args: &'static [&'static str], secret: Option<&'static str>| {
        let plugin = plugin.clone();
        tokio::task::spawn_blocking(move || {
            let _g = BUILDS.lock().unwrap_or_else(|p| p.into_inner());
            let mut c = Command::new(env!("CARGO_BIN_EXE_rtms-host"));
            c.args(["plugin", "test"]).args(args).current_dir(&plugin);
            c.env_remove("NOTES_API_KEY");
            if let Some(v) = secret {
                c.env("NOTES_API_KEY", v);
            }
            c.output().unwrap()
        })
    };
    let out = cli(&["--record", "--update"], Some("real-secret-value"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("recorded 1 HTTP exchange(s)"), "{stdout}");
    // The service got the real key (its one exchange demands it) and nothing else.
    assert!(service.report().is_clean(), "{:?}", service.report());

    let recorded = std::fs::read_to_string(plugin.join("fakes.jsonl")).unwrap();
    assert!(
        recorded.contains(&format!(r#""url":"{base}/v1/notes""#)),
        "{recorded}"
    );
    assert!(
        recorded.contains(r#""authorization":"Bearer test-key""#),
        "{recorded}"
    );
    assert!(recorded.contains(r#""body":{"id":"note-7"}"#), "{recorded}");
    assert!(expected_outputs(&Manifest::load(&plugin).unwrap()).contains("note-7"));
    // No file of the folder holds the real key.
    let mut files = Vec::new();
    walk(&plugin, &mut files);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(17).any(|w| w == b"real-secret-value"),
            "{} holds the secret",
            f.display()
        );
    }

    // Replayed: passes without reaching the service, with the test value even though the
    // environment holds the real key (only --record reads it).
    drop(service);
    let out = cli(&["--no-build"], Some("real-secret-value"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("test passed"), "{stdout}");
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The command line: a plugin whose output changed fails with a unified diff naming the
/// file, `--update` takes the change, and the test passes again.
#[test]
fn plugin_test_fails_with_a_diff_when_an_output_changes() {
    // The JavaScript scaffold needs no Debian package; its build is cached after the first run.
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("changed");
    let bin = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rtms-host"));
        c.env("RTMS_LOG_FORMAT", "text").current_dir(&plugin);
        c
    };
    let out = Command::new(env!("CARGO_BIN_EXE_rtms-host"))
        .args(["plugin", "new", "changed", "--lang", "js", "--dir"])
        .arg(&plugin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let src = plugin.join("src/plugin.js");
    let js = std::fs::read_to_string(&src).unwrap();
    std::fs::write(
        &src,
        js.replace("transcript lines, ", "lines of transcript, "),
    )
    .unwrap();

    let out = {
        let _g = BUILDS.lock().unwrap_or_else(|p| p.into_inner());
        bin().args(["plugin", "test"]).output().unwrap()
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a changed output must fail: {stdout}"
    );
    assert!(stdout.contains("--- expected/outputs.jsonl"), "{stdout}");
    assert!(stdout.contains("+++ actual/outputs.jsonl"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "-{{\"kind\":\"words\",\"severity\":\"info\",\"message\":\"{} transcript lines,",
            scaffold::EXPECTED_LINES
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "+{{\"kind\":\"words\",\"severity\":\"info\",\"message\":\"{} lines of transcript,",
            scaffold::EXPECTED_LINES
        )),
        "{stdout}"
    );
    assert!(stdout.contains("test FAILED"), "{stdout}");

    let out = bin().args(["plugin", "test", "--update"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = bin()
        .args(["plugin", "test", "--no-build"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("test passed"), "{stdout}");
}

/// A file the plugin writes is compared too: an unexpected one is shown as new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_expected_file_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    // The Python skeleton's test uses the same name: same sources, one build and one compile.
    let plugin = dir.path().join("hello-python");
    scaffold::create("hello-python", Lang::Python, &plugin).unwrap();
    std::fs::remove_file(plugin.join(scaffold::SAMPLE_FILE)).unwrap();
    let (_, o) = build_and_test(&plugin, false).await;
    assert!(!o.passed());
    assert_eq!(o.diffs.len(), 1, "{:?}", o.diffs);
    assert!(
        o.diffs[0].contains("--- /dev/null (not expected)"),
        "{}",
        o.diffs[0]
    );
    assert!(
        o.diffs[0].contains("+++ actual/files/words-sample.txt"),
        "{}",
        o.diffs[0]
    );
    let first = scaffold::sample_lines()[0].clone();
    assert!(o.diffs[0].contains(&format!("+{first}")), "{}", o.diffs[0]);
}

/// examples/pipeline-languages.toml runs the three examples together over the sample
/// recording (components built by `plugin build`, outputs into a scratch folder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_languages_example_pipeline_runs_all_three() {
    let c = c_toolchain_present();
    let mut folders = vec!["talk-time-py", "tagger-js"];
    if c {
        folders.push("audio-levels-c");
    }
    for folder in &folders {
        let m = Manifest::load(&root().join("plugins").join(folder)).unwrap();
        tokio::task::spawn_blocking(move || {
            let _g = BUILDS.lock().unwrap_or_else(|p| p.into_inner());
            compile::build(&m, true)
        })
        .await
        .unwrap()
        .unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(root().join("examples/pipeline-languages.toml")).unwrap();
    let mut text = example
        .replace("../plugins/", &format!("{}/plugins/", root().display()))
        .replace("../out", &out.path().display().to_string())
        .replace(
            "../.cache/rtms-host",
            &root().join("target/component-cache").display().to_string(),
        );
    if !c {
        let at = text.find("# C: audio levels").unwrap();
        let end = text.find("[[sink]]").unwrap();
        text.replace_range(at..end, "");
    }
    let path = out.path().join("pipeline.toml");
    std::fs::write(&path, &text).unwrap();
    let pipeline = rtms_config::Pipeline::parse(
        &text,
        &path,
        &rtms_config::MapEnv::new(),
        rtms_config::LoadOptions::validate_only(),
    )
    .unwrap();
    let s = rtms_host::service::replay::replay_file(
        &pipeline,
        &rtms_host::service::replay::ReplayArgs {
            file: root().join("examples/recordings/standup.jsonl"),
            config: path.clone(),
            realtime: false,
            product: rtms_proto::Product::Meeting,
            meeting_id: None,
            stream_id: None,
        },
    )
    .await
    .unwrap();
    for (name, p) in &s.metrics.plugins {
        assert_eq!((p.traps, p.errors, p.dropped), (0, 0, 0), "{name}");
        assert!(p.delivered > 0, "{name}");
    }
    let lines = std::fs::read_to_string(out.path().join("language-plugins.jsonl")).unwrap();
    let count = |plugin: &str, kind: &str| {
        lines
            .lines()
            .filter(|l| {
                l.contains(&format!("\"plugin\":\"{plugin}\""))
                    && l.contains(&format!("\"kind\":\"{kind}\""))
            })
            .count()
    };
    assert_eq!(count("talk-time", "talk-time"), 1, "{lines}");
    assert_eq!(count("tagger", "risk"), 8, "{lines}");
    assert_eq!(count("tagger", "tag-summary"), 1, "{lines}");
    if c {
        assert_eq!(count("audio-levels", "audio-levels"), 1, "{lines}");
    }
    let table = std::fs::read_to_string(out.path().join("talk-time-standup.txt")).unwrap();
    assert!(table.starts_with("speaker"), "{table}");
}

/// A folder whose manifest names a prebuilt fixture component, tested over the standup
/// recording; `extra` is appended to the manifest.
fn fixture_folder(fixture: &str, config: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "[plugin]\nname = \"{fixture}\"\nlang = \"rust\"\ncomponent = \"{}\"\n\
         media = [\"transcript\", \"audio\"]\n\n[config]\n{config}\n\n[test]\nmeeting = \"{}\"\n{extra}",
        crate::util::component(fixture).display(),
        root().join("examples/recordings/standup.jsonl").display(),
    );
    std::fs::write(dir.path().join("rtms-plugin.toml"), manifest).unwrap();
    dir
}

async fn test_fixture(dir: &Path) -> Outcome {
    let m = Manifest::load(dir).unwrap();
    let opts = TestOptions {
        compile_cache: compile_cache(),
        ..TestOptions::default()
    };
    run(&m, &opts).await.unwrap()
}

/// `plugin test` runs with the plugin's production limits: the defaults when the manifest
/// sets none (64 MiB), its `[limits]` when it does, and the trap names the manifest's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_allocating_past_its_limit_fails_the_test_naming_the_manifest_key() {
    let dir = fixture_folder("hog", "chunk_kib = 4096", "");
    let o = test_fixture(dir.path()).await;
    assert!(!o.passed());
    assert_eq!(o.plugin.traps, 1, "stopped at its first trap");
    let trap = o.trap.clone().unwrap();
    let key = format!(
        "[limits] in {} (as [plugin.limits] in pipeline.toml): memory_mb = 64",
        dir.path().join("rtms-plugin.toml").display()
    );
    assert!(trap.contains(&key), "{trap}");
    assert!(trap.contains("out of memory"), "{trap}");
    assert!(o.diffs.is_empty() && o.problems.is_empty(), "{o:?}");

    let dir = fixture_folder("hog", "chunk_kib = 4096", "\n[limits]\nmemory_mb = 32\n");
    let o = test_fixture(dir.path()).await;
    let trap = o.trap.unwrap();
    assert!(trap.contains("memory_mb = 32"), "{trap}");
}

/// The old `[test]` limit keys are refused with the key to use instead.
#[test]
fn test_limit_keys_are_refused_naming_the_limits_table() {
    let dir = fixture_folder("noop", "", "memory_mb = 256\n");
    let e = Manifest::load(dir.path()).unwrap_err();
    assert!(
        format!("{e:#}").contains("move the key to [limits] memory_mb"),
        "{e:#}"
    );
}

/// An endless loop fails `plugin test` within one call deadline (1 s by default) and the
/// start-up, and the report says it trapped, never to accept the outputs with `--update`.
#[test]
fn an_endless_loop_fails_plugin_test_within_seconds_without_suggesting_update() {
    let dir = fixture_folder("spin", "", "");
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rtms-host"))
        .args(["plugin", "test", "--no-build", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "took {took:?}\n{stdout}"
    );
    assert!(stdout.contains("call deadline exceeded"), "{stdout}");
    assert!(stdout.contains("call_timeout_ms = 1000"), "{stdout}");
    assert!(
        stdout.contains("test FAILED: the plugin trapped 1 time(s)"),
        "{stdout}"
    );
    assert!(!stdout.contains("--update"), "{stdout}");
}

/// `plugin test` shows the plugin's own log lines (the skeleton logs `session … started` at
/// info), and `--quiet` hides them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_test_shows_the_plugins_log_lines_unless_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("hello-rust");
    scaffold::create("hello-rust", Lang::Rust, &plugin).unwrap();
    let shared = root().join("target/scaffold-rust-target");
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, plugin.join("target")).unwrap();
    let (m, o) = build_and_test(&plugin, false).await;
    assert_passed(&m, &o);
    let cli = |quiet: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rtms-host"));
        c.args(["plugin", "test", "--no-build"])
            .current_dir(&plugin)
            .env_remove("RUST_LOG");
        if quiet {
            c.arg("--quiet");
        }
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("hello-rust: test passed"), "{stdout}");
        stderr
    };
    let shown = cli(false);
    assert!(shown.contains("session sample started"), "{shown}");
    assert!(shown.contains("hello-rust"), "{shown}");
    let hidden = cli(true);
    assert!(!hidden.contains("session sample started"), "{hidden}");
}

/// A JavaScript `Error` or `TypeError` thrown in a call reaches the host as its message and
/// the plugin.js line that threw (the build wraps the handler), and fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_exceptions_report_their_message_and_plugin_js_line() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("hello-js");
    scaffold::create("hello-js", Lang::Js, &plugin).unwrap();
    let source = plugin.join("src/plugin.js");
    let text = std::fs::read_to_string(&source).unwrap();
    let text = text
        .replace(
            "  onFrames(session, frames) {\n",
            "  onFrames(session, frames) {\n    if (frames.length > 0) throw new Error(`bad batch of ${frames.length}`);\n",
        )
        .replace(
            "  onSessionEnd(session, reason) {\n",
            "  onSessionEnd(session, reason) {\n    const missing = undefined; missing.total += 1;\n",
        );
    // 1-based lines of the two statements that throw.
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let (frames_line, end_line) = (line_of("bad batch"), line_of("missing.total"));
    std::fs::write(&source, &text).unwrap();
    let m = Manifest::load(&plugin).unwrap();
    tokio::task::spawn_blocking(move || {
        let _g = BUILDS.lock().unwrap_or_else(|p| p.into_inner());
        compile::build(&m, true)
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        !plugin.join("build/rtms-entry.js").exists(),
        "the wrapper is removed after the build"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rtms-host"))
        .args(["plugin", "test", "--no-build", "-q"])
        .current_dir(&plugin)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).replace("\u{1b}[", "");
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("the plugin returned an error"), "{stdout}");
    assert!(!stdout.contains("--update"), "{stdout}");
    let thrown = format!(" (at onFrames@src/plugin.js:{frames_line}:");
    assert!(stderr.contains("Error: bad batch of "), "{stderr}");
    assert!(stderr.contains(&thrown), "{thrown} missing from\n{stderr}");
    let type_error = format!(
        "TypeError: can't access property \"total\", missing is undefined (at onSessionEnd@src/plugin.js:{end_line}:"
    );
    assert!(
        stderr.contains(&type_error),
        "{type_error} missing from\n{stderr}"
    );
    assert!(!stderr.contains("expected a string"), "{stderr}");
}

/// `[test] pipeline` gives the test that pipeline's `[plugin.limits]` for the plugin, and the
/// trap names the key in that file; `[limits]` beside it is refused (one place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_pipeline_gives_the_limits_and_the_trap_names_its_key() {
    let dir = fixture_folder("hog", "chunk_kib = 4096", "pipeline = \"pipeline.toml\"\n");
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        "version = 1\n\n[[plugin]]\nname = \"other\"\ncomponent = \"x.wasm\"\nmedia = [\"audio\"]\n\n\
         [[plugin]]\nname = \"hog\"\ncomponent = \"x.wasm\"\nmedia = [\"transcript\", \"audio\"]\n\n\
         [plugin.limits]\nmemory_mb = 24\n",
    )
    .unwrap();
    let o = test_fixture(dir.path()).await;
    let trap = o.trap.unwrap();
    let key = format!("[plugin.limits] in {}: memory_mb = 24", pipeline.display());
    assert!(trap.contains(&key), "{trap}");

    let manifest = dir.path().join("rtms-plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}\n[limits]\nmemory_mb = 32\n")).unwrap();
    let e = Manifest::load(dir.path()).unwrap_err();
    assert!(
        format!("{e:#}").contains("declare the limits in one place"),
        "{e:#}"
    );
}

/// A plugin that cannot start (its `on-session-start` loops past the deadline) fails the
/// test as a failed start within seconds, not as outputs to accept. (One whose `init` fails
/// is refused before the run, by the pipeline's trial `init`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_cannot_start_fails_the_test_as_such() {
    let dir = fixture_folder("spin", "in = \"on-session-start\"", "");
    let started = std::time::Instant::now();
    let o = test_fixture(dir.path()).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(!o.passed());
    let trap = o.trap.unwrap();
    assert!(trap.contains("failed to start"), "{trap}");
    assert!(o.diffs.is_empty(), "{:?}", o.diffs);
}

/// A short meeting whose frames interleave at equal times: overlapping speakers, a joiner,
/// active-speaker changes, chat at the moment a transcript line ends.
const BUSY_SCRIPT: &str = r#"
[meeting]
seed = 11
duration = 4.0

[[participant]]
name = "Ana Souza"

[[participant]]
name = "Kofi Mensah"

[[participant]]
name = "Lena Fischer"
join = 1.0

[[utterance]]
speaker = "Ana Souza"
start = 0.2
duration = 1.3
text = "Shall we start with the numbers?"

[[utterance]]
speaker = "Kofi Mensah"
start = 1.0
duration = 1.0
text = "Yes, the deck is at https://example.com/deck"

[[utterance]]
speaker = "Lena Fischer"
start = 2.0
duration = 1.5
text = "Can I add one thing first?"

[[chat]]
at = 2.0
from = "Lena Fischer"
text = "Who owns the budget?"

[[event]]
at = 1.0
kind = "active_speaker"
user = "Kofi Mensah"
"#;

/// The frames of a recording as `replay` sees them: every line that is a frame, in order.
fn frame_lines(recording: &str) -> Vec<String> {
    recording
        .lines()
        .filter(|l| {
            matches!(
                rtms_client::decode(
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["msg"]
                        .to_string()
                        .as_bytes()
                ),
                Ok(rtms_client::Decoded::Frame(_))
            )
        })
        .map(str::to_owned)
        .collect()
}

/// The speakers the audio frames of a recording name (`user_name`), in order of appearance.
fn audio_speakers(recording: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for l in frame_lines(recording) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        if v["msg"]["msg_type"] == 14 {
            let name = v["msg"]["content"]["user_name"]
                .as_str()
                .unwrap()
                .to_owned();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// A meeting script is played as the plugin's pipeline asks Zoom for it: with `[rtms.audio]
/// per_speaker = true` there, every audio frame names its speaker; without, audio is mixed
/// and names nobody, as Zoom sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_is_played_as_the_pipeline_asks_zoom() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("busy.toml");
    std::fs::write(&script, BUSY_SCRIPT).unwrap();
    let media = vec!["audio".to_owned()];
    let mixed = dir.path().join("mixed.jsonl");
    rtms_host::plugin_dev::script::record(&script, &media, &toml::Table::new(), &mixed)
        .await
        .unwrap();
    assert_eq!(
        audio_speakers(&std::fs::read_to_string(&mixed).unwrap()),
        [""]
    );
    let zoom: toml::Table = toml::from_str("audio = { per_speaker = true }").unwrap();
    let each = dir.path().join("per-speaker.jsonl");
    rtms_host::plugin_dev::script::record(&script, &media, &zoom, &each)
        .await
        .unwrap();
    assert_eq!(
        audio_speakers(&std::fs::read_to_string(&each).unwrap()),
        ["Ana Souza", "Kofi Mensah", "Lena Fischer"]
    );
}

/// Ten plays of the same script record the same frames, byte for byte, in the same order
/// (timestamps on the script's fixed clock, events and media interleaved by script time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_records_the_same_frames_on_every_play() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("busy.toml");
    std::fs::write(&script, BUSY_SCRIPT).unwrap();
    let media: Vec<String> = ["audio", "transcript", "chat", "event"]
        .map(String::from)
        .to_vec();
    let mut first: Option<Vec<String>> = None;
    for run in 0..10 {
        let rec = dir.path().join(format!("busy-{run}.jsonl"));
        rtms_host::plugin_dev::script::record(&script, &media, &toml::Table::new(), &rec)
            .await
            .unwrap();
        let frames = frame_lines(&std::fs::read_to_string(&rec).unwrap());
        match &first {
            None => {
                // Audio, transcript, chat and events all came, in the script's order.
                let kinds = |needle: &str| frames.iter().filter(|l| l.contains(needle)).count();
                assert_eq!(kinds("\"msg_type\":17"), 3, "{frames:#?}");
                assert_eq!(kinds("\"msg_type\":18"), 1);
                assert!(kinds("\"msg_type\":6") >= 3, "joins and the speaker change");
                assert!(kinds("\"msg_type\":14") > 100);
                let at: Vec<u64> = frames
                    .iter()
                    .map(|l| {
                        serde_json::from_str::<serde_json::Value>(l).unwrap()["at_ms"]
                            .as_u64()
                            .unwrap()
                    })
                    .collect();
                assert!(at.windows(2).all(|w| w[0] <= w[1]), "in script time");
                first = Some(frames);
            }
            Some(f) => {
                assert_eq!(f.len(), frames.len(), "run {run}");
                for (i, (a, b)) in f.iter().zip(&frames).enumerate() {
                    assert_eq!(a, b, "run {run}, frame {i}");
                }
            }
        }
    }
}

/// A skeleton in `lang` tested over [`BUSY_SCRIPT`] ten times, the script played afresh
/// each time: the first run records what it produced, and the nine others produce the same
/// bytes (the sequence numbers of its lines count the audio, chat and events around them).
async fn ten_runs_agree(lang: Lang) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("hello-{}", lang.as_str());
    let plugin = dir.path().join(&name);
    scaffold::create(&name, lang, &plugin).unwrap();
    if lang == Lang::Rust {
        let shared = root().join("target/scaffold-rust-target");
        std::fs::create_dir_all(&shared).unwrap();
        std::os::unix::fs::symlink(&shared, plugin.join("target")).unwrap();
    }
    std::fs::write(plugin.join("meetings/busy.toml"), BUSY_SCRIPT).unwrap();
    let edit = |file: &str, from: &str, to: &str| {
        let p = plugin.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{from} in {text}");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    };
    edit(
        "pipeline.toml",
        r#"media = ["transcript"]"#,
        r#"media = ["transcript", "audio", "chat", "event"]"#,
    );
    edit(
        "rtms-plugin.toml",
        "meetings/sample.jsonl",
        "meetings/busy.toml",
    );
    let (m, o) = build_and_test(&plugin, true).await;
    assert!(o.updated && o.trap.is_none(), "{o:?}");
    let recorded = if lang == Lang::Js {
        expected_outputs(&m)
    } else {
        std::fs::read_to_string(m.test.expected.join("files/words-busy.txt")).unwrap()
    };
    // Three lines, numbered among the meeting's 200-odd frames.
    assert_eq!(
        recorded.matches(" words").count(),
        3 + usize::from(lang == Lang::Js),
        "{recorded}"
    );
    assert!(recorded.contains("Lena Fischer: 6 words"), "{recorded}");
    for run in 1..10 {
        let o = run_test(&m).await;
        assert!(
            o.passed(),
            "run {run} differs:\n{}{}",
            o.diffs.join(""),
            o.problems.join("\n")
        );
    }
}

async fn run_test(m: &Manifest) -> Outcome {
    let opts = TestOptions {
        compile_cache: compile_cache(),
        ..TestOptions::default()
    };
    run(m, &opts).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_scripted_tests_give_the_same_outputs_ten_times() {
    ten_runs_agree(Lang::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_scripted_tests_give_the_same_outputs_ten_times() {
    ten_runs_agree(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_scripted_tests_give_the_same_outputs_ten_times() {
    ten_runs_agree(Lang::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_scripted_tests_give_the_same_outputs_ten_times() {
    if c_toolchain_present() {
        ten_runs_agree(Lang::C).await;
    }
}

/// `plugin run` on a fresh skeleton, in one command: the simulator plays the built-in
/// stand-up to a live host on 127.0.0.1, the plugin's log line and its output are shown,
/// and its file and outputs are in out/.
#[test]
fn plugin_run_plays_a_meeting_to_the_skeleton_live() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("hello-rust");
    scaffold::create("hello-rust", Lang::Rust, &plugin).unwrap();
    let shared = root().join("target/scaffold-rust-target");
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, plugin.join("target")).unwrap();
    let out = {
        let _g = BUILDS.lock().unwrap_or_else(|p| p.into_inner());
        Command::new(env!("CARGO_BIN_EXE_rtms-host"))
            .args(["plugin", "run", "--pace", "fast"])
            .current_dir(&plugin)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("session standup started"), "{stderr}");
    let words = format!("hello-rust words: 11 transcript lines, {} words", 136);
    assert!(stdout.contains(&words), "{stdout}");
    assert!(stdout.contains("meeting ended (stop_reason 6)"), "{stdout}");
    let outputs = std::fs::read_to_string(plugin.join("out/outputs.jsonl")).unwrap();
    assert_eq!(outputs.lines().count(), 1, "{outputs}");
    let lines = std::fs::read_to_string(plugin.join("out/files/words-standup.txt")).unwrap();
    assert_eq!(lines.lines().count(), 11, "{lines}");
    assert!(lines.contains(": ") && lines.starts_with('#'), "{lines}");
}

/// A host that refuses the started webhook: the simulator keeps the host's answer, which
/// names the key to set, and the meeting gives up at once (stop_reason 11) instead of
/// waiting for a client until its connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_webhook_ends_the_meeting_at_once_with_the_hosts_answer() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nenabled = false\n\
         [rtms]\nmedia = [\"transcript\"]\n[runtime]\ndead_letter_dir = \"{}\"\n\
         [runtime.reload]\nwatch = false\n",
        dir.path().join("dead").display()
    );
    let path = dir.path().join("pipeline.toml");
    let env = rtms_config::MapEnv::new()
        .with("ZM_RTMS_CLIENT", "c")
        .with("ZM_RTMS_SECRET", "s")
        .with("ZOOM_SECRET_TOKEN", "w");
    let pipeline =
        rtms_config::Pipeline::parse(&text, &path, &env, rtms_config::LoadOptions::default())
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let svc = rtms_host::service::Service::start(
        pipeline,
        Box::new(env),
        listener,
        rtms_host::service::StartOptions {
            watch: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let sim = rtms_sim::Simulator::start(rtms_sim::SimConfig {
        client_id: "c".into(),
        client_secret: "s".into(),
        webhook_secret: "w".into(),
        tls: false,
        ..rtms_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let script = rtms_sim::MeetingScript::from_toml_str(BUSY_SCRIPT).unwrap();
    let handle = sim
        .start_meeting(
            script,
            rtms_sim::MeetingOptions {
                webhook_url: Some(format!("http://{}/webhook", svc.addr())),
                ..Default::default()
            },
        )
        .unwrap();
    // The connect timeout is 120 s: ending within 10 s is the refusal's doing.
    let ledger = tokio::time::timeout(std::time::Duration::from_secs(10), handle.finished())
        .await
        .expect("the meeting gives up at once");
    assert_eq!(ledger.stop_reason, Some(11));
    let refused = &ledger.webhooks[0];
    let error = refused.error.as_deref().unwrap_or_default();
    assert!(
        refused.status.is_some_and(|s| (400..500).contains(&s)),
        "{refused:?}"
    );
    assert!(error.contains("allow_insecure_ws"), "{error}");
    svc.shutdown().await;
}

/// A bare C crash (`__builtin_trap()`, no message of its own) fails the test naming the
/// function and the source line, from the DWARF a debug build keeps (paths relative to the
/// plugin folder); a release build keeps the function names alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_crash_reports_its_function_and_line() {
    if !c_toolchain_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("crash-c");
    scaffold::create("crash-c", Lang::C, &plugin).unwrap();
    let source = plugin.join("src/plugin.c");
    let text = std::fs::read_to_string(&source)
        .unwrap()
        .replace(
            "bool exports_rtms_plugin_handler_on_frames(",
            "__attribute__((noinline)) static void check_line(unsigned long long n) {\n  if (n > 5) __builtin_trap();\n}\n\nbool exports_rtms_plugin_handler_on_frames(",
        )
        .replace("    lines++;\n", "    check_line(n);\n    lines++;\n");
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let (trap_line, call_line) = (line_of("__builtin_trap()"), line_of("check_line(n);"));
    std::fs::write(&source, &text).unwrap();
    let (_, o) = build_and_test(&plugin, false).await;
    let trap = o.trap.expect("it traps");
    let at = format!(
        "wasm `unreachable` instruction executed, at check_line (src/plugin.c:{trap_line}:"
    );
    assert!(trap.contains(&at), "{at} missing from {trap}");
    let caller =
        format!("called from exports_rtms_plugin_handler_on_frames (src/plugin.c:{call_line}:");
    assert!(trap.contains(&caller), "{caller} missing from {trap}");

    let m = Manifest::load(&plugin).unwrap();
    let mb = m.clone();
    tokio::task::spawn_blocking(move || {
        let _g = BUILDS.lock().unwrap_or_else(|p| p.into_inner());
        compile::build_as(&mb, true, compile::Profile::Release)
    })
    .await
    .unwrap()
    .unwrap();
    let trap = run_test(&m).await.trap.expect("it traps");
    assert!(
        trap.contains(", at check_line, called from exports_rtms_plugin_handler_on_frames"),
        "{trap}"
    );
    assert!(!trap.contains("plugin.c:"), "{trap}");
}
