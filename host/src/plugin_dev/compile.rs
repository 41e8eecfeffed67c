//! `rtms-host plugin build`: a plugin folder to a component, with its language's toolchain.
//!
//! Built components are cached in `<toolchain cache>/built/`, keyed by the SHA-256 of the
//! contract, the toolchain's name and version, and every source file (path and bytes): a
//! rebuild with nothing changed copies the cached file (a Python component takes about 7 s
//! to build, a JavaScript one about 5 s). Rust plugins are left to cargo's own incremental
//! build.
//!
//! C is built without external binding or component tools: the bindings come from the
//! `wit-bindgen-c` crate, `clang-19` compiles a WASI preview1 reactor module, and the
//! `wit-component` crate wraps it as a component with the preview1 adapter of wasmtime
//! 48.0.8 (embedded from `wasi-preview1-component-adapter-provider`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::contract::Contract;
use super::manifest::{Lang, Manifest};
use super::toolchain;

/// The plugin contract this host serves, as shipped in `wit/plugin.wit`.
pub const WIT: &str = include_str!("../../../wit/plugin.wit");

/// What a build did.
#[derive(Debug, Clone)]
pub struct Built {
    pub component: PathBuf,
    pub bytes: u64,
    /// True when the component came from the cache (nothing changed).
    pub cached: bool,
    pub elapsed: Duration,
}

/// Builds the plugin `m` describes (a debug build: a C component keeps its DWARF, so a
/// trap names the function and the source line), printing a progress line to stderr unless
/// `quiet`.
pub fn build(m: &Manifest, quiet: bool) -> Result<Built> {
    build_as(m, quiet, Profile::Debug)
}

/// What a build keeps for finding faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Profile {
    /// C: DWARF (`-g`, source paths relative to the plugin folder) and the name section.
    #[default]
    Debug,
    /// C: the name section alone (a trap names the function), for production.
    Release,
}

/// [`build`] with the profile `profile`.
pub fn build_as(m: &Manifest, quiet: bool, profile: Profile) -> Result<Built> {
    let t = Instant::now();
    if !m.source.exists() {
        bail!(
            "the sources {} do not exist ([plugin] source in {})",
            m.source.display(),
            m.dir.join(super::manifest::FILE).display()
        );
    }
    if m.lang == Lang::Rust {
        if !quiet {
            eprintln!("rtms-host: building {} (rust) with cargo", m.name);
        }
        build_rust(m)?;
        return finish(m, false, t);
    }
    let key = cache_key(m, profile)?;
    let cached = toolchain::root()?
        .join("built")
        .join(format!("{}-{}.wasm", m.name, &key[..24]));
    if cached.is_file() {
        copy_atomic(&cached, &m.component)?;
        if !quiet {
            eprintln!(
                "rtms-host: {} ({}) is up to date (cached build {})",
                m.name,
                m.lang.as_str(),
                cached.display()
            );
        }
        return finish(m, true, t);
    }
    // Installs come first: their own progress lines then precede the build's.
    let tools = match m.lang {
        Lang::Python => Tool::Path(toolchain::componentize_py()?),
        Lang::Js => Tool::Path(toolchain::js_bin()?),
        Lang::C => Tool::Path(toolchain::clang()?),
        Lang::Rust => unreachable!(),
    };
    if !quiet {
        eprintln!(
            "rtms-host: building {} ({}) with {}",
            m.name,
            m.lang.as_str(),
            toolchain::id(m.lang)
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix("rtms-plugin-build-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let wit_dir = scratch.path().join("wit");
    m.contract.write(&wit_dir)?;
    let out = scratch.path().join("component.wasm");
    let Tool::Path(tool) = tools;
    match m.lang {
        Lang::Python => build_python(m, &tool, &wit_dir, &out)?,
        Lang::Js => build_js(m, &tool, &wit_dir, &out)?,
        Lang::C => build_c(m, &tool, scratch.path(), &out, profile)?,
        Lang::Rust => unreachable!(),
    }
    if let Some(dir) = cached.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    copy_atomic(&out, &cached)?;
    copy_atomic(&out, &m.component)?;
    finish(m, false, t)
}

enum Tool {
    Path(PathBuf),
}

fn finish(m: &Manifest, cached: bool, t: Instant) -> Result<Built> {
    let bytes = std::fs::metadata(&m.component)
        .with_context(|| {
            format!(
                "the build did not produce {} ([plugin] component in {})",
                m.component.display(),
                m.dir.join(super::manifest::FILE).display()
            )
        })?
        .len();
    Ok(Built {
        component: m.component.clone(),
        bytes,
        cached,
        elapsed: t.elapsed(),
    })
}

/// Copies `from` to `to` through a temporary file and a rename, creating `to`'s folder, and
/// leaves `to` alone when it already holds the same bytes.
fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    std::fs::write(tmp.path(), &bytes)?;
    tmp.persist(to)
        .with_context(|| format!("cannot write {}", to.display()))?;
    Ok(())
}

/// The source files of a plugin, sorted, skipping build output and hidden entries.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.')
            || ["__pycache__", "node_modules", "target", "build"].contains(&name.as_ref())
        {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            sources(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// The key of the built-component cache.
pub fn cache_key(m: &Manifest, profile: Profile) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"rtms-plugin-build 1\n");
    if m.lang == Lang::C {
        // The debug flags: DWARF with paths relative to the plugin folder.
        h.update(format!("{profile:?} relative-dwarf\n").as_bytes());
    }
    h.update(m.lang.as_str().as_bytes());
    h.update(b"\n");
    h.update(toolchain::id(m.lang).as_bytes());
    h.update(b"\n");
    h.update(m.entry.as_bytes());
    h.update(b"\n");
    h.update(m.contract.key_material());
    if m.lang == Lang::Js {
        // The wrapper the build puts around the module is part of what it builds.
        h.update(include_str!("templates/entry.js").as_bytes());
    }
    let mut files = Vec::new();
    sources(&m.source, &mut files)?;
    for f in files {
        let rel = f.strip_prefix(&m.source).unwrap_or(&f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update(b"\0");
        let bytes = std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

fn build_python(m: &Manifest, tool: &Path, wit: &Path, out: &Path) -> Result<()> {
    if !m.source.join(format!("{}.py", m.entry)).is_file() {
        bail!(
            "{} is missing: [plugin] entry names the Python module that defines `class Handler`",
            m.source.join(format!("{}.py", m.entry)).display()
        );
    }
    toolchain::run(
        Command::new(tool)
            .arg("-d")
            .arg(wit)
            .args(["-w", "plugin", "componentize", "-p"])
            .arg(&m.source)
            .arg(&m.entry)
            .arg("-o")
            .arg(out)
            .env_remove("VIRTUAL_ENV"),
        "see docs/plugin-guide/python.md (the module must define `class Handler(exports.Handler)` \
         after `from wit_world import exports`)",
    )?;
    Ok(())
}

fn build_js(m: &Manifest, bin: &Path, wit: &Path, out: &Path) -> Result<()> {
    let entry = m.source.join(&m.entry);
    if !entry.is_file() {
        bail!(
            "{} is missing: [plugin] entry names the JavaScript module that exports `handler`",
            entry.display()
        );
    }
    // 0.1 keeps wasi:http out of the component; 0.2 keeps the engine's `fetch` (its
    // wasi:http@0.2.10 imports, which the host's 0.2.12 serves) beside the world's 0.2.12.
    let disabled: &[&str] = match m.contract {
        Contract::V01 => &["http", "fetch-event"],
        Contract::V02 => &["fetch-event"],
    };
    let wrapper = EntryWrapper::write(m, &entry)?;
    let built = toolchain::run(
        Command::new(bin.join("componentize-js"))
            .current_dir(&m.dir)
            .arg(&wrapper.path)
            .arg("-w")
            .arg(wit)
            .args(["-n", "plugin", "-d"])
            .args(disabled)
            .arg("-o")
            .arg(out),
        "see docs/plugin-guide/javascript.md (imports come from 'rtms:plugin/host@0.1.0', or \
         @0.2.0 with [plugin] contract = \"0.2\"; the module exports `handler`)",
    );
    drop(wrapper);
    if let Err(e) = built {
        // componentize-js says only "failed to parse JS source": let node say where.
        if let Some(syntax) = syntax_error(&entry, wit) {
            return Err(e.context(syntax));
        }
        return Err(e);
    }
    Ok(())
}

/// The module componentize-js builds from: the author's `handler`, each call wrapped so a
/// thrown `Error` (a `TypeError`, `new Error("…")`, a capability's error) reaches the host as
/// its name, message and source lines instead of a trap ("expected a string"). It lives in
/// the plugin folder (componentize-js sees only the folder it runs in) beside the component,
/// and is removed after the build.
struct EntryWrapper {
    path: PathBuf,
}

impl EntryWrapper {
    const NAME: &'static str = "rtms-entry.js";

    fn write(m: &Manifest, entry: &Path) -> Result<Self> {
        let dir = m
            .component
            .parent()
            .filter(|d| d.starts_with(&m.dir))
            .unwrap_or(&m.dir)
            .to_path_buf();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(Self::NAME);
        let import = relative_import(&dir, entry)?;
        let text = include_str!("templates/entry.js")
            .replace("{{import}}", &import)
            .replace("{{self}}", Self::NAME);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for EntryWrapper {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `entry` as a relative module specifier from `dir` (both inside the plugin folder).
fn relative_import(dir: &Path, entry: &Path) -> Result<String> {
    let from: Vec<_> = dir.components().collect();
    let to: Vec<_> = entry.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if common == 0 {
        bail!("{} and {} share no folder", dir.display(), entry.display());
    }
    let mut parts: Vec<String> = vec![".".into()];
    parts.extend(std::iter::repeat_n("..".to_string(), from.len() - common));
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    let spec = parts.join("/");
    if spec.contains('\'') || spec.contains('\\') {
        bail!(
            "{}: a path with a quote or a backslash cannot be imported",
            entry.display()
        );
    }
    Ok(spec)
}

/// node's own syntax check of a module, when it finds an error.
fn syntax_error(entry: &Path, scratch: &Path) -> Option<String> {
    let copy = scratch.join("syntax-check.mjs");
    std::fs::copy(entry, &copy).ok()?;
    let out = Command::new("node")
        .arg("--check")
        .arg(&copy)
        .output()
        .ok()?;
    if out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stderr)
        .replace(&copy.display().to_string(), &entry.display().to_string());
    let text: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim_start().starts_with("at "))
        .collect();
    Some(format!(
        "{} has a syntax error:\n{}",
        entry.display(),
        text.join("\n").trim()
    ))
}

/// C: bindings in process, clang to a preview1 reactor module, then a component.
fn build_c(m: &Manifest, clang: &Path, scratch: &Path, out: &Path, profile: Profile) -> Result<()> {
    // Beside the component, so an editor finds plugin.h too.
    let gen_dir = m
        .component
        .parent()
        .map_or_else(|| scratch.join("gen"), |d| d.join("gen"));
    write_c_bindings(&scratch.join("wit"), &gen_dir)?;
    let mut c_files = Vec::new();
    sources(&m.source, &mut c_files)?;
    c_files.retain(|f| f.extension().is_some_and(|e| e == "c"));
    if c_files.is_empty() {
        bail!("no .c files in {} ([plugin] source)", m.source.display());
    }
    let core = scratch.join("core.wasm");
    let compiled = toolchain::run(
        Command::new(clang)
            .args([
                "--target=wasm32-wasi",
                "-O2",
                "-mexec-model=reactor",
                "-Wall",
            ])
            .args(match profile {
                // Source paths in the DWARF relative to the plugin folder: `src/plugin.c`.
                Profile::Debug => vec![
                    "-g".to_owned(),
                    format!("-fdebug-prefix-map={}/=", m.dir.display()),
                    "-fdebug-compilation-dir=.".to_owned(),
                ],
                Profile::Release => vec!["-g0".to_owned()],
            })
            .arg(format!("--sysroot={}", toolchain::WASI_SYSROOT))
            .arg("-I")
            .arg(&gen_dir)
            .arg("-I")
            .arg(&m.source)
            .args(&c_files)
            .arg(gen_dir.join("plugin.c"))
            .arg(gen_dir.join("plugin_component_type.o"))
            .arg("-o")
            .arg(&core),
        "see docs/plugin-guide/c.md",
    )?;
    let warnings = String::from_utf8_lossy(&compiled.stderr);
    if !warnings.trim().is_empty() {
        eprint!("{warnings}");
    }
    let module = std::fs::read(&core)?;
    let bytes = componentize_core(&module)?;
    std::fs::write(out, bytes)?;
    Ok(())
}

/// Writes `plugin.h`, `plugin.c` and `plugin_component_type.o` (what `wit-bindgen c` makes)
/// for the world `plugin` of the `wit` folder (as [`Contract::write`] lays it out) into `dir`.
///
/// [`Contract::write`]: super::contract::Contract::write
pub fn write_c_bindings(wit: &Path, dir: &Path) -> Result<()> {
    use wit_bindgen_core::wit_parser::Resolve;
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit)
        .context("the plugin contract does not parse")?;
    let world = resolve.select_world(&[pkg], Some("plugin"))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("generating the C bindings")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, bytes) in files.iter() {
        std::fs::write(dir.join(name), bytes)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    Ok(())
}

/// A core module built against the bindings, as a component (with the preview1 reactor
/// adapter when the module imports WASI preview1).
pub fn componentize_core(module: &[u8]) -> Result<Vec<u8>> {
    use wasi_preview1_component_adapter_provider as adapter;
    wit_component::ComponentEncoder::default()
        .module(module)
        .context(
            "the compiled module carries no component type (was plugin_component_type.o linked?)",
        )?
        .validate(true)
        .adapter(
            adapter::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            adapter::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
        .context("making a component of the compiled module")
}

fn build_rust(m: &Manifest) -> Result<()> {
    toolchain::rust_target()?;
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&m.source);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k == "RUSTFLAGS"
            || k == "CARGO_ENCODED_RUSTFLAGS"
            || k == "CARGO_BUILD_TARGET"
            || k == "CARGO_TARGET_DIR"
            || k.starts_with("CARGO_PROFILE_")
            || k == "RUSTC_WRAPPER"
            || k == "RUSTC_WORKSPACE_WRAPPER"
        {
            cmd.env_remove(k.as_ref());
        }
    }
    let status = cmd
        .status()
        .context("cannot run cargo (Rust plugins need a Rust toolchain from https://rustup.rs)")?;
    if !status.success() {
        bail!("cargo build failed for {} ({status})", m.source.display());
    }
    Ok(())
}
