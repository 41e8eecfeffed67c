//! Opening WebSockets: the [`Connector`] seam and the real [`WsConnector`] (tokio-tungstenite
//! over rustls).
//!
//! Sessions never name a socket type: they work on any [`Transport`] (a `Sink` of and a
//! `Stream` of WebSocket messages) produced by a [`Connector`], so tests drive them with
//! in-memory channels and the host with real sockets. TLS uses an explicitly built rustls
//! configuration with the `ring` provider (never a process-wide default), trusting the
//! system's roots plus an optional extra CA file (the simulator's self-signed certificate).
//! Reads use a 4 KiB buffer: tokio-tungstenite's default 128 KiB buffer is zero-filled per
//! read and cost a third of the CPU at 1,000 connections.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{Sink, Stream};
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
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The real connector: `ws://` and `wss://` through tokio-tungstenite.
#[derive(Clone)]
pub struct WsConnector {
    tls: Arc<rustls::ClientConfig>,
    ws: WebSocketConfig,
}

impl WsConnector {
    /// A connector trusting the system roots and, if given, the CA certificates in a PEM file.
    pub fn new(extra_ca_file: Option<&Path>) -> Result<Self, TlsError> {
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
        let tls = tls_config(pem.as_ref().map(|(p, s)| (*p, s.as_str())))?;
        Ok(Self::with_tls(tls))
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
        }
    }
}

impl Connector for WsConnector {
    type Conn = WebSocketStream<MaybeTlsStream<TcpStream>>;

    async fn connect(&self, url: &str) -> Result<Self::Conn, WsError> {
        let connector = tokio_tungstenite::Connector::Rustls(self.tls.clone());
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
