//! The toolchains `rtms-host plugin build` uses, installed on first use into a cache:
//! `$RTMS_TOOLCHAIN_DIR`, else `$XDG_CACHE_HOME/rtms-host/toolchains`, else
//! `~/.cache/rtms-host/toolchains`.
//!
//! - Python: `componentize-py` from PyPI, in a virtual environment made with `python3 -m venv`.
//! - JavaScript: the `componentize-js` command line from npm (which also brings
//!   `componentize-qjs`), installed with `npm install --prefix`.
//! - C: Debian's `clang-19` and `wasi-libc` (the apt packages are named in the error when
//!   they are missing; `scripts/plugin-toolchains` installs them); bindings, component
//!   encoding and the WASI adapter are done inside `rtms-host`.
//! - Rust: `cargo` with the `wasm32-wasip2` target (added with rustup when missing).
//!
//! The cache holds programs `plugin build` runs, so it must be this user's alone: it is
//! created mode 0700, and one owned by another user or writable by group or others (say, a
//! directory planted under the temp directory, the last fallback) is refused with the fix.
//!
//! Installs are serialised by a lock file per tool, so parallel builds share one install, and
//! marked complete only once they succeeded; a half-finished install is redone.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The componentize-py release used for Python plugins.
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// The componentize-js release used for JavaScript plugins.
pub const COMPONENTIZE_JS: &str = "0.23.0";
/// The clang the C plugins are compiled with (Debian's `clang-19`).
pub const CLANG: &str = "clang-19";
/// The apt packages a C plugin needs.
pub const C_APT_PACKAGES: &str = "clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32";

/// The cache root for toolchains and built components, created private (0700) when missing
/// and refused when it is not this user's alone (see [`prepare`]).
pub fn root() -> Result<PathBuf> {
    let root = location();
    prepare(&root)?;
    Ok(root)
}

/// Where the cache root is, before any check.
fn location() -> PathBuf {
    if let Some(d) = std::env::var_os("RTMS_TOOLCHAIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| Path::new(d).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| Path::new(h).is_absolute())
                .map(|h| Path::new(&h).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("rtms-host").join("toolchains")
}

/// Creates `dir` (and missing parents) mode 0700 when missing, then refuses it, with the fix,
/// when it is not a directory, is owned by another user, or is writable by group or others:
/// another local user could otherwise plant the programs `plugin build` runs.
pub fn prepare(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the toolchain cache {}", dir.display()))?;
    }
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot inspect the toolchain cache {}", dir.display()))?;
    let fix = "set RTMS_TOOLCHAIN_DIR to a directory only you can write";
    if !meta.is_dir() {
        bail!(
            "the toolchain cache {} is not a directory (a symlink or a file): remove it, or {fix}",
            dir.display()
        );
    }
    if let Some(me) = crate::sandbox::cache::euid()
        && meta.uid() != me
    {
        bail!(
            "refusing the toolchain cache {}: it is owned by uid {}, not by this user (uid {me}), and `plugin build` runs the programs in it: remove it, or {fix}",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "refusing the toolchain cache {}: it is writable by group or others (mode {:o}) and `plugin build` runs the programs in it: run `chmod 700 {}`, or {fix}",
            dir.display(),
            meta.mode() & 0o7777,
            dir.display()
        );
    }
    Ok(())
}

/// Runs `install` into `dir` once: under a lock, unless `dir/.complete` exists.
fn once(
    dir: &Path,
    what: &str,
    about: &str,
    install: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    prepare(dir.parent().unwrap_or(dir))?;
    if dir.join(".complete").is_file() {
        return Ok(());
    }
    let lock_path = dir.with_extension("lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    if dir.join(".complete").is_file() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot remove the unfinished install {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    eprintln!(
        "rtms-host: installing {what} into {} (first use only; {about})",
        dir.display()
    );
    let t = Instant::now();
    install(dir)?;
    std::fs::write(dir.join(".complete"), what)
        .with_context(|| format!("cannot write {}", dir.join(".complete").display()))?;
    eprintln!(
        "rtms-host: installed {what} in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs a command, failing with its output and `hint` when it does not succeed.
pub fn run(cmd: &mut Command, hint: &str) -> Result<std::process::Output> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {shown} ({hint})"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // componentize-py appends a long Rust backtrace of its own that says nothing
        // about the plugin: keep what comes before it.
        let stderr = stderr
            .split_once("\nStack backtrace:")
            .map_or(stderr.as_ref(), |(head, _)| head)
            .trim_end();
        bail!(
            "{shown} failed ({}):\n{}{stderr}\n{hint}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
        );
    }
    Ok(out)
}

/// The `componentize-py` command, installed on first use.
pub fn componentize_py() -> Result<PathBuf> {
    let dir = root()?.join(format!("componentize-py-{COMPONENTIZE_PY}"));
    once(
        &dir,
        &format!("componentize-py {COMPONENTIZE_PY}"),
        "a PyPI download of about 40 MB",
        |dir| {
            let python = std::env::var_os("RTMS_PYTHON").unwrap_or_else(|| "python3".into());
            run(
                Command::new(&python)
                    .args(["-m", "venv"])
                    .arg(dir.join("venv")),
                "Python plugins need python3 with the venv module (Debian: apt-get install python3-venv); \
                 set RTMS_PYTHON to use another interpreter",
            )?;
            run(
                Command::new(dir.join("venv/bin/pip"))
                    .args(["install", "--quiet", "--disable-pip-version-check"])
                    .arg(format!("componentize-py=={COMPONENTIZE_PY}")),
                "pip could not install componentize-py from PyPI: check the connection to pypi.org \
                 (or the PIP_INDEX_URL mirror)",
            )?;
            Ok(())
        },
    )?;
    Ok(dir.join("venv/bin/componentize-py"))
}

/// The folder of the JavaScript tools (`componentize-js`, `componentize-qjs`), installed on
/// first use.
pub fn js_bin() -> Result<PathBuf> {
    let dir = root()?.join(format!("componentize-js-{COMPONENTIZE_JS}"));
    once(
        &dir,
        &format!("componentize-js {COMPONENTIZE_JS}"),
        "an npm download of about 150 packages, 30 s",
        |dir| {
            run(
                Command::new("npm")
                    .args([
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--loglevel=error",
                        "--prefix",
                    ])
                    .arg(dir)
                    .arg(format!(
                        "@bytecodealliance/componentize-js@{COMPONENTIZE_JS}"
                    )),
                "JavaScript plugins need Node.js 18 or newer with npm (Debian: apt-get install nodejs npm) \
                 and access to registry.npmjs.org",
            )?;
            Ok(())
        },
    )?;
    Ok(dir.join("node_modules/.bin"))
}

/// Where clang finds the WASI headers and libc.
pub const WASI_SYSROOT: &str = "/usr";

/// The clang for C plugins (`$RTMS_CLANG`, else `clang-19` on PATH), after checking that it
/// and wasi-libc are installed.
pub fn clang() -> Result<PathBuf> {
    let clang = std::env::var_os("RTMS_CLANG").unwrap_or_else(|| CLANG.into());
    let missing = || {
        anyhow::anyhow!(
            "C plugins need {CLANG} and wasi-libc: install them with \
             `sudo apt-get install -y {C_APT_PACKAGES}` (or run scripts/plugin-toolchains), \
             or set RTMS_CLANG to a clang that targets wasm32-wasi"
        )
    };
    let ok = Command::new(&clang)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return Err(missing()).context(format!("{} is not installed", clang.to_string_lossy()));
    }
    let header = Path::new(WASI_SYSROOT).join("include/wasm32-wasi/stdlib.h");
    if !header.is_file() {
        return Err(missing()).context(format!(
            "wasi-libc is missing ({} not found)",
            header.display()
        ));
    }
    Ok(PathBuf::from(clang))
}

/// `cargo`, with the wasm32-wasip2 target added when rustup lacks it.
pub fn rust_target() -> Result<()> {
    let out = Command::new("rustc").args(["--print", "sysroot"]).output();
    let has = out.ok().is_some_and(|o| {
        let root = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        Path::new(&root).join("lib/rustlib/wasm32-wasip2").is_dir()
    });
    if !has {
        eprintln!("rtms-host: adding the wasm32-wasip2 target with rustup (first use only)");
        run(
            Command::new("rustup").args(["target", "add", "wasm32-wasip2"]),
            "Rust plugins need the wasm32-wasip2 target: install rustup from https://rustup.rs",
        )?;
    }
    Ok(())
}

/// One line naming the toolchain of `lang`, part of the built-component cache key.
pub fn id(lang: super::manifest::Lang) -> String {
    use super::manifest::Lang;
    match lang {
        Lang::Python => format!("componentize-py {COMPONENTIZE_PY}"),
        Lang::Js => format!("componentize-js {COMPONENTIZE_JS}"),
        Lang::C => {
            let clang = std::env::var("RTMS_CLANG").unwrap_or_else(|_| CLANG.into());
            let v = Command::new(&clang)
                .arg("--version")
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned()
                })
                .unwrap_or_default();
            format!("{clang} {v}; wit-bindgen-c 0.60.0; wit-component 0.254; adapter 48.0.8")
        }
        Lang::Rust => "cargo".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_cache_is_created_private() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("rtms-host/toolchains");
        prepare(&dir).unwrap();
        for p in [&dir, &d.path().join("rtms-host")] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", p.display());
        }
    }

    #[test]
    fn a_planted_cache_writable_by_others_is_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("toolchains");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = format!("{:#}", prepare(&dir).unwrap_err());
        assert!(e.contains(&dir.display().to_string()), "{e}");
        assert!(
            e.contains("chmod 700") && e.contains("RTMS_TOOLCHAIN_DIR"),
            "{e}"
        );
        // A tool install under it is refused too, before anything runs.
        let e = once(&dir.join("tool"), "tool", "test", |_| {
            panic!("an install ran in a planted cache")
        })
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("writable by group or others"),
            "{e:#}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        prepare(&dir).unwrap();
    }

    #[test]
    fn a_symlinked_cache_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("toolchains");
        std::os::unix::fs::symlink(d.path(), &dir).unwrap();
        let e = format!("{:#}", prepare(&dir).unwrap_err());
        assert!(e.contains("not a directory"), "{e}");
    }
}
