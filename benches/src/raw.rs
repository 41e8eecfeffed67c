//! The simulator's ceiling: a minimal RTMS client written directly on tokio-tungstenite that
//! does the two handshakes, acknowledges ready, answers keep-alives and only counts audio
//! messages (no JSON decoding of media, no base64, no host).

use std::sync::Arc;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use rtms_proto::codes::media_type;
use rtms_sim::MeetingHandle;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::setup::Stamps;

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

/// Runs one stream to its end, counting audio messages into `stamps`.
pub async fn run(h: &MeetingHandle, frame_ms: u32, stamps: Arc<Stamps>) -> Result<()> {
    let id_key = h.product().id_key();
    let (mut sig, _) = tokio_tungstenite::connect_async(h.signaling_url()).await?;
    let mut req = json!({"msg_type": 1, "protocol_version": 1, "sequence": 0,
        "rtms_stream_id": h.stream_id(), "signature": h.expected_signature()});
    req[id_key] = json!(h.meeting_id());
    sig.send(Message::text(req.to_string())).await?;
    let resp = recv_type(&mut sig, 2).await?;
    let url = resp["media_server"]["server_urls"]["all"]
        .as_str()
        .context("msg 2 has no media URL")?
        .to_owned();
    let (mut media, _) = tokio_tungstenite::connect_async(url).await?;
    let mut req = json!({"msg_type": 3, "protocol_version": 1, "sequence": 0,
        "rtms_stream_id": h.stream_id(), "signature": h.expected_signature(),
        "media_type": media_type::AUDIO, "payload_encryption": false,
        "media_params": {"audio": {"content_type": 2, "sample_rate": 1, "channel": 1,
            "codec": 1, "data_opt": 1, "send_rate": frame_ms}}});
    req[id_key] = json!(h.meeting_id());
    media.send(Message::text(req.to_string())).await?;
    let resp = recv_type(&mut media, 4).await?;
    anyhow::ensure!(resp["status_code"] == 0, "media handshake refused: {resp}");
    sig.send(Message::text(
        json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}).to_string(),
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
    while let Some(m) = media.next().await {
        let Ok(m) = m else { break };
        let Some(bytes) = text_of(&m) else {
            if matches!(m, Message::Close(_)) {
                break;
            }
            continue;
        };
        if bytes.starts_with(b"{\"msg_type\":14") {
            stamps.first();
            stamps.add(1);
        } else if let Some(a) = keepalive_answer(bytes) {
            media.send(a).await?;
        }
    }
    signaling.abort();
    Ok(())
}
