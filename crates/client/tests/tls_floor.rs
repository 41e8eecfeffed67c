//! Zoom requires TLS 1.2 or 1.3 on every RTMS connection (from 2026-11-15): a server that
//! speaks only TLS 1.1 is refused, with an error that says so. The server is OpenSSL's own
//! `s_server` restricted to TLS 1.1.

use std::process::Stdio;
use std::time::Duration;

use rtms_client::ClientConfig;
use rtms_client::link::{self, StreamIds};
use rtms_client::transport::WsConnector;
use rtms_proto::Product;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A certificate for `localhost` and its key, written by OpenSSL into `dir`.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[tokio::test]
async fn a_server_that_speaks_only_tls_1_1_is_refused_with_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("rtms-tls-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = certificate(&dir);
    // SECLEVEL=0: OpenSSL 3 itself refuses TLS 1.1 otherwise.
    let mut server = tokio::process::Command::new("openssl")
        .args([
            "s_server",
            "-4",
            "-accept",
            "0",
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run openssl s_server");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("ACCEPT ") {
                return addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
            }
        }
        panic!("s_server ended without listening")
    })
    .await
    .expect("s_server listens");

    let url = format!("wss://localhost:{port}/signaling");
    let connector = WsConnector::new(Some(&cert)).unwrap();
    // The error a stream logs says what is wrong and what Zoom requires.
    let cfg = ClientConfig::default();
    let ids = StreamIds {
        product: Product::Meeting,
        id: "m".into(),
        stream_id: "s".into(),
    };
    let req = link::signaling_request(&cfg, &ids, 1);
    let Err(err) = link::open_signaling(&connector, &url, &req, Duration::from_secs(10)).await
    else {
        panic!("a TLS 1.1-only server was accepted")
    };
    let text = err.to_string();
    assert!(text.contains(&url), "{text}");
    assert!(text.contains("TLS 1.2"), "{text}");
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
