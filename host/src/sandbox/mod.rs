//! The WebAssembly runtime: one wasmtime `Engine`, the epoch ticker, compiled plugins and the
//! compile cache.
//!
//! Every wasm limit lives in this module tree: the engine's settings here (instances come
//! from the pool of [`pool`], sized from pipeline.toml, unless `[runtime] pool = "off"`),
//! per-store limits and the per-call deadline in [`instance`], the sandbox (WASI without sockets or
//! environment, only granted directories) in [`store`]; what a guest may hold and create
//! through the filesystem (descriptors, entries, symlinks) in [`fs_limits`], enforced by the
//! calls [`fs`] shadows; outgoing HTTP behind each plugin's allow-list and budget in [`net`];
//! guest messages made readable (WASI error names) in [`explain`]. What a plugin instance *does* with
//! frames — queues, batching, restarts — is the worker's business (`crate::dataplane::worker`).

pub mod bindings;
pub mod budget;
pub mod cache;
pub mod caps;
pub mod descriptors;
pub mod explain;
pub mod filebuf;
pub mod fs;
pub mod fs_limits;
pub mod imports;
pub mod instance;
pub mod net;
pub mod pool;
pub mod quota;
pub mod state;
pub mod store;
pub mod symbols;
pub mod ws;
pub mod ws_hub;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::sandbox::bindings::{PluginPre, v01, v02, v03};
use crate::sandbox::state::{MemoryStateStore, StateStore};
pub use instance::{CallError, Instance, InstanceSpec};
pub use store::StoreData;

/// The shared engine, linker and compile cache. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<StoreData>,
    cache: cache::CompileCache,
    quotas: Arc<quota::Quotas>,
    /// The descriptors every plugin of the process may hold together.
    descriptors: descriptors::Descriptors,
    /// Plugin state (contract 0.2), kept across reloads and restarts.
    state: Arc<dyn StateStore>,
    tick: Duration,
    ticker_stop: Arc<AtomicBool>,
    /// Plugins' buffered file writes and the thread that writes them out.
    files: Arc<filebuf::Flusher>,
    /// The pooling allocator's plan and numbers; `None`: on-demand allocation.
    pool: Option<Arc<pool::Pool>>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A plugin component, compiled and linked, ready to instantiate any number of times.
pub struct PluginCode {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Hex SHA-256 of the component bytes: identifies a version in logs and metrics.
    pub hash: String,
    pub pre: PluginPre<StoreData>,
    /// How the code was obtained, for logs and the start-up benchmark.
    pub source: CodeSource,
}

/// Where compiled code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeSource {
    /// Compiled now with Cranelift (and stored in the cache).
    Compiled,
    /// Loaded from the on-disk cache.
    Cache,
}

impl PluginCode {
    /// The first 12 hex digits of the hash, for log lines.
    pub fn short_hash(&self) -> &str {
        &self.hash[..12]
    }
}

/// Settings of the runtime as a whole.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// The epoch tick: the granularity of call deadlines and of cooperative yielding.
    pub epoch_tick: Duration,
    /// The process-wide budget of plugins' descriptors (`[runtime] plugin_open_files`);
    /// `None`: half of RLIMIT_NOFILE (see [`descriptors`]).
    pub plugin_open_files: Option<u64>,
    /// The pooling allocator's size (`[runtime] pool`, see [`pool`]); `None`: every
    /// instance maps its own memory, tables and stack.
    pub pool: Option<rtms_config::PoolPlan>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            epoch_tick: Duration::from_millis(5),
            plugin_open_files: None,
            pool: None,
        }
    }
}

/// Raises RLIMIT_NOFILE to its hard limit and sets the plugins' share of it.
fn descriptor_budget(cfg: &RuntimeConfig) -> Result<descriptors::Descriptors> {
    let nofile = descriptors::Nofile::raise()
        .map_err(|e| anyhow::anyhow!("cannot read the descriptor limit (RLIMIT_NOFILE): {e}"))?;
    let budget = nofile
        .budget(cfg.plugin_open_files)
        .map_err(anyhow::Error::msg)?;
    tracing::debug!(
        soft = nofile.soft,
        hard = nofile.hard,
        was = nofile.was,
        plugins = budget,
        "descriptor limit (RLIMIT_NOFILE) and the plugins' budget"
    );
    Ok(descriptors::Descriptors::new(budget))
}

impl Runtime {
    pub fn new(cfg: &RuntimeConfig) -> Result<Self> {
        let descriptors = descriptor_budget(cfg)?;
        let mut config = Config::new();
        // Calls yield at every epoch tick and trap past their deadline (see instance.rs).
        config.epoch_interruption(true);
        // Plugins' exports are plain (non-async) component functions; the async component
        // ABI machinery costs 2-3x per call and is not compiled in.
        config.concurrency_support(false);
        // A trap names the guest's function and source line when the component carries
        // DWARF (`plugin build` keeps it in debug builds); components without it cost
        // nothing more.
        config.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable);
        if let Some(plan) = &cfg.pool {
            pool::announce(plan).map_err(anyhow::Error::msg)?;
            pool::configure(&mut config, plan);
        }
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e:#}"))?;
        let pool = cfg
            .pool
            .map(|plan| Arc::new(pool::Pool::new(plan, engine.clone())));
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI HTTP: {e}"))?;
        fs::link(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link the WASI filesystem bounds: {e}"))?;
        link_contracts(&mut linker)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), cfg.epoch_tick, ticker_stop.clone())?;
        let cache = cache::CompileCache::new(cfg.cache_dir.clone(), &engine);
        let files = filebuf::Flusher::start()?;
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                quotas: Arc::default(),
                descriptors,
                state: Arc::new(MemoryStateStore::new()),
                tick: cfg.epoch_tick,
                ticker_stop,
                files,
                pool,
            }),
        })
    }

    /// The pooling allocator, when `[runtime] pool` is on.
    pub fn pool(&self) -> Option<&Arc<pool::Pool>> {
        self.inner.pool.as_ref()
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The measured usage of granted directories, for write quotas.
    pub fn quotas(&self) -> &Arc<quota::Quotas> {
        &self.inner.quotas
    }

    /// The descriptors every plugin of the process may hold together, and how many they
    /// hold.
    pub fn descriptors(&self) -> &descriptors::Descriptors {
        &self.inner.descriptors
    }

    /// Where plugin state lives: one store for the process, so state outlives instances,
    /// reloads and restarts.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.inner.state
    }

    /// Plugins' buffered file writes: [`filebuf::Flusher::flush_all`] at shutdown.
    pub fn files(&self) -> &filebuf::Flusher {
        &self.inner.files
    }

    /// The epoch tick length.
    pub fn tick(&self) -> Duration {
        self.inner.tick
    }

    /// Loads a component file: from the cache when this exact version was compiled before,
    /// otherwise compiles it (on a blocking thread) and stores it. Then links it against the
    /// contract: a component that lacks the exports or needs imports the host does not
    /// offer is refused here, with the linker's reason.
    pub async fn load(&self, path: &Path) -> Result<Arc<PluginCode>> {
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read component {}", path.display()))?;
        let this = self.clone();
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || this.load_bytes(&path, &bytes))
            .await
            .context("component compilation task failed")?
    }

    /// The blocking part of [`Runtime::load`].
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Arc<PluginCode>> {
        let hash = hex::encode(Sha256::digest(bytes));
        let started = Instant::now();
        let (component, source) = match self.inner.cache.get(&hash) {
            Some(c) => (c, CodeSource::Cache),
            None => {
                let component = compile(&self.inner.engine, path, bytes)?;
                self.inner.cache.put(&hash, &component);
                (component, CodeSource::Compiled)
            }
        };
        if let Some(pool) = &self.inner.pool {
            pool.admits(&component).map_err(|e| {
                anyhow::anyhow!("{} does not fit the instance pool: {e}", path.display())
            })?;
        }
        let pre = link(&self.inner.linker, path, &component)?;
        tracing::debug!(
            path = %path.display(),
            hash = &hash[..12],
            contract = pre.contract(),
            ?source,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "component loaded"
        );
        Ok(Arc::new(PluginCode {
            path: path.to_owned(),
            hash,
            pre,
            source,
        }))
    }
}

/// Links both versions of the contract (0.1 and 0.2) into `linker`. Their package versions
/// differ, so their interfaces are distinct names and live side by side.
fn link_contracts(linker: &mut Linker<StoreData>) -> Result<()> {
    use wasmtime::component::HasSelf;
    v01::Plugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
        .map_err(|e| anyhow::anyhow!("cannot link the contract rtms:plugin@0.1.0: {e}"))?;
    v02::Plugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
        .map_err(|e| anyhow::anyhow!("cannot link the contract rtms:plugin@0.2.0: {e}"))?;
    v03::rtms::plugin0_3_0::video::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
        .map_err(|e| anyhow::anyhow!("cannot link rtms:plugin/video@0.3.0: {e}"))?;
    v03::rtms::plugin0_3_0::events::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
        .map_err(|e| anyhow::anyhow!("cannot link rtms:plugin/events@0.3.0: {e}"))?;
    // 0.2's `types` is mapped onto 0.1's Rust types, so its (function-less) instance is
    // not added above; a component still imports it by its 0.2 name.
    linker
        .instance("rtms:plugin/types@0.2.0")
        .map_err(|e| anyhow::anyhow!("cannot link rtms:plugin/types@0.2.0: {e}"))?;
    Ok(())
}

/// Links `component` against the contract: a 0.2 plugin if it exports 0.2's handler, else a
/// 0.1 one. A component that lacks the exports or needs imports the host does not offer is
/// refused, with the linker's reason.
fn link(
    linker: &Linker<StoreData>,
    path: &Path,
    component: &Component,
) -> Result<PluginPre<StoreData>> {
    let pre = linker.instantiate_pre(component).map_err(|e| {
        anyhow::anyhow!(
            "{} does not fit the plugin contract (rtms:plugin@0.1.0, @0.2.0 or @0.3.0): {e:#}",
            path.display()
        )
    })?;
    if let Ok(p) = v03::PluginPre::new(pre.clone()) {
        return Ok(PluginPre::V03(p));
    }
    if let Ok(p) = v02::PluginPre::new(pre.clone()) {
        return Ok(PluginPre::V02(p));
    }
    v01::PluginPre::new(pre).map(PluginPre::V01).map_err(|e| {
        anyhow::anyhow!(
            "{} does not export the contract's `handler` interface (rtms:plugin/handler@0.3.0, @0.2.0 or @0.1.0): {e:#}",
            path.display()
        )
    })
}

fn compile(engine: &Engine, path: &Path, bytes: &[u8]) -> Result<Component> {
    if !bytes.starts_with(b"\0asm") {
        anyhow::bail!(
            "{} is not a WebAssembly file (it does not start with \\0asm)",
            path.display()
        );
    }
    if bytes.get(4..8) != Some(&[0x0d, 0x00, 0x01, 0x00]) {
        anyhow::bail!(
            "{} is a core wasm module, not a component: build for the wasm32-wasip2 target, or wrap it with `wasm-tools component new`",
            path.display()
        );
    }
    Component::new(engine, bytes)
        .map_err(|e| anyhow::anyhow!("cannot compile {}: {e:#}", path.display()))
}

/// Increments the engine's epoch every `tick` until `stop` is set. A plain thread, outside
/// the async runtime, so that a guest spinning on a runtime thread is still interrupted.
fn spawn_epoch_ticker(engine: Engine, tick: Duration, stop: Arc<AtomicBool>) -> Result<()> {
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .context("cannot start the epoch ticker thread")?;
    Ok(())
}
