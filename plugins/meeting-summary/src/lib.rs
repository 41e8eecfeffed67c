//! `meeting-summary`: an rtms-host plugin that keeps a session's transcript and, when the
//! session ends, asks a language model for a summary through an OpenAI-compatible chat
//! completions API, then emits it, writes it to a file and posts it to a chat webhook
//! (Slack's incoming webhooks, or anything that takes `{"text": ...}`).
//!
//! Configuration (`[plugin.config]` in pipeline.toml):
//!
//! | key                    | default                                        | meaning |
//! |------------------------|------------------------------------------------|---------|
//! | `llm_url`              | `https://api.openai.com/v1/chat/completions`   | the chat completions endpoint (list it in `[plugin.net] http`) |
//! | `model`                | `gpt-4o-mini`                                  | the model asked |
//! | `api_key_secret`       | `OPENAI_API_KEY`                               | the granted secret holding the key (`Authorization: Bearer`) |
//! | `system_prompt`        | (a short instruction to summarise)             | the system message |
//! | `chat_webhook_secret`  | (none: no post)                                | the granted secret holding the webhook URL (Slack's carries its token) |
//! | `dir`                  | `/out`                                         | where `<product>_<stream id>.summary.md` is written; `""`: no file |
//! | `max_transcript_bytes` | `200000`                                       | the transcript sent at most; the oldest lines are cut past it |
//! | `attempts`             | `4`                                            | tries per request; 408, 429, 5xx and network failures are retried with backoff (`Retry-After` honoured) |
//! | `min_lines`            | `1`                                            | sessions with fewer transcript lines get no summary |
//!
//! The transcript is kept in the session's host-held state as well as in memory, so a reload
//! or a restart after a trap mid-meeting summarises the whole meeting. The tokens a summary
//! costs (`usage.total_tokens`) are charged to the session's units budget as `tokens`; a
//! session whose budget is spent gets no summary, and says so. A session that ends because a
//! new version of the plugin takes over (`reload`) is not summarised: the new instance does it.

pub mod transcript;

use std::io::Write;
use std::path::PathBuf;

use rtms_plugin::http::{self, Request, Retry};
use rtms_plugin::{
    Bucket, Config, EndReason, Frame, Level, MediaKind, Output, Plugin, SessionInfo, Severity,
};

use crate::transcript::{
    Transcript, chat_message, completion_reply, completion_request, provider_error,
};

const DEFAULT_PROMPT: &str = "You summarise meetings. Given a transcript with one `speaker: text` line per utterance, write a short summary: the topics, the decisions, and the action items with their owners.";
/// Bytes of transcript per state key.
const CHUNK_BYTES: usize = 8 * 1024;

/// The plugin's configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub llm_url: String,
    pub model: String,
    pub api_key_secret: String,
    pub system_prompt: String,
    pub chat_webhook_secret: Option<String>,
    pub dir: Option<PathBuf>,
    pub max_transcript_bytes: usize,
    pub attempts: u32,
    pub min_lines: usize,
}

impl Settings {
    pub fn from_config(config: Config) -> Result<Self, String> {
        let s = Self {
            llm_url: config.string_or("llm_url", "https://api.openai.com/v1/chat/completions")?,
            model: config.string_or("model", "gpt-4o-mini")?,
            api_key_secret: config.string_or("api_key_secret", "OPENAI_API_KEY")?,
            system_prompt: config.string_or("system_prompt", DEFAULT_PROMPT)?,
            chat_webhook_secret: config.str("chat_webhook_secret").map(str::to_owned),
            dir: Some(config.string_or("dir", "/out")?)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            max_transcript_bytes: config.u64_or("max_transcript_bytes", 200_000)? as usize,
            attempts: config.u64_or("attempts", 4)?.clamp(1, 10) as u32,
            min_lines: config.u64_or("min_lines", 1)? as usize,
        };
        config.finish()?;
        if !(s.llm_url.starts_with("https://") || s.llm_url.starts_with("http://")) {
            return Err(format!(
                "config key `llm_url` = {:?} is not an http(s) URL",
                s.llm_url
            ));
        }
        Ok(s)
    }
}

/// One instance.
pub struct MeetingSummary {
    s: Settings,
    key: String,
    webhook: Option<String>,
    info: Option<SessionInfo>,
    transcript: Transcript,
    /// The state chunk being filled, and its number.
    chunk: String,
    chunk_no: u32,
    state_full: bool,
}

fn secret(name: &str) -> Result<String, String> {
    rtms_plugin::secret(name).ok_or_else(|| {
        format!("the secret {name:?} is not granted: add `secrets = [\"{name}\"]` to this plugin in pipeline.toml and set that environment variable for the host")
    })
}

impl Plugin for MeetingSummary {
    fn init(config: Config) -> Result<Self, String> {
        let s = Settings::from_config(config)?;
        let key = secret(&s.api_key_secret)?;
        let webhook = s.chat_webhook_secret.as_deref().map(secret).transpose()?;
        Ok(Self {
            s,
            key,
            webhook,
            info: None,
            transcript: Transcript::default(),
            chunk: String::new(),
            chunk_no: 0,
            state_full: false,
        })
    }

    fn on_session_start(&mut self, info: SessionInfo) -> Result<(), String> {
        if info.resumed {
            self.restore();
        }
        self.info = Some(info);
        Ok(())
    }

    fn on_frames(&mut self, _session: u64, frames: Vec<Frame>) -> Result<(), String> {
        for f in frames {
            if f.kind != MediaKind::Transcript {
                continue;
            }
            let Some(text) = f.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
                continue;
            };
            let line = format!(
                "{}: {text}",
                rtms_plugin::speaker_name(&f.user_name, &f.user_id)
            );
            self.keep(&line);
            self.transcript.push(line, self.s.max_transcript_bytes);
        }
        Ok(())
    }

    fn on_session_end(&mut self, _session: u64, reason: EndReason) -> Result<(), String> {
        if matches!(reason, EndReason::Reload) {
            return Ok(());
        }
        if self.transcript.lines.len() < self.s.min_lines.max(1) {
            say(
                "summary",
                Severity::Info,
                format!(
                    "no summary: {} transcript lines (min_lines = {})",
                    self.transcript.lines.len(),
                    self.s.min_lines
                ),
                None,
            );
            return Ok(());
        }
        let (summary, tokens) = self.summarise()?;
        let title = self.title();
        self.write(&title, &summary);
        let data = serde_json::json!({"model": self.s.model, "tokens": tokens,
            "lines": self.transcript.lines.len(), "lines_cut": self.transcript.cut});
        say(
            "summary",
            Severity::Notice,
            summary.clone(),
            Some(data.to_string()),
        );
        if let Some(url) = &self.webhook {
            self.post_chat(url, &title, &summary);
        }
        Ok(())
    }
}

impl MeetingSummary {
    /// Keeps a line in the session's state, chunked, so a reload or trap restart has it.
    fn keep(&mut self, line: &str) {
        if self.state_full {
            return;
        }
        if !self.chunk.is_empty() && self.chunk.len() + line.len() + 1 > CHUNK_BYTES {
            self.chunk_no += 1;
            self.chunk.clear();
        }
        self.chunk.push_str(line);
        self.chunk.push('\n');
        let key = format!("chunk/{:05}", self.chunk_no);
        if let Err(e) = Bucket::SESSION.set(&key, &self.chunk) {
            self.state_full = true;
            rtms_plugin::log(
                Level::Warn,
                &format!(
                    "the transcript no longer fits the session's state ({e:?}); later lines are kept in memory only, so a reload would summarise without them (raise [plugin.state] max_bytes)"
                ),
            );
        }
    }

    /// Reads back what earlier instances of this session kept.
    fn restore(&mut self) {
        let keys = match Bucket::SESSION.keys() {
            Ok(k) => k,
            Err(e) => {
                rtms_plugin::log(
                    Level::Warn,
                    &format!("cannot read the session's state: {e:?}"),
                );
                return;
            }
        };
        let mut chunks: Vec<String> = keys
            .into_iter()
            .filter(|k| k.starts_with("chunk/"))
            .collect();
        chunks.sort();
        for (i, k) in chunks.iter().enumerate() {
            let Ok(Some(text)) = Bucket::SESSION.get_string(k) else {
                continue;
            };
            for l in text.lines() {
                self.transcript
                    .push(l.to_owned(), self.s.max_transcript_bytes);
            }
            if i + 1 == chunks.len() {
                self.chunk = text;
                self.chunk_no = k.trim_start_matches("chunk/").parse().unwrap_or(0);
            }
        }
    }

    fn title(&self) -> String {
        self.info.as_ref().map_or_else(
            || "Meeting summary".to_owned(),
            |i| {
                format!(
                    "Meeting summary ({} {})",
                    rtms_plugin::product_name(i.product),
                    i.meeting_id
                )
            },
        )
    }

    /// Asks the model; the summary and its tokens.
    fn summarise(&self) -> Result<(String, u64), String> {
        let (used, cap) = rtms_plugin::units_used();
        if cap.is_some_and(|c| used >= c) {
            let text = format!(
                "no summary: the session's units budget is spent ({used} of {} units)",
                cap.unwrap_or(0)
            );
            say("budget", Severity::Warning, text.clone(), None);
            return Err(text);
        }
        let body = completion_request(&self.s.model, &self.s.system_prompt, &self.transcript);
        let req = Request::post(&self.s.llm_url)
            .header("authorization", &format!("Bearer {}", self.key))
            .json(&body);
        let reply = send(&req, self.s.attempts, "the language model")?;
        if !reply.ok() {
            return Err(format!(
                "the language model refused the request: {}",
                provider_error(reply.status, &reply.body)
            ));
        }
        let json = reply.json().map_err(|e| e.to_string())?;
        let (summary, tokens) = completion_reply(&json)?;
        if let Err(e) = rtms_plugin::charge(tokens, "tokens") {
            say(
                "budget",
                Severity::Warning,
                format!("the summary's {tokens} tokens pass the session's units budget ({e:?})"),
                None,
            );
        }
        Ok((summary, tokens))
    }

    fn write(&self, title: &str, summary: &str) {
        let (Some(dir), Some(info)) = (&self.s.dir, &self.info) else {
            return;
        };
        let name = format!(
            "{}_{}.summary.md",
            rtms_plugin::product_name(info.product),
            rtms_plugin::file_safe(&info.stream_id)
        );
        let written = rtms_plugin::open_session_file(&dir.join(name), false)
            .and_then(|mut f| writeln!(f, "# {title}\n\n{summary}").map_err(|e| e.to_string()));
        if let Err(e) = written {
            rtms_plugin::log(Level::Error, &format!("cannot write the summary file: {e}"));
        }
    }

    fn post_chat(&self, url: &str, title: &str, summary: &str) {
        let req = Request::post(url).json(&chat_message(title, summary));
        match send(&req, self.s.attempts, "the chat webhook") {
            Ok(r) if r.ok() => say(
                "chat",
                Severity::Info,
                "summary posted to the chat webhook".to_owned(),
                None,
            ),
            Ok(r) => say(
                "chat",
                Severity::Warning,
                format!(
                    "the chat webhook refused the summary: {}",
                    provider_error(r.status, &r.body)
                ),
                None,
            ),
            Err(e) => say("chat", Severity::Warning, e, None),
        }
    }
}

/// Sends with retries, logging each retry; errors name the service, never the request.
fn send(req: &Request, attempts: u32, what: &str) -> Result<http::Response, String> {
    let retry = Retry {
        attempts,
        ..Retry::default()
    };
    http::send_with_retry(req, retry, |n, why| {
        rtms_plugin::log(
            Level::Warn,
            &format!("{what} answered {why} (attempt {n} of {attempts}); retrying"),
        );
    })
    .map_err(|e| format!("cannot reach {what}: {e}"))
}

fn say(kind: &str, severity: Severity, message: String, data: Option<String>) {
    rtms_plugin::emit(&Output {
        kind: kind.to_owned(),
        severity,
        message,
        data,
    });
}

rtms_plugin::export_plugin!(MeetingSummary);
