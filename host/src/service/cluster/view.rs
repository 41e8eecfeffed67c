//! What this host sees of the others: every lease and host record as the watches last
//! delivered it, each with the local time it was seen, and whether the engine link is up.
//!
//! Time here is this host's monotonic clock only. A lease has lapsed when its record did not
//! change for the lapse window since this host saw it change — or since the engine link came
//! back, whichever is later — so no two hosts' clocks are ever compared, and an engine
//! outage (during which nobody can renew) never makes every lease look lapsed at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rtms_cluster::{Change, Revision};

use super::record::{HostRecord, LeaseRecord};

/// A lease record as last seen.
#[derive(Clone, Debug)]
pub struct SeenLease {
    pub revision: Revision,
    pub record: LeaseRecord,
    pub seen: Instant,
}

#[derive(Clone, Debug)]
struct SeenHost {
    record: HostRecord,
    seen: Instant,
    /// Streams this host assigned to it since its record last changed.
    assigned: usize,
}

/// The cluster as this host sees it.
#[derive(Default)]
pub struct View {
    leases: Mutex<HashMap<String, SeenLease>>,
    hosts: Mutex<HashMap<String, SeenHost>>,
    /// When the engine link last came up; `None` while it is down.
    link_up: Mutex<Option<Instant>>,
}

impl View {
    /// Notes a lease change; returns the record when there is one (not a deletion).
    /// Whether a record of `stream`'s lease was seen and is still there.
    pub fn knows(&self, stream: &str) -> bool {
        self.leases.lock().contains_key(stream)
    }

    pub fn lease_changed(&self, c: Change) -> Option<SeenLease> {
        let mut leases = self.leases.lock();
        let Some(value) = c.value else {
            leases.remove(&c.key);
            return None;
        };
        let Some(record) = LeaseRecord::parse(&value) else {
            tracing::warn!(stream_id = %c.key, "cluster: a lease record that is not one, ignored (written by another version?)");
            leases.remove(&c.key);
            return None;
        };
        let seen = SeenLease {
            revision: c.revision,
            record,
            seen: Instant::now(),
        };
        leases.insert(c.key, seen.clone());
        Some(seen)
    }

    /// Notes a host record change.
    pub fn host_changed(&self, c: Change) {
        let mut hosts = self.hosts.lock();
        match c.value.as_deref().and_then(HostRecord::parse) {
            Some(record) => {
                hosts.insert(
                    c.key,
                    SeenHost {
                        record,
                        seen: Instant::now(),
                        assigned: 0,
                    },
                );
            }
            None => {
                hosts.remove(&c.key);
            }
        }
    }

    /// Notes that this host gave `host` one more stream (until its record says so).
    pub fn assigned(&self, host: &str) {
        if let Some(h) = self.hosts.lock().get_mut(host) {
            h.assigned += 1;
        }
    }

    pub fn set_link(&self, up: bool) {
        *self.link_up.lock() = up.then(Instant::now);
    }

    /// When the engine link came up, if it is up.
    pub fn link_up(&self) -> Option<Instant> {
        *self.link_up.lock()
    }

    /// The lease records as last seen.
    pub fn leases(&self) -> Vec<(String, SeenLease)> {
        self.leases
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// When a lease seen at `seen` lapses: `window` after it was seen or the link came back.
    pub fn lapses_at(&self, seen: Instant, window: Duration) -> Option<Instant> {
        self.link_up().map(|up| seen.max(up) + window)
    }

    /// Live hosts (their record changed within `window`) that are not draining, with the
    /// room they have left, counting the streams assigned to them since.
    pub fn live_hosts(&self, window: Duration) -> Vec<(String, usize)> {
        let Some(up) = self.link_up() else {
            return Vec::new();
        };
        let now = Instant::now();
        self.hosts
            .lock()
            .iter()
            .filter(|(_, h)| !h.record.draining && now < h.seen.max(up) + window)
            .map(|(id, h)| (id.clone(), h.record.room().saturating_sub(h.assigned)))
            .collect()
    }

    /// Hosts whose record is seen, live or not (for metrics).
    pub fn hosts_seen(&self, window: Duration) -> (usize, usize) {
        let all = self.hosts.lock().len();
        (all, self.live_hosts(window).len())
    }
}

/// The host that should take `stream` among `candidates` (each with its room): the one
/// with the highest rendezvous score among those with room, so a dead host's streams spread
/// over the others and every host computes the same answer.
pub fn rendezvous<'a>(stream: &str, candidates: &'a [(String, usize)]) -> Option<&'a str> {
    candidates
        .iter()
        .filter(|(_, room)| *room > 0)
        .max_by_key(|(host, _)| score(stream, host))
        .map(|(host, _)| host.as_str())
}

fn score(stream: &str, host: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::new()
        .chain_update(stream.as_bytes())
        .chain_update([0])
        .chain_update(host.as_bytes())
        .finalize();
    u64::from_be_bytes(d[..8].try_into().unwrap_or_default())
}

/// The host a new stream goes to: the one with the most room, `me` on a tie (then the
/// first by name), or `me` first with `receiver_first` while it has room. `None` when
/// nobody has room.
pub fn least_loaded<'a>(
    me: &str,
    candidates: &'a [(String, usize)],
    receiver_first: bool,
) -> Option<&'a str> {
    let mine = candidates.iter().find(|(h, _)| h == me);
    if receiver_first && mine.is_some_and(|(_, room)| *room > 0) {
        return mine.map(|(h, _)| h.as_str());
    }
    candidates
        .iter()
        .filter(|(_, room)| *room > 0)
        .max_by_key(|(h, room)| (*room, h == me, std::cmp::Reverse(h.as_str())))
        .map(|(h, _)| h.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(v: &[(&str, usize)]) -> Vec<(String, usize)> {
        v.iter().map(|(h, r)| (h.to_string(), *r)).collect()
    }

    #[test]
    fn new_streams_go_to_the_most_room_and_the_receiver_on_a_tie() {
        let c = hosts(&[("a", 5), ("c", 9), ("b", 9), ("me", 9)]);
        assert_eq!(least_loaded("me", &c, false), Some("me"));
        assert_eq!(least_loaded("a", &c, false), Some("b"), "then by name");
        assert_eq!(least_loaded("a", &c, true), Some("a"), "receiver first");
        let full = hosts(&[("a", 0), ("b", 0)]);
        assert_eq!(least_loaded("a", &full, true), None);
    }

    #[test]
    fn a_dead_hosts_streams_spread_over_the_others_the_same_way_everywhere() {
        let c = hosts(&[("a", 100), ("b", 100), ("c", 100)]);
        let mut per_host: HashMap<&str, usize> = HashMap::new();
        for i in 0..300 {
            let s = format!("stream-{i}");
            let pick = rendezvous(&s, &c).unwrap();
            assert_eq!(Some(pick), rendezvous(&s, &c), "deterministic");
            *per_host.entry(pick).or_default() += 1;
        }
        assert!(per_host.values().all(|n| *n > 60), "{per_host:?}");
        let b_full = hosts(&[("a", 100), ("b", 0), ("c", 100)]);
        assert!((0..50).all(|i| rendezvous(&format!("s{i}"), &b_full) != Some("b")));
    }
}
