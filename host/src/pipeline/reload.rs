//! Hot reload: watch pipeline.toml and every component, rebuild beside the running version,
//! swap at a batch boundary, refuse what does not load, roll back what keeps trapping.
//!
//! Triggers — a file change (the `notify` watcher, on the directories holding the pipeline
//! file and the components, so a rename-into-place is seen), SIGHUP, or `POST
//! /admin/reload` — are debounced, then the controller:
//!
//! 1. loads and validates the pipeline file again (a broken file is refused; the running
//!    pipeline is untouched);
//! 2. reports settings that cannot change live (listen address, credentials, RTMS and
//!    runtime settings, sinks) as needing a restart, on every reload until the restart;
//! 3. builds a new routing table: every component loaded (compile cache first) and
//!    trial-run (`init` with its config); any failure refuses the whole reload. What changed
//!    is `rtms_config::PipelineDiff`'s word alone (plus component bytes changed in place):
//!    an unchanged plugin keeps its entry, one whose changes all apply in band keeps its
//!    generation, the others get a new one;
//! 4. publishes it: sessions reconcile at once — added plugins start on live sessions,
//!    removed ones drain and end, changed ones get a swap marker in their queue. A new
//!    generation makes the old instance end with `on-session-end(reload)` after the frames
//!    before the marker and the new one start with `resumed = true` before the frames after
//!    it; settings applied in band (queue, batch, byte rates, restart policy) take effect at
//!    the marker and the instance stays.
//!
//! The outcome and the log line list every changed setting with its old and new value
//! ([`crate::pipeline::changes`]).
//!
//! A worker whose freshly swapped version traps repeatedly rolls back by itself and tells
//! the controller, which republishes the previous version for every session and refuses
//! those component bytes until they change.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtms_config::{Apply, Env, LoadOptions, Pipeline, PipelineDiff};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::dataplane::registry::Registry;
use crate::dataplane::routes::{PluginEntry, Replaced, RouteTable};
use crate::dataplane::stats::Metrics;
use crate::dataplane::worker::RollbackRequest;
use crate::pipeline::build::{Prev, build_table};
use crate::pipeline::changes::{SettingChange, setting_changes};

/// Why a reload was asked for.
#[derive(Debug)]
pub enum Trigger {
    /// A watched file changed.
    File(PathBuf),
    /// SIGHUP.
    Signal,
    /// The admin API; the outcome is sent back.
    Admin(Option<oneshot::Sender<Outcome>>),
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new pipeline is live (table `version`; the same version when only settings
    /// that need a restart changed). `changed` has one line per plugin whose entry changed
    /// (`added`, `removed`, `<old hash> -> <new hash>`, `new instance`, `settings`);
    /// `settings` every plugin setting that changed, with its old and new value and how it
    /// was applied. `restart_required` lists every setting that differs from what the
    /// process started with and was not applied.
    Applied {
        version: u64,
        changed: Vec<String>,
        settings: Vec<SettingChange>,
        restart_required: Vec<String>,
        elapsed_ms: u64,
    },
    /// Nothing changed.
    Unchanged,
    /// The new pipeline or a component was refused; the old one keeps running.
    Refused(String),
}

pub struct Reloader {
    path: PathBuf,
    env: Box<dyn Env + Send + Sync>,
    current: Pipeline,
    /// The pipeline the process started with: what the server, credentials, RTMS settings
    /// and sinks still run.
    started: Pipeline,
    shared: Arc<Registry>,
    debounce: Duration,
    /// For each plugin, the entry it had before its last change: what a rollback returns to.
    previous: HashMap<String, Arc<PluginEntry>>,
    /// Component hashes rolled back after trapping; refused until the bytes change.
    bad_hashes: HashSet<String>,
    /// Where each reload's outcome is kept for the admin API.
    log: Option<Arc<super::history::ReloadLog>>,
}

impl Reloader {
    pub fn new(current: Pipeline, env: Box<dyn Env + Send + Sync>, shared: Arc<Registry>) -> Self {
        Self {
            path: current.path.clone(),
            debounce: current.runtime.reload.debounce,
            env,
            started: current.clone(),
            current,
            shared,
            previous: HashMap::new(),
            bad_hashes: HashSet::new(),
            log: None,
        }
    }

    /// Keeps every reload's outcome in `log`.
    pub fn with_log(mut self, log: Arc<super::history::ReloadLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// The files whose changes trigger a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.path.clone()];
        v.extend(
            self.current
                .plugins
                .iter()
                .filter(|p| !super::builtin::is_builtin(&p.component))
                .map(|p| p.component.clone()),
        );
        v
    }

    /// Runs until `shutdown`: takes triggers, debounces, reloads; takes rollback requests.
    pub async fn run(
        mut self,
        mut triggers: mpsc::UnboundedReceiver<Trigger>,
        mut rollbacks: mpsc::UnboundedReceiver<RollbackRequest>,
        watch: bool,
        shutdown: CancellationToken,
    ) {
        let (file_tx, mut file_rx) = mpsc::unbounded_channel::<PathBuf>();
        let mut watcher = if watch {
            match FileWatcher::new(file_tx) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch files for changes; reload with SIGHUP or POST /admin/reload");
                    None
                }
            }
        } else {
            None
        };
        if let Some(w) = watcher.as_mut() {
            w.set(&self.watched_files());
        }
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(r) = rollbacks.recv() => { self.rollback(r).await; continue; }
                Some(t) = triggers.recv() => t,
                Some(p) = file_rx.recv() => Trigger::File(p),
            };
            // Debounce: gather what else arrives within the window (editors write in
            // several steps; a build writes several components).
            let mut waiters = Vec::new();
            let mut why = Vec::new();
            let mut push = |t: Trigger, waiters: &mut Vec<oneshot::Sender<Outcome>>| match t {
                Trigger::Admin(Some(tx)) => {
                    waiters.push(tx);
                    why.push("admin".to_owned());
                }
                Trigger::Admin(None) => why.push("admin".to_owned()),
                Trigger::Signal => why.push("SIGHUP".to_owned()),
                Trigger::File(p) => why.push(p.display().to_string()),
            };
            push(first, &mut waiters);
            let deadline = tokio::time::sleep(self.debounce);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    Some(t) = triggers.recv() => push(t, &mut waiters),
                    Some(p) = file_rx.recv() => push(Trigger::File(p), &mut waiters),
                }
            }
            why.sort();
            why.dedup();
            let trigger = why.join(", ");
            let outcome = self.reload(&trigger).await;
            if let Some(log) = &self.log {
                log.record(&trigger, outcome_json(0, false, &outcome).1, &self.current);
            }
            if let Some(w) = watcher.as_mut() {
                w.set(&self.watched_files());
            }
            for w in waiters {
                let _ = w.send(outcome.clone());
            }
        }
    }

    /// Reloads now.
    pub async fn reload(&mut self, why: &str) -> Outcome {
        let started = Instant::now();
        let metrics = self.shared.metrics.clone();
        let new = match Pipeline::load(&self.path, &*self.env, LoadOptions::default()) {
            Ok(p) => p,
            Err(e) => return refuse(&metrics, why, e.to_string()),
        };
        // The instance pool was sized at start and cannot grow: a pipeline whose plugins
        // need larger memory slots, or more instances than it holds for the streams running
        // now, is refused; one that fits now but not at the running rtms.max_streams (a new
        // one applies at restart) is applied with a warning.
        if let Some(pool) = self.shared.rt.pool() {
            let need = rtms_config::PoolNeed::of(self.started.rtms.max_streams, &new.plugins);
            let live = self.shared.sessions().len() as u64;
            match pool.plan().admits(need, live) {
                Ok(None) => {}
                Ok(Some(warning)) => tracing::warn!("reload: {warning}"),
                Err(e) => return refuse(&metrics, why, e),
            }
        }
        // The one change detector: every setting that differs, and what applying it takes.
        let diff = self.current.diff(&new);
        let old_table = self.shared.table.load_full();
        let version = old_table.version + 1;
        let prev = Prev {
            table: &old_table,
            diff: &diff,
        };
        let table = match build_table(&new, &self.shared.rt, &metrics, Some(prev), version).await {
            Ok(t) => t,
            Err(e) => return refuse(&metrics, why, format!("{e:#}")),
        };
        if let Some(msg) = self.rolled_back(&table) {
            return refuse(&metrics, why, msg);
        }
        let settings = setting_changes(&self.current, &new, &diff, &old_table, &table);
        let changed = self.summarize(&old_table, &table);
        // What this reload changes that it cannot apply, and everything still waiting for
        // a restart (reported again on every reload until the process restarts).
        let new_unapplied = unapplied(&diff);
        let restart_required = unapplied(&self.started.diff(&new));
        for r in &new_unapplied {
            tracing::warn!("{r}");
        }
        self.current = new;
        if changed.is_empty() && settings.is_empty() && new_unapplied.is_empty() {
            tracing::info!(trigger = why, "reload: nothing to change");
            metrics.reloads_unchanged.fetch_add(1, Ordering::Relaxed);
            return Outcome::Unchanged;
        }
        // Nothing to publish when only settings this reload cannot apply changed (or those
        // of a plugin that runs nowhere): say so rather than report an unchanged pipeline.
        let version = if changed.is_empty() {
            old_table.version
        } else {
            self.shared.publish(table).await;
            version
        };
        // A plugin that leaves the pipeline leaves its state behind: its plugin scope and
        // every session scope of it (each draining session also clears its own at its end).
        for name in &diff.removed_plugins {
            self.shared.rt.state().clear_plugin(name.as_str());
        }
        metrics.reloads_applied.fetch_add(1, Ordering::Relaxed);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let detail: Vec<String> = settings.iter().map(ToString::to_string).collect();
        tracing::info!(trigger = why, version, changes = %changed.join("; "), settings = %detail.join("; "), elapsed_ms, "reload applied");
        Outcome::Applied {
            version,
            changed,
            settings,
            restart_required,
            elapsed_ms,
        }
    }

    /// Why `table` is refused when it runs a component rolled back after trapping.
    fn rolled_back(&self, table: &RouteTable) -> Option<String> {
        let bad = table
            .plugins
            .iter()
            .find(|e| self.bad_hashes.contains(&e.code.hash))?;
        Some(format!(
            "plugin {}: component {} ({}) was rolled back after trapping; change it before reloading",
            bad.name,
            bad.code.path.display(),
            bad.code.short_hash()
        ))
    }

    /// One line per plugin whose entry `table` replaces (as `build_table` decided from the
    /// diff): added, removed, a new version or instance, or settings applied in band.
    /// Remembers what a new version replaced, for a rollback.
    fn summarize(&mut self, old_table: &RouteTable, table: &RouteTable) -> Vec<String> {
        let mut changed = Vec::new();
        for e in &table.plugins {
            match old_table.get(&e.name) {
                None => changed.push(format!("{} added", e.name)),
                Some(old) if Arc::ptr_eq(old, e) => {}
                Some(old) if old.generation != e.generation => {
                    self.previous.insert(e.name.to_string(), old.clone());
                    // Sessions that start after this reload may roll back to `old` too.
                    let _ = e.replaced.set(Replaced {
                        entry: Arc::downgrade(old),
                        at: tokio::time::Instant::now(),
                    });
                    if old.code.hash == e.code.hash {
                        changed.push(format!("{} new instance", e.name));
                    } else {
                        changed.push(format!(
                            "{} {} -> {}",
                            e.name,
                            old.code.short_hash(),
                            e.code.short_hash()
                        ));
                    }
                }
                Some(_) => changed.push(format!("{} settings", e.name)),
            }
        }
        for old in &old_table.plugins {
            if table.get(&old.name).is_none() {
                changed.push(format!("{} removed", old.name));
            }
        }
        changed
    }

    async fn rollback(&mut self, r: RollbackRequest) {
        let table = self.shared.table.load_full();
        let Some(current) = table.get(&r.plugin) else {
            return;
        };
        if current.code.hash != r.bad_hash {
            return; // Already replaced.
        }
        let Some(prev) = self.previous.remove(&*r.plugin) else {
            return;
        };
        // The bytes are to blame only when they changed: a version that traps for its new
        // settings alone (a lower memory_mb, say) is the same code as the one it returns to.
        if prev.code.hash != r.bad_hash {
            self.bad_hashes.insert(r.bad_hash.clone());
        }
        let version = table.version + 1;
        let plugins = table
            .plugins
            .iter()
            .map(|e| {
                if e.name == r.plugin {
                    Arc::new(PluginEntry {
                        name: prev.name.clone(),
                        code: prev.code.clone(),
                        spec: prev.spec.clone(),
                        kinds: e.kinds,
                        filter: e.filter.clone(),
                        queue_capacity: e.queue_capacity,
                        on_full: e.on_full,
                        block_timeout: e.block_timeout,
                        batch_max: e.batch_max,
                        batch_wait: e.batch_wait,
                        rates: e.rates,
                        restart: e.restart.clone(),
                        generation: prev.generation,
                        replaced: Default::default(),
                        stats: e.stats.clone(),
                    })
                } else {
                    e.clone()
                }
            })
            .collect();
        tracing::error!(plugin = %r.plugin, undone = %current.change_from(&prev), error = %r.error, "rolled back a version that kept trapping after a reload");
        self.shared.publish(RouteTable { version, plugins }).await;
    }
}

/// Refuses a reload: counted and logged; the running pipeline is unchanged.
fn refuse(metrics: &Metrics, why: &str, msg: String) -> Outcome {
    metrics.reloads_refused.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        trigger = why,
        "reload refused, the running pipeline is unchanged: {msg}"
    );
    Outcome::Refused(msg)
}

/// The changes in `diff` that a reload does not apply: the server, credentials, RTMS and
/// runtime settings, the sinks (built once at start), and any plugin setting the diff
/// classifies as needing a restart.
fn unapplied(diff: &PipelineDiff) -> Vec<String> {
    let mut r = diff.restart_required.clone();
    if diff.sinks_changed {
        r.push("the [[sink]] sections changed: restart to apply".to_owned());
    }
    for c in &diff.changed_plugins {
        for s in c.settings_applied(Apply::RestartRequired) {
            r.push(format!(
                "plugin {}: {} changed: restart to apply",
                c.name,
                s.key()
            ));
        }
    }
    r
}

/// Watches the directories holding a set of files and reports changes to those files.
struct FileWatcher {
    watcher: notify::RecommendedWatcher,
    dirs: HashSet<PathBuf>,
    files: Arc<parking_lot::Mutex<HashSet<PathBuf>>>,
}

impl FileWatcher {
    fn new(tx: mpsc::UnboundedSender<PathBuf>) -> notify::Result<Self> {
        let files: Arc<parking_lot::Mutex<HashSet<PathBuf>>> = Default::default();
        let wanted = files.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            if ev.kind.is_access() {
                return;
            }
            let wanted = wanted.lock();
            for p in ev.paths {
                if wanted.contains(&p) {
                    let _ = tx.send(p);
                }
            }
        })?;
        Ok(Self {
            watcher,
            dirs: HashSet::new(),
            files,
        })
    }

    fn set(&mut self, files: &[PathBuf]) {
        use notify::Watcher;
        *self.files.lock() = files.iter().cloned().collect();
        let dirs: HashSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for d in dirs.difference(&self.dirs) {
            if let Err(e) = self.watcher.watch(d, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory");
            }
        }
        for d in self.dirs.difference(&dirs) {
            let _ = self.watcher.unwatch(d);
        }
        self.dirs = dirs;
    }
}

/// The JSON body of a reload answer, and whether the reload was refused.
pub fn outcome_json(id: u64, joined: bool, outcome: &Outcome) -> (bool, serde_json::Value) {
    match outcome {
        Outcome::Applied {
            version,
            changed,
            settings,
            restart_required,
            elapsed_ms,
        } => (
            false,
            serde_json::json!({"reload": id, "joined": joined, "outcome": "applied", "version": version,
                   "changed": changed, "settings": settings.iter().map(SettingChange::json).collect::<Vec<_>>(),
                   "restart_required": restart_required, "elapsed_ms": elapsed_ms}),
        ),
        Outcome::Unchanged => (
            false,
            serde_json::json!({"reload": id, "joined": joined, "outcome": "unchanged"}),
        ),
        Outcome::Refused(why) => (
            true,
            serde_json::json!({"reload": id, "joined": joined, "outcome": "refused", "error": why}),
        ),
    }
}
