//! rtms-host: Zoom Real-Time Media Streams to sandboxed WebAssembly plugins.
//!
//! # Layout
//! - [`bindings`]: the plugin contract (`wit/plugin.wit`) as Rust types.
//! - [`runtime`]: wasmtime engine, compile cache, one instance with its limits and sandbox.
//! - [`router`]: the compiled pipeline — which plugins take which frames.
//! - [`core`]: sessions and the frame path from a session to plugin workers.
//! - [`queue`]: the bounded queue in front of each worker (block / drop-oldest).
//! - [`worker`]: one (plugin, session) instance and its failure policy.
//! - [`output`]: what plugins emit, and the sinks it goes to.
//! - [`deadletter`]: batches a plugin could not take.
//! - [`metrics`]: counters.
//!
//! The Zoom side (webhooks, sockets, resilience) is the `rtms-client` crate; the simulator
//! is `rtms-sim`; pipeline.toml is `rtms-config`.
#![deny(unsafe_code)]

pub mod bindings;
pub mod core;
pub mod deadletter;
pub mod metrics;
pub mod output;
pub mod queue;
pub mod router;
pub mod runtime;
pub mod worker;
