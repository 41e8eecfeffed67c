//! A scripted meeting as a recording: the simulator plays the script at full speed on
//! loopback to a host whose pipeline runs no plugin, and records every message it sends; the
//! test then replays that recording like any other. The meeting and stream ids are the
//! script's file stem, so what a plugin names after them is stable from run to run.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rtms_config::{LoadOptions, MapEnv, Pipeline};
use rtms_sim::{MeetingOptions, MeetingScript, Pace, SimConfig, Simulator};

use crate::service::{Service, StartOptions};

const CLIENT_ID: &str = "plugin_test_client";
const CLIENT_SECRET: &str = "plugin_test_secret";
const WEBHOOK_SECRET: &str = "plugin_test_webhook_secret";

/// Plays `script` and writes what the simulator sent to `dest` (the `replay` format).
pub async fn record(script: &Path, media: &[String], dest: &Path) -> Result<()> {
    let meeting = MeetingScript::from_file(script).map_err(|e| anyhow::anyhow!("{e}"))?;
    let stem = script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "meeting".into());
    let work = dest.parent().unwrap_or(Path::new("."));
    let sim = Simulator::start(SimConfig {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        tls: false,
        ..SimConfig::default()
    })
    .await?;
    let svc = start_host(media, work).await?;
    let handle = sim.start_meeting(
        meeting,
        MeetingOptions {
            pace: Pace::Fast,
            webhook_url: Some(format!("http://{}/webhook", svc.addr())),
            meeting_id: Some(stem.clone()),
            stream_id: Some(stem),
            record: Some(dest.to_path_buf()),
            ..MeetingOptions::default()
        },
    )?;
    handle.finished().await;
    let _ = tokio::time::timeout(Duration::from_secs(30), svc.sessions().idle()).await;
    svc.shutdown().await;
    drop(handle);
    drop(sim);
    anyhow::ensure!(
        dest.is_file(),
        "the simulator recorded nothing for {}",
        script.display()
    );
    Ok(())
}

/// A host with no plugin that asks Zoom for the `media` kinds, its files under `work`.
async fn start_host(media: &[String], work: &Path) -> Result<Service> {
    let text = recording_pipeline(media, work);
    let path = work.join("record-pipeline.toml");
    std::fs::write(&path, &text)?;
    let env = MapEnv::new()
        .with("ZM_RTMS_CLIENT", CLIENT_ID)
        .with("ZM_RTMS_SECRET", CLIENT_SECRET)
        .with("ZOOM_SECRET_TOKEN", WEBHOOK_SECRET);
    let pipeline = Pipeline::parse(&text, &path, &env, LoadOptions::default())
        .map_err(|e| anyhow::anyhow!("the recording pipeline is refused: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Service::start(
        pipeline,
        Box::new(env),
        listener,
        StartOptions {
            watch: Some(false),
            ..Default::default()
        },
    )
    .await
}

/// The recording host's pipeline.toml: Zoom sends what the host asks for, every kind the
/// plugin takes (video and share are left out when it does not take them: they are large).
fn recording_pipeline(media: &[String], work: &Path) -> String {
    let mut kinds: Vec<String> = media
        .iter()
        .filter(|k| k.as_str() != "event")
        .cloned()
        .collect();
    if kinds.is_empty() {
        kinds.push("transcript".into());
    }
    let events = if media.iter().any(|k| k == "event") {
        r#"events = ["participant-join", "participant-leave", "active-speaker-change", "sharing-start", "sharing-stop"]"#
    } else {
        ""
    };
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
[admin]
enabled = false
[rtms]
media = {media}
{events}
allowed_hosts = ["127.0.0.1", "localhost"]
allow_insecure_ws = true
[runtime]
dead_letter_dir = "{dead}"
[runtime.reload]
watch = false
"#,
        media = toml::Value::Array(kinds.into_iter().map(toml::Value::String).collect()),
        dead = work.join("record-dead-letter").display(),
    )
}

/// Checks that `p` names a meeting script that parses.
pub fn check(p: &Path) -> Result<()> {
    MeetingScript::from_file(p)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("meeting script {}", p.display()))
}
