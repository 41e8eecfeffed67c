//! The dead-letter file: batches a plugin could not take, kept so nothing is lost silently.
//!
//! A batch whose `on-frames` call trapped is not redelivered to the same version (it may be
//! the input that kills it); it is appended here, one JSON object per line, with the
//! plugin, its version, the session, the error and the frames themselves (payload bytes in
//! base64), so an operator can inspect it or replay it into a fixed version.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine as _;
use parking_lot::Mutex;
use serde::Serialize;

use crate::bindings::Frame;

pub struct DeadLetters {
    dir: Option<PathBuf>,
    lock: Mutex<()>,
}

#[derive(Serialize)]
struct Letter<'a> {
    time_ms: u64,
    plugin: &'a str,
    version: &'a str,
    session: u64,
    stream_id: &'a str,
    error: &'a str,
    frames: Vec<LetterFrame<'a>>,
}

#[derive(Serialize)]
struct LetterFrame<'a> {
    seq: u64,
    kind: &'static str,
    timestamp_ms: u64,
    user_id: &'a str,
    user_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "String::is_empty")]
    payload_b64: String,
}

/// Who a dead letter belongs to.
pub struct LetterMeta<'a> {
    pub plugin: &'a str,
    pub version: &'a str,
    pub session: u64,
    pub stream_id: &'a str,
    pub error: &'a str,
}

impl DeadLetters {
    /// `dir` of `None` keeps letters in the log only (tests, replay without a directory).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            lock: Mutex::new(()),
        }
    }

    /// The file a plugin's letters go to.
    pub fn path_for(&self, plugin: &str) -> Option<PathBuf> {
        Some(
            self.dir
                .as_ref()?
                .join(format!("{plugin}.deadletter.jsonl")),
        )
    }

    pub fn write(&self, meta: &LetterMeta<'_>, frames: &[Frame]) {
        tracing::error!(
            plugin = meta.plugin,
            version = meta.version,
            stream = meta.stream_id,
            frames = frames.len(),
            first_seq = frames.first().map(|f| f.seq),
            error = meta.error,
            "batch not delivered; written to the dead-letter file"
        );
        let Some(path) = self.path_for(meta.plugin) else {
            return;
        };
        let letter = Letter {
            time_ms: rtms_proto::unix_ms(),
            plugin: meta.plugin,
            version: meta.version,
            session: meta.session,
            stream_id: meta.stream_id,
            error: meta.error,
            frames: frames
                .iter()
                .map(|f| LetterFrame {
                    seq: f.seq,
                    kind: rtms_proto::MediaKind::from(f.kind).as_str(),
                    timestamp_ms: f.timestamp_ms,
                    user_id: &f.user_id,
                    user_name: &f.user_name,
                    text: f.text.as_deref(),
                    payload_b64: base64::engine::general_purpose::STANDARD.encode(&f.payload),
                })
                .collect(),
        };
        let mut line = match serde_json::to_vec(&letter) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a dead letter");
                return;
            }
        };
        line.push(b'\n');
        let _guard = self.lock.lock();
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(&line)
        })();
        if let Err(e) = result {
            tracing::error!(path = %path.display(), error = %e, "cannot write the dead-letter file");
        }
    }
}
