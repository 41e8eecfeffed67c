//! Native TLS for both listeners: a rustls server configuration whose certificate is re-read
//! when its PEM files change.
//!
//! Every handshake asks [`ReloadingCert`] for the certificate; it compares the files'
//! modification times, sizes and inodes with those it loaded (two `stat`s) and loads them again when
//! they differ. A pair that does not load (a half-written file, a key that does not match)
//! is logged and the previous certificate stays in use, so a renewal never takes the
//! endpoint down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate chain and key files (PEM) of the listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`server.tls.cert`).
    pub cert: PathBuf,
    /// The private key: PKCS#8, PKCS#1 or SEC1 (`server.tls.key`).
    pub key: PathBuf,
}

/// Modification time, size and inode of both files.
type Stamp = [(Option<SystemTime>, u64, u64); 2];

fn stamp(files: &TlsFiles) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len(), m.ino()),
        Err(_) => (None, 0, 0),
    };
    [one(&files.cert), one(&files.key)]
}

/// Loads the pair; the message names the file and the `server.tls` key to fix.
pub fn load(files: &TlsFiles) -> Result<Arc<CertifiedKey>, String> {
    load_for(files, "server.tls")
}

/// Loads the pair; the message names the file and the key under `setting` to fix.
pub fn load_for(files: &TlsFiles, setting: &str) -> Result<Arc<CertifiedKey>, String> {
    let read = |p: &Path, key: &str| {
        std::fs::read(p).map_err(|e| format!("cannot read {} ({key}): {e}", p.display()))
    };
    let cert_pem = read(&files.cert, &format!("{setting}.cert"))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} ({setting}.cert) is not PEM: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} ({setting}.cert) holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            files.cert.display()
        ));
    }
    let key_pem = read(&files.key, &format!("{setting}.key"))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("{} ({setting}.key) is not PEM: {e}", files.key.display()))?
        .ok_or_else(|| {
            format!(
                "{} ({setting}.key) holds no private key (expected -----BEGIN PRIVATE KEY-----)",
                files.key.display()
            )
        })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        format!(
            "{} ({setting}.key) is not a usable key: {e}",
            files.key.display()
        )
    })?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match().map_err(|e| {
        format!(
            "{} and {} do not belong together ({setting}.cert / {setting}.key): {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    Ok(Arc::new(ck))
}

/// Serves the certificate of [`TlsFiles`], reloaded when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    setting: &'static str,
    current: Mutex<(Stamp, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    /// Loads the files now; fails when they do not load.
    pub fn new(files: TlsFiles) -> Result<Self, String> {
        Self::named(files, "server.tls")
    }

    /// Like [`ReloadingCert::new`], naming the files by `setting` (`admin.tls`) in messages.
    pub fn named(files: TlsFiles, setting: &'static str) -> Result<Self, String> {
        let st = stamp(&files);
        let key = load_for(&files, setting)?;
        Ok(Self {
            setting,
            files,
            current: Mutex::new((st, key)),
        })
    }

    /// The certificate to serve, reloaded first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let st = stamp(&self.files);
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.0 != st {
            // Remember the stamp either way: a broken pair is reported once per change.
            cur.0 = st;
            match load_for(&self.files, self.setting) {
                Ok(key) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    cur.1 = key;
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate changed but does not load: still serving the previous one");
                }
            }
        }
        cur.1.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The rustls server configuration (HTTP/1.1 only) for the files.
pub fn server_config(files: TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    server_config_for(files, "server.tls")
}

/// Like [`server_config`], naming the files by `setting` in messages.
pub fn server_config_for(
    files: TlsFiles,
    setting: &'static str,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let resolver = ReloadingCert::named(files, setting)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls refused the protocol versions: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
