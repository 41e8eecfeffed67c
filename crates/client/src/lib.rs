//! The RTMS client: the Zoom-facing half of rtms-host.
//!
//! It receives Zoom's webhooks, runs one session per RTMS stream (signaling and media
//! WebSockets with every resilience rule of `rtms-protocol.md`), decodes media into
//! [`Frame`]s and hands them to a [`FrameSink`] the host implements. There is no WebAssembly
//! here: the host crate feeds plugins from its sink.
//!
//! # Layout
//! - [`ingress`]: the HTTP server for webhooks (signature, replay window, dedup), health and
//!   extra routes.
//! - [`dedup`]: the one de-duplicator of Zoom's events (webhooks and the event WebSocket).
//! - [`listener`]: the HTTP plumbing the ingress and the host's admin listener share: the
//!   accept loop, the connection policy, bounded bodies, replies, counters of closed
//!   connections.
//! - [`sessions`]: the manager that turns webhook events into per-stream sessions.
//! - [`session`]: one stream's task, driving [`machine`] with sockets.
//! - [`machine`]: the pure state machine (connect, stream, back off, fail over, stop).
//! - [`allow`]: the allow-list of server URLs (webhook `server_urls`, msg 2 media URLs).
//! - [`observe`]: the [`Observer`] seam for metrics.
//! - [`ratelog`]: bounded logging of repeated failures.
//! - [`backoff`]: every retry delay, in one pure function.
//! - [`link`]: handshakes and message helpers on one socket.
//! - [`transport`]: the socket seam ([`Connector`]) and the real WebSocket/TLS connector; how
//!   outgoing connections leave the process ([`ClientSettings`]: trust and proxy).
//! - [`http_client`]: the one builder of outgoing HTTP clients (proxy, timeouts, TLS).
//! - [`codec`]: the wire codec seam ([`Codec`]): every message read or written goes through
//!   it; JSON ([`JsonCodec`]) is protocol version 1, and a binary codec for a later version
//!   is a second implementation, with no change to the session logic.
//! - [`decode`](mod@decode): JSON wire message to [`Decoded`] (pure, used by replay too).
//! - [`frame`], [`sink`], [`config`]: the data types at the edges.

pub mod allow;
pub mod backoff;
pub mod codec;
pub mod config;
pub mod decode;
pub mod dedup;
pub mod frame;
pub mod http_client;
pub mod ingress;
pub mod link;
pub mod listener;
pub mod machine;
pub mod observe;
pub mod ratelog;
pub mod session;
pub mod sessions;
pub mod sink;
pub mod transport;
pub mod video;

#[cfg(test)]
mod testing;

pub use allow::AllowList;
pub use codec::{Codec, JsonCodec, Outgoing};
pub use config::{ClientConfig, MediaMode, Resilience};
pub use decode::{DecodeError, Decoded, decode};
pub use dedup::Dedup;
pub use frame::{Frame, MediaKind, TranscriptInfo};
pub use http_client::{HttpClient, HttpClientBuilder, HttpError};
pub use ingress::{
    AppRequest, AppRoutes, EventFuture, IngressConfig, IngressHandler, IngressStats, Refusal,
    WebhookOutcome, WebhookSeen, serve,
};
pub use observe::{Observer, Scope};
pub use session::SessionSnapshot;
pub use sessions::Sessions;
pub use sink::{
    Collected, CollectingSink, EndReason, FrameSink, GiveUp, SinkFactory, StreamInfo, StreamStatus,
};
pub use transport::{
    ClientSettings, Connector, ProxySetting, TlsError, Transport, WsConnector, proxy_tunnel,
    tls_config, tls_config_from_file,
};
