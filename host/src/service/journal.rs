//! The stream journal: what each live stream needs to be resumed after a crash, kept on
//! local disk while the stream runs (`[runtime] journal_dir`).
//!
//! An entry holds exactly what [`rtms_client::Sessions::start`] needs (the stream's ids,
//! operator, signaling URL, the `seq` the next frame gets) plus what helps a reader (media
//! URLs, connection state) and the plugins' session state (the `state` interface's session
//! scopes). [`JournalWriter::tick`] compares the running streams with what it wrote last
//! and appends only the changes, then a heartbeat, then fsyncs; a stream that ended is
//! removed. After a restart, [`resume`] starts every entry whose heartbeat is younger than
//! the grace window (plugins see `resumed = true`) and ends the others with
//! `connection-lost`, logged and counted as `journal_grace_passed`.
//!
//! [`StreamJournal`] is the seam: [`FileJournal`] is an fsync'd, append-only JSON Lines log
//! compacted when it grows; a store shared by several hosts implements the same calls.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rtms_client::link::StreamIds;
use rtms_client::session::SessionStart;
use rtms_proto::Product;
use rtms_proto::msg::MediaServerUrls;
use rtms_proto::webhook::StartedDetails;
use serde::{Deserialize, Serialize};

use crate::dataplane::bridge::ResumeSet;
use crate::dataplane::registry::{Registry, SessionDesc};
use crate::sandbox::bindings::EndReason;
use crate::sandbox::state::{Put, ScopeKey, StateLimits};
use crate::service::HostSessions;

/// How often the writer looks for changes and writes a heartbeat.
pub const TICK: Duration = Duration::from_millis(250);
/// The log is compacted when it holds this many records more than live entries.
const COMPACT_AFTER: usize = 4096;
/// A journal file larger than this is refused at start (it cannot come from this host).
const MAX_FILE_BYTES: u64 = 256 << 20;
/// A resumed stream's `seq` continues this far past the journaled one: the crashed process
/// may have numbered frames after its last write, and a plugin must never see a `seq` twice.
pub const SEQ_GAP: u64 = 1 << 20;
/// The reason logged and counted for a stream whose grace window passed.
pub const GRACE_PASSED: &str = "journal_grace_passed";

/// One key of a plugin's session state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateKey {
    pub key: String,
    pub value: Vec<u8>,
    pub expires_at_ms: Option<u64>,
}

/// What one live stream needs to be resumed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub stream_id: String,
    pub product: Product,
    /// Meeting uuid / webinar uuid / session id / engagement id.
    pub meeting_id: String,
    pub operator_id: Option<String>,
    /// The signaling URL in use.
    pub server_url: String,
    /// Media URLs from the last signaling handshake.
    pub media_urls: Option<MediaServerUrls>,
    /// The connection state (`streaming`, `backoff`, ...).
    pub state: String,
    /// The `seq` the next frame gets.
    pub next_seq: u64,
    /// Each plugin's session state, by plugin name.
    pub plugin_state: Vec<(String, Vec<StateKey>)>,
    /// What the started webhook carried besides the ids (April 2026), for 0.3 plugins'
    /// `session-info` after a restart or a move to another host. Left out when empty; an
    /// entry written without it (before it existed) loads with every field absent.
    #[serde(default, skip_serializing_if = "StartedDetails::is_empty")]
    pub details: StartedDetails,
}

/// What a journal holds after a restart.
#[derive(Debug, Default)]
pub struct Recovered {
    pub entries: Vec<JournalEntry>,
    /// Unix milliseconds of the last heartbeat (`None`: never written).
    pub last_beat_ms: Option<u64>,
}

/// Where live streams are journaled. Each call is durable when it returns.
pub trait StreamJournal: Send + Sync {
    /// Writes changed entries, removals and a heartbeat at `now_ms`, together.
    fn record(&self, put: &[JournalEntry], removed: &[String], now_ms: u64) -> std::io::Result<()>;
    /// Everything journaled so far.
    fn load(&self) -> std::io::Result<Recovered>;
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Put { entry: Box<JournalEntry> },
    Del { stream_id: String },
    Beat { at_ms: u64 },
}

/// A [`StreamJournal`] in one directory: `streams.jsonl`, appended and fsynced on every
/// write, rewritten (to a temporary file, fsynced, renamed) when it grows.
pub struct FileJournal {
    path: PathBuf,
    inner: Mutex<FileInner>,
}

struct FileInner {
    file: File,
    live: HashMap<String, JournalEntry>,
    records: usize,
}

impl FileJournal {
    /// Opens (creating) the journal in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the journal directory {} ([runtime] journal_dir): check its permissions",
                dir.display()
            )
        })?;
        let path = dir.join("streams.jsonl");
        let file = append(&path)
            .with_context(|| format!("cannot open the stream journal {}", path.display()))?;
        Ok(Self {
            path,
            inner: Mutex::new(FileInner {
                file,
                live: HashMap::new(),
                records: 0,
            }),
        })
    }

    /// Rewrites the log as the live entries and one heartbeat.
    fn compact(&self, inner: &mut FileInner, now_ms: u64) -> std::io::Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        for e in inner.live.values() {
            line(
                &mut out,
                &Record::Put {
                    entry: Box::new(e.clone()),
                },
            )?;
        }
        line(&mut out, &Record::Beat { at_ms: now_ms })?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        inner.file = append(&self.path)?;
        inner.records = inner.live.len() + 1;
        Ok(())
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn line(out: &mut impl Write, r: &Record) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, r)?;
    out.write_all(b"\n")
}

impl StreamJournal for FileJournal {
    fn record(&self, put: &[JournalEntry], removed: &[String], now_ms: u64) -> std::io::Result<()> {
        let mut inner = self.inner.lock();
        let mut buf = Vec::new();
        for e in put {
            line(
                &mut buf,
                &Record::Put {
                    entry: Box::new(e.clone()),
                },
            )?;
            inner.live.insert(e.stream_id.clone(), e.clone());
        }
        for id in removed {
            line(
                &mut buf,
                &Record::Del {
                    stream_id: id.clone(),
                },
            )?;
            inner.live.remove(id);
        }
        line(&mut buf, &Record::Beat { at_ms: now_ms })?;
        inner.records += put.len() + removed.len() + 1;
        if inner.records > inner.live.len() + COMPACT_AFTER {
            return self.compact(&mut inner, now_ms);
        }
        inner.file.write_all(&buf)?;
        inner.file.sync_data()
    }

    fn load(&self) -> std::io::Result<Recovered> {
        let mut inner = self.inner.lock();
        let size = std::fs::metadata(&self.path)?.len();
        if size > MAX_FILE_BYTES {
            return Err(std::io::Error::other(format!(
                "the stream journal {} holds {size} bytes, more than {MAX_FILE_BYTES}: it is not this host's; move it away",
                self.path.display()
            )));
        }
        let mut live: HashMap<String, JournalEntry> = HashMap::new();
        let mut last_beat_ms = None;
        let (mut records, mut bad) = (0usize, 0u64);
        for l in BufReader::new(File::open(&self.path)?).lines() {
            records += 1;
            match serde_json::from_str::<Record>(&l?) {
                Ok(Record::Put { entry }) => {
                    live.insert(entry.stream_id.clone(), *entry);
                }
                Ok(Record::Del { stream_id }) => {
                    live.remove(&stream_id);
                }
                Ok(Record::Beat { at_ms }) => last_beat_ms = Some(at_ms),
                // A line cut short by a crash: everything before it stands.
                Err(_) => bad += 1,
            }
        }
        if bad > 0 {
            tracing::warn!(path = %self.path.display(), lines = bad, "stream journal: unreadable lines skipped (a write cut short by a crash)");
        }
        inner.live = live.clone();
        inner.records = records;
        Ok(Recovered {
            entries: live.into_values().collect(),
            last_beat_ms,
        })
    }
}

/// The entry of one running stream, with its plugins' session state.
pub fn entry_of(shared: &Registry, s: rtms_client::SessionSnapshot, now: u64) -> JournalEntry {
    let plugin_state = plugin_state_of(shared, &s.stream_id, now);
    JournalEntry {
        stream_id: s.stream_id,
        product: s.product,
        meeting_id: s.meeting_id,
        operator_id: s.operator_id,
        server_url: s.server_url,
        media_urls: s.media_urls,
        state: s.state.to_owned(),
        next_seq: s.next_seq,
        plugin_state,
        details: s.details,
    }
}

/// The session state every plugin of the pipeline holds for `stream_id`.
pub fn plugin_state_of(
    shared: &Registry,
    stream_id: &str,
    now: u64,
) -> Vec<(String, Vec<StateKey>)> {
    let store = shared.rt.state();
    shared
        .table
        .load()
        .plugins
        .iter()
        .map(|p| p.name.to_string())
        .filter_map(|p| {
            let keys: Vec<StateKey> = store
                .export(&ScopeKey::session(&p, stream_id), now)
                .into_iter()
                .map(|(key, e)| StateKey {
                    key,
                    value: e.value,
                    expires_at_ms: e.expires_at_ms,
                })
                .collect();
            (!keys.is_empty()).then_some((p, keys))
        })
        .collect()
}

/// Counts of the journal, for metrics and the summary.
#[derive(Debug, Default)]
pub struct JournalStats {
    pub resumed: AtomicU64,
    pub grace_passed: AtomicU64,
    pub write_errors: AtomicU64,
}

/// Writes the running streams to a [`StreamJournal`] as they change.
pub struct JournalWriter {
    journal: Arc<dyn StreamJournal>,
    sessions: HostSessions,
    shared: Arc<Registry>,
    written: Mutex<HashMap<String, JournalEntry>>,
    /// Set when the streams are handed to a successor: entries of streams that end are
    /// kept (their plugin state refreshed) rather than removed.
    frozen: std::sync::atomic::AtomicBool,
    pub stats: Arc<JournalStats>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl JournalWriter {
    pub fn new(
        journal: Arc<dyn StreamJournal>,
        sessions: HostSessions,
        shared: Arc<Registry>,
    ) -> Self {
        Self {
            journal,
            sessions,
            shared,
            written: Mutex::default(),
            frozen: Default::default(),
            stats: Arc::default(),
        }
    }

    /// From now on, a stream that ends keeps its entry, for a successor process to resume
    /// (see `super::handoff`).
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Relaxed);
    }

    /// The entry of one running stream, with its plugins' session state.
    fn entry(&self, s: rtms_client::SessionSnapshot, now: u64) -> JournalEntry {
        entry_of(&self.shared, s, now)
    }

    /// The session state every plugin of the pipeline holds for `stream_id`.
    fn plugin_state(&self, stream_id: &str, now: u64) -> Vec<(String, Vec<StateKey>)> {
        plugin_state_of(&self.shared, stream_id, now)
    }

    /// Writes what changed since the last tick, and a heartbeat.
    pub fn tick(&self) {
        let now = now_ms();
        let mut current: HashMap<String, JournalEntry> = self
            .sessions
            .snapshots()
            .into_iter()
            .map(|s| (s.stream_id.clone(), self.entry(s, now)))
            .collect();
        let mut written = self.written.lock();
        if self.frozen.load(Ordering::Relaxed) {
            // Handed off: an ended stream keeps its entry, with the state its plugins left.
            for (id, e) in written.iter() {
                if !current.contains_key(id) {
                    let mut kept = e.clone();
                    kept.plugin_state = self.plugin_state(id, now);
                    current.insert(id.clone(), kept);
                }
            }
        }
        let put: Vec<JournalEntry> = current
            .values()
            .filter(|e| written.get(&e.stream_id) != Some(e))
            .cloned()
            .collect();
        let removed: Vec<String> = written
            .keys()
            .filter(|k| !current.contains_key(*k))
            .cloned()
            .collect();
        match self.journal.record(&put, &removed, now) {
            Ok(()) => *written = current,
            Err(e) => {
                let n = self.stats.write_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if rtms_client::ratelog::admit("journal-write-failed") {
                    tracing::error!(error = %e, failures = n, "stream journal not written: a crash now would end the live streams (check the disk of [runtime] journal_dir)");
                }
            }
        }
    }

    /// Runs [`JournalWriter::tick`] every [`TICK`] until `stop`.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.tick()).await;
        }
    }
}

/// After a restart: resumes every journaled stream within `grace` of the last heartbeat
/// (at most `max` of them), ends the others. Returns `(resumed, ended)`.
pub async fn resume(
    writer: &JournalWriter,
    resumed: &ResumeSet,
    grace: Duration,
    max: usize,
) -> anyhow::Result<(usize, usize)> {
    let rec = writer.journal.load()?;
    let now = now_ms();
    let age = Duration::from_millis(now.saturating_sub(rec.last_beat_ms.unwrap_or(0)));
    let (mut ok, mut ended) = (0, 0);
    for (i, e) in rec.entries.into_iter().enumerate() {
        if age > grace || i >= max {
            end_expired(writer, e, age, grace).await;
            ended += 1;
            continue;
        }
        restore_state(&writer.shared, &e, now);
        resumed.lock().insert(e.stream_id.clone());
        tracing::info!(stream_id = %e.stream_id, state = %e.state, next_seq = e.next_seq, since_last_beat = ?age, "resuming a journaled stream");
        let start = SessionStart {
            ids: StreamIds {
                product: e.product,
                id: e.meeting_id.clone(),
                stream_id: e.stream_id.clone(),
            },
            operator_id: e.operator_id.clone(),
            server_url: e.server_url.clone(),
            first_seq: e.next_seq.saturating_add(SEQ_GAP),
            details: e.details.clone(),
        };
        if writer.sessions.start(start) {
            ok += 1;
            writer.stats.resumed.fetch_add(1, Ordering::Relaxed);
        } else {
            resumed.lock().remove(&e.stream_id);
            end_expired(writer, e, age, grace).await;
            ended += 1;
        }
    }
    Ok((ok, ended))
}

/// Puts a journaled stream's plugin session state back into the store.
pub fn restore_state(shared: &Registry, e: &JournalEntry, now: u64) {
    let store = shared.rt.state();
    let unbounded = StateLimits {
        max_keys: usize::MAX,
        max_bytes: u64::MAX,
    };
    for (plugin, keys) in &e.plugin_state {
        let scope = ScopeKey::session(plugin, &e.stream_id);
        for k in keys {
            let put = Put {
                value: k.value.clone(),
                expires_at_ms: k.expires_at_ms,
            };
            if let Err(err) = store.set(&scope, &k.key, put, &unbounded, now) {
                tracing::warn!(plugin, key = %k.key, error = %err, "journaled plugin state not restored");
            }
        }
    }
}

/// Ends a stream that cannot be resumed: its plugins get `on-session-start(resumed)` and
/// `on-session-end(connection-lost)`; the entry is removed.
async fn end_expired(writer: &JournalWriter, e: JournalEntry, age: Duration, grace: Duration) {
    let n = writer.stats.grace_passed.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::warn!(
        stream_id = %e.stream_id,
        reason = GRACE_PASSED,
        since_last_beat = ?age,
        ?grace,
        ended_so_far = n,
        "journaled stream not resumed: Zoom's grace window passed while the host was down (raise [runtime] journal_grace_ms up to Zoom's 30 s, or restart faster); its plugins get on-session-end(connection-lost)"
    );
    let session = writer.shared.open_session(SessionDesc {
        product: e.product,
        meeting_id: e.meeting_id.clone(),
        stream_id: e.stream_id.clone(),
        operator_id: e.operator_id.clone(),
        started_at_ms: now_ms(),
        resumed: true,
        audio: None,
        details: Arc::new((&e.details).into()),
        fence: Default::default(),
    });
    session.end(EndReason::ConnectionLost).await;
    if let Err(err) = writer
        .journal
        .record(&[], std::slice::from_ref(&e.stream_id), now_ms())
    {
        tracing::error!(stream_id = %e.stream_id, error = %err, "stream journal: entry not removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, seq: u64) -> JournalEntry {
        JournalEntry {
            stream_id: id.into(),
            product: Product::Meeting,
            meeting_id: "m==".into(),
            operator_id: Some("op".into()),
            server_url: "wss://127.0.0.1:1/sig".into(),
            media_urls: None,
            state: "streaming".into(),
            next_seq: seq,
            plugin_state: vec![(
                "p".into(),
                vec![StateKey {
                    key: "k".into(),
                    value: vec![0, 255],
                    expires_at_ms: None,
                }],
            )],
            details: StartedDetails::default(),
        }
    }

    #[test]
    fn the_started_webhooks_fields_survive_reopening_and_old_entries_load_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let j = FileJournal::open(dir.path()).unwrap();
        let mut with = entry("a", 1);
        with.details = StartedDetails {
            account_id: Some("acct".into()),
            is_original_host: Some(false),
            meeting_id: Some("81234567890".into()),
            webinar_id: None,
        };
        j.record(&[with.clone(), entry("b", 2)], &[], 10).unwrap();
        drop(j);
        let path = dir.path().join("streams.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.matches("\"details\"").count(),
            1,
            "left out when empty: {text}"
        );
        // A line written before the fields existed.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(
            br#"{"op":"put","entry":{"stream_id":"old","product":"meeting","meeting_id":"m","operator_id":null,"server_url":"wss://x","media_urls":null,"state":"streaming","next_seq":3,"plugin_state":[]}}"#,
        )
        .unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let rec = FileJournal::open(dir.path()).unwrap().load().unwrap();
        let by = |id: &str| rec.entries.iter().find(|e| e.stream_id == id).unwrap();
        assert_eq!(by("a"), &with);
        assert!(by("b").details.is_empty());
        assert_eq!(by("old").next_seq, 3);
        assert!(by("old").details.is_empty());
    }

    #[test]
    fn puts_and_removals_survive_reopening_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let j = FileJournal::open(dir.path()).unwrap();
        j.record(&[entry("a", 1), entry("b", 2)], &[], 10).unwrap();
        j.record(&[entry("a", 7)], &["b".into()], 20).unwrap();
        drop(j);
        // A crash in the middle of a write.
        let path = dir.path().join("streams.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"op":"put","entry":{"stream_"#).unwrap();
        let rec = FileJournal::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(rec.entries, [entry("a", 7)]);
        assert_eq!(rec.last_beat_ms, Some(20));
    }

    #[test]
    fn the_log_is_compacted_to_the_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let j = FileJournal::open(dir.path()).unwrap();
        for i in 0..(COMPACT_AFTER as u64 + 10) {
            j.record(&[entry("a", i)], &[], i).unwrap();
        }
        let lines = std::fs::read_to_string(dir.path().join("streams.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert!(lines < 100, "compacted: {lines} lines");
        let rec = j.load().unwrap();
        assert_eq!(rec.entries.len(), 1);
        assert!(rec.entries[0].next_seq >= COMPACT_AFTER as u64);
    }
}
