//! The live tap: frames and plugin outputs as they pass, for `rtms-host tap` and the
//! dashboard (`GET /admin/tap` on the admin listener).
//!
//! The host never waits for a tap. Events go on a bounded broadcast channel; a subscriber
//! that falls behind loses the oldest events (it is told how many) and the host does not
//! notice. With no subscriber the frame path pays one atomic load: events are built only
//! while someone listens.
//!
//! The channel holds the last [`TAP_BUFFER`] events, and outputs can be large, so the tap is
//! bounded in bytes too: the hub mirrors what the channel holds, and an output that would
//! take it past `[runtime] tap_mb` is published without its `data` and with its `message`
//! shortened (counted as elided), so the tap holds at most `tap_mb` plus [`TAP_BUFFER`]
//! slim events (under 1 KiB each). Outputs are shared with the sinks (`Arc`), never copied.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::outputs::record::OutputRecord;
use crate::sandbox::bindings::Frame;

/// Events a subscriber may fall behind by before it loses the oldest.
pub const TAP_BUFFER: usize = 4096;
/// Longest text kept in a frame event.
const MAX_TEXT: usize = 512;

/// One tapped event.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TapEvent {
    Frame {
        time_ms: u64,
        session: u64,
        stream_id: Arc<str>,
        meeting_id: String,
        kind: &'static str,
        seq: u64,
        timestamp_ms: u64,
        bytes: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    Output(Arc<OutputRecord>),
}

impl TapEvent {
    pub fn stream_id(&self) -> &str {
        match self {
            TapEvent::Frame { stream_id, .. } => stream_id,
            TapEvent::Output(o) => &o.stream_id,
        }
    }

    pub fn meeting_id(&self) -> &str {
        match self {
            TapEvent::Frame { meeting_id, .. } => meeting_id,
            TapEvent::Output(o) => &o.meeting_id,
        }
    }
}

/// The byte bound of a hub built without a pipeline (`[runtime] tap_mb`'s default).
pub const DEFAULT_TAP_BYTES: usize = 16 << 20;
/// What a frame event costs besides its text, for the byte bound.
const FRAME_EVENT_BYTES: usize = 256;

/// Where tapped events are published.
#[derive(Debug)]
pub struct TapHub {
    tx: broadcast::Sender<Arc<TapEvent>>,
    listeners: Arc<AtomicUsize>,
    /// Events subscribers lost by falling behind, in all.
    lagged: Arc<AtomicU64>,
    /// The sizes of the last [`TAP_BUFFER`] events published (what the channel may hold),
    /// and their sum.
    held: parking_lot::Mutex<(VecDeque<usize>, usize)>,
    max_bytes: usize,
    /// Outputs published without their data because the tap was full in bytes.
    elided: AtomicU64,
}

impl Default for TapHub {
    fn default() -> Self {
        Self::new(DEFAULT_TAP_BYTES)
    }
}

/// A subscriber's end; counts as a listener until dropped.
pub struct TapSubscription {
    pub rx: broadcast::Receiver<Arc<TapEvent>>,
    listeners: Arc<AtomicUsize>,
    lagged: Arc<AtomicU64>,
}

impl TapSubscription {
    /// Records that this subscriber fell behind and lost `n` events: counted for the
    /// metrics, logged (rate-limited).
    pub fn lost(&self, n: u64) {
        let total = self.lagged.fetch_add(n, Ordering::Relaxed) + n;
        if rtms_client::ratelog::admit("tap-lagged") {
            tracing::warn!(
                lost = n,
                total,
                "a tap subscriber fell behind and lost events (the host did not wait for it)"
            );
        }
    }
}

impl Drop for TapSubscription {
    fn drop(&mut self) {
        self.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TapHub {
    /// A hub whose channel holds at most about `max_bytes` of outputs.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            tx: broadcast::channel(TAP_BUFFER).0,
            listeners: Arc::default(),
            lagged: Arc::default(),
            held: parking_lot::Mutex::new((VecDeque::with_capacity(TAP_BUFFER), 0)),
            max_bytes,
            elided: AtomicU64::new(0),
        }
    }

    /// Bytes of events the channel may hold now.
    pub fn held_bytes(&self) -> usize {
        self.held.lock().1
    }

    /// Outputs published without their data because the tap was full in bytes.
    pub fn elided(&self) -> u64 {
        self.elided.load(Ordering::Relaxed)
    }

    /// Accounts for one more event of `size` bytes (the oldest falls out of the channel);
    /// false, and nothing accounted, when it would take the tap past its byte bound.
    fn admit(&self, size: usize, force: bool) -> bool {
        let mut held = self.held.lock();
        let (sizes, sum) = &mut *held;
        let oldest = if sizes.len() >= TAP_BUFFER {
            sizes.front().copied().unwrap_or(0)
        } else {
            0
        };
        if !force && *sum - oldest + size > self.max_bytes {
            return false;
        }
        if sizes.len() >= TAP_BUFFER {
            sizes.pop_front();
        }
        sizes.push_back(size);
        *sum = *sum - oldest + size;
        true
    }

    /// Whether anyone listens (one atomic load).
    pub fn active(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) > 0
    }

    pub fn subscribe(&self) -> TapSubscription {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        TapSubscription {
            rx: self.tx.subscribe(),
            listeners: self.listeners.clone(),
            lagged: self.lagged.clone(),
        }
    }

    /// Events tap subscribers lost by falling behind, in all.
    pub fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Publishes a frame of a session, when someone listens.
    pub fn frame(&self, session: u64, stream_id: &Arc<str>, meeting_id: &str, f: &Frame) {
        if !self.active() {
            return;
        }
        let kind: rtms_proto::MediaKind = f.kind.into();
        let ev = TapEvent::Frame {
            time_ms: rtms_proto::unix_ms(),
            session,
            stream_id: stream_id.clone(),
            meeting_id: meeting_id.to_owned(),
            kind: kind.as_str(),
            seq: f.seq,
            timestamp_ms: f.timestamp_ms,
            bytes: f.payload.len(),
            user_id: Some(f.user_id.clone()).filter(|s| !s.is_empty()),
            user_name: Some(f.user_name.clone()).filter(|s| !s.is_empty()),
            text: f
                .text
                .as_deref()
                .map(|t| rtms_proto::text::clipped(t, MAX_TEXT, "…").into_owned()),
        };
        self.admit(
            FRAME_EVENT_BYTES + f.text.as_ref().map_or(0, |t| t.len().min(MAX_TEXT)),
            true,
        );
        let _ = self.tx.send(Arc::new(ev));
    }

    /// Publishes an output, when someone listens: the record itself (shared), or its slim
    /// form when the whole one would take the tap past its byte bound.
    pub fn output(&self, rec: &Arc<OutputRecord>) {
        if !self.active() {
            return;
        }
        let rec = if self.admit(rec.bytes(), false) {
            rec.clone()
        } else {
            let n = self.elided.fetch_add(1, Ordering::Relaxed) + 1;
            if rtms_client::ratelog::admit("tap-elided") {
                tracing::warn!(
                    elided = n,
                    max_bytes = self.max_bytes,
                    "the tap is full in bytes: outputs go to its subscribers without their data (raise runtime.tap_mb to see them whole)"
                );
            }
            let slim = Arc::new(rec.slim(MAX_TEXT));
            self.admit(slim.bytes(), true);
            slim
        };
        let _ = self.tx.send(Arc::new(TapEvent::Output(rec)));
    }
}

/// What a tap subscriber wants to see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapFilter {
    /// A stream id or meeting id; every session when empty.
    pub session: Option<String>,
    /// Frame kinds; every kind when empty.
    pub kinds: Vec<String>,
    /// Plugin names (outputs); every plugin when empty.
    pub plugins: Vec<String>,
    pub frames: bool,
    pub outputs: bool,
}

impl TapFilter {
    /// Reads `session`, `kind`, `plugin` (comma-separated or repeated) and `what`
    /// (`frames`, `outputs` or `all`, the default) from a query string.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut f = TapFilter {
            frames: true,
            outputs: true,
            ..Default::default()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = crate::urlenc::decode(v)?;
            let list = || {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            match k {
                "session" => f.session = Some(v.clone()).filter(|s| !s.is_empty()),
                "kind" => {
                    for k in list() {
                        if !rtms_proto::MediaKind::ALL.iter().any(|m| m.as_str() == k) {
                            return Err(format!(
                                "unknown kind {k:?}: use audio, video, share, transcript, chat or event"
                            ));
                        }
                        f.kinds.push(k);
                    }
                }
                "plugin" => f.plugins.extend(list()),
                "what" => match v.as_str() {
                    "frames" => (f.frames, f.outputs) = (true, false),
                    "outputs" => (f.frames, f.outputs) = (false, true),
                    "all" | "" => (f.frames, f.outputs) = (true, true),
                    other => {
                        return Err(format!(
                            "unknown what={other:?}: use frames, outputs or all"
                        ));
                    }
                },
                other => {
                    return Err(format!(
                        "unknown tap parameter {other:?}: use session, kind, plugin or what"
                    ));
                }
            }
        }
        Ok(f)
    }

    pub fn matches(&self, ev: &TapEvent) -> bool {
        if let Some(s) = &self.session
            && ev.stream_id() != s
            && ev.meeting_id() != s
        {
            return false;
        }
        match ev {
            TapEvent::Frame { kind, .. } => {
                self.frames && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            }
            TapEvent::Output(o) => {
                self.outputs
                    && (self.plugins.is_empty() || self.plugins.iter().any(|p| **p == *o.plugin))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_refuse_what_they_do_not_know() {
        let f =
            TapFilter::from_query("session=abc%3D%3D&kind=transcript,chat&what=frames").unwrap();
        assert_eq!(f.session.as_deref(), Some("abc=="));
        assert_eq!(f.kinds, ["transcript", "chat"]);
        assert!(f.frames && !f.outputs);
        let e = TapFilter::from_query("kind=sound").unwrap_err();
        assert!(e.contains("unknown kind \"sound\""), "{e}");
        let e = TapFilter::from_query("colour=red").unwrap_err();
        assert!(e.contains("use session, kind, plugin or what"), "{e}");
        assert!(TapFilter::from_query("session=%zz").is_err());
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_its_oldest_events_and_the_hub_never_waits() {
        let hub = TapHub::default();
        let frame = Frame {
            kind: crate::sandbox::bindings::MediaKind::Transcript,
            seq: 0,
            timestamp_ms: 0,
            user_id: String::new(),
            user_name: String::new(),
            payload: Vec::new(),
            text: Some("hello".into()),
            transcript: None,
            event_type: None,
        };
        let id: Arc<str> = "s".into();
        // Nobody listens: nothing is built or sent.
        hub.frame(1, &id, "m", &frame);
        let mut sub = hub.subscribe();
        assert!(hub.active());
        for _ in 0..TAP_BUFFER + 10 {
            hub.frame(1, &id, "m", &frame);
        }
        match sub.rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => {
                assert_eq!(n, 10);
                sub.lost(n);
            }
            other => panic!("expected a lag, got {other:?}"),
        }
        assert_eq!(hub.lagged(), 10, "the loss is counted for the metrics");
        drop(sub);
        assert!(!hub.active());
    }

    fn output(data_bytes: usize) -> Arc<OutputRecord> {
        Arc::new(OutputRecord::new(
            "p".into(),
            1,
            "s".into(),
            "m".into(),
            crate::sandbox::bindings::Output {
                kind: "k".into(),
                severity: crate::sandbox::bindings::Severity::Info,
                message: "hello".into(),
                data: Some(format!("\"{}\"", "x".repeat(data_bytes))),
            },
        ))
    }

    #[tokio::test]
    async fn outputs_are_shared_with_the_tap_and_bounded_in_bytes() {
        let hub = TapHub::new(64 * 1024);
        let mut sub = hub.subscribe();
        let first = output(4096);
        hub.output(&first);
        match &*sub.rx.recv().await.unwrap() {
            TapEvent::Output(o) => assert!(Arc::ptr_eq(o, &first), "shared, not copied"),
            other => panic!("expected an output, got {other:?}"),
        }
        for _ in 0..200 {
            hub.output(&output(4096));
        }
        // Whole outputs up to the bound, plus the slim ones (no data, message cut).
        let slim_max = 1024 * hub.elided() as usize;
        assert!(
            hub.held_bytes() <= 64 * 1024 + slim_max,
            "{} bytes held",
            hub.held_bytes()
        );
        assert!(hub.elided() >= 200 - 64 * 1024 / 4096, "{}", hub.elided());
        let mut slim = 0;
        while let Ok(ev) = sub.rx.try_recv() {
            if let TapEvent::Output(o) = &*ev
                && o.data.is_none()
            {
                assert!(o.truncated && o.message == "hello");
                slim += 1;
            }
        }
        assert_eq!(
            slim,
            hub.elided(),
            "each elided output reached the tap without its data"
        );
    }
}
