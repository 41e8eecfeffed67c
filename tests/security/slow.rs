//! Slow clients against the ingress's resources, and its TLS listener.
//!
//! Slowloris: a thousand connections sending a body (or headers) at one byte a second hold
//! the ingress's connections and descriptors; Zoom's webhooks must still be answered
//! promptly, and the slow connections must be cut at the body timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use rtms_proto::WebhookAction;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::{HostProcess, SIM_ALLOW, WEBHOOK_SECRET, lifecycle, pipeline, post, serial, signed};

const SLOW: usize = 1_000;
const LEGIT: usize = 20;

/// Opens a connection that sends `head` at once, then one byte a second until the server
/// answers or closes; returns what it answered (empty when it closed).
async fn slow_client(
    addr: std::net::SocketAddr,
    head: &'static [u8],
    ready: mpsc::UnboundedSender<()>,
) -> Vec<u8> {
    let Ok(mut sock) = TcpStream::connect(addr).await else {
        return b"connect failed".to_vec();
    };
    let written = sock.write_all(head).await;
    let _ = ready.send(());
    if written.is_err() {
        return Vec::new();
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut buf = vec![0u8; 256];
    loop {
        tokio::select! {
            r = sock.read(&mut buf) => {
                return match r {
                    Ok(n) => buf[..n].to_vec(),
                    Err(_) => Vec::new(),
                };
            }
            _ = tick.tick() => {
                if sock.write_all(b"x").await.is_err() {
                    return Vec::new();
                }
            }
        }
    }
}

/// Starts `SLOW` slow clients and waits until each has sent its head.
async fn slow_clients(
    addr: std::net::SocketAddr,
    head: &'static [u8],
) -> Vec<tokio::task::JoinHandle<Vec<u8>>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tasks = (0..SLOW)
        .map(|_| tokio::spawn(slow_client(addr, head, tx.clone())))
        .collect();
    for _ in 0..SLOW {
        rx.recv().await.unwrap();
    }
    tasks
}

/// Sends `LEGIT` signed webhooks one after another, each on a new connection; returns the
/// slowest answer's time.
async fn legit_webhooks(url: &str) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..LEGIT {
        let body = lifecycle(WebhookAction::Stopped, &format!("legit{i}"), None, 1);
        let t = Instant::now();
        let (status, text) = post(url, body.clone(), &signed(&body, WEBHOOK_SECRET)).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    slowest
}

async fn healthz(addr: std::net::SocketAddr) -> StatusCode {
    let client = crate::client();
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        client.get(format!("http://{addr}/healthz").parse().unwrap()),
    )
    .await
    .expect("answered within 5 s")
    .unwrap();
    resp.status()
}

#[tokio::test]
async fn a_thousand_slow_bodies_neither_block_webhooks_nor_outlive_the_body_timeout() {
    let _serial = serial().await;
    // Every client here is 127.0.0.1: lift the per-peer limit (which would close the oldest
    // slow bodies before their timeout) so the body timeout is what cuts them.
    let host = HostProcess::start(&pipeline(
        "body_timeout_ms = 3000\nmax_connections_per_peer = 1024\n",
        SIM_ALLOW,
    ));
    let addr = host.addr;
    let head: &'static [u8] =
        b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{";
    let started = Instant::now();
    // Every slow connection is open and waiting before the legitimate traffic starts.
    let slow = slow_clients(addr, head).await;
    // A request queued behind the flood: once it is answered the host has accepted every
    // slow connection, and the webhooks below meet the steady state, not the kernel's
    // accept backlog.
    assert_eq!(healthz(addr).await, StatusCode::OK);
    let slowest = legit_webhooks(&host.webhook_url()).await;
    eprintln!("{LEGIT} webhooks among {SLOW} slow bodies: slowest answer {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "slowest webhook took {slowest:?}"
    );
    assert_eq!(healthz(addr).await, StatusCode::OK);
    let mut timed_out = 0;
    for t in slow {
        let answer = t.await.unwrap();
        if answer.starts_with(b"HTTP/1.1 408") {
            timed_out += 1;
        }
    }
    let took = started.elapsed();
    eprintln!("{timed_out} of {SLOW} slow bodies cut with 408 after {took:?}");
    assert_eq!(timed_out, SLOW, "every slow body gets 408");
    assert!(
        took < Duration::from_secs(8),
        "cut at the 3 s body timeout, took {took:?}"
    );
    host.stop();
}

#[tokio::test]
async fn past_max_connections_slow_headers_are_evicted_and_webhooks_get_through() {
    let _serial = serial().await;
    let host = HostProcess::start(&pipeline("max_connections = 200\n", SIM_ALLOW));
    let addr = host.addr;
    // Headers that never end.
    let head: &'static [u8] = b"POST /webhook HTTP/1.1\r\nhost: x\r\nx-slow: ";
    let slow = slow_clients(addr, head).await;
    // A request queued behind the flood: once it is answered the host has accepted every
    // slow connection, and the webhooks below meet the steady state, not the kernel's
    // accept backlog.
    assert_eq!(healthz(addr).await, StatusCode::OK);
    let slowest = legit_webhooks(&host.webhook_url()).await;
    eprintln!("{LEGIT} webhooks among {SLOW} slow headers, cap 200: slowest answer {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "slowest webhook took {slowest:?}"
    );
    assert_eq!(healthz(addr).await, StatusCode::OK);
    for t in slow {
        t.abort();
    }
    let logs = host.stop();
    assert!(
        logs.iter()
            .any(|l| l.contains("closing the oldest idle connection to make room")),
        "the eviction is logged"
    );
}

/// A CA and a `localhost` certificate it signed: (CA PEM, leaf DER, chain PEM, key PEM).
fn certificate(name: &str) -> (String, Vec<u8>, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (
        ca_cert.pem(),
        leaf.der().to_vec(),
        leaf.pem(),
        key.serialize_pem(),
    )
}

/// Writes a file by rename, so the host never reads half of it.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Connects over TLS trusting `cas`; returns the leaf certificate served and the answer
/// to `GET /healthz`.
async fn tls_get(addr: std::net::SocketAddr, cas: &[&str]) -> (Vec<u8>, String) {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    (leaf, String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn the_tls_listener_serves_a_replaced_certificate_without_a_restart() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (ca1, leaf1, chain1, key1) = certificate("first CA");
    replace(&cert_path, &chain1);
    replace(&key_path, &key1);
    let host = HostProcess::start(&pipeline(
        &format!(
            "[server.tls]\ncert = {:?}\nkey = {:?}\n",
            cert_path.display().to_string(),
            key_path.display().to_string()
        ),
        SIM_ALLOW,
    ));
    let (leaf, answer) = tls_get(host.addr, &[&ca1]).await;
    assert_eq!(leaf, leaf1);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Plain HTTP gets no answer on the TLS port.
    let mut plain = TcpStream::connect(host.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut buf)).await;
    assert!(!buf.starts_with(b"HTTP/1.1 200"));

    // The certificate is renewed on disk: the next handshake serves the new one.
    let (ca2, leaf2, chain2, key2) = certificate("second CA");
    replace(&key_path, &key2);
    replace(&cert_path, &chain2);
    let (leaf, answer) = tls_get(host.addr, &[&ca1, &ca2]).await;
    assert_eq!(leaf, leaf2, "the renewed certificate is served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A broken renewal keeps the last good certificate.
    replace(&cert_path, "not a certificate");
    let (leaf, _) = tls_get(host.addr, &[&ca1, &ca2]).await;
    assert_eq!(leaf, leaf2);
    let logs = host.stop();
    assert!(logs.iter().any(|l| l.contains("TLS certificate reloaded")));
    assert!(
        logs.iter()
            .any(|l| l.contains("still serving the previous one"))
    );
}
