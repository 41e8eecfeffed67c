//! Connection loss: removing signaling or media sockets, the interrupted announcements
//! (webhook for signaling, msg 6 and msg 8 for media) and the grace timers that end the
//! stream when the client does not come back in time.

use std::sync::Arc;

use super::*;

impl Meeting {
    // === connection loss ===

    /// Removes the signaling socket (and the media sockets that depend on it), optionally
    /// announces scenario 2 with an interrupted webhook, and starts the grace timer.
    pub(super) fn drop_signaling(self: &Arc<Self>, st: &mut State, webhook: bool) {
        if let Some(s) = st.signaling.take() {
            s.kill.cancel();
        }
        for c in st.media.drain(..) {
            c.kill.cancel();
        }
        if st.ended {
            return;
        }
        if webhook {
            let url = self.sim.signaling_url_for(&self.stream_id, st.generation);
            self.emit_webhook(st, WebhookAction::Interrupted, Some(url));
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

    /// Removes media sockets (all when `kind` is `None`), optionally announces scenario 3,
    /// and starts the media grace timer for the kinds they carried.
    pub(super) fn drop_media(
        self: &Arc<Self>,
        st: &mut State,
        kind: Option<MediaKind>,
        announce: bool,
    ) {
        let mut lost = 0;
        st.media.retain(|c| {
            let hit = kind.is_none_or(|k| c.bits & k.media_type_bit() != 0);
            if hit {
                lost |= c.bits;
                c.kill.cancel();
            }
            !hit
        });
        self.after_media_loss(st, lost, announce);
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
        let me = self.clone();
        let grace = self.sim.config.media_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let st = me.state();
            let covered = st.media.iter().fold(0, |a, c| a | c.bits);
            if !st.ended && covered & lost != lost {
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
        if cause == CloseCause::KeepAliveTimeout {
            self.ledger_mut().counters.keepalive_timeouts += 1;
        }
        if let Some(r) = &self.recorder {
            r.flush();
        }
        let mut st = self.state();
        if signaling {
            if st.signaling.as_ref().is_some_and(|s| s.id == conn_id) {
                self.drop_signaling(&mut st, cause == CloseCause::KeepAliveTimeout);
            }
        } else if let Some(i) = st.media.iter().position(|c| c.id == conn_id) {
            let c = st.media.remove(i);
            c.kill.cancel();
            self.after_media_loss(&mut st, c.bits, cause == CloseCause::KeepAliveTimeout);
        }
        drop(st);
        self.bump();
    }
}
