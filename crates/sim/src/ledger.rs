//! The ledger: what the simulator actually sent to the client for one meeting, and who was
//! connected when.
//!
//! Connection tasks write to it after a message was written to the socket, so counts mean
//! "written to the socket", not "scheduled". [`Ledger`] is a snapshot (cheap to clone, safe
//! to read while the meeting runs); tests and benchmarks compare it with what a host received.
//!
//! # The guarantee
//!
//! Every message the final ledger counts (media frames, transcript and chat lines, events,
//! stream and session states) was read by the client, provided the client answers keep-alive
//! requests (msg 12) and close frames, as the protocol asks. The server never drops a socket
//! with counted messages the client has not confirmed reading:
//!
//! - when the stream ends, each socket sends a keep-alive request after its last message and
//!   waits for the answer, and its close frame waits for the client's;
//! - when a fault (or a full outbox at the end) cuts a socket off, the socket first stops
//!   writing, flushes, sends a keep-alive request and reads until the client answered; the
//!   sockets that go down together (signaling and its media) are dropped together once all
//!   of them drained, and the announcement of the loss (`*_rtms_interrupted`, a failover's
//!   new `*_rtms_started`, EVENT_UPDATE 7) follows once they are gone. In fast pace, what a
//!   cut-off socket had queued but not written goes out first on the next socket.
//!
//! A client that never confirms (it stopped reading, or closed a socket on its own) is not
//! waited for beyond a few seconds: the messages written to such a socket since the client
//! last confirmed are counted in [`Counters::unconfirmed`], an upper bound on what it may
//! have missed. A test that sees `unconfirmed == 0` can compare counts exactly.
//!
//! [`Ledger::connections`] records every accepted, closed and duplicate connection in order;
//! [`Ledger::one_client_at_a_time`] checks that no two clients held the stream at once.

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
    /// Signaling handshakes refused with status 8 DUPLICATE_SIGNAL_REQUEST.
    pub duplicate_signaling_rejected: u64,
    /// Media handshakes refused because a live media connection already carries one of
    /// their types (status 16 DUPLICATE_MEDIA_DATA_CONNECTION, or 15 when an `all`
    /// connection is involved).
    pub duplicate_media_rejected: u64,
    pub client_ready_acks: u64,
    pub keepalive_requests: u64,
    pub keepalive_answers: u64,
    /// Answers thrown away by an `IgnoreKeepaliveAnswers` fault.
    pub keepalive_answers_ignored: u64,
    /// Sockets the server ended after too many unanswered keep-alives.
    pub keepalive_timeouts: u64,
    /// Messages the ledger counts (media, events, stream and session states) that were
    /// written to a socket which then ended before its client confirmed reading them: 0
    /// whenever the client answers keep-alive requests and close frames (see the module
    /// docs). An upper bound on what a client may have missed.
    pub unconfirmed: u64,
    pub event_updates: u64,
    pub stream_state_updates: u64,
    pub session_state_updates: u64,
    /// STREAM_CLOSE_REQ (msg 21) received on signaling; each is answered with msg 22 status 0
    /// and ends the stream with STOP_REASON 20 (RECEIVER_REQUEST_CLOSE).
    pub stream_close_requests: u64,
}

/// Which server a connection is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketKind {
    Signaling,
    Media,
}

/// What happened to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum ConnectionChange {
    /// The handshake was accepted: the connection is live.
    Accepted,
    /// The connection stopped being live: its socket closed, died (keep-alive timeout), or
    /// a fault or the end of the stream ended it.
    Closed,
    /// The handshake was refused because a live connection already held the stream (the
    /// signaling socket, or a media socket carrying one of the same types).
    RejectedDuplicate { status: u32 },
}

/// One change in who is connected to the stream, in the order the simulator decided them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionEvent {
    /// The connection's id within the meeting (a refused attempt gets one too).
    pub conn: u64,
    pub socket: SocketKind,
    /// The single-type media bits a media connection carries (0 for signaling).
    pub bits: u32,
    #[serde(flatten)]
    pub change: ConnectionChange,
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
    /// Accepted, closed and duplicate connections, in order (see
    /// [`Ledger::one_client_at_a_time`]).
    pub connections: Vec<ConnectionEvent>,
    pub webhooks: Vec<WebhookDelivery>,
    /// Set once the stream ended, with its stop reason.
    pub stop_reason: Option<u32>,
    /// Every individual video subscription asked (msg 28) and its answer, in order.
    pub video_subscriptions: Vec<VideoSubscription>,
    /// Individual video frames sent, per participant.
    pub video_by_user: BTreeMap<i64, u64>,
    /// Handshakes refused, by the status code's name in Zoom's GA table
    /// (`rtms_proto::codes::status::name`).
    pub refusals: BTreeMap<&'static str, u64>,
    /// The transcript parameters the last accepted data handshake carrying transcript asked
    /// for, as sent (`src_language`, `enable_lid`; Zoom's SDK 1.1 `setTranscriptParams`).
    pub transcript_params: Option<rtms_proto::params::TranscriptParams>,
    /// For every keep-alive request (msg 12) answered, the time from writing the request to
    /// reading its answer (msg 13), in the order answered, both sockets together.
    pub keepalive_answer_times: Vec<std::time::Duration>,
}

/// One msg 28 and the status the simulator answered it with (msg 29).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VideoSubscription {
    pub user_id: i64,
    pub subscribe: bool,
    pub status: u32,
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

    /// Checks that at most one client held the stream at any moment: no connection attempt
    /// was refused as a duplicate, no two accepted signaling connections were live at once,
    /// and no two live media connections carried the same media type. `Err` describes the
    /// first violation. A client that reconnects after its old socket closed or died passes.
    pub fn one_client_at_a_time(&self) -> Result<(), String> {
        let mut signaling: Option<u64> = None;
        let mut media: Vec<(u64, u32)> = Vec::new();
        for e in &self.connections {
            match (e.change, e.socket) {
                (ConnectionChange::RejectedDuplicate { status }, socket) => {
                    return Err(format!(
                        "connection {} tried a second {socket:?} connection while one was live \
                         (refused with status {status})",
                        e.conn
                    ));
                }
                (ConnectionChange::Accepted, SocketKind::Signaling) => {
                    if let Some(live) = signaling {
                        return Err(format!(
                            "signaling connections {live} and {} were live at once",
                            e.conn
                        ));
                    }
                    signaling = Some(e.conn);
                }
                (ConnectionChange::Accepted, SocketKind::Media) => {
                    if let Some((live, _)) = media.iter().find(|(_, b)| b & e.bits != 0) {
                        return Err(format!(
                            "media connections {live} and {} carried the same type at once",
                            e.conn
                        ));
                    }
                    media.push((e.conn, e.bits));
                }
                (ConnectionChange::Closed, SocketKind::Signaling) => {
                    if signaling == Some(e.conn) {
                        signaling = None;
                    }
                }
                (ConnectionChange::Closed, SocketKind::Media) => {
                    media.retain(|(c, _)| *c != e.conn)
                }
            }
        }
        Ok(())
    }

    pub(crate) fn connection(
        &mut self,
        conn: u64,
        socket: SocketKind,
        bits: u32,
        change: ConnectionChange,
    ) {
        self.connections.push(ConnectionEvent {
            conn,
            socket,
            bits,
            change,
        });
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

    #[test]
    fn one_client_at_a_time_allows_reconnections_and_catches_overlaps() {
        use ConnectionChange::*;
        use SocketKind::*;
        let mut l = Ledger::default();
        l.connection(1, Signaling, 0, Accepted);
        l.connection(2, Media, 1 | 8, Accepted);
        l.connection(3, Media, 2, Accepted);
        l.connection(1, Signaling, 0, Closed);
        l.connection(2, Media, 1 | 8, Closed);
        l.connection(4, Signaling, 0, Accepted);
        l.connection(5, Media, 1, Accepted);
        assert_eq!(l.one_client_at_a_time(), Ok(()));

        let mut overlap = l.clone();
        overlap.connection(6, Signaling, 0, Accepted);
        let e = overlap.one_client_at_a_time().unwrap_err();
        assert!(e.contains("4 and 6"), "{e}");

        let mut same_kind = l.clone();
        same_kind.connection(6, Media, 2 | 4, Accepted);
        let e = same_kind.one_client_at_a_time().unwrap_err();
        assert!(e.contains("3 and 6"), "{e}");

        let mut refused = l;
        refused.connection(6, Signaling, 0, RejectedDuplicate { status: 8 });
        let e = refused.one_client_at_a_time().unwrap_err();
        assert!(e.contains("status 8"), "{e}");
    }
}
