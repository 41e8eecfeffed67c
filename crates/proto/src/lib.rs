//! Zoom's Real-Time Media Streams wire protocol, shared by the host's client and the simulator.
//!
//! This crate holds what both sides of the wire must agree on and nothing that does I/O:
//! the numbers (`msg_type`, media-type bits, status codes, stop reasons, states, events),
//! the JSON message shapes, the media parameters, the handshake signature and the webhook
//! signature. The reference is `rtms-protocol.md`; where Zoom's own sources disagree, the
//! choices made there are the ones encoded here.
//!
//! # Layout
//! - [`codes`]: every enumeration as named constants.
//! - [`events`]: the EVENT_UPDATE events plugins get typed (participant video, chat groups).
//! - [`kind`]: [`MediaKind`] and [`MediaKinds`], the one media vocabulary.
//! - [`msg`]: the JSON messages of the signaling and media sockets.
//! - [`params`]: media parameters and their defaults.
//! - [`sign`]: handshake signatures and webhook signing / verification.
//! - [`webhook`]: webhook envelopes, event names per product and their payloads.
//! - [`text`]: text cut to a bound in bytes, never inside a character.
//! - [`unix_ms`] / [`unix_secs`]: the wall clock as the protocol's timestamps.

pub mod codes;
pub mod events;
pub mod kind;
pub mod msg;
pub mod params;
pub mod sign;
pub mod text;
pub mod webhook;

pub use kind::{MediaKind, MediaKinds};
pub use params::MediaParams;
pub use webhook::{Product, WebhookAction, WebhookEvent};

/// Unix time in milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix time in seconds (0 if the clock is before 1970).
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
