//! Recorded HTTP exchanges, served back on 127.0.0.1: how `rtms-host plugin test` answers a
//! plugin's HTTP requests without the network, and how `plugin test --record` writes them.
//!
//! A fakes file is JSON Lines, one exchange per line:
//!
//! ```json
//! {"request":{"method":"POST","url":"https://api.example.com/v1/notes","headers":{"authorization":"Bearer test-key"},"body":{"lines":11}},
//!  "response":{"status":201,"headers":{"content-type":"application/json"},"body":{"id":"note-1"}}}
//! ```
//!
//! A request matches an exchange when its method and URL (path and query included) are the
//! exchange's, every header the exchange names has that value (names without case; other
//! headers are not looked at), and its body is the exchange's: a JSON string is compared as
//! text, any other JSON value as a JSON document (so key order and spacing do not matter),
//! `body_base64` byte for byte, and no body at all matches any body. Each exchange answers
//! once; a request takes the first unused exchange that matches, so exchanges that repeat
//! are answered in file order.
//!
//! [`HttpFakes::replay`] starts one listener per origin (`scheme://host[:port]`) the plugin
//! may call; the caller points the plugin at [`HttpFakes::base_url`] instead of the origin.
//! A request no exchange matches is answered `404` and reported by [`HttpFakes::report`] with
//! why the nearest exchange did not match; so is every exchange left unused.
//! [`HttpFakes::record`] instead hands every request to a forwarding function (the real
//! service) and keeps the pairs, for [`HttpFakes::recorded`].
//!
//! Bounds: request bodies are read up to [`MAX_BODY`]; at most [`MAX_EXCHANGES`] exchanges
//! are loaded or recorded; at most [`MAX_REPORTED`] unexpected requests are described (the
//! rest are counted).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub use crate::http::MAX_BODY;
use crate::http::{Reply, Req, serve};

/// The most exchanges a fakes file may hold, or a recording keep.
pub const MAX_EXCHANGES: usize = 10_000;
/// The most unexpected requests a report describes one by one.
pub const MAX_REPORTED: usize = 16;

/// One request and the answer to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    pub request: Expected,
    pub response: Answer,
}

/// What a request must be to match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub method: String,
    /// The absolute URL the plugin called, as the service would see it.
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

/// A body as the file writes it: JSON when it parses as JSON, else text, else base64.
fn body_fields(bytes: &[u8]) -> (Option<serde_json::Value>, Option<String>) {
    if bytes.is_empty() {
        return (None, None);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes)
        && !v.is_string()
    {
        return (Some(v), None);
    }
    match std::str::from_utf8(bytes) {
        Ok(t) => (Some(serde_json::Value::String(t.to_owned())), None),
        Err(_) => (None, Some(B64.encode(bytes))),
    }
}

/// The bytes a body stands for.
fn body_bytes(body: &Option<serde_json::Value>, b64: &Option<String>) -> Bytes {
    match (body, b64) {
        (Some(serde_json::Value::String(t)), _) => Bytes::copy_from_slice(t.as_bytes()),
        (Some(v), _) => v.to_string().into(),
        (None, Some(b)) => B64.decode(b).unwrap_or_default().into(),
        (None, None) => Bytes::new(),
    }
}

/// Headers a fakes file leaves out: they belong to the connection, not the exchange.
const CONNECTION_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "date",
];

/// The headers of a message, without the connection's, names in lower case.
pub fn exchange_headers(headers: &hyper::HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str().to_ascii_lowercase();
        if CONNECTION_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name)
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// A request as the fake received it, its URL made absolute with the origin it stands for.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub url: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// The request as an exchange's `request` that matches exactly it.
    pub fn expected(&self) -> Expected {
        let (body, body_base64) = body_fields(&self.body);
        Expected {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: exchange_headers(&self.headers),
            body,
            body_base64,
        }
    }

    /// `POST https://…/path`, for reports.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.url)
    }
}

impl Expected {
    /// Why `seen` does not match, or `None` when it does.
    pub fn mismatch(&self, seen: &Seen) -> Option<String> {
        if !self.method.eq_ignore_ascii_case(&seen.method) {
            return Some(format!(
                "the method is {}, not {}",
                seen.method, self.method
            ));
        }
        if self.url != seen.url {
            return Some(format!("the URL is {}, not {}", seen.url, self.url));
        }
        for (name, want) in &self.headers {
            let got = seen
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            if got != *want {
                return Some(if got.is_empty() {
                    format!("header {name} is missing (expected {want:?})")
                } else {
                    format!("header {name} is {got:?}, not {want:?}")
                });
            }
        }
        self.body_mismatch(&seen.body)
    }

    fn body_mismatch(&self, got: &[u8]) -> Option<String> {
        let same = match (&self.body, &self.body_base64) {
            (None, None) => return None,
            (Some(serde_json::Value::String(t)), _) => t.as_bytes() == got,
            (Some(v), _) => serde_json::from_slice::<serde_json::Value>(got).is_ok_and(|g| g == *v),
            (None, Some(_)) => body_bytes(&None, &self.body_base64) == got,
        };
        if same {
            return None;
        }
        let want = body_bytes(&self.body, &self.body_base64);
        Some(format!(
            "the body is {}, not {}",
            shorten(got),
            shorten(&want)
        ))
    }
}

/// A body for a message: its text up to 200 characters, or its size.
fn shorten(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(t) if t.chars().count() > 200 => {
            format!("{:?}…", t.chars().take(200).collect::<String>())
        }
        Ok(t) => format!("{t:?}"),
        Err(_) => format!("{} bytes of binary", b.len()),
    }
}

impl Answer {
    /// What a service answered, as the file writes it.
    pub fn of(status: u16, headers: &hyper::HeaderMap, body: &[u8]) -> Self {
        let (body, body_base64) = body_fields(body);
        Self {
            status,
            headers: exchange_headers(headers),
            body,
            body_base64,
        }
    }

    fn reply(&self) -> Reply {
        Reply {
            status: self.status,
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            body: body_bytes(&self.body, &self.body_base64),
        }
    }

    /// Checks what the server will need to send it; the error names the problem.
    fn check(&self) -> Result<(), String> {
        if !(100..=999).contains(&self.status) {
            return Err(format!(
                "response status {} is not an HTTP status (100 to 999)",
                self.status
            ));
        }
        for (name, value) in &self.headers {
            if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || hyper::header::HeaderValue::from_str(value).is_err()
            {
                return Err(format!(
                    "response header {name:?}: {value:?} is not a valid header"
                ));
            }
        }
        if let Some(b) = &self.body_base64
            && B64.decode(b).is_err()
        {
            return Err("response body_base64 is not base64".into());
        }
        Ok(())
    }
}

/// Reads a fakes file; an error names the line and the problem.
pub fn load(path: &Path) -> anyhow::Result<Vec<Exchange>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the fakes file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let x: Exchange = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!(
                "{at}: not an exchange ({e}); expected {{\"request\":{{\"method\":…,\"url\":…}},\"response\":{{\"status\":…}}}}"
            )
        })?;
        x.response
            .check()
            .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        if out.len() == MAX_EXCHANGES {
            anyhow::bail!("{at}: more than {MAX_EXCHANGES} exchanges: split the test");
        }
        out.push(x);
    }
    Ok(out)
}

/// Writes exchanges as a fakes file.
pub fn save(path: &Path, exchanges: &[Exchange]) -> anyhow::Result<()> {
    let mut text = String::new();
    for x in exchanges {
        text.push_str(&serde_json::to_string(x)?);
        text.push('\n');
    }
    std::fs::write(path, text)
        .map_err(|e| anyhow::anyhow!("cannot write the fakes file {}: {e}", path.display()))
}

/// What a replay saw that it should not have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Requests no exchange matched, each with why the nearest one did not (at most
    /// [`MAX_REPORTED`]).
    pub unexpected: Vec<String>,
    /// Unexpected requests beyond those described.
    pub more_unexpected: u64,
    /// Exchanges no request used: their line in the file (from 1) and `METHOD URL`.
    pub unused: Vec<(usize, String)>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.unexpected.is_empty() && self.unused.is_empty()
    }
}

/// The real service of a recording: takes a request, returns the answer or why it failed.
pub type Forward =
    Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Result<Answer, String>> + Send>> + Send + Sync>;

enum Mode {
    Replay {
        exchanges: Vec<Exchange>,
        used: Vec<bool>,
    },
    Record {
        forward: Forward,
    },
}

#[derive(Default)]
struct Log {
    report: Report,
    recorded: Vec<Exchange>,
}

/// Listeners on 127.0.0.1 standing in for the origins a plugin calls.
pub struct HttpFakes {
    servers: Vec<(String, SocketAddr, tokio::task::JoinHandle<()>)>,
    mode: Arc<Mutex<Mode>>,
    log: Arc<Mutex<Log>>,
}

impl Drop for HttpFakes {
    fn drop(&mut self) {
        for (_, _, task) in &self.servers {
            task.abort();
        }
    }
}

impl HttpFakes {
    /// Serves `exchanges` for `origins` (`scheme://host[:port]`, as the plugin writes them).
    pub async fn replay(origins: &[String], exchanges: Vec<Exchange>) -> std::io::Result<Self> {
        let used = vec![false; exchanges.len()];
        Self::start(origins, Mode::Replay { exchanges, used }).await
    }

    /// Hands each request for `origins` to `forward` and keeps the pairs.
    pub async fn record(origins: &[String], forward: Forward) -> std::io::Result<Self> {
        Self::start(origins, Mode::Record { forward }).await
    }

    async fn start(origins: &[String], mode: Mode) -> std::io::Result<Self> {
        let mode = Arc::new(Mutex::new(mode));
        let log = Arc::new(Mutex::new(Log::default()));
        let mut servers = Vec::new();
        for origin in origins {
            let (o, m, l) = (origin.clone(), mode.clone(), log.clone());
            let (addr, task) =
                serve(move |req| answer(o.clone(), m.clone(), l.clone(), req)).await?;
            servers.push((origin.clone(), addr, task));
        }
        Ok(Self { servers, mode, log })
    }

    /// `http://127.0.0.1:PORT`: where requests meant for `origin` go instead.
    pub fn base_url(&self, origin: &str) -> Option<String> {
        self.servers
            .iter()
            .find(|(o, _, _)| o == origin)
            .map(|(_, addr, _)| format!("http://{addr}"))
    }

    /// What the replay saw that it should not have (nothing when recording).
    pub fn report(&self) -> Report {
        let mut report = self.log.lock().report.clone();
        if let Mode::Replay { exchanges, used } = &*self.mode.lock() {
            report.unused = exchanges
                .iter()
                .zip(used)
                .enumerate()
                .filter(|(_, (_, used))| !**used)
                .map(|(i, (x, _))| (i + 1, format!("{} {}", x.request.method, x.request.url)))
                .collect();
        }
        report
    }

    /// The exchanges recorded so far, in the order they were answered.
    pub fn recorded(&self) -> Vec<Exchange> {
        self.log.lock().recorded.clone()
    }
}

async fn answer(origin: String, mode: Arc<Mutex<Mode>>, log: Arc<Mutex<Log>>, req: Req) -> Reply {
    let seen = Seen {
        method: req.method,
        url: format!("{origin}{}", req.path),
        headers: req.headers,
        body: req.body,
    };
    let forward = match &mut *mode.lock() {
        Mode::Replay { exchanges, used } => return replay_one(exchanges, used, &log, &seen),
        Mode::Record { forward } => forward.clone(),
    };
    if log.lock().recorded.len() >= MAX_EXCHANGES {
        return Reply::text(503, "the recording holds its most exchanges");
    }
    match forward(seen.clone()).await {
        Ok(answer) => {
            let reply = answer.reply();
            log.lock().recorded.push(Exchange {
                request: seen.expected(),
                response: answer,
            });
            reply
        }
        Err(why) => {
            note_unexpected(
                &log,
                format!("{}: the service could not be reached: {why}", seen.line()),
            );
            Reply::text(502, &why)
        }
    }
}

fn replay_one(exchanges: &[Exchange], used: &mut [bool], log: &Mutex<Log>, seen: &Seen) -> Reply {
    let unused: Vec<usize> = (0..exchanges.len()).filter(|&i| !used[i]).collect();
    let matching = unused
        .iter()
        .copied()
        .find(|&i| exchanges[i].request.mismatch(seen).is_none());
    if let Some(i) = matching {
        used[i] = true;
        return exchanges[i].response.reply();
    }
    // The nearest: the first with the same method and URL, else the first unused.
    let same_target =
        |x: &Expected| x.method.eq_ignore_ascii_case(&seen.method) && x.url == seen.url;
    let nearest = unused
        .iter()
        .copied()
        .find(|&i| same_target(&exchanges[i].request))
        .or(unused.first().copied());
    let why = match nearest {
        Some(i) => format!(
            "{}: no unused exchange matches (the nearest, line {}: {})",
            seen.line(),
            i + 1,
            exchanges[i].request.mismatch(seen).unwrap_or_default()
        ),
        None if exchanges.is_empty() => {
            format!("{}: the fakes file holds no exchange", seen.line())
        }
        None => format!("{}: every exchange has been used already", seen.line()),
    };
    note_unexpected(log, why);
    Reply::text(
        404,
        "no recorded exchange matches this request (rtms-host plugin test)",
    )
}

fn note_unexpected(log: &Mutex<Log>, why: String) {
    let mut l = log.lock();
    if l.report.unexpected.len() < MAX_REPORTED {
        l.report.unexpected.push(why);
    } else {
        l.report.more_unexpected += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn exchange(line: &str) -> Exchange {
        serde_json::from_str(line).unwrap()
    }

    fn seen(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Seen {
        let mut h = hyper::HeaderMap::new();
        for (k, v) in headers {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Seen {
            method: method.into(),
            url: url.into(),
            headers: h,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn json_bodies_match_as_documents_text_as_text_and_named_headers_only() {
        let x = exchange(
            r#"{"request":{"method":"POST","url":"https://a.example/v1/n","headers":{"authorization":"Bearer k"},"body":{"a":1,"b":[2]}},"response":{"status":201}}"#,
        );
        let ok = seen(
            "post",
            "https://a.example/v1/n",
            &[("Authorization", "Bearer k"), ("x-other", "1")],
            r#"{ "b": [2], "a": 1 }"#,
        );
        assert_eq!(x.request.mismatch(&ok), None);
        let why = x
            .request
            .mismatch(&seen(
                "POST",
                "https://a.example/v1/n",
                &[("authorization", "Bearer k")],
                r#"{"a":2,"b":[2]}"#,
            ))
            .unwrap();
        assert!(
            why.contains("the body is") && why.contains(r#"{\"a\":2"#),
            "{why}"
        );
        let why = x
            .request
            .mismatch(&seen(
                "POST",
                "https://a.example/v1/n",
                &[],
                r#"{"a":1,"b":[2]}"#,
            ))
            .unwrap();
        assert!(why.contains("header authorization is missing"), "{why}");
        let text = exchange(
            r#"{"request":{"method":"GET","url":"https://a.example/q?x=1","body":"a b"},"response":{"status":200}}"#,
        );
        assert!(
            text.request
                .mismatch(&seen("GET", "https://a.example/q?x=1", &[], "a  b"))
                .is_some()
        );
        assert!(
            text.request
                .mismatch(&seen("GET", "https://a.example/q?x=2", &[], "a b"))
                .unwrap()
                .contains("the URL")
        );
    }

    #[test]
    fn a_bad_line_is_named_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fakes.jsonl");
        std::fs::write(
            &p,
            "{\"request\":{\"method\":\"GET\",\"url\":\"http://a/\"},\"response\":{\"status\":200}}\n\n{\"request\":{}}\n",
        )
        .unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("fakes.jsonl:3: not an exchange"), "{e}");
        std::fs::write(&p, "{\"request\":{\"method\":\"GET\",\"url\":\"http://a/\"},\"response\":{\"status\":200,\"headers\":{\"bad name\":\"x\"}}}\n").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains(":1: response header \"bad name\""), "{e}");
    }

    async fn get(base: &str, path: &str) -> String {
        let addr = base.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Over a socket: each exchange answers once, in file order; an extra request is a 404
    /// and reported with the nearest exchange; an exchange left over is reported unused.
    #[tokio::test]
    async fn exchanges_answer_once_and_the_rest_is_reported() {
        let xs = vec![
            exchange(
                r#"{"request":{"method":"GET","url":"https://api.example.com/v1/a"},"response":{"status":200,"body":"first"}}"#,
            ),
            exchange(
                r#"{"request":{"method":"GET","url":"https://api.example.com/v1/a"},"response":{"status":200,"headers":{"content-type":"application/json"},"body":{"n":2}}}"#,
            ),
            exchange(
                r#"{"request":{"method":"GET","url":"https://api.example.com/v1/b"},"response":{"status":204}}"#,
            ),
        ];
        let origin = "https://api.example.com".to_string();
        let f = HttpFakes::replay(std::slice::from_ref(&origin), xs)
            .await
            .unwrap();
        let base = f.base_url(&origin).unwrap();
        assert!(get(&base, "/v1/a").await.ends_with("first"));
        let second = get(&base, "/v1/a").await;
        assert!(
            second.contains("content-type: application/json") && second.ends_with(r#"{"n":2}"#),
            "{second}"
        );
        assert!(get(&base, "/v1/a").await.starts_with("HTTP/1.1 404"));
        let r = f.report();
        assert_eq!(r.unexpected.len(), 1);
        assert!(
            r.unexpected[0].starts_with("GET https://api.example.com/v1/a: no unused exchange matches (the nearest, line 3: the URL is"),
            "{}",
            r.unexpected[0]
        );
        assert_eq!(
            r.unused,
            vec![(3, "GET https://api.example.com/v1/b".to_string())]
        );
    }
}
