//! The one de-duplicator of Zoom's events, shared by the webhook [`ingress`](crate::ingress)
//! and the host's event WebSocket: an event (name, stream id, `event_ts`) delivered once is
//! dropped when it comes again, for a time window and within a bound in entries, whichever
//! forgets it first. An outsider sending endless new events grows it to its bound, no more.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use rtms_proto::WebhookEvent;
use tokio::time::Instant;

/// How long an event is remembered unless its bound forgets it sooner: Zoom's retries of a
/// webhook come minutes apart.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What identifies one delivery of an event: its name, stream id and `event_ts`.
pub type EventKey = (String, String, i64);

/// The key of `ev`.
pub fn event_key(ev: &WebhookEvent) -> EventKey {
    (ev.event.clone(), ev.stream_id.clone(), ev.event_ts)
}

/// The key of a concurrency notice: its name, the meeting it names (or nothing) and
/// `event_ts`.
pub fn notice_key(n: &rtms_proto::webhook::Notice) -> EventKey {
    (
        n.event.clone(),
        n.meeting.clone().unwrap_or_default(),
        n.event_ts,
    )
}

/// Remembers keys it has seen, each for `window`, at most `capacity` of them (the oldest
/// forgotten first).
pub struct Dedup<K = EventKey> {
    window: Duration,
    capacity: usize,
    /// Each remembered key and the sequence number of its entry in `order`.
    seen: HashMap<K, u64>,
    /// Entries oldest first; one whose key was forgotten stays until it leaves the front.
    order: VecDeque<(K, Instant, u64)>,
    next: u64,
}

impl<K: Hash + Eq + Clone> Dedup<K> {
    /// A de-duplicator that remembers a key for `window`, and at most `capacity` keys (at
    /// least one).
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        }
    }

    /// True when `key` was not seen within the window (it is now remembered), false for a
    /// repeat.
    pub fn first_time(&mut self, key: K, now: Instant) -> bool {
        while let Some((k, at, seq)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.window && self.order.len() < self.capacity
            {
                break;
            }
            if self.seen.get(k) == Some(seq) {
                self.seen.remove(k);
            }
            self.order.pop_front();
        }
        if self.seen.contains_key(&key) {
            return false;
        }
        let seq = self.next;
        self.next += 1;
        self.seen.insert(key.clone(), seq);
        self.order.push_back((key, now, seq));
        true
    }

    /// Forgets `key`, so that its next delivery is a first time (an event the handler
    /// refused, whose retry must get through).
    pub fn forget(&mut self, key: &K) {
        self.seen.remove(key);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: i64) -> EventKey {
        ("e".to_owned(), "s".to_owned(), i)
    }

    #[test]
    fn dedup_forgets_after_ttl_and_beyond_capacity() {
        let mut d = Dedup::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        assert!(d.first_time(k(1), t0));
        assert!(!d.first_time(k(1), t0 + Duration::from_secs(5)));
        assert!(d.first_time(k(1), t0 + Duration::from_secs(11)), "expired");
        assert!(d.first_time(k(2), t0 + Duration::from_secs(11)));
        assert!(d.first_time(k(3), t0 + Duration::from_secs(11)));
        assert!(d.len() <= 2, "bounded: {}", d.len());
    }

    #[test]
    fn the_oldest_is_forgotten_first_when_full() {
        let mut d = Dedup::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(d.first_time(k(i), t0));
        }
        assert!(
            d.first_time(k(3), t0),
            "a fourth key fits by forgetting one"
        );
        assert!(!d.first_time(k(3), t0), "the newest is remembered");
        assert!(!d.first_time(k(2), t0), "so is the one before it");
        assert!(d.first_time(k(0), t0), "the oldest was forgotten");
    }

    #[test]
    fn a_forgotten_key_is_new_again_and_its_old_entry_does_not_evict_the_new_one() {
        let mut d = Dedup::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        assert!(d.first_time(k(1), t0));
        d.forget(&k(1));
        assert!(d.first_time(k(1), t0), "forgotten: delivered again");
        assert!(d.first_time(k(2), t0));
        // The old entry of k(1) leaves the front to make room (same instant); the new one stays.
        assert!(!d.first_time(k(1), t0), "still remembered: {}", d.len());
    }

    #[test]
    fn endless_new_keys_stay_within_the_bound() {
        let mut d = Dedup::new(Duration::from_secs(600), 100);
        let t0 = Instant::now();
        for i in 0..10_000 {
            assert!(d.first_time(k(i), t0));
            d.forget(&k(i - 1));
        }
        assert!(d.len() <= 100 && d.order.len() <= 100, "{}", d.order.len());
    }

    #[test]
    fn the_event_key_is_name_stream_and_timestamp() {
        let body = serde_json::json!({
            "event": "meeting.rtms_started", "event_ts": 7,
            "payload": {"meeting_uuid": "m", "rtms_stream_id": "s",
                        "server_urls": "wss://x.zoom.us"},
        });
        let env = rtms_proto::webhook::Envelope::parse(body.to_string().as_bytes()).unwrap();
        let ev = env.rtms_event().unwrap().unwrap();
        assert_eq!(
            event_key(&ev),
            ("meeting.rtms_started".into(), "s".into(), 7)
        );
    }
}
