//! Recording: every message the server sends on a meeting's signaling and media sockets,
//! one JSON object per line:
//! `{"at_ms":<ms since the first message>,"socket":"signaling"|"media","msg":<message>}`.
//!
//! `rtms-host replay` reads this format; `examples/meetings/README.md` documents it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use serde_json::value::RawValue;

/// One line of the recording, in the documented key order.
#[derive(Serialize)]
struct Line<'a> {
    at_ms: u64,
    socket: &'a str,
    msg: &'a RawValue,
}

/// Writes a meeting's recording. Writes are small and buffered; errors are counted, logged
/// once, and never stop the meeting.
pub struct Recorder {
    inner: Mutex<Inner>,
}

struct Inner {
    out: BufWriter<File>,
    first: Option<Instant>,
    failed: bool,
    /// Set by [`Recorder::close`]: later messages are not recorded, so the file never ends
    /// in a partial line.
    closed: bool,
}

impl Recorder {
    /// Creates (truncates) the recording file.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let f = File::create(path)?;
        Ok(Self {
            inner: Mutex::new(Inner {
                out: BufWriter::new(f),
                first: None,
                failed: false,
                closed: false,
            }),
        })
    }

    /// Records one message; `msg_json` must be one JSON object (as sent).
    pub fn record(&self, socket: &str, msg_json: &str) {
        let Ok(mut g) = self.inner.lock() else { return };
        if g.closed {
            return;
        }
        let now = Instant::now();
        let at_ms = now.duration_since(*g.first.get_or_insert(now)).as_millis() as u64;
        // A message that is not JSON (never, for what the servers send) fails like a write.
        let written = serde_json::from_str::<&RawValue>(msg_json)
            .and_then(|msg| {
                let line = Line { at_ms, socket, msg };
                serde_json::to_writer(&mut g.out, &line)
            })
            .map_err(std::io::Error::from)
            .and_then(|()| g.out.write_all(b"\n"));
        if let Err(e) = written
            && !g.failed
        {
            g.failed = true;
            tracing::warn!(error = %e, "recording write failed; later lines may be missing");
        }
    }

    /// Flushes buffered lines to the file.
    pub fn flush(&self) {
        if let Ok(mut g) = self.inner.lock() {
            let _ = g.out.flush();
        }
    }

    /// Flushes every buffered line, syncs the file and records nothing more: the file ends
    /// with the last whole line. Called when the stream ends and on shutdown; idempotent.
    pub fn close(&self) {
        let Ok(mut g) = self.inner.lock() else { return };
        if g.closed {
            return;
        }
        g.closed = true;
        let done = g.out.flush().and_then(|()| g.out.get_ref().sync_all());
        if let Err(e) = done
            && !g.failed
        {
            g.failed = true;
            tracing::warn!(error = %e, "closing the recording failed; its end may be missing");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_the_documented_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec.jsonl");
        let r = Recorder::create(&p).unwrap();
        r.record("signaling", r#"{"msg_type":2,"status_code":0}"#);
        r.record("media", r#"{"msg_type":14,"content":{"data":"AA=="}}"#);
        r.flush();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["at_ms"], 0);
        assert_eq!(lines[0]["socket"], "signaling");
        assert_eq!(lines[1]["msg"]["msg_type"], 14);
    }

    #[test]
    fn a_closed_recording_holds_every_line_and_takes_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec.jsonl");
        let r = Recorder::create(&p).unwrap();
        // More than the writer's buffer, so lines were cut when it last spilled.
        let data = "A".repeat(1000);
        for i in 0..100 {
            r.record(
                "media",
                &format!(r#"{{"msg_type":14,"i":{i},"d":"{data}"}}"#),
            );
        }
        r.close();
        r.record("media", r#"{"msg_type":14,"late":true}"#);
        r.close();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.ends_with('\n'), "the last line is whole");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines[99]["msg"]["i"], 99);
    }
}
