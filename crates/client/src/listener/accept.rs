//! Backing off an accept loop whose `accept` fails (usually: out of file descriptors), shared
//! by the webhook ingress and the host's admin listener. One error line when an episode starts,
//! one line when accepting works again with the number of failures, and an exponential pause
//! in between so the loop never spins.

use std::time::Duration;

const MIN: Duration = Duration::from_millis(5);
const MAX: Duration = Duration::from_secs(1);

/// The state of one accept loop's current episode of failures.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    delay: Duration,
    failed: u64,
}

impl AcceptBackoff {
    /// Records a failed accept on `listener` and returns how long to pause: 5 ms doubling to
    /// 1 s. Logs only the episode's first failure.
    pub fn failed(&mut self, listener: &str, error: &std::io::Error) -> Duration {
        self.failed += 1;
        self.delay = (self.delay * 2).clamp(MIN, MAX);
        if self.failed == 1 {
            tracing::error!(listener, %error, "accept failed (out of file descriptors? raise the limit with ulimit -n or lower the connection cap): backing off");
        }
        self.delay
    }

    /// Records a successful accept, ending an episode (logged with its count) if one ran.
    pub fn accepted(&mut self, listener: &str) {
        if self.failed > 0 {
            tracing::warn!(
                listener,
                failed = self.failed,
                "accepting connections again after failures"
            );
            *self = Self::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_5_ms_to_1_s_and_reset_after_an_accept() {
        let e = std::io::Error::other("EMFILE");
        let mut b = AcceptBackoff::default();
        let delays: Vec<_> = (0..10).map(|_| b.failed("test", &e)).collect();
        assert_eq!(delays[0], MIN);
        assert_eq!(delays[1], MIN * 2);
        assert_eq!(*delays.last().unwrap(), MAX);
        b.accepted("test");
        assert_eq!(b.failed("test", &e), MIN);
    }
}
