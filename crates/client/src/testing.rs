//! Test helpers: an in-memory [`Transport`](crate::Transport) and a [`Connector`] whose
//! "servers" are test tasks, so session logic runs without sockets (and with paused time).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::transport::Connector;

/// The client's end of an in-memory socket.
pub struct ChanConn {
    tx: Option<mpsc::UnboundedSender<Message>>,
    rx: mpsc::UnboundedReceiver<Result<Message, WsError>>,
}

/// The server's end: what the client sent, and a way to send to it.
pub struct ServerEnd {
    pub url: String,
    pub rx: mpsc::UnboundedReceiver<Message>,
    pub tx: mpsc::UnboundedSender<Result<Message, WsError>>,
}

impl ServerEnd {
    /// The next JSON message the client sent (skipping pings), or `None` when it hung up.
    pub async fn recv_json(&mut self) -> Option<serde_json::Value> {
        loop {
            match self.rx.recv().await? {
                Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
                Message::Binary(b) => return serde_json::from_slice(&b).ok(),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    pub fn send_json(&self, v: serde_json::Value) {
        let _ = self.tx.send(Ok(Message::text(v.to_string())));
    }

    pub fn send_binary_json(&self, v: serde_json::Value) {
        let pretty = serde_json::to_string_pretty(&v)
            .unwrap_or_default()
            .replace("  ", "\t");
        let _ = self.tx.send(Ok(Message::binary(pretty.into_bytes())));
    }
}

impl Stream for ChanConn {
    type Item = Result<Message, WsError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Sink<Message> for ChanConn {
    type Error = WsError;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        match &self.tx {
            Some(tx) => tx.send(item).map_err(|_| WsError::ConnectionClosed),
            None => Err(WsError::ConnectionClosed),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Message::Close(None));
        }
        Poll::Ready(Ok(()))
    }
}

/// A connector that hands every new connection's server end to the test, and can refuse
/// URLs.
#[derive(Clone)]
pub struct ChanConnector {
    accepted: mpsc::UnboundedSender<ServerEnd>,
    refuse: Arc<Mutex<HashMap<String, bool>>>,
    attempts: Arc<Mutex<Vec<(String, tokio::time::Instant)>>>,
}

impl ChanConnector {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<ServerEnd>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                accepted: tx,
                refuse: Arc::default(),
                attempts: Arc::default(),
            },
            rx,
        )
    }

    /// Makes connections to `url` fail (true) or succeed (false).
    pub fn refuse(&self, url: &str, refuse: bool) {
        self.refuse.lock().unwrap().insert(url.to_owned(), refuse);
    }

    /// When each connection to `url` was attempted (refused ones included).
    pub fn attempts(&self, url: &str) -> Vec<tokio::time::Instant> {
        let attempts = self.attempts.lock().unwrap();
        attempts
            .iter()
            .filter(|(u, _)| u == url)
            .map(|(_, t)| *t)
            .collect()
    }
}

impl Connector for ChanConnector {
    type Conn = ChanConn;
    async fn connect(&self, url: &str) -> Result<ChanConn, WsError> {
        self.attempts
            .lock()
            .unwrap()
            .push((url.to_owned(), tokio::time::Instant::now()));
        if self
            .refuse
            .lock()
            .unwrap()
            .get(url)
            .copied()
            .unwrap_or(false)
        {
            return Err(WsError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            )));
        }
        let (c2s_tx, c2s_rx) = mpsc::unbounded_channel();
        let (s2c_tx, s2c_rx) = mpsc::unbounded_channel();
        let _ = self.accepted.send(ServerEnd {
            url: url.to_owned(),
            rx: c2s_rx,
            tx: s2c_tx,
        });
        Ok(ChanConn {
            tx: Some(c2s_tx),
            rx: s2c_rx,
        })
    }
}
