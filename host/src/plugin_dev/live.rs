//! `rtms-host plugin run`: the plugin in a live pipeline against the local simulator, in one
//! command. The host takes the simulator's webhook on 127.0.0.1, opens its signaling and
//! media sockets (`ws://` on loopback, which the pipeline made here allows), and hands the
//! frames to the plugin as it would in production: its `[config]`, its `[limits]`, the
//! pipeline's default queue and batching, one directory granted at `[test] dir` (the folder's
//! `out/`), and the outputs printed and written to `out/outputs.jsonl`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rtms_sim::{MeetingOptions, MeetingScript, Pace, Simulator};

use super::manifest::Manifest;
use super::script::{live_pipeline, sim_config, start_service};

/// How long a meeting waits for the host to connect: the host is local, so a client that
/// has not come by then will not come.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the host may take to end the session once the meeting ended.
const END_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of one live run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// A meeting script; `None`: `[test] meeting` when it is a script, else the built-in
    /// stand-up.
    pub meeting: Option<PathBuf>,
    pub pace: Pace,
    /// Where the plugin's directory and the outputs go (default: `out/` in the folder).
    pub out: Option<PathBuf>,
    /// Where compiled components are cached (default: next to the toolchains).
    pub compile_cache: Option<PathBuf>,
}

/// What a live run came to.
#[derive(Debug)]
pub struct RunReport {
    pub out: PathBuf,
    /// The lines of `out/outputs.jsonl`.
    pub outputs: usize,
    pub plugin: crate::dataplane::stats::PluginSnapshot,
    /// The stream's stop reason, as the simulator ended it.
    pub stop_reason: u32,
    /// Why the host did not take a webhook, as it answered.
    pub refusals: Vec<String>,
}

impl RunReport {
    /// The plugin got frames and neither trapped nor returned an error, and the host took
    /// every webhook.
    pub fn ok(&self) -> bool {
        self.refusals.is_empty()
            && self.plugin.delivered > 0
            && self.plugin.traps == 0
            && self.plugin.errors == 0
    }
}

/// Plays the meeting against a host running the plugin `m` describes (its component must be
/// built), and reports.
pub async fn run(m: &Manifest, opts: &RunOptions) -> Result<RunReport> {
    if !m.component.is_file() {
        bail!(
            "{} does not exist: build the plugin first (rtms-host plugin build)",
            m.component.display()
        );
    }
    let (script, stem) = meeting(m, opts.meeting.as_deref())?;
    let out = opts.out.clone().unwrap_or_else(|| m.dir.join("out"));
    let files = out.join("files");
    std::fs::create_dir_all(&files)
        .with_context(|| format!("cannot create {}", files.display()))?;
    let outputs = out.join("outputs.jsonl");
    let _ = std::fs::remove_file(&outputs);
    let cache = match opts.compile_cache.clone() {
        Some(c) => c,
        None => super::toolchain::root()?.join("component-cache"),
    };
    let text = pipeline_text(m, &out, &files, &outputs, &cache)?;
    let svc = start_service(&text, &out.join("pipeline.toml"), &secrets(m)).await?;
    let sim = Simulator::start(rtms_sim::SimConfig {
        connect_timeout: CONNECT_TIMEOUT,
        ..sim_config()
    })
    .await?;
    println!(
        "{}: playing {:?} ({:.0} s, {}) against the host on {}; the plugin's directory is {}",
        m.name,
        script.title,
        script.duration_ms as f64 / 1e3,
        if opts.pace == Pace::Fast {
            "as fast as possible"
        } else {
            "in real time"
        },
        svc.addr(),
        files.display()
    );
    let handle = sim.start_meeting(
        script,
        MeetingOptions {
            pace: opts.pace,
            webhook_url: Some(format!("http://{}/webhook", svc.addr())),
            meeting_id: Some(stem.clone()),
            stream_id: Some(stem),
            ..MeetingOptions::default()
        },
    )?;
    let ledger = tokio::select! {
        l = handle.finished() => l,
        _ = tokio::signal::ctrl_c() => {
            println!("{}: interrupted: ending the meeting", m.name);
            handle.stop(rtms_proto::codes::stop_reason::EXIT_SIGNAL);
            handle.finished().await
        }
    };
    let _ = tokio::time::timeout(END_TIMEOUT, svc.sessions().idle()).await;
    let metrics = svc.shutdown().await;
    drop(sim);
    Ok(RunReport {
        outputs: std::fs::read_to_string(&outputs)
            .map(|t| t.lines().count())
            .unwrap_or(0),
        plugin: metrics
            .plugins
            .get(m.name.as_str())
            .cloned()
            .unwrap_or_default(),
        stop_reason: ledger.stop_reason.unwrap_or(0),
        refusals: refusals(&ledger),
        out,
    })
}

/// The secrets the plugin is granted: from the environment, as in production, or their
/// `[test.secrets]` values.
fn secrets(m: &Manifest) -> Vec<(String, String)> {
    m.test
        .secrets
        .iter()
        .map(|(k, v)| (k.clone(), std::env::var(k).unwrap_or_else(|_| v.clone())))
        .collect()
}

/// Why the host did not take a webhook, as it answered.
fn refusals(ledger: &rtms_sim::Ledger) -> Vec<String> {
    ledger
        .webhooks
        .iter()
        .filter_map(|w| {
            w.error
                .as_ref()
                .map(|e| format!("webhook {} (attempt {}): {e}", w.event, w.attempt))
        })
        .collect()
}

/// The script to play and its stem (the meeting and stream ids).
fn meeting(m: &Manifest, given: Option<&Path>) -> Result<(MeetingScript, String)> {
    let path = given.map(Path::to_path_buf).or_else(|| {
        m.test
            .meeting
            .clone()
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    });
    let Some(path) = path else {
        let script = MeetingScript::from_toml_str(rtms_sim::cli::BUILTIN_STANDUP)
            .context("the built-in stand-up")?;
        return Ok((script, "standup".into()));
    };
    if path.extension().is_some_and(|e| e == "jsonl") {
        bail!(
            "{}: a recording cannot be played live; give a meeting script (.toml, such as \
             examples/meetings/standup.toml) with --meeting, or leave --meeting out for the \
             built-in stand-up",
            path.display()
        );
    }
    let script = MeetingScript::from_file(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("meeting script {}", path.display()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "meeting".into());
    Ok((script, stem))
}

/// The live pipeline: the simulator's settings, the plugin as its manifest describes it, its
/// outputs printed and written to `outputs`.
fn pipeline_text(
    m: &Manifest,
    out: &Path,
    files: &Path,
    outputs: &Path,
    cache: &Path,
) -> Result<String> {
    use toml::{Table, Value};
    let mut doc = live_pipeline(&m.media, &m.zoom, &out.join("dead-letter"));
    if let Some(Value::Table(runtime)) = doc.get_mut("runtime") {
        runtime.insert(
            "cache_dir".into(),
            Value::String(cache.display().to_string()),
        );
    }
    let plugin = super::harness::plugin_table(m, files);
    doc.insert("plugin".into(), Value::Array(vec![Value::Table(plugin)]));
    let mut stdout = Table::new();
    stdout.insert("type".into(), Value::String("stdout".into()));
    let mut jsonl = Table::new();
    jsonl.insert("type".into(), Value::String("jsonl".into()));
    jsonl.insert("path".into(), Value::String(outputs.display().to_string()));
    doc.insert(
        "sink".into(),
        Value::Array(vec![Value::Table(stdout), Value::Table(jsonl)]),
    );
    Ok(toml::to_string(&doc)?)
}
