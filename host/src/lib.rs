//! rtms-host: Zoom Real-Time Media Streams to sandboxed WebAssembly plugins.
//!
//! # Layout
//!
//! Each folder answers one question; read each top to bottom.
//!
//! - [`dataplane`] — *where does a frame go*: from the RTMS client's socket read to the plugin
//!   call, in the order it happens (bridge → registry → queue or inline → worker), and the
//!   counters it keeps on the way.
//! - [`sandbox`] — *what is the sandbox and what may it touch*: the plugin contract's bindings,
//!   the wasmtime engine, compile cache, one instance with its limits, WASI grants and quotas.
//! - [`pipeline`] — pipeline.toml compiled into a routing table, and its hot reload.
//! - [`outputs`] — what plugins emit and where it goes: sinks, the dead-letter file, the tap.
//! - [`ops`] — *where does an operator feature go*: the admin listener and its routes, the
//!   Prometheus exposition.
//! - [`flows`] — *where does a new Zoom flow go*: Zoom's REST API (start, stop, pause,
//!   resume), the in-client Zoom App, the event WebSocket.
//! - [`service`] — the running service, wired from the rooms above, and its shutdown.
//! - [`cli`] — commands beside `run`: the demo, replay, the tap and the Zoom commands.
//! - [`plugin_dev`] — the plugin author's tools: `plugin new`, `plugin build`, `plugin test`.
//! - [`urlenc`] — percent-encoding shared by the admin routes and the clients.
//!
//! Dependencies point one way: `cli` → `service` → `flows` / `ops` / `pipeline` → `dataplane`
//! / `outputs` → `sandbox`; the Zoom side (webhooks, sockets, resilience) is the `rtms-client`
//! crate, the simulator `rtms-sim`, pipeline.toml `rtms-config`, the wire types `rtms-proto`.
#![deny(unsafe_code)]

pub mod cli;
pub mod dataplane;
pub mod flows;
pub mod ops;
pub mod outputs;
pub mod pipeline;
pub mod plugin_dev;
pub mod sandbox;
pub mod service;
pub mod urlenc;
