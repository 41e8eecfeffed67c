//! A stream's right to run on this host: while a [`Fence`] holds, its frames are taken and
//! its plugins called; once it lapses nothing more happens for the stream here.
//!
//! A host of a cluster owns a stream through a lease in the shared engine; the fence is the
//! lease as this host can check it without asking anyone: a deadline on the monotonic clock,
//! pushed forward each time a renewal is confirmed, set well before other hosts may take the
//! lease over. So a host that paused (a long GC-like stall, SIGSTOP, a partition) and lost
//! its lease finds its fences lapsed the moment it runs again, before it reads another frame
//! or calls another plugin. A single host's streams are unfenced ([`Fence::default`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// The monotonic clock's origin for deadlines held in an atomic.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since [`origin`], plus one (0 means "lapsed").
fn ticks(at: Instant) -> u64 {
    at.saturating_duration_since(origin()).as_millis() as u64 + 1
}

/// A stream's right to run here: unfenced, or until a deadline. Clones share the deadline.
#[derive(Clone, Debug, Default)]
pub struct Fence(Option<Arc<AtomicU64>>);

impl Fence {
    /// A fence that holds until `deadline`.
    pub fn until(deadline: Instant) -> Self {
        origin();
        Self(Some(Arc::new(AtomicU64::new(ticks(deadline)))))
    }

    /// Moves the deadline to `deadline` if that is later (a confirmed renewal) and the
    /// fence still holds: a lapsed fence stays lapsed, since the stream may already have
    /// stopped here for it.
    pub fn extend(&self, deadline: Instant) {
        if let Some(d) = &self.0 {
            let (t, now) = (ticks(deadline), ticks(Instant::now()));
            let _ = d.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (now < cur && t > cur).then_some(t)
            });
        }
    }

    /// Lapses the fence now, for good.
    pub fn revoke(&self) {
        if let Some(d) = &self.0 {
            d.store(0, Ordering::Release);
        }
    }

    /// Whether the stream may still run here.
    pub fn holds(&self) -> bool {
        match &self.0 {
            None => true,
            Some(d) => ticks(Instant::now()) < d.load(Ordering::Acquire),
        }
    }

    /// Whether this is a real fence (a stream of a cluster).
    pub fn is_fenced(&self) -> bool {
        self.0.is_some()
    }
}

/// The fences of streams about to start, by stream id: the session takes its fence when it
/// opens.
pub type FenceSet = Arc<parking_lot::Mutex<HashMap<String, Fence>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_fence_holds_until_its_deadline_moves_forward_only_and_stays_revoked() {
        assert!(Fence::default().holds(), "unfenced");
        let now = Instant::now();
        let f = Fence::until(now + Duration::from_secs(60));
        assert!(f.holds());
        f.extend(now + Duration::from_secs(1));
        assert!(f.holds(), "an earlier deadline does not shorten it");
        let lapsed = Fence::until(now);
        assert!(!lapsed.holds());
        lapsed.extend(now + Duration::from_secs(60));
        assert!(!lapsed.holds(), "a late renewal does not revive it");
        let shared = f.clone();
        f.revoke();
        assert!(!shared.holds(), "clones share it");
        shared.extend(now + Duration::from_secs(600));
        assert!(!shared.holds(), "revoked for good");
    }
}
