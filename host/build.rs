//! Builds the WebAssembly plugins in `plugins/` (their own cargo workspace, target
//! wasm32-wasip2) as part of the host's normal build, so `cargo build`, `cargo test` and
//! `cargo run` work on a fresh machine with nothing but stable Rust and rustup, and embeds the
//! demo's components in the binary.
//!
//! Everything it writes is under `OUT_DIR`:
//!
//! 1. Installs the `wasm32-wasip2` target with `rustup target add` when the toolchain lacks it.
//! 2. Runs `cargo build --release` in `plugins/` with its own target dir,
//!    `$OUT_DIR/plugins-target` (stable from one run to the next, so rebuilds are
//!    incremental), after removing the variables cargo sets for build scripts (and the user's
//!    build settings meant for the host) that would leak into that nested build.
//! 3. Copies every component to `$OUT_DIR/rtms-plugins/` (only when its bytes changed, and by
//!    rename, so a reader never sees half a file), and exposes that directory to the host's
//!    tests and benches as `env!("RTMS_PLUGINS_DIR")`.
//! 4. Writes `$OUT_DIR/demo_components.rs`: the components the demo pipeline names, as
//!    `include_bytes!`, so `rtms-host demo` runs from an installed binary too.
//!
//! Set `RTMS_SKIP_PLUGIN_BUILD=1` to skip steps 1 and 2 when building the plugins yourself
//! (`cd plugins && cargo build --release`); step 3 then copies whatever
//! `plugins/target/wasm32-wasip2/release/` holds.
//!
//! The build reruns when anything in `plugins/` other than `target/` and the folders of
//! plugins in other languages (those with an `rtms-plugin.toml`) changes, or `wit/`.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target every plugin is built for.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Set to skip installing the target and building the plugins.
const SKIP_VAR: &str = "RTMS_SKIP_PLUGIN_BUILD";

/// The components `examples/demo-pipeline.toml.in` names, embedded in the binary.
const DEMO_COMPONENTS: &[&str] = &[
    "transcript_writer",
    "keyword_alerter",
    "audio_recorder",
    "speech_to_text",
    "meeting_summary",
];

/// Variables removed from the nested cargo's environment. Cargo sets some of them for build
/// scripts, and the user's settings for the host build (a linker wrapper, coverage or
/// `-C target-cpu` flags, a shared target dir, clippy's driver) would break or slow a
/// wasm32 build. Prefixes end in `_`.
const CLEARED_VARS: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PROFILE_",
    "CARGO_LLVM_COV",
    "LLVM_PROFILE_FILE",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let plugins = root.join("plugins");
    let wit = root.join("wit");
    let build_out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    let target_dir = build_out.join("plugins-target");
    let out_dir = build_out.join("rtms-plugins");

    println!("cargo:rerun-if-env-changed={SKIP_VAR}");
    println!("cargo:rerun-if-changed={}", wit.display());
    for path in watched(&plugins) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rustc-env=RTMS_PLUGINS_DIR={}", out_dir.display());

    let skip = env::var_os(SKIP_VAR).is_some_and(|v| !v.is_empty() && v != "0");
    let release = if skip {
        // Built by hand in plugins/: read from there, write only under OUT_DIR.
        let release = plugins.join("target").join(WASM_TARGET).join("release");
        println!("cargo:rerun-if-changed={}", release.display());
        release
    } else {
        if let Err(msg) = ensure_target() {
            fail(&msg);
        }
        if let Err(msg) = build(&plugins, &target_dir) {
            fail(&msg);
        }
        target_dir.join(WASM_TARGET).join("release")
    };
    if let Err(msg) = publish(&release, &out_dir) {
        if skip {
            println!("cargo:warning={msg}");
        } else {
            fail(&msg);
        }
    }
    if let Err(msg) = embed_demo(&out_dir, &build_out.join("demo_components.rs")) {
        fail(&msg);
    }
}

/// Writes the Rust source that embeds the demo's components: a `DEMO_COMPONENTS` slice of
/// (file name, bytes). A component that is missing (possible only with `RTMS_SKIP_PLUGIN_BUILD`)
/// is left out; the demo then says which one and how to get it.
fn embed_demo(components: &Path, dest: &Path) -> Result<(), String> {
    let mut src = String::from("&[\n");
    for name in DEMO_COMPONENTS {
        let path = components.join(format!("{name}.wasm"));
        if path.is_file() {
            src.push_str(&format!(
                "    ({:?}, include_bytes!({:?}).as_slice()),\n",
                format!("{name}.wasm"),
                path.display().to_string()
            ));
        }
    }
    src.push_str("]\n");
    if fs::read_to_string(dest).is_ok_and(|old| old == src) {
        return Ok(());
    }
    fs::write(dest, src).map_err(|e| format!("cannot write {} ({e})", dest.display()))
}

/// Stops the build with `msg`, which names the problem and the fix. Cargo prints a failed
/// build script's stderr.
fn fail(msg: &str) -> ! {
    eprintln!("error: building the WebAssembly plugins failed: {msg}");
    std::process::exit(1);
}

/// Everything under `plugins/` the components are built from: all top-level entries except
/// `target/`, other hidden entries than `.cargo/`, and the folders of plugins in other
/// languages (cargo watches directories recursively).
fn watched(plugins: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(plugins) else {
        return vec![plugins.to_path_buf()];
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name != "target"
                && (!name.starts_with('.') || name == ".cargo")
                // Plugins in other languages (an rtms-plugin.toml, built by `rtms-host
                // plugin build` into their own build/) are not part of this build.
                && !e.path().join("rtms-plugin.toml").is_file()
        })
        .map(|e| e.path())
        .collect();
    paths.sort();
    paths
}

/// The `rustc` cargo builds with, honouring `RUSTC` as cargo sets it for build scripts.
fn rustc() -> OsString {
    env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

/// True when the toolchain has the standard library for [`WASM_TARGET`].
fn has_target() -> bool {
    let out = Command::new(rustc())
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            fs::read_dir(&dir).is_ok_and(|mut entries| {
                entries.any(|e| {
                    e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
                })
            })
        }
        _ => false,
    }
}

/// Installs [`WASM_TARGET`] with rustup when it is missing.
fn ensure_target() -> Result<(), String> {
    if has_target() {
        return Ok(());
    }
    let hint = format!(
        "install it yourself (`rustup target add {WASM_TARGET}`), or build the plugins separately \
         and set {SKIP_VAR}=1"
    );
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| {
            format!(
                "the Rust target {WASM_TARGET} is missing and rustup could not be run ({e}); {hint}"
            )
        })?;
    if !status.success() {
        return Err(format!(
            "the Rust target {WASM_TARGET} is missing and `rustup target add {WASM_TARGET}` failed \
             ({status}); {hint}"
        ));
    }
    if !has_target() {
        return Err(format!(
            "`rustup target add {WASM_TARGET}` succeeded but rustc still lacks the target (is \
             RUSTC pointing outside rustup's toolchain?); {hint}"
        ));
    }
    Ok(())
}

/// Runs `cargo build --release` in `plugins/`, forwarding its output on failure.
fn build(plugins: &Path, target_dir: &Path) -> Result<(), String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(plugins)
        .arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null());
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if CLEARED_VARS.iter().any(|v| {
            if v.ends_with('_') {
                key.starts_with(v)
            } else {
                key == *v
            }
        }) {
            cmd.env_remove(key.as_ref());
        }
    }
    let out = cmd
        .output()
        .map_err(|e| format!("could not run cargo to build plugins/ ({e})"))?;
    // Cargo shows a build script's output with `-vv` or when it fails.
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!(
            "`cargo build --release` in {} failed ({}); its output is above. Fix the plugin, or \
             set {SKIP_VAR}=1 to build the host without rebuilding the plugins",
            plugins.display(),
            out.status
        ));
    }
    Ok(())
}

/// Copies every `.wasm` in `release` to `out_dir`, replacing only files whose bytes changed.
fn publish(release: &Path, out_dir: &Path) -> Result<(), String> {
    let entries = fs::read_dir(release).map_err(|e| {
        format!(
            "no built plugins in {} ({e}); build them with `cargo build --release` in plugins/",
            release.display()
        )
    })?;
    fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create {} ({e})", out_dir.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let src = entry.path();
        if src.extension().is_none_or(|ext| ext != "wasm") {
            continue;
        }
        let bytes = fs::read(&src).map_err(|e| format!("cannot read {} ({e})", src.display()))?;
        let dest = out_dir.join(entry.file_name());
        if fs::read(&dest).is_ok_and(|old| old == bytes) {
            continue;
        }
        let tmp = out_dir.join(format!(".{}.tmp", entry.file_name().to_string_lossy()));
        fs::write(&tmp, &bytes)
            .and_then(|()| fs::rename(&tmp, &dest))
            .map_err(|e| format!("cannot write {} ({e})", dest.display()))?;
    }
    Ok(())
}
