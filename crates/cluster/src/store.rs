//! The seam: what hosts of one cluster share, in engine-neutral terms.
//!
//! Four things, each the smallest an engine must offer:
//!
//! - **The webhook log** ([`ClusterStore::log_webhook`], [`ClusterStore::webhooks`]): an
//!   append-only log, de-duplicated by a key over a window, consumed as a work queue. A
//!   record is redelivered to some host when the one it was handed to neither acknowledged
//!   it nor asked for a retry within the acknowledgement window.
//! - **Two tables of records with revisions** ([`Table::Leases`], [`Table::Hosts`]): create
//!   (only if absent), update and delete with compare-and-swap on the revision, read, and a
//!   watch that first lists every current record and then every change. A revision grows
//!   with every write of the table; it is the fencing token of a lease.
//! - **Direct requests to one host** ([`ClusterStore::request`], [`ClusterStore::serve`]):
//!   request and reply, with a timeout; nothing is kept when no one answers.
//!
//! Keys are opaque text (stream ids and host ids); an implementation encodes them as its
//! engine needs. Values are opaque bytes. [`crate::nats::NatsStore`] implements the seam on
//! NATS JetStream; Redis would map it onto a stream with a consumer group, keys with a
//! revision field updated by a Lua compare-and-set, keyspace notifications, and pub/sub.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

/// A record's revision: strictly increasing within a table.
pub type Revision = u64;

/// Why a call to the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-swap found another revision (or a record where none was expected, or
    /// none where one was).
    #[error("the record changed since revision {expected:?} (compare-and-swap refused)")]
    Conflict { expected: Option<Revision> },
    /// The engine did not answer, or refused for another reason.
    #[error("the cluster engine failed: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// What became of a webhook written to the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logged {
    /// Written: some host will act on it.
    New,
    /// Its key was logged within the window already: nothing written.
    Duplicate,
}

/// What went over the connection to the engine since it was opened: message bodies and
/// counts, without the protocol's own bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub sent_messages: u64,
    pub received_messages: u64,
}

/// The two tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// One record per stream: its owner and what a new owner needs.
    Leases,
    /// One record per host: its load and whether it drains.
    Hosts,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Leases => "leases",
            Table::Hosts => "hosts",
        }
    }
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub revision: Revision,
    /// `None`: the record was deleted.
    pub value: Option<Bytes>,
}

/// Settles one webhook taken from the log.
#[async_trait]
pub trait Settle: Send {
    /// Done with it: never delivered again.
    async fn ack(self: Box<Self>) -> Result<(), StoreError>;
    /// Deliver it again (to any host) after `delay`.
    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), StoreError>;
}

/// One webhook taken from the log.
pub struct LoggedWebhook {
    /// The body that was logged.
    pub body: Bytes,
    /// How many times it has been handed out, this time included.
    pub deliveries: u64,
    pub settle: Box<dyn Settle>,
}

impl std::fmt::Debug for LoggedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedWebhook")
            .field("bytes", &self.body.len())
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

/// A request to this host; answer it with [`Request::reply`].
pub struct Request {
    pub body: Bytes,
    pub reply: Box<dyn FnOnce(Bytes) -> BoxFuture<()> + Send>,
}

/// A boxed future, as the seam returns them.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// What the hosts of one cluster share. See the module documentation.
#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// Whether the connection to the engine is up, and its changes. While it is down no
    /// watch sees anything, so "nothing changed" cannot be told from "nothing was seen".
    fn link(&self) -> tokio::sync::watch::Receiver<bool>;

    /// What went over the connection to the engine so far (metrics).
    fn traffic(&self) -> Traffic;

    /// Writes a webhook to the log unless `dedup_key` was logged within the window. Returns
    /// once the engine has it.
    async fn log_webhook(&self, dedup_key: &str, body: Bytes) -> Result<Logged, StoreError>;

    /// The webhooks this host should act on, shared with every other host: each is handed
    /// to one host at a time until settled.
    async fn webhooks(
        &self,
    ) -> Result<BoxStream<'static, Result<LoggedWebhook, StoreError>>, StoreError>;

    /// Creates `key` unless it exists ([`StoreError::Conflict`] then).
    async fn create(&self, table: Table, key: &str, value: Bytes) -> Result<Revision, StoreError>;

    /// Writes `key` if its revision is still `expected`.
    async fn update(
        &self,
        table: Table,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<Revision, StoreError>;

    /// Writes `key` whatever it holds.
    async fn put(&self, table: Table, key: &str, value: Bytes) -> Result<Revision, StoreError>;

    /// Deletes `key` if its revision is still `expected` (whatever it holds when `None`).
    async fn delete(
        &self,
        table: Table,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(), StoreError>;

    /// The record of `key` and its revision.
    async fn get(&self, table: Table, key: &str) -> Result<Option<(Bytes, Revision)>, StoreError>;

    /// Every record of `table`, then every change as it happens.
    /// The stream ends or fails when the engine's connection is lost; watch again then.
    async fn watch(
        &self,
        table: Table,
    ) -> Result<BoxStream<'static, Result<Change, StoreError>>, StoreError>;

    /// Sends `body` to host `host` and waits up to `timeout` for its reply.
    async fn request(
        &self,
        host: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, StoreError>;

    /// The requests sent to host `host`.
    async fn serve(&self, host: &str) -> Result<BoxStream<'static, Request>, StoreError>;
}
