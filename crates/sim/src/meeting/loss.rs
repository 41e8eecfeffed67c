//! Connection loss: removing signaling or media sockets, the interrupted announcements
//! (webhook for signaling, msg 6 and msg 8 for media) and the grace timers that end the
//! stream when the client does not come back in time.
//!
//! Sockets the server ends go down as a group (see [`Ending`]): each drains first, all are
//! dropped together once every one of them drained, and the announcement follows once they
//! are gone, as Zoom announces a loss after it happened. A client therefore never learns of
//! a loss while a socket still holds messages the ledger counts and it has not read.

use std::sync::Arc;

use super::*;
use crate::ledger::{ConnectionChange, SocketKind};

/// How long a group of ending sockets may take to drain, and then to close, before the
/// simulator moves on (a client that stopped reading must not hold a fault up for long).
const END_WAIT: Duration = Duration::from_secs(3);

/// What to do once a group of ended sockets is gone.
pub(crate) enum Then {
    Nothing,
    /// Deliver this webhook (interrupted, or the new started event of a failover).
    Webhook(Box<WebhookEvent>),
    /// Announce scenario 3 on signaling: EVENT_UPDATE 7 and msg 8 state 2 reason 14.
    MediaInterrupted,
}

impl Meeting {
    // === connection loss ===

    /// Removes the signaling socket (and the media sockets that depend on it), ends them as
    /// a group, then runs `then` (scenario 2's interrupted webhook, a failover's started
    /// event), and starts the grace timer.
    pub(crate) fn drop_signaling(self: &Arc<Self>, st: &mut State, then: Then) {
        let mut group = Vec::new();
        if let Some(s) = st.signaling.take() {
            self.closed(s.id, SocketKind::Signaling, 0);
            group.push(s.end);
        }
        for c in st.media.drain(..) {
            self.closed(c.id, SocketKind::Media, c.bits);
            group.push(c.end);
        }
        self.end_group(group, then);
        if st.ended {
            return;
        }
        let epoch = st.sig_epoch;
        let me = self.clone();
        let grace = self.sim.config.signaling_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let st = me.state();
            if !st.ended && st.signaling.is_none() && st.sig_epoch == epoch {
                drop(st);
                let _ = me.control.send(Control::Terminate {
                    reason: stop_reason::AWAIT_RECONNECTION_TIMEOUT,
                });
            }
        });
    }

    /// Removes media sockets (all when `kind` is `None`), ends them as a group, optionally
    /// announces scenario 3 once they are gone, and starts the media grace timer for the
    /// kinds they carried.
    pub(crate) fn drop_media(
        self: &Arc<Self>,
        st: &mut State,
        kind: Option<MediaKind>,
        announce: bool,
    ) {
        let (hit, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut st.media)
            .into_iter()
            .partition(|c| kind.is_none_or(|k| c.bits & k.media_type_bit() != 0));
        st.media = kept;
        let mut lost = 0;
        let mut group = Vec::new();
        for c in hit {
            lost |= c.bits;
            self.closed(c.id, SocketKind::Media, c.bits);
            group.push(c.end);
        }
        if lost == 0 {
            return;
        }
        let then = if announce {
            Then::MediaInterrupted
        } else {
            Then::Nothing
        };
        self.end_group(group, then);
        self.after_media_loss(st, lost, false);
    }

    /// Lets go of media connections whose task ended (socket closed or died) but that are
    /// still registered: they are no longer live, so they hold no media type.
    pub(super) fn reap_closed_media(self: &Arc<Self>, st: &mut State) {
        let mut lost = 0;
        st.media.retain(|c| {
            let dead = c.tx.is_closed();
            if dead {
                lost |= c.bits;
                self.closed(c.id, SocketKind::Media, c.bits);
            }
            !dead
        });
        self.after_media_loss(st, lost, false);
    }

    /// Records in the ledger that a connection stopped being live.
    pub(super) fn closed(&self, conn: u64, socket: SocketKind, bits: u32) {
        self.ledger_mut()
            .connection(conn, socket, bits, ConnectionChange::Closed);
    }

    /// Ends a group of sockets: each drains, all are released together once every one
    /// drained (or after [`END_WAIT`]), and `then` runs once their tasks ended.
    fn end_group(self: &Arc<Self>, group: Vec<Ending>, then: Then) {
        for end in &group {
            end.kill.cancel();
        }
        let me = self.clone();
        tokio::spawn(async move {
            let drained = group.iter().map(|e| {
                let mut rx = e.drained.clone();
                async move {
                    let _ = rx.wait_for(|d| *d).await;
                }
            });
            let _ = tokio::time::timeout(END_WAIT, futures_util::future::join_all(drained)).await;
            for e in &group {
                e.release.cancel();
            }
            // The task drops its side of `drained` with the socket.
            let gone = group.iter().map(|e| {
                let mut rx = e.drained.clone();
                async move { while rx.changed().await.is_ok() {} }
            });
            let _ = tokio::time::timeout(END_WAIT, futures_util::future::join_all(gone)).await;
            me.after_end(then);
        });
    }

    /// Runs what follows a group's end, unless the stream ended meanwhile.
    fn after_end(self: &Arc<Self>, then: Then) {
        let mut st = self.state();
        if st.ended {
            return;
        }
        match then {
            Then::Nothing => {}
            Then::Webhook(ev) => {
                self.deliver(&mut st, *ev);
            }
            Then::MediaInterrupted => {
                let now = unix_ms();
                self.send_event(
                    &st,
                    json!({"event_type": event_type::MEDIA_CONNECTION_INTERRUPTED, "timestamp": now}),
                );
                self.send_stream_state(
                    &st,
                    stream_state::INTERRUPTED,
                    stop_reason::DATA_CONNECTION_INTERRUPTED,
                    now,
                );
            }
        }
    }

    fn after_media_loss(self: &Arc<Self>, st: &mut State, lost: u32, announce: bool) {
        if lost == 0 || st.ended {
            return;
        }
        if announce {
            let now = unix_ms();
            self.send_event(
                st,
                json!({"event_type": event_type::MEDIA_CONNECTION_INTERRUPTED, "timestamp": now}),
            );
            self.send_stream_state(
                st,
                stream_state::INTERRUPTED,
                stop_reason::DATA_CONNECTION_INTERRUPTED,
                now,
            );
        }
        // The grace belongs to this loss: a type that reconnected since is no longer waited
        // for, and a later loss of it starts a grace of its own (without the epochs, this
        // timer would end a stream whose media came back and was lost again just before it
        // fired).
        let epochs = st.media_epochs;
        let me = self.clone();
        let grace = self.sim.config.media_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let st = me.state();
            let covered = st.media.iter().fold(0, |a, c| a | c.bits);
            let still_lost = (0..32).any(|b| {
                lost & (1 << b) != 0 && covered & (1 << b) == 0 && st.media_epochs[b] == epochs[b]
            });
            if !st.ended && still_lost {
                drop(st);
                let _ = me.control.send(Control::Terminate {
                    reason: stop_reason::AWAIT_RECONNECTION_TIMEOUT,
                });
            }
        });
        self.bump();
    }

    /// A connection task ended.
    pub(crate) fn on_closed(self: &Arc<Self>, conn_id: u64, signaling: bool, cause: CloseCause) {
        let timed_out = cause == CloseCause::KeepAliveTimeout;
        if timed_out {
            self.ledger_mut().counters.keepalive_timeouts += 1;
        }
        if let Some(r) = &self.recorder {
            r.flush();
        }
        let mut st = self.state();
        if signaling {
            if st.signaling.as_ref().is_some_and(|s| s.id == conn_id) {
                let then = if timed_out {
                    Then::Webhook(Box::new(self.interrupted_event(&st)))
                } else {
                    Then::Nothing
                };
                self.drop_signaling(&mut st, then);
            }
        } else if let Some(i) = st.media.iter().position(|c| c.id == conn_id) {
            let c = st.media.remove(i);
            self.closed(c.id, SocketKind::Media, c.bits);
            self.after_media_loss(&mut st, c.bits, timed_out);
        }
        drop(st);
        self.bump();
    }

    /// The `*_rtms_interrupted` event of scenario 2, for the current signaling URL.
    pub(crate) fn interrupted_event(&self, st: &State) -> WebhookEvent {
        let url = self.sim.signaling_url_for(&self.stream_id, st.generation);
        self.build_event(WebhookAction::Interrupted, Some(url))
    }
}
