//! `rtms-host demo`: the simulator, the host and the example plugins in one process.
//!
//! It starts the Zoom simulator on loopback (wss:// with a freshly generated CA that the
//! host is told to trust), starts the host with a pipeline built from
//! `examples/demo-pipeline.toml.in` (transcript writer + keyword alerter + audio recorder, and
//! the Python, JavaScript and C examples in `plugins/` when their toolchains can be had: each
//! one skipped is named with the reason), plays a scripted
//! meeting (`examples/meetings/standup.toml` unless another is given) through a signed
//! webhook, prints the live transcript and the alerts as they happen, and ends by itself
//! when the meeting ends, with a summary. Everything it writes goes to `--out` (./out).
//!
//! With `--with-fakes` it also runs the examples that call providers (speech-to-text and
//! meeting-summary) against stand-ins of the providers' public protocols on 127.0.0.1
//! (`rtms-fakes`), so they can be tried with no account anywhere.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use parking_lot::Mutex;
use rtms_config::{LoadOptions, MapEnv, Pipeline};
use rtms_proto::Product;
use rtms_sim::{MeetingOptions, MeetingScript, Pace, SimConfig, Simulator};

use crate::sandbox::bindings::MediaKind;
use crate::service::{Service, StartOptions};

const DEMO_PIPELINE: &str = include_str!("../../../examples/demo-pipeline.toml.in");
/// The components the demo pipeline names, (file name, bytes), built and embedded by
/// `host/build.rs`; written out at demo time by [`materialise_components`].
const DEMO_COMPONENTS: &[(&str, &[u8])] = crate::pipeline::builtin::COMPONENTS;
/// Every component this build made, on the machine that built it: for tests and benches. An
/// installed binary does not need it; the demo carries its own components.
pub const BUILT_PLUGINS_DIR: &str = env!("RTMS_PLUGINS_DIR");
const STANDUP: &str = include_str!("../../../examples/meetings/standup.toml");

/// The demo's credentials: the simulator and the host agree on them, nothing else sees them.
const CLIENT_ID: &str = "demo_client_id";
const CLIENT_SECRET: &str = "demo_client_secret";
const WEBHOOK_SECRET: &str = "demo_webhook_secret";

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where transcripts, alerts and dead letters go.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// A meeting script (see examples/meetings/README.md); default: a built-in stand-up.
    #[arg(long)]
    pub meeting: Option<PathBuf>,
    /// `realtime` plays the meeting at its own pace; `fast` as fast as possible.
    #[arg(long, default_value = "realtime", value_parser = ["realtime", "fast"])]
    pub pace: String,
    /// The Zoom product to simulate: meeting, webinar, video-sdk or contact-center.
    #[arg(long, default_value = "meeting", value_parser = parse_product)]
    pub product: Product,
    /// Connect with ws:// instead of wss://.
    #[arg(long)]
    pub no_tls: bool,
    /// Also record every message the simulator sends to this JSON Lines file (the format
    /// `rtms-host replay` reads).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Run only the Rust plugins (skip building the Python, JavaScript and C examples).
    #[arg(long)]
    pub rust_only: bool,
    /// Also run the examples that call providers (speech-to-text, meeting-summary) against
    /// stand-ins started on 127.0.0.1: a Deepgram-style live speech-to-text WebSocket, an
    /// OpenAI-compatible chat completions API and a Slack-style webhook.
    #[arg(long)]
    pub with_fakes: bool,
}

/// What the speech-to-text stand-in hears of `script`: its utterances as the simulator's
/// 20 ms audio frames carry them.
pub fn spoken(script: &MeetingScript) -> Vec<rtms_fakes::Spoken> {
    script
        .utterances
        .iter()
        .map(|u| rtms_fakes::Spoken {
            speaker: u.user_id.to_string(),
            audio_ms: rtms_fakes::Spoken::frames_ms(u.duration_ms, 20),
            text: u.text.clone(),
        })
        .collect()
}

/// The pipeline section of the provider examples (`--with-fakes`); the fakes' URLs, the
/// component directory and the output directory are filled in.
const PROVIDER_PLUGINS: &str = r#"
# Speech to text: the meeting's audio streamed to a live STT service (here a stand-in for
# Deepgram's API on loopback), the recognised text emitted and written.
[[plugin]]
name = "speech-to-text"
component = "{plugins}/speech_to_text.wasm"
media = ["audio"]
secrets = ["DEEPGRAM_API_KEY"]

[[plugin.dir]]
host = "{out}/speech-to-text"
guest = "/out"

[plugin.queue]
capacity = 4096
on_full = "block"

[plugin.net]
http = ["{stt_base}"]

[plugin.config]
url = "{stt_url}"

# At the end of the meeting: a summary from a language model (here a stand-in for an
# OpenAI-compatible API), written and posted to a chat webhook (a Slack-style stand-in).
[[plugin]]
name = "meeting-summary"
component = "{plugins}/meeting_summary.wasm"
media = ["transcript"]
secrets = ["OPENAI_API_KEY", "SLACK_WEBHOOK_URL"]

[[plugin.dir]]
host = "{out}/summaries"
guest = "/out"

[plugin.net]
http = ["{llm_base}", "{chat_base}"]

[plugin.config]
llm_url = "{llm_base}/v1/chat/completions"
chat_webhook_secret = "SLACK_WEBHOOK_URL"
"#;

/// The keys the stand-ins accept; the demo's host gets them as its plugins' secrets.
const FAKE_STT_KEY: &str = "demo-deepgram-key";
const FAKE_LLM_KEY: &str = "demo-openai-key";

/// The providers' stand-ins of `--with-fakes`, running while the demo does.
pub struct Fakes {
    pub stt: rtms_fakes::SttFake,
    pub llm: rtms_fakes::LlmFake,
    pub chat: rtms_fakes::ChatFake,
}

impl Fakes {
    /// Starts the three fakes; the speech-to-text one hears `script`.
    async fn start(script: &MeetingScript) -> Result<Self> {
        Ok(Self {
            stt: rtms_fakes::SttFake::start(spoken(script), FAKE_STT_KEY).await?,
            llm: rtms_fakes::LlmFake::start(FAKE_LLM_KEY).await?,
            chat: rtms_fakes::ChatFake::start().await?,
        })
    }

    /// The pipeline section naming them.
    fn section(&self, plugins: &Path, out: &Path) -> String {
        let stt_url = self.stt.url();
        PROVIDER_PLUGINS
            .replace("{plugins}", &plugins.display().to_string())
            .replace("{out}", &out.display().to_string())
            .replace("{stt_base}", stt_url.trim_end_matches("/v1/listen"))
            .replace("{stt_url}", &stt_url)
            .replace("{llm_base}", &self.llm.base_url())
            .replace("{chat_base}", &self.chat.base_url())
    }

    /// The secrets the provider plugins are granted.
    fn env(&self, env: MapEnv) -> MapEnv {
        env.with("DEEPGRAM_API_KEY", FAKE_STT_KEY)
            .with("OPENAI_API_KEY", FAKE_LLM_KEY)
            .with("SLACK_WEBHOOK_URL", &self.chat.webhook_url())
    }

    /// What the fakes saw, one line each.
    fn report(&self) -> Vec<String> {
        vec![
            format!(
                "speech-to-text stand-in: {} connection(s), {:.1} s of audio, {} final results",
                self.stt.connections(),
                self.stt.audio_bytes() as f64 / 32_000.0,
                self.stt.heard().len()
            ),
            format!(
                "language-model stand-in: {} request(s), {} summary(ies)",
                self.llm.requests(),
                self.llm.completions().len()
            ),
            format!(
                "chat webhook stand-in: {} message(s) posted",
                self.chat.texts().len()
            ),
        ]
    }
}

/// The examples in other languages the demo builds and runs beside the Rust ones: folder
/// under `plugins/`, and the pipeline section that runs it (`{component}` and `{out}` filled
/// in).
const LANGUAGE_PLUGINS: &[(&str, &str)] = &[
    (
        "talk-time-py",
        r#"
# Python: per-speaker talk time, turns and words, at the end of the meeting.
[[plugin]]
name = "talk-time"
component = "{component}"
media = ["transcript"]

[[plugin.dir]]
host = "{out}/talk-time"
guest = "/out"

[plugin.limits]
memory_mb = 256

[plugin.config]
dir = "/out"
"#,
    ),
    (
        "tagger-js",
        r#"
# JavaScript: action items, questions and dates in the transcript and chat.
[[plugin]]
name = "tagger"
component = "{component}"
media = ["transcript", "chat"]

[plugin.limits]
memory_mb = 128
"#,
    ),
    (
        "audio-levels-c",
        r#"
# C: audio levels, with an alert after 8 s without voice and when the audio clips.
[[plugin]]
name = "audio-levels"
component = "{component}"
media = ["audio"]

[plugin.config]
silence_secs = 8
"#,
    ),
];

/// Builds the examples in other languages (toolchains are installed into the cache on first
/// use) and returns the pipeline sections of those that built, and (plugin, why) for those
/// skipped.
async fn language_plugins(out: &Path, print: bool) -> (String, Vec<(String, String)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("plugins");
    let mut sections = String::new();
    let mut skipped = Vec::new();
    for (folder, section) in LANGUAGE_PLUGINS {
        let dir = root.join(folder);
        let manifest = match crate::plugin_dev::Manifest::load(&dir) {
            Ok(m) => m,
            Err(_) => {
                skipped.push((
                    (*folder).to_owned(),
                    format!(
                        "its sources are not at {} (an installed binary carries only the Rust plugins)",
                        dir.display()
                    ),
                ));
                continue;
            }
        };
        let m = manifest.clone();
        let built =
            tokio::task::spawn_blocking(move || crate::plugin_dev::compile::build(&m, !print))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r);
        match built {
            Ok(b) => sections.push_str(
                &section
                    .replace("{component}", &b.component.display().to_string())
                    .replace("{out}", &out.display().to_string()),
            ),
            Err(e) => skipped.push((
                format!("{} ({})", manifest.name, manifest.lang.as_str()),
                format!("{e:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            )),
        }
    }
    (sections, skipped)
}

fn parse_product(s: &str) -> Result<Product, String> {
    s.parse()
}

/// What the demo observed, for its summary (and its test).
#[derive(Debug, Default, Clone)]
pub struct DemoSummary {
    pub frames_by_kind: BTreeMap<&'static str, u64>,
    pub transcript_lines_sent: usize,
    pub files: Vec<PathBuf>,
    pub alerts: usize,
    pub elapsed: Duration,
    /// Plugins in other languages that could not be built, and why.
    pub skipped: Vec<(String, String)>,
    /// Outputs of each plugin, by plugin name.
    pub outputs_by_plugin: BTreeMap<String, usize>,
    /// With `--with-fakes`: what the providers' stand-ins saw, one line each.
    pub providers: Vec<String>,
}

pub async fn demo(args: DemoArgs) -> Result<()> {
    let s = run_demo(&args, true).await?;
    println!();
    println!("── summary ─────────────────────────────────────────────");
    println!("meeting played in {:.1} s", s.elapsed.as_secs_f64());
    for (k, n) in &s.frames_by_kind {
        println!("  {k:<10} {n:>7} frames");
    }
    println!("  alerts     {:>7}", s.alerts);
    println!("outputs by plugin:");
    for (p, n) in &s.outputs_by_plugin {
        println!("  {p:<18} {n:>5}");
    }
    for line in &s.providers {
        println!("{line}");
    }
    for (p, why) in &s.skipped {
        println!("SKIPPED {p}: {why}");
    }
    println!("files written:");
    for f in &s.files {
        println!("  {}", f.display());
    }
    Ok(())
}

/// Runs the demo; `print` shows the live transcript on stdout.
pub async fn run_demo(args: &DemoArgs, print: bool) -> Result<DemoSummary> {
    let started = Instant::now();
    let out = absolute(&args.out)?;
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the output directory {}", out.display()))?;
    let script = match &args.meeting {
        Some(p) => MeetingScript::from_file(p).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => MeetingScript::from_toml_str(STANDUP).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let (sim, ca_file) = start_simulator(args, &out).await?;
    let fakes = match args.with_fakes {
        true => Some(Fakes::start(&script).await?),
        false => None,
    };
    let (pipeline, env, skipped) =
        demo_pipeline(args, &out, &ca_file, fakes.as_ref(), print).await?;
    let counts: Arc<Mutex<BTreeMap<&'static str, u64>>> = Default::default();
    let tap = transcript_tap(counts.clone(), print);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let svc = Service::start(
        pipeline,
        Box::new(env),
        listener,
        StartOptions {
            tap: Some(tap),
            watch: Some(false),
            ..Default::default()
        },
    )
    .await?;
    if print {
        println!(
            "rtms-host demo: simulator on {}, host on http://{}; outputs in {}",
            sim.signaling_url(),
            svc.addr(),
            out.display()
        );
        println!();
    }
    let transcript_lines_sent = play_meeting(args, &sim, script, &svc).await?;
    let metrics = svc.shutdown().await;
    drop(sim);

    let (files, alerts, outputs_by_plugin) = read_outputs(&out);
    for (name, p) in &metrics.plugins {
        if p.traps > 0 || p.dropped > 0 || p.dead_lettered > 0 {
            tracing::warn!(plugin = %name, traps = p.traps, dropped = p.dropped, dead = p.dead_lettered, "plugin did not take every frame");
        }
    }
    let frames_by_kind = counts.lock().clone();
    let providers = fakes.as_ref().map(Fakes::report).unwrap_or_default();
    Ok(DemoSummary {
        providers,
        frames_by_kind,
        transcript_lines_sent,
        files,
        alerts,
        elapsed: started.elapsed(),
        skipped,
        outputs_by_plugin,
    })
}

/// Starts the Zoom simulator; with TLS, writes its CA to `simulator-ca.pem` in `out`.
async fn start_simulator(args: &DemoArgs, out: &Path) -> Result<(Simulator, PathBuf)> {
    let sim = Simulator::start(SimConfig {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        tls: !args.no_tls,
        ..SimConfig::default()
    })
    .await?;
    let ca_file = out.join("simulator-ca.pem");
    if let Some(pem) = sim.ca_pem() {
        std::fs::write(&ca_file, pem)
            .with_context(|| format!("cannot write {}", ca_file.display()))?;
    }
    Ok((sim, ca_file))
}

/// Writes the demo's pipeline (with the plugins in other languages that could be built)
/// to `out` and loads it; returns it with its environment and the plugins skipped.
async fn demo_pipeline(
    args: &DemoArgs,
    out: &Path,
    ca_file: &Path,
    fakes: Option<&Fakes>,
    print: bool,
) -> Result<(Pipeline, MapEnv, Vec<(String, String)>)> {
    let cache = out.join(default_cache_dir());
    let plugins = materialise_components(&cache.join("demo-plugins"))?;
    let pipeline_path = out.join("demo-pipeline.toml");
    let text = DEMO_PIPELINE
        .replace("{plugins}", &plugins.display().to_string())
        .replace("{out}", &out.display().to_string())
        .replace("{cache}", &cache.display().to_string())
        .replace(
            "# ca_file = \"{ca_file}\"",
            &if args.no_tls {
                String::new()
            } else {
                format!("ca_file = \"{}\"", ca_file.display())
            },
        );
    let (mut extra, skipped) = if args.rust_only {
        (String::new(), Vec::new())
    } else {
        language_plugins(out, print).await
    };
    if let Some(f) = fakes {
        extra.push_str(&f.section(&plugins, out));
    }
    for (p, why) in &skipped {
        eprintln!("rtms-host demo: SKIPPED {p}: {why}");
    }
    let text = match text.find("\n# Alerts on the terminal") {
        Some(at) => format!("{}{extra}{}", &text[..at], &text[at..]),
        None => format!("{text}{extra}"),
    };
    std::fs::write(&pipeline_path, &text)?;
    let mut env = MapEnv::new()
        .with("ZM_RTMS_CLIENT", CLIENT_ID)
        .with("ZM_RTMS_SECRET", CLIENT_SECRET)
        .with("ZOOM_SECRET_TOKEN", WEBHOOK_SECRET);
    if let Some(f) = fakes {
        env = f.env(env);
    }
    let pipeline = Pipeline::parse(&text, &pipeline_path, &env, LoadOptions::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((pipeline, env, skipped))
}

/// Counts every frame by kind into `counts`; with `print`, shows transcript and chat lines.
fn transcript_tap(
    counts: Arc<Mutex<BTreeMap<&'static str, u64>>>,
    print: bool,
) -> crate::dataplane::bridge::Tap {
    Arc::new(move |_s, f| {
        *counts
            .lock()
            .entry(rtms_proto::MediaKind::from(f.kind).as_str())
            .or_default() += 1;
        if !print {
            return;
        }
        let line = match f.kind {
            MediaKind::Transcript => {
                let t = f.transcript.as_ref().map_or(0, |t| t.start_ms);
                format!(
                    "{} {:>12}: {}",
                    clock(t),
                    f.user_name,
                    f.text.as_deref().unwrap_or("")
                )
            }
            MediaKind::Chat => format!(
                "{} {:>12} (chat): {}",
                clock(f.timestamp_ms),
                f.user_name,
                f.text.as_deref().unwrap_or("")
            ),
            _ => return,
        };
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{line}");
    })
}

/// Plays the meeting against the host and waits (bounded) for its stream to end there;
/// returns how many transcript lines the simulator sent.
async fn play_meeting(
    args: &DemoArgs,
    sim: &Simulator,
    script: MeetingScript,
    svc: &Service,
) -> Result<usize> {
    let meeting = sim.start_meeting(
        script,
        MeetingOptions {
            product: args.product,
            pace: if args.pace == "fast" {
                Pace::Fast
            } else {
                Pace::Realtime
            },
            webhook_url: Some(format!("http://{}/webhook", svc.addr())),
            record: args.record.clone(),
            ..MeetingOptions::default()
        },
    )?;
    let ledger = meeting.finished().await;
    // The stream ends on the host once it sees the stop; wait for that, bounded.
    if tokio::time::timeout(Duration::from_secs(30), svc.sessions().idle())
        .await
        .is_err()
    {
        tracing::warn!("the host still had a live stream 30 s after the meeting ended");
    }
    Ok(ledger.transcript_lines().len())
}

/// The files written under `out`, the keyword alerts, and the outputs of each plugin.
fn read_outputs(out: &Path) -> (Vec<PathBuf>, usize, BTreeMap<String, usize>) {
    let mut files = Vec::new();
    collect_files(out, &mut files);
    files.sort();
    let alerts = std::fs::read_to_string(out.join("alerts.jsonl"))
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("\"kind\":\"keyword\""))
                .count()
        })
        .unwrap_or(0);
    let mut outputs_by_plugin = BTreeMap::new();
    for line in std::fs::read_to_string(out.join("alerts.jsonl"))
        .unwrap_or_default()
        .lines()
    {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
            && let Some(p) = v["plugin"].as_str()
        {
            *outputs_by_plugin.entry(p.to_owned()).or_insert(0) += 1;
        }
    }
    (files, alerts, outputs_by_plugin)
}

/// Where the demo caches compiled components: beside the build when the binary runs where it
/// was built (`target/component-cache`), else the user's cache directory
/// (`$XDG_CACHE_HOME/rtms-host` or `~/.cache/rtms-host`), else `.component-cache` in the
/// output directory (a relative result is taken relative to it).
pub fn default_cache_dir() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target");
    if built.is_dir() {
        return built.join("component-cache");
    }
    let user = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| Path::new(d).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| Path::new(h).is_absolute())
                .map(|h| Path::new(&h).join(".cache"))
        });
    match user {
        Some(dir) => dir.join("rtms-host").join("component-cache"),
        None => PathBuf::from(".component-cache"),
    }
}

/// Writes the embedded demo components into `dir` (a file is replaced only when its bytes
/// differ, and by rename, so a concurrent demo never reads half a file) and returns `dir`.
pub fn materialise_components(dir: &Path) -> Result<PathBuf> {
    let missing: Vec<&str> = [
        "transcript_writer.wasm",
        "keyword_alerter.wasm",
        "audio_recorder.wasm",
    ]
    .into_iter()
    .filter(|name| !DEMO_COMPONENTS.iter().any(|(n, _)| n == name))
    .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "this binary was built without the demo's components ({}): build it again without \
             RTMS_SKIP_PLUGIN_BUILD, or build the plugins first (cd plugins && cargo build --release)",
            missing.join(", ")
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {} for the demo's components", dir.display()))?;
    for (name, bytes) in DEMO_COMPONENTS {
        let dest = dir.join(name);
        if std::fs::read(&dest).is_ok_and(|old| old == *bytes) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &dest))
            .with_context(|| format!("cannot write the demo component {}", dest.display()))?;
    }
    Ok(dir.to_owned())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn clock(ms: u64) -> String {
    let secs = (ms / 1000) % 86_400;
    format!(
        "[{:02}:{:02}:{:02}]",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}
