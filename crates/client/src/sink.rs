//! Where a session's frames go: the [`SinkFactory`] / [`FrameSink`] traits the host
//! implements, what a sink learns about its stream ([`StreamInfo`], [`StreamStatus`],
//! [`EndReason`]), and [`CollectingSink`] for tests.
//!
//! Lifecycle: a session opens its sink once, after its first successful handshake (so
//! [`StreamInfo::audio`] holds the confirmed parameters); a stream that never connects opens
//! none. [`FrameSink::frame`] runs on the session's own task for every frame, in `seq` order;
//! awaiting it is the backpressure (the session reads no socket meanwhile).
//! [`FrameSink::status`] runs on every connection change and must not block.
//! [`FrameSink::end`] runs exactly once, last.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtms_proto::Product;
use rtms_proto::params::AudioParams;

use crate::frame::Frame;

/// What a sink knows about its stream.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamInfo {
    pub product: Product,
    /// Meeting uuid / webinar uuid / session id / engagement id, raw as in the webhook.
    pub meeting_id: String,
    pub stream_id: String,
    pub operator_id: Option<String>,
    /// The signaling URL the stream was first reached on.
    pub server_url: String,
    /// Unix milliseconds when the session opened its sink.
    pub started_at_ms: u64,
    /// Audio parameters as the server confirmed them (msg 4), else as requested, with the
    /// protocol's defaults filled in.
    pub audio: AudioParams,
    /// The started webhook's fields of April 2026 (`account_id`, `is_original_host`,
    /// `meeting_id`, `webinar_id`), each `None` when it did not carry them.
    pub details: rtms_proto::webhook::StartedDetails,
}

/// Why a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Zoom stopped it (webhook, msg 8 state 4 or msg 9 state 5), with its STOP_REASON.
    Stopped(u32),
    /// Reconnecting stopped (see [`GiveUp`] for why) and no new `*_rtms_started` came in
    /// time.
    ConnectionLost,
    /// The host is shutting down.
    Shutdown,
    /// The stream goes on at another host (a drain hands it over): it ended here only, its
    /// sockets closed; the sink drains as for a shutdown.
    HandedOff,
    /// This host lost the stream's lease (another host may run it now): it ended here only,
    /// at once; the sink must not act on it any more.
    Fenced,
}

impl EndReason {
    /// The reason's name for logs and the admin API: `stopped`, or
    /// `receiver-request-close` for a stream Zoom ended because this host asked it to
    /// (STOP_REASON 20), `connection-lost`, `shutdown`, `handed-off`, `fenced`.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Stopped(rtms_proto::codes::stop_reason::RECEIVER_REQUEST_CLOSE) => {
                "receiver-request-close"
            }
            EndReason::Stopped(_) => "stopped",
            EndReason::ConnectionLost => "connection-lost",
            EndReason::Shutdown => "shutdown",
            EndReason::HandedOff => "handed-off",
            EndReason::Fenced => "fenced",
        }
    }
}

/// Why a stream stopped reconnecting. Plugins see every one as
/// [`EndReason::ConnectionLost`]; the reason is in [`StreamStatus::AwaitingWebhook`] and in the
/// log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The first connection (or the one after a failover) spent `connection_max_attempts`.
    Connect,
    /// `reconnect_max_attempts` reconnection attempts in a row failed, or their connections
    /// dropped before frames flowed.
    Reconnect,
    /// The stream already reconnected `reconnect_flap_max` times within
    /// `reconnect_flap_window` when it lost its connection again.
    Flapping,
}

impl GiveUp {
    /// A short name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUp::Connect => "connect_failed",
            GiveUp::Reconnect => "reconnect_failed",
            GiveUp::Flapping => "flapping",
        }
    }
}

/// Connection changes, for logs and metrics.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamStatus {
    /// Signaling and media handshakes are done; frames flow.
    Connected {
        server_url: String,
        media_sockets: usize,
    },
    /// A socket died; both sockets are reopened after `delay` (attempt counts from 1).
    Reconnecting { attempt: u32, delay: Duration },
    /// Only the media sockets are reopened after `delay`; signaling stays up.
    MediaReconnecting { attempt: u32, delay: Duration },
    /// Zoom moved the stream to a new signaling server (failover scenario 1).
    Failover { server_url: String },
    /// Reconnecting stopped for `reason`; waiting for a new `*_rtms_started` up to
    /// `timeout`.
    AwaitingWebhook { timeout: Duration, reason: GiveUp },
    /// msg 8 (stream) or msg 9 (session) reported a state change (paused, resumed, ...).
    StateChanged {
        stream_state: Option<u32>,
        session_state: Option<u32>,
        reason: u32,
    },
}

/// Opens one sink per stream.
pub trait SinkFactory: Send + Sync + 'static {
    type Sink: FrameSink;
    /// Called once per stream, after its first successful handshake.
    fn open(&self, info: &StreamInfo) -> Self::Sink;

    /// Whether `stream_id` may still connect from this host; asked before every connection
    /// attempt. A stream refused here ends at once with [`EndReason::Fenced`] (a host of a
    /// cluster that lost the stream's lease must not take it back from the host that holds
    /// it now). Always true by default.
    fn admits(&self, stream_id: &str) -> bool {
        let _ = stream_id;
        true
    }
}

/// Receives one stream's frames.
pub trait FrameSink: Send + Sync + 'static {
    /// Called for every frame, in order; the session waits for it.
    fn frame(&self, frame: Frame) -> impl Future<Output = ()> + Send;
    /// Called on connection changes; must return quickly.
    fn status(&self, status: StreamStatus) {
        let _ = status;
    }
    /// Called when the stream drains after a stop: frames still come until `until`
    /// (`rtms.stop_drain_ms`), and [`FrameSink::frame`] must not wait past it. A frame still
    /// being delivered at `until` is cut off.
    fn draining(&self, until: tokio::time::Instant) {
        let _ = until;
    }
    /// Called once when the stream ends.
    fn end(self, reason: EndReason) -> impl Future<Output = ()> + Send;
}

/// What a [`CollectingSink`] saw.
#[derive(Clone, Debug, Default)]
pub struct Collected {
    pub info: Option<StreamInfo>,
    pub frames: Vec<Frame>,
    pub statuses: Vec<StreamStatus>,
    pub end: Option<EndReason>,
}

/// A sink (and its factory) that keeps everything in memory, one entry per stream id, and
/// lets a test await a condition.
#[derive(Clone, Default)]
pub struct CollectingSink {
    inner: Arc<CollectInner>,
    stream_id: Option<String>,
}

#[derive(Default)]
struct CollectInner {
    streams: Mutex<std::collections::HashMap<String, Collected>>,
    changed: tokio::sync::Notify,
}

impl CollectingSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what one stream's sink saw so far.
    pub fn get(&self, stream_id: &str) -> Option<Collected> {
        self.lock().get(stream_id).cloned()
    }

    /// Waits until `cond` holds for the stream's record (checked after every change).
    pub async fn wait_for(
        &self,
        stream_id: &str,
        mut cond: impl FnMut(&Collected) -> bool,
    ) -> Collected {
        loop {
            let notified = self.inner.changed.notified();
            if let Some(c) = self.get(stream_id)
                && cond(&c)
            {
                return c;
            }
            notified.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Collected>> {
        self.inner
            .streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Collected)) {
        if let Some(id) = &self.stream_id {
            f(self.lock().entry(id.clone()).or_default());
            self.inner.changed.notify_waiters();
        }
    }
}

impl SinkFactory for CollectingSink {
    type Sink = CollectingSink;
    fn open(&self, info: &StreamInfo) -> CollectingSink {
        let sink = CollectingSink {
            inner: self.inner.clone(),
            stream_id: Some(info.stream_id.clone()),
        };
        sink.update(|c| c.info = Some(info.clone()));
        sink
    }
}

impl FrameSink for CollectingSink {
    async fn frame(&self, frame: Frame) {
        self.update(|c| c.frames.push(frame));
    }
    fn status(&self, status: StreamStatus) {
        self.update(|c| c.statuses.push(status));
    }
    async fn end(self, reason: EndReason) {
        self.update(|c| c.end = Some(reason));
    }
}
