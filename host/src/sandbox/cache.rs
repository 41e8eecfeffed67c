//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes tens of milliseconds for a Rust plugin and
//! seconds for Python or JavaScript ones; loading the precompiled artifact takes a fraction
//! of a millisecond. Entries are keyed by the SHA-256 of the component bytes and by the
//! engine's compatibility hash (wasmtime version, target and settings), so a changed engine
//! never loads a stale artifact. Writes are atomic (temporary file, then rename); a corrupt
//! or unreadable entry is removed and the component recompiled.
//!
//! A cache entry is loaded as native code, so whoever can write the cache directory can run
//! code in this process. The host therefore creates the directory private (mode 0700) and
//! refuses to use one that is owned by another user or writable by group or others (and
//! entries that are), with an error naming the directory and the fix; it then compiles
//! without the cache.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

pub struct CompileCache {
    dir: Option<PathBuf>,
    engine: Engine,
    /// Distinguishes artifacts of engines with different settings or versions.
    engine_key: String,
}

impl CompileCache {
    /// A cache in `dir`, created private when missing. A directory that others could
    /// write is refused (logged as an error with the fix) and the cache is off.
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let dir = dir.and_then(|d| match prepare_dir(&d) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::error!("{e}; compiling without the cache");
                None
            }
        });
        Self {
            dir,
            engine: engine.clone(),
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    fn path(&self, hash: &str) -> Option<PathBuf> {
        Some(
            self.dir
                .as_ref()?
                .join(format!("{hash}-{}.cwasm", self.engine_key)),
        )
    }

    /// The cached compiled component, if present and loadable.
    pub fn get(&self, hash: &str) -> Option<Component> {
        let path = self.path(hash)?;
        if !path.exists() {
            return None;
        }
        if let Err(e) = private(&path, false) {
            tracing::error!("{e}; compiling instead of loading it");
            return None;
        }
        // SAFETY: the file was produced by `Engine::precompile_component`/`serialize` of an
        // engine with the same compatibility hash (it is in the file name), in a directory
        // the operator gives to this host alone; wasmtime validates the header as well.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(&self.engine, &path) };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping unreadable compile-cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component. Failures are logged, never fatal: the cache only
    /// saves time.
    pub fn put(&self, hash: &str, component: &Component) {
        let Some(path) = self.path(hash) else { return };
        let result = (|| -> std::io::Result<()> {
            let dir = path.parent().expect("cache entries live in the cache dir");
            let bytes = component
                .serialize()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let tmp = dir.join(format!(".{hash}.{}.tmp", std::process::id()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            std::io::Write::write_all(&mut f, &bytes)?;
            drop(f);
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compile-cache entry");
        }
    }
}

/// Creates `dir` (mode 0700) if missing, then checks that only this user can write it.
pub fn prepare_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create the compile cache {}: {e}", dir.display()))?;
    }
    private(dir, true)
}

/// Refuses a cache directory (or entry) owned by another user or writable by group or
/// others: its contents are loaded as native code.
fn private(path: &Path, is_dir: bool) -> Result<(), String> {
    let what = if is_dir { "directory" } else { "entry" };
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        format!(
            "cannot inspect the compile cache {what} {}: {e}",
            path.display()
        )
    })?;
    if is_dir && !meta.is_dir() {
        return Err(format!(
            "compile cache {} is not a directory: point runtime.cache_dir at a directory only this user can write",
            path.display()
        ));
    }
    if !is_dir && !meta.is_file() {
        return Err(format!(
            "compile cache entry {} is not a regular file: remove it",
            path.display()
        ));
    }
    if let Some(me) = euid()
        && meta.uid() != me
    {
        return Err(format!(
            "refusing the compile cache {what} {}: it is owned by uid {}, not by this user (uid {me}), and its contents would run as native code: `chown` it to this user or point runtime.cache_dir elsewhere",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "refusing the compile cache {what} {}: it is writable by group or others (mode {:o}) and its contents would run as native code: run `chmod {} {}`",
            path.display(),
            meta.mode() & 0o7777,
            if is_dir { "700" } else { "600" },
            path.display()
        ));
    }
    Ok(())
}

/// This process's effective user id, from `/proc/self/status` (`None` where there is no
/// procfs: then only the mode is checked).
pub(crate) fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_cache_dir_is_created_private() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/b");
        prepare_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_group_or_world_writable_cache_dir_is_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o770, 0o707, 0o777] {
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let e = prepare_dir(d.path()).unwrap_err();
            assert!(e.contains("writable by group or others"), "{e}");
            assert!(
                e.contains(&format!("chmod 700 {}", d.path().display())),
                "{e}"
            );
        }
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_dir(d.path()).unwrap();
    }
}
