//! What a reload reports beyond plugins, and the admin route that asks for one.

use std::time::Duration;

use rtms_host::reload::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::rig::*;
use crate::util::component;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_need_a_restart_are_reported_not_ignored() {
    let rig = Rig::new().await;
    let mut p = PipelineToml::new(vec![PluginToml::new("rec", component("seq_recorder"))]);
    let svc = rig.start(&p).await;
    p.listen = "127.0.0.1:9".into();
    rig.write_pipeline(&p);
    match svc.reload().await {
        Outcome::Applied {
            restart_required,
            changed,
            ..
        } => {
            assert!(changed.is_empty(), "{changed:?}");
            assert!(
                restart_required
                    .iter()
                    .any(|r| r.contains("server.listen") && r.contains("127.0.0.1:9")),
                "{restart_required:?}"
            );
        }
        other => panic!("a listen change must be reported: {other:?}"),
    }
    // Nothing new: unchanged.
    assert_eq!(svc.reload().await, Outcome::Unchanged);
    // Sinks are not rebuilt live: reported too, with the listen change still pending.
    p.extra = format!(
        "\n[[sink]]\ntype = \"jsonl\"\npath = \"{}\"\n",
        rig.path().join("alerts.jsonl").display()
    );
    rig.write_pipeline(&p);
    match svc.reload().await {
        Outcome::Applied {
            restart_required, ..
        } => {
            assert!(
                restart_required.iter().any(|r| r.contains("sink")),
                "{restart_required:?}"
            );
            assert!(
                restart_required.iter().any(|r| r.contains("server.listen")),
                "{restart_required:?}"
            );
        }
        other => panic!("a sink change must be reported: {other:?}"),
    }
    // A plugin change applies live; the settings waiting for a restart are still listed.
    p.plugins.push(PluginToml::new("noop", component("noop")));
    rig.write_pipeline(&p);
    match svc.reload().await {
        Outcome::Applied {
            restart_required,
            changed,
            ..
        } => {
            assert_eq!(changed, vec!["noop added".to_owned()]);
            assert_eq!(restart_required.len(), 2, "{restart_required:?}");
        }
        other => panic!("adding a plugin: {other:?}"),
    }
    assert!(serving_hash(&svc, "noop").is_some());
    svc.shutdown().await;
}

async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_admin_reload_reloads() {
    let rig = Rig::new().await;
    let mut p = PipelineToml::new(vec![PluginToml::new("rec", component("seq_recorder"))]);
    let svc = rig.start(&p).await;
    p.plugins.push(PluginToml::new("noop", component("noop")));
    rig.write_pipeline(&p);
    let (status, _) = http(svc.addr(), "POST", "/admin/reload").await;
    assert_eq!(status, 202);
    wait_for("the reload to apply", Duration::from_secs(8), || {
        svc.metrics().reloads_applied == 1
    })
    .await;
    assert!(serving_hash(&svc, "noop").is_some());

    rig.write_pipeline_text("version = 1\n[server\n");
    let (status, _) = http(svc.addr(), "POST", "/admin/reload").await;
    assert_eq!(status, 202);
    wait_for("the refusal", Duration::from_secs(8), || {
        svc.metrics().reloads_refused == 1
    })
    .await;

    let (status, body) = http(svc.addr(), "GET", "/admin/metrics").await;
    assert_eq!(status, 200);
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert_eq!(v["reloads_applied"], 1);
    assert_eq!(v["reloads_refused"], 1);
    svc.shutdown().await;
}
