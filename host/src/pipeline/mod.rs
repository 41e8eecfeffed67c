//! The compiled pipeline and its reload.
//!
//! - [`build`] — a validated `rtms_config::Pipeline` to the routing table (every component
//!   loaded and trial-run), the sinks, the runtime and client settings.
//! - [`builtin`] — the components the binary carries (`builtin:NAME`).
//! - [`reload`] — watch, rebuild beside, swap in band, refuse, roll back.
//! - [`changes`] — what a reload changed, with old and new values, for its log and answer.

pub mod build;
pub mod builtin;
pub mod changes;
pub mod history;
pub mod reload;
