//! Plugins' outbound WebSockets: the `ws_echo` fixture opens a socket through the
//! `websocket` interface to a tokio-tungstenite server on 127.0.0.1, behind `[plugin.net]`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};

use rtms_host::sandbox::bindings::{Frame, MediaKind, Product, SessionInfo};
use rtms_host::sandbox::net::{ClientSettings, NetEvent, NetGate, Reason};
use rtms_host::sandbox::store::{InstanceCtx, Rates};
use rtms_host::sandbox::{Instance, InstanceSpec};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::util::{Recorder, component, runtime};

impl Recorder {
    fn said(&self, kind: &str) -> Vec<String> {
        let o = self.outputs.lock();
        o.iter()
            .filter(|o| o.kind == kind)
            .map(|o| o.message.clone())
            .collect()
    }
}

/// What the test server does with a connection.
#[derive(Clone, Copy)]
enum Peer {
    /// Sends every message back.
    Echo,
    /// Sends `n` messages at once, then echoes.
    Flood(usize),
}

/// A WebSocket server on 127.0.0.1; reports each connection's end (`close` when the client
/// sent a close frame) on the channel.
async fn server(peer: Peer) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                if let Peer::Flood(n) = peer {
                    for i in 0..n {
                        ws.send(Message::text(format!("flood {i}"))).await.unwrap();
                    }
                }
                let end = loop {
                    match ws.next().await {
                        Some(Ok(Message::Close(_))) => break "close",
                        Some(Ok(m @ Message::Text(_))) => {
                            if ws.send(m).await.is_err() {
                                break "error";
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break "eof",
                    }
                };
                let _ = tx.send(end.to_owned());
            });
        }
    });
    (port, rx)
}

fn transcript(seq: u64, text: &str) -> Frame {
    Frame {
        kind: MediaKind::Transcript,
        seq,
        timestamp_ms: seq,
        user_id: "1".into(),
        user_name: "a".into(),
        payload: vec![],
        text: Some(text.into()),
        transcript: None,
        event_type: None,
    }
}

/// An instance of `ws_echo` opening `url` under `allow`, started.
async fn echo_instance(
    allow: &[&str],
    config: &[(&str, &str)],
) -> (Instance, Arc<Recorder>, Arc<InstanceCtx>) {
    let rt = runtime();
    let code = rt
        .load(&component("ws_echo"))
        .await
        .expect("ws_echo component");
    let gate = NetGate::new(
        "echo".into(),
        crate::util::net_grant(allow),
        ClientSettings::default(),
    )
    .expect("gate");
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let spec = InstanceSpec {
        memory_bytes: 64 << 20,
        call_timeout: Duration::from_secs(30),
        grants: vec![],
        config: config.clone(),
        net: Some(Arc::new(gate)),
        caps: Default::default(),
        resources: Default::default(),
    };
    let rec = Arc::new(Recorder::default());
    let ctx = Arc::new(InstanceCtx::new(
        "echo".into(),
        1,
        "stream".into(),
        "meeting".into(),
        Rates::default(),
        rec.clone(),
    ));
    let mut inst = Instance::new(&rt, code, &spec, ctx.clone())
        .await
        .expect("instance");
    inst.init(&config).await.expect("init");
    let info = SessionInfo {
        session: 1,
        product: Product::Meeting,
        meeting_id: "m".into(),
        stream_id: "s".into(),
        operator_id: None,
        started_at_ms: 0,
        resumed: false,
        audio: None,
    };
    inst.session_start(&info).await.expect("start");
    (inst, rec, ctx)
}

/// Delivers what the sockets receive until `done` holds.
async fn pump(inst: &mut Instance, ctx: &InstanceCtx, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            ctx.ws.wait().await;
            let mut errors = 0;
            inst.ws_deliver(&mut errors).await.expect("no trap");
            assert_eq!(errors, 0);
        }
    })
    .await
    .expect("the awaited WebSocket messages never came");
}

#[tokio::test]
async fn echoes_arrive_in_order_and_the_socket_is_closed_when_the_instance_goes() {
    let (port, mut ends) = server(Peer::Echo).await;
    let url = format!("ws://127.0.0.1:{port}/echo");
    let allow = format!("ws://127.0.0.1:{port}/echo");
    let (mut inst, rec, ctx) = echo_instance(&[&allow], &[("url", &url)]).await;
    let words: Vec<String> = (0..50).map(|i| format!("word {i}")).collect();
    for (i, chunk) in words.chunks(10).enumerate() {
        let frames: Vec<Frame> = chunk
            .iter()
            .enumerate()
            .map(|(j, w)| transcript((i * 10 + j) as u64, w))
            .collect();
        inst.frames(1, &frames).await.expect("frames");
    }
    pump(&mut inst, &ctx, || rec.said("echo").len() >= 50).await;
    assert_eq!(rec.said("echo"), words);
    assert_eq!(rec.said("ws"), ["opened"]);
    let started = rec
        .events
        .lock()
        .iter()
        .filter(|e| **e == NetEvent::Started)
        .count();
    assert_eq!(started, 1);
    drop(inst);
    let end = tokio::time::timeout(Duration::from_secs(5), ends.recv())
        .await
        .expect("the server never saw the end");
    assert_eq!(
        end.as_deref(),
        Some("close"),
        "the host sends a close frame when the instance goes"
    );
}

#[tokio::test]
async fn an_unlisted_url_is_refused_with_an_error_the_guest_sees() {
    let (port, _ends) = server(Peer::Echo).await;
    let url = format!("ws://127.0.0.1:{port}/other");
    let allow = format!("ws://127.0.0.1:{port}/echo");
    let (_inst, rec, _ctx) = echo_instance(&[&allow], &[("url", &url)]).await;
    let said = rec.said("ws");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].starts_with("open-err WsError::Denied"), "{said:?}");
    assert!(said[0].contains("[plugin.net] http"), "{said:?}");
    assert!(
        said[0].contains(&format!("ws://127.0.0.1:{port}")),
        "{said:?}"
    );
    assert_eq!(rec.stopped(Reason::IpLiteral), 1);
    // An http:// pattern for the same place does not allow a WebSocket.
    let http = format!("http://127.0.0.1:{port}/other");
    let (_inst, rec, _ctx) = echo_instance(&[&http], &[("url", &url)]).await;
    assert!(rec.said("ws")[0].starts_with("open-err WsError::Denied"));
}

#[tokio::test]
async fn a_flood_drops_the_oldest_messages_and_counts_them() {
    let (port, _ends) = server(Peer::Flood(2000)).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let allow = format!("ws://127.0.0.1:{port}");
    let (mut inst, rec, ctx) =
        echo_instance(&[&allow], &[("url", &url), ("buffer_bytes", "1000")]).await;
    // The plugin takes nothing until the flood is in: the buffer keeps the newest.
    let rec2 = rec.clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while rec2.stopped(Reason::BufferFull) < 1900 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the flood was not counted");
    pump(&mut inst, &ctx, || {
        rec.said("echo").last().is_some_and(|m| m == "flood 1999")
    })
    .await;
    let echoes = rec.said("echo");
    assert!(
        echoes.len() < 200,
        "the buffer is bounded: {}",
        echoes.len()
    );
    assert_eq!(
        echoes.len() + rec.stopped(Reason::BufferFull),
        2000,
        "every message delivered or counted"
    );
}
