//! The provider profile: Deepgram's live streaming API, as public documentation describes it.
//!
//! - Connect to `<url>?model=<model>&encoding=linear16&sample_rate=<hz>&channels=<n>` (plus
//!   `language`, `punctuate=true`, and `tag=<speaker>` for a per-speaker connection) with the
//!   header `Authorization: Token <key>`.
//! - Send raw audio as binary messages, `{"type":"KeepAlive"}` when no audio flows (Deepgram
//!   closes a connection idle for 10 s), and `{"type":"CloseStream"}` at the end, after which
//!   the service sends its last results and closes.
//! - Receive `{"type":"Results", "is_final": true, "channel": {"alternatives": [{"transcript":
//!   ...}]}, "start": s, "duration": s}`; other types (`Metadata`, `SpeechStarted`,
//!   `UtteranceEnd`) carry no text.
//!
//! Pure functions only: tested natively.

use serde_json::Value;

/// The messages the client sends besides audio.
pub const KEEP_ALIVE: &str = r#"{"type":"KeepAlive"}"#;
pub const CLOSE_STREAM: &str = r#"{"type":"CloseStream"}"#;

/// What a connection asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen<'a> {
    pub url: &'a str,
    pub model: &'a str,
    pub language: Option<&'a str>,
    pub sample_rate: u32,
    pub channels: u8,
    /// The speaker of a per-speaker connection (Deepgram's `tag`, a request label).
    pub tag: Option<&'a str>,
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Listen<'_> {
    /// The URL to open.
    pub fn url(&self) -> String {
        let mut q = vec![
            ("model", self.model.to_owned()),
            ("encoding", "linear16".to_owned()),
            ("sample_rate", self.sample_rate.to_string()),
            ("channels", self.channels.to_string()),
            ("punctuate", "true".to_owned()),
        ];
        if let Some(l) = self.language {
            q.push(("language", l.to_owned()));
        }
        if let Some(t) = self.tag {
            q.push(("tag", t.to_owned()));
        }
        let query: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}{}", self.url, query.join("&"))
    }

    /// The handshake headers.
    pub fn headers(key: &str) -> Vec<(String, String)> {
        vec![("authorization".to_owned(), format!("Token {key}"))]
    }
}

/// A final result with text.
#[derive(Clone, Debug, PartialEq)]
pub struct Recognised {
    pub text: String,
    /// Seconds from the start of the connection's audio.
    pub start: f64,
    pub duration: f64,
    pub confidence: f64,
}

/// The recognised text of a message, if it is a final `Results` with text.
pub fn recognised(message: &str) -> Result<Option<Recognised>, String> {
    let v: Value = serde_json::from_str(message)
        .map_err(|e| format!("the provider sent a message that is not JSON: {e}"))?;
    if v.get("type").and_then(Value::as_str) != Some("Results") {
        return Ok(None);
    }
    if v.get("is_final").and_then(Value::as_bool) != Some(true) {
        return Ok(None);
    }
    let alt = &v["channel"]["alternatives"][0];
    let text = alt["transcript"].as_str().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(None);
    }
    Ok(Some(Recognised {
        text: text.to_owned(),
        start: v["start"].as_f64().unwrap_or(0.0),
        duration: v["duration"].as_f64().unwrap_or(0.0),
        confidence: alt["confidence"].as_f64().unwrap_or(0.0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_audio_format_and_encodes_values() {
        let l = Listen {
            url: "wss://api.deepgram.com/v1/listen",
            model: "nova-3",
            language: Some("en-US"),
            sample_rate: 16_000,
            channels: 1,
            tag: Some("a b"),
        };
        assert_eq!(
            l.url(),
            "wss://api.deepgram.com/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&channels=1&punctuate=true&language=en-US&tag=a%20b"
        );
        let l = Listen {
            url: "ws://127.0.0.1:9/v1/listen?x=1",
            language: None,
            tag: None,
            ..l
        };
        assert!(
            l.url()
                .starts_with("ws://127.0.0.1:9/v1/listen?x=1&model=nova-3&")
        );
    }

    #[test]
    fn only_final_results_with_text_are_recognised() {
        let r = recognised(r#"{"type":"Results","is_final":true,"start":1.5,"duration":2.0,"channel":{"alternatives":[{"transcript":" Hello there. ","confidence":0.9}]}}"#).unwrap().unwrap();
        assert_eq!(r.text, "Hello there.");
        assert_eq!((r.start, r.duration), (1.5, 2.0));
        assert_eq!(
            recognised(
                r#"{"type":"Results","is_final":false,"channel":{"alternatives":[{"transcript":"Hel"}]}}"#
            ),
            Ok(None)
        );
        assert_eq!(
            recognised(
                r#"{"type":"Results","is_final":true,"channel":{"alternatives":[{"transcript":""}]}}"#
            ),
            Ok(None)
        );
        assert_eq!(
            recognised(r#"{"type":"Metadata","duration":3.0}"#),
            Ok(None)
        );
        assert!(recognised("not json").is_err());
    }
}
