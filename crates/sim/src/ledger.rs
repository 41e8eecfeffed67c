//! The ledger: what the simulator actually sent to the client for one meeting.
//!
//! Connection tasks write to it after a frame was written to the socket, so counts mean
//! "delivered to the socket", not "scheduled". [`Ledger`] is a snapshot (cheap to clone, safe
//! to read while the meeting runs); tests and benchmarks compare it with what a host received.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::MediaKind;

/// One transcript message as sent (msg 17).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TranscriptLine {
    pub user_id: i64,
    pub user_name: String,
    pub text: String,
    /// `content.start_time`, ms since the Unix epoch.
    pub start_time: u64,
    /// `content.end_time`, ms since the Unix epoch.
    pub end_time: u64,
    /// `content.timestamp` (the send time on the meeting clock), ms since the Unix epoch.
    pub timestamp: u64,
}

/// One chat message as sent (msg 18).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatLine {
    pub user_id: i64,
    pub user_name: String,
    pub text: String,
    pub timestamp: u64,
}

/// Frames of one media kind that reached the socket. Sequence numbers count the kind's
/// frames on the meeting's timeline from 0; frames skipped while the client was away leave
/// gaps between ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KindStats {
    pub count: u64,
    pub bytes: u64,
    /// Inclusive `(first, last)` runs of consecutive sequence numbers, in send order.
    pub seq_ranges: Vec<(u64, u64)>,
}

impl KindStats {
    fn record(&mut self, seq: u64, bytes: usize) {
        self.count += 1;
        self.bytes += bytes as u64;
        match self.seq_ranges.last_mut() {
            Some((_, last)) if *last + 1 == seq => *last = seq,
            _ => self.seq_ranges.push((seq, seq)),
        }
    }
}

/// Connection, handshake and keep-alive counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub signaling_connections: u64,
    pub media_connections: u64,
    /// Connections answered with HTTP 503 by a `RefuseConnections` fault.
    pub connections_refused: u64,
    pub signaling_handshakes_ok: u64,
    pub media_handshakes_ok: u64,
    /// Handshakes answered with a non-zero status (bad signature, duplicate, faults...).
    pub handshakes_rejected: u64,
    pub duplicate_signaling_rejected: u64,
    pub client_ready_acks: u64,
    pub keepalive_requests: u64,
    pub keepalive_answers: u64,
    /// Answers thrown away by an `IgnoreKeepaliveAnswers` fault.
    pub keepalive_answers_ignored: u64,
    /// Sockets the server ended after too many unanswered keep-alives.
    pub keepalive_timeouts: u64,
    pub event_updates: u64,
    pub stream_state_updates: u64,
    pub session_state_updates: u64,
}

/// One webhook POST attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookDelivery {
    pub event: String,
    /// The exact body sent (compact JSON).
    pub body: String,
    /// 1 for the first attempt; retries and injected duplicates count up.
    pub attempt: u32,
    /// HTTP status, or `None` when the request failed.
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// A snapshot of everything sent for one meeting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ledger {
    pub kinds: BTreeMap<MediaKind, KindStats>,
    pub transcript: Vec<TranscriptLine>,
    pub chats: Vec<ChatLine>,
    /// `event_type` of every EVENT_UPDATE sent, in order.
    pub events: Vec<u32>,
    /// `(state, reason)` of every STREAM_STATE_UPDATE sent, in order.
    pub stream_states: Vec<(u32, u32)>,
    pub counters: Counters,
    pub webhooks: Vec<WebhookDelivery>,
    /// Set once the stream ended, with its stop reason.
    pub stop_reason: Option<u32>,
}

impl Ledger {
    /// The transcript lines in send order.
    pub fn transcript_lines(&self) -> Vec<TranscriptLine> {
        self.transcript.clone()
    }

    /// Frames of `kind` delivered (transcript and chat messages count as frames).
    pub fn count(&self, kind: MediaKind) -> u64 {
        self.kinds.get(&kind).map_or(0, |k| k.count)
    }

    /// Every media message delivered, all kinds together.
    pub fn total_frames(&self) -> u64 {
        self.kinds.values().map(|k| k.count).sum()
    }

    /// The sequence ranges of `kind` (see [`KindStats::seq_ranges`]).
    pub fn seq_ranges(&self, kind: MediaKind) -> Vec<(u64, u64)> {
        self.kinds
            .get(&kind)
            .map(|k| k.seq_ranges.clone())
            .unwrap_or_default()
    }

    /// Webhook attempts for events whose name ends with `suffix` (e.g. `rtms_interrupted`).
    pub fn webhooks_ending(&self, suffix: &str) -> Vec<&WebhookDelivery> {
        self.webhooks
            .iter()
            .filter(|w| w.event.ends_with(suffix))
            .collect()
    }

    pub(crate) fn record_media(&mut self, kind: MediaKind, seq: u64, bytes: usize) {
        self.kinds.entry(kind).or_default().record(seq, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_ranges_split_on_gaps() {
        let mut l = Ledger::default();
        for s in [0, 1, 2, 5, 6, 9] {
            l.record_media(MediaKind::Audio, s, 640);
        }
        assert_eq!(l.seq_ranges(MediaKind::Audio), vec![(0, 2), (5, 6), (9, 9)]);
        assert_eq!(l.count(MediaKind::Audio), 6);
        assert_eq!(l.count(MediaKind::Video), 0);
        assert_eq!(l.kinds[&MediaKind::Audio].bytes, 6 * 640);
    }
}
