//! {{name}}: counts the transcript lines and words of a meeting, writes the counts to
//! `<dir>/words.txt` and emits them when the session ends.

use std::sync::Mutex;

wit_bindgen::generate!({ world: "plugin", path: "wit" });

use exports::rtms::plugin::handler::Guest;
use rtms::plugin::host;
use rtms::plugin::types::{EndReason, Frame, Level, MediaKind, Output, SessionInfo, Severity};

struct State {
    dir: String,
    lines: u64,
    words: u64,
}

/// One instance serves one session, and calls never overlap: a global is per-meeting state.
static STATE: Mutex<State> = Mutex::new(State {
    dir: String::new(),
    lines: 0,
    words: 0,
});

struct Plugin;

impl Guest for Plugin {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let mut s = STATE.lock().unwrap();
        s.dir = "/out".into();
        for (key, value) in config {
            match key.as_str() {
                "dir" => s.dir = value,
                // Refusing a key nobody reads catches typos in pipeline.toml.
                other => return Err(format!("unknown config key {other:?}; expected \"dir\"")),
            }
        }
        Ok(())
    }

    fn on_session_start(info: SessionInfo) -> Result<(), String> {
        host::log(Level::Info, &format!("session {} started", info.stream_id));
        Ok(())
    }

    fn on_frames(_session: u64, frames: Vec<Frame>) -> Result<(), String> {
        let mut s = STATE.lock().unwrap();
        for f in frames {
            if f.kind == MediaKind::Transcript {
                s.lines += 1;
                s.words += f.text.unwrap_or_default().split_whitespace().count() as u64;
            }
        }
        Ok(())
    }

    fn on_session_end(_session: u64, _reason: EndReason) -> Result<(), String> {
        let s = STATE.lock().unwrap();
        let path = format!("{}/words.txt", s.dir);
        std::fs::write(&path, format!("lines {}\nwords {}\n", s.lines, s.words))
            .map_err(|e| format!("cannot write {path}: {e}"))?;
        host::emit(&Output {
            kind: "words".into(),
            severity: Severity::Info,
            message: format!("{} transcript lines, {} words", s.lines, s.words),
            data: Some(format!("{{\"lines\":{},\"words\":{}}}", s.lines, s.words)),
        });
        Ok(())
    }
}

export!(Plugin);
