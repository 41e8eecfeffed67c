//! The bridge from the RTMS client to the host core: the client's `SinkFactory` /
//! `FrameSink` implemented by opening a [`LiveStream`] per stream.
//!
//! A client frame becomes a WIT frame here by moving its fields (the payload decoded from
//! base64 by the client is moved, not copied); the session copies it only for the second
//! and later plugins that want it.

use std::sync::Arc;

use rtms_client::{EndReason as ClientEnd, FrameSink, SinkFactory, StreamInfo, StreamStatus};
use rtms_proto::params::{AudioParams, codec, sample_rate};

use crate::dataplane::fence::FenceSet;
use crate::dataplane::registry::{LiveStream, Registry, SessionDesc};
use crate::sandbox::bindings::{AudioCodec, AudioFormat, EndReason, Frame, TranscriptInfo};

/// Sees every frame of every session before the plugins do (the demo prints the live
/// transcript with it).
pub type Tap = Arc<dyn Fn(&LiveStream, &Frame) + Send + Sync>;

/// Sees every frame read from a socket, with the time that socket read returned (before the
/// client decoded it): the benchmarks' latency starts there.
pub type ReadTap = Arc<dyn Fn(&LiveStream, &Frame, std::time::Instant) + Send + Sync>;

/// Stream ids whose next session is a resumed one (a stream taken back from the journal
/// after a restart): its plugins get `on-session-start` with `resumed = true`.
pub type ResumeSet = Arc<parking_lot::Mutex<std::collections::HashSet<String>>>;

/// Opens a host session for each stream the client connects.
#[derive(Clone)]
pub struct HostSinkFactory {
    pub shared: Arc<Registry>,
    pub tap: Option<Tap>,
    pub read_tap: Option<ReadTap>,
    pub resumed: ResumeSet,
    /// The fences of a cluster's streams (the others are unfenced).
    pub fences: FenceSet,
}

pub struct HostSink {
    session: Arc<LiveStream>,
    /// Set once the session's first frame was logged.
    first_seen: std::sync::atomic::AtomicBool,
    tap: Option<Tap>,
    read_tap: Option<ReadTap>,
}

impl SinkFactory for HostSinkFactory {
    type Sink = HostSink;

    /// A stream of a cluster connects only while its fence holds.
    fn admits(&self, stream_id: &str) -> bool {
        self.fences.lock().get(stream_id).is_none_or(|f| f.holds())
    }

    fn open(&self, info: &StreamInfo) -> HostSink {
        let resumed = self.resumed.lock().remove(&info.stream_id);
        let fence = self
            .fences
            .lock()
            .get(&info.stream_id)
            .cloned()
            .unwrap_or_default();
        tracing::info!(stream = %info.stream_id, product = info.product.as_str(), meeting = %info.meeting_id, resumed, "session started");
        let session = self.shared.open_session(SessionDesc {
            product: info.product,
            meeting_id: info.meeting_id.clone(),
            stream_id: info.stream_id.clone(),
            operator_id: info.operator_id.clone(),
            started_at_ms: info.started_at_ms,
            resumed,
            audio: Some(audio_format(&info.audio)),
            details: Arc::new((&info.details).into()),
            fence,
        });
        HostSink {
            session,
            first_seen: std::sync::atomic::AtomicBool::new(false),
            tap: self.tap.clone(),
            read_tap: self.read_tap.clone(),
        }
    }
}

impl FrameSink for HostSink {
    async fn frame(&self, frame: rtms_client::Frame) {
        let read_at = frame.received_at;
        if frame.length.is_some() {
            self.session
                .details
                .declares_length
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let frame = wit_frame(frame);
        let seen = &self.first_seen;
        if !seen.load(std::sync::atomic::Ordering::Relaxed)
            && !seen.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::info!(stream = %self.session.stream_id, kind = ?frame.kind, seq = frame.seq, "session's first frame");
        }
        if let Some(tap) = &self.tap {
            tap(&self.session, &frame);
        }
        self.session.publish(&frame);
        if let (Some(tap), Some(at)) = (&self.read_tap, read_at) {
            tap(&self.session, &frame, at);
        }
        self.session.push(frame).await;
    }

    fn status(&self, status: StreamStatus) {
        tracing::info!(stream = %self.session.stream_id, ?status, "stream status");
    }

    fn draining(&self, until: tokio::time::Instant) {
        self.session.drain_until(until);
    }

    async fn end(self, reason: ClientEnd) {
        match reason {
            // Another host of the cluster, or a successor process, resumes the stream.
            ClientEnd::HandedOff => {
                tracing::info!(stream = %self.session.stream_id, "session handed over to another host");
                self.session.hand_off().await;
            }
            ClientEnd::Shutdown if self.session.handing_off() => {
                tracing::info!(stream = %self.session.stream_id, "session handed over to the successor process");
                self.session.hand_off().await;
            }
            ClientEnd::Fenced => {
                // Nothing more for this stream here: queued frames are discarded and no
                // plugin is called again.
                self.session.fence().revoke();
                tracing::warn!(stream = %self.session.stream_id, "session dropped: this host lost the stream's lease");
                self.session.end(EndReason::Shutdown).await;
            }
            client_reason => {
                let reason = EndReason::from(client_reason);
                tracing::info!(stream = %self.session.stream_id, reason = client_reason.name(), "session ended");
                self.session.end(reason).await;
            }
        }
    }
}

/// A client frame as the contract's frame, moving every field.
pub fn wit_frame(f: rtms_client::Frame) -> Frame {
    Frame {
        kind: f.kind.into(),
        seq: f.seq,
        timestamp_ms: f.timestamp_ms,
        user_id: f.user_id,
        user_name: f.user_name,
        payload: f.payload,
        text: f.text,
        transcript: f.transcript.map(|t| TranscriptInfo {
            start_ms: t.start_ms,
            end_ms: t.end_ms,
            language: t.language,
        }),
        event_type: f.event_type,
    }
}

/// The session's audio format from the confirmed media parameters.
pub fn audio_format(p: &AudioParams) -> AudioFormat {
    let p = p.resolved();
    AudioFormat {
        codec: match p.codec.unwrap_or(codec::L16) {
            codec::G711 => AudioCodec::G711,
            codec::G722 => AudioCodec::G722,
            codec::OPUS => AudioCodec::Opus,
            _ => AudioCodec::L16,
        },
        sample_rate: sample_rate::hz(p.sample_rate.unwrap_or(sample_rate::SR_16K))
            .unwrap_or(16_000),
        channels: p.channel.unwrap_or(1) as u8,
        frame_ms: p.send_rate.unwrap_or(20),
        per_speaker: p.data_opt == Some(rtms_proto::params::data_opt::AUDIO_MULTI_STREAMS),
    }
}
