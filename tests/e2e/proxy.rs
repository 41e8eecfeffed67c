//! The signaling and media sockets through an HTTP proxy, as a corporate network needs: a
//! real `rtms-host run` process with `HTTP_PROXY` (credentials in it) in its environment, and a
//! small CONNECT proxy on 127.0.0.1 that checks the credentials and records every tunnel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtms_proto::Product;
use rtms_sim::{MeetingOptions, Pace, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{ledger_transcript, script, within};
use crate::host_process::{self, HostProcess};
use crate::util;

/// A CONNECT proxy that wants `Proxy-Authorization: Basic <auth>`; records each tunnel's
/// target, and refuses (407) requests without the credentials.
struct Proxy {
    addr: std::net::SocketAddr,
    tunnels: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<u32>>,
}

impl Proxy {
    async fn start(auth: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tunnels: Arc<Mutex<Vec<String>>> = Arc::default();
        let refused: Arc<Mutex<u32>> = Arc::default();
        let (t, r) = (tunnels.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    break;
                };
                let (t, r) = (t.clone(), r.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read_exact(&mut byte).await.is_err() || head.len() > 8192 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let mut lines = head.lines();
                    let request = lines.next().unwrap_or_default();
                    let Some(target) = request
                        .strip_prefix("CONNECT ")
                        .and_then(|r| r.split_whitespace().next())
                    else {
                        let _ = client
                            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                            .await;
                        return;
                    };
                    let authorized = lines.any(|l| {
                        l.split_once(':').is_some_and(|(k, v)| {
                            k.eq_ignore_ascii_case("proxy-authorization")
                                && v.trim() == format!("Basic {auth}")
                        })
                    });
                    if !authorized {
                        *r.lock().unwrap() += 1;
                        let _ = client
                            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n")
                            .await;
                        return;
                    }
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    t.lock().unwrap().push(target.to_owned());
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        Self {
            addr,
            tunnels,
            refused,
        }
    }
}

fn pipeline() -> String {
    let plugin = format!(
        r#"[[plugin]]
name = "writer"
component = {writer:?}
media = ["transcript"]
[[plugin.dir]]
host = "out"
guest = "/out"
[plugin.config]
dir = "/out"
format = "jsonl"
"#,
        writer = util::component("transcript_writer").display().to_string(),
    );
    crate::harness::process_pipeline("", &plugin)
}

/// The transcript lines the writer wrote for the stream.
fn written(host: &HostProcess, stream_id: &str) -> Vec<String> {
    let out = host.dir.path().join("out");
    let Some(file) = std::fs::read_dir(&out).ok().and_then(|rd| {
        rd.flatten().find(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(&format!("_{stream_id}.jsonl"))
        })
    }) else {
        return Vec::new();
    };
    std::fs::read_to_string(file.path())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect()
}

/// A host process whose `HTTP_PROXY` names `proxy` with `user:<password>`.
async fn host_behind(proxy: &Proxy, password: &str) -> HostProcess {
    let proxy_url = format!("http://user:{password}@{}", proxy.addr);
    tokio::task::spawn_blocking(move || {
        HostProcess::start_with_env(&pipeline(), &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "")])
    })
    .await
    .unwrap()
}

/// A short meeting at fast pace whose webhooks go to `host`.
fn fast_meeting(sim: &Simulator, host: &HostProcess) -> rtms_sim::MeetingHandle {
    sim.start_meeting(
        script(8, vec![]),
        MeetingOptions {
            product: Product::Meeting,
            pace: Pace::Fast,
            webhook_url: Some(host.webhook_url()),
            ..Default::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signaling_and_media_go_through_the_proxy_named_in_the_environment() {
    // "user:secret" in base64.
    let proxy = Proxy::start("dXNlcjpzZWNyZXQ=").await;
    let sim = crate::harness::process_simulator().await;
    let host = host_behind(&proxy, "secret").await;
    let m = fast_meeting(&sim, &host);
    let ledger = within("the meeting to finish", m.finished()).await;
    let stream = m.stream_id().to_owned();
    let want = ledger_transcript(&ledger);
    within("the writer to hold every line", async {
        while written(&host, &stream) != want {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let tunnels = proxy.tunnels.lock().unwrap().clone();
    let sim_authority = m
        .signaling_url()
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        tunnels.len() >= 2,
        "signaling and media each open a tunnel: {tunnels:?}"
    );
    assert_eq!(
        tunnels[0], sim_authority,
        "the first tunnel leads to the signaling server: {tunnels:?}"
    );
    assert!(
        tunnels.iter().all(|t| t.starts_with("127.0.0.1:")),
        "every tunnel leads to the simulator: {tunnels:?}"
    );
    assert_eq!(*proxy.refused.lock().unwrap(), 0);
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_refuses_the_credentials_is_named_in_the_error() {
    let proxy = Proxy::start("dXNlcjpzZWNyZXQ=").await;
    let sim = crate::harness::process_simulator().await;
    let host = host_behind(&proxy, "wrong").await;
    let _m = fast_meeting(&sim, &host);
    let line = tokio::task::spawn_blocking(move || {
        host.wait_for_log("did not open a tunnel", Duration::from_secs(15))
    })
    .await
    .unwrap()
    .expect("the connection failure names the proxy");
    assert!(line.contains(&proxy.addr.to_string()), "{line}");
    assert!(
        !line.contains("wrong"),
        "the password is not logged: {line}"
    );
    assert!(*proxy.refused.lock().unwrap() >= 1);
}

/// Zoom's REST API and OAuth server are reached through `rtms.proxy` too: the token and the
/// status call each arrive through the proxy's tunnel, and wrong credentials are refused by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_oauth_calls_go_through_the_configured_proxy() {
    use rtms_host::flows::zoom_rest::{Action, RestConfig, ZoomRest};
    use rtms_sim::api::{ApiConfig, ZoomApi};
    // "user:secret" in base64.
    let proxy = Proxy::start("dXNlcjpzZWNyZXQ=").await;
    let sim = crate::harness::process_simulator().await;
    let api = ZoomApi::start(
        &sim,
        ApiConfig {
            account_id: "acct-1".into(),
            oauth_client_id: "s2s-id".into(),
            oauth_client_secret: "s2s-secret".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let cfg = RestConfig {
        api_base_url: api.base_url(),
        oauth_base_url: api.base_url(),
        account_id: "acct-1".into(),
        oauth_client_id: "s2s-id".into(),
        oauth_client_secret: "s2s-secret".into(),
        rtms_client_id: host_process::CLIENT_ID.into(),
    };
    let tls = rtms_client::transport::tls_config(None).unwrap();
    let via = |password: &str| {
        rtms_client::ProxySetting::Url(format!("http://user:{password}@{}", proxy.addr))
    };
    let id = api.prepare(
        script(4, vec![]),
        MeetingOptions {
            pace: Pace::Fast,
            ..Default::default()
        },
    );
    let rest = ZoomRest::new(cfg.clone(), tls.clone(), &via("secret"));
    within("the start call", rest.rtms_status(&id, Action::Start))
        .await
        .expect("the start through the proxy");
    let api_authority = api.base_url().trim_start_matches("http://").to_owned();
    let tunnels = proxy.tunnels.lock().unwrap().clone();
    assert!(!tunnels.is_empty(), "no call went through the proxy");
    assert!(
        tunnels.iter().all(|t| *t == api_authority),
        "{tunnels:?} vs {api_authority}"
    );
    assert_eq!(api.counts().tokens_issued, 1);
    assert_eq!(
        api.counts().status_calls,
        [(id.clone(), "start".into(), 204)]
    );

    // The proxy refuses wrong credentials: the call fails naming the proxy, not Zoom.
    let refused = ZoomRest::new(cfg, tls, &via("wrong"));
    let e = within("the refused token call", refused.token())
        .await
        .unwrap_err();
    assert!(e.contains("proxy") && e.contains("rtms.proxy"), "{e}");
    assert_eq!(*proxy.refused.lock().unwrap(), 1);
    assert_eq!(
        api.counts().tokens_issued,
        1,
        "nothing reached Zoom directly"
    );
}
