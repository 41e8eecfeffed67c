//! Every retry delay of the client, computed in one pure function ([`retry_delay`]).
//!
//! - First connection (and after a failover): a constant `connection_retry_delay`.
//! - Reconnection (attempt `n`, 0-based, counted per outage): never below the doubled base,
//!   with a bounded jitter on top, never above the cap:
//!   `min(max, d + uniform(0, d * jitter_percent / 100))` with `d = min(max, base * 2^n)`.
//!   So attempt `n` waits within `[d, d * (1 + jitter_percent / 100)]`, capped at `max`.
//! - Duplicate-connection refusals: exponential with "equal jitter",
//!   `uniform(bound / 2, bound)`, so the retry never comes before the old connection had
//!   time to go away.
//!
//! The jitter is a parameter (`unit` in `[0, 1)`) so tests pin it; callers pass
//! `rand::random()`.

use std::time::Duration;

use crate::config::Resilience;

/// Which retry budget a delay belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryKind {
    /// Before the stream was ever up (or after a failover restart).
    Initial,
    /// After a stream that was up lost a socket.
    Reconnect,
    /// The server refused the handshake as a duplicate connection.
    Duplicate,
}

/// The upper bound of the exponential delay for `attempt` (0-based): `base * 2^attempt`,
/// capped at `max`.
pub fn exponential_bound(base: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

/// The delay before retry number `attempt` (0-based) of a kind. `unit` is a random number in
/// `[0, 1)`; values outside are clamped.
pub fn retry_delay(r: &Resilience, kind: RetryKind, attempt: u32, unit: f64) -> Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    match kind {
        RetryKind::Initial => r.connection_retry_delay,
        RetryKind::Reconnect => {
            let d = exponential_bound(r.reconnect_base_delay, r.reconnect_max_delay, attempt);
            let jitter = d.mul_f64(f64::from(r.reconnect_jitter_percent.min(100)) / 100.0 * unit);
            (d + jitter).min(r.reconnect_max_delay)
        }
        RetryKind::Duplicate => {
            let bound = exponential_bound(r.reconnect_base_delay, r.reconnect_max_delay, attempt);
            bound / 2 + (bound / 2).mul_f64(unit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_delay_is_constant() {
        let r = Resilience::default();
        for attempt in 0..10 {
            assert_eq!(
                retry_delay(&r, RetryKind::Initial, attempt, 0.7),
                Duration::from_secs(5)
            );
        }
    }

    #[test]
    fn reconnect_bound_doubles_up_to_the_cap() {
        let r = Resilience::default();
        let bounds: Vec<u64> = (0..6)
            .map(|a| {
                exponential_bound(r.reconnect_base_delay, r.reconnect_max_delay, a).as_millis()
                    as u64
            })
            .collect();
        assert_eq!(bounds, [2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(
            exponential_bound(r.reconnect_base_delay, r.reconnect_max_delay, u32::MAX),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn reconnect_delay_lies_between_the_doubled_base_and_the_jitter_bound() {
        let r = Resilience::default();
        for attempt in 0..8 {
            let d = exponential_bound(r.reconnect_base_delay, r.reconnect_max_delay, attempt);
            let hi = d.mul_f64(1.2).min(r.reconnect_max_delay);
            assert_eq!(retry_delay(&r, RetryKind::Reconnect, attempt, 0.0), d);
            let top = retry_delay(&r, RetryKind::Reconnect, attempt, 0.999_999);
            assert!(top <= hi && top >= hi.mul_f64(0.99), "{top:?} vs {hi:?}");
            for _ in 0..100 {
                let delay = retry_delay(&r, RetryKind::Reconnect, attempt, rand::random());
                assert!(
                    d <= delay && delay <= hi,
                    "{delay:?} outside [{d:?}, {hi:?}]"
                );
            }
        }
        assert_eq!(
            retry_delay(&r, RetryKind::Reconnect, 0, f64::NAN),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(&r, RetryKind::Reconnect, 0, 7.0),
            Duration::from_millis(2_400)
        );
        // At the cap the jitter is cut: the cap is a promise.
        assert_eq!(
            retry_delay(&r, RetryKind::Reconnect, 6, 0.9),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn zero_jitter_gives_exact_doubling() {
        let r = Resilience {
            reconnect_jitter_percent: 0,
            reconnect_base_delay: Duration::from_millis(1_000),
            ..Resilience::default()
        };
        let delays: Vec<u128> = (0..4)
            .map(|a| retry_delay(&r, RetryKind::Reconnect, a, 0.9).as_millis())
            .collect();
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000]);
    }

    #[test]
    fn duplicate_delay_is_at_least_half_the_bound() {
        let r = Resilience::default();
        for attempt in 0..4 {
            let bound = exponential_bound(r.reconnect_base_delay, r.reconnect_max_delay, attempt);
            assert_eq!(
                retry_delay(&r, RetryKind::Duplicate, attempt, 0.0),
                bound / 2
            );
            assert!(retry_delay(&r, RetryKind::Duplicate, attempt, 0.99) <= bound);
        }
    }
}
