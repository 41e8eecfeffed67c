//! The accept loop and the life of one connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conns::{Busy, ConnState, Table};
use super::{AcceptBackoff, Close, ConnStats, MAX_HEADERS, Policy, TlsFiles, tls};

/// How long, once the listener stops, a connection that has not sent its first request yet
/// (or is still in its TLS handshake) has to send it. It is then answered and closed.
pub const FIRST_REQUEST_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// One listener: its name in logs and metrics, its policy, TLS and counters.
#[derive(Clone, Debug)]
pub struct Listener {
    /// `webhook` or `admin`: the `listener` field of log lines.
    pub name: &'static str,
    pub policy: Policy,
    /// Serve HTTPS with these PEM files (reloaded when they change); `None` is plain HTTP.
    pub tls: Option<TlsFiles>,
    /// The settings that name the TLS files, for messages (`server.tls`, `admin.tls`).
    pub tls_setting: &'static str,
    pub stats: Arc<ConnStats>,
}

impl Default for Listener {
    fn default() -> Self {
        Self {
            name: "http",
            policy: Policy::default(),
            tls: None,
            tls_setting: "server.tls",
            stats: Arc::default(),
        }
    }
}

/// Serves `handler` on `listener` under `cfg`'s policy until `shutdown` fires, then stops
/// accepting and lets in-flight requests finish. Fails at once when the TLS files do not
/// load. Each request carries its connection's [`ConnState`] in its extensions.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    cfg: Listener,
    handler: H,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = match &cfg.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(
            tls::server_config_for(files.clone(), cfg.tls_setting).map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    let ctx = Arc::new(Ctx {
        cfg,
        handler,
        tls,
        table: Mutex::default(),
        shutdown: shutdown.clone(),
    });
    let tracker = TaskTracker::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    bump(&ctx.cfg.stats.accept_errors);
                    let pause = backoff.failed(ctx.cfg.name, &e);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
            },
        };
        backoff.accepted(ctx.cfg.name);
        bump(&ctx.cfg.stats.accepted);
        let (id, state) = {
            let mut table = ctx.table.lock().unwrap_or_else(|p| p.into_inner());
            let admitted = table.admit(peer.ip(), &ctx.cfg.policy, &ctx.cfg.stats, ctx.cfg.name);
            set_open(&ctx.cfg.stats, table.len());
            admitted
        };
        let ctx = ctx.clone();
        tracker.spawn(async move {
            let reason = ctx.connection(stream, peer, state.clone()).await;
            let mut table = ctx.table.lock().unwrap_or_else(|p| p.into_inner());
            // An evicted connection was counted when it was evicted.
            if table.ended(id) {
                ctx.cfg.stats.count_close(ctx.cfg.name, reason);
            }
            set_open(&ctx.cfg.stats, table.len());
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

fn bump(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn set_open(stats: &ConnStats, n: usize) {
    stats
        .open
        .store(n as u64, std::sync::atomic::Ordering::Relaxed);
}

struct Ctx<H> {
    cfg: Listener,
    handler: H,
    tls: Option<tokio_rustls::TlsAcceptor>,
    table: Mutex<Table>,
    shutdown: CancellationToken,
}

impl<H, F, B> Ctx<H>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Serves one connection (after its TLS handshake) until it closes; why it closed.
    async fn connection(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        state: Arc<ConnState>,
    ) -> Close {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = &self.tls else {
            return self.http(stream, peer, state).await;
        };
        let hs = tokio::time::timeout(self.cfg.policy.header_timeout, acceptor.accept(stream));
        let res = tokio::select! {
            r = hs => r,
            () = state.evict.cancelled() => return Close::Evicted,
            // A handshake under way when the listener stops may finish and send its request.
            () = async {
                self.shutdown.cancelled().await;
                tokio::time::sleep(FIRST_REQUEST_GRACE).await;
            } => return Close::Shutdown,
        };
        match res {
            Ok(Ok(s)) => self.http(s, peer, state).await,
            Ok(Err(e)) => {
                tracing::debug!(listener = self.cfg.name, %peer, error = %e, "TLS handshake failed");
                Close::Tls
            }
            Err(_) => Close::Tls,
        }
    }

    /// Serves HTTP/1 on `io` until it ends, is evicted, ages out or the listener stops.
    async fn http<I>(self: &Arc<Self>, io: I, peer: SocketAddr, state: Arc<ConnState>) -> Close
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let policy = &self.cfg.policy;
        let ctx = self.clone();
        let conn_state = state.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            let busy = Busy::new(conn_state.clone());
            req.extensions_mut().insert(conn_state.clone());
            let answer = (ctx.handler)(req, peer);
            let stopping = ctx.shutdown.clone();
            async move {
                let mut resp = answer.await;
                if stopping.is_cancelled() {
                    // The listener has stopped: tell the client not to send another request here.
                    resp.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, Infallible>(resp.map(|body| Tracked { body, _busy: busy }))
            }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(policy.header_timeout)
            .max_buf_size(policy.max_header_bytes.max(8192))
            .max_headers(MAX_HEADERS)
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let age = async {
            match policy.max_connection_age {
                Some(a) => tokio::time::sleep(a).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(age);
        let (res, end) = tokio::select! {
            res = conn.as_mut() => (res, None),
            () = state.evict.cancelled() => return Close::Evicted,
            () = self.shutdown.cancelled() => {
                // A client that has just connected is about to send its request: closing
                // under it would fail that request, which the other process sharing the
                // listening socket (in a hand-off) never sees. It gets a moment to send it.
                let ended = if state.has_served() {
                    None
                } else {
                    let grace = FIRST_REQUEST_GRACE.min(policy.header_timeout);
                    tokio::select! {
                        res = conn.as_mut() => Some(res),
                        () = state.first_request() => None,
                        () = tokio::time::sleep(grace) => None,
                    }
                };
                match ended {
                    Some(res) => (res, Some(Close::Shutdown)),
                    None => {
                        conn.as_mut().graceful_shutdown();
                        (conn.await, Some(Close::Shutdown))
                    }
                }
            }
            () = &mut age => {
                conn.as_mut().graceful_shutdown();
                (conn.await, Some(Close::Age))
            }
        };
        if let Err(e) = &res {
            tracing::debug!(listener = self.cfg.name, %peer, error = %e, "connection ended with an error");
        }
        state
            .reason()
            .or(end)
            .unwrap_or_else(|| classify(res.err().as_ref()))
    }
}

/// Why hyper ended a connection.
fn classify(err: Option<&hyper::Error>) -> Close {
    match err {
        None => Close::Finished,
        Some(e) if e.is_timeout() => Close::HeaderTimeout,
        Some(e) if e.is_parse_too_large() => Close::HeaderTooLarge,
        Some(e) if e.is_parse() => Close::BadRequest,
        // The client went away between or in the middle of requests.
        Some(e) if e.is_incomplete_message() || e.is_closed() => Close::Finished,
        Some(_) => Close::Error,
    }
}

/// A response body that keeps its connection marked busy until it is sent or dropped.
struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
