//! Zoom's flows beyond the webhook: starting, stopping, pausing and resuming streams on
//! purpose through Zoom's REST API, the in-client Zoom App, and Zoom's event WebSocket as a
//! second intake, Zoom's concurrency notices. A new Zoom flow gets a file here.

pub mod app_guard;
pub mod event_ws;
pub mod notices;
pub mod start;
pub mod zoom_app;
pub mod zoom_rest;
