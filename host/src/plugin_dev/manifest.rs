//! `rtms-plugin.toml`: what `rtms-host plugin build` and `plugin test` need to know about a
//! plugin folder. Every relative path in it is relative to the folder holding the file.
//!
//! ```toml
//! [plugin]
//! name = "talk-time"              # lowercase letters, digits and '-'; the pipeline's plugin name
//! lang = "python"                 # "rust", "python", "js" or "c"
//! source = "src"                  # the sources (a folder; for rust, the crate's folder)
//! entry = "app"                   # python: the module; js: the file in `source`; unused for c and rust
//! component = "build/talk_time.wasm"   # where the built component goes
//! media = ["transcript", "event"] # the kinds it takes (or in [test] pipeline's [[plugin]])
//! contract = "0.2"                # "0.1" (default) or "0.2" (state, secrets, budget, HTTP)
//!
//! [config]                        # passed to `init`, as `[plugin.config]` in pipeline.toml
//! min_words = 1
//!
//! [net]                           # as `[plugin.net]` in pipeline.toml: what it may call
//! http = ["https://api.example.com/v1"]
//!
//! [limits]                        # as `[plugin.limits]` in pipeline.toml; the test runs with
//! memory_mb = 128                 # them (unset keys: the production defaults, 64 MiB and 1 s)
//!                                 # or, instead: [test] pipeline = "pipeline.toml", whose
//!                                 # [[plugin]] of this name gives its [plugin.limits]
//!
//! [test]
//! meeting = "../../examples/recordings/standup.jsonl"  # a recording (.jsonl) or a script (.toml)
//! expected = "expected"           # outputs.jsonl and files/ as the plugin should produce them
//! dir = "/out"                    # the guest path of the scratch directory it may write
//! http = "fakes.jsonl"            # recorded HTTP exchanges the test serves (see `fakes`)
//!
//! [test.secrets]                  # the secrets granted in the test, with test values
//! NOTES_API_KEY = "test-key"
//! ```

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::contract::Contract;

/// The manifest's file name.
pub const FILE: &str = "rtms-plugin.toml";

/// A plugin's language, which picks the toolchain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Rust,
    Python,
    #[serde(alias = "javascript")]
    #[value(alias = "javascript")]
    Js,
    C,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    plugin: RawPlugin,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    net: toml::Table,
    #[serde(default)]
    limits: toml::Table,
    #[serde(default)]
    test: RawTest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    lang: Lang,
    source: Option<PathBuf>,
    entry: Option<String>,
    component: Option<PathBuf>,
    media: Option<Vec<String>>,
    contract: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    meeting: Option<PathBuf>,
    expected: Option<PathBuf>,
    dir: Option<String>,
    memory_mb: Option<u32>,
    call_timeout_ms: Option<u64>,
    max_frames: Option<u32>,
    http: Option<PathBuf>,
    pipeline: Option<PathBuf>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
}

/// A loaded manifest, its paths made absolute.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The plugin folder (where `rtms-plugin.toml` is).
    pub dir: PathBuf,
    pub name: String,
    pub lang: Lang,
    pub source: PathBuf,
    pub entry: String,
    pub component: PathBuf,
    pub media: Vec<String>,
    /// `[plugin] contract`: what `plugin build` builds against (unused for rust: the
    /// crate's own bindings decide).
    pub contract: Contract,
    pub config: toml::Table,
    /// `[net]`: the plugin's `[plugin.net]` table, as written (empty: no network).
    pub net: toml::Table,
    /// `[limits]`, or the `[plugin.limits]` of the pipeline `[test] pipeline` names, as
    /// written (empty: the production defaults). `plugin test` runs with them.
    pub limits: toml::Table,
    /// The pipeline the limits come from (`[test] pipeline`); `None`: `[limits]`.
    pub limits_from: Option<PathBuf>,
    /// What the plugin's pipeline asks Zoom for, from the `[rtms]` of `[test] pipeline`: its
    /// `events` and its `audio`, `video`, `deskshare` and `transcript` tables (per-speaker
    /// audio, a codec, a frame rate). A meeting script played for the test, or by `plugin
    /// run`, is asked for the same. Empty: Zoom's defaults.
    pub zoom: toml::Table,
    pub test: TestSpec,
}

/// The `[test]` section.
#[derive(Debug, Clone)]
pub struct TestSpec {
    pub meeting: Option<PathBuf>,
    pub expected: PathBuf,
    pub guest_dir: String,
    pub max_frames: u32,
    /// `[test] http`: the recorded HTTP exchanges the test serves, absolute.
    pub http: Option<PathBuf>,
    /// `[test.secrets]`: the secrets the plugin is granted in the test, with their test
    /// values (never read from the environment).
    pub secrets: BTreeMap<String, String>,
}

impl Manifest {
    /// Reads `dir/rtms-plugin.toml`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (run in a plugin folder, pass --dir, or create one with \
                 `rtms-host plugin new NAME --lang rust|python|js|c`)",
                path.display()
            )
        })?;
        Self::parse(&text, dir).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str, dir: &Path) -> Result<Self> {
        let raw: Raw = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let p = raw.plugin;
        check_name(&p.name)?;
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let snake = p.name.replace('-', "_");
        let source = dir.join(p.source.unwrap_or_else(|| match p.lang {
            Lang::Rust => PathBuf::from("."),
            _ => PathBuf::from("src"),
        }));
        let entry = p.entry.unwrap_or_else(|| match p.lang {
            Lang::Python => "app".into(),
            Lang::Js => "plugin.js".into(),
            Lang::C | Lang::Rust => String::new(),
        });
        let component = dir.join(p.component.unwrap_or_else(|| match p.lang {
            Lang::Rust => PathBuf::from(format!("target/wasm32-wasip2/release/{snake}.wasm")),
            _ => PathBuf::from(format!("build/{snake}.wasm")),
        }));
        let contract = match &p.contract {
            Some(c) => Contract::parse(c).context("[plugin] contract")?,
            None => Contract::default(),
        };
        let t = raw.test;
        moved_limits(&t)?;
        let limits_from = t.pipeline.as_ref().map(|p| dir.join(p));
        let (entry_in_pipeline, zoom) = match &limits_from {
            Some(pipeline) => {
                let (entry, zoom) = pipeline_plugin(pipeline, &p.name)?;
                (Some(entry), zoom)
            }
            None => (None, toml::Table::new()),
        };
        let limits = match &entry_in_pipeline {
            None => raw.limits,
            Some(_) if !raw.limits.is_empty() => bail!(
                "[limits] and [test] pipeline are both set: declare the limits in one place (keep \
                 [test] pipeline to test with the pipeline's [plugin.limits], or remove it)"
            ),
            Some(plugin) => pipeline_limits(plugin, &p.name, limits_from.as_deref())?,
        };
        let pipe = limits_from.as_deref();
        let media = one_media(p.media, entry_in_pipeline.as_ref(), pipe)?;
        for name in t.secrets.keys() {
            check_secret_name(name)?;
        }
        let guest_dir = t.dir.unwrap_or_else(|| "/out".into());
        if !guest_dir.starts_with('/') {
            bail!("[test] dir = {guest_dir:?}: the guest path must be absolute, such as \"/out\"");
        }
        Ok(Self {
            name: p.name,
            lang: p.lang,
            source,
            entry,
            component,
            media,
            contract,
            config: one_table(raw.config, "config", entry_in_pipeline.as_ref(), pipe)?,
            net: one_table(raw.net, "net", entry_in_pipeline.as_ref(), pipe)?,
            limits,
            limits_from,
            zoom,
            test: TestSpec {
                meeting: t.meeting.map(|m| dir.join(m)),
                expected: dir.join(t.expected.unwrap_or_else(|| PathBuf::from("expected"))),
                guest_dir,
                max_frames: t.max_frames.unwrap_or(32),
                http: t.http.map(|h| dir.join(h)),
                secrets: t.secrets,
            },
            dir,
        })
    }
}

/// The media kinds the plugin takes, from the one place they are declared: `[plugin] media`,
/// or `media` of its `[[plugin]]` in `[test] pipeline`. Both set and different is an error
/// naming both.
fn one_media(
    own: Option<Vec<String>>,
    in_pipeline: Option<&toml::Table>,
    pipeline: Option<&Path>,
) -> Result<Vec<String>> {
    let theirs: Option<Vec<String>> = match in_pipeline.and_then(|t| t.get("media")) {
        None => None,
        Some(v) => Some(v.clone().try_into().map_err(|_| {
            anyhow::anyhow!(
                "[test] pipeline: media of the plugin's [[plugin]] in {} is not a list of names",
                pipeline.unwrap_or(Path::new("?")).display()
            )
        })?),
    };
    let media = match (own, theirs) {
        (Some(a), Some(b)) if a != b => bail!(
            "[plugin] media = {a:?} here, but media = {b:?} in its [[plugin]] of {} ([test] \
             pipeline): declare the kinds in one place (remove [plugin] media here, and the \
             test takes the pipeline's)",
            pipeline.unwrap_or(Path::new("?")).display()
        ),
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => bail!(
            "[plugin] media is not set: name the kinds the plugin takes, such as \
             [\"transcript\"], here or as media of its [[plugin]] in the pipeline [test] pipeline \
             names"
        ),
    };
    if media.is_empty() {
        bail!("[plugin] media is empty: name the kinds the plugin takes, such as [\"transcript\"]");
    }
    for m in &media {
        if !["audio", "video", "share", "transcript", "chat", "event"].contains(&m.as_str()) {
            bail!(
                "[plugin] media: unknown kind {m:?}; expected audio, video, share, transcript, chat or event"
            );
        }
    }
    Ok(media)
}

/// `[config]` or `[net]` (`key`): as written here, or, left out here, `[plugin.<key>]` of
/// the plugin's `[[plugin]]` in `[test] pipeline` (declared once, where it runs). A test may
/// set its own on purpose (a lower threshold to exercise a path), so both set is no error.
fn one_table(
    own: toml::Table,
    key: &str,
    in_pipeline: Option<&toml::Table>,
    pipeline: Option<&Path>,
) -> Result<toml::Table> {
    match in_pipeline.and_then(|t| t.get(key)) {
        Some(toml::Value::Table(t)) if own.is_empty() => Ok(t.clone()),
        Some(toml::Value::Table(_)) | None => Ok(own),
        Some(_) => bail!(
            "[test] pipeline: [plugin.{key}] of the plugin's [[plugin]] in {} is not a table",
            pipeline.unwrap_or(Path::new("?")).display()
        ),
    }
}

/// The keys of `[rtms]` that decide what Zoom sends (the rest is the host's own business).
const ZOOM_KEYS: [&str; 5] = ["events", "audio", "video", "deskshare", "transcript"];

/// The `[[plugin]]` named `name` in the pipeline file `path`, and the [`ZOOM_KEYS`] of its
/// `[rtms]`.
fn pipeline_plugin(path: &Path, name: &str) -> Result<(toml::Table, toml::Table)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("[test] pipeline: cannot read {}", path.display()))?;
    let doc: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("[test] pipeline: {}: {e}", path.display()))?;
    let plugin = doc
        .get("plugin")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(toml::Value::as_str) == Some(name))
        .with_context(|| {
            format!(
                "[test] pipeline: {} has no [[plugin]] named {name:?}; name the pipeline this \
                 plugin runs in, or set [limits] here instead",
                path.display()
            )
        })?;
    let plugin = plugin.as_table().cloned().with_context(|| {
        format!(
            "[test] pipeline: {}: the [[plugin]] named {name:?} is not a table",
            path.display()
        )
    })?;
    let rtms = doc.get("rtms").and_then(toml::Value::as_table);
    let zoom = rtms
        .into_iter()
        .flat_map(|t| t.iter())
        .filter(|(k, _)| ZOOM_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((plugin, zoom))
}

/// The `[plugin.limits]` of `plugin`, the `[[plugin]]` named `name` in the pipeline `path`.
fn pipeline_limits(plugin: &toml::Table, name: &str, path: Option<&Path>) -> Result<toml::Table> {
    match plugin.get("limits") {
        None => Ok(toml::Table::new()),
        Some(toml::Value::Table(t)) => Ok(t.clone()),
        Some(_) => bail!(
            "[test] pipeline: {}: [plugin.limits] of {name:?} is not a table",
            path.unwrap_or(Path::new("?")).display()
        ),
    }
}

/// `[test] memory_mb` and `call_timeout_ms` are gone: the test runs with the plugin's own
/// limits, so a plugin that passes its test does not trap in production for a limit.
fn moved_limits(t: &RawTest) -> Result<()> {
    for (key, set) in [
        ("memory_mb", t.memory_mb.is_some()),
        ("call_timeout_ms", t.call_timeout_ms.is_some()),
    ] {
        if set {
            bail!(
                "[test] {key}: the test runs with the limits the plugin runs with in production; \
                 move the key to [limits] {key} (as [plugin.limits] {key} in pipeline.toml), or \
                 remove it to test with the default"
            );
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 64;
    if !ok {
        bail!(
            "plugin name {name:?}: use lowercase letters, digits and '-', starting with a letter \
             (at most 64 characters), such as \"talk-time\""
        );
    }
    Ok(())
}

/// A secret is granted by the name of an environment variable.
fn check_secret_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        bail!(
            "[test.secrets] {name:?}: a secret is named like an environment variable (letters, \
             digits and '_', not starting with a digit), such as \"NOTES_API_KEY\""
        );
    }
    Ok(())
}

/// Checks a plugin name given on the command line.
pub fn valid_name(name: &str) -> Result<()> {
    check_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_language() {
        let m = Manifest::parse(
            "[plugin]\nname = \"talk-time\"\nlang = \"python\"\nmedia = [\"transcript\"]\n",
            Path::new("/p"),
        )
        .unwrap();
        assert_eq!(m.source, Path::new("/p/src"));
        assert_eq!(m.entry, "app");
        assert_eq!(m.component, Path::new("/p/build/talk_time.wasm"));
        assert_eq!(m.test.expected, Path::new("/p/expected"));
        assert_eq!(m.test.guest_dir, "/out");
    }

    #[test]
    fn the_capability_keys_are_read() {
        let m = Manifest::parse(
            "[plugin]\nname = \"n\"\nlang = \"c\"\nmedia = [\"audio\"]\ncontract = \"0.2\"\n\
             [net]\nhttp = [\"https://a.example\"]\n\
             [test]\nhttp = \"fakes.jsonl\"\n[test.secrets]\nKEY_1 = \"t\"\n",
            Path::new("/p"),
        )
        .unwrap();
        assert_eq!(m.contract, Contract::V02);
        assert_eq!(m.net["http"][0].as_str(), Some("https://a.example"));
        assert_eq!(m.test.http.as_deref(), Some(Path::new("/p/fakes.jsonl")));
        assert_eq!(m.test.secrets["KEY_1"], "t");
        let e = Manifest::parse(
            "[plugin]\nname = \"n\"\nlang = \"c\"\nmedia = [\"audio\"]\n[test.secrets]\n\"1-x\" = \"t\"\n",
            Path::new("/p"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("environment variable"), "{e:#}");
        let m = Manifest::parse(
            "[plugin]\nname = \"n\"\nlang = \"c\"\nmedia = [\"audio\"]\n",
            Path::new("/p"),
        )
        .unwrap();
        assert_eq!(m.contract, Contract::V01, "0.1 stays the default");
    }

    #[test]
    fn mistakes_name_the_key() {
        let e = Manifest::parse(
            "[plugin]\nname = \"x\"\nlang = \"go\"\nmedia = [\"transcript\"]\n",
            Path::new("/p"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("go"), "{e:#}");
        let e = Manifest::parse(
            "[plugin]\nname = \"x\"\nlang = \"c\"\nmedia = [\"sound\"]\n",
            Path::new("/p"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("sound"), "{e:#}");
        let e = Manifest::parse(
            "[plugin]\nname = \"Bad_Name\"\nlang = \"c\"\nmedia = [\"audio\"]\n",
            Path::new("/p"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("lowercase"), "{e:#}");
    }

    /// `[config]` and `[net]` come from `[test] pipeline` when left out here; set here, the
    /// test's own are used.
    #[test]
    fn config_and_net_come_from_the_pipeline_when_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pipeline.toml"),
            "version = 1\n[[plugin]]\nname = \"n\"\ncomponent = \"x.wasm\"\nmedia = [\"chat\"]\n\
             [plugin.config]\ndir = \"/out\"\n[plugin.net]\nhttp = [\"https://a.example.com\"]\n",
        )
        .unwrap();
        let head = "[plugin]\nname = \"n\"\nlang = \"c\"\n";
        let tail = "[test]\npipeline = \"pipeline.toml\"\n";
        let m = Manifest::parse(&format!("{head}{tail}"), dir.path()).unwrap();
        assert_eq!(m.config.get("dir").and_then(|v| v.as_str()), Some("/out"));
        assert!(m.net.contains_key("http"));
        let own = format!("{head}[config]\ndir = \"/elsewhere\"\n{tail}");
        let m = Manifest::parse(&own, dir.path()).unwrap();
        assert_eq!(
            m.config.get("dir").and_then(|v| v.as_str()),
            Some("/elsewhere")
        );
        assert!(m.net.contains_key("http"), "[net] still from the pipeline");
        let bad = dir.path().join("bad");
        std::fs::create_dir(&bad).unwrap();
        std::fs::write(
            bad.join("pipeline.toml"),
            "version = 1\n[[plugin]]\nname = \"n\"\ncomponent = \"x.wasm\"\nmedia = [\"chat\"]\nconfig = 3\n",
        )
        .unwrap();
        let e = format!(
            "{:#}",
            Manifest::parse(&format!("{head}{tail}"), &bad).unwrap_err()
        );
        assert!(
            e.contains("[plugin.config] of the plugin's [[plugin]]"),
            "{e}"
        );
    }

    /// What the pipeline asks Zoom for (`[rtms]` events, audio, video, deskshare,
    /// transcript) is taken from `[test] pipeline`, and nothing else of its `[rtms]`.
    #[test]
    fn what_zoom_is_asked_for_comes_from_the_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pipeline.toml"),
            "version = 1\n[rtms]\nevents = [\"participant-join\"]\nmax_streams = 3\n\
             [rtms.audio]\nper_speaker = true\n\
             [[plugin]]\nname = \"n\"\ncomponent = \"x.wasm\"\nmedia = [\"audio\"]\n",
        )
        .unwrap();
        let text = "[plugin]\nname = \"n\"\nlang = \"c\"\n[test]\npipeline = \"pipeline.toml\"\n";
        let m = Manifest::parse(text, dir.path()).unwrap();
        let want: toml::Table =
            toml::from_str("events = [\"participant-join\"]\naudio = { per_speaker = true }\n")
                .unwrap();
        assert_eq!(m.zoom, want);
        let alone = "[plugin]\nname = \"n\"\nlang = \"c\"\nmedia = [\"audio\"]\n";
        assert!(Manifest::parse(alone, dir.path()).unwrap().zoom.is_empty());
    }

    /// `media` is taken from the pipeline `[test] pipeline` names when the manifest leaves it
    /// out; set in both and different, it is refused naming both.
    #[test]
    fn media_is_declared_in_one_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pipeline.toml"),
            "version = 1\n[[plugin]]\nname = \"n\"\ncomponent = \"x.wasm\"\nmedia = [\"chat\", \"event\"]\n",
        )
        .unwrap();
        let head = "[plugin]\nname = \"n\"\nlang = \"c\"\n";
        let tail = "[test]\npipeline = \"pipeline.toml\"\n";
        let m = Manifest::parse(&format!("{head}{tail}"), dir.path()).unwrap();
        assert_eq!(m.media, ["chat", "event"]);
        let same = format!("{head}media = [\"chat\", \"event\"]\n{tail}");
        assert_eq!(
            Manifest::parse(&same, dir.path()).unwrap().media,
            ["chat", "event"]
        );
        let other = format!("{head}media = [\"audio\"]\n{tail}");
        let e = format!("{:#}", Manifest::parse(&other, dir.path()).unwrap_err());
        assert!(
            e.contains("[plugin] media = [\"audio\"] here, but media = [\"chat\", \"event\"]"),
            "{e}"
        );
        assert!(e.contains("declare the kinds in one place"), "{e}");
        let e = format!("{:#}", Manifest::parse(head, dir.path()).unwrap_err());
        assert!(e.contains("[plugin] media is not set"), "{e}");
    }
}
