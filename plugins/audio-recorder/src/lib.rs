//! `audio-recorder`: an rtms-host plugin that records each session's audio to a WAV file.
//!
//! Configuration (`[plugin.config]` in pipeline.toml):
//!
//! | key          | default  | meaning |
//! |--------------|----------|---------|
//! | `dir`        | `"/out"` | guest path of a directory the operator granted to the plugin |
//! | `fill_gaps`  | `true`   | insert silence where Zoom sent no audio, so the file's timeline matches the meeting's |
//! | `max_gap_ms` | `10000`  | most silence inserted for one gap; the rest of a longer gap is left out |
//!
//! The file is `<dir>/<product>_<stream id>.wav`: 16-bit PCM at the session's sample rate and
//! channel count. The plugin records L16 audio only (Zoom's default, `[rtms.audio] codec =
//! "l16"`): for any other codec, for per-speaker audio (`per_speaker = true`, which would need
//! mixing) and for a session without audio, `on-session-start` returns an error that says
//! which setting to change, and nothing is written.
//!
//! A fresh session truncates the file; a resumed one (after a reload, a trap or a
//! reconnection) appends after the audio already there and continues its timeline. Each batch
//! is written with one write and the header's sizes are patched after it, so the file is a
//! valid WAV after every batch, and therefore whenever an instance ends. At session end the
//! plugin emits a `summary` output: the file, its length in seconds and bytes, and what this
//! instance added.
//!
//! The WAV layout is in [`wav`], gap filling in [`timeline`], the file handling in
//! [`recording`]; all three are tested natively. This file holds the host calls.

pub mod recording;
pub mod timeline;
pub mod wav;

use std::path::PathBuf;

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
}

impl Settings {
    /// Reads and checks every key; unknown keys are refused.
    pub fn from_config(config: Config) -> Result<Self, String> {
        let dir = PathBuf::from(config.string_or("dir", "/out")?);
        let fill = config.bool_or("fill_gaps", true)?;
        let max_gap_ms = config.u64_or("max_gap_ms", 10_000)?;
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
    if audio.per_speaker {
        return Err(
            "the session sends each speaker's audio separately, and audio-recorder \
                    records one mixed stream; set [rtms.audio] per_speaker = false in \
                    pipeline.toml"
                .to_owned(),
        );
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

/// What this instance did, for the summary.
#[derive(Debug, Default)]
struct Counts {
    frames: u64,
    audio_bytes: u64,
    silence_ms: u64,
    truncated: u64,
}

/// The open recording of the session this instance serves.
struct Session {
    recording: Recording,
    stream_id: String,
    counts: Counts,
}

/// One instance: the settings, then the recording once the session starts.
pub struct AudioRecorder {
    settings: Settings,
    session: Option<Session>,
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
        let path = self
            .settings
            .dir
            .join(file_name(info.product, &info.stream_id));
        let recording = Recording::open(&path, format, self.settings.gaps, frame_ms, info.resumed)
            .map_err(|e| e.to_string())?;
        rtms_plugin::debug!(
            "recording {} Hz x {} to {} ({})",
            format.sample_rate,
            format.channels,
            path.display(),
            if recording.appended_to() {
                "appending"
            } else {
                "new file"
            }
        );
        self.session = Some(Session {
            recording,
            stream_id: info.stream_id,
            counts: Counts::default(),
        });
        Ok(())
    }

    fn on_frames(&mut self, _session: u64, frames: Vec<Frame>) -> Result<(), String> {
        let s = self
            .session
            .as_mut()
            .ok_or("no open recording: on-session-start has not succeeded")?;
        let audio = frames
            .iter()
            .filter(|f| f.kind == MediaKind::Audio && !f.payload.is_empty());
        let n = audio.clone().count() as u64;
        let done = s
            .recording
            .append(audio.map(|f| (f.timestamp_ms, f.payload.as_slice())))
            .map_err(|e| e.to_string())?;
        s.counts.frames += n;
        s.counts.audio_bytes += done.audio_bytes;
        s.counts.silence_ms += done.silence_ms;
        if done.truncated > 0 {
            if s.counts.truncated == 0 {
                rtms_plugin::warn!(
                    "{} is full (a WAV file holds at most 4 GiB); later audio is dropped",
                    s.recording.path().display()
                );
            }
            s.counts.truncated += done.truncated;
        }
        Ok(())
    }

    fn on_session_end(&mut self, _session: u64, reason: EndReason) -> Result<(), String> {
        let Some(mut s) = self.session.take() else {
            return Ok(());
        };
        let finished = s.recording.finish();
        let path = s.recording.path().display().to_string();
        let duration_ms = s.recording.duration_ms();
        rtms_plugin::emit(&Output {
            kind: "summary".to_owned(),
            severity: Severity::Info,
            message: format!(
                "recorded {}.{:03} s of audio to {path} ({} bytes)",
                duration_ms / 1000,
                duration_ms % 1000,
                s.recording.file_len()
            ),
            data: Some(
                rtms_plugin::serde_json::json!({
                    "stream_id": s.stream_id,
                    "file": path,
                    "seconds": duration_ms as f64 / 1000.0,
                    "bytes": s.recording.file_len(),
                    "data_bytes": s.recording.data_len(),
                    "frames": s.counts.frames,
                    "audio_bytes": s.counts.audio_bytes,
                    "silence_ms": s.counts.silence_ms,
                    "truncated_frames": s.counts.truncated,
                    "reason": rtms_plugin::end_reason_name(&reason),
                })
                .to_string(),
            ),
        });
        finished.map_err(|e| e.to_string())
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
                }
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
    fn only_mixed_l16_audio_is_recorded() {
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
        let err = pcm_format(Some(&AudioFormat {
            per_speaker: true,
            ..l16(16_000, 1)
        }))
        .unwrap_err();
        assert!(err.contains("per_speaker = false"), "{err}");
        assert!(pcm_format(Some(&l16(16_000, 3))).is_err());
        assert!(pcm_format(Some(&l16(0, 1))).is_err());
    }

    #[test]
    fn files_are_named_after_product_and_stream() {
        assert_eq!(
            file_name(Product::Webinar, "ab/c+d=="),
            "webinar_ab_c_d__.wav"
        );
    }
}
