//! An OpenAI-compatible chat completions API: `POST /v1/chat/completions` with
//! `Authorization: Bearer <key>`, answered with a `chat.completion` object whose content is a
//! deterministic summary of the last user message (the transcript a summariser sends).
//!
//! Errors follow OpenAI's shape (`{"error": {"message", "type", "code"}}`): 401 for a wrong
//! key, 400 for a malformed request, and the failures a test scripts with
//! [`LlmFake::fail_next`] (429 with `Retry-After`, or a 5xx).

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::http::{Reply, Req, Served};

/// The most requests a fake records.
const MAX_RECORDED: usize = 1024;

/// A request the fake answered with a completion.
#[derive(Clone, Debug)]
pub struct Completion {
    pub model: String,
    /// The content of the last `user` message.
    pub prompt: String,
    /// The summary it returned.
    pub summary: String,
}

#[derive(Default)]
struct State {
    key: String,
    failures: VecDeque<(u16, Option<u64>)>,
    requests: usize,
    completions: Vec<Completion>,
}

/// A running fake; stops when dropped.
pub struct LlmFake(Served<State>);

impl LlmFake {
    /// Starts the fake on 127.0.0.1; requests must carry `Authorization: Bearer <key>`.
    pub async fn start(key: &str) -> std::io::Result<Self> {
        let state = State {
            key: key.to_owned(),
            ..State::default()
        };
        Ok(Self(Served::start(state, handle).await?))
    }

    /// The base URL, as OpenAI's `https://api.openai.com`: requests go to
    /// `{base}/v1/chat/completions`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.0.addr)
    }

    /// The next `count` requests fail with `status` (with `Retry-After: retry_after` seconds
    /// when given), before any is answered.
    pub fn fail_next(&self, status: u16, count: usize, retry_after: Option<u64>) {
        let mut s = self.0.state.lock();
        for _ in 0..count {
            s.failures.push_back((status, retry_after));
        }
    }

    /// Requests received, failed ones included.
    pub fn requests(&self) -> usize {
        self.0.state.lock().requests
    }

    /// The completions it answered, in order.
    pub fn completions(&self) -> Vec<Completion> {
        self.0.state.lock().completions.clone()
    }
}

fn error(status: u16, message: &str, kind: &str, code: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

fn handle(state: &Mutex<State>, req: Req) -> Reply {
    let mut s = state.lock();
    s.requests += 1;
    if req.method != "POST" || req.path.split('?').next() != Some("/v1/chat/completions") {
        return error(
            404,
            &format!("Unknown request URL: {} {}", req.method, req.path),
            "invalid_request_error",
            "unknown_url",
        );
    }
    let expected = format!("Bearer {}", s.key);
    if req.header("authorization") != Some(expected.as_str()) {
        return error(
            401,
            "Incorrect API key provided.",
            "invalid_request_error",
            "invalid_api_key",
        );
    }
    if let Some((status, retry_after)) = s.failures.pop_front() {
        let mut reply = if status == 429 {
            error(
                429,
                "Rate limit reached for requests.",
                "requests",
                "rate_limit_exceeded",
            )
        } else {
            error(
                status,
                "The server had an error while processing your request.",
                "server_error",
                "server_error",
            )
        };
        if let Some(secs) = retry_after {
            reply.headers.push(("retry-after".into(), secs.to_string()));
        }
        return reply;
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                400,
                &format!("We could not parse the JSON body of your request: {e}"),
                "invalid_request_error",
                "invalid_json",
            );
        }
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return error(
            400,
            "you must provide a model parameter",
            "invalid_request_error",
            "missing_model",
        );
    };
    let Some(messages) = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return error(
            400,
            "'messages' must be a non-empty array",
            "invalid_request_error",
            "invalid_messages",
        );
    };
    let prompt = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content").and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned();
    let summary = summarise(&prompt);
    let prompt_tokens: usize = messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_str))
        .map(|c| c.split_whitespace().count())
        .sum();
    let completion_tokens = summary.split_whitespace().count();
    let n = s.completions.len();
    if n < MAX_RECORDED {
        s.completions.push(Completion {
            model: model.to_owned(),
            prompt,
            summary: summary.clone(),
        });
    }
    Reply::json(
        200,
        json!({
            "id": format!("chatcmpl-fake{n}"),
            "object": "chat.completion",
            "created": 1_764_900_000 + n,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": summary, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens
            }
        }),
    )
}

/// A summary a test can recognise: how many lines, who spoke, the first and last line.
/// Lines are `speaker: text`; blank lines are skipped.
pub fn summarise(transcript: &str) -> String {
    let lines: Vec<&str> = transcript
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut speakers: Vec<&str> = Vec::new();
    for l in &lines {
        if let Some((who, _)) = l.split_once(": ")
            && !speakers.contains(&who)
        {
            speakers.push(who);
        }
    }
    match (lines.first(), lines.last()) {
        (Some(first), Some(last)) => format!(
            "Summary of {} lines from {} speakers ({}). It opened with \"{first}\" and closed with \"{last}\".",
            lines.len(),
            speakers.len(),
            speakers.join(", ")
        ),
        _ => "Summary: the transcript was empty.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_lines_and_speakers() {
        let s = summarise("Ann: hello\n\nBob: hi there\nAnn: bye\n");
        assert_eq!(
            s,
            "Summary of 3 lines from 2 speakers (Ann, Bob). It opened with \"Ann: hello\" and closed with \"Ann: bye\"."
        );
    }
}
