//! A [`Fault`] applied to a live stream: state changes, socket drops or announcements, and
//! the switches the connection tasks read (keep-alives off, answers ignored, connections
//! refused, pending handshake rejections and delays). The faults themselves are
//! [`crate::faults`]'s.

use std::sync::Arc;
use std::time::Instant;

use rtms_proto::codes::{session_state, stream_state};
use rtms_proto::{WebhookAction, unix_ms};

use crate::faults::*;
use crate::meeting::{Control, Meeting, State, Then};

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
            Fault::Failover => self.failover(&mut st),
            Fault::InterruptSignaling => {
                let ev = self.interrupted_event(&st);
                self.drop_signaling(&mut st, Then::Webhook(Box::new(ev)));
            }
            Fault::InterruptMedia => self.drop_media(&mut st, None, true),
            Fault::DuplicateWebhook => self.duplicate_webhook(&mut st),
            Fault::Pause { duration } => self.pause(&mut st, duration),
            Fault::Resume => self.resume(&mut st),
            Fault::Terminate { reason } => {
                let _ = self.control.send(Control::Terminate { reason });
            }
        }
        drop(st);
        self.bump();
    }

    /// Moves the stream to a new signaling URL: the sockets go, then the started webhook
    /// with the new URL.
    fn failover(self: &Arc<Self>, st: &mut State) {
        st.generation += 1;
        let url = self.sim.signaling_url_for(&self.stream_id, st.generation);
        // The new URL is the stream's from now on; the event goes out once the old
        // sockets are gone.
        let ev = self.build_event(WebhookAction::Started, Some(url));
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = ev.clone();
        self.drop_signaling(st, Then::Webhook(Box::new(ev)));
    }

    /// Delivers the last webhook again, as a retry of it.
    fn duplicate_webhook(&self, st: &mut State) {
        let Some((event, body, attempt)) = st.last_webhook.clone() else {
            return;
        };
        st.last_webhook = Some((event.clone(), body.clone(), attempt + 1));
        if let Ok(ev) = rtms_proto::webhook::Envelope::parse(&body)
            && let Ok(Some(ev)) = ev.rtms_event()
        {
            let _ = self.webhooks_tx.send(ev);
        }
        let _ = self.deliveries.send(super::webhooks::Delivery {
            event,
            body,
            attempt: attempt + 1,
            done: None,
            last: false,
        });
    }

    /// Pauses the stream (announced on signaling), resumed after `duration` if given.
    fn pause(self: &Arc<Self>, st: &mut State, duration: Option<std::time::Duration>) {
        if st.paused {
            return;
        }
        st.paused = true;
        let now = unix_ms();
        self.send_session_state(st, session_state::PAUSED, 0, now);
        self.send_stream_state(st, stream_state::PAUSED, 0, now);
        if let Some(d) = duration {
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                me.apply_fault(Fault::Resume);
            });
        }
    }

    fn resume(&self, st: &mut State) {
        if st.paused {
            st.paused = false;
            let now = unix_ms();
            self.send_session_state(st, session_state::RESUMED, 0, now);
            self.send_stream_state(st, stream_state::RESUMED, 0, now);
        }
    }
}
