//! From a validated `rtms_config::Pipeline` to what the host runs: the routing table (with
//! every component loaded and trial-run), the sinks, the runtime and client settings.
//!
//! Building a table is also the first half of a reload: components are loaded from the
//! compile cache or compiled, linked against the contract, and each is instantiated once
//! in a throw-away Store whose `init` gets the plugin's config (the trial run). Any failure
//! refuses the whole table, with a message naming the plugin and why, and the running
//! table stays as it is.

use std::sync::Arc;

use anyhow::{Context, Result};
use rtms_client::{AllowList, ClientConfig, MediaMode, Resilience};
use rtms_config::{Pipeline, SocketMode};

use crate::dataplane::routes::{PluginEntry, RestartPolicy, RouteTable};
use crate::dataplane::stats::Metrics;
use crate::sandbox::net::{ClientSettings, NetGate};
use crate::sandbox::store::{Grant, InstanceCtx, Rates};
use crate::sandbox::{Instance, InstanceSpec, Runtime, RuntimeConfig};

pub fn runtime_config(p: &Pipeline) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(p.runtime.cache_dir.clone()),
        epoch_tick: p.runtime.epoch_tick,
    }
}

/// The RTMS client's settings. Credentials must have been loaded (`require_secrets`).
pub fn client_config(p: &Pipeline) -> Result<ClientConfig> {
    let z = &p.zoom;
    let client_id = z.client_id.clone().with_context(|| {
        format!(
            "the Zoom client id is not set: export {} (or set zoom.client_id)",
            z.client_id_env
        )
    })?;
    let client_secret = z
        .client_secret
        .as_ref()
        .with_context(|| {
            format!(
                "the Zoom client secret is not set: export {}",
                z.client_secret_env
            )
        })?
        .expose()
        .to_owned();
    let r = &p.rtms;
    Ok(ClientConfig {
        client_id,
        client_secret,
        media_types: r.media.media_type_mask(),
        media_params: r.media_params.clone(),
        mode: match r.socket_mode {
            SocketMode::Unified => MediaMode::Unified,
            SocketMode::Split => MediaMode::Split,
        },
        events: r.events.clone(),
        buffer_data: r.buffer_data,
        resilience: Resilience {
            connection_timeout: r.connection_timeout,
            connection_max_attempts: r.connection_max_attempts,
            connection_retry_delay: r.connection_retry_delay,
            reconnect_max_attempts: r.reconnect_max_attempts,
            reconnect_base_delay: r.reconnect_base_delay,
            reconnect_max_delay: r.reconnect_max_delay,
            reconnect_jitter_percent: r.reconnect_jitter_percent,
            reconnect_healthy_after: r.reconnect_healthy_after,
            stop_drain: r.stop_drain,
            keepalive_interval: r.keepalive_interval,
            keepalive_timeout: r.keepalive_timeout,
            webhook_wait_timeout: r.webhook_wait_timeout,
            ws_ping: r.ws_ping,
            ..Resilience::default()
        },
        allow: AllowList::new(&r.allowed_hosts, r.allow_insecure_ws)
            .map_err(|e| anyhow::anyhow!("rtms.allowed_hosts: {e}"))?,
        max_streams: r.max_streams,
    })
}

/// Builds the routing table for `p`. Entries whose code and settings equal those in `prev`
/// keep their generation (live sessions keep their instances); the others get `version`.
pub async fn build_table(
    p: &Pipeline,
    rt: &Runtime,
    metrics: &Metrics,
    prev: Option<&RouteTable>,
    version: u64,
) -> Result<RouteTable> {
    let mut plugins = Vec::new();
    for plugin in p.plugins.iter().filter(|pl| pl.enabled) {
        let name = plugin.name.to_string();
        for d in &plugin.dirs {
            std::fs::create_dir_all(&d.host).with_context(|| {
                format!(
                    "plugin {name}: cannot create granted directory {}",
                    d.host.display()
                )
            })?;
        }
        let code = rt
            .load(&plugin.component)
            .await
            .with_context(|| format!("plugin {name}: component refused"))?;
        let spec = Arc::new(instance_spec(p, plugin)?);
        trial_run(rt, &name, &code, &spec).await.with_context(|| {
            format!(
                "{}plugin {name}: trial run of init with its [plugin.config] failed",
                plugin.config_at
            )
        })?;
        let generation = match prev.and_then(|t| t.get(&name)) {
            Some(old) if old.code.hash == code.hash && *old.spec == *spec => old.generation,
            _ => version,
        };
        let restart = RestartPolicy {
            base_delay: plugin.restart.base_delay,
            max_delay: plugin.restart.max_delay,
            healthy_reset: plugin.restart.healthy_reset,
            max_failures: plugin.restart.max_failures,
            window: plugin.restart.window,
            rollback_traps: plugin.restart.rollback_traps,
            rollback_window: plugin.restart.rollback_window,
        };
        plugins.push(Arc::new(PluginEntry {
            name: name.as_str().into(),
            code,
            spec,
            kinds: plugin.media,
            filter: plugin.filter.clone(),
            queue_capacity: plugin.queue.capacity,
            on_full: plugin.queue.on_full,
            block_timeout: plugin.queue.block_timeout,
            batch_max: plugin.batch.max_frames,
            batch_wait: plugin.batch.max_wait,
            rates: Rates {
                log_bytes_per_sec: plugin.limits.log_bytes_per_sec,
                emit_bytes_per_sec: plugin.limits.emit_bytes_per_sec,
            },
            restart,
            generation,
            stats: metrics.plugin(&name),
        }));
    }
    Ok(RouteTable { version, plugins })
}

/// How plugins' HTTP requests leave the process: the Zoom connections' extra CA and proxy.
pub fn net_settings(p: &Pipeline) -> ClientSettings {
    ClientSettings {
        extra_ca_file: p.zoom.ca_file.clone(),
        proxy: match &p.rtms.proxy {
            rtms_config::Proxy::Env => rtms_client::ProxySetting::Env,
            rtms_config::Proxy::None => rtms_client::ProxySetting::None,
            rtms_config::Proxy::Url(u) => rtms_client::ProxySetting::Url(u.clone()),
        },
    }
}

/// How to build an instance of `plugin`.
fn instance_spec(p: &Pipeline, plugin: &rtms_config::Plugin) -> Result<InstanceSpec> {
    let net = if plugin.net.enabled() {
        let name: Arc<str> = Arc::from(plugin.name.as_str());
        Some(Arc::new(NetGate::new(
            name,
            plugin.net.clone(),
            net_settings(p),
        )?))
    } else {
        None
    };
    Ok(InstanceSpec {
        memory_bytes: plugin.limits.memory_bytes(),
        call_timeout: plugin.limits.call_timeout,
        grants: plugin
            .dirs
            .iter()
            .map(|d| Grant {
                host: d.host.clone(),
                guest: d.guest.clone(),
                read_only: d.read_only,
                quota_bytes: d.quota_mb.map(|mb| mb.saturating_mul(1024 * 1024)),
            })
            .collect(),
        config: plugin.config.clone(),
        net,
    })
}

/// Loads every enabled plugin's component and trial-runs its `init` with its config (no
/// directory is created); returns one message per plugin that fails, each starting with
/// where the plugin's config is written. For `rtms-host validate`.
pub async fn check_plugins(p: &Pipeline, rt: &Runtime) -> Vec<String> {
    let mut errors = Vec::new();
    for plugin in p.plugins.iter().filter(|pl| pl.enabled) {
        let name = plugin.name.to_string();
        let at = &plugin.config_at;
        let code = match rt.load(&plugin.component).await {
            Ok(code) => code,
            Err(e) => {
                errors.push(format!(
                    "{at}plugin {name:?}: component {} refused: {e:#}",
                    plugin.component.display()
                ));
                continue;
            }
        };
        // A trial needs no granted directory to exist yet: grant none that is missing.
        let mut spec = match instance_spec(p, plugin) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("{at}plugin {name:?}: {e:#}"));
                continue;
            }
        };
        spec.grants.retain(|g| g.host.is_dir());
        if let Err(e) = trial_run(rt, &name, &code, &spec).await {
            errors.push(format!(
                "{at}plugin {name:?}: its init refused the [plugin.config] given to it: {e:#}"
            ));
        }
    }
    errors
}

/// Instantiates the plugin in a throw-away Store and runs `init` with its config.
pub async fn trial_run(
    rt: &Runtime,
    name: &str,
    code: &Arc<crate::sandbox::PluginCode>,
    spec: &InstanceSpec,
) -> Result<()> {
    let (outputs, sinks) = crate::outputs::start_sinks(Vec::new()).await?;
    let ctx = Arc::new(InstanceCtx::new(
        name.into(),
        0,
        "trial".into(),
        "trial".into(),
        Rates::default(),
        crate::dataplane::embed::PluginLink::new(outputs, Default::default()),
    ));
    let mut inst = Instance::new(rt, code.clone(), spec, ctx).await?;
    let r = inst.init(&spec.config).await;
    drop(inst);
    sinks.finish().await;
    r.map_err(Into::into)
}
