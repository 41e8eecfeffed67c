//! `rtms-host start|stop|pause|resume --meeting ID | --engagement ID`: asks a running host (its
//! admin listener) to change a meeting's or a Contact Center engagement's stream through
//! Zoom's REST API. A start returns once the started webhook reached the host, with the
//! stream id. `rtms-host stop --stream ID` ends one stream the host runs by asking Zoom to
//! close it (STREAM_CLOSE_REQ), as `POST /admin/sessions/stop` does.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::Empty;
use hyper::Request;
use serde_json::Value;

use crate::urlenc::encode;

#[derive(Args, Debug, Clone)]
#[group(skip)]
pub struct RtmsArgs {
    /// The meeting: its uuid (as webhooks carry it) or its number.
    #[arg(long, group = "target")]
    pub meeting: Option<String>,
    /// A Zoom Contact Center engagement: its id (`engagement_id` of the webhooks).
    #[arg(long, group = "target")]
    pub engagement: Option<String>,
    /// `stop` only: a stream this host runs (its `rtms_stream_id`); the host asks Zoom to
    /// close it (STREAM_CLOSE_REQ) rather than going through the REST API.
    #[arg(long, group = "target")]
    pub stream: Option<String>,
    /// The host's admin listener (`[admin] listen`).
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub admin: String,
    /// The environment variable holding the admin token.
    #[arg(long, default_value = "RTMS_ADMIN_TOKEN")]
    pub token_env: String,
}

impl RtmsArgs {
    /// The admin path that acts on the target, and the target's name for messages.
    fn path(&self, action: &str) -> Result<(String, String)> {
        match (&self.meeting, &self.engagement, &self.stream) {
            (Some(m), _, _) => Ok((
                format!("/admin/rtms/{action}?meeting={}", encode(m)),
                format!("meeting {m}"),
            )),
            (_, Some(e), _) => Ok((
                format!("/admin/rtms/{action}?engagement={}", encode(e)),
                format!("engagement {e}"),
            )),
            (_, _, Some(s)) if action == "stop" => Ok((
                format!("/admin/sessions/stop?stream_id={}", encode(s)),
                format!("stream {s}"),
            )),
            (_, _, Some(_)) => bail!(
                "--stream works with stop only: {action} a stream with --meeting ID or --engagement ID"
            ),
            _ => bail!("name what to {action}: --meeting ID or --engagement ID"),
        }
    }
}

/// Runs `action` (start, stop, pause, resume) and prints the host's answer.
pub async fn rtms(action: &str, args: RtmsArgs) -> Result<()> {
    let (path, target) = args.path(action)?;
    let url = format!("{}{path}", args.admin.trim_end_matches('/'));
    let mut req = Request::post(&url);
    if let Some(t) = std::env::var(&args.token_env)
        .ok()
        .filter(|t| !t.is_empty())
    {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Empty::<Bytes>::new()).with_context(|| {
        format!(
            "bad admin URL {:?}: give --admin http://HOST:PORT",
            args.admin
        )
    })?;
    // No bound on the answer: a start is answered once its started webhook reached the
    // host, which bounds that wait itself (`rtms.webhook_wait_timeout_ms`).
    let client = super::admin_client(None)?;
    let resp = client.request(req).await.with_context(|| {
        format!(
            "cannot reach the admin listener at {}: is the host running with [admin] enabled?",
            args.admin
        )
    })?;
    let status = resp.status();
    let body = client
        .body(resp, 1 << 20)
        .await
        .context("reading the admin listener's answer")?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status == hyper::StatusCode::UNAUTHORIZED {
        bail!(
            "the admin listener wants its token: export {}=<the host's admin token>",
            args.token_env
        );
    }
    if !status.is_success() {
        let e = v["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{action} failed ({status}): {e}");
    }
    match (action, v["stream_id"].as_str()) {
        ("start", Some(stream)) => println!(
            "started: {target} streams as {stream} ({})",
            v["product"].as_str().unwrap_or("meeting")
        ),
        _ if args.stream.is_some() => {
            println!("stopping: the host asked Zoom to close {target} (STREAM_CLOSE_REQ)")
        }
        _ => println!("{action}: Zoom accepted it for {target}"),
    }
    Ok(())
}
