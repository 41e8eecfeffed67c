//! One measurement in a process of its own (`rtms-bench measure-child`): the real-time
//! cases run each receiver (the raw reader, or the host at one size and setting) in a fresh
//! child of the benchmark, so a size that exhausts a process (memory mappings, descriptors,
//! memory) ends that child, is reported with its exit status and the last lines of its
//! stderr, and the run goes on with the next size. A fresh process also starts each
//! measurement from the same RSS. The child inherits the benchmark's cores and starts the
//! simulator's own child as usual. Unit tests measure in-process.
//!
//! This module knows no case: a caller names what to measure with a [`Spec`] and gives the
//! in-process measurement (for unit tests), and `main` maps a [`Spec`] to its measurement
//! in the child.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::probe;

/// What to measure.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
#[serde(tag = "receiver", rename_all = "kebab-case")]
pub enum Spec {
    /// The raw reader.
    Raw,
    /// The host with the four plugins of the concurrency case and `threads` core threads
    /// (`None`: the host's default).
    Host { threads: Option<u32> },
    /// The same, every plugin with `[plugin.batch] max_wait_ms = wait_ms`.
    Batching { wait_ms: u64 },
    /// The stall case's host: with or without the stuck plugin.
    Stall { stuck: bool },
}

#[derive(Serialize, Deserialize)]
struct Request {
    spec: Spec,
    meetings: usize,
    window_ms: u64,
}

/// What the child prints: its result, or why it failed.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer<T> {
    Ok(Box<T>),
    Err(String),
}

/// `rtms-bench measure-child`: one [`Request`] line on stdin, measured with `run`, one
/// [`Answer`] line on stdout.
pub async fn child<T, F, Fut>(run: F) -> Result<()>
where
    T: Serialize,
    F: FnOnce(Spec, usize, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut line = String::new();
    BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await?;
    let req: Request = serde_json::from_str(&line).context("bad request from the parent")?;
    let answer = match run(req.spec, req.meetings, Duration::from_millis(req.window_ms)).await {
        Ok(w) => Answer::Ok(Box::new(w)),
        Err(e) => Answer::Err(format!("{e:#}")),
    };
    let mut out = tokio::io::stdout();
    out.write_all(format!("{}\n", serde_json::to_string(&answer)?).as_bytes())
        .await?;
    out.flush().await?;
    Ok(())
}

/// Measures `spec` on `n` meetings for `window` in a child process; in unit tests (whose
/// executable is not `rtms-bench`) with `in_process` instead. An error names what ended the
/// child when it did not answer.
pub async fn measure<T, F, Fut>(spec: Spec, n: usize, window: Duration, in_process: F) -> Result<T>
where
    T: serde::de::DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    if cfg!(test) {
        return in_process().await;
    }
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("measure-child");
    if !probe::pinned() {
        cmd.arg("--no-pin");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the measuring child process")?;
    let req = Request {
        spec,
        meetings: n,
        window_ms: window.as_millis() as u64,
    };
    let mut stdin = child.stdin.take().context("child stdin")?;
    stdin
        .write_all(format!("{}\n", serde_json::to_string(&req)?).as_bytes())
        .await?;
    drop(stdin);
    let stderr = child.stderr.take().context("child stderr")?;
    let tail = tokio::spawn(stderr_tail(stderr));
    let mut answer = String::new();
    BufReader::new(child.stdout.take().context("child stdout")?)
        .read_line(&mut answer)
        .await?;
    let status = child.wait().await?;
    let tail = tail.await.unwrap_or_default();
    match serde_json::from_str::<Answer<T>>(&answer) {
        Ok(Answer::Ok(w)) => Ok(*w),
        Ok(Answer::Err(e)) => anyhow::bail!("{e}"),
        Err(_) => anyhow::bail!(
            "the measuring process ended ({}) without a result; the last lines of its stderr: {}",
            describe(status),
            tail.into_iter().collect::<Vec<_>>().join(" | ")
        ),
    }
}

/// The last lines a child wrote to stderr (its logs before it died).
async fn stderr_tail(stderr: tokio::process::ChildStderr) -> VecDeque<String> {
    let mut lines = BufReader::new(stderr).lines();
    let mut tail = VecDeque::new();
    while let Ok(Some(l)) = lines.next_line().await {
        if tail.len() == 6 {
            tail.pop_front();
        }
        tail.push_back(l.chars().take(300).collect());
    }
    tail
}

/// An exit status in words: the code, or the signal by name.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => {
            let name = match sig {
                6 => " SIGABRT",
                9 => " SIGKILL, the OOM killer?",
                11 => " SIGSEGV",
                _ => "",
            };
            format!("killed by signal {sig}{name}")
        }
        _ => status.to_string(),
    }
}
