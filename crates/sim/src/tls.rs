//! TLS for `wss://`: a CA and a server certificate for `localhost` and `127.0.0.1`, made with
//! rcgen at start-up, and the tokio-rustls acceptor using them.
//!
//! The CA is thrown away with the simulator unless a CA directory is given
//! ([`crate::SimConfig::ca_dir`], `--ca-dir`): then it is created there once (`ca.pem`, the
//! certificate; `ca.key`, its private key, mode 0600) and reused by every later run, so a
//! client can trust it before the simulator starts. The server certificate is new on every
//! run, signed by that CA.
//!
//! The certificate's SANs are `DNS:localhost` and `IP:127.0.0.1`: Zoom's SDK checks DNS-type
//! SANs only, rustls clients accept either. The ring provider is passed explicitly, so the
//! process-wide rustls default never matters.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_rustls::TlsAcceptor;

/// The CA certificate's file name in a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key's file name in a CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the simulator's certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("building the TLS server configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("CA directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA directory {dir}: {problem}")]
    CaDir { dir: PathBuf, problem: String },
}

/// The CA and the acceptor serving the certificate it signed.
#[derive(Clone)]
pub struct SimTls {
    /// PEM of the CA certificate that a client must trust.
    pub ca_pem: String,
    pub acceptor: TlsAcceptor,
}

/// The CA's parameters. A CA loaded from a directory is rebuilt from these and its stored
/// key: the issuer name and key identifier of the server certificate then match the stored
/// CA certificate.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rtms-sim local CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(ca_params)
}

impl SimTls {
    /// Generates a throw-away CA and a server certificate, and builds the acceptor.
    pub fn generate() -> Result<Self, TlsError> {
        let ca_key = KeyPair::generate()?;
        let ca_pem = ca_params()?.self_signed(&ca_key)?.pem();
        Self::with_ca(ca_pem, ca_key)
    }

    /// Uses the CA kept in `dir` (`ca.pem` and `ca.key`), creating it there on the first
    /// run (and `dir` itself when missing). The key file is written with mode 0600, and a
    /// key file others may read is refused.
    pub fn from_ca_dir(dir: &Path) -> Result<Self, TlsError> {
        let (cert, key) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { path, source }
        };
        let bad = |problem: String| TlsError::CaDir {
            dir: dir.to_path_buf(),
            problem,
        };
        match (cert.exists(), key.exists()) {
            (true, true) => {
                check_private(&key).map_err(bad)?;
                let ca_pem = std::fs::read_to_string(&cert).map_err(io(&cert))?;
                let key_pem = std::fs::read_to_string(&key).map_err(io(&key))?;
                let ca_key = KeyPair::from_pem(&key_pem)
                    .map_err(|e| bad(format!("{CA_KEY_FILE} is not a PEM private key: {e}")))?;
                Self::with_ca(ca_pem, ca_key)
            }
            (false, false) => {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                let ca_key = KeyPair::generate()?;
                let ca_pem = ca_params()?.self_signed(&ca_key)?.pem();
                write_private(&key, &ca_key.serialize_pem()).map_err(io(&key))?;
                std::fs::write(&cert, &ca_pem).map_err(io(&cert))?;
                Self::with_ca(ca_pem, ca_key)
            }
            (has_cert, _) => Err(bad(format!(
                "{} exists without {}; remove it to create a new CA, or restore the missing file",
                if has_cert { CA_CERT_FILE } else { CA_KEY_FILE },
                if has_cert { CA_KEY_FILE } else { CA_CERT_FILE },
            ))),
        }
    }

    /// A server certificate signed by the CA (`ca_pem`, `ca_key`), and the acceptor.
    fn with_ca(ca_pem: String, ca_key: KeyPair) -> Result<Self, TlsError> {
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| rustls::Error::General(format!("the CA certificate: {e}")))?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let leaf_key = KeyPair::generate()?;
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

        let chain = vec![leaf_cert.der().clone(), ca_der];
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(Self {
            ca_pem,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// Writes a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Refuses a key file that others than its owner may read.
fn check_private(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is readable by others (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_dir_is_created_once_then_reused_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let first = SimTls::from_ca_dir(&ca_dir).unwrap();
        let second = SimTls::from_ca_dir(&ca_dir).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem, "the CA is reused");
        let stored = std::fs::read_to_string(ca_dir.join(CA_CERT_FILE)).unwrap();
        assert_eq!(stored, first.ca_pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = ca_dir.join(CA_KEY_FILE);
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = SimTls::from_ca_dir(&ca_dir).err().unwrap().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
        assert_ne!(SimTls::generate().unwrap().ca_pem, first.ca_pem);
    }

    #[test]
    fn a_ca_dir_with_one_file_missing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        SimTls::from_ca_dir(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let e = SimTls::from_ca_dir(dir.path()).err().unwrap().to_string();
        assert!(e.contains("ca.pem exists without ca.key"), "{e}");
    }
}
