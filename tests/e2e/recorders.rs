//! The recorders' files read back by real tools: the video recorder's H.264 elementary streams
//! by ffprobe (installed with apt-get when missing) and its JPEG frames counted against the
//! simulator's ledger; the audio recorder's per-speaker WAV files by Python's `wave` module and
//! its raw PCM beside them.

use std::path::{Path, PathBuf};
use std::process::Command;

use rtms_sim::{MediaKind, Pace, Simulator};
use serde_json::Value;

use crate::harness::*;
use crate::util;

/// Debian's ffprobe, installed with apt-get when missing.
fn ffprobe() -> &'static str {
    crate::ops::apt_install(
        "/usr/bin/ffprobe",
        &["ffmpeg"],
        "ffprobe is needed to check the H.264 the video recorder writes",
    );
    "/usr/bin/ffprobe"
}

fn video_plugin(codec: &str) -> String {
    format!(
        r#"
[[plugin]]
name = "video"
component = {:?}
media = ["video", "share"]
[[plugin.dir]]
host = "out"
guest = "/out"
[plugin.queue]
on_full = "block"
[plugin.config]
dir = "/out"
[rtms.video]
codec = "{codec}"
"#,
        util::component("video_recorder").display().to_string()
    )
}

/// A fast meeting of `lines` utterances through a host with the video recorder on `codec`:
/// the host (its files) and the simulator's ledger.
async fn video_meeting(codec: &str, lines: usize) -> (Host, rtms_sim::Ledger) {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let host = start_host(
        &sim,
        Setup {
            extra: video_plugin(codec),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let m = start(
        &sim,
        &host,
        script(lines, vec![]),
        rtms_proto::Product::Meeting,
        Pace::Fast,
    );
    let ledger = finish(&host, &m).await;
    (host, ledger)
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_streams_play_in_ffprobe_with_every_frame_the_simulator_sent() {
    let probe = tokio::task::spawn_blocking(ffprobe).await.unwrap();
    let (host, ledger) = video_meeting("h264", 20).await;
    let sent = ledger.kinds.get(&MediaKind::Video).map_or(0, |k| k.count);
    assert!(sent > 0, "the meeting sends video");
    let streams = files(&host.out_dir(), ".h264");
    assert!(!streams.is_empty(), "no .h264 file in {:?}", host.out_dir());
    let mut frames = 0;
    for s in &streams {
        let out = Command::new(probe)
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames",
                "-of",
                "json",
            ])
            .arg(s)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let st = &v["streams"][0];
        assert_eq!(st["codec_name"], "h264", "{v}");
        // The simulator's sample frame: 64 pixels wide (the coded height is 48).
        assert_eq!(st["width"].as_u64(), Some(64), "{v}");
        assert!(st["height"].as_u64().is_some_and(|h| h > 0), "{v}");
        frames += st["nb_read_frames"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    assert_eq!(
        frames, sent,
        "every video frame is in a stream: {streams:?}"
    );
    // Frames are attributed to the active speaker: one stream per participant who spoke.
    assert!(
        streams
            .iter()
            .all(|s| s.file_name().unwrap().to_string_lossy().contains("_video_")),
        "{streams:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jpeg_frames_become_one_file_each() {
    let (host, ledger) = video_meeting("jpg", 12).await;
    let sent = ledger.kinds.get(&MediaKind::Video).map_or(0, |k| k.count);
    let mut written = 0;
    for dir in std::fs::read_dir(host.out_dir()).unwrap().flatten() {
        if dir.path().is_dir() && dir.file_name().to_string_lossy().contains("_video") {
            for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
                let bytes = std::fs::read(f.path()).unwrap();
                assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "{:?} is a JPEG", f.path());
                written += 1;
            }
        }
    }
    assert!(sent > 0);
    assert_eq!(written, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_speaker_audio_gets_a_wav_per_speaker_and_raw_pcm_beside_it() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let extra = format!(
        r#"
[[plugin]]
name = "audio"
component = {:?}
media = ["audio"]
[[plugin.dir]]
host = "out"
guest = "/out"
[plugin.queue]
on_full = "block"
[plugin.config]
dir = "/out"
fill_gaps = false
keep_raw = true
[rtms.audio]
per_speaker = true
"#,
        util::component("audio_recorder").display().to_string()
    );
    let host = start_host(
        &sim,
        Setup {
            extra,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let m = start(
        &sim,
        &host,
        script(16, vec![]),
        rtms_proto::Product::Meeting,
        Pace::Fast,
    );
    let ledger = finish(&host, &m).await;
    let audio = ledger.kinds.get(&MediaKind::Audio).expect("audio was sent");
    let wavs = files(&host.out_dir(), ".wav");
    let names: Vec<String> = wavs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let stream = rtms_plugin_file_safe(m.stream_id());
    assert_eq!(
        names,
        [
            format!("meeting_{stream}_1001.wav"),
            format!("meeting_{stream}_1002.wav")
        ],
        "one file per speaker of the script"
    );
    // Python's wave module reads every file; the samples add up to what the simulator sent.
    let script = r#"
import json, sys, wave
out = []
for path in sys.argv[1:]:
    with wave.open(path) as w:
        out.append({"rate": w.getframerate(), "channels": w.getnchannels(),
                    "width": w.getsampwidth(), "frames": w.getnframes()})
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&wavs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut bytes = 0;
    for (w, path) in read.iter().zip(&wavs) {
        assert_eq!(w["rate"], 16000, "{w}");
        assert_eq!(w["width"], 2, "{w}");
        let data = w["frames"].as_u64().unwrap() * w["channels"].as_u64().unwrap() * 2;
        assert!(data > 0, "{path:?} holds audio");
        // The raw twin holds exactly the samples the WAV holds (no gap is filled).
        let raw = std::fs::metadata(path.with_extension("pcm")).unwrap().len();
        assert_eq!(raw, data, "{path:?}");
        bytes += data;
    }
    assert_eq!(
        bytes, audio.bytes,
        "every audio byte the simulator sent is in a file"
    );
}

/// The plugin SDK's file-name rule for ids (`file_safe`): anything but ASCII letters, digits,
/// `-` and `.` becomes `_`.
fn rtms_plugin_file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Individual video: three participants turn their video on and off while the host follows
/// the first two with video; each followed participant's JPEG frames land in their own folder,
/// exactly as many as the simulator sent for them, and the subscriptions show in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn individual_video_gives_each_followed_participant_their_own_frames() {
    use rtms_sim::EventKind::{VideoOff, VideoOn};
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let extra = video_plugin("jpg").replace(
        "[rtms.video]\n",
        "[rtms.video]\nmode = \"individual\"\nfollow = \"first-with-video\"\nmax = 2\nfps = 5\n",
    );
    let host = start_host(
        &sim,
        Setup {
            extra,
            admin: true,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let script = rtms_sim::MeetingScript::builder()
        .participant(1, "Ann")
        .participant(2, "Bo")
        .participant(3, "Cy")
        .utterance(1, 100, 400, "good morning")
        .event(100, VideoOn, 1)
        .event(400, VideoOn, 2)
        .event(700, VideoOn, 3)
        .event(1300, VideoOff, 1)
        .duration_ms(2500)
        .build()
        .unwrap();
    let m = start(
        &sim,
        &host,
        script,
        rtms_proto::Product::Meeting,
        Pace::Realtime,
    );
    let ledger = finish(&host, &m).await;
    let subscribed: Vec<(i64, bool)> = ledger
        .video_subscriptions
        .iter()
        .map(|s| (s.user_id, s.subscribe))
        .collect();
    assert_eq!(
        subscribed,
        vec![(1, true), (2, true), (1, false), (3, true)]
    );
    assert!(ledger.video_subscriptions.iter().all(|s| s.status == 0));
    for (user, sent) in &ledger.video_by_user {
        let dir = std::fs::read_dir(host.out_dir())
            .unwrap()
            .flatten()
            .find(|d| {
                d.file_name()
                    .to_string_lossy()
                    .ends_with(&format!("_video_{user}"))
            })
            .unwrap_or_else(|| panic!("no folder for participant {user} in {:?}", host.out_dir()));
        let written = std::fs::read_dir(dir.path()).unwrap().count() as u64;
        assert_eq!(written, *sent, "participant {user}'s frames");
    }
    assert_eq!(ledger.video_by_user.len(), 3, "{:?}", ledger.video_by_user);

    let (_, metrics) = crate::ops::admin(&host, hyper::Method::GET, "/metrics", None).await;
    assert!(
        metrics.contains(r#"video_subscriptions_total{action="subscribe",status="OK"} 3"#),
        "{metrics}"
    );
    let (status, body) = crate::ops::admin(
        &host,
        hyper::Method::POST,
        "/admin/sessions/video?stream_id=gone&user_id=1&action=pin",
        None,
    )
    .await;
    assert_eq!(status, hyper::StatusCode::NOT_FOUND, "{body}");
    let (status, body) = crate::ops::admin(
        &host,
        hyper::Method::POST,
        "/admin/sessions/video?stream_id=gone&user_id=1&action=follow",
        None,
    )
    .await;
    assert_eq!(status, hyper::StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("pin|drop|release"), "{body}");
}
