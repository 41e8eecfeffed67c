//! Where a frame goes, in the order it happens.
//!
//! 1. [`bridge`] — the RTMS client's `FrameSink`: a client frame becomes a contract frame and
//!    is pushed into its stream on the socket reader's task.
//! 2. [`registry`] — the live streams and the published routing table ([`routes`]); a frame is offered to
//!    each worker of a plugin that wants it, delivered inline when the worker is idle.
//! 3. [`queue`] — otherwise the bounded queue in front of that worker (block / drop-oldest),
//!    carrying reload and end markers in band.
//! 4. [`worker`] — one (plugin, stream) instance: batches, the failure policy, restarts.
//! 5. [`stats`] — the counters the path keeps (frames, drops, errors, latency);
//!    [`services`] — what every worker shares; [`fence`] — a stream's right to run on this
//!    host (a cluster's lease), checked before a frame is taken and before a plugin call.
//!
//! The streams run on the core threads of [`cores`], each stream on one, its workers with it.
//!
//! The plugin call itself is in [`crate::sandbox`]; what a plugin emits goes to
//! [`crate::outputs`].

pub mod bridge;
pub mod convert;
pub mod cores;
pub mod embed;
pub mod fence;
pub mod offload;
pub mod queue;
pub mod registry;
pub mod routes;
pub mod services;
pub mod stats;
pub mod worker;
