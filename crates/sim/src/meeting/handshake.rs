//! The handshakes the servers apply to a stream (ids, signature, pending fault rejections
//! and delays, media type masks), the client's messages on signaling (ready, event
//! subscriptions), and the messages the server sends on signaling (stream and session
//! states, events).

use std::sync::Arc;

use super::*;
use crate::ledger::{ConnectionChange, SocketKind};

impl Meeting {
    fn take_fault_for(&self, st: &mut State, signaling: bool) -> Result<Duration, (u32, String)> {
        if let Some(i) = st
            .rejects
            .iter()
            .position(|r| r.remaining > 0 && r.socket.matches(signaling))
        {
            let r = &mut st.rejects[i];
            r.remaining -= 1;
            let out = (r.status, r.reason.clone());
            if r.remaining == 0 {
                st.rejects.remove(i);
            }
            return Err(out);
        }
        if let Some(i) = st.delays.iter().position(|d| d.0.matches(signaling)) {
            return Ok(st.delays.remove(i).1);
        }
        Ok(Duration::ZERO)
    }

    fn check_ids(
        &self,
        ids: &HandshakeIds,
        stream_id: &str,
        signature: &str,
    ) -> Result<(), (u32, String)> {
        if stream_id != self.stream_id {
            return Err((
                status::INVALID_RTMS_STREAM_ID,
                format!("rtms_stream_id {stream_id:?} is not a live stream"),
            ));
        }
        if !ids.all().any(|i| i == self.id) {
            return Err((
                status::INVALID_PAYLOAD,
                format!(
                    "the handshake must carry {} {:?} of this stream",
                    self.product.id_key(),
                    self.id
                ),
            ));
        }
        if !sign::signatures_match(&self.expected_signature(), signature.trim()) {
            return Err((
                status::INVALID_SIGNATURE,
                "invalid signature: expected hex HMAC-SHA256(client_secret, client_id,id,rtms_stream_id)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Decides a signaling handshake. On success the connection is registered as the
    /// stream's signaling socket. Returns the delay to apply before answering.
    ///
    /// As Zoom does, a second signaling connection for a stream that still has a live one
    /// is refused with status 8 DUPLICATE_SIGNAL_REQUEST, and the attempt enters the ledger.
    /// A connection whose task already ended (its socket closed or died) is not live: it is
    /// let go first, so a client that reconnects after losing its socket is accepted.
    pub(crate) fn signaling_handshake(
        self: &Arc<Self>,
        req: &SignalingHandshakeReq,
        path_gen: Option<u32>,
    ) -> Result<SigAccepted, (u32, String)> {
        let result = (|| {
            self.check_ids(&req.ids, &req.rtms_stream_id, &req.signature)?;
            let mut st = self.state();
            if st.ended {
                return Err((
                    status::INVALID_RTMS_STREAM_ID,
                    "the stream has ended".to_string(),
                ));
            }
            if let Some(g) = path_gen
                && g != st.generation
            {
                return Err((
                    status::INVALID_RTMS_STREAM_ID,
                    "this signaling server no longer serves the stream; use the newest server_urls"
                        .into(),
                ));
            }
            let delay = self.take_fault_for(&mut st, true)?;
            if st.signaling.as_ref().is_some_and(|s| s.tx.is_closed()) {
                self.drop_signaling(&mut st, super::loss::Then::Nothing);
            }
            if st.signaling.is_some() {
                return Err(self.duplicate_signaling(&mut st));
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let (end, task_end) = Ending::pair(&self.cancel);
            let id = st.next_conn;
            st.next_conn += 1;
            st.sig_epoch += 1;
            // Individual video subscriptions belong to the signaling connection that made them.
            st.individual.clear();
            st.announced = false;
            st.signaling = Some(SigConn {
                id,
                tx: tx.clone(),
                end,
            });
            self.ledger_mut()
                .connection(id, SocketKind::Signaling, 0, ConnectionChange::Accepted);
            Ok(SigAccepted {
                id,
                tx,
                rx,
                end: task_end,
                delay,
            })
        })();
        let mut l = self.ledger_mut();
        match &result {
            Ok(_) => l.counters.signaling_handshakes_ok += 1,
            Err((code, reason)) => {
                l.counters.handshakes_rejected += 1;
                *l.refusals.entry(status::name(*code)).or_default() += 1;
                tracing::debug!(stream = %self.stream_id, code, status = status::name(*code), reason, "handshake refused");
            }
        }
        drop(l);
        self.bump();
        result
    }

    /// Refuses a second signaling connection for the stream, recording the attempt.
    fn duplicate_signaling(&self, st: &mut State) -> (u32, String) {
        let conn = st.next_conn;
        st.next_conn += 1;
        let status = status::DUPLICATE_SIGNAL_REQUEST;
        let mut l = self.ledger_mut();
        l.counters.duplicate_signaling_rejected += 1;
        l.connection(
            conn,
            SocketKind::Signaling,
            0,
            ConnectionChange::RejectedDuplicate { status },
        );
        (
            status,
            "duplicate signal request: the stream already has a live signaling connection".into(),
        )
    }

    /// Decides a media handshake; on success registers the socket (not ready until msg 7)
    /// and returns the confirmed params. A media connection for a type a live one already
    /// carries is refused (status 16, or 15 when an `all` connection is involved) and the
    /// attempt enters the ledger; connections whose task ended are let go first.
    pub(crate) fn media_handshake(
        self: &Arc<Self>,
        req: &DataHandshakeReq,
        path_kind: Option<MediaKind>,
    ) -> Result<MediaAccepted, (u32, String)> {
        let result = self.decide_media(req, path_kind);
        let mut l = self.ledger_mut();
        match &result {
            Ok(_) => l.counters.media_handshakes_ok += 1,
            Err((code, reason)) => {
                l.counters.handshakes_rejected += 1;
                *l.refusals.entry(status::name(*code)).or_default() += 1;
                tracing::debug!(stream = %self.stream_id, code, status = status::name(*code), reason, "handshake refused");
            }
        }
        drop(l);
        self.bump();
        result
    }

    /// [`Self::media_handshake`]'s decision.
    fn decide_media(
        self: &Arc<Self>,
        req: &DataHandshakeReq,
        path_kind: Option<MediaKind>,
    ) -> Result<MediaAccepted, (u32, String)> {
        self.check_ids(&req.ids, &req.rtms_stream_id, &req.signature)?;
        let (all, bits) = media_bits(req.media_type, path_kind)?;
        let asked = transcript_asked(req, bits)?;
        let mut st = self.state();
        if st.ended {
            return Err((
                status::INVALID_RTMS_STREAM_ID,
                "the stream has ended".into(),
            ));
        }
        if st.signaling.is_none() {
            return Err((
                status::INVALID_RTMS_STREAM_ID,
                "no live signaling connection for this stream; complete the signaling handshake first"
                    .into(),
            ));
        }
        let delay = self.take_fault_for(&mut st, false)?;
        self.reap_closed_media(&mut st);
        self.refuse_duplicate_media(&mut st, all, bits)?;
        let mut params = req.media_params.clone().unwrap_or_default().resolved();
        if let Some(a) = &params.audio {
            params.audio = Some(crate::media_gen::producible_audio(a));
        }
        let (tx, rx) = mpsc::channel(64);
        let (end, task_end) = Ending::pair(&self.cancel);
        let id = st.next_conn;
        st.next_conn += 1;
        for (bit, n) in st.media_epochs.iter_mut().enumerate() {
            if bits & (1 << bit) != 0 {
                *n += 1;
            }
        }
        let mut l = self.ledger_mut();
        l.connection(id, SocketKind::Media, bits, ConnectionChange::Accepted);
        if asked.is_some() {
            l.transcript_params = asked;
        }
        drop(l);
        st.media.push(MediaConn {
            id,
            bits,
            all,
            params: params.clone(),
            ready: false,
            tx,
            end,
        });
        Ok(MediaAccepted {
            id,
            rx,
            end: task_end,
            params,
            delay,
        })
    }

    /// Refuses (and enters in the ledger) a media connection for a type a live one already
    /// carries, or one beside an `all` connection.
    fn refuse_duplicate_media(
        &self,
        st: &mut State,
        all: bool,
        bits: u32,
    ) -> Result<(), (u32, String)> {
        let refused = if st.media.iter().any(|c| c.all) || (all && !st.media.is_empty()) {
            (
                status::MEDIA_DATA_ALL_CONNECTION_EXIST,
                "an `all` media connection exists alongside another media connection",
            )
        } else if st.media.iter().any(|c| c.bits & bits != 0) {
            (
                status::DUPLICATE_MEDIA_DATA_CONNECTION,
                "duplicate media data connection: a live connection carries this media type",
            )
        } else {
            return Ok(());
        };
        let (status, reason) = refused;
        let conn = st.next_conn;
        st.next_conn += 1;
        let mut l = self.ledger_mut();
        l.counters.duplicate_media_rejected += 1;
        l.connection(
            conn,
            SocketKind::Media,
            bits,
            ConnectionChange::RejectedDuplicate { status },
        );
        Err((status, reason.into()))
    }

    // === client messages on signaling ===

    /// CLIENT_READY_ACK: every handshaken media socket becomes ready. The first one of a
    /// signaling session announces the stream (msg 8 ACTIVE, msg 9 STARTED).
    pub(crate) fn client_ready(&self) {
        self.ledger_mut().counters.client_ready_acks += 1;
        let mut st = self.state();
        for c in &mut st.media {
            c.ready = true;
        }
        st.ready_once = true;
        if !st.announced && st.signaling.is_some() {
            st.announced = true;
            let now = unix_ms();
            self.send_session_state(&st, session_state::STARTED, 0, now);
            self.send_stream_state(&st, stream_state::ACTIVE, 0, now);
        }
        drop(st);
        self.bump();
    }

    pub(crate) fn subscribe(&self, events: &[(u32, bool)]) {
        let mut st = self.state();
        for (t, on) in events {
            st.subscriptions.insert(*t, *on);
        }
    }

    /// Event subscriptions are opt-in (`rtms-protocol.md` decision 13): a client gets only
    /// the event types it subscribed to with msg 5, and none before it subscribes. Zoom's SDK
    /// 1.1 subscribes to types 2, 3 and 4 once its join is confirmed, and names mixed audio
    /// from the active-speaker events (type 2) it then receives.
    pub(crate) fn subscribed(&self, event_type: u32) -> bool {
        let st = self.state();
        st.subscriptions.get(&event_type).copied().unwrap_or(false)
    }

    // === messages to the client on signaling ===

    pub(crate) fn send_signaling(&self, st: &State, value: serde_json::Value, note: Note) -> bool {
        match &st.signaling {
            Some(s) => {
                s.tx.send(Out::Msg {
                    text: value.to_string(),
                    note,
                })
                .is_ok()
            }
            None => false,
        }
    }

    pub(crate) fn send_stream_state(&self, st: &State, state: u32, reason: u32, ts: u64) {
        // `reason` and `stop_reason` both, as msg 9: Zoom's samples read `stop_reason`.
        let v = json!({"msg_type": 8, "rtms_stream_id": self.stream_id, "state": state,
            "reason": reason, "stop_reason": reason, "timestamp": ts});
        self.send_signaling(st, v, Note::StreamState(state, reason));
    }

    pub(crate) fn send_session_state(&self, st: &State, state: u32, reason: u32, ts: u64) {
        let v = json!({"msg_type": 9, "rtms_session_id": self.session_id, "state": state,
            "reason": reason, "stop_reason": reason, "timestamp": ts});
        self.send_signaling(st, v, Note::SessionState);
    }

    pub(crate) fn send_event(&self, st: &State, event: serde_json::Value) -> bool {
        let t = event
            .get("event_type")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        // The update is stamped with the event's own time (the script's, on its clock).
        let ts = event
            .get("timestamp")
            .and_then(|v| v.as_u64())
            .unwrap_or_else(unix_ms);
        let v = json!({"msg_type": 6, "timestamp": ts, "event": event});
        self.send_signaling(st, v, Note::Event(t))
    }
}

/// The transcript parameters of a handshake that carries transcript; a `src_language` outside
/// Zoom's TRANSCRIPT_LANGUAGE table is refused with status 43, as Zoom does.
fn transcript_asked(
    req: &DataHandshakeReq,
    bits: u32,
) -> Result<Option<rtms_proto::params::TranscriptParams>, (u32, String)> {
    if bits & media_type::TRANSCRIPT == 0 {
        return Ok(None);
    }
    let asked = req.media_params.as_ref().and_then(|p| p.transcript.clone());
    if let Some(l) = asked.as_ref().and_then(|t| t.src_language)
        && rtms_proto::codes::transcript_language::name(l).is_none()
    {
        return Err((
            status::INVALID_MEDIA_TRANSCRIPT_SROUCE_LANGUAGE,
            format!("src_language {l} is not a TRANSCRIPT_LANGUAGE (-1 to 36)"),
        ));
    }
    Ok(asked)
}

/// Whether a handshake's `media_type` mask asks for `all`, and its type bits; refused when
/// it is no mask of known types or asks for more than the URL's kind serves.
fn media_bits(mask: u32, path_kind: Option<MediaKind>) -> Result<(bool, u32), (u32, String)> {
    if mask == 0 || mask & !(media_type::EVERY_TYPE | media_type::ALL) != 0 {
        return Err((
            status::INVALID_MEDIA_TYPE,
            format!("media_type {mask} is not a mask of 1,2,4,8,16 or 32"),
        ));
    }
    let all = mask & media_type::ALL != 0;
    let bits: u32 = media_type::bits(mask).fold(0, |a, b| a | b);
    if let Some(k) = path_kind
        && (all || bits & !k.media_type_bit() != 0)
    {
        return Err((
            status::INVALID_MEDIA_TYPE,
            format!(
                "media_type {mask} asks for more than this {} URL serves; use the `all` URL",
                k.url_key().unwrap_or_default()
            ),
        ));
    }
    Ok((all, bits))
}
