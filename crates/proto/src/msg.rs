//! JSON messages of the signaling and media sockets.
//!
//! Every message is a JSON object with an integer `msg_type`; frames may be text or binary
//! (binary frames hold UTF-8 JSON). Parse the type first with [`peek_type`], then the
//! message. Fields that real clients or servers omit are `Option`s: a parser here accepts
//! every shape `rtms-protocol.md` says is seen in practice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::params::MediaParams;

/// `msg_type` when the message begins with it (`{"msg_type":14,...`, as Zoom and the
/// simulator write every message), read without a JSON parser: the message is then parsed
/// once, by the parser of its type. `None` for anything else (another key first, a type
/// that is not a small integer, not JSON at all): ask [`peek_type`].
pub fn leading_type(bytes: &[u8]) -> Option<u32> {
    fn skip_ws(b: &[u8]) -> &[u8] {
        let n = b
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        &b[n..]
    }
    let rest = skip_ws(bytes).strip_prefix(b"{")?;
    let rest = skip_ws(rest).strip_prefix(b"\"msg_type\"")?;
    let rest = skip_ws(skip_ws(rest).strip_prefix(b":")?);
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 9 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let after = skip_ws(&rest[digits..]);
    if !matches!(after.first(), Some(b',' | b'}')) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Reads `msg_type` without parsing the rest of the message.
pub fn peek_type(bytes: &[u8]) -> Result<u32, serde_json::Error> {
    #[derive(Deserialize)]
    struct Peek {
        msg_type: u32,
    }
    serde_json::from_slice::<Peek>(bytes).map(|p| p.msg_type)
}

/// The id fields a handshake may carry: which one is set depends on the product and the
/// client (Video SDK samples send both `meeting_uuid` and `session_id`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HandshakeIds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webinar_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engagement_id: Option<String>,
}

impl HandshakeIds {
    /// The ids as a client sends them for a product: the product's own key, plus
    /// `meeting_uuid` for Video SDK (as Zoom's samples do).
    pub fn for_product(product: crate::Product, id: &str) -> Self {
        use crate::Product::*;
        let s = Some(id.to_owned());
        match product {
            Meeting => Self {
                meeting_uuid: s,
                ..Default::default()
            },
            Webinar => Self {
                meeting_uuid: s.clone(),
                webinar_uuid: s,
                ..Default::default()
            },
            VideoSdk => Self {
                meeting_uuid: s.clone(),
                session_id: s,
                ..Default::default()
            },
            ContactCenter => Self {
                engagement_id: s,
                ..Default::default()
            },
        }
    }

    /// Every id the message carries, in a fixed order.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        [
            &self.meeting_uuid,
            &self.webinar_uuid,
            &self.session_id,
            &self.engagement_id,
        ]
        .into_iter()
        .filter_map(|x| x.as_deref())
    }
}

/// msg 1, client to server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalingHandshakeReq {
    pub msg_type: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    #[serde(flatten)]
    pub ids: HandshakeIds,
    #[serde(default)]
    pub rtms_stream_id: String,
    #[serde(default)]
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_data: Option<bool>,
}

/// `media_server.server_urls` of msg 2.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaServerUrls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deskshare: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<String>,
}

impl MediaServerUrls {
    /// The URL serving one media-type bit, falling back to `all`.
    pub fn for_bit(&self, bit: u32) -> Option<&str> {
        use crate::codes::media_type::*;
        let own = match bit {
            AUDIO => &self.audio,
            VIDEO => &self.video,
            DESKSHARE => &self.deskshare,
            TRANSCRIPT => &self.transcript,
            CHAT => &self.chat,
            _ => &self.all,
        };
        own.as_deref().or(self.all.as_deref())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaServer {
    #[serde(default)]
    pub server_urls: MediaServerUrls,
}

/// msg 2, server to client.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalingHandshakeResp {
    pub msg_type: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    pub status_code: u32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_string"
    )]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_server: Option<MediaServer>,
}

/// msg 3, client to a media server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataHandshakeReq {
    pub msg_type: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    #[serde(flatten)]
    pub ids: HandshakeIds,
    #[serde(default)]
    pub rtms_stream_id: String,
    #[serde(default)]
    pub signature: String,
    #[serde(default)]
    pub media_type: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_encryption: Option<bool>,
    /// `null` is accepted (Zoom's SDK sends it for transcript-only sockets).
    #[serde(default)]
    pub media_params: Option<MediaParams>,
}

/// msg 4, media server to client.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataHandshakeResp {
    pub msg_type: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    pub status_code: u32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_string"
    )]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_encrypted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_params: Option<MediaParams>,
}

/// One entry of msg 5.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventSubscriptionItem {
    pub event_type: u32,
    pub subscribe: bool,
}

/// msg 5, client to server on signaling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventSubscription {
    pub msg_type: u32,
    pub events: Vec<EventSubscriptionItem>,
}

/// msg 6, server to client on signaling. `event` is kept as JSON: its fields depend on
/// the event type and the product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventUpdate {
    pub msg_type: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    pub event: Value,
}

impl EventUpdate {
    pub fn event_type(&self) -> Option<u32> {
        self.event.get("event_type")?.as_u64().map(|t| t as u32)
    }
}

/// msg 28 VIDEO_SUBSCRIPTION_REQ, client to server on signaling: start (or stop) the video
/// of one participant on a video socket whose `data_opt` is 4
/// (VIDEO_SINGLE_INDIVIDUAL_STREAM).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoSubscriptionReq {
    pub msg_type: u32,
    pub user_id: i64,
    pub subscribe: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// msg 29 VIDEO_SUBSCRIPTION_RESP, server to client on signaling: the answer to msg 28.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoSubscriptionResp {
    pub msg_type: u32,
    #[serde(default)]
    pub status_code: u32,
    #[serde(default)]
    pub user_id: i64,
    #[serde(default)]
    pub subscribe: bool,
    /// Text or a number, as on the other answers (Zoom's samples disagree on its type).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_string"
    )]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// msg 7, client to server on signaling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientReadyAck {
    pub msg_type: u32,
    #[serde(default)]
    pub rtms_stream_id: String,
}

/// msg 8, server to client on signaling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamStateUpdate {
    pub msg_type: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtms_stream_id: Option<String>,
    pub state: u32,
    /// STOP_REASON. A server may send it as `stop_reason` too, or only as that (one old
    /// sample); the decoder takes `reason`, else `stop_reason`.
    #[serde(default)]
    pub reason: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<u32>,
    #[serde(default)]
    pub timestamp: u64,
}

/// msg 9, server to client on signaling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionStateUpdate {
    pub msg_type: u32,
    #[serde(default)]
    pub rtms_session_id: String,
    pub state: u32,
    #[serde(default)]
    pub stop_reason: u32,
    #[serde(default)]
    pub reason: u32,
    #[serde(default)]
    pub timestamp: u64,
}

/// msg 21, client to server on signaling: the client asks Zoom to end the stream (it then
/// ends with STOP_REASON 20, RECEIVER_REQUEST_CLOSE).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamCloseReq {
    pub msg_type: u32,
    #[serde(default)]
    pub rtms_stream_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// msg 22, server to client on signaling: the answer to msg 21.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamCloseResp {
    pub msg_type: u32,
    #[serde(default)]
    pub status_code: u32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_string"
    )]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// msg 12 (server to client) and msg 13 (the client's echo), on every socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeepAlive {
    pub msg_type: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

/// A participant id: numeric in practice, a string in some samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserId {
    Num(i64),
    Text(String),
}

impl Default for UserId {
    fn default() -> Self {
        UserId::Num(-1)
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserId::Num(n) => write!(f, "{n}"),
            UserId::Text(s) => f.write_str(s),
        }
    }
}

/// `content` of media messages 14-18, borrowing from the received bytes so the data is
/// decoded (base64) or copied exactly once by the receiver.
#[derive(Debug, Deserialize)]
pub struct MediaContentRef<'a> {
    #[serde(default)]
    pub user_id: Option<UserId>,
    /// Contact Center sends `channel_id` in place of `user_id`.
    #[serde(default)]
    pub channel_id: Option<UserId>,
    #[serde(default, borrow)]
    pub user_name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub data: std::borrow::Cow<'a, str>,
    #[serde(default)]
    pub timestamp: u64,
    #[serde(default)]
    pub start_time: Option<u64>,
    #[serde(default)]
    pub end_time: Option<u64>,
    #[serde(default)]
    pub language: Option<i32>,
    #[serde(default)]
    pub attribute: Option<Value>,
    /// The data's byte length (audio, video and share, since April 2026).
    #[serde(default)]
    pub length: Option<u64>,
}

/// A media message, borrowing its content.
#[derive(Debug, Deserialize)]
pub struct MediaMessageRef<'a> {
    pub msg_type: u32,
    #[serde(borrow)]
    pub content: MediaContentRef<'a>,
}

/// `content` of media messages, owned, as a server builds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaContent {
    pub user_id: UserId,
    pub user_name: String,
    pub data: String,
    pub timestamp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<usize>,
}

/// A media message, owned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaMessage {
    pub msg_type: u32,
    pub content: MediaContent,
}

/// Accepts a string or a number for `reason` (Zoom's Java sample types it as a number).
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::msg_type;

    #[test]
    fn handshake_without_optional_fields_parses() {
        let raw = br#"{"msg_type":1,"meeting_uuid":"u","rtms_stream_id":"s","signature":"x"}"#;
        let m: SignalingHandshakeReq = serde_json::from_slice(raw).unwrap();
        assert_eq!(m.protocol_version, None);
        assert_eq!(m.ids.meeting_uuid.as_deref(), Some("u"));
        let raw = br#"{"msg_type":3,"engagement_id":"e","rtms_stream_id":"s","signature":"x","media_type":8,"media_params":null}"#;
        let m: DataHandshakeReq = serde_json::from_slice(raw).unwrap();
        assert_eq!(m.media_params, None);
        assert_eq!(m.ids.all().collect::<Vec<_>>(), ["e"]);
    }

    #[test]
    fn pretty_printed_tabs_parse() {
        let raw = b"{\n\t\"msg_type\":\t12,\n\t\"sequence\":\t3,\n\t\"timestamp\":\t99\n}";
        assert_eq!(peek_type(raw).unwrap(), msg_type::KEEP_ALIVE_REQ);
        let k: KeepAlive = serde_json::from_slice(raw).unwrap();
        assert_eq!((k.timestamp, k.sequence), (Some(99), Some(3)));
    }

    #[test]
    fn media_content_borrows_and_accepts_string_ids() {
        let raw = br#"{"msg_type":17,"content":{"user_id":"abc","user_name":"Ann","data":"hello","timestamp":5,"start_time":1,"end_time":4,"language":9}}"#;
        let m: MediaMessageRef = serde_json::from_slice(raw).unwrap();
        assert!(matches!(
            m.content.data,
            std::borrow::Cow::Borrowed("hello")
        ));
        assert_eq!(m.content.user_id.unwrap().to_string(), "abc");
    }

    #[test]
    fn numeric_reason_is_accepted() {
        let raw = br#"{"msg_type":2,"status_code":8,"reason":17}"#;
        let m: SignalingHandshakeResp = serde_json::from_slice(raw).unwrap();
        assert_eq!(m.reason.as_deref(), Some("17"));
    }

    #[test]
    fn leading_type_reads_only_a_plain_leading_integer() {
        assert_eq!(leading_type(br#"{"msg_type":14,"content":{}}"#), Some(14));
        assert_eq!(leading_type(b" { \"msg_type\" : 3 }"), Some(3));
        for other in [
            &br#"{"content":{},"msg_type":14}"#[..],
            br#"{"msg_type":"14"}"#,
            br#"{"msg_type":014}"#,
            br#"{"msg_type":14.5}"#,
            br#"{"msg_type":-1}"#,
            br#"{"msg_type":9999999999}"#,
            b"not json",
            b"",
        ] {
            assert_eq!(
                leading_type(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}

#[cfg(test)]
mod video_answer_tests {
    use super::VideoSubscriptionResp;

    #[test]
    fn a_video_answer_with_a_numeric_reason_still_decodes() {
        let r: VideoSubscriptionResp = serde_json::from_str(
            r#"{"msg_type":29,"status_code":25,"user_id":3,"subscribe":true,"reason":7}"#,
        )
        .expect("decodes");
        assert_eq!(
            (r.status_code, r.user_id, r.reason.as_deref()),
            (25, 3, Some("7"))
        );
    }
}
