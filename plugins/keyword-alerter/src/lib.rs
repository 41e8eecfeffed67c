//! `keyword-alerter`: an rtms-host plugin that raises an alert when a configured word or phrase
//! is said (transcript frames) or, optionally, typed (chat frames).
//!
//! Configuration (`[plugin.config]` in pipeline.toml):
//!
//! | key             | default     | meaning |
//! |-----------------|-------------|---------|
//! | `keywords`      | (required)  | JSON array of words and phrases, matched whole-word and case-insensitively |
//! | `cooldown_ms`   | `30000`     | quiet time per keyword after an alert, in frame time |
//! | `context_chars` | `60`        | characters of context either side of the match |
//! | `severity`      | `"warning"` | `info`, `notice`, `warning` or `critical` |
//! | `include_chat`  | `false`     | also scan chat messages |
//!
//! Each alert is an output of kind `keyword`, message `<speaker> said "<keyword>": <context>`,
//! and JSON data `{stream_id, meeting_id, speaker, user_id, keyword, context, timestamp_ms, seq,
//! source}`. Matching is in [`matcher`], the cooldown and the output in [`alerter`]; both are
//! tested natively. This file only connects them to the host.

pub mod alerter;
pub mod matcher;

use rtms_plugin::{Config, EndReason, Frame, Plugin, SessionInfo};

use crate::alerter::{Alerter, SessionIds, Settings};

/// One instance: the scanner and the ids of the session it serves.
pub struct KeywordAlerter {
    alerter: Alerter,
    ids: SessionIds,
}

impl Plugin for KeywordAlerter {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Self {
            alerter: Alerter::new(Settings::from_config(config)?),
            ids: SessionIds::default(),
        })
    }

    fn on_session_start(&mut self, info: SessionInfo) -> Result<(), String> {
        self.ids = SessionIds {
            stream_id: info.stream_id,
            meeting_id: info.meeting_id,
        };
        Ok(())
    }

    fn on_frames(&mut self, _session: u64, frames: Vec<Frame>) -> Result<(), String> {
        for frame in &frames {
            for output in self.alerter.scan(frame, &self.ids) {
                rtms_plugin::emit(&output);
            }
        }
        Ok(())
    }

    fn on_session_end(&mut self, _session: u64, reason: EndReason) -> Result<(), String> {
        rtms_plugin::debug!(
            "{} keyword alerts raised; session ended: {}",
            self.alerter.alerts,
            rtms_plugin::end_reason_name(&reason)
        );
        Ok(())
    }
}

rtms_plugin::export_plugin!(KeywordAlerter);
