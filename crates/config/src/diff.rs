//! What changed between two pipelines, for hot reload.
//!
//! Plugins and sinks can change while the host runs; everything else (the server, Zoom
//! credentials, the `[rtms]` settings, the runtime) needs a restart, and the diff says so in
//! words the host logs as they are ([`PipelineDiff::restart_required`]). A component whose
//! bytes changed but whose path did not is not visible here: the reload code watches the
//! files themselves.
//!
//! # Plugin changes
//!
//! Each plugin in both pipelines whose settings differ is one [`PluginChange`], listing every
//! [`PluginSetting`] that changed; each setting says what applying it takes ([`Apply`]), and
//! [`PluginChange::apply`] is the most any of them takes. The host reloads from that alone:
//!
//! | setting | key | applied |
//! |---|---|---|
//! | [`Component`](PluginSetting::Component) | `component` | new instance |
//! | [`Config`](PluginSetting::Config) | `[plugin.config]` | new instance |
//! | [`MemoryLimit`](PluginSetting::MemoryLimit) | `[plugin.limits] memory_mb` | new instance |
//! | [`CallTimeout`](PluginSetting::CallTimeout) | `[plugin.limits] call_timeout_ms` | new instance |
//! | [`Grants`](PluginSetting::Grants) | `[[plugin.dir]]` | new instance |
//! | [`Enabled`](PluginSetting::Enabled) | `enabled` | in band |
//! | [`Media`](PluginSetting::Media) | `media` | in band |
//! | [`Filter`](PluginSetting::Filter) | `products`, `meeting_ids`, `users` | in band |
//! | [`QueueCapacity`](PluginSetting::QueueCapacity) | `[plugin.queue] capacity` | in band |
//! | [`OnFull`](PluginSetting::OnFull) | `[plugin.queue] on_full` | in band |
//! | [`BlockTimeout`](PluginSetting::BlockTimeout) | `[plugin.queue] block_timeout_ms` | in band |
//! | [`BatchMaxFrames`](PluginSetting::BatchMaxFrames) | `[plugin.batch] max_frames` | in band |
//! | [`BatchMaxWait`](PluginSetting::BatchMaxWait) | `[plugin.batch] max_wait_ms` | in band |
//! | [`LogRate`](PluginSetting::LogRate) | `[plugin.limits] log_bytes_per_sec` | in band |
//! | [`EmitRate`](PluginSetting::EmitRate) | `[plugin.limits] emit_bytes_per_sec` | in band |
//! | [`RestartPolicy`](PluginSetting::RestartPolicy) | `[plugin.restart]` | in band |
//!
//! Why: an instance is built from its code, its `init` config, its memory limit and call
//! deadline (the Store's limiter and epoch deadline) and its preopened directories; none of
//! these can change under a live instance, so the old one ends the session (`reload`) at the
//! swap marker and a new one resumes it. Everything else belongs to the session's worker
//! around the instance — which sessions and frames reach it, its queue and what a full queue
//! does, how frames are batched, how long the session waits for room, how many bytes of
//! logs and outputs it may write per second, how traps are retried — and the worker takes
//! the new values at the swap marker without touching the instance
//! ([`Apply::InBand`]). No plugin setting needs a restart ([`Apply::RestartRequired`]);
//! the settings a plugin's media depend on (`rtms.media`) are in `restart_required`.
//!
//! A queue whose capacity shrinks below what it holds keeps those frames; the new bound
//! applies to the frames pushed after the swap marker.

use std::fmt::Debug;
use std::time::Duration;

use crate::model::{Admin, Pipeline, Plugin, PluginName, Rtms, Runtime, Server, Zoom};

mod plugin;

pub use plugin::{Apply, PluginChange, PluginSetting};

/// The difference between a running pipeline and a new version of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineDiff {
    /// Plugins only in the new pipeline: start them on live sessions.
    pub added_plugins: Vec<PluginName>,
    /// Plugins only in the old pipeline: drain them.
    pub removed_plugins: Vec<PluginName>,
    /// Plugins in both whose settings differ, in the new file's order, each with every
    /// setting that changed and what applying it takes.
    pub changed_plugins: Vec<PluginChange>,
    /// True when the sinks differ.
    pub sinks_changed: bool,
    /// Changes that apply only after a restart, one sentence each, such as
    /// `server.listen changed from 127.0.0.1:8080 to 0.0.0.0:8080: restart to apply`.
    pub restart_required: Vec<String>,
}

impl PipelineDiff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added_plugins.is_empty()
            && self.removed_plugins.is_empty()
            && self.changed_plugins.is_empty()
            && !self.sinks_changed
            && self.restart_required.is_empty()
    }

    /// How the plugin of that name changed, when it is in both pipelines and did.
    pub fn plugin_change(&self, name: &str) -> Option<&PluginChange> {
        self.changed_plugins
            .iter()
            .find(|c| c.name.as_str() == name)
    }
}

fn note<T: PartialEq + Debug>(out: &mut Vec<String>, key: &str, old: &T, new: &T) {
    if old != new {
        out.push(format!(
            "{key} changed from {old:?} to {new:?}: restart to apply"
        ));
    }
}

/// `[runtime] pool` as the operator wrote it: the plan itself follows the plugins, and a
/// reload that needs more than the running pool is refused where it is built.
fn pool_mode(p: &Option<crate::pool::PoolPlan>) -> &'static str {
    if p.is_some() { "auto" } else { "off" }
}

fn note_quiet<T: PartialEq>(out: &mut Vec<String>, key: &str, old: &T, new: &T) {
    if old != new {
        out.push(format!("{key} changed: restart to apply"));
    }
}

impl Pipeline {
    /// What changed from `self` (running) to `new`.
    pub fn diff(&self, new: &Pipeline) -> PipelineDiff {
        let mut d = PipelineDiff::default();
        diff_plugins(&mut d, &self.plugins, &new.plugins);
        d.sinks_changed = self.sinks != new.sinks;
        let r = &mut d.restart_required;
        server_changes(r, &self.server, &new.server);
        admin_changes(r, &self.admin, &new.admin);
        zoom_changes(r, &self.zoom, &new.zoom);
        rtms_connection_changes(r, &self.rtms, &new.rtms);
        rtms_request_changes(r, &self.rtms, &new.rtms);
        runtime_changes(r, &self.runtime, &new.runtime);
        // The engine connection, the host's name and its timers are set up once; the
        // credentials are not printed.
        note_quiet(r, "[cluster]", &self.cluster, &new.cluster);
        d
    }
}

/// Added and changed plugins in the new file's order, then removed ones in the old file's.
fn diff_plugins(d: &mut PipelineDiff, old: &[Plugin], new: &[Plugin]) {
    for p in new {
        match old.iter().find(|o| o.name == p.name) {
            None => d.added_plugins.push(p.name.clone()),
            Some(o) => d.changed_plugins.extend(PluginChange::between(o, p)),
        }
    }
    for o in old {
        if !new.iter().any(|p| p.name == o.name) {
            d.removed_plugins.push(o.name.clone());
        }
    }
}

/// A duration as its key in the file shows it.
fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// `[server]`: the webhook listener is bound once.
fn server_changes(r: &mut Vec<String>, a: &Server, b: &Server) {
    if a.listen != b.listen {
        r.push(format!(
            "server.listen changed from {} to {}: restart to apply",
            a.listen, b.listen
        ));
    }
    note(r, "server.webhook_path", &a.webhook_path, &b.webhook_path);
    let (x, y) = (a.max_body_bytes, b.max_body_bytes);
    note(r, "server.max_body_bytes", &x, &y);
    let (x, y) = (a.timestamp_window.as_secs(), b.timestamp_window.as_secs());
    note(r, "server.timestamp_window_secs", &x, &y);
    let (x, y) = (a.max_connections, b.max_connections);
    note(r, "server.max_connections", &x, &y);
    let (x, y) = (a.max_connections_per_peer, b.max_connections_per_peer);
    note(r, "server.max_connections_per_peer", &x, &y);
    let (x, y) = (ms(a.header_timeout), ms(b.header_timeout));
    note(r, "server.header_timeout_ms", &x, &y);
    let (x, y) = (ms(a.body_timeout), ms(b.body_timeout));
    note(r, "server.body_timeout_ms", &x, &y);
    note(r, "server.tls", &a.tls, &b.tls);
    note(r, "server.zoom_app", &a.zoom_app, &b.zoom_app);
}

/// `[admin]`: its listener and token are set up once.
fn admin_changes(r: &mut Vec<String>, a: &Admin, b: &Admin) {
    note(r, "admin.enabled", &a.enabled, &b.enabled);
    note(r, "admin.listen", &a.listen, &b.listen);
    note(r, "admin.token_env", &a.token_env, &b.token_env);
    note_quiet(r, "the admin token", &a.token, &b.token);
    let (x, y) = (ms(a.reload_min_interval), ms(b.reload_min_interval));
    note(r, "admin.reload_min_interval_ms", &x, &y);
    note(r, "admin.tls", &a.tls, &b.tls);
}

/// `[zoom]`: credentials are read once. Secrets are named, never shown.
fn zoom_changes(r: &mut Vec<String>, a: &Zoom, b: &Zoom) {
    note(r, "zoom.client_id_env", &a.client_id_env, &b.client_id_env);
    let (x, y) = (&a.client_secret_env, &b.client_secret_env);
    note(r, "zoom.client_secret_env", x, y);
    let (x, y) = (&a.webhook_secret_env, &b.webhook_secret_env);
    note(r, "zoom.webhook_secret_env", x, y);
    note_quiet(r, "the Zoom client id", &a.client_id, &b.client_id);
    let (x, y) = (&a.client_secret, &b.client_secret);
    note_quiet(r, "the Zoom client secret", x, y);
    let (x, y) = (&a.webhook_secret, &b.webhook_secret);
    note_quiet(r, "the webhook secret token", x, y);
    note(r, "zoom.ca_file", &a.ca_file, &b.ca_file);
    zoom_rest_changes(r, a, b);
}

/// `[zoom]` REST API and event WebSocket settings: the REST client and the event WebSocket
/// are set up once.
fn zoom_rest_changes(r: &mut Vec<String>, a: &Zoom, b: &Zoom) {
    note(r, "zoom.api_base_url", &a.api_base_url, &b.api_base_url);
    note(
        r,
        "zoom.oauth_base_url",
        &a.oauth_base_url,
        &b.oauth_base_url,
    );
    let keys = [
        "zoom.account_id_env",
        "zoom.oauth_client_id_env",
        "zoom.oauth_client_secret_env",
    ];
    for (key, (x, y)) in keys.into_iter().zip(a.rest_env.iter().zip(&b.rest_env)) {
        note(r, key, x, y);
    }
    note_quiet(
        r,
        "the REST API's Server-to-Server OAuth credentials",
        &a.rest,
        &b.rest,
    );
    let id = |z: &Zoom| z.event_ws.as_ref().map(|e| e.subscription_id.clone());
    note(r, "zoom.event_subscription_id", &id(a), &id(b));
    let url = |z: &Zoom| z.event_ws.as_ref().map(|e| e.url.clone());
    note(r, "zoom.event_ws_url", &url(a), &url(b));
}

/// `[rtms]` connection, reconnection, keep-alive and webhook-wait numbers: the RTMS client
/// is built once.
fn rtms_connection_changes(r: &mut Vec<String>, a: &Rtms, b: &Rtms) {
    let (x, y) = (ms(a.connection_timeout), ms(b.connection_timeout));
    note(r, "rtms.connection_timeout_ms", &x, &y);
    let (x, y) = (a.connection_max_attempts, b.connection_max_attempts);
    note(r, "rtms.connection_max_attempts", &x, &y);
    let (x, y) = (ms(a.connection_retry_delay), ms(b.connection_retry_delay));
    note(r, "rtms.connection_retry_delay_ms", &x, &y);
    let (x, y) = (a.reconnect_max_attempts, b.reconnect_max_attempts);
    note(r, "rtms.reconnect_max_attempts", &x, &y);
    let (x, y) = (ms(a.reconnect_base_delay), ms(b.reconnect_base_delay));
    note(r, "rtms.reconnect_base_delay_ms", &x, &y);
    let (x, y) = (ms(a.reconnect_max_delay), ms(b.reconnect_max_delay));
    note(r, "rtms.reconnect_max_delay_ms", &x, &y);
    let (x, y) = (a.reconnect_jitter_percent, b.reconnect_jitter_percent);
    note(r, "rtms.reconnect_jitter_percent", &x, &y);
    let (x, y) = (ms(a.reconnect_healthy_after), ms(b.reconnect_healthy_after));
    note(r, "rtms.reconnect_healthy_after_ms", &x, &y);
    let (x, y) = (a.reconnect_flap_max, b.reconnect_flap_max);
    note(r, "rtms.reconnect_flap_max", &x, &y);
    let (x, y) = (ms(a.reconnect_flap_window), ms(b.reconnect_flap_window));
    note(r, "rtms.reconnect_flap_window_ms", &x, &y);
    let (x, y) = (ms(a.stop_drain), ms(b.stop_drain));
    note(r, "rtms.stop_drain_ms", &x, &y);
    let (x, y) = (ms(a.close_timeout), ms(b.close_timeout));
    note(r, "rtms.close_timeout_ms", &x, &y);
    let (x, y) = (ms(a.keepalive_interval), ms(b.keepalive_interval));
    note(r, "rtms.keepalive_interval_ms", &x, &y);
    let (x, y) = (ms(a.keepalive_timeout), ms(b.keepalive_timeout));
    note(r, "rtms.keepalive_timeout_ms", &x, &y);
    let (x, y) = (ms(a.webhook_wait_timeout), ms(b.webhook_wait_timeout));
    note(r, "rtms.webhook_wait_timeout_ms", &x, &y);
}

/// `[rtms]` settings of what is asked from Zoom and who may be reached: sent in each
/// stream's handshake, from the settings the client was built with.
fn rtms_request_changes(r: &mut Vec<String>, a: &Rtms, b: &Rtms) {
    if a.media != b.media {
        r.push(format!(
            "rtms.media changed from {} to {}: restart to apply",
            a.media, b.media
        ));
    }
    note(r, "rtms.socket_mode", &a.socket_mode, &b.socket_mode);
    note(r, "rtms.buffer_data", &a.buffer_data, &b.buffer_data);
    note(r, "rtms.ws_ping", &a.ws_ping, &b.ws_ping);
    note(r, "rtms.events", &a.events, &b.events);
    note(r, "rtms.allowed_hosts", &a.allowed_hosts, &b.allowed_hosts);
    note(r, "rtms.proxy", &a.proxy, &b.proxy);
    let (x, y) = (a.allow_insecure_ws, b.allow_insecure_ws);
    note(r, "rtms.allow_insecure_ws", &x, &y);
    note(r, "rtms.max_streams", &a.max_streams, &b.max_streams);
    note_quiet(
        r,
        "[rtms.video] follow, users and max",
        &a.video_following,
        &b.video_following,
    );
    note_quiet(
        r,
        "the media parameters ([rtms.audio] / [rtms.video] / [rtms.deskshare] / [rtms.transcript])",
        &a.media_params,
        &b.media_params,
    );
}

/// `[runtime]`: the engine, the dead-letter store and the reload watcher are set up once.
fn runtime_changes(r: &mut Vec<String>, a: &Runtime, b: &Runtime) {
    note(r, "runtime.cache_dir", &a.cache_dir, &b.cache_dir);
    note(
        r,
        "runtime.epoch_tick_ms",
        &ms(a.epoch_tick),
        &ms(b.epoch_tick),
    );
    let (x, y) = (&a.dead_letter_dir, &b.dead_letter_dir);
    note(r, "runtime.dead_letter_dir", x, y);
    let (x, y) = (a.dead_letter_max_bytes >> 20, b.dead_letter_max_bytes >> 20);
    note(r, "runtime.dead_letter_max_mb", &x, &y);
    let (x, y) = (a.dead_letter_files, b.dead_letter_files);
    note(r, "runtime.dead_letter_files", &x, &y);
    let (x, y) = (a.output_queue_bytes >> 20, b.output_queue_bytes >> 20);
    note(r, "runtime.output_queue_mb", &x, &y);
    note(
        r,
        "runtime.tap_mb",
        &(a.tap_bytes >> 20),
        &(b.tap_bytes >> 20),
    );
    let (x, y) = (a.plugin_open_files, b.plugin_open_files);
    note(r, "runtime.plugin_open_files", &x, &y);
    let (x, y) = (pool_mode(&a.pool), pool_mode(&b.pool));
    note(r, "runtime.pool", &x, &y);
    note(
        r,
        "runtime.pool_instances",
        &a.pool_instances,
        &b.pool_instances,
    );
    let (x, y) = (ms(a.shutdown_grace), ms(b.shutdown_grace));
    note(r, "runtime.shutdown_grace_ms", &x, &y);
    note(r, "runtime.journal_dir", &a.journal_dir, &b.journal_dir);
    let (x, y) = (ms(a.journal_grace), ms(b.journal_grace));
    note(r, "runtime.journal_grace_ms", &x, &y);
    let (x, y) = (a.close_streams_on_shutdown, b.close_streams_on_shutdown);
    note(r, "runtime.close_streams_on_shutdown", &x, &y);
    note(r, "runtime.threads", &a.threads, &b.threads);
    note(r, "runtime.pin_threads", &a.pin_threads, &b.pin_threads);
    note(r, "runtime.reload.watch", &a.reload.watch, &b.reload.watch);
    let (x, y) = (ms(a.reload.debounce), ms(b.reload.debounce));
    note(r, "runtime.reload.debounce_ms", &x, &y);
}

#[cfg(test)]
mod tests;
