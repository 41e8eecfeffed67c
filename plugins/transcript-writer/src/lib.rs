//! `transcript-writer`: an rtms-host plugin that writes each session's transcript to one file.
//!
//! Configuration (`[plugin.config]` in pipeline.toml):
//!
//! | key            | default  | meaning |
//! |----------------|----------|---------|
//! | `dir`          | `"/out"` | guest path of a directory the operator granted to the plugin |
//! | `format`       | `"text"` | `"text"` or `"jsonl"` (see [`format`] for both layouts) |
//! | `include_chat` | `false`  | also write chat messages, marked as chat |
//!
//! The file is `<dir>/<product>_<stream id>.<txt|jsonl>`. A fresh session truncates it; a
//! resumed one (`resumed = true`: after a reload, a trap or a reconnection) appends, so the
//! file holds the whole meeting. Each line is written with one write as its frame is handled,
//! so a trap loses at most the line in flight. At session end the plugin emits a `summary`
//! output with the number of lines this instance wrote.
//!
//! The line formatting lives in [`format`], which is tested natively; this file holds the file
//! handling and the host calls.

pub mod format;

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use rtms_plugin::{Config, EndReason, Frame, Output, Plugin, SessionInfo, Severity};

use crate::format::{Entry, Format, LineWriter, SessionLabel};

/// `Some("b")` in the `variant-b` build; see [`LineWriter`].
const BUILD_TAG: Option<&str> = if cfg!(feature = "variant-b") {
    Some("b")
} else {
    None
};

/// The plugin's configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub dir: PathBuf,
    pub format: Format,
    pub include_chat: bool,
}

impl Settings {
    /// Reads and checks every key; unknown keys are refused.
    pub fn from_config(config: Config) -> Result<Self, String> {
        let dir = PathBuf::from(config.string_or("dir", "/out")?);
        let format_name = config.choice_or("format", &Format::NAMES, "text")?;
        let include_chat = config.bool_or("include_chat", false)?;
        config.finish()?;
        let format = Format::from_name(format_name)
            .ok_or_else(|| format!("config key `format` has no layout named `{format_name}`"))?;
        Ok(Self {
            dir,
            format,
            include_chat,
        })
    }
}

/// The open output of the session this instance serves.
struct OpenFile {
    path: PathBuf,
    file: File,
    lines: LineWriter,
    written: u64,
    stream_id: String,
}

/// One instance: the settings, then the open file once the session starts.
pub struct TranscriptWriter {
    settings: Settings,
    out: Option<OpenFile>,
}

impl TranscriptWriter {
    fn open(&self, info: &SessionInfo) -> Result<OpenFile, String> {
        let name = format::file_name(info.product, &info.stream_id, self.settings.format);
        let path = self.settings.dir.join(name);
        // A resumed text transcript keeps the origin its first instance recorded.
        let origin = if info.resumed && self.settings.format == Format::Text {
            match std::fs::read_to_string(&path) {
                Ok(existing) => format::parse_origin(&existing),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    rtms_plugin::warn!(
                        "cannot read {} to recover its time origin ({e}); times restart at this resume",
                        path.display()
                    );
                    None
                }
            }
        } else {
            None
        };
        let file = rtms_plugin::open_session_file(&path, info.resumed)?;
        let label = SessionLabel {
            product: rtms_plugin::product_name(info.product).to_owned(),
            meeting_id: info.meeting_id.clone(),
            stream_id: info.stream_id.clone(),
        };
        Ok(OpenFile {
            path,
            file,
            lines: LineWriter::new(self.settings.format, BUILD_TAG, label, origin),
            written: 0,
            stream_id: info.stream_id.clone(),
        })
    }
}

impl Plugin for TranscriptWriter {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Self {
            settings: Settings::from_config(config)?,
            out: None,
        })
    }

    fn on_session_start(&mut self, info: SessionInfo) -> Result<(), String> {
        let out = self.open(&info)?;
        rtms_plugin::debug!(
            "writing {} ({})",
            out.path.display(),
            if info.resumed {
                "appending"
            } else {
                "new file"
            }
        );
        self.out = Some(out);
        Ok(())
    }

    fn on_frames(&mut self, _session: u64, frames: Vec<Frame>) -> Result<(), String> {
        let include_chat = self.settings.include_chat;
        let out = self
            .out
            .as_mut()
            .ok_or("no open transcript file: on-session-start has not succeeded")?;
        for frame in &frames {
            let Some(entry) = Entry::from_frame(frame, include_chat) else {
                continue;
            };
            let text = out.lines.lines_for(&entry);
            out.file
                .write_all(text.as_bytes())
                .map_err(|e| format!("cannot write to {}: {e}", out.path.display()))?;
            out.written += 1;
        }
        out.file
            .flush()
            .map_err(|e| format!("cannot flush {}: {e}", out.path.display()))
    }

    fn on_session_end(&mut self, _session: u64, reason: EndReason) -> Result<(), String> {
        let Some(mut out) = self.out.take() else {
            return Ok(());
        };
        let flushed = out.file.flush();
        let path = out.path.display().to_string();
        rtms_plugin::emit(&Output {
            kind: "summary".to_owned(),
            severity: Severity::Info,
            message: format!(
                "wrote {} transcript line{} to {path}",
                out.written,
                if out.written == 1 { "" } else { "s" }
            ),
            data: Some(
                rtms_plugin::serde_json::json!({
                    "stream_id": out.stream_id,
                    "file": path,
                    "lines": out.written,
                    "reason": rtms_plugin::end_reason_name(&reason),
                })
                .to_string(),
            ),
        });
        flushed.map_err(|e| format!("cannot flush {path}: {e}"))
    }
}

rtms_plugin::export_plugin!(TranscriptWriter);

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

    #[test]
    fn defaults_write_text_to_out_without_chat() {
        assert_eq!(
            settings(&[]),
            Ok(Settings {
                dir: "/out".into(),
                format: Format::Text,
                include_chat: false
            })
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = settings(&[("format", "csv")]).unwrap_err();
        assert!(
            err.contains("`format`") && err.contains("\"jsonl\""),
            "{err}"
        );
        let err = settings(&[("include-chat", "true")]).unwrap_err();
        assert!(
            err.starts_with("unknown config key `include-chat`"),
            "{err}"
        );
        assert!(err.contains("`include_chat`"), "{err}");
    }
}
