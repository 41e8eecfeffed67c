//! Turning one received WebSocket message (text or binary, both JSON) into a [`Decoded`]
//! value: media messages 14-18 and events (msg 6) become [`Frame`]s, everything else the
//! client acts on becomes a typed control message.
//!
//! [`decode()`] is pure, so `rtms-host replay` pushes recorded messages through exactly the
//! code the live sockets use. Media `content.data` is base64-decoded once, straight into the
//! frame's payload `Vec`; the JSON is parsed borrowing from the received bytes.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rtms_proto::codes::msg_type;
use rtms_proto::msg::{
    DataHandshakeResp, EventUpdate, KeepAlive, MediaMessageRef, SessionStateUpdate,
    SignalingHandshakeResp, StreamCloseResp, StreamStateUpdate, leading_type, peek_type,
};

use crate::frame::{Frame, MediaKind, TranscriptInfo};

/// Standard base64 that accepts data with or without padding.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One decoded message.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    /// Media (msg 14-18) or an event (msg 6). `seq` is 0: the session assigns it.
    Frame(Frame),
    /// msg 12, to be echoed as msg 13 on the socket it came from.
    KeepAlive {
        timestamp: Option<u64>,
        sequence: Option<u64>,
    },
    /// msg 2.
    SignalingResp(SignalingHandshakeResp),
    /// msg 4.
    DataResp(DataHandshakeResp),
    /// msg 8.
    StreamState(StreamStateUpdate),
    /// msg 9.
    SessionState(SessionStateUpdate),
    /// msg 29, the answer to a video subscription.
    VideoSubscription(rtms_proto::msg::VideoSubscriptionResp),
    /// msg 22, the answer to the client's STREAM_CLOSE_REQ.
    StreamClose(StreamCloseResp),
    /// A well-formed message of a type the client does not act on.
    Other { msg_type: u32 },
}

/// Why a message could not be decoded. The session logs it and goes on: one bad message
/// never ends a stream.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is not a JSON object with an integer msg_type: {0}")]
    NoType(serde_json::Error),
    #[error("msg_type {msg_type} does not have the expected fields: {source}")]
    Shape {
        msg_type: u32,
        source: serde_json::Error,
    },
    #[error(
        "msg_type {msg_type}: content.length says {declared} bytes but content.data decodes to {decoded}: the message is damaged"
    )]
    Length {
        msg_type: u32,
        declared: u64,
        decoded: usize,
    },
    #[error("msg_type {msg_type}: content.data is not valid base64: {source}")]
    Base64 {
        msg_type: u32,
        source: base64::DecodeError,
    },
}

/// Decodes one message (the bytes of a text or binary WebSocket frame).
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    // One JSON parse per message: the type read from the message's first bytes when it
    // leads (it always does on the wire), the full peek otherwise.
    let ty = match leading_type(bytes) {
        Some(ty) => ty,
        None => peek_type(bytes).map_err(DecodeError::NoType)?,
    };
    let shape = |source| DecodeError::Shape {
        msg_type: ty,
        source,
    };
    Ok(match ty {
        msg_type::MEDIA_DATA_AUDIO..=msg_type::MEDIA_DATA_CHAT => Decoded::Frame(media(ty, bytes)?),
        msg_type::EVENT_UPDATE => {
            let ev: EventUpdate = serde_json::from_slice(bytes).map_err(shape)?;
            let timestamp_ms = ev
                .timestamp
                .or_else(|| ev.event.get("timestamp").and_then(|t| t.as_u64()))
                .unwrap_or(0);
            let str_field = |k: &str| match ev.event.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            Decoded::Frame(Frame {
                kind: MediaKind::Event,
                timestamp_ms,
                user_id: str_field("user_id"),
                user_name: str_field("user_name"),
                event_type: ev.event_type(),
                text: Some(ev.event.to_string()),
                ..Frame::default()
            })
        }
        msg_type::KEEP_ALIVE_REQ => {
            let k: KeepAlive = serde_json::from_slice(bytes).map_err(shape)?;
            Decoded::KeepAlive {
                timestamp: k.timestamp,
                sequence: k.sequence,
            }
        }
        msg_type::SIGNALING_HAND_SHAKE_RESP => {
            Decoded::SignalingResp(serde_json::from_slice(bytes).map_err(shape)?)
        }
        msg_type::DATA_HAND_SHAKE_RESP => {
            Decoded::DataResp(serde_json::from_slice(bytes).map_err(shape)?)
        }
        msg_type::STREAM_STATE_UPDATE => {
            let mut s: StreamStateUpdate = serde_json::from_slice(bytes).map_err(shape)?;
            if s.reason == 0 {
                s.reason = s.stop_reason.unwrap_or(0);
            }
            Decoded::StreamState(s)
        }
        msg_type::SESSION_STATE_UPDATE => {
            Decoded::SessionState(serde_json::from_slice(bytes).map_err(shape)?)
        }
        msg_type::VIDEO_SUBSCRIPTION_RESP => {
            Decoded::VideoSubscription(serde_json::from_slice(bytes).map_err(shape)?)
        }
        msg_type::STREAM_CLOSE_RESP => {
            Decoded::StreamClose(serde_json::from_slice(bytes).map_err(shape)?)
        }
        other => Decoded::Other { msg_type: other },
    })
}

/// Decodes a media message (msg 14-18) into a frame.
fn media(ty: u32, bytes: &[u8]) -> Result<Frame, DecodeError> {
    let m: MediaMessageRef<'_> =
        serde_json::from_slice(bytes).map_err(|source| DecodeError::Shape {
            msg_type: ty,
            source,
        })?;
    let c = m.content;
    let kind = MediaKind::from_media_msg_type(ty).unwrap_or(MediaKind::Chat);
    let user_id = c
        .user_id
        .as_ref()
        .or(c.channel_id.as_ref())
        .map(ToString::to_string)
        .unwrap_or_default();
    let user_name = c.user_name.map(|n| n.into_owned()).unwrap_or_default();
    let mut frame = Frame {
        kind,
        timestamp_ms: c.timestamp,
        user_id,
        user_name,
        ..Frame::default()
    };
    match kind {
        MediaKind::Audio | MediaKind::Video | MediaKind::Share => {
            frame.payload =
                B64.decode(strip_data_uri(&c.data))
                    .map_err(|source| DecodeError::Base64 {
                        msg_type: ty,
                        source,
                    })?;
            if let Some(declared) = c.length {
                if declared != frame.payload.len() as u64 {
                    return Err(DecodeError::Length {
                        msg_type: ty,
                        declared,
                        decoded: frame.payload.len(),
                    });
                }
                frame.length = u32::try_from(declared).ok();
            }
        }
        MediaKind::Transcript => {
            frame.transcript = Some(TranscriptInfo {
                start_ms: c.start_time.unwrap_or(c.timestamp),
                end_ms: c.end_time.unwrap_or(c.timestamp),
                language: c.language.unwrap_or(-1),
            });
            frame.text = Some(c.data.into_owned());
        }
        _ => frame.text = Some(c.data.into_owned()),
    }
    Ok(frame)
}

/// One Zoom sample strips a `data:<mime>;base64,` prefix from share frames; do the same.
fn strip_data_uri(data: &str) -> &str {
    match data.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map_or(data, |(_, b64)| b64),
        None => data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        B64.encode(bytes)
    }

    #[test]
    fn a_stated_length_is_checked_against_the_data() {
        let data = b64(&[1, 2, 3, 4]);
        let msg = |len: u64| {
            format!(
                r#"{{"msg_type":14,"content":{{"user_id":1,"data":"{data}","timestamp":1,"length":{len}}}}}"#
            )
        };
        let Decoded::Frame(f) = decode(msg(4).as_bytes()).unwrap() else {
            panic!("not a frame")
        };
        assert_eq!(f.length, Some(4));
        let e = decode(msg(5).as_bytes()).unwrap_err();
        assert!(matches!(
            e,
            DecodeError::Length {
                declared: 5,
                decoded: 4,
                ..
            }
        ));
        assert!(e.to_string().contains("content.length says 5 bytes"), "{e}");
        let plain = format!(r#"{{"msg_type":14,"content":{{"data":"{data}","timestamp":1}}}}"#);
        let Decoded::Frame(f) = decode(plain.as_bytes()).unwrap() else {
            panic!("not a frame")
        };
        assert_eq!(f.length, None, "no length stated");
    }

    #[test]
    fn decodes_audio_video_and_share_payloads() {
        for (ty, kind) in [
            (14, MediaKind::Audio),
            (15, MediaKind::Video),
            (16, MediaKind::Share),
        ] {
            let raw = format!(
                r#"{{"msg_type":{ty},"content":{{"user_id":16778240,"user_name":"Ann","data":"{}","timestamp":1700}}}}"#,
                b64(&[1, 2, 3, 250])
            );
            let Decoded::Frame(f) = decode(raw.as_bytes()).unwrap() else {
                panic!("not a frame")
            };
            assert_eq!(f.kind, kind);
            assert_eq!(f.payload, [1, 2, 3, 250]);
            assert_eq!(
                (f.user_id.as_str(), f.user_name.as_str()),
                ("16778240", "Ann")
            );
            assert_eq!(f.timestamp_ms, 1700);
            assert_eq!(f.text, None);
        }
    }

    #[test]
    fn decodes_transcript_with_times_and_language() {
        let raw = br#"{"msg_type":17,"content":{"user_id":"u-7","user_name":"Bo","data":"hello there","timestamp":50,"start_time":10,"end_time":40,"language":9}}"#;
        let Decoded::Frame(f) = decode(raw).unwrap() else {
            panic!("not a frame")
        };
        assert_eq!(f.kind, MediaKind::Transcript);
        assert_eq!(f.text.as_deref(), Some("hello there"));
        assert_eq!(
            f.transcript,
            Some(TranscriptInfo {
                start_ms: 10,
                end_ms: 40,
                language: 9
            })
        );
        assert!(f.payload.is_empty());
        assert_eq!(f.user_id, "u-7");
    }

    #[test]
    fn decodes_chat_text_and_contact_center_channel_id() {
        let raw = br#"{"msg_type":18,"content":{"channel_id":"ch1","user_name":"C","data":"{\"message_id\":\"m\"}","timestamp":3}}"#;
        let Decoded::Frame(f) = decode(raw).unwrap() else {
            panic!("not a frame")
        };
        assert_eq!(f.kind, MediaKind::Chat);
        assert_eq!(f.text.as_deref(), Some(r#"{"message_id":"m"}"#));
        assert_eq!(f.user_id, "ch1");
    }

    #[test]
    fn decodes_event_update_into_event_frame() {
        let raw = br#"{"msg_type":6,"event":{"event_type":2,"user_id":5,"user_name":"Al","timestamp":77}}"#;
        let Decoded::Frame(f) = decode(raw).unwrap() else {
            panic!("not a frame")
        };
        assert_eq!(f.kind, MediaKind::Event);
        assert_eq!(f.event_type, Some(2));
        assert_eq!(f.timestamp_ms, 77);
        assert_eq!((f.user_id.as_str(), f.user_name.as_str()), ("5", "Al"));
        let v: serde_json::Value = serde_json::from_str(f.text.as_deref().unwrap()).unwrap();
        assert_eq!(v["event_type"], 2);
    }

    #[test]
    fn decodes_pretty_printed_json_with_tabs() {
        let raw = format!(
            "{{\n\t\"content\":\t{{\n\t\t\"data\":\t\"{}\",\n\t\t\"timestamp\":\t9,\n\t\t\"user_id\":\t1,\n\t\t\"user_name\":\t\"X\"\n\t}},\n\t\"msg_type\":\t14\n}}",
            b64(b"abc")
        );
        let Decoded::Frame(f) = decode(raw.as_bytes()).unwrap() else {
            panic!("not a frame")
        };
        assert_eq!(f.payload, b"abc");
        let ka = b"{\n\t\"msg_type\":\t12,\n\t\"sequence\":\t4,\n\t\"timestamp\":\t1234\n}";
        assert_eq!(
            decode(ka).unwrap(),
            Decoded::KeepAlive {
                timestamp: Some(1234),
                sequence: Some(4)
            }
        );
    }

    #[test]
    fn decodes_control_messages() {
        let m = decode(br#"{"msg_type":2,"status_code":0,"media_server":{"server_urls":{"all":"ws://x/all"}}}"#).unwrap();
        let Decoded::SignalingResp(r) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            r.media_server.unwrap().server_urls.all.as_deref(),
            Some("ws://x/all")
        );
        let m = decode(br#"{"msg_type":4,"status_code":8,"reason":"duplicate"}"#).unwrap();
        assert!(matches!(m, Decoded::DataResp(r) if r.status_code == 8));
        let m = decode(br#"{"msg_type":8,"state":4,"reason":6,"timestamp":1}"#).unwrap();
        assert!(matches!(m, Decoded::StreamState(s) if s.state == 4 && s.reason == 6));
        // Zoom's servers send the reason as `reason`, `stop_reason` or both: every form reads.
        for body in [
            &br#"{"msg_type":8,"state":4,"reason":25,"stop_reason":25}"#[..],
            br#"{"msg_type":8,"state":4,"stop_reason":25}"#,
        ] {
            let m = decode(body).unwrap();
            assert!(
                matches!(&m, Decoded::StreamState(s) if s.state == 4 && s.reason == 25),
                "{m:?}"
            );
        }
        let m =
            decode(br#"{"msg_type":9,"rtms_session_id":"x","state":5,"stop_reason":6}"#).unwrap();
        assert!(matches!(m, Decoded::SessionState(s) if s.state == 5 && s.stop_reason == 6));
        assert_eq!(
            decode(br#"{"msg_type":12}"#).unwrap(),
            Decoded::KeepAlive {
                timestamp: None,
                sequence: None
            }
        );
        let m =
            decode(br#"{"msg_type":22,"status_code":2,"reason":"gone","timestamp":7}"#).unwrap();
        assert!(
            matches!(&m, Decoded::StreamClose(r) if r.status_code == 2 && r.reason.as_deref() == Some("gone")),
            "{m:?}"
        );
        assert_eq!(
            decode(br#"{"msg_type":20,"status_code":0}"#).unwrap(),
            Decoded::Other { msg_type: 20 }
        );
    }

    #[test]
    fn share_data_uri_prefix_is_stripped_and_padding_is_optional() {
        let raw =
            br#"{"msg_type":16,"content":{"data":"data:image/jpeg;base64,/9j/","timestamp":1}}"#;
        let Decoded::Frame(f) = decode(raw).unwrap() else {
            panic!("not a frame")
        };
        assert_eq!(f.payload, [0xff, 0xd8, 0xff]);
        let raw = br#"{"msg_type":14,"content":{"data":"YWI","timestamp":1}}"#;
        let Decoded::Frame(f) = decode(raw).unwrap() else {
            panic!("not a frame")
        };
        assert_eq!(f.payload, b"ab");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(decode(b"not json"), Err(DecodeError::NoType(_))));
        assert!(matches!(
            decode(br#"{"msg_type":"x"}"#),
            Err(DecodeError::NoType(_))
        ));
        assert!(matches!(
            decode(br#"{"msg_type":14,"content":{}}"#),
            Err(DecodeError::Shape { msg_type: 14, .. })
        ));
        assert!(matches!(
            decode(br#"{"msg_type":14,"content":{"data":"!!!!","timestamp":1}}"#),
            Err(DecodeError::Base64 { msg_type: 14, .. })
        ));
        assert!(matches!(
            decode(br#"{"msg_type":2}"#),
            Err(DecodeError::Shape { .. })
        ));
    }
}
