//! `rtms-host tap`: attach to a running host's admin listener and print live frames and
//! plugin outputs, filtered by session, kind or plugin.
//!
//! It reads `GET /admin/tap` (JSON Lines) and prints one line per event, or the JSON itself
//! with `--json`. The host never waits for a tap: when this terminal cannot keep up, the host
//! drops the tap's own oldest events and a line says how many were missed. The stream ends
//! when the admin listener's connection age limit is reached; the tap then reconnects.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use serde_json::Value;

use crate::urlenc::encode;

/// How long the admin listener may take to start answering the tap.
const TAP_ANSWER_WITHIN: Duration = Duration::from_secs(30);

#[derive(Args, Debug, Clone)]
pub struct TapArgs {
    /// The host's admin listener (`[admin] listen`).
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub admin: String,
    /// The environment variable holding the admin token.
    #[arg(long, default_value = "RTMS_ADMIN_TOKEN")]
    pub token_env: String,
    /// Only this stream (rtms_stream_id) or meeting.
    #[arg(long)]
    pub session: Option<String>,
    /// Only these frame kinds (audio, video, share, transcript, chat, event); repeatable or
    /// comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<String>,
    /// Only outputs of these plugins; repeatable or comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub plugin: Vec<String>,
    /// frames, outputs or all.
    #[arg(long, default_value = "all")]
    pub what: String,
    /// Print each event as its JSON line.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events (0: run until interrupted).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
}

impl TapArgs {
    fn url(&self) -> String {
        let mut q = vec![format!("what={}", encode(&self.what))];
        if let Some(s) = &self.session {
            q.push(format!("session={}", encode(s)));
        }
        if !self.kind.is_empty() {
            q.push(format!("kind={}", encode(&self.kind.join(","))));
        }
        if !self.plugin.is_empty() {
            q.push(format!("plugin={}", encode(&self.plugin.join(","))));
        }
        format!(
            "{}/admin/tap?{}",
            self.admin.trim_end_matches('/'),
            q.join("&")
        )
    }
}

/// One event as a terminal line.
pub fn human(ev: &Value) -> Option<String> {
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("");
    let n = |k: &str| ev.get(k).and_then(Value::as_u64).unwrap_or(0);
    let short = |id: &str| rtms_proto::text::prefix(id, 12).to_owned();
    match s("type") {
        "frame" => {
            let who = match (s("user_name"), s("user_id")) {
                ("", "") => String::new(),
                ("", id) => format!(" user {id}"),
                (name, _) => format!(" {name}"),
            };
            let body = match ev.get("text").and_then(Value::as_str) {
                Some(t) => format!(":{who}: {t}"),
                None => format!(" {} B{who}", n("bytes")),
            };
            Some(format!(
                "{} {:<10} #{}{}",
                short(s("stream_id")),
                s("kind"),
                n("seq"),
                body
            ))
        }
        "output" => Some(format!(
            "{} output {} {} [{}]: {}",
            short(s("stream_id")),
            s("plugin"),
            s("kind"),
            s("severity"),
            s("message")
        )),
        "lagged" => Some(format!(
            "-- this tap fell behind: {} events missed",
            n("dropped")
        )),
        _ => None,
    }
}

/// Runs the tap until `count` events are printed, or for ever.
pub async fn tap(args: TapArgs) -> Result<()> {
    if !["frames", "outputs", "all"].contains(&args.what.as_str()) {
        bail!("--what {:?}: use frames, outputs or all", args.what);
    }
    let token = std::env::var(&args.token_env)
        .ok()
        .filter(|t| !t.is_empty());
    let client = super::admin_client(Some(TAP_ANSWER_WITHIN))?;
    let url = args.url();
    let mut printed = 0u64;
    loop {
        let mut req = Request::get(&url);
        if let Some(t) = &token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Empty::new()).with_context(|| {
            format!(
                "bad admin URL {:?}: give --admin http://HOST:PORT",
                args.admin
            )
        })?;
        let resp = client.request(req).await.with_context(|| {
            format!(
                "cannot reach the admin listener at {}: is the host running with [admin] enabled?",
                args.admin
            )
        })?;
        let status = resp.status();
        if status == hyper::StatusCode::UNAUTHORIZED {
            bail!(
                "the admin listener wants its token: export {}=<the host's admin token>",
                args.token_env
            );
        }
        if !status.is_success() {
            let body = client.body(resp, 64 * 1024).await.unwrap_or_default();
            bail!(
                "the tap was refused ({status}): {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map(|f| f.into_data()) else {
                break;
            };
            let Ok(data) = data else { continue };
            buf.extend_from_slice(&data);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(ev) = serde_json::from_slice::<Value>(&line[..line.len() - 1]) else {
                    continue;
                };
                if ev.get("type").and_then(Value::as_str) == Some("heartbeat") {
                    continue;
                }
                let out = if args.json {
                    Some(ev.to_string())
                } else {
                    human(&ev)
                };
                if let Some(out) = out {
                    println!("{out}");
                    printed += 1;
                    if args.count > 0 && printed >= args.count {
                        return Ok(());
                    }
                }
            }
        }
        // The host closed the stream (its connection age limit, or it is stopping).
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_as_one_readable_line() {
        let ev = serde_json::json!({"type": "frame", "stream_id": "abcdefghijklmnop", "kind": "transcript",
            "seq": 7, "bytes": 0, "user_name": "Alice", "text": "hello there"});
        assert_eq!(
            human(&ev).unwrap(),
            "abcdefghijkl transcript #7: Alice: hello there"
        );
        let ev = serde_json::json!({"type": "frame", "stream_id": "s", "kind": "audio", "seq": 8, "bytes": 640, "user_id": "16778240"});
        assert_eq!(human(&ev).unwrap(), "s audio      #8 640 B user 16778240");
        let ev = serde_json::json!({"type": "lagged", "dropped": 12});
        assert!(human(&ev).unwrap().contains("12 events missed"));
        assert!(human(&serde_json::json!({"type": "heartbeat"})).is_none());
    }

    #[test]
    fn the_query_is_encoded() {
        let a = TapArgs {
            admin: "http://127.0.0.1:1/".into(),
            token_env: "X".into(),
            session: Some("a+b/c==".into()),
            kind: vec!["transcript".into(), "chat".into()],
            plugin: vec![],
            what: "frames".into(),
            json: false,
            count: 0,
        };
        assert_eq!(
            a.url(),
            "http://127.0.0.1:1/admin/tap?what=frames&session=a%2Bb%2Fc%3D%3D&kind=transcript%2Cchat"
        );
    }
}
