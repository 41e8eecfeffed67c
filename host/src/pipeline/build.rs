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
use rtms_config::{Apply, Pipeline, PipelineDiff, SocketMode};

use crate::dataplane::routes::{PluginEntry, RestartPolicy, RouteTable};
use crate::dataplane::stats::Metrics;
use crate::sandbox::caps::{Caps, Secrets};
use crate::sandbox::net::{ClientSettings, NetGate};
use crate::sandbox::state::StateLimits;
use crate::sandbox::store::{Grant, InstanceCtx, Rates, ResourceLimits};
use crate::sandbox::{Instance, InstanceSpec, Runtime, RuntimeConfig};

pub fn runtime_config(p: &Pipeline) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(p.runtime.cache_dir.clone()),
        epoch_tick: p.runtime.epoch_tick,
        plugin_open_files: p.runtime.plugin_open_files,
        pool: p.runtime.pool,
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
        video: r.video_following.as_ref().map(video_follow),
        resilience: Resilience {
            connection_timeout: r.connection_timeout,
            connection_max_attempts: r.connection_max_attempts,
            connection_retry_delay: r.connection_retry_delay,
            reconnect_max_attempts: r.reconnect_max_attempts,
            reconnect_base_delay: r.reconnect_base_delay,
            reconnect_max_delay: r.reconnect_max_delay,
            reconnect_jitter_percent: r.reconnect_jitter_percent,
            reconnect_healthy_after: r.reconnect_healthy_after,
            reconnect_flap_max: r.reconnect_flap_max,
            reconnect_flap_window: r.reconnect_flap_window,
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
        close_timeout: r.close_timeout,
        close_on_shutdown: p.runtime.close_streams_on_shutdown,
    })
}

/// What a reload builds against: the table running now and how the pipeline changed since
/// it was built (`rtms_config::PipelineDiff`, the one change detector).
#[derive(Clone, Copy)]
pub struct Prev<'a> {
    pub table: &'a RouteTable,
    pub diff: &'a PipelineDiff,
}

impl Prev<'_> {
    /// The running entry of `name` when the new one can keep it, or its generation: the
    /// entry itself when neither its settings nor its component bytes changed (live
    /// sessions see no marker at all); its generation when only settings a worker applies
    /// in band changed (live sessions keep their instances); `None` when it needs a new
    /// instance (new code, config, limits or grants) or is new.
    fn keep(&self, name: &str, hash: &str) -> Keep {
        let Some(old) = self.table.get(name) else {
            return Keep::Nothing;
        };
        if old.code.hash != hash {
            return Keep::Nothing;
        }
        match self.diff.plugin_change(name) {
            None => Keep::Entry(old.clone()),
            Some(c) if c.apply() == Apply::InBand => Keep::Generation(old.generation),
            Some(_) => Keep::Nothing,
        }
    }
}

enum Keep {
    Entry(Arc<PluginEntry>),
    Generation(u64),
    Nothing,
}

/// Builds the routing table for `p`. With `prev` (a reload), an entry keeps the running one
/// or its generation as [`Prev`] decides; the others get `version`.
pub async fn build_table(
    p: &Pipeline,
    rt: &Runtime,
    metrics: &Metrics,
    prev: Option<Prev<'_>>,
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
        let code = load_component(rt, &plugin.component)
            .await
            .with_context(|| format!("plugin {name}: component refused"))?;
        let spec = Arc::new(instance_spec(p, plugin)?);
        trial_run(rt, &name, &code, &spec).await.with_context(|| {
            format!(
                "{}plugin {name}: trial run of init with its [plugin.config] failed",
                plugin.config_at
            )
        })?;
        let generation = match prev.map_or(Keep::Nothing, |prev| prev.keep(&name, &code.hash)) {
            Keep::Entry(old) => {
                plugins.push(old);
                continue;
            }
            Keep::Generation(g) => g,
            Keep::Nothing => version,
        };
        plugins.push(Arc::new(entry(plugin, code, spec, generation, metrics)));
    }
    Ok(RouteTable { version, plugins })
}

/// The routing table entry of `plugin`: every setting of it the host runs.
fn entry(
    plugin: &rtms_config::Plugin,
    code: Arc<crate::sandbox::PluginCode>,
    spec: Arc<InstanceSpec>,
    generation: u64,
    metrics: &Metrics,
) -> PluginEntry {
    let name = plugin.name.to_string();
    let r = &plugin.restart;
    PluginEntry {
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
        restart: RestartPolicy {
            base_delay: r.base_delay,
            max_delay: r.max_delay,
            healthy_reset: r.healthy_reset,
            max_failures: r.max_failures,
            window: r.window,
            rollback_traps: r.rollback_traps,
            rollback_window: r.rollback_window,
        },
        generation,
        replaced: Default::default(),
        stats: metrics.plugin(&name),
    }
}

/// How outgoing connections leave the process (Zoom's WebSockets and REST API, HTTP sinks,
/// plugins' requests): `zoom.ca_file` and `rtms.proxy`.
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
                max_inodes: (!d.read_only).then_some(plugin.limits.max_inodes),
                symlinks: d.symlinks,
            })
            .collect(),
        resources: ResourceLimits {
            max_resources: plugin.limits.max_resources as usize,
            max_open_files: plugin.limits.max_open_files as usize,
        },
        config: plugin.config.clone(),
        caps: Caps {
            secrets: Secrets::new(
                plugin
                    .secrets
                    .iter()
                    .filter_map(|s| Some((s.name.clone(), s.value.as_ref()?.expose().to_owned()))),
            ),
            state: StateLimits {
                max_keys: usize::try_from(plugin.state.max_keys).unwrap_or(usize::MAX),
                max_bytes: plugin.state.max_bytes,
            },
            units_per_session: plugin.limits.units_per_session,
        },
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
        let code = match load_component(rt, &plugin.component).await {
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

/// Loads a component from its file, or from the binary for `builtin:NAME`
/// ([`super::builtin`]).
pub async fn load_component(
    rt: &Runtime,
    path: &std::path::Path,
) -> Result<Arc<crate::sandbox::PluginCode>> {
    match super::builtin::bytes(path).map_err(anyhow::Error::msg)? {
        Some(bytes) => {
            let (rt, path) = (rt.clone(), path.to_owned());
            tokio::task::spawn_blocking(move || rt.load_bytes(&path, bytes))
                .await
                .context("component compilation task failed")?
        }
        None => rt.load(path).await,
    }
}

/// `[rtms.video]`'s individual-video policy as the client takes it.
fn video_follow(v: &rtms_config::VideoFollowing) -> rtms_client::video::VideoFollow {
    use rtms_client::video::Follow;
    use rtms_config::Following;
    rtms_client::video::VideoFollow {
        follow: match &v.follow {
            Following::ActiveSpeaker => Follow::ActiveSpeaker,
            Following::Sharer => Follow::Sharer,
            Following::FirstWithVideo => Follow::FirstWithVideo,
            Following::Users(u) => Follow::Users(u.clone()),
        },
        max: v.max,
    }
}
