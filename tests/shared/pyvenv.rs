//! A Python virtualenv with some PyPI packages, created on first use and reused after: for
//! Zoom's SDK (conformance test and benchmark) and the operator tests' Prometheus parser and
//! Playwright. Shared by `#[path]` from the crates that need it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Runs `cmd`; its stderr (and stdout) in the error when it fails.
pub fn run(cmd: &mut std::process::Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The python of the virtualenv at `dir` in which `import <imports>` works, creating it
/// (with `pip install <packages>`) when it is missing or broken.
pub fn python(dir: &Path, packages: &[&str], imports: &str) -> Result<PathBuf, String> {
    let py = dir.join("bin").join("python");
    let check = || run(std::process::Command::new(&py).args(["-c", &format!("import {imports}")]));
    if py.exists() && check().is_ok() {
        return Ok(py);
    }
    let base = ["python3.11", "python3"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .ok_or("no python3 on PATH (Python 3.10 to 3.13 is needed)")?;
    let _ = std::fs::remove_dir_all(dir);
    run(std::process::Command::new(base)
        .args(["-m", "venv"])
        .arg(dir))?;
    run(std::process::Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages))
    .map_err(|e| format!("pip could not install {packages:?}: {e}"))?;
    check()?;
    Ok(py)
}
