//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes tens of milliseconds for a Rust plugin and
//! seconds for Python or JavaScript ones; loading the precompiled artifact takes a fraction
//! of a millisecond. Entries are keyed by the SHA-256 of the component bytes and by the
//! engine's compatibility hash (wasmtime version, target and settings), so a changed engine
//! never loads a stale artifact. Writes are atomic (temporary file, then rename); a corrupt
//! or unreadable entry is removed and the component recompiled.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

pub struct CompileCache {
    dir: Option<PathBuf>,
    engine: Engine,
    /// Distinguishes artifacts of engines with different settings or versions.
    engine_key: String,
}

impl CompileCache {
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
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
            std::fs::create_dir_all(dir)?;
            let bytes = component
                .serialize()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let tmp = dir.join(format!(".{hash}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compile-cache entry");
        }
    }
}
