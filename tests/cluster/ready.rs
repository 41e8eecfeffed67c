//! `/readyz` on a host of a cluster tells a load balancer to steer away: 503 "at the stream
//! cap" while the host carries its `rtms.max_streams` (new streams then go to another host),
//! 503 "draining" from the moment SIGTERM starts its drain; no meeting ends. On the way, a
//! start through Zoom's REST API (`POST /admin/rtms/start`, what `rtms-host start` and the
//! Zoom App call) on the full host answers with the stream, although Zoom sent its started
//! webhook to the other host and the stream runs there.

use std::time::Duration;

use rtms_proto::Product;
use rtms_sim::api::{ApiConfig, ZoomApi};
use rtms_sim::{MeetingHandle, MeetingOptions, MeetingScript, Pace};

use crate::check::served_exactly_once;
use crate::rig::{
    LIMIT, ONE_AT_A_TIME, Rig, eventually, frames_in, http, http_get, simulator, within,
};

/// `/readyz` on the admin listener at `admin`.
async fn readyz(admin: std::net::SocketAddr) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(admin, "/readyz"))
        .await
        .unwrap()
}

/// `id` as one query parameter value.
fn query_value(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The simulator's Zoom REST API, and the `[zoom]` table and environment a host needs to
/// call it.
async fn zoom_api(sim: &rtms_sim::Simulator) -> (ZoomApi, String, Vec<(String, String)>) {
    let cfg = ApiConfig {
        account_id: "acct-1".into(),
        oauth_client_id: "s2s-id".into(),
        oauth_client_secret: "s2s-secret".into(),
        ..Default::default()
    };
    let api = ZoomApi::start(sim, cfg).await.unwrap();
    let base = api.base_url();
    let zoom = format!("[zoom]\napi_base_url = {base:?}\noauth_base_url = {base:?}\n");
    let env = [
        ("ZOOM_ACCOUNT_ID", "acct-1"),
        ("ZOOM_OAUTH_CLIENT_ID", "s2s-id"),
        ("ZOOM_OAUTH_CLIENT_SECRET", "s2s-secret"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    (api, zoom, env)
}

/// Starts a meeting through `POST /admin/rtms/start` on `admin`, with Zoom sending its
/// started webhook to `webhook_url`; checks the answer names the meeting's stream.
async fn rest_start(
    api: &ZoomApi,
    admin: std::net::SocketAddr,
    webhook_url: &str,
) -> MeetingHandle {
    let script = MeetingScript::builder()
        .synthetic_speech(2, 40, 10)
        .build()
        .unwrap();
    let id = api.prepare(
        script,
        MeetingOptions {
            product: Product::Meeting,
            pace: Pace::Realtime,
            webhook_url: Some(webhook_url.to_owned()),
            ..Default::default()
        },
    );
    let path = format!("/admin/rtms/start?meeting={}", query_value(&id));
    let asked = tokio::task::spawn_blocking(move || http(admin, "POST", &path));
    let (status, body) = within("the start's answer", asked).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let m = api.meeting(&id).expect("the start started the meeting");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["stream_id"], m.stream_id(), "{body}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_full_then_draining_and_a_rest_start_answers_on_any_host() {
    let _one = ONE_AT_A_TIME.lock().await;
    let sim = simulator().await;
    let (api, zoom, env) = zoom_api(&sim).await;
    // host-a alone first, with room for two streams.
    let mut rig = Rig::start_on(1, sim, |_, spec| {
        spec.admin = true;
        spec.max_streams = 2;
        spec.extra = zoom.clone();
        spec.env = env.clone();
    })
    .await;
    let admin = rig.admin_addr(0);
    assert_eq!(readyz(admin).await, (200, "ready\n".to_owned()));
    let mut meetings: Vec<_> = (0..2).map(|_| rig.meeting(40)).collect();
    for m in &meetings {
        eventually("every meeting to reach its plugin", || {
            frames_in(&rig.seq_file(m.stream_id())) >= 2
        })
        .await;
    }
    assert_eq!(
        readyz(admin).await,
        (
            503,
            "not ready: at the stream cap (rtms.max_streams = 2)\n".to_owned()
        )
    );
    // A second host joins. The full host is asked to start a meeting whose webhook Zoom
    // sends to the other; it answers, and the stream runs at the host with room.
    rig.add_host("host-b").await;
    meetings.push(rest_start(&api, admin, &rig.host(1).webhook_url()).await);
    let third = meetings[2].stream_id().to_owned();
    eventually("a new stream to run at the host with room", || {
        frames_in(&rig.seq_file(&third)) >= 2 && rig.owners(&third) == [1]
    })
    .await;
    let at_a = rig.host(0).logs();
    assert!(
        !at_a
            .iter()
            .any(|l| l.contains("webhook accepted") && l.contains(&third)),
        "the webhook reached host-b only"
    );

    // The engine paused: the drain holds at its first write, so /readyz is asked while the
    // host certainly drains (a pause far shorter than the lease changes nothing else).
    let nats = rig.nats.as_ref().unwrap().pid().to_string();
    let signal = |sig: &str, pid: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP", &nats);
    rig.signal(0, "TERM");
    let host = rig.hosts[0].take().unwrap();
    rig.rebalance();
    let host = tokio::task::spawn_blocking(move || {
        let draining = host.wait_for_log("cluster: draining", LIMIT);
        (host, draining)
    });
    let (mut host, draining) = host.await.unwrap();
    let answer = readyz(admin).await;
    signal("-CONT", &nats);
    assert!(draining.is_some_and(|l| l.contains("\"streams\":2")));
    assert_eq!(
        answer,
        (
            503,
            "not ready: draining: handing its streams to the other hosts of the cluster\n"
                .to_owned()
        )
    );
    let done = host
        .wait_for_log("cluster: drain done", LIMIT)
        .expect("the drain finished");
    assert!(
        done.contains("\"handed\":2") && done.contains("\"left\":0"),
        "{done}"
    );
    let status = tokio::task::spawn_blocking(move || host.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    for m in &meetings {
        let ledger = within("the meeting to finish", m.finished()).await;
        let rec = crate::check::meeting_ended(&rig.seq_file(m.stream_id())).await;
        // Exactly once, in order, to the end; a line may be missing only if it went out on
        // a socket that closed unread while the stream changed hosts (the ledger's
        // `unconfirmed`), as in every other takeover.
        served_exactly_once(m.stream_id(), &ledger, &rec);
    }
}
