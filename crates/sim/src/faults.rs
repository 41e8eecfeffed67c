//! Fault injection: the [`Fault`] enum, applied to a live meeting with
//! [`crate::MeetingHandle::inject`] or scheduled in a meeting script (at a time offset, or
//! after N media frames), and its application to a stream: `Meeting::apply_fault` turns a
//! fault into state changes, socket drops or announcements, and sets the switches the
//! connection tasks read (keep-alives off, answers ignored, connections refused, pending
//! handshake rejections and delays).
//!
//! Each variant names the Zoom behaviour it reproduces; `rtms-protocol.md` §6.1 describes
//! the failover scenarios 1-3 and the termination the host must follow. How a dropped
//! socket goes (drained, then announced) is in `meeting/loss.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtms_proto::codes::{session_state, stream_state};
use rtms_proto::{WebhookAction, unix_ms};
use serde::Serialize;

use crate::MediaKind;
use crate::meeting::{Control, Meeting, Then};

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

/// A pending handshake rejection (`reject_handshakes`), used up by [`Meeting`]'s handshakes.
pub(crate) struct Reject {
    pub(crate) socket: SocketSel,
    pub(crate) remaining: u32,
    pub(crate) status: u32,
    pub(crate) reason: String,
}

impl Meeting {
    // === switches read by connection tasks ===

    pub(crate) fn keepalives_enabled(&self) -> bool {
        !self.state().keepalives_off
    }

    pub(crate) fn answers_ignored(&self, signaling: bool) -> bool {
        self.state()
            .ignore_answers
            .is_some_and(|s| s.matches(signaling))
    }

    /// True (and counted) when a fault refuses new connections right now.
    pub(crate) fn refusing(&self) -> bool {
        let refusing = self
            .state()
            .refuse_until
            .is_some_and(|t| Instant::now() < t);
        if refusing {
            self.ledger_mut().counters.connections_refused += 1;
        }
        refusing
    }

    // === faults ===

    /// Applies a fault now. Terminate goes through the timeline task.
    pub(crate) fn apply_fault(self: &Arc<Self>, fault: Fault) {
        tracing::info!(stream = %self.stream_id, fault = fault.name(), "injecting fault");
        let mut st = self.state();
        match fault {
            Fault::DropSignaling => self.drop_signaling(&mut st, Then::Nothing),
            Fault::DropMedia { kind } => self.drop_media(&mut st, kind, false),
            Fault::StopKeepalives => st.keepalives_off = true,
            Fault::ResumeKeepalives => st.keepalives_off = false,
            Fault::IgnoreKeepaliveAnswers { socket } => st.ignore_answers = Some(socket),
            Fault::RejectHandshakes {
                socket,
                count,
                status,
                reason,
            } => st.rejects.push(Reject {
                socket,
                remaining: count,
                status,
                reason,
            }),
            Fault::DelayHandshake { socket, delay } => st.delays.push((socket, delay)),
            Fault::RefuseConnections { duration } => {
                st.refuse_until = Some(Instant::now() + duration)
            }
            Fault::Failover => {
                st.generation += 1;
                let url = self.sim.signaling_url_for(&self.stream_id, st.generation);
                // The new URL is the stream's from now on; the event goes out once the old
                // sockets are gone.
                let ev = self.build_event(WebhookAction::Started, Some(url));
                *self.started.lock().unwrap_or_else(|p| p.into_inner()) = ev.clone();
                self.drop_signaling(&mut st, Then::Webhook(ev));
            }
            Fault::InterruptSignaling => {
                let ev = self.interrupted_event(&st);
                self.drop_signaling(&mut st, Then::Webhook(ev));
            }
            Fault::InterruptMedia => self.drop_media(&mut st, None, true),
            Fault::DuplicateWebhook => {
                if let Some((event, body, attempt)) = st.last_webhook.clone() {
                    st.last_webhook = Some((event.clone(), body.clone(), attempt + 1));
                    if let Ok(ev) = rtms_proto::webhook::Envelope::parse(&body)
                        && let Ok(Some(ev)) = ev.rtms_event()
                    {
                        let _ = self.webhooks_tx.send(ev);
                    }
                    let _ = self.deliveries.send(crate::webhook::Delivery {
                        event,
                        body,
                        attempt: attempt + 1,
                        done: None,
                        last: false,
                    });
                }
            }
            Fault::Pause { duration } => {
                if !st.paused {
                    st.paused = true;
                    let now = unix_ms();
                    self.send_session_state(&st, session_state::PAUSED, 0, now);
                    self.send_stream_state(&st, stream_state::PAUSED, 0, now);
                    if let Some(d) = duration {
                        let me = self.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(d).await;
                            me.apply_fault(Fault::Resume);
                        });
                    }
                }
            }
            Fault::Resume => {
                if st.paused {
                    st.paused = false;
                    let now = unix_ms();
                    self.send_session_state(&st, session_state::RESUMED, 0, now);
                    self.send_stream_state(&st, stream_state::RESUMED, 0, now);
                }
            }
            Fault::Terminate { reason } => {
                let _ = self.control.send(Control::Terminate { reason });
            }
        }
        drop(st);
        self.bump();
    }
}
