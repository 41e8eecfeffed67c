//! The dead-letter file: batches a plugin could not take, kept so nothing is lost silently.
//!
//! A batch whose `on-frames` call trapped is not redelivered to the same version (it may be
//! the input that kills it); it is appended here, one JSON object per line, with the
//! plugin, its version, the session, the error and the frames themselves (payload bytes in
//! base64), so an operator can inspect it or replay it into a fixed version.
//!
//! The files are bounded: when a plugin's file would pass `max_bytes` it is rotated
//! (`<plugin>.deadletter.jsonl` becomes `.1`, `.1` becomes `.2`, ..., and the oldest beyond
//! `keep` rotated files is deleted), so one plugin's letters take at most
//! `(keep + 1) * max_bytes` of disk. A single letter larger than `max_bytes` is written
//! without its frames' payloads (seqs and metadata only, `payload_omitted` set). Every
//! rotation that deletes letters is counted and logged.
//!
//! Letters hold meeting audio and transcripts: the files are created readable by their
//! owner only (0600), and one found wider is narrowed.
//!
//! Nothing here waits on a disk: a letter is encoded by its caller and queued (bounded in
//! bytes, [`MAX_QUEUED_BYTES`]) for one writer thread, which keeps each plugin's file open;
//! a letter that finds the queue full is dropped, counted ([`DeadLetters::dropped`]), the
//! first of a run logged, and the total logged at shutdown. [`DeadLetters::flush`] waits for
//! the letters queued so far: a session's letters are in the file once it has ended.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use base64::Engine as _;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::sandbox::bindings::Frame;

/// Bytes of letters queued for the writer at most: past it a letter is dropped, counted.
pub const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;

pub struct DeadLetters {
    dir: Option<PathBuf>,
    max_bytes: u64,
    /// To the writer thread; `None` without a directory.
    tx: Option<mpsc::UnboundedSender<Job>>,
    /// Bytes of letters queued and not yet written.
    queued: Arc<AtomicUsize>,
    /// In a run of dropped letters (the first is logged).
    dropping: AtomicBool,
    /// Rotated files deleted because more than `keep` accumulated.
    pub files_deleted: Arc<AtomicU64>,
    /// Letters dropped because [`MAX_QUEUED_BYTES`] were waiting for the writer.
    pub dropped: AtomicU64,
}

enum Job {
    Letter {
        plugin: String,
        line: Vec<u8>,
    },
    /// Answered once every letter queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// Default cap of one dead-letter file.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default number of rotated files kept per plugin.
pub const DEFAULT_KEEP: u32 = 3;

#[derive(Serialize)]
struct Letter<'a> {
    time_ms: u64,
    plugin: &'a str,
    version: &'a str,
    session: u64,
    stream_id: &'a str,
    error: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    payload_omitted: bool,
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
        Self::with_limits(dir, DEFAULT_MAX_BYTES, DEFAULT_KEEP)
    }

    /// Letters in `dir`, each plugin's file rotated at `max_bytes`, `keep` rotated files kept.
    /// Starts the writer thread (it ends when this is dropped, once the queue is written).
    pub fn with_limits(dir: Option<PathBuf>, max_bytes: u64, keep: u32) -> Self {
        let max_bytes = max_bytes.max(1024);
        let queued = Arc::new(AtomicUsize::new(0));
        let files_deleted = Arc::new(AtomicU64::new(0));
        let tx = dir.as_ref().and_then(|dir| {
            let (tx, rx) = mpsc::unbounded_channel();
            let writer = Writer {
                dir: dir.clone(),
                max_bytes,
                keep,
                files: HashMap::new(),
                files_deleted: files_deleted.clone(),
            };
            let q = queued.clone();
            match std::thread::Builder::new()
                .name("dead-letters".into())
                .spawn(move || writer.run(rx, &q))
            {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the dead-letter writer thread: letters are logged only");
                    None
                }
            }
        });
        Self {
            dir,
            max_bytes,
            tx,
            queued,
            dropping: AtomicBool::new(false),
            files_deleted,
            dropped: AtomicU64::new(0),
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

    /// Writes a letter and logs it.
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
        self.write_quiet(meta, frames);
    }

    /// Writes a letter without a log line per letter: for callers that log the start of a
    /// run of losses themselves (frames shed by a full queue). Never waits: the letter is
    /// encoded here and queued for the writer thread, which appends it to the plugin's file
    /// (kept open); past [`MAX_QUEUED_BYTES`] waiting it is dropped, counted, and the first
    /// of a run of drops is logged.
    pub fn write_quiet(&self, meta: &LetterMeta<'_>, frames: &[Frame]) {
        let Some(tx) = &self.tx else {
            return;
        };
        let mut line = match self.encode(meta, frames, false) {
            Some(l) => l,
            None => return,
        };
        if line.len() as u64 >= self.max_bytes {
            line = match self.encode(meta, frames, true) {
                Some(l) => l,
                None => return,
            };
        }
        let len = line.len();
        let before = self.queued.fetch_add(len, Ordering::Relaxed);
        if before + len > MAX_QUEUED_BYTES {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.dropping.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    plugin = meta.plugin,
                    stream = meta.stream_id,
                    dropped_so_far = n,
                    queued_bytes = before,
                    "dead letters come faster than the disk takes them: letters are dropped, counted (dropped_so_far), until the writer catches up; summarised at shutdown"
                );
            }
            return;
        }
        if self.dropping.swap(false, Ordering::Relaxed) {
            tracing::info!(
                dropped_so_far = self.dropped.load(Ordering::Relaxed),
                "the dead-letter writer caught up: letters are written again"
            );
        }
        let plugin = meta.plugin.to_owned();
        if tx.send(Job::Letter { plugin, line }).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
        }
    }

    /// Waits until every letter queued before the call is written (or failed).
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Job::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// [`DeadLetters::flush`] for a caller outside the async runtime.
    pub fn flush_blocking(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Job::Flush(done)).is_ok() {
            let _ = wait.blocking_recv();
        }
    }

    /// Logs how many letters were dropped, if any (at shutdown).
    pub fn summarise(&self) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                max_queued_bytes = MAX_QUEUED_BYTES,
                "dead letters dropped in all: they came faster than the disk took them"
            );
        }
    }

    fn encode(&self, meta: &LetterMeta<'_>, frames: &[Frame], omit: bool) -> Option<Vec<u8>> {
        let letter = Letter {
            time_ms: rtms_proto::unix_ms(),
            plugin: meta.plugin,
            version: meta.version,
            session: meta.session,
            stream_id: meta.stream_id,
            error: meta.error,
            payload_omitted: omit,
            frames: frames
                .iter()
                .map(|f| LetterFrame {
                    seq: f.seq,
                    kind: rtms_proto::MediaKind::from(f.kind).as_str(),
                    timestamp_ms: f.timestamp_ms,
                    user_id: &f.user_id,
                    user_name: &f.user_name,
                    text: if omit { None } else { f.text.as_deref() },
                    payload_b64: if omit {
                        String::new()
                    } else {
                        base64::engine::general_purpose::STANDARD.encode(&f.payload)
                    },
                })
                .collect(),
        };
        match serde_json::to_vec(&letter) {
            Ok(mut l) => {
                l.push(b'\n');
                Some(l)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a dead letter");
                None
            }
        }
    }
}

/// The one writer of every plugin's dead-letter file, on a thread of its own: each file is
/// kept open, with its size, until it is rotated.
struct Writer {
    dir: PathBuf,
    max_bytes: u64,
    keep: u32,
    /// Plugin -> its open file and its size.
    files: HashMap<String, (std::fs::File, u64)>,
    files_deleted: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>, queued: &AtomicUsize) {
        while let Some(job) = rx.blocking_recv() {
            match job {
                Job::Letter { plugin, line } => {
                    self.append(&plugin, &line);
                    queued.fetch_sub(line.len(), Ordering::Relaxed);
                }
                Job::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    fn append(&mut self, plugin: &str, line: &[u8]) {
        let path = self.dir.join(format!("{plugin}.deadletter.jsonl"));
        let result = (|| -> std::io::Result<()> {
            let len = line.len() as u64;
            // A file moved or removed by hand since it was opened is opened again: letters
            // never go to a file no one can find.
            if self
                .files
                .get(plugin)
                .is_some_and(|(f, _)| !same_file(f, &path))
            {
                self.files.remove(plugin);
            }
            let size = match self.files.get(plugin) {
                Some((_, size)) => *size,
                None => {
                    let (f, size) = open(&path)?;
                    self.files.insert(plugin.to_owned(), (f, size));
                    size
                }
            };
            if size > 0 && size + len > self.max_bytes {
                self.files.remove(plugin);
                self.rotate(&path)?;
                self.files.insert(plugin.to_owned(), open(&path)?);
            }
            let (f, size) = self.files.get_mut(plugin).expect("opened above");
            narrow(f, &path)?;
            f.write_all(line)?;
            *size += len;
            Ok(())
        })();
        if let Err(e) = result {
            // Opened again for the next letter (a file removed or a disk full meanwhile).
            self.files.remove(plugin);
            tracing::error!(path = %path.display(), error = %e, "cannot write the dead-letter file");
        }
    }

    /// `f` -> `f.1` -> `f.2` ...; the file past `keep` is deleted.
    fn rotate(&self, path: &Path) -> std::io::Result<()> {
        let nth = |n: u32| {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            self.note_deleted(path);
            return std::fs::remove_file(path);
        }
        let oldest = nth(self.keep);
        if oldest.exists() {
            self.note_deleted(&oldest);
            std::fs::remove_file(&oldest)?;
        }
        for n in (1..self.keep).rev() {
            let from = nth(n);
            if from.exists() {
                std::fs::rename(&from, nth(n + 1))?;
            }
        }
        std::fs::rename(path, nth(1))
    }

    fn note_deleted(&self, path: &Path) {
        let n = self.files_deleted.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(path = %path.display(), max_bytes = self.max_bytes, keep = self.keep, files_deleted = n, "dead-letter file cap reached: the oldest letters were deleted (raise runtime.dead_letter_max_mb or dead_letter_files to keep more)");
    }
}

/// A plugin's dead-letter file opened for appending (created 0600), with its size.
fn open(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let size = f.metadata()?.len();
    Ok((f, size))
}

/// Whether `path` still names the open file `f`.
fn same_file(f: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Narrows the file to 0600 if someone widened it since (checked before each letter: the
/// file stays open across letters).
fn narrow(f: &std::fs::File, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = f.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o7777), "dead-letter file was readable by others: narrowed to 0600");
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::bindings::MediaKind;

    fn frame(seq: u64, payload: usize) -> Frame {
        Frame {
            kind: MediaKind::Audio,
            seq,
            timestamp_ms: 0,
            user_id: String::new(),
            user_name: String::new(),
            payload: vec![7; payload],
            text: None,
            transcript: None,
            event_type: None,
        }
    }

    fn meta() -> LetterMeta<'static> {
        LetterMeta {
            plugin: "p",
            version: "v",
            session: 1,
            stream_id: "s",
            error: "e",
        }
    }

    fn seqs(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["frames"][0]["seq"].as_u64().unwrap()
            })
            .collect()
    }

    #[test]
    fn files_rotate_at_the_cap_and_only_the_newest_are_kept() {
        let d = tempfile::tempdir().unwrap();
        let dl = DeadLetters::with_limits(Some(d.path().to_owned()), 4096, 2);
        for seq in 1..=100 {
            dl.write_quiet(&meta(), &[frame(seq, 300)]);
        }
        dl.flush_blocking();
        let base = dl.path_for("p").unwrap();
        let rotated = |n: u32| PathBuf::from(format!("{}.{n}", base.display()));
        for p in [base.clone(), rotated(1), rotated(2)] {
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len <= 4096, "{} holds {len} bytes", p.display());
        }
        assert!(!rotated(3).exists(), "only two rotated files are kept");
        assert!(dl.files_deleted.load(Ordering::Relaxed) > 0);
        // The newest letters, in order, across the kept files.
        let kept: Vec<u64> = [rotated(2), rotated(1), base]
            .iter()
            .flat_map(|p| seqs(p))
            .collect();
        assert_eq!(*kept.last().unwrap(), 100);
        assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
    }

    #[test]
    fn letters_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dl = DeadLetters::new(Some(d.path().to_owned()));
        dl.write_quiet(&meta(), &[frame(1, 10)]);
        dl.flush_blocking();
        let path = dl.path_for("p").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        // A file an earlier version left world-readable is narrowed on the next letter.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        dl.write_quiet(&meta(), &[frame(2, 10)]);
        dl.flush_blocking();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(seqs(&path), [1, 2]);
    }

    #[test]
    fn a_writer_stuck_on_its_file_never_holds_up_a_letter_and_drops_are_counted() {
        use std::io::Read;
        let d = tempfile::tempdir().unwrap();
        let dl = DeadLetters::new(Some(d.path().to_owned()));
        let path = dl.path_for("p").unwrap();
        // A FIFO nobody reads: the writer's open of it waits until a reader comes.
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        // Each letter is about 800 KB: the queue's 16 MiB hold some, the rest are dropped.
        // None of these calls waits on the stuck writer (the test would hang).
        for seq in 1..=40 {
            dl.write_quiet(&meta(), &[frame(seq, 600_000)]);
        }
        let dropped = dl.dropped.load(Ordering::Relaxed);
        assert!(dropped > 0 && dropped < 40, "{dropped}");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(&path)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text.lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["frames"][0]["seq"]
                        .as_u64()
                        .unwrap()
                })
                .collect::<Vec<u64>>()
        });
        dl.flush_blocking();
        // The writer ends with the letters' owner, and the FIFO's writing end closes.
        drop(dl);
        let written = reader.join().unwrap();
        assert_eq!(written.len() as u64 + dropped, 40);
        assert_eq!(
            written,
            (1..=written.len() as u64).collect::<Vec<_>>(),
            "the first ones, in order"
        );
    }

    #[test]
    fn a_file_removed_by_hand_is_created_again_for_the_next_letter() {
        let d = tempfile::tempdir().unwrap();
        let dl = DeadLetters::new(Some(d.path().to_owned()));
        dl.write_quiet(&meta(), &[frame(1, 10)]);
        dl.flush_blocking();
        let path = dl.path_for("p").unwrap();
        std::fs::remove_file(&path).unwrap();
        dl.write_quiet(&meta(), &[frame(2, 10)]);
        dl.flush_blocking();
        assert_eq!(seqs(&path), [2]);
    }

    #[test]
    fn a_letter_larger_than_the_cap_is_kept_without_payloads() {
        let d = tempfile::tempdir().unwrap();
        let dl = DeadLetters::with_limits(Some(d.path().to_owned()), 4096, 1);
        dl.write_quiet(&meta(), &[frame(1, 100_000)]);
        dl.flush_blocking();
        let text = std::fs::read_to_string(dl.path_for("p").unwrap()).unwrap();
        assert!(text.len() < 4096);
        assert!(text.contains("\"payload_omitted\":true"), "{text}");
        assert!(text.contains("\"seq\":1"), "{text}");
    }
}
