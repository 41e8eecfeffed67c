//! The honest baseline: a minimal RTMS client written directly on tokio-tungstenite that
//! does the two handshakes, acknowledges ready, answers keep-alives and does the client's
//! work on every audio message: JSON parse (the client's borrowed `MediaMessageRef`) and
//! base64 decode into one reused buffer. It connects through the client's own connector
//! (`rtms_client::WsConnector`: the same WebSocket read buffer and `TCP_NODELAY`), so it
//! differs from the host only by what the host adds: sessions, frames, routing, plugins.

use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use futures_util::{SinkExt, StreamExt};
use rtms_client::{Connector, WsConnector};
use rtms_proto::WebhookEvent;
use rtms_proto::codes::media_type;
use rtms_proto::msg::MediaMessageRef;
use serde_json::{Value, json};
use std::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::setup::{self, Stamps};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn text_of(m: &Message) -> Option<&[u8]> {
    match m {
        Message::Text(t) => Some(t.as_bytes()),
        Message::Binary(b) => Some(b),
        _ => None,
    }
}

/// Reads until a JSON message of `msg_type` arrives.
async fn recv_type(ws: &mut Ws, t: u64) -> Result<Value> {
    while let Some(m) = ws.next().await {
        let m = m?;
        if let Some(bytes) = text_of(&m) {
            let v: Value = serde_json::from_slice(bytes).context("server sent non-JSON")?;
            if v["msg_type"] == t {
                return Ok(v);
            }
        }
    }
    anyhow::bail!("socket closed before msg_type {t}")
}

/// The keep-alive answer to a request, if `bytes` is one.
fn keepalive_answer(bytes: &[u8]) -> Option<Message> {
    if !bytes.starts_with(b"{\"msg_type\":12") {
        return None;
    }
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let ans = json!({"msg_type": 13, "timestamp": v["timestamp"], "sequence": v["sequence"]});
    Some(Message::text(ans.to_string()))
}

/// The client's base64 flavour (padding optional).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parses one audio message and decodes its payload into `buf` (cleared first); returns
/// the payload size.
pub fn decode_audio(bytes: &[u8], buf: &mut Vec<u8>) -> Result<usize> {
    let m: MediaMessageRef<'_> = serde_json::from_slice(bytes).context("bad media message")?;
    buf.clear();
    B64.decode_vec(m.content.data.as_bytes(), buf)
        .context("bad base64 payload")?;
    Ok(buf.len())
}

/// Runs one stream, announced by its started webhook, to its end, decoding audio messages
/// and counting them into `stamps`; `on_audio` also sees each one's socket-read time.
pub async fn run(
    ev: &WebhookEvent,
    frame_ms: u32,
    stamps: Arc<Stamps>,
    on_audio: Option<Arc<dyn Fn(Instant) + Send + Sync>>,
) -> Result<()> {
    let id_key = ev.product.id_key();
    let conn = WsConnector::new(None)?;
    let url = ev
        .server_url
        .as_deref()
        .context("started event without server_urls")?;
    let signature = rtms_proto::sign::handshake_signature(
        setup::CLIENT_ID,
        setup::CLIENT_SECRET,
        &ev.id,
        &ev.stream_id,
    );
    let mut sig = conn.connect(url).await?;
    let mut req = json!({"msg_type": 1, "protocol_version": 1, "sequence": 0,
        "rtms_stream_id": ev.stream_id, "signature": signature});
    req[id_key] = json!(ev.id);
    sig.send(Message::text(req.to_string())).await?;
    let resp = recv_type(&mut sig, 2).await?;
    let url = resp["media_server"]["server_urls"]["all"]
        .as_str()
        .context("msg 2 has no media URL")?
        .to_owned();
    let mut media = conn.connect(&url).await?;
    let mut req = json!({"msg_type": 3, "protocol_version": 1, "sequence": 0,
        "rtms_stream_id": ev.stream_id, "signature": signature,
        "media_type": media_type::AUDIO, "payload_encryption": false,
        "media_params": {"audio": {"content_type": 2, "sample_rate": 1, "channel": 1,
            "codec": 1, "data_opt": 1, "send_rate": frame_ms}}});
    req[id_key] = json!(ev.id);
    media.send(Message::text(req.to_string())).await?;
    let resp = recv_type(&mut media, 4).await?;
    anyhow::ensure!(resp["status_code"] == 0, "media handshake refused: {resp}");
    sig.send(Message::text(
        json!({"msg_type": 7, "rtms_stream_id": ev.stream_id}).to_string(),
    ))
    .await?;
    let signaling = tokio::spawn(async move {
        while let Some(Ok(m)) = sig.next().await {
            let ans = text_of(&m).and_then(keepalive_answer);
            if let Some(a) = ans
                && sig.send(a).await.is_err()
            {
                break;
            }
        }
    });
    let mut buf = Vec::with_capacity(16 * 2 * frame_ms as usize);
    while let Some(m) = media.next().await {
        let read_at = Instant::now();
        let Ok(m) = m else { break };
        let Some(bytes) = text_of(&m) else {
            if matches!(m, Message::Close(_)) {
                break;
            }
            continue;
        };
        if bytes.starts_with(b"{\"msg_type\":14") {
            stamps.first();
            decode_audio(bytes, &mut buf)?;
            if let Some(f) = &on_audio {
                f(read_at);
            }
            stamps.add(1);
        } else if let Some(a) = keepalive_answer(bytes) {
            media.send(a).await?;
        }
    }
    signaling.abort();
    Ok(())
}
