//! `rtms-host plugin test`: runs a plugin against a recorded meeting (the `replay` path: no
//! network) or a scripted one (the simulator on loopback, recorded, then replayed), and
//! compares what it emitted and the files it wrote with the expectations in the plugin
//! folder.
//!
//! The plugin runs alone in a pipeline made for the test: its `[config]`, one scratch
//! directory granted at `[test] dir`, a lossless queue (`block`, with a long wait) so no frame
//! is dropped however slow the plugin, and a JSON Lines sink. Expectations are:
//!
//! - `<expected>/outputs.jsonl`: one line per emitted output, `kind`, `severity`, `message`
//!   and `data` only (the time, the session handle and the plugin name are left out, as they
//!   change from run to run or say nothing);
//! - `<expected>/files/…`: every file the plugin left in its directory, at the same relative
//!   path.
//!
//! A trap is a failure too, whatever the outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rtms_config::{LoadOptions, Pipeline};
use rtms_proto::Product;

use super::manifest::Manifest;
use crate::dataplane::stats::PluginSnapshot;
use crate::service::replay::{ReplayArgs, ReplaySummary, replay_file};

/// What a test run found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Readable unified diffs, one per file that differs from its expectation.
    pub diffs: Vec<String>,
    /// Other reasons the test failed.
    pub problems: Vec<String>,
    /// Why the plugin trapped, with the key to change named as the manifest spells it
    /// (a trap fails the test whatever the outputs).
    pub trap: Option<String>,
    pub frames: u64,
    pub outputs: usize,
    pub files: usize,
    pub plugin: PluginSnapshot,
    /// True when `--update` rewrote the expectations.
    pub updated: bool,
    /// With `--record`: how many HTTP exchanges were written to `[test] http`.
    pub recorded: Option<usize>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.diffs.is_empty() && self.problems.is_empty() && self.trap.is_none()
    }
}

/// Options of one test run.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Overrides `[test] meeting`.
    pub meeting: Option<PathBuf>,
    /// Rewrite the expectations with what the plugin produced.
    pub update: bool,
    /// Where compiled components are cached (default: next to the toolchains).
    pub compile_cache: Option<PathBuf>,
    /// Send the plugin's HTTP requests to the real services and write them to `[test] http`
    /// (see [`super::test_net`]).
    pub record: bool,
}

/// Runs the test of the plugin `m` describes (its component must be built).
pub async fn run(m: &Manifest, opts: &TestOptions) -> Result<Outcome> {
    let meeting = opts
        .meeting
        .clone()
        .or_else(|| m.test.meeting.clone())
        .with_context(|| {
            format!(
                "no meeting to test with: set [test] meeting in {} (a recording such as \
                 examples/recordings/standup.jsonl, or a script such as examples/meetings/standup.toml) \
                 or pass --meeting",
                m.dir.join(super::manifest::FILE).display()
            )
        })?;
    if !m.component.is_file() {
        bail!(
            "{} does not exist: build the plugin first (rtms-host plugin build)",
            m.component.display()
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix("rtms-plugin-test-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let work = scratch.path();
    let recording = recording_of(&meeting, m, work).await?;
    let (run, net) = replay_alone(m, opts, work, recording).await?;
    let mut outcome = Outcome {
        frames: run.summary.frames,
        plugin: run
            .summary
            .metrics
            .plugins
            .get(m.name.as_str())
            .cloned()
            .unwrap_or_default(),
        ..Outcome::default()
    };
    if outcome.plugin.traps > 0 {
        outcome.trap = Some(trap_report(m, work, outcome.plugin.traps));
    } else if outcome.plugin.breaker_trips > 0 {
        outcome.trap = Some(
            "the plugin failed to start for the session (`init` or `on-session-start` trapped \
             or returned an error: the reason is logged above, \"cannot start the plugin for \
             this session\"), so it was given no frames"
                .to_owned(),
        );
    }
    if outcome.plugin.errors > 0 {
        outcome.problems.push(format!(
            "the plugin returned an error for {} batch(es); each is logged above (\"plugin \
             reported an error\") with its message (JavaScript: the line that threw)",
            outcome.plugin.errors
        ));
    }
    let (net_problems, recorded) = net.finish()?;
    outcome.problems.extend(net_problems);
    outcome.recorded = recorded;
    let actual = produced(&run, &mut outcome)?;
    if outcome.trap.is_some() {
        // What a trapping run produced is neither an expectation nor worth a diff.
        return Ok(outcome);
    }
    if opts.update {
        write_expected(&m.test.expected, &actual)?;
        outcome.updated = true;
        return Ok(outcome);
    }
    compare(&m.test.expected, &actual, &mut outcome)?;
    Ok(outcome)
}

/// What the plugin's traps said (from the dead letters of the batches that trapped), with
/// the pipeline's `[plugin.limits]` keys named as `rtms-plugin.toml` spells them.
fn trap_report(m: &Manifest, work: &Path, traps: u64) -> String {
    let letters = work
        .join("dead-letter")
        .join(format!("{}.deadletter.jsonl", m.name));
    let errors: Vec<String> = std::fs::read_to_string(&letters)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["error"].as_str().map(str::to_owned))
        .collect();
    let key = match &m.limits_from {
        Some(pipeline) => format!("[plugin.limits] in {}: ", pipeline.display()),
        None => format!(
            "[limits] in {} (as [plugin.limits] in pipeline.toml): ",
            m.dir.join(super::manifest::FILE).display()
        ),
    };
    let why = match errors.first() {
        Some(e) => e.replace("[plugin.limits] ", &key),
        None => "it trapped while starting (see the log above)".to_owned(),
    };
    format!(
        "the plugin trapped {traps} time(s); the test stops it at its first trap (production \
         restarts it, within [plugin.restart]), so what follows in the meeting was not \
         delivered. The first trap: {why}"
    )
}

/// The recording of `meeting`: itself, or a scripted meeting played and recorded in `work`.
async fn recording_of(meeting: &Path, m: &Manifest, work: &Path) -> Result<PathBuf> {
    match meeting.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => Ok(meeting.to_path_buf()),
        Some("toml") => {
            let rec = work.join(format!(
                "{}.jsonl",
                meeting.file_stem().unwrap_or_default().to_string_lossy()
            ));
            super::script::record(meeting, &m.media, &m.zoom, &rec).await?;
            Ok(rec)
        }
        _ => bail!(
            "{}: a meeting is a recording (.jsonl, from `rtms-host simulate --record`) or a \
             meeting script (.toml, see examples/meetings/README.md)",
            meeting.display()
        ),
    }
}

/// One replay of the plugin alone and where it left what it produced.
struct Replayed {
    summary: ReplaySummary,
    files_dir: PathBuf,
    outputs_path: PathBuf,
}

/// Replays `recording` through a pipeline made for the test, in `work`, with the services
/// the plugin calls served by the test network.
async fn replay_alone(
    m: &Manifest,
    opts: &TestOptions,
    work: &Path,
    recording: PathBuf,
) -> Result<(Replayed, super::test_net::TestNet)> {
    let files_dir = work.join("files");
    std::fs::create_dir_all(&files_dir)?;
    let outputs_path = work.join("outputs.jsonl");
    let cache = match opts.compile_cache.clone() {
        Some(c) => c,
        None => super::toolchain::root()?.join("component-cache"),
    };
    let net = super::test_net::TestNet::start(m, opts.record).await?;
    let text = pipeline_text(&net.rewrite(m), work, &files_dir, &outputs_path, &cache)?;
    let pipeline_path = work.join("pipeline.toml");
    std::fs::write(&pipeline_path, &text)?;
    let pipeline = Pipeline::parse(
        &text,
        &pipeline_path,
        &net.env(),
        LoadOptions::validate_only(),
    )
    .map_err(|e| anyhow::anyhow!("the test pipeline for {} is refused: {e}", m.name))?;
    let summary = replay_file(
        &pipeline,
        &ReplayArgs {
            file: recording,
            config: pipeline_path.clone(),
            realtime: false,
            product: Product::Meeting,
            meeting_id: None,
            stream_id: None,
        },
    )
    .await?;
    let run = Replayed {
        summary,
        files_dir,
        outputs_path,
    };
    Ok((run, net))
}

/// What the plugin produced, by expectation name (`outputs.jsonl`, `files/...`); the counts
/// go into `outcome`.
fn produced(run: &Replayed, outcome: &mut Outcome) -> Result<BTreeMap<String, Vec<u8>>> {
    let outputs =
        normalise_outputs(&std::fs::read_to_string(&run.outputs_path).unwrap_or_default())?;
    outcome.outputs = outputs.lines().count();
    let mut actual: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    actual.insert("outputs.jsonl".into(), outputs.into_bytes());
    let mut files = Vec::new();
    walk(&run.files_dir, &mut files);
    outcome.files = files.len();
    for f in files {
        let rel = f.strip_prefix(&run.files_dir).unwrap_or(&f);
        let key = Path::new("files").join(rel).to_string_lossy().into_owned();
        actual.insert(key, std::fs::read(&f)?);
    }
    Ok(actual)
}

/// Compares `actual` with the expectations in `expected_dir`: a diff per file that differs.
fn compare(
    expected_dir: &Path,
    actual: &BTreeMap<String, Vec<u8>>,
    outcome: &mut Outcome,
) -> Result<()> {
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if !expected_dir.is_dir() {
        outcome.problems.push(format!(
            "{} does not exist: run `rtms-host plugin test --update` once to record what the plugin \
             produces, check it, and commit it",
            expected_dir.display()
        ));
        return Ok(());
    }
    let mut exp_files = Vec::new();
    walk(expected_dir, &mut exp_files);
    for f in exp_files {
        let rel = f.strip_prefix(expected_dir).unwrap_or(&f);
        expected.insert(rel.to_string_lossy().into_owned(), std::fs::read(&f)?);
    }
    let names: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for name in names {
        let e = expected.get(name).map(Vec::as_slice);
        let a = actual.get(name).map(Vec::as_slice);
        if e == a {
            continue;
        }
        outcome.diffs.push(diff(
            name,
            e.unwrap_or_default(),
            a.unwrap_or_default(),
            e.is_none(),
            a.is_none(),
        ));
    }
    Ok(())
}

/// A readable unified diff of one expectation against what the plugin produced.
fn diff(name: &str, expected: &[u8], actual: &[u8], no_expected: bool, no_actual: bool) -> String {
    let (e, a) = match (std::str::from_utf8(expected), std::str::from_utf8(actual)) {
        (Ok(e), Ok(a)) => (e, a),
        _ => {
            return format!(
                "{name}: binary contents differ (expected {} bytes, got {} bytes)\n",
                expected.len(),
                actual.len()
            );
        }
    };
    let old = if no_expected {
        "/dev/null (not expected)".to_string()
    } else {
        format!("expected/{name}")
    };
    let new = if no_actual {
        "/dev/null (not produced)".to_string()
    } else {
        format!("actual/{name}")
    };
    similar::TextDiff::from_lines(e, a)
        .unified_diff()
        .context_radius(3)
        .header(&old, &new)
        .to_string()
}

fn write_expected(dir: &Path, actual: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let files = dir.join("files");
    if files.exists() {
        std::fs::remove_dir_all(&files)
            .with_context(|| format!("cannot clear {}", files.display()))?;
    }
    for (name, bytes) in actual {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// Keeps what a plugin decides of each output line: kind, severity, message, data.
pub fn normalise_outputs(text: &str) -> Result<String> {
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).context("the test sink wrote a line that is not JSON")?;
        // In this order, whatever serde_json's map order: the reader looks for the kind first.
        out.push_str(&format!(
            "{{\"kind\":{},\"severity\":{},\"message\":{},\"data\":{}}}",
            v["kind"], v["severity"], v["message"], v["data"]
        ));
        out.push('\n');
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// How long a partial batch waits for more frames in a test (the most the pipeline allows):
/// the replay fills it long before, unless the meeting is over.
const BATCH_WAIT_MS: i64 = 60_000;

/// The pipeline the test runs: the plugin alone, lossless, one scratch directory, one sink.
fn pipeline_text(
    m: &Manifest,
    work: &Path,
    files: &Path,
    outputs: &Path,
    cache: &Path,
) -> Result<String> {
    use toml::{Table, Value};
    let s = |x: &str| Value::String(x.to_owned());
    let p = |x: &Path| Value::String(x.display().to_string());
    let mut doc = Table::new();
    doc.insert("version".into(), Value::Integer(1));
    let mut runtime = Table::new();
    runtime.insert("cache_dir".into(), p(cache));
    runtime.insert("dead_letter_dir".into(), p(&work.join("dead-letter")));
    let mut reload = Table::new();
    reload.insert("watch".into(), Value::Boolean(false));
    runtime.insert("reload".into(), Value::Table(reload));
    doc.insert("runtime".into(), Value::Table(runtime));

    let mut plugin = plugin_table(m, files);
    let mut queue = Table::new();
    queue.insert("capacity".into(), Value::Integer(4096));
    queue.insert("on_full".into(), s("block"));
    queue.insert("block_timeout_ms".into(), Value::Integer(600_000));
    plugin.insert("queue".into(), Value::Table(queue));
    // Batches of exactly max_frames (the last one before the end may be shorter): a partial
    // batch waits for more frames rather than leaving with what the replay's speed queued,
    // so every run cuts the meeting into the same calls.
    let mut batch = Table::new();
    batch.insert(
        "max_frames".into(),
        Value::Integer(m.test.max_frames.into()),
    );
    batch.insert("max_wait_ms".into(), Value::Integer(BATCH_WAIT_MS));
    plugin.insert("batch".into(), Value::Table(batch));
    // Stopped at its first trap, at once: a trap fails the test whatever follows, and a
    // runaway plugin fails it within one call deadline instead of five, with backoff.
    let mut restart = Table::new();
    restart.insert("max_failures".into(), Value::Integer(1));
    plugin.insert("restart".into(), Value::Table(restart));
    doc.insert("plugin".into(), Value::Array(vec![Value::Table(plugin)]));

    let mut sink = Table::new();
    sink.insert("type".into(), s("jsonl"));
    sink.insert("path".into(), p(outputs));
    doc.insert("sink".into(), Value::Array(vec![Value::Table(sink)]));
    Ok(toml::to_string(&doc)?)
}

/// The plugin's `[[plugin]]` table as its manifest describes it: component, media, config,
/// limits (as in production: a plugin that passes its test does not trap there for a
/// limit), network grant, secrets, and `files` granted at `[test] dir`.
pub(super) fn plugin_table(m: &Manifest, files: &Path) -> toml::Table {
    use toml::{Table, Value};
    let s = |x: &str| Value::String(x.to_owned());
    let p = |x: &Path| Value::String(x.display().to_string());
    let mut plugin = Table::new();
    plugin.insert("name".into(), s(&m.name));
    plugin.insert("component".into(), p(&m.component));
    plugin.insert(
        "media".into(),
        Value::Array(m.media.iter().map(|k| s(k)).collect()),
    );
    let mut dir = Table::new();
    dir.insert("host".into(), p(files));
    dir.insert("guest".into(), s(&m.test.guest_dir));
    plugin.insert("dir".into(), Value::Array(vec![Value::Table(dir)]));
    plugin.insert("limits".into(), Value::Table(m.limits.clone()));
    plugin.insert("config".into(), Value::Table(m.config.clone()));
    if !m.net.is_empty() {
        plugin.insert("net".into(), Value::Table(m.net.clone()));
    }
    if !m.test.secrets.is_empty() {
        let names = m.test.secrets.keys().map(|k| s(k)).collect();
        plugin.insert("secrets".into(), Value::Array(names));
    }
    plugin
}
