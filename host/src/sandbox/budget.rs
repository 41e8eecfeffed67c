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
}

#[derive(Debug)]
struct Bucket {
    /// Bytes per second, and the most the bucket holds.
    rate: f64,
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
                rate,
                tokens: rate,
                last: Instant::now(),
                unreported: 0,
                last_warning: None,
            }),
        }
    }

    /// Changes the rate (a reload): what the bucket holds is kept, up to one second of the
    /// new rate, and refills at the new rate from now on.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.set_rate_at(bytes_per_sec, Instant::now());
    }

    fn set_rate_at(&self, bytes_per_sec: u64, now: Instant) {
        let mut b = self.inner.lock();
        b.refill(now);
        b.rate = bytes_per_sec.max(1) as f64;
        b.tokens = b.tokens.min(b.rate);
    }

    /// The rate in force, in bytes per second.
    pub fn rate(&self) -> u64 {
        self.inner.lock().rate as u64
    }

    /// Spends `bytes` if the bucket holds them.
    pub fn take(&self, bytes: usize) -> Take {
        self.take_at(bytes, Instant::now())
    }

    fn take_at(&self, bytes: usize, now: Instant) -> Take {
        let mut b = self.inner.lock();
        b.refill(now);
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

impl Bucket {
    /// Adds what `rate` refilled since the last look, up to one second's worth.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
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

    #[test]
    fn a_new_rate_caps_what_the_bucket_holds_and_refills_at_the_new_rate() {
        let b = Budget::new(100_000);
        let t0 = Instant::now();
        assert_eq!(b.take_at(5000, t0), Take::Ok);
        // Cut to 1000 bytes per second: the bucket holds at most one second of it.
        b.set_rate_at(1000, t0);
        assert_eq!(b.rate(), 1000);
        assert!(matches!(b.take_at(1001, t0), Take::Drop { .. }));
        assert_eq!(b.take_at(1000, t0), Take::Ok);
        // Raised again: refills at the new rate, not the old one.
        b.set_rate_at(10_000, t0);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(b.take_at(5000, t1), Take::Ok);
        assert!(matches!(b.take_at(1, t1), Take::Drop { .. }));
    }
}
