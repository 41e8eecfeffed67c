//! Fault injection: the [`Fault`] enum, applied to a live meeting with
//! [`crate::MeetingHandle::inject`] or scheduled in a meeting script (at a time offset, or
//! after N media frames), and its application to a stream: `Meeting::apply_fault` turns a
//! fault into state changes, socket drops or announcements (in `meeting/inject.rs`), and sets the switches the
//! connection tasks read (keep-alives off, answers ignored, connections refused, pending
//! handshake rejections and delays).
//!
//! Each variant names the Zoom behaviour it reproduces; `rtms-protocol.md` §6.1 describes
//! the failover scenarios 1-3 and the termination the host must follow. How a dropped
//! socket goes (drained, then announced) is in `meeting/loss.rs`.

use std::time::Duration;

use serde::Serialize;

use crate::MediaKind;

/// Which sockets a fault applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketSel {
    Signaling,
    Media,
    #[default]
    Any,
}

impl SocketSel {
    pub(crate) fn matches(self, signaling: bool) -> bool {
        match self {
            SocketSel::Any => true,
            SocketSel::Signaling => signaling,
            SocketSel::Media => !signaling,
        }
    }
}

/// Something going wrong on Zoom's side of one stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "fault")]
pub enum Fault {
    /// Close the signaling socket abruptly (no close frame, no webhook). Media sockets go
    /// with it; the stream waits `signaling_grace` for a new signaling handshake.
    DropSignaling,
    /// Close media sockets abruptly with no notice: the one carrying `kind`, or all when
    /// `None`. The stream waits `media_grace` for a new media handshake.
    DropMedia { kind: Option<MediaKind> },
    /// Stop sending keep-alive requests on every socket (the client sees silence).
    StopKeepalives,
    /// Send keep-alive requests again.
    ResumeKeepalives,
    /// Throw away keep-alive answers on the selected sockets, so the server ends them after
    /// `missed_keepalive_limit` misses (signaling: scenario 2 with a webhook; media:
    /// EVENT_UPDATE 7).
    IgnoreKeepaliveAnswers { socket: SocketSel },
    /// Answer the next `count` handshakes on the selected sockets with `status` and
    /// `reason`, then close them.
    RejectHandshakes {
        socket: SocketSel,
        count: u32,
        status: u32,
        reason: String,
    },
    /// Hold the answer to the next handshake on the selected sockets for `delay`.
    DelayHandshake { socket: SocketSel, delay: Duration },
    /// Answer every WebSocket upgrade for this stream with HTTP 503 for `duration`.
    RefuseConnections { duration: Duration },
    /// Scenario 1: a new `*_rtms_started` with a new signaling URL for the live stream; the
    /// old sockets are dropped and the old URL no longer serves the stream.
    Failover,
    /// Scenario 2: drop signaling and media, send `*_rtms_interrupted`; the stream waits
    /// `signaling_grace` for a reconnection.
    InterruptSignaling,
    /// Scenario 3: drop the media sockets, send EVENT_UPDATE 7 and STREAM_STATE_UPDATE
    /// state 2 reason 14 on signaling; the stream waits `media_grace`.
    InterruptMedia,
    /// Deliver the last webhook again with the same body, as Zoom's retries do.
    DuplicateWebhook,
    /// Pause the stream (msg 9 PAUSED, msg 8 PAUSED): nothing is sent and the timeline holds
    /// until [`Fault::Resume`] or, when set, after `duration`. A meeting file refuses a pause
    /// that would never end: without `duration`, a resume must be scheduled at a later time.
    /// A script built in code may hold its stream so on purpose; it then ends when stopped.
    Pause { duration: Option<Duration> },
    /// Resume a paused stream.
    Resume,
    /// End the stream: msg 9 STOPPED, msg 8 state 4 with `reason`, close the sockets, then
    /// `*_rtms_stopped` with `stop_reason`.
    Terminate { reason: u32 },
}

impl Fault {
    /// The snake_case name used in meeting files (`kind = "..."`).
    pub fn name(&self) -> &'static str {
        match self {
            Fault::DropSignaling => "drop_signaling",
            Fault::DropMedia { .. } => "drop_media",
            Fault::StopKeepalives => "stop_keepalives",
            Fault::ResumeKeepalives => "resume_keepalives",
            Fault::IgnoreKeepaliveAnswers { .. } => "ignore_keepalive_answers",
            Fault::RejectHandshakes { .. } => "reject_handshakes",
            Fault::DelayHandshake { .. } => "delay_handshake",
            Fault::RefuseConnections { .. } => "refuse_connections",
            Fault::Failover => "failover",
            Fault::InterruptSignaling => "interrupt_signaling",
            Fault::InterruptMedia => "interrupt_media",
            Fault::DuplicateWebhook => "duplicate_webhook",
            Fault::Pause { .. } => "pause",
            Fault::Resume => "resume",
            Fault::Terminate { .. } => "terminate",
        }
    }
}

/// When a scripted fault fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Milliseconds after the timeline started (the first CLIENT_READY_ACK).
    AtMs(u64),
    /// Once this many media messages (all kinds) were handed to the sockets.
    AfterFrames(u64),
}

/// A fault in a meeting script.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduledFault {
    pub trigger: Trigger,
    pub fault: Fault,
}
