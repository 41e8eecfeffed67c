//! Zoom's concurrency notices (`meeting.rtms_concurrency_limited`, `*_near_limit`,
//! `rtms.start_failed`, by webhook or on the event WebSocket): the account is near or at its
//! limit of concurrent streams, or a stream failed to start. Zoom then starts no stream for the
//! meeting, so without these an operator would learn of a refused meeting from nobody.
//!
//! Each notice (de-duplicated by the intake) is emitted to the sinks as an output of the host
//! (`plugin = "rtms-host"`, `kind = "zoom.<kind>"`, the payload under `data`), so an
//! operator's alerting sees it, and logged once per meeting and kind within
//! [`LOG_WINDOW`] (at most [`MAX_LOGGED`] remembered). The service counts them for
//! `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtms_client::Dedup;
use rtms_proto::webhook::{Notice, NoticeKind};

use crate::outputs::Outputs;
use crate::outputs::record::OutputRecord;
use crate::sandbox::bindings::{Output, Severity};

/// A meeting's notice of one kind is logged again after this long.
pub const LOG_WINDOW: Duration = Duration::from_secs(3600);
/// The most (kind, meeting) pairs remembered for logging; the oldest is forgotten first.
pub const MAX_LOGGED: usize = 4096;

/// The name outputs of the host itself carry in place of a plugin's.
pub const HOST_OUTPUT: &str = "rtms-host";

/// Logs and emits concurrency notices.
pub struct Notices {
    outputs: Outputs,
    logged: Mutex<Dedup<(NoticeKind, String)>>,
    source: Arc<str>,
}

impl Notices {
    pub fn new(outputs: Outputs) -> Self {
        Self {
            outputs,
            logged: Mutex::new(Dedup::new(LOG_WINDOW, MAX_LOGGED)),
            source: Arc::from(HOST_OUTPUT),
        }
    }

    /// One notice: logged (once per meeting and kind), emitted to the sinks.
    pub fn on_notice(&self, n: Notice) {
        let meeting = n.meeting.clone().unwrap_or_default();
        let first = self
            .logged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_time((n.kind, meeting.clone()), tokio::time::Instant::now());
        let (severity, what) = match n.kind {
            NoticeKind::ConcurrencyLimited => (
                Severity::Critical,
                "Zoom refused to stream a meeting: the account is at its limit of concurrent RTMS streams",
            ),
            NoticeKind::ConcurrencyNearLimit => (
                Severity::Warning,
                "the account is near its limit of concurrent RTMS streams",
            ),
            NoticeKind::StartFailed => (Severity::Critical, "Zoom failed to start a stream"),
        };
        if first {
            tracing::warn!(
                event = %n.event,
                meeting = %rtms_proto::text::truncated(&meeting, 64),
                "{what} (further notices of this kind for this meeting within the hour are counted in rtms_concurrency_notices_total, not logged)"
            );
        }
        let data = serde_json::json!({
            "event": n.event,
            "event_ts": n.event_ts,
            "meeting": n.meeting,
            "payload": n.payload,
        });
        let message = match &n.meeting {
            Some(m) => format!("{what} (meeting {m})"),
            None => what.to_owned(),
        };
        self.outputs.send(OutputRecord::new(
            self.source.clone(),
            0,
            Arc::from(""),
            Arc::from(meeting.as_str()),
            Output {
                kind: format!("zoom.{}", n.kind.as_str()),
                severity,
                message,
                data: Some(data.to_string()),
            },
        ));
    }
}
