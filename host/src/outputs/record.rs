//! One emitted output as the host keeps it: the plugin's `emit` with where and when it came
//! from, cut to size.

use std::sync::Arc;

use rtms_config::Severity;
use rtms_proto::text;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::sandbox::bindings::Output;

/// Longest `message` kept from a plugin's output; the rest is cut (and `truncated` set).
const MAX_MESSAGE: usize = 16 * 1024;
/// Longest `data` document kept; a larger one is replaced by a note saying so.
const MAX_DATA: usize = 256 * 1024;
/// Longest `kind`.
const MAX_KIND: usize = 64;

/// What a record costs besides its strings (ids, counters, the `Arc`s), for byte bounds.
const OVERHEAD: usize = 160;

/// One emitted output, with where and when it came from.
///
/// Immutable once built: the sinks and the tap share one copy behind an `Arc`.
#[derive(Debug, Serialize)]
pub struct OutputRecord {
    pub time_ms: u64,
    pub plugin: Arc<str>,
    pub session: u64,
    pub stream_id: Arc<str>,
    pub meeting_id: Arc<str>,
    pub kind: String,
    pub severity: Severity,
    pub message: String,
    /// The plugin's JSON detail as the plugin wrote it, validated once and written out
    /// verbatim (never parsed into a tree); a plugin that sends invalid JSON has it kept as a
    /// string under `{"invalid_json": ...}` rather than lost.
    pub data: Option<Box<RawValue>>,
    /// Set when the host cut an oversized `kind`, `message` or `data`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A small JSON document the host writes in place of a plugin's `data`.
fn note(v: serde_json::Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(&v).expect("a JSON value always serializes")
}

impl OutputRecord {
    pub fn new(
        plugin: Arc<str>,
        session: u64,
        stream_id: Arc<str>,
        meeting_id: Arc<str>,
        out: Output,
    ) -> Self {
        let mut truncated = false;
        let data = out.data.map(|d| {
            if d.len() > MAX_DATA {
                truncated = true;
                return note(serde_json::json!({ "oversized_data_bytes": d.len() }));
            }
            // One pass validates and copies the text; no tree is built.
            serde_json::from_str::<Box<RawValue>>(&d)
                .unwrap_or_else(|_| note(serde_json::json!({ "invalid_json": d })))
        });
        let (mut kind, mut message) = (out.kind, out.message);
        truncated |= text::truncate(&mut kind, MAX_KIND);
        truncated |= text::truncate(&mut message, MAX_MESSAGE);
        Self {
            time_ms: rtms_proto::unix_ms(),
            plugin,
            session,
            stream_id,
            meeting_id,
            kind,
            severity: out.severity.into(),
            message,
            data,
            truncated,
        }
    }

    /// The bytes this record holds, for the output path's byte bounds.
    pub fn bytes(&self) -> usize {
        OVERHEAD
            + self.kind.len()
            + self.message.len()
            + self.data.as_ref().map_or(0, |d| d.get().len())
    }

    /// A copy without `data` and with `message` cut to `max` bytes (marked truncated), for
    /// a consumer that cannot hold the whole record.
    pub fn slim(&self, max: usize) -> Self {
        let mut message = self.message.clone();
        let cut_message = text::truncate(&mut message, max);
        Self {
            time_ms: self.time_ms,
            plugin: self.plugin.clone(),
            session: self.session,
            stream_id: self.stream_id.clone(),
            meeting_id: self.meeting_id.clone(),
            kind: self.kind.clone(),
            severity: self.severity,
            message,
            data: None,
            truncated: self.truncated || cut_message || self.data.is_some(),
        }
    }

    /// The one-line form the stdout sink prints.
    pub fn human(&self) -> String {
        format!(
            "[{}] {} {}: {}",
            self.severity, self.plugin, self.kind, self.message
        )
    }
}
