//! What several `rtms-host` processes share when `[cluster]` is set: the webhook log, one
//! lease per stream, each host's liveness and load, and requests from one host to another.
//!
//! - [`store`]: the seam ([`ClusterStore`]), engine-neutral, narrow enough for a second
//!   engine.
//! - [`nats`]: the seam on NATS JetStream ([`NatsStore`]).
//!
//! The host decides what the records mean (`host/src/service/cluster/`); nothing here knows
//! streams, sessions or plugins.

pub mod nats;
pub mod store;

pub use nats::{NatsAuth, NatsSettings, NatsStore};
pub use store::{
    BoxFuture, Change, ClusterStore, Logged, LoggedWebhook, Request, Revision, Settle, StoreError,
    Table, Traffic,
};
