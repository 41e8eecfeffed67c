//! One emitted output as the host keeps it: the plugin's `emit` with where and when it came
//! from, cut to size.

use std::sync::Arc;

use rtms_config::Severity;
use serde::Serialize;

use crate::sandbox::bindings::Output;

/// Longest `message` kept from a plugin's output; the rest is cut (and `truncated` set).
const MAX_MESSAGE: usize = 16 * 1024;
/// Longest `data` document kept; a larger one is replaced by a note saying so.
const MAX_DATA: usize = 256 * 1024;
/// Longest `kind`.
const MAX_KIND: usize = 64;

/// One emitted output, with where and when it came from.
#[derive(Clone, Debug, Serialize)]
pub struct OutputRecord {
    pub time_ms: u64,
    pub plugin: Arc<str>,
    pub session: u64,
    pub stream_id: Arc<str>,
    pub meeting_id: Arc<str>,
    pub kind: String,
    pub severity: Severity,
    pub message: String,
    /// The plugin's JSON detail, parsed; a plugin that sends invalid JSON has it kept as a
    /// string under `{"invalid_json": ...}` rather than lost.
    pub data: Option<serde_json::Value>,
    /// Set when the host cut an oversized `kind`, `message` or `data`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

fn cut(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
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
                return serde_json::json!({ "oversized_data_bytes": d.len() });
            }
            serde_json::from_str(&d).unwrap_or_else(|_| serde_json::json!({ "invalid_json": d }))
        });
        let (mut kind, mut message) = (out.kind, out.message);
        truncated |= cut(&mut kind, MAX_KIND);
        truncated |= cut(&mut message, MAX_MESSAGE);
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

    /// The one-line form the stdout sink prints.
    pub fn human(&self) -> String {
        format!(
            "[{}] {} {}: {}",
            self.severity, self.plugin, self.kind, self.message
        )
    }
}
