//! A start through Zoom's REST API (`POST /admin/rtms/start`, what `rtms-host start` and the
//! Zoom App call) on one host of a cluster answers with the stream once its started webhook
//! is logged, although Zoom sent that webhook to another host.

use rtms_proto::Product;
use rtms_sim::api::{ApiConfig, ZoomApi};
use rtms_sim::{MeetingOptions, MeetingScript, Pace};

use crate::check::served_exactly_once;
use crate::rig::{ONE_AT_A_TIME, Rig, http, simulator, within};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_start_answers_when_another_host_took_the_webhook() {
    let _one = ONE_AT_A_TIME.lock().await;
    let sim = simulator().await;
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
    let base = api.base_url();
    let zoom = format!("[zoom]\napi_base_url = {base:?}\noauth_base_url = {base:?}\n");
    let env: Vec<(String, String)> = [
        ("ZOOM_ACCOUNT_ID", "acct-1"),
        ("ZOOM_OAUTH_CLIENT_ID", "s2s-id"),
        ("ZOOM_OAUTH_CLIENT_SECRET", "s2s-secret"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    let rig = Rig::start_on(2, sim, |i, spec| {
        spec.extra = zoom.clone();
        spec.env = env.clone();
        spec.admin = i == 0;
    })
    .await;
    // Zoom sends the started webhook to host-b only; host-a is asked to start.
    let script = MeetingScript::builder()
        .synthetic_speech(2, 30, 10)
        .build()
        .unwrap();
    let id = api.prepare(
        script,
        MeetingOptions {
            product: Product::Meeting,
            pace: Pace::Realtime,
            webhook_url: Some(rig.host(1).webhook_url()),
            ..Default::default()
        },
    );
    let admin = rig.admin_addr(0);
    let path = format!("/admin/rtms/start?meeting={}", query_value(&id));
    let asked = tokio::task::spawn_blocking(move || http(admin, "POST", &path));
    let (status, body) = within("the start's answer", asked).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let m = api.meeting(&id).expect("the start started the meeting");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["stream_id"], m.stream_id(), "{body}");
    assert_eq!(answer["accepted"], true, "{body}");
    assert_eq!(
        rig.host(0).count_logs("webhook accepted"),
        0,
        "the webhook reached host-b only"
    );
    let ledger = within("the meeting to finish", m.finished()).await;
    let rec = crate::check::meeting_ended(&rig.seq_file(m.stream_id())).await;
    assert_eq!(served_exactly_once(m.stream_id(), &ledger, &rec), 0);
}
