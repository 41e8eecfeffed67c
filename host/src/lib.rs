//! rtms-host: Zoom Real-Time Media Streams to sandboxed WebAssembly plugins.
//!
//! # Layout
//! - [`bindings`] — the plugin contract (`wit/plugin.wit`) as Rust types.
//! - [`runtime`] — wasmtime engine, compile cache, one instance with its limits and sandbox.
//! - [`router`] — the compiled pipeline — which plugins take which frames.
//! - [`core`] — sessions and the frame path from a session to plugin workers.
//! - [`queue`] — the bounded queue in front of each worker (block / drop-oldest).
//! - [`worker`] — one (plugin, session) instance and its failure policy; [`services`] —
//!   what workers share (runtime, outputs, dead letters, metrics).
//! - [`output`] — what plugins emit, and the sinks it goes to.
//! - [`deadletter`] — batches a plugin could not take.
//! - [`metrics`] — counters.
//! - [`pipeline`] — pipeline.toml (validated by `rtms-config`) to routing table and settings.
//! - [`session`] — the RTMS client's sink, opening a host session per stream.
//! - [`reload`] — hot reload — watch, build beside, swap in band, refuse, roll back.
//! - [`admin`] — the admin listener (health, metrics, reload), bearer token, bounds.
//! - [`app`] — the running service and its shutdown; [`signals`] — SIGINT/SIGTERM/SIGHUP.
//! - [`replay`] — push a recorded session through a pipeline; [`demo`] — everything in one
//!   process against the simulator.
//! - [`plugin_dev`] — the plugin author's tools: `plugin new`, `plugin build`, `plugin test`.
//!
//! The Zoom side (webhooks, sockets, resilience) is the `rtms-client` crate; the simulator
//! is `rtms-sim`; pipeline.toml is `rtms-config`.
#![deny(unsafe_code)]

pub mod admin;
pub mod app;
pub mod bindings;
pub mod core;
pub mod deadletter;
pub mod demo;
pub mod eventws;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod plugin_dev;
pub mod queue;
pub mod reload;
pub mod replay;
pub mod router;
pub mod rtmscli;
pub mod runtime;
pub mod services;
pub mod session;
pub mod signals;
pub mod tap;
pub mod tapcli;
pub mod telemetry;
pub mod urlenc;
pub mod worker;
pub mod zoomapi;
pub mod zoomapp;
