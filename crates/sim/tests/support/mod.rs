//! Test harness: a raw WebSocket client that speaks RTMS by hand (no host code), a client
//! session runner for unified and split mode, and a tiny hyper webhook receiver.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rtms_sim::{MeetingHandle, SimConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;

pub const WAIT: Duration = Duration::from_secs(5);

/// A config with short timers for tests.
pub fn fast_config(tls: bool) -> SimConfig {
    SimConfig {
        tls,
        keepalive_interval: Duration::from_millis(100),
        signaling_grace: Duration::from_secs(3),
        media_grace: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(8),
        webhook_retry_delay: Duration::from_millis(100),
        ..SimConfig::default()
    }
}

/// A raw RTMS WebSocket client. A background task owns the socket: it answers keep-alive
/// requests at once (echoing timestamp and sequence) unless told not to, records them, and
/// queues every other message for [`Raw::recv`].
pub struct Raw {
    out: mpsc::UnboundedSender<Message>,
    inbox: mpsc::UnboundedReceiver<Value>,
    answer: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Value>>>,
}

fn connector(ca: Option<&str>) -> Option<Connector> {
    let ca = ca?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots
            .add(c.expect("CA PEM parses"))
            .expect("CA is accepted");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(Connector::Rustls(Arc::new(cfg)))
}

impl Raw {
    pub async fn connect(url: &str, ca: Option<&str>) -> anyhow::Result<Raw> {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector(ca))
                .await?;
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let answer = Arc::new(AtomicBool::new(true));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, k) = (answer.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = out_rx.recv() => match m {
                        Some(Message::Close(f)) => {
                            let _ = ws.close(f).await;
                            return;
                        }
                        Some(m) => {
                            if ws.send(m).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    },
                    m = ws.next() => {
                        let bytes = match m {
                            Some(Ok(Message::Text(t))) => Bytes::from(t),
                            Some(Ok(Message::Binary(b))) => b,
                            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                            Some(Ok(_)) => continue,
                        };
                        let v: Value = serde_json::from_slice(&bytes).expect("server sends JSON");
                        if v["msg_type"] == 12 {
                            assert!(v["timestamp"].is_u64() && v["sequence"].is_u64(), "{v}");
                            k.lock().unwrap().push(v.clone());
                            if a.load(Ordering::SeqCst) {
                                let ans = json!({"msg_type": 13, "timestamp": v["timestamp"],
                                    "sequence": v["sequence"]});
                                let _ = ws.send(Message::Text(ans.to_string().into())).await;
                            }
                            continue;
                        }
                        if inbox_tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Raw {
            out,
            inbox,
            answer,
            seen,
        })
    }

    /// Whether keep-alive requests are answered (they are by default).
    pub fn answer_keepalives(&self, on: bool) {
        self.answer.store(on, Ordering::SeqCst);
    }

    /// Keep-alive requests received so far.
    pub fn keepalives(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits for the next keep-alive request not taken yet.
    pub async fn take_keepalive(&self) -> Value {
        let t = std::time::Instant::now();
        loop {
            {
                let mut k = self.seen.lock().unwrap();
                if !k.is_empty() {
                    return k.remove(0);
                }
            }
            assert!(t.elapsed() < WAIT, "no keep-alive request arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.out
            .send(Message::Text(v.to_string().into()))
            .expect("socket open");
    }

    pub async fn send_binary(&mut self, v: Value) {
        self.out
            .send(Message::Binary(Bytes::from(v.to_string())))
            .expect("socket open");
    }

    /// The next message that is not a keep-alive request; `None` when the socket closed
    /// (or nothing arrived within `WAIT`).
    pub async fn recv(&mut self) -> Option<Value> {
        tokio::time::timeout(WAIT, self.inbox.recv()).await.ok()?
    }

    /// The next message that is not a keep-alive request, waiting as long as it takes;
    /// `None` once the socket closed.
    pub async fn recv_or_closed(&mut self) -> Option<Value> {
        self.inbox.recv().await
    }

    /// Skips messages until one of `msg_type` arrives.
    pub async fn recv_type(&mut self, t: u64) -> Option<Value> {
        loop {
            let v = self.recv().await?;
            if v["msg_type"] == t {
                return Some(v);
            }
        }
    }

    /// Reads until the server closes; returns the messages seen.
    pub async fn drain(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = self.recv().await {
            out.push(v);
        }
        out
    }

    pub async fn close(self) {
        let _ = self.out.send(Message::Close(None));
    }
}

pub fn sig_req(h: &MeetingHandle) -> Value {
    let mut v = json!({"msg_type": 1, "protocol_version": 1, "sequence": 7,
        "rtms_stream_id": h.stream_id(), "signature": h.expected_signature()});
    v[h.product().id_key()] = json!(h.meeting_id());
    v
}

pub fn media_req(h: &MeetingHandle, mask: u32) -> Value {
    let mut v = json!({"msg_type": 3, "protocol_version": 1, "sequence": 0,
        "rtms_stream_id": h.stream_id(), "signature": h.expected_signature(),
        "media_type": mask, "payload_encryption": false,
        "media_params": {"audio": {"content_type": 2, "sample_rate": 1, "channel": 1, "codec": 1,
            "data_opt": 1, "send_rate": 20},
            "video": {"content_type": 3, "codec": 7, "resolution": 2, "data_opt": 3, "fps": 25},
            "deskshare": {"content_type": 3, "codec": 5, "resolution": 2, "fps": 1},
            "transcript": {"content_type": 5, "src_language": 9, "enable_lid": false}}});
    v[h.product().id_key()] = json!(h.meeting_id());
    v
}

/// Signaling handshake; returns the socket and msg 2.
pub async fn signal(h: &MeetingHandle, url: &str, ca: Option<&str>) -> (Raw, Value) {
    let mut s = Raw::connect(url, ca).await.expect("signaling connects");
    s.send(sig_req(h)).await;
    let resp = s.recv_type(2).await.expect("msg 2");
    (s, resp)
}

/// Media handshake on `url` with `mask`; returns the socket and msg 4.
pub async fn media(h: &MeetingHandle, url: &str, mask: u32, ca: Option<&str>) -> (Raw, Value) {
    let mut m = Raw::connect(url, ca).await.expect("media connects");
    m.send(media_req(h, mask)).await;
    let resp = m.recv_type(4).await.expect("msg 4");
    (m, resp)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Unified,
    /// One socket per kind, one CLIENT_READY_ACK per socket.
    Split,
}

/// What a client session received.
#[derive(Debug, Default)]
pub struct Received {
    pub media: Vec<Value>,
    pub signaling: Vec<Value>,
}

impl Received {
    pub fn count(&self, msg_type: u64) -> usize {
        self.media
            .iter()
            .filter(|m| m["msg_type"] == msg_type)
            .count()
    }
    /// (user_name, text, start_time, end_time) of every transcript message.
    pub fn transcripts(&self) -> Vec<(String, String, u64, u64)> {
        self.media
            .iter()
            .filter(|m| m["msg_type"] == 17)
            .map(|m| {
                let c = &m["content"];
                (
                    c["user_name"].as_str().unwrap().to_owned(),
                    c["data"].as_str().unwrap().to_owned(),
                    c["start_time"].as_u64().unwrap(),
                    c["end_time"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

/// A whole client session until the server ends the stream.
pub async fn run_session(
    h: &MeetingHandle,
    ca: Option<&str>,
    mode: Mode,
    kinds: &[&str],
) -> Received {
    // Events are opt-in: subscribe to every meeting event type.
    let all: Vec<u32> = (1..=9).collect();
    run_session_with_events(h, ca, mode, kinds, &all).await
}

/// [`run_session`], subscribing to `events` only.
pub async fn run_session_with_events(
    h: &MeetingHandle,
    ca: Option<&str>,
    mode: Mode,
    kinds: &[&str],
    events: &[u32],
) -> Received {
    let (mut sig, resp) = signal(h, &h.signaling_url(), ca).await;
    assert_eq!(resp["status_code"], 0, "{resp}");
    let events: Vec<Value> = events
        .iter()
        .map(|t| json!({"event_type": t, "subscribe": true}))
        .collect();
    sig.send(json!({"msg_type": 5, "events": events})).await;
    let urls = resp["media_server"]["server_urls"].clone();
    for k in ["audio", "video", "deskshare", "transcript", "chat", "all"] {
        assert!(urls[k].is_string(), "msg 2 lacks {k}: {resp}");
    }
    let bit = |k: &str| match k {
        "audio" => 1,
        "video" => 2,
        "deskshare" => 4,
        "transcript" => 8,
        _ => 16,
    };
    let mut sockets = Vec::new();
    match mode {
        Mode::Unified => {
            let mask = kinds.iter().map(|k| bit(k)).sum::<u32>();
            let (m, r) = media(h, urls["all"].as_str().unwrap(), mask, ca).await;
            check_msg4(&r);
            sockets.push(m);
            sig.send(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
                .await;
        }
        Mode::Split => {
            for k in kinds {
                let (m, r) = media(h, urls[*k].as_str().unwrap(), bit(k), ca).await;
                check_msg4(&r);
                sockets.push(m);
                // RTMSManager style: one ready ack per media socket, sent as binary.
                sig.send_binary(json!({"msg_type": 7, "rtms_stream_id": h.stream_id()}))
                    .await;
            }
        }
    }
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut s| tokio::spawn(async move { s.drain().await }))
        .collect();
    let signaling = sig.drain().await;
    let mut media = Vec::new();
    for t in tasks {
        media.extend(t.await.unwrap());
    }
    Received { media, signaling }
}

pub fn check_msg4(r: &Value) {
    assert_eq!(r["status_code"], 0, "{r}");
    assert_eq!(r["payload_encrypted"], false, "{r}");
    for k in ["audio", "video", "deskshare", "transcript", "chat"] {
        assert!(
            r["media_params"][k].is_object(),
            "msg 4 lacks media_params.{k}: {r}"
        );
    }
    assert_eq!(r["media_params"]["audio"]["send_rate"], 20);
}

/// One webhook as received.
#[derive(Debug, Clone)]
pub struct Hook {
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    pub body: Bytes,
}

impl Hook {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on 127.0.0.1:0 that answers url validation with `secret` (or a
/// wrong token when `answer_wrong`) and 200 to everything else; `fail_first` requests get
/// HTTP 500 first.
pub async fn receiver(
    secret: &str,
    answer_wrong: bool,
    fail_first: usize,
) -> (String, mpsc::UnboundedReceiver<Hook>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let secret = secret.to_owned();
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(fail_first));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (tx, secret, failures) = (tx.clone(), secret.clone(), failures.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (tx, secret, failures) = (tx.clone(), secret.clone(), failures.clone());
                    async move {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let (timestamp, signature) =
                            (h("x-zm-request-timestamp"), h("x-zm-signature"));
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let _ = tx.send(Hook {
                            timestamp,
                            signature,
                            body: body.clone(),
                        });
                        let out = if v["event"] == "endpoint.url_validation" {
                            let plain = v["payload"]["plainToken"].as_str().unwrap_or("");
                            let key = if answer_wrong {
                                "wrong"
                            } else {
                                secret.as_str()
                            };
                            let enc = rtms_proto::sign::url_validation_token(key, plain);
                            json!({"plainToken": plain, "encryptedToken": enc}).to_string()
                        } else {
                            "{}".to_string()
                        };
                        let status = if failures
                            .fetch_update(
                                std::sync::atomic::Ordering::SeqCst,
                                std::sync::atomic::Ordering::SeqCst,
                                |n| n.checked_sub(1),
                            )
                            .is_ok()
                        {
                            500
                        } else {
                            200
                        };
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(out)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (url, rx)
}

pub async fn next_hook(rx: &mut mpsc::UnboundedReceiver<Hook>) -> Hook {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a webhook arrives in time")
        .expect("receiver alive")
}

/// Polls `cond` until it holds (panics after `WAIT`).
pub async fn eventually(cond: impl Fn() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        assert!(t.elapsed() < WAIT, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
