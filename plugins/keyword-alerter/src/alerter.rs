//! Turns frames into keyword alerts: the configuration, the per-keyword cooldown and the shape
//! of the `keyword` output.
//!
//! The cooldown is measured on frame timestamps (`timestamp-ms`), never the wall clock, so
//! replaying the same frames gives the same alerts. No host calls here: unit tested natively.

use rtms_plugin::serde_json::json;
use rtms_plugin::{Config, Frame, MediaKind, Output, Severity};

use crate::matcher::{Matcher, context};

/// Default quiet time after an alert for the same keyword.
pub const DEFAULT_COOLDOWN_MS: u64 = 30_000;
/// Default characters of context either side of a match.
pub const DEFAULT_CONTEXT_CHARS: u64 = 60;

/// The plugin's configuration, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub matcher: Matcher,
    pub cooldown_ms: u64,
    pub context_chars: usize,
    pub severity: Severity,
    pub include_chat: bool,
}

impl Settings {
    /// Reads and checks every key; unknown keys are refused.
    pub fn from_config(config: Config) -> Result<Self, String> {
        let keywords = config.string_list("keywords")?.ok_or(
            "config key `keywords` is required: a JSON array of words and phrases, like [\"refund\", \"cancel my plan\"]",
        )?;
        let cooldown_ms = config.u64_or("cooldown_ms", DEFAULT_COOLDOWN_MS)?;
        let context_chars = config.u64_or("context_chars", DEFAULT_CONTEXT_CHARS)?;
        let severity_name = config.choice_or(
            "severity",
            &["info", "notice", "warning", "critical"],
            "warning",
        )?;
        let include_chat = config.bool_or("include_chat", false)?;
        config.finish()?;
        let severity = rtms_plugin::parse_severity(severity_name)
            .ok_or_else(|| format!("config key `severity` has no level `{severity_name}`"))?;
        Ok(Self {
            matcher: Matcher::new(&keywords)?,
            cooldown_ms,
            context_chars: usize::try_from(context_chars).unwrap_or(usize::MAX),
            severity,
            include_chat,
        })
    }
}

/// What every alert of a session names.
#[derive(Debug, Clone, Default)]
pub struct SessionIds {
    pub stream_id: String,
    pub meeting_id: String,
}

/// The scanning state of one instance.
#[derive(Debug, Clone)]
pub struct Alerter {
    settings: Settings,
    /// Per keyword (matcher index), the timestamp of its last alert.
    last_alert: Vec<Option<u64>>,
    /// Alerts raised by this instance.
    pub alerts: u64,
}

impl Alerter {
    pub fn new(settings: Settings) -> Self {
        let n = settings.matcher.keywords().count();
        Self {
            settings,
            last_alert: vec![None; n],
            alerts: 0,
        }
    }

    /// The alerts `frame` raises: at most one per keyword, none for a keyword still cooling
    /// down from an alert less than `cooldown_ms` earlier (by frame time).
    pub fn scan(&mut self, frame: &Frame, ids: &SessionIds) -> Vec<Output> {
        let text = match (frame.kind, frame.text.as_deref()) {
            (MediaKind::Transcript, Some(t)) => std::borrow::Cow::Borrowed(t),
            (MediaKind::Chat, Some(t)) if self.settings.include_chat => rtms_plugin::chat_text(t),
            _ => return Vec::new(),
        };
        let now = frame.timestamp_ms;
        let speaker = rtms_plugin::speaker_name(&frame.user_name, &frame.user_id);
        let mut out = Vec::new();
        for m in self.settings.matcher.find(&text) {
            let Some(last) = self.last_alert.get_mut(m.keyword) else {
                continue;
            };
            if let Some(at) = *last {
                // A timestamp earlier than the last alert (clock skew between kinds) counts
                // as no time passed.
                if now.saturating_sub(at) < self.settings.cooldown_ms {
                    continue;
                }
            }
            *last = Some(now);
            self.alerts += 1;
            let keyword = self.settings.matcher.keyword(m.keyword);
            let ctx = context(&text, m.start, m.end, self.settings.context_chars);
            let verb = if frame.kind == MediaKind::Chat {
                "wrote"
            } else {
                "said"
            };
            out.push(Output {
                kind: "keyword".to_owned(),
                severity: self.settings.severity,
                message: format!("{speaker} {verb} \"{keyword}\": {ctx}"),
                data: Some(
                    json!({
                        "stream_id": ids.stream_id,
                        "meeting_id": ids.meeting_id,
                        "speaker": speaker,
                        "user_id": frame.user_id,
                        "keyword": keyword,
                        "context": ctx,
                        "timestamp_ms": now,
                        "seq": frame.seq,
                        "source": rtms_plugin::media_kind_name(frame.kind),
                    })
                    .to_string(),
                ),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtms_plugin::serde_json::Value;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        Settings::from_config(Config::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }

    fn alerter(pairs: &[(&str, &str)]) -> Alerter {
        match settings(pairs) {
            Ok(s) => Alerter::new(s),
            Err(e) => panic!("{e}"),
        }
    }

    fn frame(kind: MediaKind, seq: u64, ts: u64, text: &str) -> Frame {
        Frame {
            kind,
            seq,
            timestamp_ms: ts,
            user_id: "16778240".into(),
            user_name: "Alice".into(),
            payload: Vec::new(),
            text: Some(text.into()),
            transcript: None,
            event_type: None,
        }
    }

    fn ids() -> SessionIds {
        SessionIds {
            stream_id: "s1".into(),
            meeting_id: "m1".into(),
        }
    }

    #[test]
    fn an_alert_names_speaker_keyword_and_context_and_carries_json_data() {
        let mut a = alerter(&[("keywords", r#"["refund"]"#), ("context_chars", "10")]);
        let out = a.scan(
            &frame(
                MediaKind::Transcript,
                5,
                1000,
                "well, I want a Refund today please",
            ),
            &ids(),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, "keyword");
        assert_eq!(out[0].severity, Severity::Warning);
        assert_eq!(
            out[0].message,
            "Alice said \"refund\": …I want a Refund today…"
        );
        let data: Value = match out[0]
            .data
            .as_deref()
            .map(rtms_plugin::serde_json::from_str)
        {
            Some(Ok(v)) => v,
            other => panic!("bad data: {other:?}"),
        };
        assert_eq!(data["stream_id"], "s1");
        assert_eq!(data["meeting_id"], "m1");
        assert_eq!(data["speaker"], "Alice");
        assert_eq!(data["user_id"], "16778240");
        assert_eq!(data["keyword"], "refund");
        assert_eq!(data["context"], "…I want a Refund today…");
        assert_eq!(data["timestamp_ms"], 1000);
        assert_eq!(data["seq"], 5);
    }

    #[test]
    fn cooldown_is_per_keyword_and_measured_on_frame_time() {
        let mut a = alerter(&[
            ("keywords", r#"["refund","cancel"]"#),
            ("cooldown_ms", "1000"),
        ]);
        let t = MediaKind::Transcript;
        assert_eq!(a.scan(&frame(t, 1, 10_000, "refund"), &ids()).len(), 1);
        assert_eq!(
            a.scan(&frame(t, 2, 10_999, "refund"), &ids()).len(),
            0,
            "still cooling down"
        );
        assert_eq!(
            a.scan(&frame(t, 3, 10_500, "cancel"), &ids()).len(),
            1,
            "other keyword"
        );
        assert_eq!(
            a.scan(&frame(t, 4, 11_000, "refund and cancel"), &ids())
                .len(),
            1
        );
        assert_eq!(
            a.scan(&frame(t, 5, 9_000, "refund"), &ids()).len(),
            0,
            "time went back"
        );
        assert_eq!(a.alerts, 3);
    }

    #[test]
    fn zero_cooldown_alerts_every_time() {
        let mut a = alerter(&[("keywords", r#"["x"]"#), ("cooldown_ms", "0")]);
        for seq in 0..3 {
            assert_eq!(
                a.scan(&frame(MediaKind::Transcript, seq, 5, "x"), &ids())
                    .len(),
                1
            );
        }
    }

    #[test]
    fn chat_is_scanned_only_when_asked_and_says_wrote() {
        let chat = frame(MediaKind::Chat, 1, 0, r#"{"content":"need a refund"}"#);
        let mut a = alerter(&[("keywords", r#"["refund"]"#)]);
        assert!(a.scan(&chat, &ids()).is_empty());
        let mut a = alerter(&[
            ("keywords", r#"["refund"]"#),
            ("include_chat", "true"),
            ("severity", "critical"),
        ]);
        let out = a.scan(&chat, &ids());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].message, "Alice wrote \"refund\": need a refund");
        assert_eq!(out[0].severity, Severity::Critical);
    }

    #[test]
    fn other_kinds_are_ignored() {
        let mut a = alerter(&[("keywords", r#"["refund"]"#), ("include_chat", "true")]);
        assert!(
            a.scan(&frame(MediaKind::Event, 1, 0, "refund"), &ids())
                .is_empty()
        );
    }

    #[test]
    fn config_errors_are_clear() {
        let err = settings(&[]).unwrap_err();
        assert!(err.contains("`keywords` is required"), "{err}");
        let err = settings(&[("keywords", "refund")]).unwrap_err();
        assert!(err.contains("array of strings"), "{err}");
        let err = settings(&[("keywords", r#"["a"]"#), ("severity", "loud")]).unwrap_err();
        assert!(err.contains("`severity`"), "{err}");
        let err = settings(&[("keywords", r#"["a"]"#), ("cooldown", "5")]).unwrap_err();
        assert!(err.starts_with("unknown config key `cooldown`"), "{err}");
    }
}
