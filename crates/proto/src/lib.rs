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
//! - [`msg`]: the JSON messages of the signaling and media sockets.
//! - [`params`]: media parameters and their defaults.
//! - [`sign`]: handshake signatures and webhook signing / verification.
//! - [`webhook`]: webhook envelopes, event names per product and their payloads.

pub mod codes;
pub mod msg;
pub mod params;
pub mod sign;
pub mod webhook;

pub use params::MediaParams;
pub use webhook::{Product, WebhookAction, WebhookEvent};
