//! `audio-recorder`: an rtms-host plugin that records each session's audio to WAV files.
//!
//! Configuration (`[plugin.config]` in pipeline.toml):
//!
//! | key          | default  | meaning |
//! |--------------|----------|---------|
//! | `dir`        | `"/out"` | guest path of a directory the operator granted to the plugin |
//! | `fill_gaps`  | `true`   | insert silence where Zoom sent no audio, so the file's timeline matches the meeting's |
//! | `max_gap_ms` | `10000`  | most silence inserted for one gap; the rest of a longer gap is left out |
//! | `keep_raw`   | `false`  | also keep the audio exactly as received, as headerless PCM (`.pcm`) beside each WAV |
//!
//! Mixed audio (Zoom's default; frames carry user id `-1`) goes to one file,
//! `<dir>/<product>_<stream id>.wav`. With `[rtms.audio] per_speaker = true` Zoom sends each
//! speaker's audio separately, attributed to them, and each speaker gets a file of their own,
//! `<dir>/<product>_<stream id>_<user id>.wav`, opened at their first frame, with its own
//! timeline (so with `fill_gaps` every speaker's file is silent where they did not speak). All
//! files are 16-bit PCM at the session's sample rate and channel count. The plugin records L16
//! audio only (Zoom's default, `[rtms.audio] codec = "l16"`): for any other codec and for a
//! session without audio, `on-session-start` returns an error that says which setting to
//! change, and nothing is written.
//!
//! A fresh session truncates its files; a resumed one (after a reload, a trap or a
//! reconnection) appends after the audio already there and continues its timeline. Each batch
//! is written with one write per file and the header's sizes are patched after it, so the files
//! are valid WAV after every batch, and therefore whenever an instance ends. At session end the
//! plugin emits a `summary` output: the files, their length in seconds and bytes, and what this
//! instance added.
//!
//! The WAV layout is in [`wav`], gap filling in [`timeline`], the file handling in
//! [`recording`]; all three are tested natively. This file holds the host calls.

pub mod recording;
pub mod timeline;
pub mod wav;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rtms_plugin::{
    AudioCodec, AudioFormat, Config, EndReason, Frame, MediaKind, Output, Plugin, Product,
    SessionInfo, Severity,
};

use crate::recording::Recording;
use crate::timeline::GapPolicy;
use crate::wav::PcmFormat;

/// The plugin's configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub dir: PathBuf,
    pub gaps: GapPolicy,
    pub keep_raw: bool,
}

impl Settings {
    /// Reads and checks every key; unknown keys are refused.
    pub fn from_config(config: Config) -> Result<Self, String> {
        let dir = PathBuf::from(config.string_or("dir", "/out")?);
        let fill = config.bool_or("fill_gaps", true)?;
        let max_gap_ms = config.u64_or("max_gap_ms", 10_000)?;
        let keep_raw = config.bool_or("keep_raw", false)?;
        config.finish()?;
        if max_gap_ms > 3_600_000 {
            return Err(format!(
                "config key `max_gap_ms` is {max_gap_ms}; use at most 3600000 (one hour of \
                 silence per gap)"
            ));
        }
        Ok(Self {
            dir,
            gaps: GapPolicy { fill, max_gap_ms },
            keep_raw,
        })
    }
}

/// The WAV file name of a session: `<product>_<stream id>.wav`.
pub fn file_name(product: Product, stream_id: &str) -> String {
    format!(
        "{}_{}.wav",
        rtms_plugin::product_name(product),
        rtms_plugin::file_safe(stream_id)
    )
}

/// The WAV file name of one speaker of a session: `<product>_<stream id>_<user id>.wav`.
pub fn speaker_file_name(product: Product, stream_id: &str, user_id: &str) -> String {
    format!(
        "{}_{}_{}.wav",
        rtms_plugin::product_name(product),
        rtms_plugin::file_safe(stream_id),
        rtms_plugin::file_safe(user_id)
    )
}

/// Whether a frame's user id names a speaker (mixed audio carries `-1`, or nothing).
pub fn is_speaker(user_id: &str) -> bool {
    !user_id.is_empty() && user_id != "-1"
}

/// The PCM layout to record a session's audio in, or why it cannot be recorded.
pub fn pcm_format(audio: Option<&AudioFormat>) -> Result<PcmFormat, String> {
    let audio = audio.ok_or(
        "the session carries no audio: request it in pipeline.toml ([rtms] media must include \
         \"audio\")",
    )?;
    let codec = match audio.codec {
        AudioCodec::L16 => None,
        AudioCodec::G711 => Some("g711"),
        AudioCodec::G722 => Some("g722"),
        AudioCodec::Opus => Some("opus"),
    };
    if let Some(codec) = codec {
        return Err(format!(
            "the session's audio is {codec}, and audio-recorder writes L16 PCM only; set \
             [rtms.audio] codec = \"l16\" in pipeline.toml"
        ));
    }
    if audio.sample_rate == 0 || !(1..=2).contains(&audio.channels) {
        return Err(format!(
            "the session's audio format ({} Hz, {} channels) cannot be recorded: it needs a \
             sample rate above 0 and 1 or 2 channels",
            audio.sample_rate, audio.channels
        ));
    }
    Ok(PcmFormat {
        sample_rate: audio.sample_rate,
        channels: u16::from(audio.channels),
    })
}

/// What this instance did to one file, for the summary.
#[derive(Debug, Default)]
struct Counts {
    frames: u64,
    audio_bytes: u64,
    silence_ms: u64,
    truncated: u64,
}

/// One file being recorded (the mix, or one speaker), and its raw twin.
struct Track {
    recording: Recording,
    raw: Option<(PathBuf, File)>,
    counts: Counts,
}

/// The session this instance serves.
struct Session {
    product: Product,
    stream_id: String,
    format: PcmFormat,
    frame_ms: u32,
    resumed: bool,
    /// Keyed by speaker; the mix under "".
    tracks: BTreeMap<String, Track>,
}

/// One instance: the settings, then the recordings once the session starts.
pub struct AudioRecorder {
    settings: Settings,
    session: Option<Session>,
}

/// Opens the raw PCM twin of a WAV path.
fn open_raw(wav: &Path, resumed: bool) -> Result<(PathBuf, File), String> {
    let path = wav.with_extension("pcm");
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&path)
        .map_err(|e| {
            format!(
                "cannot open {} ({e}); grant its directory to the plugin in pipeline.toml",
                path.display()
            )
        })?;
    Ok((path, file))
}

impl AudioRecorder {
    fn open_track(settings: &Settings, s: &Session, speaker: &str) -> Result<Track, String> {
        let name = if speaker.is_empty() {
            file_name(s.product, &s.stream_id)
        } else {
            speaker_file_name(s.product, &s.stream_id, speaker)
        };
        let path = settings.dir.join(name);
        let recording = Recording::open(&path, s.format, settings.gaps, s.frame_ms, s.resumed)
            .map_err(|e| e.to_string())?;
        rtms_plugin::debug!(
            "recording {} Hz x {} to {} ({})",
            s.format.sample_rate,
            s.format.channels,
            path.display(),
            if recording.appended_to() {
                "appending"
            } else {
                "new file"
            }
        );
        let raw = if settings.keep_raw {
            Some(open_raw(&path, s.resumed)?)
        } else {
            None
        };
        Ok(Track {
            recording,
            raw,
            counts: Counts::default(),
        })
    }
}

impl Plugin for AudioRecorder {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Self {
            settings: Settings::from_config(config)?,
            session: None,
        })
    }

    fn on_session_start(&mut self, info: SessionInfo) -> Result<(), String> {
        let format = pcm_format(info.audio.as_ref())?;
        let frame_ms = info.audio.as_ref().map_or(20, |a| a.frame_ms);
        let per_speaker = info.audio.as_ref().is_some_and(|a| a.per_speaker);
        let mut session = Session {
            product: info.product,
            stream_id: info.stream_id,
            format,
            frame_ms,
            resumed: info.resumed,
            tracks: BTreeMap::new(),
        };
        // The mix is opened at once (so a silent meeting still leaves a file); speakers at
        // their first frame.
        if !per_speaker {
            let track = Self::open_track(&self.settings, &session, "")?;
            session.tracks.insert(String::new(), track);
        }
        self.session = Some(session);
        Ok(())
    }

    fn on_frames(&mut self, _session: u64, frames: Vec<Frame>) -> Result<(), String> {
        let s = self
            .session
            .as_mut()
            .ok_or("no open recording: on-session-start has not succeeded")?;
        // Group the batch by file, in order.
        let mut groups: BTreeMap<String, Vec<&Frame>> = BTreeMap::new();
        for f in frames
            .iter()
            .filter(|f| f.kind == MediaKind::Audio && !f.payload.is_empty())
        {
            let key = if is_speaker(&f.user_id) {
                f.user_id.clone()
            } else {
                String::new()
            };
            groups.entry(key).or_default().push(f);
        }
        for (key, frames) in groups {
            if !s.tracks.contains_key(&key) {
                let track = Self::open_track(&self.settings, s, &key)?;
                s.tracks.insert(key.clone(), track);
            }
            let t = s.tracks.get_mut(&key).expect("opened above");
            if let Some((path, raw)) = &mut t.raw {
                let bytes: Vec<u8> = frames
                    .iter()
                    .flat_map(|f| f.payload.iter().copied())
                    .collect();
                raw.write_all(&bytes)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            let done = t
                .recording
                .append(
                    frames
                        .iter()
                        .map(|f| (f.timestamp_ms, f.payload.as_slice())),
                )
                .map_err(|e| e.to_string())?;
            t.counts.frames += frames.len() as u64;
            t.counts.audio_bytes += done.audio_bytes;
            t.counts.silence_ms += done.silence_ms;
            if done.truncated > 0 {
                if t.counts.truncated == 0 {
                    rtms_plugin::warn!(
                        "{} is full (a WAV file holds at most 4 GiB); later audio is dropped",
                        t.recording.path().display()
                    );
                }
                t.counts.truncated += done.truncated;
            }
        }
        Ok(())
    }

    fn on_session_end(&mut self, _session: u64, reason: EndReason) -> Result<(), String> {
        let Some(mut s) = self.session.take() else {
            return Ok(());
        };
        let mut first_error = None;
        let mut files = Vec::new();
        let mut longest = 0;
        for (speaker, t) in &mut s.tracks {
            if let Err(e) = t.recording.finish() {
                first_error.get_or_insert(e.to_string());
            }
            if let Some((path, raw)) = &mut t.raw
                && let Err(e) = raw.flush()
            {
                first_error.get_or_insert(format!("cannot write {}: {e}", path.display()));
            }
            let duration_ms = t.recording.duration_ms();
            longest = longest.max(duration_ms);
            files.push(rtms_plugin::serde_json::json!({
                "speaker": (!speaker.is_empty()).then_some(speaker),
                "file": t.recording.path().display().to_string(),
                "raw": t.raw.as_ref().map(|(p, _)| p.display().to_string()),
                "seconds": duration_ms as f64 / 1000.0,
                "bytes": t.recording.file_len(),
                "data_bytes": t.recording.data_len(),
                "frames": t.counts.frames,
                "audio_bytes": t.counts.audio_bytes,
                "silence_ms": t.counts.silence_ms,
                "truncated_frames": t.counts.truncated,
            }));
        }
        let (message, file) = match s.tracks.get("") {
            Some(t) if s.tracks.len() == 1 => (
                format!(
                    "recorded {}.{:03} s of audio to {} ({} bytes)",
                    longest / 1000,
                    longest % 1000,
                    t.recording.path().display(),
                    t.recording.file_len()
                ),
                Some(t.recording.path().display().to_string()),
            ),
            _ => (
                format!(
                    "recorded {} speaker file(s), the longest {}.{:03} s",
                    s.tracks.len(),
                    longest / 1000,
                    longest % 1000
                ),
                None,
            ),
        };
        let mix = s.tracks.get("");
        rtms_plugin::emit(&Output {
            kind: "summary".to_owned(),
            severity: Severity::Info,
            message,
            data: Some(
                rtms_plugin::serde_json::json!({
                    "stream_id": s.stream_id,
                    "file": file,
                    "seconds": longest as f64 / 1000.0,
                    "bytes": mix.map(|t| t.recording.file_len()),
                    "data_bytes": mix.map(|t| t.recording.data_len()),
                    "frames": s.tracks.values().map(|t| t.counts.frames).sum::<u64>(),
                    "audio_bytes": s.tracks.values().map(|t| t.counts.audio_bytes).sum::<u64>(),
                    "silence_ms": mix.map_or(0, |t| t.counts.silence_ms),
                    "truncated_frames": s.tracks.values().map(|t| t.counts.truncated).sum::<u64>(),
                    "files": files,
                    "reason": rtms_plugin::end_reason_name(&reason),
                })
                .to_string(),
            ),
        });
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

rtms_plugin::export_plugin!(AudioRecorder);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        Settings::from_config(Config::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }

    fn l16(sample_rate: u32, channels: u8) -> AudioFormat {
        AudioFormat {
            codec: AudioCodec::L16,
            sample_rate,
            channels,
            frame_ms: 20,
            per_speaker: false,
        }
    }

    #[test]
    fn defaults_fill_gaps_of_up_to_ten_seconds_in_out() {
        assert_eq!(
            settings(&[]),
            Ok(Settings {
                dir: "/out".into(),
                gaps: GapPolicy {
                    fill: true,
                    max_gap_ms: 10_000
                },
                keep_raw: false,
            })
        );
        let s = settings(&[("fill_gaps", "false"), ("max_gap_ms", "500")]).unwrap();
        assert_eq!(
            s.gaps,
            GapPolicy {
                fill: false,
                max_gap_ms: 500
            }
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = settings(&[("fill_gaps", "yes")]).unwrap_err();
        assert!(err.contains("`fill_gaps`"), "{err}");
        let err = settings(&[("max_gap_ms", "-1")]).unwrap_err();
        assert!(err.contains("`max_gap_ms`"), "{err}");
        let err = settings(&[("max_gap_ms", "99999999")]).unwrap_err();
        assert!(
            err.contains("`max_gap_ms`") && err.contains("3600000"),
            "{err}"
        );
        let err = settings(&[("max-gap-ms", "5")]).unwrap_err();
        assert!(err.starts_with("unknown config key `max-gap-ms`"), "{err}");
    }

    #[test]
    fn only_l16_audio_is_recorded() {
        assert_eq!(
            pcm_format(Some(&l16(48_000, 2))),
            Ok(PcmFormat {
                sample_rate: 48_000,
                channels: 2
            })
        );
        let err = pcm_format(None).unwrap_err();
        assert!(err.contains("\"audio\""), "{err}");
        let err = pcm_format(Some(&AudioFormat {
            codec: AudioCodec::Opus,
            ..l16(16_000, 1)
        }))
        .unwrap_err();
        assert!(
            err.contains("opus") && err.contains("codec = \"l16\""),
            "{err}"
        );
        assert!(
            pcm_format(Some(&AudioFormat {
                per_speaker: true,
                ..l16(16_000, 1)
            }))
            .is_ok(),
            "per-speaker audio is recorded a file per speaker"
        );
        assert!(pcm_format(Some(&l16(16_000, 3))).is_err());
        assert!(pcm_format(Some(&l16(0, 1))).is_err());
    }

    #[test]
    fn files_are_named_after_product_and_stream() {
        assert_eq!(
            file_name(Product::Webinar, "ab/c+d=="),
            "webinar_ab_c_d__.wav"
        );
        assert_eq!(
            speaker_file_name(Product::Meeting, "s1", "16778240"),
            "meeting_s1_16778240.wav"
        );
        assert!(is_speaker("16778240"));
        assert!(!is_speaker("-1") && !is_speaker(""));
        assert!(settings(&[("keep_raw", "true")]).unwrap().keep_raw);
    }
}
