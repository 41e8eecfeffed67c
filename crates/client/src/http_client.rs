//! The one builder of outgoing HTTP clients: Zoom's REST API and OAuth, the HTTP sink, the
//! command-line tools that talk to a running host, and so the event WebSocket's token.
//!
//! Every client it builds:
//! - reaches its destination as [`ClientSettings::proxy`] says (`rtms.proxy`): through the
//!   same CONNECT tunnel as the Zoom WebSockets ([`proxy_tunnel`]) when the proxy takes the
//!   destination, else directly;
//! - trusts the system roots plus [`ClientSettings::extra_ca_file`] over rustls (TLS 1.3 and
//!   1.2, the `ring` provider; see [`tls_config`](crate::tls_config)), and speaks plain
//!   `http://` too;
//! - bounds the connection (TCP, or the tunnel) by a connect timeout, the wait for the
//!   response head by a request timeout, and reading a body ([`HttpClient::body`]) by the
//!   request timeout again and a size.
//!
//! Errors name the destination and the cause (hyper's own text is only "client error
//! (Connect)").

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};
use hyper::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::transport::{ClientSettings, TlsError, proxy_tunnel};

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{authority} did not answer within {} ms", after.as_millis())]
    Timeout { authority: String, after: Duration },
    #[error("cannot reach {authority}: {why}")]
    Unreachable { authority: String, why: String },
    #[error("the answer of {authority} broke off: {why}")]
    BrokenBody { authority: String, why: String },
    #[error("the answer of {authority} is larger than {max} bytes")]
    TooLarge { authority: String, max: usize },
}

/// Settings of an [`HttpClient`] to build.
#[derive(Clone, Debug)]
pub struct HttpClientBuilder {
    settings: ClientSettings,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
}

/// An outgoing HTTP/1 client (see the module's doc). Cheap to clone; connections are pooled.
pub struct HttpClient<B> {
    client: Client<HttpsConnector<ProxyConnector>, B>,
    request_timeout: Option<Duration>,
}

impl<B> Clone for HttpClient<B> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            request_timeout: self.request_timeout,
        }
    }
}

impl HttpClient<()> {
    /// A builder for clients whose connections follow `settings`.
    pub fn builder(settings: &ClientSettings) -> HttpClientBuilder {
        HttpClientBuilder {
            settings: settings.clone(),
            connect_timeout: None,
            request_timeout: None,
        }
    }
}

impl HttpClientBuilder {
    /// The longest wait for a connection (or a proxy's tunnel); unbounded when not set.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = Some(d);
        self
    }

    /// The longest wait for a response's head, and again for reading its body; unbounded
    /// when not set (for a caller whose peer bounds the wait itself).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = Some(d);
        self
    }

    /// The client, trusting what the settings say; fails when the extra CA file cannot be
    /// read or holds no certificate.
    pub fn build<B>(self) -> Result<HttpClient<B>, TlsError>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = self.settings.tls()?;
        Ok(self.build_with_tls(tls))
    }

    /// The client, with a ready rustls configuration instead of the settings' trust.
    pub fn build_with_tls<B>(self, tls: Arc<rustls::ClientConfig>) -> HttpClient<B>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut direct = HttpConnector::new();
        direct.enforce_http(false);
        direct.set_nodelay(true);
        direct.set_connect_timeout(self.connect_timeout);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(ProxyConnector {
                proxy: self.settings.proxy.matcher().map(Arc::new),
                direct,
                connect_timeout: self.connect_timeout,
            });
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build(https),
            request_timeout: self.request_timeout,
        }
    }
}

impl<B> HttpClient<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Sends `req` and waits for the response's head (within the request timeout).
    pub async fn request(&self, req: Request<B>) -> Result<Response<Incoming>, HttpError> {
        let authority = authority(req.uri());
        let sent = self.client.request(req);
        let answer = match self.request_timeout {
            Some(after) => {
                tokio::time::timeout(after, sent)
                    .await
                    .map_err(|_| HttpError::Timeout {
                        authority: authority.clone(),
                        after,
                    })?
            }
            None => sent.await,
        };
        let mut resp = answer.map_err(|e| HttpError::Unreachable {
            authority: authority.clone(),
            why: causes(&e),
        })?;
        resp.extensions_mut().insert(Destination(authority));
        Ok(resp)
    }

    /// Reads `resp`'s body: at most `max` bytes, within the request timeout.
    pub async fn body(&self, resp: Response<Incoming>, max: usize) -> Result<Bytes, HttpError> {
        let authority = resp
            .extensions()
            .get::<Destination>()
            .map(|d| d.0.clone())
            .unwrap_or_default();
        let read = Limited::new(resp.into_body(), max).collect();
        let read = match self.request_timeout {
            Some(after) => {
                tokio::time::timeout(after, read)
                    .await
                    .map_err(|_| HttpError::Timeout {
                        authority: authority.clone(),
                        after,
                    })?
            }
            None => read.await,
        };
        match read {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(HttpError::TooLarge { authority, max })
            }
            Err(e) => Err(HttpError::BrokenBody {
                authority,
                why: e.to_string(),
            }),
        }
    }
}

/// Where a response came from, kept with it for the errors of reading its body.
#[derive(Clone)]
struct Destination(String);

/// `host:port` of a URI, for errors.
fn authority(uri: &Uri) -> String {
    uri.authority()
        .map(|a| a.as_str().rsplit('@').next().unwrap_or("").to_owned())
        .unwrap_or_else(|| uri.to_string())
}

/// An error with its causes, outermost first.
fn causes(e: &dyn std::error::Error) -> String {
    let mut why = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        why = format!("{why}: {c}");
        cause = c.source();
    }
    why
}

/// Opens the TCP connection of a request: through a CONNECT tunnel when the proxy takes the
/// destination, else directly; within the connect timeout either way.
#[derive(Clone)]
pub struct ProxyConnector {
    proxy: Option<Arc<Matcher>>,
    direct: HttpConnector,
    connect_timeout: Option<Duration>,
}

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, std::io::Error>> + Send>>;

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let proxy = self.proxy.clone();
        let mut direct = self.direct.clone();
        let within = self.connect_timeout;
        Box::pin(async move {
            if let Some(m) = &proxy {
                let https = dst.scheme_str() == Some("https");
                let host = dst.host().unwrap_or_default();
                let port = dst.port_u16().unwrap_or(if https { 443 } else { 80 });
                let tunnel = proxy_tunnel(m, https, host, port);
                let tunnel = match within {
                    Some(d) => tokio::time::timeout(d, tunnel).await.map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "the proxy's tunnel to {host}:{port} took longer than {} ms",
                                d.as_millis()
                            ),
                        )
                    })?,
                    None => tunnel.await,
                };
                if let Some(tcp) = tunnel? {
                    return Ok(TokioIo::new(tcp));
                }
            }
            direct.call(dst).await.map_err(std::io::Error::other)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn client(connect: Duration, request: Duration) -> HttpClient<Full<Bytes>> {
        HttpClient::builder(&ClientSettings::direct())
            .connect_timeout(connect)
            .request_timeout(request)
            .build()
            .unwrap()
    }

    fn get(url: &str) -> Request<Full<Bytes>> {
        Request::get(url).body(Full::new(Bytes::new())).unwrap()
    }

    /// A server that answers each connection's first request with `answer`, then waits.
    async fn server(answer: &'static [u8]) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(answer).await;
                    // Hold the connection open: a body that never ends stays unfinished.
                    let _ = s.read(&mut buf).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn an_answer_and_its_body_are_read() {
        let addr = server(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let c = client(Duration::from_secs(10), Duration::from_secs(10));
        let resp = c.request(get(&format!("http://{addr}/x"))).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(c.body(resp, 100).await.unwrap(), "hello");
    }

    #[tokio::test]
    async fn a_body_past_its_bound_is_refused_with_the_bound() {
        let addr = server(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let c = client(Duration::from_secs(10), Duration::from_secs(10));
        let resp = c.request(get(&format!("http://{addr}/x"))).await.unwrap();
        let err = c.body(resp, 4).await.unwrap_err();
        assert!(matches!(err, HttpError::TooLarge { max: 4, .. }), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_is_a_timeout_naming_it() {
        // Accepts and reads, never answers: the request timeout, the first timer, fires.
        let addr = server(b"").await;
        let c = client(Duration::from_secs(60), Duration::from_millis(500));
        let err = c
            .request(get(&format!("http://{addr}/x")))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        assert!(err.to_string().contains("500 ms"), "{err}");
    }

    #[tokio::test]
    async fn a_body_that_never_ends_is_a_timeout_naming_the_server() {
        let addr = server(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nhello").await;
        let c = client(Duration::from_secs(10), Duration::from_secs(10));
        let resp = c.request(get(&format!("http://{addr}/x"))).await.unwrap();
        // The head is in; the missing 45 bytes never come. The clock jumps to the deadline.
        tokio::time::pause();
        let err = c.body(resp, 100).await.unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_destination_and_the_cause() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let err = client(Duration::from_secs(10), Duration::from_secs(10))
            .request(get(&format!("http://{addr}/x")))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("cannot reach {addr}")), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[tokio::test]
    async fn a_proxy_setting_sends_the_request_through_a_connect_tunnel() {
        let target = server(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        // A proxy that answers CONNECT and then relays to the target.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = l.local_addr().unwrap();
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<String>();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = seen_tx.send(head);
            s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .unwrap();
            let mut up = TcpStream::connect(target).await.unwrap();
            let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
        });
        let settings = ClientSettings {
            extra_ca_file: None,
            proxy: crate::ProxySetting::Url(format!("http://{proxy}")),
        };
        let c: HttpClient<Full<Bytes>> = HttpClient::builder(&settings)
            .connect_timeout(Duration::from_secs(10))
            .request_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let resp = c.request(get(&format!("http://{target}/x"))).await.unwrap();
        assert_eq!(resp.status(), 204);
        let head = seen_rx.await.unwrap();
        assert!(head.starts_with(&format!("CONNECT {target} ")), "{head}");
    }
}
