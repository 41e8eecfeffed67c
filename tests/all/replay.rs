//! `rtms-host replay` of the sample meeting in examples/recordings: the transcript writer's
//! files and the keyword alerter's alerts must match the golden files in
//! tests/golden/replay byte for byte. `BLESS=1` rewrites the golden files after an
//! intended change.

use std::path::{Path, PathBuf};

use rtms_config::{LoadOptions, MapEnv, Pipeline};
use rtms_host::sandbox::bindings::EndReason;
use rtms_host::service::replay::{ReplayArgs, replay_file};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pipeline(dir: &Path) -> Pipeline {
    let text = format!(
        r#"
version = 1
[runtime]
cache_dir = "{cache}"
dead_letter_dir = "{out}/dead"
[runtime.reload]
watch = false

[[plugin]]
name = "transcript-text"
component = "{plugins}/transcript_writer.wasm"
media = ["transcript", "chat"]
[[plugin.dir]]
host = "{out}/transcripts"
guest = "/out"
[plugin.config]
format = "text"
include_chat = true

[[plugin]]
name = "transcript-jsonl"
component = "{plugins}/transcript_writer.wasm"
media = ["transcript", "chat"]
[[plugin.dir]]
host = "{out}/transcripts"
guest = "/out"
[plugin.config]
format = "jsonl"
include_chat = true

[[plugin]]
name = "keyword-alerter"
component = "{plugins}/keyword_alerter.wasm"
media = ["transcript", "chat"]
[plugin.config]
keywords = ["deadline", "budget", "blocker"]
cooldown_ms = 10000
include_chat = true

[[sink]]
type = "jsonl"
path = "{out}/alerts.jsonl"
"#,
        cache = crate::util::cache_dir().display(),
        out = dir.display(),
        plugins = rtms_host::cli::demo::BUILT_PLUGINS_DIR,
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, &text).unwrap();
    Pipeline::parse(&text, &path, &MapEnv::new(), LoadOptions::validate_only()).unwrap()
}

/// Outputs without the fields that change from run to run (wall-clock time, session
/// handle), grouped by plugin: each plugin's outputs keep their order, but plugins run
/// concurrently, so their interleaving is not part of the contract.
fn stable_alerts(text: &str) -> String {
    let mut lines: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("time_ms");
            o.remove("session");
            let plugin = o["plugin"].as_str().unwrap().to_owned();
            (plugin, serde_json::to_string(&v).unwrap() + "\n")
        })
        .collect();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    lines.into_iter().map(|(_, l)| l).collect()
}

fn check_golden(name: &str, actual: &str) {
    let path = root().join("tests/golden/replay").join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with BLESS=1 to create it)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from {}:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[tokio::test]
async fn replay_of_the_sample_meeting_matches_the_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let summary = replay_file(
        &p,
        &ReplayArgs {
            file: root().join("examples/recordings/standup.jsonl"),
            config: p.path.clone(),
            realtime: false,
            product: rtms_proto::Product::Meeting,
            meeting_id: Some("standup-meeting".into()),
            stream_id: Some("standup".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.skipped_lines, 0);
    assert!(
        matches!(summary.end, EndReason::Stopped(_)),
        "{:?}",
        summary.end
    );
    for (name, m) in &summary.metrics.plugins {
        assert_eq!(m.traps + m.errors + m.dead_lettered, 0, "{name}: {m:?}");
    }
    let text = std::fs::read_to_string(dir.path().join("transcripts/meeting_standup.txt")).unwrap();
    let jsonl =
        std::fs::read_to_string(dir.path().join("transcripts/meeting_standup.jsonl")).unwrap();
    let alerts = stable_alerts(&std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap());
    assert!(text.lines().count() > 10, "{text}");
    assert!(alerts.lines().count() >= 3, "{alerts}");
    check_golden("meeting_standup.txt", &text);
    check_golden("meeting_standup.jsonl", &jsonl);
    check_golden("alerts.jsonl", &alerts);
}

/// The sample meeting's script.
fn standup_script() -> rtms_sim::MeetingScript {
    rtms_sim::MeetingScript::from_file(root().join("examples/meetings/standup.toml"))
        .expect("the standup script")
}

/// Audio milliseconds the script speaks, per speaker's user id.
fn scripted_speech_ms(script: &rtms_sim::MeetingScript) -> u64 {
    script.utterances.iter().map(|u| u.duration_ms).sum()
}

/// The recording's lines, parsed.
fn recording_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn the_sample_recording_holds_the_whole_meeting_with_its_audio() {
    let path = root().join("examples/recordings/standup.jsonl");
    let script = standup_script();
    let lines = recording_lines(&path);
    let media: Vec<&serde_json::Value> = lines.iter().map(|l| &l["msg"]).collect();
    let count = |t: u64| media.iter().filter(|m| m["msg_type"] == t).count();
    // The confirmed audio format, and audio for every scripted millisecond of speech.
    let params = media
        .iter()
        .find(|m| m["msg_type"] == 4)
        .expect("a data handshake response");
    let audio = &params["media_params"]["audio"];
    let frame_ms = audio["send_rate"].as_u64().unwrap();
    let audio_frames = count(14) as u64;
    assert_eq!(
        audio_frames,
        script
            .utterances
            .iter()
            .map(|u| u.duration_ms.div_ceil(frame_ms))
            .sum::<u64>(),
        "one audio frame per {frame_ms} ms of every utterance ({} ms of speech)",
        scripted_speech_ms(&script)
    );
    assert_eq!(count(17), script.utterances.len(), "every transcript line");
    assert_eq!(count(18), script.chats.len(), "every chat message");
    // Mixed audio, tagged as Zoom tags it.
    for m in media.iter().filter(|m| m["msg_type"] == 14) {
        assert_eq!(m["content"]["user_id"], -1, "{m}");
        assert_eq!(m["content"]["user_name"], "", "{m}");
    }
    // From the first utterance to the last: the audio's span is the speech's span.
    let audio_ts: Vec<u64> = media
        .iter()
        .filter(|m| m["msg_type"] == 14)
        .map(|m| m["content"]["timestamp"].as_u64().unwrap())
        .collect();
    let audio_span = audio_ts.iter().max().unwrap() - audio_ts.iter().min().unwrap() + frame_ms;
    let first_start = script.utterances.iter().map(|u| u.start_ms).min().unwrap();
    let last_end = script
        .utterances
        .iter()
        .map(|u| u.start_ms + u.duration_ms)
        .max()
        .unwrap();
    assert!(
        audio_span.abs_diff(last_end - first_start) <= 100,
        "audio spans the speech ({} ms), got {audio_span} ms",
        last_end - first_start
    );
}

#[tokio::test]
async fn replaying_the_sample_recording_gives_the_meeting_s_audio() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
version = 1
[runtime]
cache_dir = "{cache}"
dead_letter_dir = "{out}/dead"
[runtime.reload]
watch = false
[[plugin]]
name = "audio-recorder"
component = "{plugins}/audio_recorder.wasm"
media = ["audio"]
[[plugin.dir]]
host = "{out}/audio"
guest = "/out"
[plugin.config]
dir = "/out"
fill_gaps = true
"#,
        cache = crate::util::cache_dir().display(),
        out = dir.path().display(),
        plugins = rtms_host::cli::demo::BUILT_PLUGINS_DIR,
    );
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, &text).unwrap();
    let p = Pipeline::parse(&text, &path, &MapEnv::new(), LoadOptions::validate_only()).unwrap();
    let summary = replay_file(
        &p,
        &ReplayArgs {
            file: root().join("examples/recordings/standup.jsonl"),
            config: p.path.clone(),
            realtime: false,
            product: rtms_proto::Product::Meeting,
            meeting_id: Some("standup-meeting".into()),
            stream_id: Some("standup".into()),
        },
    )
    .await
    .unwrap();
    let rec = &summary.metrics.plugins["audio-recorder"];
    assert_eq!(
        rec.traps + rec.errors + rec.dead_lettered + rec.dropped,
        0,
        "{rec:?}"
    );
    let wav = std::fs::read(dir.path().join("audio/meeting_standup.wav")).expect("a WAV file");
    let rate = u32::from_le_bytes(wav[24..28].try_into().unwrap()) as u64;
    let seconds = (wav.len() as u64 - 44) / (rate * 2);
    let script = standup_script();
    let last_speech_end_s = script
        .utterances
        .iter()
        .map(|u| u.start_ms + u.duration_ms)
        .max()
        .unwrap()
        / 1000;
    assert!(
        seconds + 2 >= last_speech_end_s,
        "the replayed audio spans the meeting: {seconds} s of {last_speech_end_s} s"
    );
}

/// Writes examples/recordings/standup.jsonl anew: the stand-up script played in real time
/// (80 s) to a host that asks for mixed L16 audio at 8 kHz (half the bytes of Zoom's
/// default 16 kHz, to keep the file small), transcript, chat and events. Run it on purpose:
/// `cargo test -p rtms-host --test all regenerate_the_sample_recording -- --ignored`.
#[tokio::test]
#[ignore = "rewrites examples/recordings/standup.jsonl"]
async fn regenerate_the_sample_recording() {
    let sim = rtms_sim::Simulator::start(rtms_sim::SimConfig::default())
        .await
        .expect("simulator");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
version = 1
[server]
listen = "127.0.0.1:0"
[rtms]
media = ["audio", "transcript", "chat"]
allowed_hosts = ["127.0.0.1", "localhost"]
allow_insecure_ws = true
events = ["participant-join", "participant-leave", "active-speaker-change", "sharing-start", "sharing-stop"]
[rtms.audio]
codec = "l16"
sample_rate = 8000
[runtime]
cache_dir = "{cache}"
dead_letter_dir = "{out}/dead"
[runtime.reload]
watch = false
[[plugin]]
name = "noop"
component = "{plugins}/noop.wasm"
media = ["audio", "transcript", "chat", "event"]
"#,
        cache = crate::util::cache_dir().display(),
        out = dir.path().display(),
        plugins = rtms_host::cli::demo::BUILT_PLUGINS_DIR,
    );
    let c = sim.config();
    let env = MapEnv::new()
        .with("ZM_RTMS_CLIENT", &c.client_id)
        .with("ZM_RTMS_SECRET", &c.client_secret)
        .with("ZOOM_SECRET_TOKEN", &c.webhook_secret);
    let path = dir.path().join("pipeline.toml");
    let p = Pipeline::parse(&text, &path, &env, LoadOptions::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let svc = rtms_host::service::Service::start(
        p,
        Box::new(env),
        listener,
        rtms_host::service::StartOptions::default(),
    )
    .await
    .expect("host");
    let out = root().join("examples/recordings/standup.jsonl");
    let meeting = sim
        .start_meeting(
            standup_script(),
            rtms_sim::MeetingOptions {
                // In real time, so `replay --realtime` plays it at the meeting's pace.
                pace: rtms_sim::Pace::Realtime,
                webhook_url: Some(format!("http://{}/webhook", svc.addr())),
                record: Some(out.clone()),
                ..Default::default()
            },
        )
        .expect("meeting");
    meeting.finished().await;
    svc.sessions().idle().await;
    svc.shutdown().await;
    let n = recording_lines(&out).len();
    eprintln!("wrote {} ({n} lines)", out.display());
}
