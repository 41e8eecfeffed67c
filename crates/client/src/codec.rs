//! The wire codec: the one seam between the bytes of a WebSocket message and the typed
//! messages the session acts on.
//!
//! Every message the client reads goes through [`Codec::decode`] and every message it writes
//! through [`Codec::encode`]; [`crate::link`] and [`crate::session`] know only [`Decoded`] and
//! [`Outgoing`]. Protocol version 1 is JSON in text or binary frames ([`JsonCodec`], the one
//! implementation today, which is [`crate::decode()`] and `serde_json`). A binary codec for a
//! later protocol version is a second implementation; the session logic does not change.
//!
//! Cost: the codec in use is a constant of a concrete type ([`WIRE`]), so every call is
//! static (no `dyn`, no allocation of its own); decoding a frame costs what
//! [`crate::decode()`] costs. To choose a codec per stream (from the handshake's
//! `protocol_version`), the constant becomes a field of the session of a type generic over
//! [`Codec`], or an enum of the codecs.
//!
//! Not here: which messages to send when ([`crate::link`], [`crate::session`]) and what
//! their fields mean (`rtms_proto::msg`).

use rtms_proto::msg::{
    ClientReadyAck, DataHandshakeReq, EventSubscription, KeepAlive, SignalingHandshakeReq,
    StreamCloseReq,
};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::decode::{DecodeError, Decoded};

/// A message the client sends.
#[derive(Clone, Copy, Debug)]
pub enum Outgoing<'a> {
    /// msg 1.
    SignalingHandshake(&'a SignalingHandshakeReq),
    /// msg 3.
    DataHandshake(&'a DataHandshakeReq),
    /// msg 5.
    Subscription(&'a EventSubscription),
    /// msg 7.
    ReadyAck(&'a ClientReadyAck),
    /// msg 13.
    KeepAliveResp(&'a KeepAlive),
    /// msg 28.
    VideoSubscription(&'a rtms_proto::msg::VideoSubscriptionReq),
    /// msg 21.
    StreamClose(&'a StreamCloseReq),
}

/// Turns received bytes into messages and messages into WebSocket frames. Both run on the
/// session's task for every message, so an implementation must not block.
pub trait Codec: Send + Sync + 'static {
    /// Decodes the bytes of one text or binary frame.
    fn decode(&self, bytes: &[u8]) -> Result<Decoded, DecodeError>;
    /// Encodes one message as the frame to send.
    fn encode(&self, msg: Outgoing<'_>) -> Message;
}

/// Protocol version 1: JSON objects with a `msg_type`, sent as text frames, read from text or
/// binary frames.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    #[inline]
    fn decode(&self, bytes: &[u8]) -> Result<Decoded, DecodeError> {
        crate::decode::decode(bytes)
    }

    fn encode(&self, msg: Outgoing<'_>) -> Message {
        match msg {
            Outgoing::SignalingHandshake(m) => json(m),
            Outgoing::DataHandshake(m) => json(m),
            Outgoing::Subscription(m) => json(m),
            Outgoing::ReadyAck(m) => json(m),
            Outgoing::KeepAliveResp(m) => json(m),
            Outgoing::VideoSubscription(m) => json(m),
            Outgoing::StreamClose(m) => json(m),
        }
    }
}

/// The codec the client speaks.
pub const WIRE: JsonCodec = JsonCodec;

/// A message as a JSON text frame.
pub fn json<T: Serialize>(m: &T) -> Message {
    // Serializing these plain structs cannot fail.
    Message::text(serde_json::to_string(m).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtms_proto::codes::msg_type;

    #[test]
    fn json_round_trips_a_keepalive_through_the_seam() {
        let sent = WIRE.encode(Outgoing::KeepAliveResp(&KeepAlive {
            msg_type: msg_type::KEEP_ALIVE_REQ,
            timestamp: Some(5),
            sequence: Some(6),
        }));
        let Message::Text(text) = &sent else {
            panic!("JSON goes in text frames: {sent:?}")
        };
        assert_eq!(
            WIRE.decode(text.as_bytes()).expect("decodes"),
            Decoded::KeepAlive {
                timestamp: Some(5),
                sequence: Some(6)
            }
        );
        assert!(WIRE.decode(b"\x0a\x02").is_err(), "not JSON");
    }
}
