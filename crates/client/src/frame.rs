//! The decoded unit handed to a sink: [`Frame`], its [`MediaKind`] (defined once, in
//! `rtms-proto`) and transcript details.
//!
//! The host maps these types one to one onto the plugin contract's `frame` record, so the
//! names follow the WIT file. Decoding lives in [`crate::decode`]; delivery in
//! [`crate::sink`].

pub use rtms_proto::MediaKind;

/// Timing and language of a transcript segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TranscriptInfo {
    pub start_ms: u64,
    pub end_ms: u64,
    /// Zoom's TRANSCRIPT_LANGUAGE number (-1 when unknown).
    pub language: i32,
}

/// One decoded message of a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub kind: MediaKind,
    /// Per-session sequence number across every kind and socket, assigned in receive order
    /// and continued across reconnections. [`crate::decode()`] leaves it 0.
    pub seq: u64,
    /// `content.timestamp` (milliseconds as Zoom sends them), or the event's timestamp.
    pub timestamp_ms: u64,
    /// The participant id as text (numeric ids are formatted; `channel_id` for Contact
    /// Center); empty when the server sent none.
    pub user_id: String,
    pub user_name: String,
    /// Decoded bytes for audio, video and share; empty otherwise.
    pub payload: Vec<u8>,
    /// Text for transcript and chat, the event JSON for events.
    pub text: Option<String>,
    pub transcript: Option<TranscriptInfo>,
    pub event_type: Option<u32>,
    /// `content.length` of an audio, video or share message: the data's byte length as Zoom
    /// declares it (since April 2026), checked against the decoded payload; `None` when the
    /// message carried none.
    pub length: Option<u32>,
    /// When the socket read that carried this frame returned, before it was decoded;
    /// `None` for frames that did not come from a socket (replay, tests).
    pub received_at: Option<std::time::Instant>,
}
