//! A streaming speech-to-text WebSocket in the shape of Deepgram's live API.
//!
//! The client connects to `/v1/listen?encoding=linear16&sample_rate=16000&channels=1&model=...`
//! with `Authorization: Token <key>` (a wrong key is refused with 401 at the handshake, a
//! missing or unsupported encoding with 400), streams raw audio as binary messages and may
//! send the text messages `{"type":"KeepAlive"}`, `{"type":"Finalize"}` and
//! `{"type":"CloseStream"}`. The server answers with `Results` messages (`is_final`,
//! `speech_final`, `start`, `duration`, `channel.alternatives[0].transcript`), and after
//! `CloseStream` with the last results, a `Metadata` message and a close frame (1000). A
//! connection that sends nothing for [`IDLE`] is closed with 1011 and Deepgram's `NET-0001`
//! reason.
//!
//! What it "recognises": the fake is given the script a meeting speaks ([`Spoken`], in the
//! order the audio is sent) and turns the position of the audio it received into the text of
//! the utterance that was playing. An utterance is final once all of its audio arrived;
//! `Finalize` and `CloseStream` flush any utterance whose audio started. With the `tag` query
//! parameter (Deepgram's request label) a connection hears only the utterances of that
//! speaker, as when a client opens one connection per speaker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

/// A connection that sends nothing for this long is closed, as Deepgram does.
pub const IDLE: Duration = Duration::from_secs(10);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 256;
/// Results recorded for tests.
const MAX_RECORDED: usize = 100_000;

/// One utterance of the script, as the audio carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spoken {
    /// The speaker's id, as the `tag` query parameter names it.
    pub speaker: String,
    /// Milliseconds of audio the utterance takes in the stream.
    pub audio_ms: u64,
    pub text: String,
}

impl Spoken {
    /// The audio an utterance of `duration_ms` takes when sent in frames of `frame_ms` (the
    /// last frame is whole).
    pub fn frames_ms(duration_ms: u64, frame_ms: u64) -> u64 {
        duration_ms.div_ceil(frame_ms.max(1)) * frame_ms.max(1)
    }
}

/// A final result the fake sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    /// The connection's `tag`, if any.
    pub tag: Option<String>,
    pub transcript: String,
}

#[derive(Default)]
struct State {
    /// Results only when the client sends `Finalize` or `CloseStream`.
    hold: bool,
    connections: usize,
    open: usize,
    refused: usize,
    audio_bytes: u64,
    heard: Vec<Heard>,
}

/// A running fake; stops when dropped.
pub struct SttFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SttFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SttFake {
    /// Starts the fake on 127.0.0.1: it accepts `Authorization: Token <key>` and hears
    /// `script`.
    pub async fn start(script: Vec<Spoken>, key: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::new(Shared {
            script,
            key: key.to_owned(),
            state: state.clone(),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if shared.state.lock().open >= MAX_CONNECTIONS {
                    continue;
                }
                tokio::spawn(serve(shared.clone(), stream));
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The listen endpoint, as Deepgram's `wss://api.deepgram.com/v1/listen`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/listen", self.addr)
    }

    /// From now on, send results only when the client asks (`Finalize`, `CloseStream`), as
    /// a provider that finalises late does: a client that does not wait for the last
    /// results after `CloseStream` loses the meeting.
    pub fn hold_results(&self) {
        self.state.lock().hold = true;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().connections
    }

    /// Handshakes refused (wrong key, bad parameters).
    pub fn refused(&self) -> usize {
        self.state.lock().refused
    }

    /// Audio bytes received over all connections.
    pub fn audio_bytes(&self) -> u64 {
        self.state.lock().audio_bytes
    }

    /// The final results sent, in order.
    pub fn heard(&self) -> Vec<Heard> {
        self.state.lock().heard.clone()
    }
}

struct Shared {
    script: Vec<Spoken>,
    key: String,
    state: Arc<Mutex<State>>,
}

/// What a connection asked for in its query.
#[derive(Debug)]
struct Params {
    bytes_per_ms: f64,
    tag: Option<String>,
    model: String,
}

fn params(req: &Request, key: &str) -> Result<Params, (u16, String)> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(format!("Token {key}").as_str()) {
        return Err((401, "Invalid credentials.".into()));
    }
    if req.uri().path() != "/v1/listen" {
        return Err((404, format!("no such endpoint: {}", req.uri().path())));
    }
    let query: Vec<(&str, &str)> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let get = |k: &str| query.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    match get("encoding") {
        Some("linear16") => {}
        Some(other) => {
            return Err((
                400,
                format!("this fake takes encoding=linear16, not {other}"),
            ));
        }
        None => {
            return Err((
                400,
                "raw audio needs an encoding (encoding=linear16)".into(),
            ));
        }
    }
    let rate: u32 = get("sample_rate")
        .and_then(|r| r.parse().ok())
        .filter(|r| (8_000..=48_000).contains(r))
        .ok_or((
            400,
            "encoding=linear16 needs a sample_rate between 8000 and 48000".to_owned(),
        ))?;
    let channels: u32 = get("channels")
        .map_or(Some(1), |c| c.parse().ok())
        .filter(|c| (1..=2).contains(c))
        .ok_or((400, "channels must be 1 or 2".to_owned()))?;
    Ok(Params {
        bytes_per_ms: f64::from(rate * 2 * channels) / 1000.0,
        tag: get("tag").map(str::to_owned),
        model: get("model").unwrap_or("nova-3").to_owned(),
    })
}

// The handshake callback's error type is tokio-tungstenite's own `ErrorResponse`.
#[allow(clippy::result_large_err)]
async fn serve(shared: Arc<Shared>, stream: tokio::net::TcpStream) {
    let mut asked = None;
    let accept = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, res: Response| {
        match params(req, &shared.key) {
            Ok(p) => {
                asked = Some(p);
                Ok(res)
            }
            Err((status, why)) => {
                let mut e = ErrorResponse::new(Some(why));
                *e.status_mut() =
                    hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
                Err(e)
            }
        }
    });
    let Ok(ws) = accept.await else {
        shared.state.lock().refused += 1;
        return;
    };
    let Some(p) = asked else {
        return;
    };
    {
        let mut s = shared.state.lock();
        s.connections += 1;
        s.open += 1;
    }
    let _ = Listener::new(&shared, p).run(ws).await;
    shared.state.lock().open -= 1;
}

/// One connection's position in the script.
struct Listener<'a> {
    shared: &'a Shared,
    p: Params,
    /// The utterances this connection hears: (start ms, end ms, text).
    spans: Vec<(u64, u64, &'a str)>,
    /// The next utterance not yet sent as final.
    next: usize,
    audio_bytes: u64,
}

impl<'a> Listener<'a> {
    fn new(shared: &'a Shared, p: Params) -> Self {
        let mut at = 0;
        let spans = shared
            .script
            .iter()
            .filter(|u| p.tag.as_deref().is_none_or(|t| t == u.speaker))
            .map(|u| {
                let span = (at, at + u.audio_ms, u.text.as_str());
                at += u.audio_ms;
                span
            })
            .collect();
        Self {
            shared,
            p,
            spans,
            next: 0,
            audio_bytes: 0,
        }
    }

    fn heard_ms(&self) -> u64 {
        (self.audio_bytes as f64 / self.p.bytes_per_ms) as u64
    }

    /// Final results for every utterance whose audio has all arrived, or (on `flush`) whose
    /// audio has started.
    fn results(&mut self, flush: bool) -> Vec<Message> {
        let at = self.heard_ms();
        let mut out = Vec::new();
        while let Some(&(start, end, text)) = self.spans.get(self.next) {
            let done = at >= end || (flush && at > start);
            if !done {
                break;
            }
            self.next += 1;
            out.push(Message::text(
                self.result(start, end, text, flush).to_string(),
            ));
            let mut s = self.shared.state.lock();
            if s.heard.len() < MAX_RECORDED {
                s.heard.push(Heard {
                    tag: self.p.tag.clone(),
                    transcript: text.to_owned(),
                });
            }
        }
        out
    }

    fn result(&self, start: u64, end: u64, text: &str, from_finalize: bool) -> serde_json::Value {
        let secs = |ms: u64| ms as f64 / 1000.0;
        let words: Vec<&str> = text.split_whitespace().collect();
        let step = (end - start) as f64 / words.len().max(1) as f64;
        let words: Vec<_> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let w0 = start as f64 + step * i as f64;
                json!({"word": w.to_lowercase(), "start": w0 / 1000.0, "end": (w0 + step) / 1000.0,
                       "confidence": 0.99, "punctuated_word": w})
            })
            .collect();
        json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": secs(end - start),
            "start": secs(start),
            "is_final": true,
            "speech_final": true,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.99, "words": words}]},
            "metadata": {"request_id": "00000000-0000-4000-8000-000000000000",
                         "model_info": {"name": self.p.model, "version": "fake", "arch": "fake"},
                         "model_uuid": "00000000-0000-4000-8000-000000000001"}
        })
    }

    async fn run(
        mut self,
        ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    ) -> Result<(), tungstenite::Error> {
        let (mut tx, mut rx) = ws.split();
        loop {
            let got = match tokio::time::timeout(IDLE, rx.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(_) => return Ok(()),
                Err(_) => {
                    let reason = "NET-0001: Deepgram did not receive audio data or a text message within the timeout window.";
                    return tx.send(close(CloseCode::Error, reason)).await;
                }
            };
            let (replies, closing) = match got {
                Message::Binary(b) => {
                    self.audio_bytes += b.len() as u64;
                    let hold = {
                        let mut s = self.shared.state.lock();
                        s.audio_bytes += b.len() as u64;
                        s.hold
                    };
                    (
                        if hold {
                            Vec::new()
                        } else {
                            self.results(false)
                        },
                        false,
                    )
                }
                Message::Text(t) => match serde_json::from_str::<serde_json::Value>(&t)
                    .ok()
                    .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
                    .as_deref()
                {
                    Some("KeepAlive") => (Vec::new(), false),
                    Some("Finalize") => (self.results(true), false),
                    Some("CloseStream") => (self.results(true), true),
                    _ => {
                        let why =
                            "DATA-0000: the text message is not KeepAlive, Finalize or CloseStream";
                        return tx.send(close(CloseCode::Policy, why)).await;
                    }
                },
                Message::Close(_) => return Ok(()),
                _ => (Vec::new(), false),
            };
            for r in replies {
                tx.send(r).await?;
            }
            if closing {
                let meta = json!({"type": "Metadata", "transaction_key": "deprecated",
                    "request_id": "00000000-0000-4000-8000-000000000000",
                    "created": "2026-01-01T00:00:00.000Z",
                    "duration": self.heard_ms() as f64 / 1000.0, "channels": 1});
                tx.send(Message::text(meta.to_string())).await?;
                return tx.send(close(CloseCode::Normal, "")).await;
            }
        }
    }
}

fn close(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(ms: u64) -> Message {
        Message::binary(vec![0u8; (ms * 32) as usize])
    }

    async fn connect(
        url: &str,
        key: &str,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tungstenite::Error,
    > {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("{url}?encoding=linear16&sample_rate=16000&channels=1")
            .into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Token {key}").parse().unwrap());
        Ok(tokio_tungstenite::connect_async(req).await?.0)
    }

    fn transcript(m: &Message) -> String {
        let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        v["channel"]["alternatives"][0]["transcript"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn audio_position_becomes_the_script_text_and_close_stream_flushes() {
        let script = vec![
            Spoken {
                speaker: "1".into(),
                audio_ms: 100,
                text: "hello there".into(),
            },
            Spoken {
                speaker: "2".into(),
                audio_ms: 100,
                text: "general greeting".into(),
            },
        ];
        let fake = SttFake::start(script, "k").await.unwrap();
        assert!(connect(&fake.url(), "wrong").await.is_err());
        let mut ws = connect(&fake.url(), "k").await.unwrap();
        ws.send(pcm(60)).await.unwrap();
        ws.send(pcm(60)).await.unwrap();
        let first = ws.next().await.unwrap().unwrap();
        assert_eq!(transcript(&first), "hello there");
        ws.send(pcm(20)).await.unwrap();
        ws.send(Message::text(r#"{"type":"CloseStream"}"#))
            .await
            .unwrap();
        let second = ws.next().await.unwrap().unwrap();
        assert_eq!(transcript(&second), "general greeting");
        let meta = ws.next().await.unwrap().unwrap();
        assert!(meta.to_text().unwrap().contains("\"Metadata\""));
        assert!(matches!(ws.next().await, Some(Ok(Message::Close(_)))));
        assert_eq!(fake.refused(), 1);
        assert_eq!(fake.heard().len(), 2);
    }
}
