//! Write quotas of granted directories.
//!
//! WASI has no hook on writes, so a quota is enforced by measuring: after each call into a
//! plugin (and before an instance is built) the worker asks whether any writable granted
//! directory holds more than its quota; if one does, the plugin is stopped for the session
//! with an error naming the directory. The measure is the sum of the apparent sizes of the
//! files under the directory (symbolic links are not followed). After a call the question
//! never waits: it is answered from the last measure, and a walk of the directory, when the
//! measure is due, runs on the blocking pool in the background (one at a time per
//! directory). A directory on a disk that stalls therefore holds up no plugin call, only its
//! own measure. Before an instance starts (off the frame path), the walk is waited for
//! ([`Quotas::over_now`]), so the instance starts from exact counts.
//! Every session of a plugin shares the directory, so a measure taken for one session is
//! reused by the others for [`REUSE_FACTOR`] times as long as it took (at most
//! [`MAX_REUSE`]): measuring costs at most about 1 % of a thread, however many sessions
//! write there. The measure of a small directory (under [`SMALL_DIR`] entries) is not
//! reused by the session that took it, so one session's writes there are measured after
//! each of its calls; a large one (a file per session of a busy plugin) is reused by every
//! session alike, or a thousand live sessions would keep a walk running all the time.
//!
//! Granularity, honestly: a plugin can overshoot its quota by what it writes within one
//! call plus what all its sessions write while a measure is reused or a walk runs (and what
//! its file buffers hold, `super::filebuf`); it cannot keep writing past that.
//!
//! Files and directories (inodes) are bounded too, and exactly: a walk counts the entries
//! under a directory, and [`Inodes`] adds each entry a plugin creates there since (the
//! sandbox's filesystem calls count them as they happen, see `super::fs`), so a creation
//! past `max_inodes` is refused before it happens (a walk that overlaps a creation, which it
//! may or may not have seen, is not used for the count). The walk is therefore bounded as well:
//! a plugin cannot make it slow by planting empty files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::fs_limits::{Grant, Inodes};

/// A measured size is reused at most this long.
pub const MAX_REUSE: Duration = Duration::from_secs(1);

/// A measured size is reused for this many times as long as the walk took.
pub const REUSE_FACTOR: u32 = 100;

/// A directory with fewer entries than this is measured after each of a session's calls.
pub const SMALL_DIR: u64 = 64;

/// The last measured usage of each granted directory. A call's question reads atomics
/// through a lock-free map ([`ArcSwap`]); the mutex only serialises adding a directory the
/// map does not hold yet (once per granted directory of the process).
pub struct Quotas {
    /// When the process started measuring: the clock of [`Dir::until_ns`].
    base: Instant,
    dirs: ArcSwap<HashMap<PathBuf, Arc<Dir>>>,
    adding: Mutex<()>,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            dirs: ArcSwap::default(),
            adding: Mutex::new(()),
        }
    }
}

/// One granted directory's last measure, and its entry count.
#[derive(Default)]
struct Dir {
    bytes: AtomicU64,
    /// Files and directories under it, as the last walk counted.
    entries: AtomicU64,
    /// The measure is reused until then (nanoseconds after [`Quotas::base`]).
    until_ns: AtomicU64,
    /// The session that measured.
    by: AtomicU64,
    /// Held by the walk of the directory that runs: one at a time, or the entries created
    /// meanwhile would be credited twice ([`Inodes::walked`]).
    walk: Arc<tokio::sync::Mutex<()>>,
    /// Shared by every instance that writes there (the operator's list, not the guest's).
    inodes: Arc<Inodes>,
    /// Calls there abandoned before they returned, shared the same way.
    parked: Arc<super::fs_limits::Parked>,
}

impl Quotas {
    /// The first writable grant over its quota, as an error message for the operator;
    /// `session` is who asks.
    /// Grants with an inode bound are measured too (that count is what the bound checks).
    pub fn over(self: &Arc<Self>, grants: &[Grant], session: u64) -> Option<String> {
        for g in grants.iter().filter(|g| !g.read_only) {
            let Some(quota) = g.quota_bytes else {
                // An entry bound alone: creations are counted as they happen, so the walk
                // runs once, and again only near the bound (to credit deletions); never after
                // every call, which would put a directory walk on the frame path.
                if let Some(bound) = g.max_inodes
                    && self.inodes(&g.host).needs_walk(bound)
                {
                    self.usage(&g.host, session);
                }
                continue;
            };
            let used = self.usage(&g.host, session);
            if used > quota {
                return Some(format!(
                    "granted directory {} (guest {}) holds {} bytes, over its quota of {} bytes: free space there or raise quota_mb of that [[plugin.dir]], then reload",
                    g.host.display(),
                    g.guest,
                    used,
                    quota
                ));
            }
        }
        None
    }

    /// [`Quotas::over`] with every measure it needs taken now, waited for (on the blocking
    /// pool): before an instance starts, so it starts from exact counts and no walk of its
    /// directory runs while it creates entries (one would count them twice).
    pub async fn over_now(self: &Arc<Self>, grants: &[Grant], session: u64) -> Option<String> {
        for g in grants.iter().filter(|g| !g.read_only) {
            let due = match (g.quota_bytes, g.max_inodes) {
                (Some(_), _) => true,
                (None, Some(bound)) => self.inodes(&g.host).needs_walk(bound),
                (None, None) => false,
            };
            if due {
                let me = self.clone();
                let (d, path) = (self.dir(&g.host), g.host.clone());
                let walking = d.walk.clone().lock_owned().await;
                let _ = tokio::task::spawn_blocking(move || {
                    me.walk(&d, &path, session);
                    drop(walking);
                })
                .await;
            }
        }
        self.over(grants, session)
    }

    /// The entry count of `dir`, shared by every instance granted it.
    pub fn inodes(&self, dir: &Path) -> Arc<Inodes> {
        self.dir(dir).inodes.clone()
    }

    /// The abandoned filesystem calls under `dir`, shared by every instance granted it.
    pub fn parked(&self, dir: &Path) -> Arc<super::fs_limits::Parked> {
        self.dir(dir).parked.clone()
    }

    fn dir(&self, path: &Path) -> Arc<Dir> {
        if let Some(d) = self.dirs.load().get(path) {
            return d.clone();
        }
        let _adding = self.adding.lock();
        let mut dirs = HashMap::clone(&self.dirs.load());
        let d = dirs.entry(path.to_owned()).or_default().clone();
        self.dirs.store(Arc::new(dirs));
        d
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// The last measured bytes of `dir` (0 before the first walk); starts a walk on the
    /// blocking pool when the measure is due and none runs.
    fn usage(self: &Arc<Self>, path: &Path, session: u64) -> u64 {
        let d = self.dir(path);
        let bytes = d.bytes.load(Ordering::Relaxed);
        let fresh = self.now_ns() < d.until_ns.load(Ordering::Relaxed)
            && (d.by.load(Ordering::Relaxed) != session
                || d.entries.load(Ordering::Relaxed) >= SMALL_DIR);
        if fresh {
            return bytes;
        }
        let Ok(walking) = d.walk.clone().try_lock_owned() else {
            return bytes;
        };
        let me = self.clone();
        let path = path.to_owned();
        let walk = move || {
            me.walk(&d, &path, session);
            drop(walking);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(walk)),
            Err(_) => walk(),
        }
        bytes
    }
}

impl Quotas {
    /// Walks `path` (blocking) and stores the measure in `d`.
    fn walk(&self, d: &Dir, path: &Path, session: u64) {
        let start = d.inodes.walk_start();
        let started = Instant::now();
        let (bytes, entries) = dir_usage(path);
        let took = started.elapsed();
        d.inodes.walked(entries, start);
        d.bytes.store(bytes, Ordering::Relaxed);
        d.entries.store(entries, Ordering::Relaxed);
        d.by.store(session, Ordering::Relaxed);
        let reuse = (took * REUSE_FACTOR).min(MAX_REUSE).as_nanos() as u64;
        d.until_ns.store(self.now_ns() + reuse, Ordering::Relaxed);
    }
}

/// The apparent size of every file under `dir`, not following symbolic links.
pub fn dir_bytes(dir: &Path) -> u64 {
    dir_usage(dir).0
}

/// The apparent size of every file under `dir`, and how many entries are under it.
fn dir_usage(dir: &Path) -> (u64, u64) {
    let mut total = 0u64;
    let mut count = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            count += 1;
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    (total, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_files_in_subdirectories() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/b"), vec![0u8; 24]).unwrap();
        assert_eq!(dir_usage(d.path()), (1024, 3));
    }
}
