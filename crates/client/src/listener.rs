//! The HTTP/1 plumbing both of the host's listeners share (the webhook ingress and the admin
//! listener): the accept loop, one connection policy, bounded bodies, the reply helpers and
//! the counters of closed connections.
//!
//! The connection policy ([`Policy`]), the same on both ports:
//! - at most `max_connections` connections are open. A new connection always gets in: when
//!   the table is full the oldest *idle* connection is closed to make room (one waiting for a
//!   request head, in the middle of one, or between keep-alive requests), and only when none
//!   is idle the oldest one. An attacker's idle connections are therefore what goes first,
//!   and a probe never finds the door shut;
//! - at most `max_per_peer` connections from one IP address. A peer at its limit replaces
//!   its own oldest idle connection (or its oldest), so one address cannot push everyone
//!   else's keep-alive connections out;
//! - the request head must arrive within `header_timeout` (the TLS handshake too), and fit in
//!   `max_header_bytes` with at most [`MAX_HEADERS`] fields (else 431);
//! - a body is read only within `max_body_bytes` (413) and `body_timeout` (408, and the
//!   connection is closed) with [`read_body`];
//! - optionally, a connection is closed gracefully once `max_connection_age` old;
//! - `accept` failures (out of descriptors) back off exponentially ([`AcceptBackoff`]).
//!
//! Every closed connection is counted by its [`Close`] reason in [`ConnStats`], and the
//! unusual ones (evicted, per-peer limit, timeouts, oversize heads, TLS failures) are logged
//! through [`crate::ratelog`] when they start, then summarised.

mod accept;
mod body;
mod conns;
pub mod reply;
mod serve;
pub mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use accept::AcceptBackoff;
pub use body::{BodyError, read_limited};
pub use conns::ConnState;
pub use serve::{FIRST_REQUEST_GRACE, Listener, serve};
pub use tls::{ReloadingCert, TlsFiles};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

/// Header fields a request may carry at most.
pub const MAX_HEADERS: usize = 64;

/// The connection policy of one listener (see the module's documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Open connections at most; past it the oldest idle one is closed.
    pub max_connections: usize,
    /// Open connections from one IP address at most; past it that address's oldest idle
    /// connection is closed.
    pub max_per_peer: usize,
    /// The request head (and the TLS handshake) must arrive within this.
    pub header_timeout: Duration,
    /// The request head may be at most this large (431 past it); at least 8 KiB.
    pub max_header_bytes: usize,
    /// A body must arrive within this (408, and the connection is closed).
    pub body_timeout: Duration,
    /// Larger bodies are refused (413) without being read further.
    pub max_body_bytes: usize,
    /// Connections are closed gracefully once this old (`None`: never).
    pub max_connection_age: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_peer: 256,
            header_timeout: Duration::from_secs(5),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            body_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            max_connection_age: None,
        }
    }
}

/// The default request head limit: 16 KiB, far above what Zoom or a browser sends.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// Why a connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Close {
    /// The client closed it (or asked to), or it ended normally.
    Finished,
    /// Closed to make room under `max_connections`.
    Evicted,
    /// Closed to make room under `max_per_peer`.
    PerPeer,
    /// The request head (or TLS handshake) did not arrive within `header_timeout`.
    HeaderTimeout,
    /// The request head was larger than `max_header_bytes` or had too many fields.
    HeaderTooLarge,
    /// The request head was not HTTP/1.
    BadRequest,
    /// A body did not arrive within `body_timeout`.
    BodyTimeout,
    /// The TLS handshake failed.
    Tls,
    /// Reached `max_connection_age`.
    Age,
    /// The listener stopped.
    Shutdown,
    /// The connection failed (reset, write error).
    Error,
}

impl Close {
    /// Every reason, in the order of [`ConnStats::closed`].
    pub const ALL: [Close; 11] = [
        Close::Finished,
        Close::Evicted,
        Close::PerPeer,
        Close::HeaderTimeout,
        Close::HeaderTooLarge,
        Close::BadRequest,
        Close::BodyTimeout,
        Close::Tls,
        Close::Age,
        Close::Shutdown,
        Close::Error,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Close::Finished => "finished",
            Close::Evicted => "evicted",
            Close::PerPeer => "per_peer_limit",
            Close::HeaderTimeout => "header_timeout",
            Close::HeaderTooLarge => "header_too_large",
            Close::BadRequest => "bad_request",
            Close::BodyTimeout => "body_timeout",
            Close::Tls => "tls_failure",
            Close::Age => "max_age",
            Close::Shutdown => "shutdown",
            Close::Error => "error",
        }
    }

    fn index(self) -> usize {
        Close::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }

    /// What an operator reads in the log when closes of this kind start; `None` for the
    /// ordinary ones.
    fn log_line(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Close::Evicted => (
                "listener-evicted",
                "the connection cap is reached: closing the oldest idle connection to make room (slow or idle clients)",
            ),
            Close::PerPeer => (
                "listener-per-peer",
                "one address holds its maximum of connections: closing its oldest idle one",
            ),
            Close::HeaderTimeout => (
                "listener-header-timeout",
                "request head not received in time (idle or slow client): connection closed",
            ),
            Close::HeaderTooLarge => (
                "listener-header-too-large",
                "request head too large: 431, connection closed",
            ),
            Close::BodyTimeout => (
                "listener-body-timeout",
                "request body not received in time (slow client): 408, connection closed",
            ),
            Close::Tls => (
                "listener-tls",
                "TLS handshake failed or not finished within the header timeout",
            ),
            _ => return None,
        })
    }
}

/// What one listener counted. Plain atomics; share the `Arc` to read them.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Failed `accept` calls (usually out of file descriptors).
    pub accept_errors: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    closed: [AtomicU64; Close::ALL.len()],
}

impl ConnStats {
    /// Connections closed for `reason` so far.
    pub fn closed(&self, reason: Close) -> u64 {
        self.closed[reason.index()].load(Ordering::Relaxed)
    }

    /// Every reason with its count.
    pub fn closed_by_reason(&self) -> impl Iterator<Item = (Close, u64)> + '_ {
        Close::ALL.iter().map(|r| (*r, self.closed(*r)))
    }

    /// Counts one close (and logs the unusual ones, rate-limited).
    pub fn count_close(&self, listener: &'static str, reason: Close) {
        let n = self.closed[reason.index()].fetch_add(1, Ordering::Relaxed) + 1;
        if let Some((kind, line)) = reason.log_line()
            && crate::ratelog::admit(kind)
        {
            tracing::warn!(listener, reason = reason.as_str(), so_far = n, "{line}");
        }
    }
}

/// Reads `req`'s body within the policy's size and time limits. A refusal is the answer to
/// send: 413, 400, or 408 (the connection is then closed and counted as
/// [`Close::BodyTimeout`]).
pub async fn read_body(
    req: Request<Incoming>,
    policy: &Policy,
) -> Result<Bytes, (Response<Full<Bytes>>, BodyError)> {
    let state = req.extensions().get::<std::sync::Arc<ConnState>>().cloned();
    match tokio::time::timeout(
        policy.body_timeout,
        read_limited(req, policy.max_body_bytes),
    )
    .await
    {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e @ BodyError::TooLarge { .. })) => Err((
            reply::text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
            e,
        )),
        Ok(Err(e @ (BodyError::Unreadable(_) | BodyError::TimedOut(_)))) => {
            Err((reply::text(StatusCode::BAD_REQUEST, "unreadable body\n"), e))
        }
        Err(_) => {
            if let Some(s) = state {
                s.closing(Close::BodyTimeout);
            }
            let mut r = reply::text(StatusCode::REQUEST_TIMEOUT, "body too slow\n");
            r.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            Err((r, BodyError::TimedOut(policy.body_timeout)))
        }
    }
}

#[cfg(test)]
mod tests;
