//! Opening WebSockets: the [`Connector`] seam and the real [`WsConnector`] (tokio-tungstenite
//! over rustls).
//!
//! Sessions never name a socket type: they work on any [`Transport`] (a `Sink` of and a
//! `Stream` of WebSocket messages) produced by a [`Connector`], so tests drive them with
//! in-memory channels and the host with real sockets. TLS uses an explicitly built rustls
//! configuration with the `ring` provider (never a process-wide default), TLS 1.3 and 1.2 only
//! ([`TLS_VERSIONS`]; rustls implements nothing older), trusting the
//! system's roots plus an optional extra CA file (the simulator's self-signed certificate).
//! Reads use a 4 KiB buffer: tokio-tungstenite's default 128 KiB buffer is zero-filled per
//! read and cost a third of the CPU at 1,000 connections.
//!
//! Behind a corporate proxy the connector opens a tunnel first (HTTP `CONNECT`, with basic
//! credentials from the proxy URL) and runs TLS and the WebSocket upgrade through it. Which
//! destinations go through which proxy follows `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
//! `NO_PROXY` as curl reads them (hyper-util's matcher); `wss://` counts as https, `ws://` as
//! http.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{Sink, Stream};
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket as the session sees it.
pub trait Transport:
    Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Send + Unpin + 'static
{
}

impl<T> Transport for T where
    T: Sink<Message, Error = WsError>
        + Stream<Item = Result<Message, WsError>>
        + Send
        + Unpin
        + 'static
{
}

/// Opens a WebSocket to a URL (up to and including the HTTP upgrade). Timeouts are the
/// caller's business.
pub trait Connector: Send + Sync + 'static {
    type Conn: Transport;
    fn connect(&self, url: &str) -> impl Future<Output = Result<Self::Conn, WsError>> + Send;
}

/// Why the TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA file {path}: {source} (check the path given for the extra CA)")]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("the CA file {path} holds a certificate rustls rejects: {source}")]
    BadCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("rustls refused the protocol versions: {0}")]
    Config(rustls::Error),
}

/// The TLS versions of every connection to Zoom: 1.3 and 1.2 only. rustls implements
/// nothing older (no TLS 1.1, 1.0 or SSL), so this list is also the floor; it is spelled out
/// so that a change of rustls's defaults cannot change what the host offers.
pub const TLS_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Builds the rustls client configuration: system roots (if any load) plus the
/// certificates in `extra_ca_pem` (PEM text).
pub fn tls_config(
    extra_ca_pem: Option<(&Path, &str)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::debug!(error = %err, "a system root certificate could not be loaded");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, "system root certificates loaded");
    if let Some((path, pem)) = extra_ca_pem {
        let mut found = false;
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
            let cert = cert.map_err(|source| TlsError::ReadCa {
                path: path.to_owned(),
                source,
            })?;
            roots.add(cert).map_err(|source| TlsError::BadCertificate {
                path: path.to_owned(),
                source,
            })?;
            found = true;
        }
        if !found {
            return Err(TlsError::NoCertificate {
                path: path.to_owned(),
            });
        }
    }
    if roots.is_empty() {
        tracing::warn!(
            "no trusted root certificate: wss:// connections will fail (install the system's CA bundle or give an extra CA file)"
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(TLS_VERSIONS)
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// [`tls_config`] with the certificates of the PEM file `extra_ca_file`, if given.
pub fn tls_config_from_file(
    extra_ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let pem = match extra_ca_file {
        Some(path) => Some((
            path,
            std::fs::read_to_string(path).map_err(|source| TlsError::ReadCa {
                path: path.to_owned(),
                source,
            })?,
        )),
        None => None,
    };
    tls_config(pem.as_ref().map(|(p, s)| (*p, s.as_str())))
}

/// How outgoing connections leave the process, whatever opens them (the Zoom WebSockets,
/// Zoom's REST API, the HTTP sink, plugins' requests): the trust and the proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// A PEM file of extra CA certificates trusted besides the system roots (`zoom.ca_file`).
    pub extra_ca_file: Option<PathBuf>,
    /// `rtms.proxy`.
    pub proxy: ProxySetting,
}

impl ClientSettings {
    /// Direct connections trusting the system roots only.
    pub fn direct() -> Self {
        Self {
            extra_ca_file: None,
            proxy: ProxySetting::None,
        }
    }

    /// The TLS configuration: the system roots plus the extra CA file.
    pub fn tls(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        tls_config_from_file(self.extra_ca_file.as_deref())
    }
}

/// How outgoing WebSockets reach Zoom.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// As `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` say (direct when unset).
    #[default]
    Env,
    /// Always direct.
    None,
    /// Through this proxy (`http://host:port`; credentials, if any, in the URL), except for
    /// the hosts `NO_PROXY` names.
    Url(String),
}

impl ProxySetting {
    /// The matcher for this setting; `None` when every connection goes direct.
    pub fn matcher(&self) -> Option<Matcher> {
        let m = match self {
            ProxySetting::None => return None,
            ProxySetting::Env => Matcher::from_env(),
            ProxySetting::Url(url) => {
                let no = std::env::var("NO_PROXY")
                    .or_else(|_| std::env::var("no_proxy"))
                    .unwrap_or_default();
                Matcher::builder().all(url.clone()).no(no).build()
            }
        };
        // A matcher that intercepts nothing is no proxy at all.
        let any = ["http://zoom.us/", "https://zoom.us/"]
            .iter()
            .any(|u| m.intercept(&Uri::from_static(u)).is_some());
        any.then_some(m)
    }
}

/// The real connector: `ws://` and `wss://` through tokio-tungstenite.
#[derive(Clone)]
pub struct WsConnector {
    tls: Arc<rustls::ClientConfig>,
    ws: WebSocketConfig,
    proxy: Option<Arc<Matcher>>,
}

impl WsConnector {
    /// A connector trusting the system roots and, if given, the CA certificates in a PEM file.
    pub fn new(extra_ca_file: Option<&Path>) -> Result<Self, TlsError> {
        Ok(Self::with_tls(tls_config_from_file(extra_ca_file)?))
    }

    /// A connector trusting what `settings` says and going through its proxy.
    pub fn from_settings(settings: &ClientSettings) -> Result<Self, TlsError> {
        Ok(Self::with_tls(settings.tls()?).with_proxy(&settings.proxy))
    }

    /// A connector trusting the system roots and the CA certificates in `pem` (text).
    pub fn with_ca_pem(pem: &str) -> Result<Self, TlsError> {
        Ok(Self::with_tls(tls_config(Some((
            Path::new("<memory>"),
            pem,
        )))?))
    }

    /// A connector with a ready rustls configuration.
    pub fn with_tls(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tls,
            ws: WebSocketConfig::default().read_buffer_size(4096),
            proxy: ProxySetting::None.matcher().map(Arc::new),
        }
    }

    /// Routes connections as `setting` says.
    pub fn with_proxy(mut self, setting: &ProxySetting) -> Self {
        self.proxy = setting.matcher().map(Arc::new);
        if let Some(m) = &self.proxy {
            tracing::info!(proxy = ?m, "outgoing WebSockets go through an HTTP proxy");
        }
        self
    }

    /// Opens a tunnel to `url`'s host through the proxy, when the proxy rules say so.
    async fn tunnel(&self, url: &str) -> Result<Option<TcpStream>, WsError> {
        let Some(matcher) = &self.proxy else {
            return Ok(None);
        };
        let uri: Uri = url.parse().map_err(|e| {
            WsError::Url(
                tokio_tungstenite::tungstenite::error::UrlError::UnableToConnect(format!(
                    "{url}: {e}"
                )),
            )
        })?;
        let (https, default_port) = match uri.scheme_str() {
            Some("wss") => (true, 443),
            _ => (false, 80),
        };
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(default_port);
        proxy_tunnel(matcher, https, host, port)
            .await
            .map_err(WsError::Io)
    }
}

/// Opens a tunnel (HTTP `CONNECT`) to `host:port` through the proxy `matcher` names for an
/// `https` (or plain http) destination; `None` when the destination goes direct. The one
/// proxy path for every outgoing connection: WebSockets to Zoom and plugins' HTTP requests.
pub async fn proxy_tunnel(
    matcher: &Matcher,
    https: bool,
    host: &str,
    port: u16,
) -> std::io::Result<Option<TcpStream>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let scheme = if https { "https" } else { "http" };
    let dst: Uri = format!("{scheme}://{authority}/")
        .parse()
        .map_err(|e| std::io::Error::other(format!("{authority}: {e}")))?;
    let Some(intercept) = matcher.intercept(&dst) else {
        return Ok(None);
    };
    let proxy_uri = intercept.uri().clone();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let mut tunnel = Tunnel::new(proxy_uri.clone(), http);
    if let Some(auth) = intercept.basic_auth() {
        tunnel = tunnel.with_auth(auth.clone());
    }
    let shown = format!(
        "{}://{}",
        proxy_uri.scheme_str().unwrap_or("http"),
        proxy_uri
            .authority()
            .map(|a| a.as_str().rsplit('@').next().unwrap_or(""))
            .unwrap_or("")
    );
    let fail = |e: Box<dyn std::error::Error + Send + Sync>| {
        std::io::Error::other(format!(
            "the proxy {shown} did not open a tunnel to {authority}: {e} (check HTTPS_PROXY / HTTP_PROXY / NO_PROXY or rtms.proxy)"
        ))
    };
    use tower_service::Service as _;
    std::future::poll_fn(|cx| tunnel.poll_ready(cx))
        .await
        .map_err(|e| fail(e.into()))?;
    let io = tunnel.call(dst).await.map_err(|e| fail(e.into()))?;
    Ok(Some(io.into_inner()))
}

impl Connector for WsConnector {
    type Conn = WebSocketStream<MaybeTlsStream<TcpStream>>;

    async fn connect(&self, url: &str) -> Result<Self::Conn, WsError> {
        let connector = tokio_tungstenite::Connector::Rustls(self.tls.clone());
        if let Some(stream) = self.tunnel(url).await? {
            let (ws, _response) = tokio_tungstenite::client_async_tls_with_config(
                url,
                stream,
                Some(self.ws),
                Some(connector),
            )
            .await?;
            return Ok(ws);
        }
        let (ws, _response) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            Some(self.ws),
            true,
            Some(connector),
        )
        .await?;
        Ok(ws)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_connections_offer_tls_1_3_and_1_2_only() {
        let versions: Vec<_> = TLS_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(
            versions,
            [
                rustls::ProtocolVersion::TLSv1_3,
                rustls::ProtocolVersion::TLSv1_2
            ]
        );
        tls_config(None).expect("rustls accepts the versions with the ring provider");
    }

    #[test]
    fn a_file_without_certificates_is_refused_with_its_path() {
        let err = tls_config(Some((Path::new("/tmp/x.pem"), "not a pem"))).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }));
        assert!(err.to_string().contains("/tmp/x.pem"));
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let err = WsConnector::new(Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"));
    }
}
