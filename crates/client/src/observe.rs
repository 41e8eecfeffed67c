//! What the client reports for metrics: the [`Observer`] the host implements.
//!
//! Every method has a no-op default and runs on the session's (or the ingress connection's)
//! task, so an implementation must be quick: an atomic add or a histogram observation. The
//! labels it gets are `&'static str` from small fixed sets, never ids or URLs, so metrics
//! built from them have a bounded cardinality.

use std::sync::Arc;
use std::time::Duration;

/// Which sockets a connection attempt (re)opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Signaling and media.
    Full,
    /// Media only; signaling stays up.
    Media,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Full => "full",
            Scope::Media => "media",
        }
    }
}

/// Receives the client's events for metrics.
pub trait Observer: Send + Sync + 'static {
    /// A connection attempt started.
    fn attempt(&self, scope: Scope) {
        let _ = scope;
    }
    /// A connection attempt failed (`duplicate` when the server refused it as one).
    fn attempt_failed(&self, scope: Scope, duplicate: bool) {
        let _ = (scope, duplicate);
    }
    /// A stream lost a socket and will reopen `scope` after a delay. `cause` is one of
    /// `signaling_lost`, `media_lost`, `media_interrupted`, `interrupted_webhook`,
    /// `connect_failed`.
    fn reconnecting(&self, scope: Scope, cause: &'static str) {
        let _ = (scope, cause);
    }
    /// Zoom refused a request with a status code: `what` is `signaling` or `media` (a
    /// handshake) or `stream_close` (msg 21); `status` is the code's GA name
    /// (`rtms_proto::codes::status::name`, a fixed set).
    fn refusal(&self, what: &'static str, status: &'static str) {
        let _ = (what, status);
    }
    /// A message could not be decoded (not JSON, a missing field, bad base64, a `length`
    /// that does not match its data) and was skipped.
    fn undecodable(&self) {}
    /// A stream spent every connection attempt and now waits for a new started webhook.
    fn gave_up(&self) {}
    /// A WebSocket ping on the signaling socket was answered after `rtt`.
    fn keepalive_rtt(&self, rtt: Duration) {
        let _ = rtt;
    }
    /// The first frame of a stream arrived, `since_start` after the stream's session was
    /// created (the started webhook, for a stream started by one).
    fn first_frame(&self, since_start: Duration) {
        let _ = since_start;
    }
    /// The server answered a video subscription (msg 29); `status` 0 is success, any other
    /// is a refusal (name it with `rtms_proto::codes::status::name`).
    fn video_subscription(&self, subscribe: bool, status: u32) {
        let _ = (subscribe, status);
    }
}

/// The observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// A shared observer.
pub type SharedObserver = Arc<dyn Observer>;

/// The no-op observer, shared.
pub fn none() -> SharedObserver {
    Arc::new(NoObserver)
}
