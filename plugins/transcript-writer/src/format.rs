//! The transcript writer's pure logic: which frames become lines, how a line is spelled in each
//! format, how the output file is named, and how a resumed instance recovers the time origin
//! from the file an earlier instance wrote.
//!
//! Nothing here touches files or the host, so it is unit tested natively. The file handling is
//! in `lib.rs`.
//!
//! # Formats
//!
//! `text`: a header comment, then one line per entry:
//!
//! ```text
//! # transcript of meeting abc==, stream 4f2a; times from origin_ms=1200
//! [00:00:00.000] Alice: hello everyone
//! [00:00:02.500] Bob (chat): the slides are in the channel
//! ```
//!
//! The time is the entry's start (a transcript's `start-ms`, a chat message's `timestamp-ms`)
//! minus the origin: the start of the first entry written for the stream. The header records the
//! origin so an instance that resumes the session keeps counting from it.
//!
//! `jsonl`: one JSON object per line, fields in this order:
//! `{"seq","kind","start_ms","end_ms","timestamp_ms","user_id","user_name","text","language"}`,
//! with `kind` `"transcript"` or `"chat"` and `language` `null` for chat. Times are Zoom's,
//! unchanged.
//!
//! Output depends only on the frames and the configuration (never the wall clock), so the same
//! frames always give the same bytes.

use std::borrow::Cow;

use rtms_plugin::{Frame, MediaKind, Product};
use serde::Serialize;

/// The file format, from the `format` config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines: `[HH:MM:SS.mmm] Speaker: text`.
    Text,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// The names accepted in the `format` config key.
    pub const NAMES: [&'static str; 2] = ["text", "jsonl"];

    /// Parses one of [`Format::NAMES`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "text" => Some(Self::Text),
            "jsonl" => Some(Self::Jsonl),
            _ => None,
        }
    }

    /// The output file's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Text => "txt",
            Self::Jsonl => "jsonl",
        }
    }
}

/// Whether an entry was spoken or typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Transcript,
    Chat,
}

/// One line-to-be, taken from a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    pub seq: u64,
    pub kind: EntryKind,
    /// Transcript start, or the chat message's timestamp.
    pub start_ms: u64,
    /// Transcript end, or the chat message's timestamp.
    pub end_ms: u64,
    pub timestamp_ms: u64,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub text: Cow<'a, str>,
    /// Zoom's language number; `None` for chat.
    pub language: Option<i32>,
}

impl<'a> Entry<'a> {
    /// The entry a frame makes: transcript frames always, chat frames when `include_chat`.
    /// Frames of other kinds, and frames without text, make none.
    pub fn from_frame(frame: &'a Frame, include_chat: bool) -> Option<Self> {
        let text = frame.text.as_deref()?;
        if text.trim().is_empty() {
            return None;
        }
        let (kind, start_ms, end_ms, language, text) = match frame.kind {
            MediaKind::Transcript => {
                let (start, end, language) = frame
                    .transcript
                    .as_ref()
                    .map_or((frame.timestamp_ms, frame.timestamp_ms, -1), |t| {
                        (t.start_ms, t.end_ms, t.language)
                    });
                (
                    EntryKind::Transcript,
                    start,
                    end,
                    Some(language),
                    Cow::Borrowed(text),
                )
            }
            MediaKind::Chat if include_chat => (
                EntryKind::Chat,
                frame.timestamp_ms,
                frame.timestamp_ms,
                None,
                rtms_plugin::chat_text(text),
            ),
            _ => return None,
        };
        Some(Self {
            seq: frame.seq,
            kind,
            start_ms,
            end_ms,
            timestamp_ms: frame.timestamp_ms,
            user_id: &frame.user_id,
            user_name: &frame.user_name,
            text,
            language,
        })
    }

    /// The name shown in text lines: see [`rtms_plugin::speaker_name`].
    pub fn speaker(&self) -> String {
        rtms_plugin::speaker_name(self.user_name, self.user_id)
    }
}

/// `HH:MM:SS.mmm`; hours keep counting past 99.
pub fn clock(ms: u64) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}.{milli:03}")
}

/// The output file's name: `<product>_<stream id>.<ext>`, the stream id made safe by
/// [`rtms_plugin::file_safe`].
pub fn file_name(product: Product, stream_id: &str, format: Format) -> String {
    let product = rtms_plugin::product_name(product);
    let stream = rtms_plugin::file_safe(stream_id);
    format!("{product}_{stream}.{}", format.extension())
}

/// The key of the text header that holds the origin.
const ORIGIN_KEY: &str = "origin_ms=";

/// Finds the origin recorded by an earlier instance in an existing text file: the last header
/// line (a line starting with `#`) that holds `origin_ms=<n>`.
pub fn parse_origin(existing: &str) -> Option<u64> {
    existing
        .lines()
        .rev()
        .filter(|l| l.starts_with('#'))
        .find_map(|l| {
            let at = l.find(ORIGIN_KEY)? + ORIGIN_KEY.len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
}

/// What the header names: set once per session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionLabel {
    pub product: String,
    pub meeting_id: String,
    pub stream_id: String,
}

/// Turns entries into lines for one session. Holds the text format's time origin.
#[derive(Debug, Clone)]
pub struct LineWriter {
    format: Format,
    /// `Some("b")` in the variant build: text lines get a `B ` prefix and JSON objects a
    /// `"build"` field, so tests can tell which build wrote a line.
    build_tag: Option<&'static str>,
    label: SessionLabel,
    origin_ms: Option<u64>,
}

impl LineWriter {
    /// A writer for a fresh session, or for a resumed one whose earlier origin is known.
    pub fn new(
        format: Format,
        build_tag: Option<&'static str>,
        label: SessionLabel,
        origin_ms: Option<u64>,
    ) -> Self {
        Self {
            format,
            build_tag,
            label,
            origin_ms,
        }
    }

    /// The text to append for `entry`, newline included. The first text line of a session is
    /// preceded by the header that records the origin.
    pub fn lines_for(&mut self, entry: &Entry<'_>) -> String {
        match self.format {
            Format::Text => self.text(entry),
            Format::Jsonl => self.json(entry),
        }
    }

    fn text(&mut self, entry: &Entry<'_>) -> String {
        let mut out = String::new();
        let origin = match self.origin_ms {
            Some(origin) => origin,
            None => {
                self.origin_ms = Some(entry.start_ms);
                out.push_str(&format!(
                    "# transcript of {} {}, stream {}; times from {ORIGIN_KEY}{}\n",
                    self.label.product,
                    one_line(&self.label.meeting_id),
                    one_line(&self.label.stream_id),
                    entry.start_ms
                ));
                entry.start_ms
            }
        };
        if self.build_tag.is_some() {
            out.push_str("B ");
        }
        let chat = if entry.kind == EntryKind::Chat {
            " (chat)"
        } else {
            ""
        };
        out.push_str(&format!(
            "[{}] {}{chat}: {}\n",
            clock(entry.start_ms.saturating_sub(origin)),
            one_line(&entry.speaker()),
            one_line(&entry.text)
        ));
        out
    }

    fn json(&self, entry: &Entry<'_>) -> String {
        let line = JsonLine {
            seq: entry.seq,
            kind: match entry.kind {
                EntryKind::Transcript => "transcript",
                EntryKind::Chat => "chat",
            },
            start_ms: entry.start_ms,
            end_ms: entry.end_ms,
            timestamp_ms: entry.timestamp_ms,
            user_id: entry.user_id,
            user_name: entry.user_name,
            text: &entry.text,
            language: entry.language,
            build: self.build_tag,
        };
        // Serializing plain fields cannot fail; an empty line would be the visible sign if it did.
        let mut out = serde_json::to_string(&line).unwrap_or_default();
        out.push('\n');
        out
    }
}

/// One `jsonl` line; serde writes the fields in this order, which the format promises.
#[derive(Serialize)]
struct JsonLine<'e> {
    seq: u64,
    kind: &'static str,
    start_ms: u64,
    end_ms: u64,
    timestamp_ms: u64,
    user_id: &'e str,
    user_name: &'e str,
    text: &'e str,
    /// `null` for chat.
    language: Option<i32>,
    /// Only in the variant build.
    #[serde(skip_serializing_if = "Option::is_none")]
    build: Option<&'static str>,
}

/// Keeps one entry on one line: line breaks and other control characters become spaces.
fn one_line(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtms_plugin::TranscriptInfo;
    use serde_json::Value;

    fn transcript(seq: u64, start: u64, name: &str, text: &str) -> Frame {
        Frame {
            kind: MediaKind::Transcript,
            seq,
            timestamp_ms: start + 900,
            user_id: "16778240".into(),
            user_name: name.into(),
            payload: Vec::new(),
            text: Some(text.into()),
            transcript: Some(TranscriptInfo {
                start_ms: start,
                end_ms: start + 800,
                language: 9,
            }),
            event_type: None,
        }
    }

    fn chat(seq: u64, ts: u64, name: &str, text: &str) -> Frame {
        Frame {
            kind: MediaKind::Chat,
            seq,
            timestamp_ms: ts,
            user_id: "42".into(),
            user_name: name.into(),
            payload: Vec::new(),
            text: Some(text.into()),
            transcript: None,
            event_type: None,
        }
    }

    fn label() -> SessionLabel {
        SessionLabel {
            product: "meeting".into(),
            meeting_id: "abc==".into(),
            stream_id: "s1".into(),
        }
    }

    fn render(format: Format, tag: Option<&'static str>, frames: &[Frame], chat: bool) -> String {
        let mut w = LineWriter::new(format, tag, label(), None);
        frames
            .iter()
            .filter_map(|f| Entry::from_frame(f, chat))
            .map(|e| w.lines_for(&e))
            .collect()
    }

    #[test]
    fn text_lines_count_time_from_the_first_entry_and_mark_chat() {
        let frames = [
            transcript(1, 1_000, "Alice", "hello"),
            chat(2, 3_500, "Bob", "hi all"),
            transcript(3, 3_723_500, "Alice", "still here"),
        ];
        assert_eq!(
            render(Format::Text, None, &frames, true),
            "# transcript of meeting abc==, stream s1; times from origin_ms=1000\n\
             [00:00:00.000] Alice: hello\n\
             [00:00:02.500] Bob (chat): hi all\n\
             [01:02:02.500] Alice: still here\n"
        );
    }

    #[test]
    fn chat_is_left_out_unless_asked_for() {
        let frames = [chat(1, 0, "Bob", "hi"), transcript(2, 10, "Alice", "hello")];
        let out = render(Format::Text, None, &frames, false);
        assert!(!out.contains("Bob"), "{out}");
        assert!(out.ends_with("[00:00:00.000] Alice: hello\n"), "{out}");
    }

    #[test]
    fn jsonl_objects_carry_every_field_in_a_fixed_order() {
        let frames = [
            transcript(7, 100, "Al \"the\" ice", "line\nbreak"),
            chat(
                8,
                950,
                "",
                r#"{"content":"from json","sender":{"user_id":"42"}}"#,
            ),
        ];
        assert_eq!(
            render(Format::Jsonl, None, &frames, true),
            concat!(
                r#"{"seq":7,"kind":"transcript","start_ms":100,"end_ms":900,"timestamp_ms":1000,"user_id":"16778240","user_name":"Al \"the\" ice","text":"line\nbreak","language":9}"#,
                "\n",
                r#"{"seq":8,"kind":"chat","start_ms":950,"end_ms":950,"timestamp_ms":950,"user_id":"42","user_name":"","text":"from json","language":null}"#,
                "\n"
            )
        );
    }

    #[test]
    fn the_variant_build_is_visibly_different() {
        let frames = [transcript(1, 0, "Alice", "hi")];
        let text = render(Format::Text, Some("b"), &frames, false);
        assert!(text.ends_with("\nB [00:00:00.000] Alice: hi\n"), "{text}");
        let json = render(Format::Jsonl, Some("b"), &frames, false);
        assert!(
            json.ends_with(",\"language\":9,\"build\":\"b\"}\n"),
            "{json}"
        );
    }

    #[test]
    fn a_resumed_writer_keeps_the_recorded_origin_and_writes_no_second_header() {
        let first = render(
            Format::Text,
            None,
            &[transcript(1, 5_000, "A", "one")],
            false,
        );
        let origin = parse_origin(&first);
        assert_eq!(origin, Some(5_000));
        let mut w = LineWriter::new(Format::Text, None, label(), origin);
        let entry_frame = transcript(2, 65_000, "A", "two");
        let Some(entry) = Entry::from_frame(&entry_frame, false) else {
            panic!("a transcript frame makes an entry");
        };
        assert_eq!(w.lines_for(&entry), "[00:01:00.000] A: two\n");
    }

    #[test]
    fn parse_origin_ignores_text_lines_and_bad_headers() {
        assert_eq!(parse_origin(""), None);
        assert_eq!(parse_origin("[00:00:00.000] A: origin_ms=5\n"), None);
        assert_eq!(parse_origin("# times from origin_ms=x\n"), None);
        assert_eq!(
            parse_origin("# origin_ms=1\nline\n# origin_ms=22\n"),
            Some(22)
        );
    }

    #[test]
    fn speakers_fall_back_to_the_id_then_unknown() {
        let mut f = transcript(1, 0, "  ", "hi");
        assert_eq!(
            Entry::from_frame(&f, false).map(|e| e.speaker()),
            Some("user 16778240".into())
        );
        f.user_id = "-1".into();
        assert_eq!(
            Entry::from_frame(&f, false).map(|e| e.speaker()),
            Some("unknown".into())
        );
    }

    #[test]
    fn frames_without_text_or_of_other_kinds_make_no_entry() {
        let mut f = transcript(1, 0, "A", "  ");
        assert!(Entry::from_frame(&f, true).is_none());
        f.text = None;
        assert!(Entry::from_frame(&f, true).is_none());
        let mut audio = chat(2, 0, "A", "x");
        audio.kind = MediaKind::Audio;
        assert!(Entry::from_frame(&audio, true).is_none());
    }

    #[test]
    fn file_names_use_the_product_and_a_safe_stream_id() {
        assert_eq!(
            file_name(Product::Webinar, "a/b+c==", Format::Jsonl),
            "webinar_a_b_c__.jsonl"
        );
        assert_eq!(
            file_name(Product::Meeting, "..", Format::Text),
            "meeting_unknown.txt"
        );
        assert_eq!(
            file_name(Product::Meeting, "", Format::Text),
            "meeting_unknown.txt"
        );
    }

    #[test]
    fn clock_formats_hours_minutes_seconds_and_millis() {
        assert_eq!(clock(0), "00:00:00.000");
        assert_eq!(clock(62_500), "00:01:02.500");
        assert_eq!(clock(360_000_001), "100:00:00.001");
    }

    /// The golden files in `testdata/`: `frames.jsonl` and `session.json` are the input, the
    /// `expected*` files the exact bytes the plugin writes for them (with `include_chat = true`).
    /// The host's end-to-end tests feed the same frames through the runtime and compare the
    /// file the component wrote. Set `RTMS_BLESS=1` to rewrite the expected files after an
    /// intended change.
    mod golden {
        use super::*;
        use std::path::PathBuf;

        fn testdata(name: &str) -> PathBuf {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("testdata")
                .join(name)
        }

        fn read(name: &str) -> String {
            match std::fs::read_to_string(testdata(name)) {
                Ok(s) => s,
                Err(e) => panic!("cannot read testdata/{name}: {e}"),
            }
        }

        fn str_field(v: &Value, key: &str) -> String {
            v[key].as_str().unwrap_or_default().to_owned()
        }

        fn frames() -> Vec<Frame> {
            read("frames.jsonl")
                .lines()
                .map(|line| {
                    let v: Value = match serde_json::from_str(line) {
                        Ok(v) => v,
                        Err(e) => panic!("bad frame line {line}: {e}"),
                    };
                    let kind = match v["kind"].as_str() {
                        Some("transcript") => MediaKind::Transcript,
                        Some("chat") => MediaKind::Chat,
                        Some("audio") => MediaKind::Audio,
                        Some("video") => MediaKind::Video,
                        Some("share") => MediaKind::Share,
                        _ => MediaKind::Event,
                    };
                    let transcript = v["start_ms"].as_u64().map(|start_ms| TranscriptInfo {
                        start_ms,
                        end_ms: v["end_ms"].as_u64().unwrap_or(start_ms),
                        language: v["language"]
                            .as_i64()
                            .and_then(|l| i32::try_from(l).ok())
                            .unwrap_or(-1),
                    });
                    Frame {
                        kind,
                        seq: v["seq"].as_u64().unwrap_or_default(),
                        timestamp_ms: v["timestamp_ms"].as_u64().unwrap_or_default(),
                        user_id: str_field(&v, "user_id"),
                        user_name: str_field(&v, "user_name"),
                        payload: Vec::new(),
                        text: v["text"].as_str().map(str::to_owned),
                        transcript,
                        event_type: None,
                    }
                })
                .collect()
        }

        fn session() -> SessionLabel {
            let v: Value = match serde_json::from_str(&read("session.json")) {
                Ok(v) => v,
                Err(e) => panic!("bad session.json: {e}"),
            };
            SessionLabel {
                product: str_field(&v, "product"),
                meeting_id: str_field(&v, "meeting_id"),
                stream_id: str_field(&v, "stream_id"),
            }
        }

        fn check(format: Format, tag: Option<&'static str>, expected: &str) {
            let frames = frames();
            let mut w = LineWriter::new(format, tag, session(), None);
            let actual: String = frames
                .iter()
                .filter_map(|f| Entry::from_frame(f, true))
                .map(|e| w.lines_for(&e))
                .collect();
            if std::env::var_os("RTMS_BLESS").is_some()
                && let Err(e) = std::fs::write(testdata(expected), &actual)
            {
                panic!("cannot bless testdata/{expected}: {e}");
            }
            assert_eq!(actual, read(expected), "testdata/{expected} differs");
        }

        #[test]
        fn text_output_matches_the_golden_file() {
            check(Format::Text, None, "expected.txt");
        }

        #[test]
        fn jsonl_output_matches_the_golden_file() {
            check(Format::Jsonl, None, "expected.jsonl");
        }

        #[test]
        fn variant_b_text_output_matches_the_golden_file() {
            check(Format::Text, Some("b"), "expected-b.txt");
        }

        #[test]
        fn the_golden_file_is_named_after_product_and_stream() {
            assert_eq!(
                file_name(Product::Meeting, &session().stream_id, Format::Text),
                "meeting_e1c5a2f0-golden.txt"
            );
        }
    }
}
