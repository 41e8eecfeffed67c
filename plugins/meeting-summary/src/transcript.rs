//! The meeting's transcript as the plugin keeps it, and the requests it makes of it. Pure
//! functions only: tested natively.

use serde_json::{Value, json};

/// The lines of a transcript, bounded in bytes: past the bound the oldest lines are cut (and
/// counted), since a summary needs the end of a meeting more than its start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    pub lines: Vec<String>,
    bytes: usize,
    pub cut: u64,
}

impl Transcript {
    /// Adds a line, cutting the oldest ones while the whole passes `max_bytes`.
    pub fn push(&mut self, line: String, max_bytes: usize) {
        self.bytes += line.len() + 1;
        self.lines.push(line);
        let mut drop = 0;
        while self.bytes > max_bytes && drop < self.lines.len() {
            self.bytes -= self.lines[drop].len() + 1;
            drop += 1;
        }
        if drop > 0 {
            self.lines.drain(..drop);
            self.cut += drop as u64;
        }
    }

    /// The text sent to the model.
    pub fn text(&self) -> String {
        let mut t = String::with_capacity(self.bytes);
        for l in &self.lines {
            t.push_str(l);
            t.push('\n');
        }
        t
    }
}

/// The chat completions request (OpenAI's `POST /v1/chat/completions`).
pub fn completion_request(model: &str, system: &str, t: &Transcript) -> Value {
    let mut user = String::new();
    if t.cut > 0 {
        user.push_str(&format!(
            "(The first {} lines of the meeting were left out for length.)\n",
            t.cut
        ));
    }
    user.push_str(&t.text());
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ],
        "temperature": 0.2,
    })
}

/// The summary and the tokens it cost, from a chat completions response.
pub fn completion_reply(body: &Value) -> Result<(String, u64), String> {
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or("the response holds no choices[0].message.content")?;
    let tokens = body["usage"]["total_tokens"].as_u64().unwrap_or(0);
    Ok((content.to_owned(), tokens))
}

/// The provider's error text from an error response (`{"error": {"message": ...}}`), cut
/// to 200 characters, for logs: never the request, which carries the key.
pub fn provider_error(status: u16, body: &[u8]) -> String {
    let text = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let text: String = text.chars().take(200).collect();
    format!("status {status}: {text}")
}

/// The chat webhook's message (Slack's incoming webhook: `{"text": ...}`).
pub fn chat_message(title: &str, summary: &str) -> Value {
    json!({ "text": format!("*{title}*\n{summary}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_lines_are_cut_past_the_bound() {
        let mut t = Transcript::default();
        for i in 0..10 {
            t.push(format!("line {i}"), 30);
        }
        assert_eq!(t.lines, vec!["line 6", "line 7", "line 8", "line 9"]);
        assert_eq!(t.cut, 6);
        let req = completion_request("m", "sys", &t);
        let user = req["messages"][1]["content"].as_str().unwrap();
        assert!(user.starts_with("(The first 6 lines"));
        assert!(user.ends_with("line 9\n"));
    }

    #[test]
    fn a_reply_gives_its_content_and_tokens() {
        let body = json!({"choices": [{"message": {"content": " Short. "}}], "usage": {"total_tokens": 42}});
        assert_eq!(completion_reply(&body), Ok(("Short.".to_owned(), 42)));
        assert!(completion_reply(&json!({"choices": []})).is_err());
        assert_eq!(
            provider_error(429, br#"{"error":{"message":"Rate limit reached"}}"#),
            "status 429: Rate limit reached"
        );
    }
}
