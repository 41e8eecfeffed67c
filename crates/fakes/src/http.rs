//! The small HTTP/1.1 server the request-response fakes share.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The largest request body a fake reads.
pub const MAX_BODY: usize = 4 << 20;

/// A request as a fake sees it: method, path with query, headers, body.
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A reply: status, headers (the content type among them) and body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into(),
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }
}

/// Serves `handle` on a new listener on 127.0.0.1 (port 0) until the returned task is
/// aborted.
pub async fn serve<F, Fut>(handle: F) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let handle = Arc::new(handle);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(answer(req, &*handle).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

async fn answer<F, Fut>(req: Request<Incoming>, handle: &F) -> Response<Full<Bytes>>
where
    F: Fn(Req) -> Fut,
    Fut: Future<Output = Reply>,
{
    let (parts, body) = req.into_parts();
    let reply = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => {
            handle(Req {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map_or("/".to_owned(), |p| p.as_str().to_owned()),
                headers: parts.headers,
                body: b.to_bytes(),
            })
            .await
        }
        Err(_) => Reply::text(413, "request body too large"),
    };
    let mut res = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (n, v) in reply.headers {
        res = res.header(n, v);
    }
    res.body(Full::new(reply.body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// A request-response fake: its address and the state its handler keeps; stops when dropped.
pub struct Served<S> {
    pub addr: SocketAddr,
    pub state: Arc<parking_lot::Mutex<S>>,
    task: tokio::task::JoinHandle<()>,
}

impl<S> Drop for Served<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: Send + 'static> Served<S> {
    /// Serves `handle` on 127.0.0.1 with `state`, locked for each request.
    pub async fn start(
        state: S,
        handle: fn(&parking_lot::Mutex<S>, Req) -> Reply,
    ) -> std::io::Result<Self> {
        let state = Arc::new(parking_lot::Mutex::new(state));
        let s = state.clone();
        let (addr, task) = serve(move |req| {
            let s = s.clone();
            async move { handle(&s, req) }
        })
        .await?;
        Ok(Self { addr, state, task })
    }
}
