//! Bounded logging of repeated failures: the first few of a kind per interval are logged,
//! the rest are counted and summarised in one line ("suppressed K similar").
//!
//! A flood of bad webhooks or of streams failing the same way would otherwise write a line
//! each (130,000 lines for 10,000 bogus streams). Callers ask [`admit`] before logging; the
//! summary of an interval is written by the next [`admit`] of that kind or by [`flush`]
//! (the ingress calls it every interval), whichever comes first.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lines logged per kind per interval before suppression starts.
pub const BURST: u32 = 10;

/// The interval.
pub const INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

/// Counts per kind of failure.
#[derive(Debug)]
pub struct RateLog {
    burst: u32,
    interval: Duration,
    kinds: Mutex<HashMap<&'static str, Window>>,
}

impl RateLog {
    pub fn new(burst: u32, interval: Duration) -> Self {
        Self {
            burst,
            interval,
            kinds: Mutex::default(),
        }
    }

    /// True when a line of `kind` may be logged now. Writes the summary of the previous
    /// interval first when it suppressed anything.
    pub fn admit_at(&self, kind: &'static str, now: Instant) -> bool {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        let w = kinds.entry(kind).or_insert(Window {
            start: now,
            logged: 0,
            suppressed: 0,
        });
        if now.saturating_duration_since(w.start) >= self.interval {
            summarise(kind, w.suppressed, self.interval);
            *w = Window {
                start: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < self.burst {
            w.logged += 1;
            if w.logged == self.burst {
                tracing::warn!(
                    kind,
                    burst = self.burst,
                    interval = ?self.interval,
                    "more failures of this kind are only counted until the interval ends"
                );
            }
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    /// Writes the summaries of intervals that have ended (of every interval when `all`);
    /// forgets those kinds. Returns the number of suppressed lines summarised.
    pub fn flush_at(&self, now: Instant, all: bool) -> u64 {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = 0;
        kinds.retain(|kind, w| {
            if !all && now.saturating_duration_since(w.start) < self.interval {
                return true;
            }
            summarise(kind, w.suppressed, self.interval);
            total += w.suppressed;
            false
        });
        total
    }
}

fn summarise(kind: &str, suppressed: u64, interval: Duration) {
    if suppressed > 0 {
        tracing::warn!(
            kind,
            suppressed,
            ?interval,
            "suppressed {suppressed} similar log lines ({kind})"
        );
    }
}

fn global() -> &'static RateLog {
    static LOG: OnceLock<RateLog> = OnceLock::new();
    LOG.get_or_init(|| RateLog::new(BURST, INTERVAL))
}

/// True when a line of `kind` may be logged now (process-wide counts).
pub fn admit(kind: &'static str) -> bool {
    global().admit_at(kind, Instant::now())
}

/// Writes the summaries of ended intervals (process-wide).
pub fn flush() -> u64 {
    global().flush_at(Instant::now(), false)
}

/// Writes every pending summary now, ended interval or not (at shutdown).
pub fn flush_all() -> u64 {
    global().flush_at(Instant::now(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_few_per_interval_pass_and_the_rest_are_counted() {
        let log = RateLog::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let passed = (0..100).filter(|_| log.admit_at("x", t0)).count();
        assert_eq!(passed, 3);
        assert!(log.admit_at("other", t0), "kinds are counted apart");
        assert_eq!(
            log.flush_at(t0 + Duration::from_secs(1), false),
            0,
            "not ended yet"
        );
        assert_eq!(log.flush_at(t0 + Duration::from_secs(11), false), 97);
        assert!(log.admit_at("x", t0 + Duration::from_secs(12)));
    }

    #[test]
    fn a_new_interval_starts_with_the_summary_of_the_last() {
        let log = RateLog::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(log.admit_at("x", t0));
        assert!(!log.admit_at("x", t0));
        assert!(log.admit_at("x", t0 + Duration::from_secs(10)));
        assert!(!log.admit_at("x", t0 + Duration::from_secs(10)));
        assert_eq!(
            log.flush_at(t0 + Duration::from_secs(11), true),
            1,
            "forced"
        );
    }
}
