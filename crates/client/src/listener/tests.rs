//! The shared listener over real sockets on 127.0.0.1: the connection policy and the
//! counters of closed connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;

struct Running {
    addr: SocketAddr,
    stats: Arc<ConnStats>,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves `/echo` (reads the body within the policy, answers its length) and anything else
/// with 200.
async fn start(policy: Policy) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ConnStats::default());
    let stop = CancellationToken::new();
    let cfg = Listener {
        name: "test",
        policy: policy.clone(),
        stats: stats.clone(),
        ..Listener::default()
    };
    let handler = move |req: Request<Incoming>, _peer| {
        let policy = policy.clone();
        async move {
            if req.uri().path() == "/echo" {
                return match read_body(req, &policy).await {
                    Ok(b) => reply::text(StatusCode::OK, format!("{}", b.len())),
                    Err((r, _)) => r,
                };
            }
            reply::text(StatusCode::OK, "ok\n")
        }
    };
    tokio::spawn(serve(listener, cfg, handler, stop.clone()));
    Running { addr, stats, stop }
}

/// Sends `raw` on a new connection and reads until the server closes it (at most 10 s).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(raw).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&buf).into_owned()
}

async fn counted(stats: &ConnStats, reason: Close, n: u64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while stats.closed(reason) < n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} closes counted as {}", reason.as_str()));
}

#[tokio::test]
async fn a_single_huge_header_gets_431_and_is_counted() {
    let s = start(Policy::default()).await;
    let mut raw = b"GET / HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 100 * 1024));
    raw.extend(b"\r\n\r\n");
    let answer = exchange(s.addr, &raw).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    counted(&s.stats, Close::HeaderTooLarge, 1).await;
    // Too many fields are refused the same way.
    let mut raw = b"GET / HTTP/1.1\r\nhost: x\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        raw.extend(format!("x-{i}: 1\r\n").bytes());
    }
    raw.extend(b"\r\n");
    let answer = exchange(s.addr, &raw).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    counted(&s.stats, Close::HeaderTooLarge, 2).await;
}

#[tokio::test]
async fn a_slowloris_head_is_cut_at_the_deadline_and_counted() {
    let s = start(Policy {
        header_timeout: Duration::from_millis(300),
        ..Policy::default()
    })
    .await;
    let started = std::time::Instant::now();
    let answer = exchange(s.addr, b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: a").await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(!answer.contains(" 200 "), "{answer}");
    counted(&s.stats, Close::HeaderTimeout, 1).await;
}

#[tokio::test]
async fn a_slow_body_gets_408_closes_the_connection_and_is_counted() {
    let s = start(Policy {
        body_timeout: Duration::from_millis(300),
        ..Policy::default()
    })
    .await;
    let answer = exchange(
        s.addr,
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    counted(&s.stats, Close::BodyTimeout, 1).await;
    // A body within the limits is read.
    let answer = exchange(
        s.addr,
        b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 3\r\n\r\nabc",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("3"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_peer_at_its_limit_replaces_its_own_oldest_idle_connection() {
    let s = start(Policy {
        max_per_peer: 3,
        ..Policy::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // The two oldest were closed to make room, the newest three stay.
    counted(&s.stats, Close::PerPeer, 2).await;
    let mut buf = [0u8; 1];
    for old in &mut idle[..2] {
        let n = tokio::time::timeout(Duration::from_secs(10), old.read(&mut buf))
            .await
            .expect("closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    assert_eq!(s.stats.open.load(std::sync::atomic::Ordering::Relaxed), 3);
    // A request from the same address still gets in.
    let answer = exchange(
        s.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(s.stats.closed(Close::Evicted), 0);
}

#[tokio::test]
async fn past_the_cap_the_oldest_idle_connection_goes_not_a_busy_one() {
    let s = start(Policy {
        max_connections: 2,
        body_timeout: Duration::from_secs(30),
        ..Policy::default()
    })
    .await;
    // The oldest connection is busy: its request's body is still arriving.
    let mut busy = TcpStream::connect(s.addr).await.unwrap();
    busy.write_all(
        b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n\r\na",
    )
    .await
    .unwrap();
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    while s.stats.accepted.load(std::sync::atomic::Ordering::Relaxed) < 2 {
        tokio::task::yield_now().await;
    }
    let answer = exchange(
        s.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    counted(&s.stats, Close::Evicted, 1).await;
    let mut buf = [0u8; 1];
    assert_eq!(
        idle.read(&mut buf).await.unwrap_or(0),
        0,
        "the idle one went"
    );
    // The busy one is still served.
    busy.write_all(b"b").await.unwrap();
    let mut answer = Vec::new();
    busy.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("2"),
        "{answer}"
    );
}

async fn accepted(stats: &ConnStats, n: u64) {
    while stats.accepted.load(std::sync::atomic::Ordering::Relaxed) < n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_request_sent_just_after_the_listener_stops_is_answered_not_cut() {
    // The race of a hand-off: the client connected (and the listener accepted) before the stop,
    // its request arrives after it.
    let s = start(Policy::default()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    accepted(&s.stats, 1).await;
    s.stop.cancel();
    c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "the answer says the connection closes: {answer}"
    );
    counted(&s.stats, Close::Shutdown, 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_sends_is_closed_after_the_grace_once_the_listener_stops() {
    let s = start(Policy::default()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    accepted(&s.stats, 1).await;
    let stopped = tokio::time::Instant::now();
    s.stop.cancel();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).await.unwrap();
    assert!(buf.is_empty(), "nothing was asked, nothing answered");
    assert!(
        stopped.elapsed() >= FIRST_REQUEST_GRACE,
        "{:?}",
        stopped.elapsed()
    );
    counted(&s.stats, Close::Shutdown, 1).await;
}
