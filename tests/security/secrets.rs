//! A plugin's secret never leaves the host through the host: a real `rtms-host run` process
//! with a plugin granted a secret (it reads it, emits only its length, and traps once so
//! there are dead letters), a simulated meeting, then every byte the run produced is
//! searched for the value: the host's log (trace level for the project's crates), every file under the host's
//! directory (outputs, dead letters, the compile cache), and the admin API's answers
//! (`/admin/config`, `/metrics`, `/admin/metrics`, `/admin/plugins`, `/admin/sessions`).

use std::path::Path;
use std::time::Duration;

use rtms_sim::{MeetingOptions, MeetingScript, Pace};

use crate::host_process::every_file;
use crate::{HostProcess, SIM_ALLOW, client, serial, simulator};

const SECRET_VALUE: &str = "sk-live-7f3a9c1e5b2d4068a1c3e5f7";

fn plugin_dir() -> &'static Path {
    Path::new(rtms_host::cli::demo::BUILT_PLUGINS_DIR)
}

fn pipeline(out: &Path) -> String {
    format!(
        "version = 1\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [rtms]\nmedia = [\"transcript\"]\n{SIM_ALLOW}\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [runtime]\ncache_dir = \"cache\"\ndead_letter_dir = \"dead\"\nshutdown_grace_ms = 3000\n\n\
         [runtime.reload]\nwatch = false\n\n\
         [[plugin]]\nname = \"keyed\"\ncomponent = \"{}\"\nmedia = [\"transcript\"]\n\
         secrets = [\"PROVIDER_API_KEY\"]\n\n\
         [plugin.config]\nsecret = \"PROVIDER_API_KEY\"\ntrap_once = 1\ntrap_after = 3\n\n\
         [[sink]]\ntype = \"jsonl\"\npath = \"{}\"\n",
        plugin_dir().join("stateful.wasm").display(),
        out.join("outputs.jsonl").display(),
    )
}

async fn admin_get(addr: &str, path: &str) -> String {
    let uri: hyper::Uri = format!("http://{addr}{path}").parse().unwrap();
    let res = client().get(uri).await.expect("admin answers");
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap();
    String::from_utf8_lossy(&body.to_bytes()).into_owned()
}

#[tokio::test]
async fn a_granted_secret_reaches_the_plugin_and_nothing_the_host_writes() {
    let _serial = serial().await;
    let out = tempfile::tempdir().unwrap();
    let host = HostProcess::start_with_env(
        &pipeline(out.path()),
        &[
            ("PROVIDER_API_KEY", SECRET_VALUE),
            (
                "RUST_LOG",
                "info,rtms_host=trace,rtms_client=trace,rtms_config=trace",
            ),
        ],
    );
    let ready = host
        .wait_for_log("rtms-host ready", Duration::from_secs(5))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let admin = v["fields"]["admin"].as_str().unwrap_or_default();
    let admin = admin
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .to_owned();
    let sim = simulator().await;
    let script = MeetingScript::builder()
        .synthetic_speech(2, 40, 1)
        .build()
        .unwrap();
    let meeting = sim
        .start_meeting(
            script,
            MeetingOptions {
                pace: Pace::Fast,
                webhook_url: Some(host.webhook_url()),
                stream_id: Some("secret-stream".into()),
                ..Default::default()
            },
        )
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), meeting.finished())
        .await
        .expect("the meeting finishes");
    // The plugin's end-of-session output is the last thing the session writes.
    let ended = out.path().join("outputs.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&ended)
        .unwrap_or_default()
        .contains("\"kind\":\"state\"")
    {
        assert!(std::time::Instant::now() < deadline, "the session ends");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answers = Vec::new();
    for path in [
        "/admin/config",
        "/metrics",
        "/admin/metrics",
        "/admin/plugins",
        "/admin/sessions",
    ] {
        answers.push((path, admin_get(&admin, path).await));
    }
    // The host's directory (dead letters, compile cache) while it still exists.
    let host_files = every_file(host.dir.path());
    let logs = host.stop().join("\n");
    let outputs = std::fs::read_to_string(out.path().join("outputs.jsonl")).unwrap_or_default();

    // The plugin got the value: it emitted its length.
    assert!(
        outputs.contains(&format!("\\\"len\\\":{}", SECRET_VALUE.len()))
            || outputs.contains(&format!("\"len\":{}", SECRET_VALUE.len())),
        "the plugin read its secret: {outputs}"
    );
    // It trapped once, so the dead letters hold a batch and the trap's report.
    assert!(logs.contains("trapping once"), "the trap is in the log");
    // /admin/config names the grant and hides the value.
    let config = &answers[0].1;
    assert!(config.contains("PROVIDER_API_KEY"), "{config}");

    assert!(
        !logs.contains(SECRET_VALUE),
        "the host's log holds the secret"
    );
    for (path, body) in &answers {
        assert!(!body.contains(SECRET_VALUE), "{path} holds the secret");
    }
    assert!(
        host_files
            .iter()
            .any(|(p, _)| p.to_string_lossy().contains("dead")),
        "the trap left dead letters to search"
    );
    let mut searched = 0;
    for (p, bytes) in every_file(out.path()).into_iter().chain(host_files) {
        searched += 1;
        let hit = bytes
            .windows(SECRET_VALUE.len())
            .any(|w| w == SECRET_VALUE.as_bytes());
        assert!(!hit, "{} holds the secret", p.display());
    }
    assert!(
        searched >= 3,
        "outputs, dead letters and the cache were searched"
    );
}
