//! The process-wide descriptor budget of plugins.
//!
//! `[plugin.limits] max_open_files` bounds one instance; with many sessions, many instances
//! together could still take the process to RLIMIT_NOFILE, and then the webhook listener
//! backs off on EMFILE and no Zoom socket opens, for every stream. So every descriptor a
//! guest makes the host open on its behalf takes a slot of one budget shared by every plugin
//! and session of the process: files and directories opened with `open-at` (`super::fs`),
//! outgoing HTTP connections (`super::net`) and WebSockets (`super::ws`). A slot is held as
//! long as the descriptor (a [`Slot`] dropped with it). Past the budget the guest gets an
//! error it can see: `open-at` fails with `insufficient-memory`, a request or a WebSocket
//! with `connection-limit-reached`.
//!
//! The granted directories each instance holds open are not in the budget: their number is
//! set by the pipeline (sessions × plugins × grants, bounded by `rtms.max_streams`), not by
//! what a guest does, and a budget a hog had spent must not stop other plugins' instances
//! from starting.
//!
//! At start the host raises its soft RLIMIT_NOFILE to the hard limit when it may
//! ([`Nofile::raise`]); the budget is `[runtime] plugin_open_files`, or half the limit
//! by default. The rest is kept for the Zoom sockets, the listeners and their connections,
//! the granted directories, sinks and logs: a configured budget that leaves fewer than
//! [`Nofile::reserve`] of them is refused at start.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors every plugin of the process may hold together, and how many they hold.
/// Cheap to clone.
#[derive(Clone)]
pub struct Descriptors {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Arc<Semaphore>,
    limit: usize,
    peak: AtomicUsize,
}

/// One descriptor's place in the budget, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Descriptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Descriptors")
            .field("limit", &self.limit())
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Descriptors {
    /// A budget of `limit` descriptors (at least 1).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(limit)),
                limit,
                peak: AtomicUsize::new(0),
            }),
        }
    }

    /// A slot for one more descriptor, or `None` when the budget is spent.
    pub fn take(&self) -> Option<Slot> {
        let permit = self.inner.slots.clone().try_acquire_owned().ok()?;
        self.inner.peak.fetch_max(self.in_use(), Ordering::Relaxed);
        Some(Slot { _permit: permit })
    }

    /// The budget.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Descriptors plugins hold now.
    pub fn in_use(&self) -> usize {
        self.inner.limit - self.inner.slots.available_permits()
    }

    /// The most they held at once.
    pub fn peak(&self) -> usize {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// The guest-visible refusal's explanation, for the log.
    pub fn refusal(&self, what: &str) -> String {
        format!(
            "the plugins of this process hold {} descriptors, the whole budget of [runtime] plugin_open_files = {}: {what} (plugins must close what they no longer need; raise plugin_open_files, and RLIMIT_NOFILE with it, if they need more)",
            self.in_use(),
            self.limit()
        )
    }
}

/// The process's descriptor limit, RLIMIT_NOFILE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nofile {
    /// The soft limit: the one the kernel enforces.
    pub soft: u64,
    /// The hard limit: how far the soft one may be raised.
    pub hard: u64,
    /// The soft limit before [`Nofile::raise`].
    pub was: u64,
}

impl Nofile {
    /// Raises the soft limit to the hard limit when allowed, and returns both; on a
    /// platform or sandbox where that fails, the limits as they are.
    pub fn raise() -> std::io::Result<Nofile> {
        let (was, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
        let soft = match rlimit::increase_nofile_limit(hard) {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(
                    soft = was,
                    hard,
                    "cannot raise the descriptor limit (RLIMIT_NOFILE) to its hard limit: {e}; running with {was}"
                );
                was
            }
        };
        Ok(Nofile { soft, hard, was })
    }

    /// Descriptors kept outside the plugins' budget: a quarter of the limit, at least 64.
    pub fn reserve(&self) -> u64 {
        (self.soft / 4).max(64).min(self.soft)
    }

    /// The plugins' budget: `configured`, or half the limit. A configured budget that
    /// leaves fewer than [`Nofile::reserve`] descriptors for the rest of the process is
    /// refused, naming the limit and both ways out.
    pub fn budget(&self, configured: Option<u64>) -> Result<usize, String> {
        let most = self.soft - self.reserve();
        let n = match configured {
            None => (self.soft / 2).max(1),
            Some(n) if n <= most => n,
            Some(n) => {
                return Err(format!(
                    "[runtime] plugin_open_files = {n} leaves fewer than {} of the process's {} descriptors (RLIMIT_NOFILE, hard limit {}) for Zoom sockets, the listeners and granted directories: set it to at most {most}, or raise the limit (ulimit -n, systemd LimitNOFILE=)",
                    self.reserve(),
                    self.soft,
                    self.hard
                ));
            }
        };
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_given_back_and_the_peak_is_kept() {
        let d = Descriptors::new(3);
        let a = d.take().expect("1");
        let b = d.take().expect("2");
        let c = d.take().expect("3");
        assert!(d.take().is_none(), "the budget is spent");
        assert_eq!((d.in_use(), d.peak()), (3, 3));
        drop((a, b));
        assert_eq!(d.in_use(), 1);
        let _again = d.take().expect("a slot given back is taken again");
        drop(c);
        assert_eq!((d.in_use(), d.peak(), d.limit()), (1, 3, 3));
    }

    #[test]
    fn the_budget_is_half_the_limit_and_leaves_the_reserve() {
        let n = Nofile {
            soft: 1024,
            hard: 4096,
            was: 1024,
        };
        assert_eq!(n.budget(None), Ok(512));
        assert_eq!(n.reserve(), 256);
        assert_eq!(n.budget(Some(768)), Ok(768));
        let e = n.budget(Some(769)).unwrap_err();
        assert!(
            e.contains("plugin_open_files = 769") && e.contains("at most 768"),
            "{e}"
        );
        assert!(e.contains("ulimit -n"), "{e}");
        let small = Nofile {
            soft: 100,
            hard: 100,
            was: 100,
        };
        assert_eq!((small.reserve(), small.budget(None)), (64, Ok(50)));
    }
}
