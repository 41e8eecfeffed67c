//! `video-recorder`: an rtms-host plugin that records a session's video and screen share.
//!
//! Configuration (`[plugin.config]` in pipeline.toml):
//!
//! | key          | default  | meaning |
//! |--------------|----------|---------|
//! | `dir`        | `"/out"` | guest path of a directory the operator granted to the plugin |
//! | `frames`     | `true`   | keep JPEG and PNG frames as files (`false`: count them only) |
//! | `max_frames` | `100000` | most image files written per session (a bound on disk use) |
//!
//! What Zoom sends decides what is written, frame by frame (by the payload's own signature):
//! - **H.264** (Annex-B, start code `00 00 00 01` or `00 00 01`) is appended to an elementary
//!   stream, `<product>_<stream>_<kind>.h264`, or `<product>_<stream>_<kind>_<user>.h264` when
//!   Zoom attributes the frame to a participant. ffprobe and ffmpeg read these directly
//!   (`ffmpeg -i x.h264 -c copy x.mp4` wraps one in a container).
//! - **JPEG** and **PNG** frames become files in a folder of the same name:
//!   `<product>_<stream>_<kind>[_<user>]/<seq>.jpg` (or `.png`).
//!
//! `<kind>` is `video` or `share`. A resumed session (after a reload, a trap or a
//! reconnection) appends to its streams; a fresh one starts them anew. At session end the
//! plugin emits a `summary` output listing every file with its frames and bytes.

pub mod sink;

use std::path::PathBuf;

use rtms_plugin::{Config, EndReason, Frame, MediaKind, Output, Plugin, SessionInfo, Severity};

use crate::sink::{Recorder, Track};

/// The plugin's configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub dir: PathBuf,
    pub frames: bool,
    pub max_frames: u64,
}

impl Settings {
    /// Reads and checks every key; unknown keys are refused.
    pub fn from_config(config: Config) -> Result<Self, String> {
        let dir = PathBuf::from(config.string_or("dir", "/out")?);
        let frames = config.bool_or("frames", true)?;
        let max_frames = config.u64_or("max_frames", 100_000)?;
        config.finish()?;
        Ok(Self {
            dir,
            frames,
            max_frames,
        })
    }
}

/// One instance: the settings, then the recorder once the session starts.
pub struct VideoRecorder {
    settings: Settings,
    recorder: Option<Recorder>,
}

impl Plugin for VideoRecorder {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Self {
            settings: Settings::from_config(config)?,
            recorder: None,
        })
    }

    fn on_session_start(&mut self, info: SessionInfo) -> Result<(), String> {
        let base = format!(
            "{}_{}",
            rtms_plugin::product_name(info.product),
            rtms_plugin::file_safe(&info.stream_id)
        );
        self.recorder = Some(Recorder::new(
            self.settings.dir.clone(),
            base,
            info.stream_id,
            info.resumed,
            self.settings.frames,
            self.settings.max_frames,
        ));
        Ok(())
    }

    fn on_frames(&mut self, _session: u64, frames: Vec<Frame>) -> Result<(), String> {
        let r = self
            .recorder
            .as_mut()
            .ok_or("no session: on-session-start has not run")?;
        for f in frames.iter().filter(|f| !f.payload.is_empty()) {
            let track = match f.kind {
                MediaKind::Video => Track::Video,
                MediaKind::Share => Track::Share,
                _ => continue,
            };
            if let Some(warning) = r.write(track, &f.user_id, f.seq, &f.payload)? {
                rtms_plugin::warn!("{warning}");
            }
        }
        Ok(())
    }

    fn on_session_end(&mut self, _session: u64, reason: EndReason) -> Result<(), String> {
        let Some(mut r) = self.recorder.take() else {
            return Ok(());
        };
        let flushed = r.finish();
        let files = r.summary();
        let total: u64 = files.iter().map(|f| f.frames).sum();
        rtms_plugin::emit(&Output {
            kind: "summary".to_owned(),
            severity: Severity::Info,
            message: format!(
                "recorded {total} video and share frames into {} files",
                files.len()
            ),
            data: Some(
                rtms_plugin::serde_json::json!({
                    "stream_id": r.stream_id(),
                    "files": files.iter().map(|f| rtms_plugin::serde_json::json!({
                        "path": f.path, "format": f.format, "frames": f.frames, "bytes": f.bytes,
                    })).collect::<Vec<_>>(),
                    "skipped": r.skipped(),
                    "reason": rtms_plugin::end_reason_name(&reason),
                })
                .to_string(),
            ),
        });
        flushed
    }
}

rtms_plugin::export_plugin!(VideoRecorder);
