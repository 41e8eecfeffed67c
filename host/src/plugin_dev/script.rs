//! A scripted meeting as a recording: the simulator plays the script at full speed on
//! loopback to a host whose pipeline runs no plugin, and records every message it sends; the
//! test then replays that recording like any other. The meeting and stream ids are the
//! script's file stem, so what a plugin names after them is stable from run to run.
//!
//! Every play of a script gives the same frames in the same order, so a test never depends
//! on how the machine scheduled the play:
//!
//! - the script's clock starts at a fixed time ([`CLOCK_ORIGIN_MS`]), so every frame's
//!   timestamp is that plus its time in the script;
//! - the recording is put in the script's order ([`canonical`]): the frames sorted by their
//!   time in the script, and at the same time events first, then audio, video, share,
//!   transcript and chat (the order the simulator plays them in), each socket's own order
//!   kept; the keep-alives, which depend on the wall clock, left out.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rtms_client::{Decoded, decode};
use rtms_config::{LoadOptions, MapEnv, Pipeline};
use rtms_sim::{MeetingOptions, MeetingScript, Pace, SimConfig, Simulator};

use crate::service::{Service, StartOptions};

const CLIENT_ID: &str = "plugin_test_client";
const CLIENT_SECRET: &str = "plugin_test_secret";
const WEBHOOK_SECRET: &str = "plugin_test_webhook_secret";

/// Plays `script` and writes what the simulator sent to `dest` (the `replay` format).
pub async fn record(
    script: &Path,
    media: &[String],
    zoom: &toml::Table,
    dest: &Path,
) -> Result<()> {
    let meeting = MeetingScript::from_file(script).map_err(|e| anyhow::anyhow!("{e}"))?;
    let stem = script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "meeting".into());
    let work = dest.parent().unwrap_or(Path::new("."));
    let sim = Simulator::start(sim_config()).await?;
    let svc = start_host(media, zoom, work).await?;
    let handle = sim.start_meeting(
        meeting,
        MeetingOptions {
            pace: Pace::Fast,
            webhook_url: Some(format!("http://{}/webhook", svc.addr())),
            meeting_id: Some(stem.clone()),
            stream_id: Some(stem),
            record: Some(dest.to_path_buf()),
            clock_origin_ms: Some(CLOCK_ORIGIN_MS),
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
    let text =
        std::fs::read_to_string(dest).with_context(|| format!("cannot read {}", dest.display()))?;
    std::fs::write(dest, canonical(&text)?)
        .with_context(|| format!("cannot write {}", dest.display()))
}

/// The Unix time (ms) a scripted meeting's time 0 is stamped with in a test:
/// 2026-01-01T00:00:00Z.
pub const CLOCK_ORIGIN_MS: u64 = 1_767_225_600_000;

/// One line of a recording, its message kept as sent.
#[derive(serde::Deserialize, serde::Serialize)]
struct Line {
    at_ms: u64,
    socket: String,
    msg: Box<serde_json::value::RawValue>,
}

/// A recording of a script played with [`CLOCK_ORIGIN_MS`], in the script's order: what
/// came before the first frame (the handshakes), the frames sorted by (time, rank) with
/// each socket's order kept among equals, then what came after the last frame (the stop);
/// keep-alives left out. A frame's `at_ms` becomes its time in the script.
pub fn canonical(text: &str) -> Result<String> {
    let (mut head, mut frames, mut tail) = (Vec::new(), Vec::new(), Vec::new());
    for (i, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line: Line = serde_json::from_str(l)
            .with_context(|| format!("line {} of the recording is not a recording line", i + 1))?;
        let msg = line.msg.get().as_bytes();
        match decode(msg) {
            Ok(Decoded::Frame(f)) => {
                let rank = rtms_proto::msg::peek_type(msg).unwrap_or(0);
                frames.push((f.timestamp_ms, rank, line));
            }
            Ok(Decoded::KeepAlive { .. }) => {}
            _ if frames.is_empty() => head.push(line),
            _ => tail.push(line),
        }
    }
    // Events are msg 6, media 14 (audio) to 18 (chat): the simulator's order at equal times.
    frames.sort_by_key(|(ts, rank, _)| (*ts, *rank));
    let mut out = String::new();
    let mut last = 0;
    for mut line in head {
        line.at_ms = 0;
        push_line(&mut out, &line)?;
    }
    for (ts, _, mut line) in frames {
        line.at_ms = ts.saturating_sub(CLOCK_ORIGIN_MS);
        last = line.at_ms;
        push_line(&mut out, &line)?;
    }
    for mut line in tail {
        line.at_ms = last;
        push_line(&mut out, &line)?;
    }
    Ok(out)
}

fn push_line(out: &mut String, line: &Line) -> Result<()> {
    out.push_str(&serde_json::to_string(line)?);
    out.push('\n');
    Ok(())
}

/// A host with no plugin that asks Zoom for the `media` kinds (as `zoom` says), its files
/// under `work`.
async fn start_host(media: &[String], zoom: &toml::Table, work: &Path) -> Result<Service> {
    let doc = live_pipeline(media, zoom, &work.join("record-dead-letter"));
    let path = work.join("record-pipeline.toml");
    start_service(&toml::to_string(&doc)?, &path, &[]).await
}

/// Starts a host on 127.0.0.1 (a free port) with the pipeline `text`, written to `path`,
/// and the credentials the simulator uses ([`sim_config`]) and `vars` in its environment.
pub(super) async fn start_service(
    text: &str,
    path: &Path,
    vars: &[(String, String)],
) -> Result<Service> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    let mut env = MapEnv::new()
        .with("ZM_RTMS_CLIENT", CLIENT_ID)
        .with("ZM_RTMS_SECRET", CLIENT_SECRET)
        .with("ZOOM_SECRET_TOKEN", WEBHOOK_SECRET);
    for (k, v) in vars {
        env = env.with(k, v);
    }
    let pipeline = Pipeline::parse(text, path, &env, LoadOptions::default())
        .map_err(|e| anyhow::anyhow!("the pipeline is refused: {e}"))?;
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

/// The simulator's settings for a host [`start_service`] started: its credentials, plain
/// `ws://` on loopback.
pub(super) fn sim_config() -> SimConfig {
    SimConfig {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        tls: false,
        ..SimConfig::default()
    }
}

/// A pipeline that takes the simulator's streams on loopback: `[server]` on 127.0.0.1, no
/// admin listener, `[rtms]` asking Zoom for every kind the plugin takes (video and share are
/// left out when it does not take them: they are large), with the `[rtms]` keys of `zoom`
/// (the plugin's pipeline's: per-speaker audio, its events), and accepting the simulator's
/// `ws://` URLs on 127.0.0.1, no file watching; dead letters in `dead_letters`.
pub(super) fn live_pipeline(
    media: &[String],
    zoom: &toml::Table,
    dead_letters: &Path,
) -> toml::Table {
    use toml::{Table, Value};
    let strings =
        |v: Vec<&str>| Value::Array(v.into_iter().map(|x| Value::String(x.into())).collect());
    let mut kinds: Vec<&str> = media
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "event")
        .collect();
    if kinds.is_empty() {
        kinds.push("transcript");
    }
    let mut doc = Table::new();
    doc.insert("version".into(), Value::Integer(1));
    let mut server = Table::new();
    server.insert("listen".into(), Value::String("127.0.0.1:0".into()));
    doc.insert("server".into(), Value::Table(server));
    let mut admin = Table::new();
    admin.insert("enabled".into(), Value::Boolean(false));
    doc.insert("admin".into(), Value::Table(admin));
    let mut rtms = Table::new();
    rtms.insert("media".into(), strings(kinds));
    if media.iter().any(|k| k == "event") {
        let events = vec![
            "participant-join",
            "participant-leave",
            "active-speaker-change",
            "sharing-start",
            "sharing-stop",
        ];
        rtms.insert("events".into(), strings(events));
    }
    rtms.insert(
        "allowed_hosts".into(),
        strings(vec!["127.0.0.1", "localhost"]),
    );
    rtms.insert("allow_insecure_ws".into(), Value::Boolean(true));
    rtms.extend(zoom.clone());
    doc.insert("rtms".into(), Value::Table(rtms));
    let mut runtime = Table::new();
    runtime.insert(
        "dead_letter_dir".into(),
        Value::String(dead_letters.display().to_string()),
    );
    let mut reload = Table::new();
    reload.insert("watch".into(), Value::Boolean(false));
    runtime.insert("reload".into(), Value::Table(reload));
    doc.insert("runtime".into(), Value::Table(runtime));
    doc
}

/// Checks that `p` names a meeting script that parses.
pub fn check(p: &Path) -> Result<()> {
    MeetingScript::from_file(p)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("meeting script {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(socket: &str, msg: &str) -> String {
        format!(r#"{{"at_ms":7,"socket":"{socket}","msg":{msg}}}"#)
    }

    fn event(at: u64) -> String {
        let ts = CLOCK_ORIGIN_MS + at;
        line(
            "signaling",
            &format!(
                r#"{{"msg_type":6,"timestamp":{ts},"event":{{"event_type":2,"timestamp":{ts},"user_id":1,"user_name":"A"}}}}"#
            ),
        )
    }

    fn media(ty: u32, at: u64, data: &str) -> String {
        let ts = CLOCK_ORIGIN_MS + at;
        line(
            "media",
            &format!(
                r#"{{"msg_type":{ty},"content":{{"user_id":1,"user_name":"A","data":"{data}","timestamp":{ts}}}}}"#
            ),
        )
    }

    /// However the sockets' writes interleaved, the frames come out in script order: by
    /// time, events before media at the same time, each socket's order kept among equals;
    /// handshakes first, the stop last, keep-alives gone.
    #[test]
    fn a_recording_is_put_in_the_scripts_order() {
        let hello = line("signaling", r#"{"msg_type":2,"status_code":0}"#);
        let ping = line("signaling", r#"{"msg_type":12,"timestamp":5}"#);
        let stop = line(
            "signaling",
            r#"{"msg_type":8,"rtms_stream_id":"s","state":4,"reason":6}"#,
        );
        let recorded = [
            hello.clone(),
            media(14, 20, "AAAA"),
            media(17, 40, "late line"),
            media(14, 40, "BBBB"),
            event(40),
            ping,
            media(18, 40, "chat"),
            event(10),
            stop.clone(),
        ]
        .join("\n");
        let out = canonical(&recorded).unwrap();
        let order: Vec<String> = out
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{}@{}", v["msg"]["msg_type"], v["at_ms"])
            })
            .collect();
        assert_eq!(
            order,
            [
                "2@0", "6@10", "14@20", "6@40", "14@40", "17@40", "18@40", "8@40"
            ],
            "{out}"
        );
    }
}
