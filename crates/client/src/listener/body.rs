//! Reading a request body within a size limit: a declared `content-length` past the limit is
//! refused before a byte is read, and a body that grows past it is cut off there. The time
//! limit is [`super::read_body`]'s.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Declared or grown past the limit (answer 413).
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The connection failed or sent a malformed body (answer 400).
    #[error("the body could not be read: {0}")]
    Unreadable(String),
    /// Not received within the time limit (answer 408).
    #[error("the body did not arrive within {0:?}")]
    TimedOut(std::time::Duration),
}

/// Reads `req`'s whole body, at most `limit` bytes.
pub async fn read_limited(req: Request<Incoming>, limit: usize) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Unreadable(e.to_string())),
    }
}
