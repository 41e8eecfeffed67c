//! Write quotas of granted directories.
//!
//! WASI has no hook on writes, so a quota is enforced by measuring: after each call into a
//! plugin (and before an instance is built) the worker asks whether any writable granted
//! directory holds more than its quota; if one does, the plugin is stopped for the session
//! with an error naming the directory. The measure is the sum of the apparent sizes of the
//! files under the directory (symbolic links are not followed). A directory whose last walk
//! was quick (under [`INLINE_BELOW`]) is walked on the worker's own task; a slower one on a
//! blocking thread, so a large directory never holds up the worker's thread. The hop to the
//! blocking pool cost two thread wake-ups per plugin call, which showed in the frame path's
//! profile.
//! Every session of a plugin shares the directory, so a measure taken for one session is
//! reused by the others for ten times as long as it took (at most [`MAX_REUSE`]): measuring
//! costs at most about a tenth of the time. A session never reuses its own measure, so one
//! session's writes are measured after each of its calls.
//!
//! Granularity, honestly: a plugin can overshoot its quota by what it writes within one
//! call plus what all its sessions write while a measure is reused; it cannot keep writing
//! past that.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::host::Grant;

/// A measured size is reused at most this long.
pub const MAX_REUSE: Duration = Duration::from_secs(1);

/// A directory whose last walk took less than this is walked inline.
pub const INLINE_BELOW: Duration = Duration::from_micros(500);

/// The last measured usage of each granted directory.
#[derive(Default)]
pub struct Quotas {
    /// Directory -> (reuse until, bytes, session that measured, how long the walk took).
    measured: Mutex<HashMap<PathBuf, (Instant, u64, u64, Duration)>>,
}

impl Quotas {
    /// The first writable grant over its quota, as an error message for the operator;
    /// `session` is who asks.
    pub async fn over(&self, grants: &[Grant], session: u64) -> Option<String> {
        for g in grants.iter().filter(|g| !g.read_only) {
            let Some(quota) = g.quota_bytes else {
                continue;
            };
            let used = self.usage(&g.host, session).await;
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

    async fn usage(&self, dir: &Path, session: u64) -> u64 {
        let last_took = match self.measured.lock().get(dir) {
            Some((until, bytes, by, _)) if *by != session && Instant::now() < *until => {
                return *bytes;
            }
            Some((_, _, _, took)) => Some(*took),
            None => None,
        };
        let started = Instant::now();
        let bytes = if last_took.is_some_and(|t| t < INLINE_BELOW) {
            dir_bytes(dir)
        } else {
            let path = dir.to_owned();
            tokio::task::spawn_blocking(move || dir_bytes(&path))
                .await
                .unwrap_or(0)
        };
        let took = started.elapsed();
        let until = Instant::now() + (took * 10).min(MAX_REUSE);
        self.measured
            .lock()
            .insert(dir.to_owned(), (until, bytes, session, took));
        bytes
    }
}

/// The apparent size of every file under `dir`, not following symbolic links.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
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
    total
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
        assert_eq!(dir_bytes(d.path()), 1024);
    }
}
