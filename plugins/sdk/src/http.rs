//! Outgoing HTTP through `wasi:http/outgoing-handler`, as blocking calls.
//!
//! The operator grants what a plugin may reach in `[plugin.net] http = [...]`; the host
//! enforces the allow-list, timeouts, the response size cap, concurrency and the per-minute
//! rate. A refusal is an [`HttpError::Denied`] or [`HttpError::Limit`] naming the rule, never a
//! trap.
//!
//! ```ignore
//! use rtms_plugin::http::{self, Request};
//! let reply = http::send(
//!     &Request::post("https://api.example.com/v1/notes")
//!         .header("authorization", &format!("Bearer {key}"))
//!         .json(&serde_json::json!({"text": "hello"})),
//! )?;
//! if reply.status == 200 { /* reply.body */ }
//! ```
//!
//! [`send_with_retry`] retries what providers ask to be retried (408, 429, 5xx and network
//! failures) with exponential backoff, honouring `Retry-After`, within a bounded number of
//! attempts and a bounded total wait.

use std::time::Duration;

/// A request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` (give it a body with [`Request::json`] or [`Request::body`]).
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }
}

/// A response, its body read whole (up to the host's `max_response_bytes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError::Protocol(format!("the response is not JSON: {e}")))
    }

    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The host's allow-list refused the URL (or the plugin has no `[plugin.net]`), or the
    /// address it resolved to is private; the text is the host's error code.
    #[error("refused by the host: {0}")]
    Denied(String),
    /// A host limit: concurrency, requests per minute, the response size cap, or a budget.
    #[error("over a host limit: {0}")]
    Limit(String),
    /// A connect, first-byte or between-bytes timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection failed (DNS, refused, reset, TLS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The URL or the request is malformed, or the response could not be read.
    #[error("{0}")]
    Protocol(String),
}

impl HttpError {
    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Connect(_))
    }
}

/// Sends a request and reads the whole response.
pub fn send(request: &Request) -> Result<Response, HttpError> {
    imp::send(request)
}

/// How [`send_with_retry`] retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait before the second attempt; doubled for each later one.
    pub base: Duration,
    /// The longest single wait (a larger `Retry-After` is cut to it).
    pub max_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(500),
            max_wait: Duration::from_secs(8),
        }
    }
}

/// Whether a status asks to be retried: 408, 429 and 5xx.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// The wait before attempt `attempt + 1` (attempt counts from 1), from `Retry-After`
/// (seconds) when the response gave one, else exponential from `retry.base`.
pub fn backoff(retry: &Retry, attempt: u32, retry_after: Option<&str>) -> Duration {
    let exp = retry
        .base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let asked = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    asked.unwrap_or(exp).min(retry.max_wait)
}

/// Sends `request`, retrying 408, 429, 5xx, timeouts and connection failures as `retry`
/// says. Returns the last response (which may still be a 429 or 5xx) or the last error.
/// `on_retry(attempt, why)` is called before each wait, for logging.
pub fn send_with_retry(
    request: &Request,
    retry: Retry,
    mut on_retry: impl FnMut(u32, &str),
) -> Result<Response, HttpError> {
    let mut attempt = 1;
    loop {
        let outcome = send(request);
        let last = attempt >= retry.attempts.max(1);
        let wait = match &outcome {
            Ok(r) if retryable_status(r.status) && !last => {
                on_retry(attempt, &format!("status {}", r.status));
                backoff(&retry, attempt, r.header("retry-after"))
            }
            Err(e) if e.retryable() && !last => {
                on_retry(attempt, &e.to_string());
                backoff(&retry, attempt, None)
            }
            _ => return outcome,
        };
        imp::sleep(wait);
        attempt += 1;
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{HttpError, Request, Response};
    use wasi::http::outgoing_handler;
    use wasi::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasi::io::streams::StreamError;

    fn classify(e: ErrorCode) -> HttpError {
        let text = format!("{e:?}");
        let text = text.trim_start_matches("ErrorCode::").to_owned();
        match e {
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
                HttpError::Denied(text)
            }
            ErrorCode::HttpResponseBodySize(_)
            | ErrorCode::HttpResponseHeaderSize(_)
            | ErrorCode::HttpResponseHeaderSectionSize(_)
            | ErrorCode::ConnectionLimitReached => HttpError::Limit(text),
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => HttpError::Timeout(text),
            ErrorCode::DnsTimeout
            | ErrorCode::DnsError(_)
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::TlsProtocolError
            | ErrorCode::TlsCertificateError
            | ErrorCode::TlsAlertReceived(_) => HttpError::Connect(text),
            _ => HttpError::Protocol(text),
        }
    }

    fn method(m: &str) -> Method {
        match m.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }

    pub fn send(r: &Request) -> Result<Response, HttpError> {
        let bad = |what: &str| HttpError::Protocol(format!("{}: bad {what}", r.url));
        let (scheme, rest) = r
            .url
            .split_once("://")
            .ok_or_else(|| bad("URL (no scheme)"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => rest.split_at(i),
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let headers = Fields::new();
        for (n, v) in &r.headers {
            headers
                .append(&n.to_ascii_lowercase(), v.as_bytes())
                .map_err(|e| HttpError::Protocol(format!("header {n:?}: {e:?}")))?;
        }
        let req = OutgoingRequest::new(headers);
        let scheme = match scheme {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            other => Scheme::Other(other.to_owned()),
        };
        req.set_scheme(Some(&scheme)).map_err(|()| bad("scheme"))?;
        req.set_authority(Some(authority))
            .map_err(|()| bad("authority"))?;
        req.set_path_with_query(Some(&path))
            .map_err(|()| bad("path"))?;
        req.set_method(&method(&r.method))
            .map_err(|()| bad("method"))?;
        let out = req.body().map_err(|()| bad("body"))?;
        let fut = outgoing_handler::handle(req, None).map_err(classify)?;
        if !r.body.is_empty() {
            let stream = out.write().map_err(|()| bad("body stream"))?;
            for chunk in r.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| HttpError::Connect(format!("writing the body: {e:?}")))?;
            }
            drop(stream);
        }
        OutgoingBody::finish(out, None).map_err(classify)?;
        fut.subscribe().block();
        let resp = match fut.get() {
            Some(Ok(r)) => r.map_err(classify)?,
            _ => return Err(HttpError::Protocol("no response".to_owned())),
        };
        let status = resp.status();
        let headers = resp
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let body = resp.consume().map_err(|()| bad("response body"))?;
        let stream = body.stream().map_err(|()| bad("response body stream"))?;
        let mut bytes = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(wasi::http::types::http_error_code(&e)
                        .map_or_else(|| HttpError::Connect(e.to_debug_string()), classify));
                }
            }
        }
        drop(stream);
        IncomingBody::finish(body);
        Ok(Response {
            status,
            headers,
            body: bytes,
        })
    }

    pub fn sleep(d: std::time::Duration) {
        wasi::clocks::monotonic_clock::subscribe_duration(d.as_nanos() as u64).block();
    }
}

/// Native builds (unit tests) have no `wasi:http`.
#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{HttpError, Request, Response};

    pub fn send(_r: &Request) -> Result<Response, HttpError> {
        Err(HttpError::Protocol("wasi:http needs wasm32".to_owned()))
    }

    pub fn sleep(_d: std::time::Duration) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_statuses_are_408_429_and_5xx() {
        assert!(retryable_status(429) && retryable_status(408) && retryable_status(503));
        assert!(!retryable_status(400) && !retryable_status(401) && !retryable_status(200));
    }

    #[test]
    fn backoff_doubles_and_honours_retry_after_within_the_cap() {
        let r = Retry {
            attempts: 5,
            base: Duration::from_millis(100),
            max_wait: Duration::from_secs(2),
        };
        assert_eq!(backoff(&r, 1, None), Duration::from_millis(100));
        assert_eq!(backoff(&r, 3, None), Duration::from_millis(400));
        assert_eq!(backoff(&r, 9, None), Duration::from_secs(2));
        assert_eq!(backoff(&r, 1, Some("1")), Duration::from_secs(1));
        assert_eq!(backoff(&r, 1, Some("120")), Duration::from_secs(2));
        assert_eq!(backoff(&r, 2, Some("soon")), Duration::from_millis(200));
    }

    #[test]
    fn a_json_request_sets_its_content_type() {
        let r = Request::post("http://x/y").json(&serde_json::json!({"a": 1}));
        assert_eq!(r.method, "POST");
        assert_eq!(r.body, br#"{"a":1}"#);
        assert!(
            r.headers
                .contains(&("content-type".into(), "application/json".into()))
        );
    }
}
