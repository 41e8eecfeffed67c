//! A Slack-style incoming webhook: `POST /services/<team>/<bot>/<token>` with a JSON body
//! holding `text`, answered `200 ok`; Slack's own error texts otherwise (`invalid_payload`,
//! `no_text`, `no_service`).

use parking_lot::Mutex;
use serde_json::Value;

use crate::http::{Reply, Req, Served};

/// The most messages a fake records.
const MAX_RECORDED: usize = 1024;
/// The path of the one webhook this fake serves.
pub const HOOK_PATH: &str = "/services/T0FAKE000/B0FAKE000/fakeHookToken0000000000";

#[derive(Default)]
struct State {
    texts: Vec<String>,
    requests: usize,
}

/// A running fake; stops when dropped.
pub struct ChatFake(Served<State>);

impl ChatFake {
    /// Starts the fake on 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        Ok(Self(Served::start(State::default(), handle).await?))
    }

    /// The webhook's URL (secret in Slack: it carries the token).
    pub fn webhook_url(&self) -> String {
        format!("http://{}{HOOK_PATH}", self.0.addr)
    }

    /// The base URL, for an allow-list pattern.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.0.addr)
    }

    /// The texts posted, in order.
    pub fn texts(&self) -> Vec<String> {
        self.0.state.lock().texts.clone()
    }

    /// Requests received, refused ones included.
    pub fn requests(&self) -> usize {
        self.0.state.lock().requests
    }
}

fn handle(state: &Mutex<State>, req: Req) -> Reply {
    let mut s = state.lock();
    s.requests += 1;
    if req.method != "POST" || req.path != HOOK_PATH {
        return Reply::text(404, "no_service");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return Reply::text(400, "invalid_payload");
    };
    let Some(text) = body
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return Reply::text(400, "no_text");
    };
    if s.texts.len() < MAX_RECORDED {
        s.texts.push(text.to_owned());
    }
    Reply::text(200, "ok")
}
