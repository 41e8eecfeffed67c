//! What a plugin instance may hold and create through WASI, and what it holds: the granted
//! directories, the per-instance bounds of `[plugin.limits]`, the count of entries under
//! each grant, and the descriptors it holds with their slots of the process-wide budget
//! (`super::descriptors`). The calls that enforce them are in `super::fs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::descriptors::{Descriptors, Slot};

/// A directory the pipeline grants a plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub host: std::path::PathBuf,
    pub guest: String,
    pub read_only: bool,
    /// Most bytes the directory may hold while the plugin writes to it (`None`: no quota).
    pub quota_bytes: Option<u64>,
    /// Most files and directories the directory may hold for the plugin to create more
    /// (`None`: no bound, as for a read-only grant).
    pub max_inodes: Option<u64>,
    /// Whether the plugin may create symbolic links there.
    pub symlinks: bool,
}

/// Per-instance bounds on what a guest may hold through WASI (`[plugin.limits]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Entries of the Store's resource table (descriptors, streams, pollables, directory
    /// listings together): `max_resources`. Past it the call that needed one more traps.
    pub max_resources: usize,
    /// Files and directories held open at once, the granted directories included:
    /// `max_open_files`. Past it `open-at` fails with `insufficient-memory`.
    pub max_open_files: usize,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            max_resources: 4096,
            max_open_files: 64,
        }
    }
}

/// Which sandbox bound refused a guest's request (see `super::fs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `open-at` past `[plugin.limits] max_open_files`.
    OpenFiles,
    /// A file, directory or link created past `[plugin.limits] max_inodes`.
    Inodes,
    /// `symlink-at` in a grant without `symlinks = true`.
    Symlink,
    /// The resource table full at `[plugin.limits] max_resources` (the call trapped).
    Resources,
    /// `open-at` past the process-wide budget of every plugin's descriptors.
    Descriptors,
    /// A filesystem call under a granted directory where [`PARKED_MAX`] calls never
    /// returned ([`Parked`]).
    Parked,
}

impl Refused {
    /// The pipeline.toml key that sets the bound.
    pub const fn key(self) -> &'static str {
        match self {
            Refused::OpenFiles => "[plugin.limits] max_open_files",
            Refused::Inodes => "[plugin.limits] max_inodes",
            Refused::Symlink => "[[plugin.dir]] symlinks",
            Refused::Resources => "[plugin.limits] max_resources",
            Refused::Descriptors => "[runtime] plugin_open_files",
            Refused::Parked => "[[plugin.dir]] (a FIFO or a hung mount there)",
        }
    }

    pub(crate) const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Most filesystem calls under one granted directory that may be left running on the
/// blocking pool after their plugin call was abandoned; past it the directory's calls are
/// refused with `busy`.
pub const PARKED_MAX: usize = 8;

/// The filesystem calls under one granted directory that were abandoned before they
/// returned (their plugin call trapped or ran into its deadline: a FIFO nobody opens for
/// reading, a hung network mount) and whose thread of the blocking pool may still be
/// stuck. Shared by every instance and session granted the directory, so a plugin that
/// restarts into the same stuck call parks at most [`PARKED_MAX`] threads in all, not one
/// per restart until the pool (shared with the host's own file write-outs) is full.
///
/// A call runs on the blocking pool holding a clone of its descriptor's handle
/// (`Arc<std::fs::File>`), and drops it when it returns; so an abandoned call's handle,
/// kept weakly here, still has owners exactly while such a call runs (or while the
/// descriptor is still in a live instance's table, which counts once more: the bound errs
/// on the safe side). A handle no one owns any more is forgotten.
#[derive(Debug, Default)]
pub struct Parked {
    handles: parking_lot::Mutex<Vec<std::sync::Weak<std::fs::File>>>,
    /// Handles recorded: the common case (none) costs no lock.
    recorded: std::sync::atomic::AtomicUsize,
}

impl Parked {
    /// Calls (at most) still running for abandoned calls.
    pub fn count(&self) -> usize {
        if self.recorded.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let mut handles = self.handles.lock();
        handles.retain(|w| w.strong_count() > 0);
        self.recorded.store(handles.len(), Ordering::Release);
        handles.iter().map(std::sync::Weak::strong_count).sum()
    }

    /// Notes a call on `handle` abandoned before it returned.
    pub(crate) fn abandoned(&self, handle: &Arc<std::fs::File>) {
        let mut handles = self.handles.lock();
        let weak = Arc::downgrade(handle);
        if !handles.iter().any(|w| w.ptr_eq(&weak)) {
            handles.push(weak);
            self.recorded.store(handles.len(), Ordering::Release);
        }
    }
}

/// One filesystem call under way on a descriptor: dropped before [`Watch::done`], the call
/// was abandoned and its handle goes to the directory's [`Parked`].
pub(crate) struct Watch {
    armed: Option<(Arc<Parked>, Arc<std::fs::File>)>,
}

impl Watch {
    pub(crate) fn new(parked: Arc<Parked>, handle: Arc<std::fs::File>) -> Self {
        Self {
            armed: Some((parked, handle)),
        }
    }

    /// A call on a descriptor under no grant (nothing to bound).
    pub(crate) fn none() -> Self {
        Self { armed: None }
    }

    /// The call returned.
    pub(crate) fn done(mut self) {
        self.armed = None;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some((parked, handle)) = self.armed.take() {
            parked.abandoned(&handle);
        }
    }
}

/// The files and directories under one granted directory: the last walk's count plus the
/// entries created since.
#[derive(Debug, Default)]
pub struct Inodes {
    measured: AtomicU64,
    created: AtomicU64,
    /// Creations begun (ever), and those under way: a walk that overlaps one is not used
    /// for the count (it may have seen the entry, which is also noted as created).
    started: AtomicU64,
    creating: AtomicU64,
    /// A walk has counted the directory at least once.
    walked_once: std::sync::atomic::AtomicBool,
}

/// What [`Inodes`] looked like when a walk began.
#[derive(Clone, Copy, Debug)]
pub struct WalkStart {
    created: u64,
    started: u64,
    creating: u64,
}

impl Inodes {
    /// Entries under the directory, as far as the host knows.
    pub fn used(&self) -> u64 {
        self.measured
            .load(Ordering::Relaxed)
            .saturating_add(self.created.load(Ordering::Relaxed))
    }

    /// Whether the count needs a walk before it can be trusted: none was made yet, or the
    /// count is within a tenth of `bound` (entries the plugin deleted are only seen by a walk,
    /// so near the bound one decides, rather than refusing on a stale count).
    pub(crate) fn needs_walk(&self, bound: u64) -> bool {
        !self.walked_once.load(Ordering::Relaxed) || self.used() >= bound - bound / 10
    }

    /// Notes one entry about to be created; [`Creating::created`] once it is.
    pub(crate) fn begin(self: &Arc<Self>) -> Creating {
        self.creating.fetch_add(1, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        Creating(Some(self.clone()))
    }

    /// The state a walk starting now must be compared with ([`Inodes::walked`]).
    pub(crate) fn walk_start(&self) -> WalkStart {
        WalkStart {
            creating: self.creating.load(Ordering::SeqCst),
            started: self.started.load(Ordering::SeqCst),
            created: self.created.load(Ordering::SeqCst),
        }
    }

    /// A walk that began at `start` counted `entries`: they replace the count, and the
    /// entries noted as created before it are forgotten, unless a creation ran during the
    /// walk (it may or may not have seen the entry): then the walk is not used and the count
    /// stays as it was (returns false).
    pub(crate) fn walked(&self, entries: u64, start: WalkStart) -> bool {
        let overlapped = start.creating != 0
            || self.creating.load(Ordering::SeqCst) != 0
            || self.started.load(Ordering::SeqCst) != start.started;
        if overlapped {
            return false;
        }
        self.walked_once.store(true, Ordering::Relaxed);
        self.measured.store(entries, Ordering::Relaxed);
        let _ = self
            .created
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                Some(c.saturating_sub(start.created))
            });
        true
    }
}

/// An entry being created under a granted directory (see [`Inodes::begin`]).
pub(crate) struct Creating(Option<Arc<Inodes>>);

impl Creating {
    /// The entry was created.
    pub(crate) fn created(self) {
        if let Some(i) = &self.0 {
            i.created.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        if let Some(i) = &self.0 {
            i.creating.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What one instance holds and creates through the filesystem.
pub struct FsState {
    pub(crate) limits: ResourceLimits,
    pub(crate) grants: Vec<GrantFs>,
    /// Descriptor (its resource's rep) -> what it holds.
    pub(crate) open: HashMap<u32, Open>,
    /// The budget every plugin's descriptors share.
    pub(crate) budget: Descriptors,
}

/// A descriptor the guest holds.
pub(crate) struct Open {
    /// The index of the grant it lies under.
    pub(crate) grant: Option<usize>,
    /// Its slot of the process-wide budget; `None` for a granted directory (opened with the
    /// instance, outside the budget).
    pub(crate) _slot: Option<Slot>,
}

pub(crate) struct GrantFs {
    pub(crate) guest: String,
    pub(crate) symlinks: bool,
    pub(crate) max_inodes: Option<u64>,
    pub(crate) inodes: Arc<Inodes>,
    pub(crate) parked: Arc<Parked>,
}

impl FsState {
    /// `shared` holds each grant's entry count and abandoned calls, in order (shared by
    /// every instance granted the directory); `budget` is the process's.
    pub fn new(
        grants: &[Grant],
        limits: ResourceLimits,
        shared: Vec<(Arc<Inodes>, Arc<Parked>)>,
        budget: Descriptors,
    ) -> Self {
        let grants = grants
            .iter()
            .zip(shared)
            .map(|(g, (inodes, parked))| GrantFs {
                guest: g.guest.clone(),
                symlinks: g.symlinks,
                max_inodes: if g.read_only { None } else { g.max_inodes },
                inodes,
                parked,
            })
            .collect();
        Self {
            limits,
            grants,
            open: HashMap::new(),
            budget,
        }
    }

    /// Files and directories the guest holds open.
    pub fn open_files(&self) -> usize {
        self.open.len()
    }

    pub(crate) fn grant_of(&self, fd: u32) -> Option<usize> {
        self.open.get(&fd).and_then(|o| o.grant)
    }

    /// Whether the grant `g` is at its entry bound.
    pub(crate) fn inodes_full(&self, g: Option<usize>) -> Option<(&GrantFs, u64)> {
        let g = &self.grants[g?];
        let max = g.max_inodes?;
        (g.inodes.used() >= max).then_some((g, max))
    }

    /// An entry about to be created under grant `g` (counted if the grant has an entry
    /// bound): call [`Creating::created`] on it once it is.
    pub(crate) fn creating(&self, g: Option<usize>) -> Creating {
        match g.and_then(|g| self.grants.get(g)) {
            Some(g) if g.max_inodes.is_some() => g.inodes.begin(),
            _ => Creating(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real file's handle, as a descriptor holds it.
    fn handle(dir: &tempfile::TempDir, name: &str) -> Arc<std::fs::File> {
        Arc::new(std::fs::File::create(dir.path().join(name)).unwrap())
    }

    #[test]
    fn an_abandoned_call_counts_while_its_handle_has_owners_and_a_finished_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let parked = Arc::new(Parked::default());
        // A call that returns leaves nothing behind.
        let h = handle(&dir, "a");
        Watch::new(parked.clone(), h.clone()).done();
        assert_eq!(parked.count(), 0);
        // Two calls abandoned while running on the pool (each holds a clone of the handle),
        // one on another descriptor; the descriptors themselves are gone (the instance was).
        let stuck = [h.clone(), h.clone()];
        drop(Watch::new(parked.clone(), h.clone()));
        drop(Watch::new(parked.clone(), h));
        let other = handle(&dir, "b");
        let stuck_other = other.clone();
        drop(Watch::new(parked.clone(), other));
        assert_eq!(parked.count(), 3);
        // As each returns, its clone goes.
        drop(stuck_other);
        assert_eq!(parked.count(), 2);
        drop(stuck);
        assert_eq!(parked.count(), 0);
        assert_eq!(
            parked.handles.lock().len(),
            0,
            "finished handles are forgotten"
        );
    }
}
