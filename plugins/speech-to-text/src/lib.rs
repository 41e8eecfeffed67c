//! `speech-to-text`: an rtms-host plugin that streams a session's audio to a streaming
//! speech-to-text service over the host's outbound WebSocket (contract 0.2) and emits and
//! writes the text it recognises. The provider profile is Deepgram's live API
//! ([`provider`]).
//!
//! Configuration (`[plugin.config]` in pipeline.toml):
//!
//! | key                 | default                             | meaning |
//! |---------------------|-------------------------------------|---------|
//! | `url`               | `wss://api.deepgram.com/v1/listen`  | the listen endpoint (list it in `[plugin.net] http`) |
//! | `model`             | `nova-3`                            | the provider's model |
//! | `language`          | (the provider's default)            | e.g. `en-US` |
//! | `api_key_secret`    | `DEEPGRAM_API_KEY`                  | the granted secret holding the key (`secrets = [...]`) |
//! | `per_speaker`       | `true`                              | one connection per speaker when Zoom sends per-speaker audio |
//! | `max_speakers`      | `16`                                | per-speaker connections at most; later speakers are not transcribed (logged) |
//! | `chunk_ms`          | `100`                               | audio sent per message |
//! | `dir`               | `/out`                              | where `<product>_<stream id>.stt.txt` is written; `""`: no file |
//! | `finish_timeout_ms` | `3000`                              | at session end, how long to wait for the last results |
//! | `max_reopens`       | `5`                                 | reconnections to the provider per speaker and session |
//!
//! Audio must be L16 (the host's default `[rtms] audio` codec); other codecs are refused once,
//! with the fix, at session start. Each second of audio sent is charged to the session's units
//! budget as `audio-seconds`; when the budget is spent the plugin stops sending and says so.
//! Every final result is emitted as a `transcript` output (`speaker: text`, with a JSON `data`
//! of speaker, text, start and duration) and written as a line to the session's file. A
//! provider that closes the connection is reopened when audio next arrives, at most
//! `max_reopens` times. At session end each connection is finished: `CloseStream`, then the
//! last results are collected (`connection.finish`), so the end of the meeting is not lost.

pub mod provider;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use rtms_plugin::websocket::{self, Connection, OnFull, OpenOptions, WsEvent, WsMessage};
use rtms_plugin::{
    AudioCodec, Config, EndReason, Frame, Level, MediaKind, Output, Plugin, SessionInfo, Severity,
};

use crate::provider::{CLOSE_STREAM, KEEP_ALIVE, Listen, Recognised};

/// The key of the one connection of mixed audio.
const MIXED: &str = "mixed";
/// With no audio for this long, a batch of other frames sends `KeepAlive` (Deepgram closes a
/// connection idle for 10 s).
const KEEP_ALIVE_MS: u64 = 3_000;
/// Audio the plugin holds for a connection still opening, in milliseconds; beyond it the
/// oldest audio is dropped (counted and reported at the end).
const MAX_PENDING_MS: u64 = 10_000;

/// The plugin's configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub model: String,
    pub language: Option<String>,
    pub api_key_secret: String,
    pub per_speaker: bool,
    pub max_speakers: usize,
    pub chunk_ms: u64,
    pub dir: Option<PathBuf>,
    pub finish_timeout_ms: u32,
    pub max_reopens: u32,
}

impl Settings {
    pub fn from_config(config: Config) -> Result<Self, String> {
        let s = Self {
            url: config.string_or("url", "wss://api.deepgram.com/v1/listen")?,
            model: config.string_or("model", "nova-3")?,
            language: config.str("language").map(str::to_owned),
            api_key_secret: config.string_or("api_key_secret", "DEEPGRAM_API_KEY")?,
            per_speaker: config.bool_or("per_speaker", true)?,
            max_speakers: config.u64_or("max_speakers", 16)? as usize,
            chunk_ms: config.u64_or("chunk_ms", 100)?.clamp(20, 1000),
            dir: Some(config.string_or("dir", "/out")?)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            finish_timeout_ms: config.u64_or("finish_timeout_ms", 3000)?.min(10_000) as u32,
            max_reopens: config.u64_or("max_reopens", 5)? as u32,
        };
        config.finish()?;
        if !(s.url.starts_with("ws://") || s.url.starts_with("wss://")) {
            return Err(format!(
                "config key `url` = {:?} is not a ws:// or wss:// URL; use the provider's listen endpoint, e.g. wss://api.deepgram.com/v1/listen",
                s.url
            ));
        }
        Ok(s)
    }
}

/// One connection to the provider: a speaker's, or the mixed audio's.
struct Link {
    conn: Option<Connection>,
    label: String,
    /// Audio not yet sent (less than a chunk, or waiting for the socket).
    pending: Vec<u8>,
    opens: u32,
}

/// One instance.
pub struct SpeechToText {
    s: Settings,
    key: String,
    session: Option<SessionInfo>,
    /// Bytes of audio per millisecond; 0 when the session's audio cannot be sent.
    bytes_per_ms: u64,
    links: HashMap<String, Link>,
    /// Connection ids to link keys.
    by_id: HashMap<u64, String>,
    file: Option<File>,
    lines: u64,
    sent_ms: u64,
    charged_secs: u64,
    over_budget: bool,
    dropped_ms: u64,
    skipped_speakers: u64,
    /// When audio or a keep-alive last went out (host clock, ms).
    last_out_ms: u64,
}

impl Plugin for SpeechToText {
    fn init(config: Config) -> Result<Self, String> {
        let s = Settings::from_config(config)?;
        let key = rtms_plugin::secret(&s.api_key_secret).ok_or_else(|| {
            format!(
                "the secret {:?} is not granted: add `secrets = [\"{}\"]` to this plugin in pipeline.toml and set that environment variable for the host",
                s.api_key_secret, s.api_key_secret
            )
        })?;
        Ok(Self {
            s,
            key,
            session: None,
            bytes_per_ms: 0,
            links: HashMap::new(),
            by_id: HashMap::new(),
            file: None,
            lines: 0,
            sent_ms: 0,
            charged_secs: 0,
            over_budget: false,
            dropped_ms: 0,
            skipped_speakers: 0,
            last_out_ms: 0,
        })
    }

    fn on_session_start(&mut self, info: SessionInfo) -> Result<(), String> {
        match info.audio {
            Some(a) if a.codec == AudioCodec::L16 => {
                self.bytes_per_ms = u64::from(a.sample_rate) * 2 * u64::from(a.channels) / 1000;
            }
            Some(a) => rtms_plugin::log(
                Level::Error,
                &format!(
                    "this session's audio is {:?}; speech-to-text sends linear16 only: set the stream's audio codec to L16 ([rtms] audio, the default) to transcribe it",
                    a.codec
                ),
            ),
            None => rtms_plugin::log(
                Level::Warn,
                "this session carries no audio: nothing to transcribe",
            ),
        }
        if let Some(dir) = &self.s.dir {
            let name = format!(
                "{}_{}.stt.txt",
                rtms_plugin::product_name(info.product),
                rtms_plugin::file_safe(&info.stream_id)
            );
            self.file = Some(rtms_plugin::open_session_file(
                &dir.join(name),
                info.resumed,
            )?);
        }
        self.session = Some(info);
        Ok(())
    }

    fn on_frames(&mut self, _session: u64, frames: Vec<Frame>) -> Result<(), String> {
        let mut audio = false;
        for f in frames {
            if f.kind == MediaKind::Audio && self.bytes_per_ms > 0 && !self.over_budget {
                audio = true;
                self.audio(&f.user_id, &f.user_name, &f.payload);
            }
        }
        let now = rtms_plugin::now_ms();
        if audio {
            self.last_out_ms = now;
        } else if now.saturating_sub(self.last_out_ms) >= KEEP_ALIVE_MS {
            self.last_out_ms = now;
            for l in self.links.values() {
                if let Some(c) = &l.conn {
                    let _ = c.send(&WsMessage::Text(KEEP_ALIVE.to_owned()));
                }
            }
        }
        Ok(())
    }

    fn on_session_end(&mut self, _session: u64, _reason: EndReason) -> Result<(), String> {
        let keys: Vec<String> = self.links.keys().cloned().collect();
        for key in keys {
            self.flush(&key, true);
            let Some(link) = self.links.get_mut(&key) else {
                continue;
            };
            let Some(conn) = link.conn.take() else {
                continue;
            };
            let label = link.label.clone();
            let last = Some(WsMessage::Text(CLOSE_STREAM.to_owned()));
            match conn.finish(last.as_ref(), self.s.finish_timeout_ms) {
                Ok(done) => {
                    for m in done.messages {
                        self.message(&label, m);
                    }
                }
                Err(e) => rtms_plugin::log(
                    Level::Warn,
                    &format!("the provider connection for {label} could not be finished: {e:?}"),
                ),
            }
        }
        let mut summary = format!(
            "{} lines recognised from {:.1} s of audio",
            self.lines,
            self.sent_ms as f64 / 1000.0
        );
        if self.dropped_ms > 0 {
            summary += &format!(
                "; {} ms of audio dropped while the provider was unreachable",
                self.dropped_ms
            );
        }
        if self.skipped_speakers > 0 {
            summary += &format!(
                "; {} speakers past max_speakers not transcribed",
                self.skipped_speakers
            );
        }
        emit("summary", Severity::Info, summary, None);
        Ok(())
    }

    fn on_ws_message(&mut self, conn: u64, message: WsMessage) -> Result<(), String> {
        let label = self
            .by_id
            .get(&conn)
            .and_then(|k| self.links.get(k))
            .map_or_else(|| "unknown".to_owned(), |l| l.label.clone());
        self.message(&label, message);
        Ok(())
    }

    fn on_ws_event(&mut self, conn: u64, event: WsEvent) -> Result<(), String> {
        let Some(key) = self.by_id.get(&conn).cloned() else {
            return Ok(());
        };
        let why = match event {
            WsEvent::Opened(_) => return Ok(()),
            WsEvent::Closed((code, reason)) => format!("closed ({code} {reason})"),
            WsEvent::Failed(why) => format!("failed: {why}"),
        };
        if let Some(link) = self.links.get_mut(&key) {
            link.conn = None;
            rtms_plugin::log(
                Level::Warn,
                &format!(
                    "the provider connection for {} {why}; it is reopened when audio next arrives ({} of {} reopens used)",
                    link.label,
                    link.opens.saturating_sub(1),
                    self.s.max_reopens
                ),
            );
        }
        self.by_id.remove(&conn);
        Ok(())
    }
}

impl SpeechToText {
    /// Takes one audio frame: buffered into its connection's chunk, sent when whole.
    fn audio(&mut self, user_id: &str, user_name: &str, payload: &[u8]) {
        let per_speaker = self.s.per_speaker
            && self
                .session
                .as_ref()
                .and_then(|s| s.audio)
                .is_some_and(|a| a.per_speaker);
        let key = if per_speaker { user_id } else { MIXED };
        if !self.links.contains_key(key) {
            if self.links.len() >= self.s.max_speakers.max(1) {
                self.skipped_speakers += 1;
                if self.skipped_speakers == 1 {
                    rtms_plugin::log(
                        Level::Warn,
                        &format!(
                            "more than max_speakers = {} speakers: the others are not transcribed (raise max_speakers)",
                            self.s.max_speakers
                        ),
                    );
                }
                return;
            }
            let label = if per_speaker {
                rtms_plugin::speaker_name(user_name, user_id)
            } else {
                MIXED.to_owned()
            };
            self.links.insert(
                key.to_owned(),
                Link {
                    conn: None,
                    label,
                    pending: Vec::new(),
                    opens: 0,
                },
            );
        }
        let cap = (MAX_PENDING_MS * self.bytes_per_ms) as usize;
        if let Some(link) = self.links.get_mut(key) {
            link.pending.extend_from_slice(payload);
            if link.pending.len() > cap {
                let cut = link.pending.len() - cap;
                link.pending.drain(..cut);
                self.dropped_ms += cut as u64 / self.bytes_per_ms.max(1);
            }
        }
        let key = key.to_owned();
        self.flush(&key, false);
    }

    /// Sends the pending audio of `key` in chunks (all of it when `all`), opening the
    /// connection first when needed.
    fn flush(&mut self, key: &str, all: bool) {
        let chunk = (self.s.chunk_ms * self.bytes_per_ms).max(1) as usize;
        let Some(link) = self.links.get(key) else {
            return;
        };
        if link.pending.is_empty() || (!all && link.pending.len() < chunk) {
            return;
        }
        if link.conn.is_none() && !self.open(key) {
            return;
        }
        while let Some(link) = self.links.get_mut(key) {
            if link.pending.is_empty() || (!all && link.pending.len() < chunk) {
                break;
            }
            let n = chunk.min(link.pending.len());
            let ms = n as u64 / self.bytes_per_ms.max(1);
            if !self.charge(ms) {
                return;
            }
            let Some(link) = self.links.get_mut(key) else {
                break;
            };
            let Some(conn) = &link.conn else {
                break;
            };
            let bytes: Vec<u8> = link.pending.drain(..n).collect();
            if let Err(e) = conn.send(&WsMessage::Binary(bytes)) {
                // A full send queue: the provider reads slower than the meeting speaks.
                self.dropped_ms += ms;
                if self.dropped_ms == ms {
                    rtms_plugin::log(
                        Level::Warn,
                        &format!(
                            "audio for {} could not be queued ({e:?}); it is dropped and counted",
                            link.label
                        ),
                    );
                }
                break;
            }
            self.sent_ms += ms;
        }
    }

    /// Charges whole seconds of audio as they accumulate; false once the budget is spent.
    fn charge(&mut self, ms: u64) -> bool {
        let secs = (self.sent_ms + ms) / 1000;
        if secs > self.charged_secs {
            if let Err(e) = rtms_plugin::charge(secs - self.charged_secs, "audio-seconds") {
                self.over_budget = true;
                let text = format!(
                    "the session's units budget is spent ({e:?}): no more audio is sent to the provider"
                );
                rtms_plugin::log(Level::Warn, &text);
                emit("budget", Severity::Warning, text, None);
                return false;
            }
            self.charged_secs = secs;
        }
        true
    }

    /// Opens the connection of `key`; false when it cannot be (logged).
    fn open(&mut self, key: &str) -> bool {
        let Some(info) = &self.session else {
            return false;
        };
        let Some(audio) = info.audio else {
            return false;
        };
        let Some(link) = self.links.get_mut(key) else {
            return false;
        };
        if link.opens > self.s.max_reopens {
            return false;
        }
        link.opens += 1;
        let per_speaker = key != MIXED;
        let listen = Listen {
            url: &self.s.url,
            model: &self.s.model,
            language: self.s.language.as_deref(),
            sample_rate: audio.sample_rate,
            channels: audio.channels,
            tag: per_speaker.then_some(key),
        };
        let opts = OpenOptions {
            headers: Listen::headers(&self.key),
            subprotocols: Vec::new(),
            buffer_bytes: None,
            on_full: OnFull::DropOldest,
        };
        match websocket::open(&listen.url(), &opts) {
            Ok(c) => {
                self.by_id.insert(c.id(), key.to_owned());
                link.conn = Some(c);
                true
            }
            Err(e) => {
                rtms_plugin::log(
                    Level::Error,
                    &format!(
                        "cannot open the provider connection for {}: {e:?}",
                        link.label
                    ),
                );
                false
            }
        }
    }

    /// Handles a message from the provider.
    fn message(&mut self, label: &str, message: WsMessage) {
        let WsMessage::Text(text) = message else {
            return;
        };
        match provider::recognised(&text) {
            Ok(Some(r)) => self.line(label, r),
            Ok(None) => {}
            Err(e) => rtms_plugin::log(Level::Warn, &e),
        }
    }

    fn line(&mut self, label: &str, r: Recognised) {
        self.lines += 1;
        let line = format!("{label}: {}", r.text);
        if let Some(f) = &mut self.file
            && let Err(e) = writeln!(f, "{line}")
        {
            rtms_plugin::log(
                Level::Error,
                &format!("cannot write the transcript file: {e}"),
            );
        }
        let data = serde_json::json!({
            "speaker": label, "text": r.text, "start": r.start, "duration": r.duration,
            "confidence": r.confidence,
        });
        emit("transcript", Severity::Info, line, Some(data.to_string()));
    }
}

fn emit(kind: &str, severity: Severity, message: String, data: Option<String>) {
    rtms_plugin::emit(&Output {
        kind: kind.to_owned(),
        severity,
        message,
        data,
    });
}

rtms_plugin::export_plugin!(SpeechToText);
