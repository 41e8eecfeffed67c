//! The running service: ingress, sessions, plugins, sinks and the reload controller, wired
//! together; and its orderly shutdown.
//!
//! [`Service::start`] validates and loads everything before it binds anything it was not
//! given. The webhook listener serves only the webhook path and `/healthz`; the admin routes
//! are served on a listener of their own ([`crate::admin`]) when one is given. Shutdown (SIGINT / SIGTERM in `main`, or [`Service::shutdown`]) stops intake,
//! ends every stream within the grace period (each plugin drains its queue and gets
//! `on-session-end(shutdown)`), flushes the sinks and returns the final counters.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use rtms_client::{IngressConfig, IngressHandler, Refusal, Sessions, WsConnector};
use rtms_config::{Env, Pipeline};
use rtms_proto::WebhookEvent;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminBackend, AdminConfig, Limits, check_exposure};
use crate::core::Shared;
use crate::deadletter::DeadLetters;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::output::{SinkSet, start_sinks};
use crate::pipeline::{build_table, client_config, runtime_config};
use crate::reload::{Outcome, Reloader, Trigger};
use crate::runtime::Runtime;
use crate::session::{HostSinkFactory, ReadTap, Tap};

/// Options that are not in pipeline.toml.
#[derive(Default)]
pub struct StartOptions {
    /// Sees every frame (the demo's live transcript).
    pub tap: Option<Tap>,
    /// Sees every frame read from a socket with its read time (benchmarks).
    pub read_tap: Option<ReadTap>,
    /// Overrides `[runtime.reload] watch`.
    pub watch: Option<bool>,
    /// Where the admin routes are served (`rtms-host run` binds `[admin] listen` when
    /// `admin.enabled`); none without it. Refused beyond loopback without an admin token.
    pub admin_listener: Option<TcpListener>,
}

pub type HostSessions = Sessions<HostSinkFactory, WsConnector>;

/// A running host.
pub struct Service {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    sessions: HostSessions,
    triggers: mpsc::UnboundedSender<Trigger>,
    stop: CancellationToken,
    sinks: SinkSet,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    grace: std::time::Duration,
}

struct Handler {
    sessions: HostSessions,
}

impl IngressHandler for Handler {
    fn on_event(&self, ev: WebhookEvent) -> Result<(), Refusal> {
        tracing::debug!(event = %ev.event, stream = %ev.stream_id, "webhook");
        self.sessions.handle(ev)
    }
}

/// What the admin routes act on: the service's counters, streams and reload controller.
struct Backend {
    sessions: HostSessions,
    triggers: mpsc::UnboundedSender<Trigger>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl AdminBackend for Backend {
    fn metrics(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self.metrics.snapshot()).unwrap_or_default();
        v["live_streams"] = self.sessions.len().into();
        v
    }

    async fn reload(&self) -> Outcome {
        request_reload(&self.triggers).await
    }
}

/// Sends an admin reload trigger and waits for its outcome.
async fn request_reload(triggers: &mpsc::UnboundedSender<Trigger>) -> Outcome {
    let (tx, rx) = oneshot::channel();
    if triggers.send(Trigger::Admin(Some(tx))).is_err() {
        return Outcome::Refused("the host is shutting down".into());
    }
    rx.await
        .unwrap_or_else(|_| Outcome::Refused("the host is shutting down".into()))
}

impl Service {
    /// Starts the host on `listener` with a validated pipeline (credentials loaded).
    pub async fn start(
        pipeline: Pipeline,
        env: Box<dyn Env + Send + Sync>,
        listener: TcpListener,
        opts: StartOptions,
    ) -> Result<Self> {
        let client_cfg = client_config(&pipeline)?;
        let webhook_secret = pipeline
            .zoom
            .webhook_secret
            .as_ref()
            .with_context(|| {
                format!(
                    "the webhook secret token is not set: export {}",
                    pipeline.zoom.webhook_secret_env
                )
            })?
            .expose()
            .to_owned();
        let connector = WsConnector::new(pipeline.zoom.ca_file.as_deref())
            .context("cannot set up TLS for the Zoom connections")?;
        let rt = Runtime::new(&runtime_config(&pipeline))?;
        let metrics = Arc::new(Metrics::default());
        let table = build_table(&pipeline, &rt, &metrics, None, 1).await?;
        let (outputs, sinks) = start_sinks(pipeline.sinks.clone()).await?;
        let (rollback_tx, rollback_rx) = mpsc::unbounded_channel();
        let shared = Shared::new(
            rt,
            table,
            outputs,
            DeadLetters::with_limits(
                Some(pipeline.runtime.dead_letter_dir.clone()),
                pipeline.runtime.dead_letter_max_bytes,
                pipeline.runtime.dead_letter_files,
            ),
            metrics.clone(),
            Some(rollback_tx),
        );
        let factory = HostSinkFactory {
            shared: shared.clone(),
            tap: opts.tap,
            read_tap: opts.read_tap,
        };
        let sessions = Sessions::new(client_cfg, connector, factory);
        let (triggers, trigger_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let addr = listener.local_addr()?;
        let admin_addr = match &opts.admin_listener {
            Some(l) => {
                let bound = l.local_addr()?;
                check_exposure(
                    pipeline.admin.listen,
                    bound,
                    pipeline.admin.token.as_ref().map(|t| t.expose()),
                    &pipeline.admin.token_env,
                )?;
                Some(bound)
            }
            None => None,
        };
        let ingress_cfg = IngressConfig {
            path: pipeline.server.webhook_path.clone(),
            secret_token: webhook_secret,
            max_body_bytes: pipeline.server.max_body_bytes,
            timestamp_window_secs: pipeline.server.timestamp_window.as_secs(),
            header_timeout: pipeline.server.header_timeout,
            body_timeout: pipeline.server.body_timeout,
            max_connections: pipeline.server.max_connections,
            tls: pipeline
                .server
                .tls
                .as_ref()
                .map(|t| rtms_client::ingress::TlsFiles {
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                }),
            ..IngressConfig::default()
        };
        if let Some(files) = &ingress_cfg.tls {
            rtms_client::ingress::ReloadingCert::new(files.clone())
                .map_err(anyhow::Error::msg)
                .context("server.tls")?;
        }
        let handler = Arc::new(Handler {
            sessions: sessions.clone(),
        });
        let mut tasks = Vec::new();
        if let Some(admin_listener) = opts.admin_listener {
            let cfg = AdminConfig {
                token: pipeline.admin.token.as_ref().map(|t| t.expose().to_owned()),
                token_env: pipeline.admin.token_env.clone(),
                reload_min_interval: pipeline.admin.reload_min_interval,
                limits: Limits::default(),
            };
            let backend = Arc::new(Backend {
                sessions: sessions.clone(),
                triggers: triggers.clone(),
                metrics: metrics.clone(),
            });
            let admin_stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = crate::admin::serve(admin_listener, cfg, backend, admin_stop).await
                {
                    tracing::error!(error = %e, "admin listener failed");
                }
            }));
        }
        let ingress_stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = rtms_client::serve(listener, ingress_cfg, handler, ingress_stop).await {
                tracing::error!(error = %e, "webhook server failed");
            }
        }));
        let watch = opts.watch.unwrap_or(pipeline.runtime.reload.watch);
        let grace = pipeline.runtime.shutdown_grace;
        let reloader = Reloader::new(pipeline, env, shared.clone());
        tasks.push(tokio::spawn(reloader.run(
            trigger_rx,
            rollback_rx,
            watch,
            stop.clone(),
        )));
        tracing::info!(%addr, admin = ?admin_addr, "rtms-host ready");
        Ok(Self {
            addr,
            admin_addr,
            shared,
            sessions,
            triggers,
            stop,
            sinks,
            tasks,
            grace,
        })
    }

    /// Where the webhook server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the admin listener listens, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn sessions(&self) -> &HostSessions {
        &self.sessions
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Asks for a reload now (as SIGHUP does) and waits for its outcome.
    pub async fn reload(&self) -> Outcome {
        request_reload(&self.triggers).await
    }

    /// A SIGHUP-style reload request that does not wait.
    pub fn request_reload(&self) {
        let _ = self.triggers.send(Trigger::Signal);
    }

    /// Stops intake, ends every stream (plugins get `on-session-end(shutdown)`), flushes
    /// the sinks. Returns the final counters.
    pub async fn shutdown(self) -> MetricsSnapshot {
        tracing::info!("shutting down: no new streams; ending live ones");
        self.stop.cancel();
        let aborted = self.sessions.shutdown(self.grace).await;
        if aborted > 0 {
            tracing::error!(aborted, "streams did not end within the grace period");
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let snapshot = self.shared.metrics.snapshot();
        drop(self.sessions);
        drop(self.shared);
        if tokio::time::timeout(self.grace, self.sinks.finish())
            .await
            .is_err()
        {
            tracing::error!("sinks did not flush within the grace period");
        }
        snapshot
    }
}
