//! [`ClusterStore`] on NATS JetStream (nats-server 2.9 or later, `-js`).
//!
//! What it creates (names from [`NatsSettings::prefix`], `rtms` by default), idempotently, so
//! every host may start first:
//!
//! | what | name | settings |
//! |---|---|---|
//! | webhook log | stream `rtms-webhooks`, subject `rtms.webhooks` | file storage, `duplicate_window` = the de-duplication window (`Nats-Msg-Id` = a hash of the key), every message kept for that window (the server rebuilds its de-duplication table from them after a restart), at most 100 000 messages / 256 MiB (new ones refused past it) |
//! | its consumer | durable pull consumer `rtms-hosts` | explicit acks, `ack_wait`, at most `max_deliver` deliveries, 1024 unacknowledged at most |
//! | leases | KV bucket `rtms-leases` | history 1, file storage, values up to 1 MiB |
//! | hosts | KV bucket `rtms-hosts` | history 1, file storage, records expire after an hour without a write |
//! | requests | subject `rtms.host.<host>` | core NATS request and reply |
//!
//! Keys are written base64url-encoded (KV keys allow only `[-/_=.A-Za-z0-9]`), and decoded
//! again by watches. The connection reconnects forever; [`NatsStore::link`] says whether it
//! is up, so a watcher can tell "nothing changed" from "nothing could be seen".

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::store::*;

/// The most messages and bytes the webhook log holds (unacted-on webhooks).
const LOG_MAX_MESSAGES: i64 = 100_000;
const LOG_MAX_BYTES: i64 = 256 << 20;
/// A lease record (with the plugins' session state) is at most this large.
const MAX_VALUE_BYTES: i32 = 1 << 20;
/// A host record nobody rewrote for this long is gone.
const HOSTS_MAX_AGE: Duration = Duration::from_secs(3_600);
/// Unacknowledged webhooks per consumer, all hosts together.
const MAX_ACK_PENDING: i64 = 1024;

/// How to reach the engine and what to call things there.
#[derive(Clone)]
pub struct NatsSettings {
    /// `nats://host:port` (or `tls://`), several separated by commas.
    pub url: String,
    /// The connection's name, as the server's monitoring shows it (the host id).
    pub name: String,
    /// Prefix of every stream, bucket and subject name.
    pub prefix: String,
    pub auth: NatsAuth,
    /// Webhooks with the same key within this window are logged once (Zoom retries for
    /// about 90 minutes).
    pub dedup_window: Duration,
    /// A webhook handed to a host that neither settles it nor asks for a retry within this
    /// is handed out again.
    pub ack_wait: Duration,
    /// A webhook is handed out at most this many times.
    pub max_deliver: i64,
    /// Each engine call waits at most this long.
    pub timeout: Duration,
}

/// Credentials for the engine.
#[derive(Clone, Default)]
pub enum NatsAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
}

impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match self.auth {
            NatsAuth::None => "none",
            NatsAuth::UserPassword { .. } => "user and password",
            NatsAuth::Token(_) => "token",
        };
        f.debug_struct("NatsSettings")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("auth", &auth)
            .field("dedup_window", &self.dedup_window)
            .field("ack_wait", &self.ack_wait)
            .field("max_deliver", &self.max_deliver)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The seam on NATS JetStream.
pub struct NatsStore {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    webhooks: stream::Stream,
    consumer: consumer::PullConsumer,
    leases: kv::Store,
    hosts: kv::Store,
    link: tokio::sync::watch::Receiver<bool>,
}

/// Engine failures as the seam's errors.
fn fail(what: &str) -> impl Fn(&dyn std::fmt::Display) -> StoreError + '_ {
    move |e| StoreError::Unavailable(format!("{what}: {e}"))
}

fn encode(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode(key: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key)
        .ok()?;
    String::from_utf8(bytes).ok()
}

impl NatsStore {
    /// Connects (failing at once when the engine is unreachable: a host should not start
    /// half-configured) and creates or updates the log, its consumer and the buckets.
    pub async fn connect(s: &NatsSettings) -> Result<Self, StoreError> {
        let (link_tx, link) = tokio::sync::watch::channel(false);
        let link_tx = Arc::new(link_tx);
        let first = link_tx.clone();
        let mut opts = async_nats::ConnectOptions::new()
            .name(&s.name)
            .connection_timeout(s.timeout)
            .request_timeout(Some(s.timeout))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(1_000))
            })
            .event_callback(move |event| {
                let link = link_tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("cluster engine connected");
                            link.send_replace(true);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("cluster engine disconnected: reconnecting");
                            link.send_replace(false);
                        }
                        other => tracing::warn!(event = %other, "cluster engine"),
                    }
                }
            });
        opts = match &s.auth {
            NatsAuth::None => opts,
            NatsAuth::UserPassword { user, password } => {
                opts.user_and_password(user.clone(), password.clone())
            }
            NatsAuth::Token(t) => opts.token(t.clone()),
        };
        let client = opts
            .connect(s.url.as_str())
            .await
            .map_err(|e| fail("cannot connect to the cluster engine")(&e))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(s.timeout)
            .build(client.clone());
        let webhooks = Self::log_stream(&js, s).await?;
        let consumer = webhooks
            .get_or_create_consumer(&format!("{}-hosts", s.prefix), consumer_config(s))
            .await
            .map_err(|e| fail("cannot create the webhook log's consumer")(&e))?;
        let leases = bucket(&js, &s.prefix, Table::Leases, Duration::ZERO).await?;
        let hosts = bucket(&js, &s.prefix, Table::Hosts, HOSTS_MAX_AGE).await?;
        // The callback may not have run yet for the first connection.
        first.send_replace(client.connection_state() == async_nats::connection::State::Connected);
        Ok(Self {
            client,
            js,
            prefix: s.prefix.clone(),
            webhooks,
            consumer,
            leases,
            hosts,
            link,
        })
    }

    /// The webhook log, created or brought to these settings.
    async fn log_stream(
        js: &jetstream::Context,
        s: &NatsSettings,
    ) -> Result<stream::Stream, StoreError> {
        let name = format!("{}-webhooks", s.prefix);
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![format!("{}.webhooks", s.prefix)],
            // Kept for the whole window, acknowledged or not: the server rebuilds its
            // de-duplication table from the stored messages when it restarts, so a
            // work-queue log (acknowledged messages removed) would forget them.
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: s.dedup_window,
            max_messages: LOG_MAX_MESSAGES,
            max_bytes: LOG_MAX_BYTES,
            max_age: s.dedup_window,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        js.create_or_update_stream(config)
            .await
            .map_err(|e| fail("cannot create the webhook log")(&e))?;
        js.get_stream(&name)
            .await
            .map_err(|e| fail("cannot open the webhook log")(&e))
    }

    fn table(&self, table: Table) -> &kv::Store {
        match table {
            Table::Leases => &self.leases,
            Table::Hosts => &self.hosts,
        }
    }

    fn host_subject(&self, host: &str) -> String {
        format!("{}.host.{}", self.prefix, encode(host))
    }

    /// The webhook log's stream (tests read its state).
    pub fn log(&self) -> &stream::Stream {
        &self.webhooks
    }
}

fn consumer_config(s: &NatsSettings) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(format!("{}-hosts", s.prefix)),
        description: Some("rtms-host: every host takes webhooks from here".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: s.ack_wait,
        max_deliver: s.max_deliver,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    }
}

/// A KV bucket, created or brought to these settings. Its stream is configured here as the
/// client's `create_key_value` would, because that call first reads the account's limits in
/// a form nats-server 2.9 does not send.
async fn bucket(
    js: &jetstream::Context,
    prefix: &str,
    table: Table,
    max_age: Duration,
) -> Result<kv::Store, StoreError> {
    let name = format!("{prefix}-{}", table.as_str());
    let config = stream::Config {
        name: format!("KV_{name}"),
        description: Some(format!("rtms-host: {}", table.as_str())),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        max_message_size: MAX_VALUE_BYTES,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        num_replicas: 1,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    let failed = |e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("cannot create the bucket {name}: {e}"))
    };
    js.create_or_update_stream(config)
        .await
        .map_err(|e| failed(&e))?;
    js.get_key_value(&name).await.map_err(|e| failed(&e))
}

struct NatsSettle(jetstream::Message);

#[async_trait]
impl Settle for NatsSettle {
    async fn ack(self: Box<Self>) -> Result<(), StoreError> {
        self.0
            .double_ack()
            .await
            .map_err(|e| fail("cannot acknowledge a webhook")(&e))
    }

    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), StoreError> {
        self.0
            .ack_with(jetstream::AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| fail("cannot hand a webhook back")(&e))
    }
}

fn update_error(expected: Option<Revision>) -> impl Fn(kv::UpdateError) -> StoreError {
    move |e| match e.kind() {
        kv::UpdateErrorKind::WrongLastRevision => StoreError::Conflict { expected },
        _ => StoreError::unavailable(e),
    }
}

#[async_trait]
impl ClusterStore for NatsStore {
    fn link(&self) -> tokio::sync::watch::Receiver<bool> {
        self.link.clone()
    }

    fn traffic(&self) -> Traffic {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.client.statistics();
        Traffic {
            sent_bytes: s.out_bytes.load(Relaxed),
            received_bytes: s.in_bytes.load(Relaxed),
            sent_messages: s.out_messages.load(Relaxed),
            received_messages: s.in_messages.load(Relaxed),
        }
    }

    async fn log_webhook(&self, dedup_key: &str, body: Bytes) -> Result<Logged, StoreError> {
        let id = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(dedup_key.as_bytes()));
        let publish = jetstream::message::PublishMessage::build()
            .payload(body)
            .message_id(id);
        let ack = self
            .js
            .send_publish(format!("{}.webhooks", self.prefix), publish)
            .await
            .map_err(|e| fail("cannot log a webhook")(&e))?
            .await
            .map_err(|e| fail("the webhook log did not confirm a write")(&e))?;
        Ok(if ack.duplicate {
            Logged::Duplicate
        } else {
            Logged::New
        })
    }

    async fn webhooks(
        &self,
    ) -> Result<BoxStream<'static, Result<LoggedWebhook, StoreError>>, StoreError> {
        let messages = self
            .consumer
            .messages()
            .await
            .map_err(|e| fail("cannot read the webhook log")(&e))?;
        Ok(messages
            .map(|m| {
                let m = m.map_err(|e| fail("reading the webhook log")(&e))?;
                let deliveries = m.info().map_or(1, |i| i.delivered.max(1) as u64);
                Ok(LoggedWebhook {
                    body: m.payload.clone(),
                    deliveries,
                    settle: Box::new(NatsSettle(m)),
                })
            })
            .boxed())
    }

    async fn create(&self, table: Table, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        self.table(table)
            .create(encode(key), value)
            .await
            .map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => StoreError::Conflict { expected: None },
                _ => StoreError::unavailable(e),
            })
    }

    async fn update(
        &self,
        table: Table,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<Revision, StoreError> {
        self.table(table)
            .update(encode(key), value, expected)
            .await
            .map_err(update_error(Some(expected)))
    }

    async fn put(&self, table: Table, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        self.table(table)
            .put(encode(key), value)
            .await
            .map_err(StoreError::unavailable)
    }

    async fn delete(
        &self,
        table: Table,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(), StoreError> {
        self.table(table)
            .delete_expect_revision(encode(key), expected)
            .await
            .map_err(update_error(expected))
    }

    async fn get(&self, table: Table, key: &str) -> Result<Option<(Bytes, Revision)>, StoreError> {
        let entry = self
            .table(table)
            .entry(encode(key))
            .await
            .map_err(StoreError::unavailable)?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| (e.value, e.revision)))
    }

    async fn watch(
        &self,
        table: Table,
    ) -> Result<BoxStream<'static, Result<Change, StoreError>>, StoreError> {
        let watch = self
            .table(table)
            .watch_with_history(">")
            .await
            .map_err(|e| fail("cannot watch the cluster's records")(&e))?;
        Ok(watch
            .filter_map(|e| async move {
                let e = match e {
                    Ok(e) => e,
                    Err(e) => return Some(Err(fail("watching the cluster's records")(&e))),
                };
                let key = decode(&e.key)?;
                let value = (e.operation == kv::Operation::Put).then_some(e.value);
                Some(Ok(Change {
                    key,
                    revision: e.revision,
                    value,
                }))
            })
            .boxed())
    }

    async fn request(
        &self,
        host: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, StoreError> {
        let req = self.client.request(self.host_subject(host), body);
        match tokio::time::timeout(timeout, req).await {
            Ok(Ok(m)) => Ok(m.payload),
            Ok(Err(e)) => Err(fail("no answer from the host")(&e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from the host within {timeout:?}"
            ))),
        }
    }

    async fn serve(&self, host: &str) -> Result<BoxStream<'static, Request>, StoreError> {
        let sub = self
            .client
            .subscribe(self.host_subject(host))
            .await
            .map_err(|e| fail("cannot take requests")(&e))?;
        let client = self.client.clone();
        Ok(sub
            .filter_map(move |m| {
                let client = client.clone();
                async move {
                    let reply = m.reply?;
                    Some(Request {
                        body: m.payload,
                        reply: Box::new(move |answer: Bytes| -> BoxFuture<()> {
                            Box::pin(async move {
                                if let Err(e) = client.publish(reply, answer).await {
                                    tracing::warn!(error = %e, "cluster request not answered");
                                }
                            })
                        }),
                    })
                }
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_encoding_and_use_only_kv_characters() {
        for k in ["abc", "a+b/c==", "é x", "."] {
            let e = encode(k);
            assert!(
                e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{e}"
            );
            assert_eq!(decode(&e).as_deref(), Some(k));
        }
    }
}
