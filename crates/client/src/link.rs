//! One socket's protocol: building handshake requests, opening a signaling or media socket
//! with its handshake inside one timeout, and the small message helpers (keep-alive echo,
//! JSON out, bytes in).
//!
//! The session's loop ([`crate::session`]) owns the opened sockets; this module holds no
//! state between calls.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtms_proto::Product;
use rtms_proto::codes::{media_type, msg_type, status};
use rtms_proto::msg::{
    ClientReadyAck, DataHandshakeReq, DataHandshakeResp, EventSubscription, EventSubscriptionItem,
    HandshakeIds, KeepAlive, SignalingHandshakeReq, SignalingHandshakeResp,
};
use rtms_proto::params::MediaParams;
use rtms_proto::sign::handshake_signature;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::codec::{Codec as _, Outgoing, WIRE};
use crate::config::ClientConfig;
use crate::decode::Decoded;
use crate::transport::{Connector, Transport};

/// Which socket of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Signaling,
    /// A media socket with the `media_type` mask it was opened for.
    Media(u32),
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Signaling => "signaling",
            Role::Media(_) => "media",
        }
    }
}

/// Why opening a socket failed. Messages name the socket, the URL and what to check.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "{role} socket {url}: no handshake answer within {after:?} (covers TCP, TLS, WebSocket upgrade and handshake); check the URL and the network"
    )]
    Timeout {
        role: &'static str,
        url: String,
        after: Duration,
    },
    #[error("{role} socket {url}: {source}")]
    Transport {
        role: &'static str,
        url: String,
        #[source]
        source: WsError,
    },
    #[error("{role} socket {url}: handshake refused with status {code} ({name}): {reason}")]
    Rejected {
        role: &'static str,
        url: String,
        code: u32,
        name: &'static str,
        reason: String,
    },
    #[error(
        "{role} socket {url}: the connection ended in the TLS handshake ({source}). Zoom requires TLS 1.2 or 1.3 on every RTMS connection and the host offers nothing older: a server that speaks only TLS 1.1 or older (or no TLS on this port) is refused; check the URL and the server's TLS versions"
    )]
    Tls {
        role: &'static str,
        url: String,
        #[source]
        source: WsError,
    },
    #[error("{role} socket {url}: the server closed the socket before answering the handshake")]
    Closed { role: &'static str, url: String },
    #[error(
        "signaling {url}: msg 2 names no media URL for media_type {mask} and no `all` URL either"
    )]
    NoMediaUrl { url: String, mask: u32 },
    #[error("{role} socket not opened: {source}")]
    NotAllowed {
        role: &'static str,
        #[source]
        source: crate::allow::UrlRefused,
    },
}

impl ConnectError {
    /// The GA name of the status code the server refused the handshake with, if it did.
    pub fn refusal(&self) -> Option<(&'static str, &'static str)> {
        match self {
            ConnectError::Rejected { role, name, .. } => Some((role, name)),
            _ => None,
        }
    }

    /// True when the server refused the handshake as a duplicate connection.
    pub fn is_duplicate(&self) -> bool {
        match self {
            ConnectError::Rejected { code, reason, .. } => status::is_duplicate(*code, reason),
            _ => false,
        }
    }
}

/// The identity of a stream in handshakes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamIds {
    pub product: Product,
    /// Meeting uuid / webinar uuid / session id / engagement id, raw.
    pub id: String,
    pub stream_id: String,
}

impl StreamIds {
    fn signature(&self, cfg: &ClientConfig) -> String {
        handshake_signature(
            &cfg.client_id,
            &cfg.client_secret,
            &self.id,
            &self.stream_id,
        )
    }
}

/// msg 1.
pub fn signaling_request(
    cfg: &ClientConfig,
    ids: &StreamIds,
    sequence: u64,
) -> SignalingHandshakeReq {
    SignalingHandshakeReq {
        msg_type: msg_type::SIGNALING_HAND_SHAKE_REQ,
        protocol_version: Some(1),
        sequence: Some(sequence),
        ids: HandshakeIds::for_product(ids.product, &ids.id),
        rtms_stream_id: ids.stream_id.clone(),
        signature: ids.signature(cfg),
        buffer_data: Some(cfg.buffer_data),
    }
}

/// msg 3 for a socket carrying `mask`, with the configured parameters of those types only
/// (`null` when none are configured: the server's defaults).
pub fn media_request(
    cfg: &ClientConfig,
    ids: &StreamIds,
    mask: u32,
    sequence: u64,
) -> DataHandshakeReq {
    DataHandshakeReq {
        msg_type: msg_type::DATA_HAND_SHAKE_REQ,
        protocol_version: Some(1),
        sequence: Some(sequence),
        ids: HandshakeIds::for_product(ids.product, &ids.id),
        rtms_stream_id: ids.stream_id.clone(),
        signature: ids.signature(cfg),
        media_type: mask,
        payload_encryption: Some(false),
        media_params: params_for(&cfg.media_params, mask),
    }
}

fn params_for(p: &MediaParams, mask: u32) -> Option<MediaParams> {
    let has = |bit: u32| mask & (bit | media_type::ALL) != 0;
    let out = MediaParams {
        audio: p.audio.clone().filter(|_| has(media_type::AUDIO)),
        video: p.video.clone().filter(|_| has(media_type::VIDEO)),
        deskshare: p.deskshare.clone().filter(|_| has(media_type::DESKSHARE)),
        transcript: p.transcript.clone().filter(|_| has(media_type::TRANSCRIPT)),
        chat: p.chat.clone().filter(|_| has(media_type::CHAT)),
    };
    (out != MediaParams::default()).then_some(out)
}

/// msg 5, or `None` when no events are configured.
pub fn subscription(events: &[u32]) -> Option<Message> {
    (!events.is_empty()).then(|| {
        WIRE.encode(Outgoing::Subscription(&EventSubscription {
            msg_type: msg_type::EVENT_SUBSCRIPTION,
            events: events
                .iter()
                .map(|&event_type| EventSubscriptionItem {
                    event_type,
                    subscribe: true,
                })
                .collect(),
        }))
    })
}

/// msg 28: start or stop one participant's individual video.
pub fn video_subscription(change: crate::video::Change) -> Message {
    WIRE.encode(Outgoing::VideoSubscription(
        &rtms_proto::msg::VideoSubscriptionReq {
            msg_type: msg_type::VIDEO_SUBSCRIPTION_REQ,
            user_id: change.user_id,
            subscribe: change.subscribe,
            timestamp: Some(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            ),
        },
    ))
}

/// msg 7.
pub fn ready_ack(stream_id: &str) -> Message {
    WIRE.encode(Outgoing::ReadyAck(&ClientReadyAck {
        msg_type: msg_type::CLIENT_READY_ACK,
        rtms_stream_id: stream_id.to_owned(),
    }))
}

/// msg 13 echoing a keep-alive request's `timestamp` and `sequence`.
pub fn keepalive_response(timestamp: Option<u64>, sequence: Option<u64>) -> Message {
    WIRE.encode(Outgoing::KeepAliveResp(&KeepAlive {
        msg_type: msg_type::KEEP_ALIVE_RESP,
        timestamp,
        sequence,
    }))
}

/// msg 21: asks Zoom to end the stream (STOP_REASON 20, RECEIVER_REQUEST_CLOSE).
pub fn stream_close(stream_id: &str) -> Message {
    WIRE.encode(Outgoing::StreamClose(&rtms_proto::msg::StreamCloseReq {
        msg_type: msg_type::STREAM_CLOSE_REQ,
        rtms_stream_id: stream_id.to_owned(),
        timestamp: Some(rtms_proto::unix_ms()),
    }))
}

/// A message as a JSON text frame (kept for callers; the client encodes through
/// [`crate::codec`]).
pub use crate::codec::json;

/// The JSON bytes of a text or binary frame; `None` for control frames.
pub fn data_bytes(m: &Message) -> Option<&[u8]> {
    match m {
        Message::Text(t) => Some(t.as_bytes()),
        Message::Binary(b) => Some(b),
        _ => None,
    }
}

/// Opens the signaling socket and runs msg 1 / msg 2, all within `timeout`.
pub async fn open_signaling<C: Connector>(
    connector: &C,
    url: &str,
    req: &SignalingHandshakeReq,
    timeout: Duration,
) -> Result<(C::Conn, SignalingHandshakeResp), ConnectError> {
    let role = Role::Signaling;
    let fut = async {
        let mut conn = open(connector, url, role).await?;
        let hello = WIRE.encode(Outgoing::SignalingHandshake(req));
        send(&mut conn, hello, url, role).await?;
        match await_answer(&mut conn, url, role, msg_type::SIGNALING_HAND_SHAKE_RESP).await? {
            Decoded::SignalingResp(resp) if resp.status_code == status::OK => Ok((conn, resp)),
            Decoded::SignalingResp(resp) => Err(rejected(role, url, resp.status_code, resp.reason)),
            _ => Err(ConnectError::Closed {
                role: role.name(),
                url: url.to_owned(),
            }),
        }
    };
    with_timeout(fut, url, role, timeout).await
}

/// Opens a media socket and runs msg 3 / msg 4, all within `timeout`.
pub async fn open_media<C: Connector>(
    connector: &C,
    url: &str,
    req: &DataHandshakeReq,
    timeout: Duration,
) -> Result<(C::Conn, DataHandshakeResp), ConnectError> {
    let role = Role::Media(req.media_type);
    let fut = async {
        let mut conn = open(connector, url, role).await?;
        let hello = WIRE.encode(Outgoing::DataHandshake(req));
        send(&mut conn, hello, url, role).await?;
        match await_answer(&mut conn, url, role, msg_type::DATA_HAND_SHAKE_RESP).await? {
            Decoded::DataResp(resp) if resp.status_code == status::OK => Ok((conn, resp)),
            Decoded::DataResp(resp) => Err(rejected(role, url, resp.status_code, resp.reason)),
            _ => Err(ConnectError::Closed {
                role: role.name(),
                url: url.to_owned(),
            }),
        }
    };
    with_timeout(fut, url, role, timeout).await
}

fn rejected(role: Role, url: &str, code: u32, reason: Option<String>) -> ConnectError {
    ConnectError::Rejected {
        role: role.name(),
        url: url.to_owned(),
        code,
        name: status::name(code),
        reason: reason.unwrap_or_default(),
    }
}

async fn with_timeout<T>(
    fut: impl Future<Output = Result<T, ConnectError>>,
    url: &str,
    role: Role,
    timeout: Duration,
) -> Result<T, ConnectError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::Timeout {
                role: role.name(),
                url: url.to_owned(),
                after: timeout,
            })
        })
}

async fn open<C: Connector>(connector: &C, url: &str, role: Role) -> Result<C::Conn, ConnectError> {
    connector.connect(url).await.map_err(|source| {
        let (role, url) = (role.name(), url.to_owned());
        if is_tls_handshake_failure(&source, &url) {
            ConnectError::Tls { role, url, source }
        } else {
            ConnectError::Transport { role, url, source }
        }
    })
}

/// Whether opening a `wss://` socket failed in its TLS handshake: an error of rustls (a
/// protocol version alert, no common version), or the server ending or resetting the
/// connection before the WebSocket upgrade was answered (what a server does whose TLS
/// versions the client does not offer).
fn is_tls_handshake_failure(e: &WsError, url: &str) -> bool {
    use std::io::ErrorKind::*;
    match e {
        WsError::Tls(_) => true,
        WsError::Io(io) if url.starts_with("wss://") => {
            matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | UnexpectedEof
            ) || io.to_string().contains("tls handshake")
        }
        _ => false,
    }
}

async fn send<T: Transport>(
    conn: &mut T,
    m: Message,
    url: &str,
    role: Role,
) -> Result<(), ConnectError> {
    conn.send(m)
        .await
        .map_err(|source| ConnectError::Transport {
            role: role.name(),
            url: url.to_owned(),
            source,
        })
}

/// Reads until a message of type `want` arrives, answering keep-alives on the way.
async fn await_answer<T: Transport>(
    conn: &mut T,
    url: &str,
    role: Role,
    want: u32,
) -> Result<Decoded, ConnectError> {
    let closed = || ConnectError::Closed {
        role: role.name(),
        url: url.to_owned(),
    };
    loop {
        let msg = match conn.next().await {
            None | Some(Err(WsError::ConnectionClosed)) => return Err(closed()),
            Some(Err(source)) => {
                return Err(ConnectError::Transport {
                    role: role.name(),
                    url: url.to_owned(),
                    source,
                });
            }
            Some(Ok(m)) => m,
        };
        if let Message::Close(_) = msg {
            return Err(closed());
        }
        let Some(bytes) = data_bytes(&msg) else {
            continue;
        };
        match WIRE.decode(bytes) {
            Ok(Decoded::KeepAlive {
                timestamp,
                sequence,
            }) => send(conn, keepalive_response(timestamp, sequence), url, role).await?,
            Ok(d @ Decoded::SignalingResp(_)) if want == msg_type::SIGNALING_HAND_SHAKE_RESP => {
                return Ok(d);
            }
            Ok(d @ Decoded::DataResp(_)) if want == msg_type::DATA_HAND_SHAKE_RESP => return Ok(d),
            Ok(other) => {
                tracing::debug!(
                    role = role.name(),
                    url,
                    ?other,
                    "ignored before the handshake answer"
                );
            }
            Err(e) => {
                tracing::warn!(role = role.name(), url, error = %e, "undecodable message before the handshake answer")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtms_proto::params::AudioParams;

    fn ids() -> StreamIds {
        StreamIds {
            product: Product::ContactCenter,
            id: "eng-1".into(),
            stream_id: "s1".into(),
        }
    }

    #[test]
    fn signaling_request_carries_version_sequence_ids_signature_and_buffering() {
        let cfg = ClientConfig {
            client_id: "test_client_id".into(),
            client_secret: "test_client_secret".into(),
            buffer_data: true,
            ..Default::default()
        };
        let r = signaling_request(&cfg, &ids(), 7);
        let v: serde_json::Value = serde_json::from_str(json(&r).to_text().unwrap()).unwrap();
        assert_eq!(v["msg_type"], 1);
        assert_eq!(v["protocol_version"], 1);
        assert_eq!(v["sequence"], 7);
        assert_eq!(v["engagement_id"], "eng-1");
        assert_eq!(v["rtms_stream_id"], "s1");
        assert_eq!(v["buffer_data"], true);
        assert_eq!(
            v["signature"],
            handshake_signature("test_client_id", "test_client_secret", "eng-1", "s1")
        );
    }

    #[test]
    fn media_request_sends_only_the_sections_of_its_types() {
        let cfg = ClientConfig {
            media_params: MediaParams {
                audio: Some(AudioParams::default_params()),
                ..Default::default()
            },
            ..Default::default()
        };
        let r = media_request(&cfg, &ids(), media_type::AUDIO, 0);
        assert_eq!(
            r.media_params.unwrap().audio,
            Some(AudioParams::default_params())
        );
        let r = media_request(&cfg, &ids(), media_type::TRANSCRIPT, 0);
        assert_eq!(r.media_params, None);
        let r = media_request(&cfg, &ids(), media_type::ALL, 0);
        assert!(r.media_params.is_some());
        assert_eq!(r.payload_encryption, Some(false));
    }

    #[test]
    fn keepalive_response_echoes_both_fields() {
        let m = keepalive_response(Some(123), Some(9));
        let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"msg_type":13,"timestamp":123,"sequence":9})
        );
    }

    #[test]
    fn duplicate_refusals_are_recognised_by_code_or_reason() {
        let r = rejected(Role::Signaling, "u", 8, None);
        assert!(r.is_duplicate());
        let r = rejected(
            Role::Signaling,
            "u",
            17,
            Some("Duplicate signal request".into()),
        );
        assert!(r.is_duplicate());
        let r = rejected(Role::Signaling, "u", 3, Some("bad signature".into()));
        assert!(!r.is_duplicate());
        assert!(r.to_string().contains("INVALID_SIGNATURE"));
    }
}
