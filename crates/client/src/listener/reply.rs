//! The answers both listeners build: plain text, a typed body, JSON, and 405 with `Allow`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

/// A plain answer (no content type: the body is a short sentence or empty).
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// An answer with a content type.
pub fn typed(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = text(status, body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON answer, one line.
pub fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    typed(status, "application/json", format!("{v}\n"))
}

/// 405 naming the methods that work (`"GET, HEAD"`).
pub fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}\n"));
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}
