//! {{name}}: counts the transcript lines and words of a meeting. Each line goes to
//! `<dir>/words-<stream id>.txt` as it comes (`#<seq> <speaker>: <n> words`), and the counts
//! are emitted when the session ends.

use std::io::Write;
use std::sync::Mutex;

wit_bindgen::generate!({ world: "plugin", path: "wit" });

use exports::rtms::plugin::handler::Guest;
use rtms::plugin::host;
use rtms::plugin::types::{EndReason, Frame, Level, MediaKind, Output, SessionInfo, Severity};

struct State {
    dir: String,
    /// The session's file, named after the stream (one file per meeting).
    path: String,
    lines: u64,
    words: u64,
}

/// One instance serves one session, and calls never overlap: a global is per-meeting state.
static STATE: Mutex<State> = Mutex::new(State {
    dir: String::new(),
    path: String::new(),
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
        let mut s = STATE.lock().unwrap();
        s.path = format!("{}/words-{}.txt", s.dir, info.stream_id);
        // A resumed session (after a reload or a trap) continues the file an earlier
        // instance wrote: append. A new one starts it afresh.
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(info.resumed)
            .truncate(!info.resumed)
            .open(&s.path)
            .map_err(|e| format!("cannot open {}: {e} (is the directory granted?)", s.path))?;
        Ok(())
    }

    fn on_frames(_session: u64, frames: Vec<Frame>) -> Result<(), String> {
        let mut s = STATE.lock().unwrap();
        for f in frames {
            if f.kind != MediaKind::Transcript {
                continue;
            }
            let n = f.text.unwrap_or_default().split_whitespace().count() as u64;
            s.lines += 1;
            s.words += n;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&s.path)
                .map_err(|e| format!("cannot open {}: {e}", s.path))?;
            writeln!(file, "#{} {}: {n} words", f.seq, f.user_name)
                .map_err(|e| format!("cannot write {}: {e}", s.path))?;
        }
        Ok(())
    }

    fn on_session_end(_session: u64, _reason: EndReason) -> Result<(), String> {
        // The counts of what this instance saw (a resumed session's file holds every line).
        let s = STATE.lock().unwrap();
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
