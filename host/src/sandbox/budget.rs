//! Byte-rate budgets for what a guest writes outside its sandbox: log lines (`host.log`,
//! stdout, stderr) and emitted outputs (`host.emit`).
//!
//! Each (plugin, session) has one token bucket per channel, refilled at the configured
//! bytes per second and holding at most one second's worth, so a short burst passes and a
//! flood is cut to the rate. What does not fit is dropped and counted; the first drop of a
//! run is logged, then at most one warning every [`WARN_EVERY`] with the count since the
//! last, and the session's end summarises the total (see `crate::dataplane::registry`).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Drops are reported at most this often per (plugin, session, channel).
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// A token bucket in bytes.
#[derive(Debug)]
pub struct Budget {
    inner: Mutex<Bucket>,
    rate: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Drops since the last warning.
    unreported: u64,
    last_warning: Option<Instant>,
}

/// What [`Budget::take`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// Within the budget.
    Ok,
    /// Over the budget: drop it. `warn` holds the drops to report now (this one
    /// included), or `None` while a warning was given recently.
    Drop { warn: Option<u64> },
}

impl Budget {
    /// A budget of `bytes_per_sec`, full at the start.
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        Self {
            inner: Mutex::new(Bucket {
                tokens: rate,
                last: Instant::now(),
                unreported: 0,
                last_warning: None,
            }),
            rate,
        }
    }

    /// Spends `bytes` if the bucket holds them.
    pub fn take(&self, bytes: usize) -> Take {
        self.take_at(bytes, Instant::now())
    }

    fn take_at(&self, bytes: usize, now: Instant) -> Take {
        let mut b = self.inner.lock();
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.rate);
        b.last = now;
        let cost = bytes as f64;
        if cost <= b.tokens {
            b.tokens -= cost;
            return Take::Ok;
        }
        b.unreported += 1;
        let due = b
            .last_warning
            .is_none_or(|t| now.saturating_duration_since(t) >= WARN_EVERY);
        if due {
            b.last_warning = Some(now);
            Take::Drop {
                warn: Some(std::mem::take(&mut b.unreported)),
            }
        } else {
            Take::Drop { warn: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_rate_and_warned_about_once() {
        let b = Budget::new(1000);
        let t0 = Instant::now();
        // One second's burst passes ...
        assert_eq!(b.take_at(600, t0), Take::Ok);
        assert_eq!(b.take_at(400, t0), Take::Ok);
        // ... then the bucket is empty: a drop, reported.
        assert_eq!(b.take_at(1, t0), Take::Drop { warn: Some(1) });
        assert_eq!(b.take_at(1, t0), Take::Drop { warn: None });
        // Half a second refills 500 bytes.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(b.take_at(500, t1), Take::Ok);
        assert_eq!(b.take_at(1, t1), Take::Drop { warn: None });
        // The next warning carries the drops since the last one.
        let t2 = t0 + WARN_EVERY;
        assert_eq!(b.take_at(5000, t2), Take::Drop { warn: Some(3) });
    }
}
