//! What changed between two pipelines, for hot reload.
//!
//! Plugins and sinks can change while the host runs; everything else (the server, Zoom
//! credentials, the `[rtms]` settings, the runtime) needs a restart, and the diff says so in
//! words the host logs as they are. A component whose bytes changed but whose path did not is
//! not visible here: the reload code watches the files themselves.

use std::fmt::Debug;

use crate::model::{Pipeline, Plugin, PluginName};

/// The difference between a running pipeline and a new version of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineDiff {
    /// Plugins only in the new pipeline: start them on live sessions.
    pub added_plugins: Vec<PluginName>,
    /// Plugins only in the old pipeline: drain them.
    pub removed_plugins: Vec<PluginName>,
    /// Plugins in both whose settings differ.
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
}

/// How one plugin changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginChange {
    pub name: PluginName,
    /// The component path changed: compile the new file.
    pub component: bool,
    /// `[plugin.config]` changed: a new instance must `init` with it.
    pub config: bool,
    /// What it receives changed: media, filters, or `enabled`.
    pub route: bool,
    /// Queue, batch, limits, restart policy or granted directories changed.
    pub limits: bool,
}

impl PluginChange {
    fn between(old: &Plugin, new: &Plugin) -> Option<Self> {
        let change = Self {
            name: new.name.clone(),
            component: old.component != new.component,
            config: old.config != new.config,
            route: old.media != new.media || old.filter != new.filter || old.enabled != new.enabled,
            limits: old.queue != new.queue
                || old.batch != new.batch
                || old.limits != new.limits
                || old.restart != new.restart
                || old.dirs != new.dirs,
        };
        (change.component || change.config || change.route || change.limits).then_some(change)
    }
}

fn note<T: PartialEq + Debug>(out: &mut Vec<String>, key: &str, old: &T, new: &T) {
    if old != new {
        out.push(format!(
            "{key} changed from {old:?} to {new:?}: restart to apply"
        ));
    }
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
        for p in &new.plugins {
            match self.plugins.iter().find(|o| o.name == p.name) {
                None => d.added_plugins.push(p.name.clone()),
                Some(old) => d.changed_plugins.extend(PluginChange::between(old, p)),
            }
        }
        for o in &self.plugins {
            if !new.plugins.iter().any(|p| p.name == o.name) {
                d.removed_plugins.push(o.name.clone());
            }
        }
        d.sinks_changed = self.sinks != new.sinks;

        let r = &mut d.restart_required;
        let (a, b) = (&self.server, &new.server);
        if a.listen != b.listen {
            r.push(format!(
                "server.listen changed from {} to {}: restart to apply",
                a.listen, b.listen
            ));
        }
        note(r, "server.webhook_path", &a.webhook_path, &b.webhook_path);
        note(
            r,
            "server.max_body_bytes",
            &a.max_body_bytes,
            &b.max_body_bytes,
        );
        note(
            r,
            "server.timestamp_window_secs",
            &a.timestamp_window.as_secs(),
            &b.timestamp_window.as_secs(),
        );
        note(
            r,
            "server.max_connections",
            &a.max_connections,
            &b.max_connections,
        );
        note(
            r,
            "server.header_timeout_ms",
            &a.header_timeout.as_millis(),
            &b.header_timeout.as_millis(),
        );
        note(
            r,
            "server.body_timeout_ms",
            &a.body_timeout.as_millis(),
            &b.body_timeout.as_millis(),
        );
        note(r, "server.tls", &a.tls, &b.tls);

        let (a, b) = (&self.admin, &new.admin);
        note(r, "admin.enabled", &a.enabled, &b.enabled);
        note(r, "admin.listen", &a.listen, &b.listen);
        note(r, "admin.token_env", &a.token_env, &b.token_env);
        note_quiet(r, "the admin token", &a.token, &b.token);
        note(
            r,
            "admin.reload_min_interval_ms",
            &a.reload_min_interval.as_millis(),
            &b.reload_min_interval.as_millis(),
        );

        let (a, b) = (&self.zoom, &new.zoom);
        note(r, "zoom.client_id_env", &a.client_id_env, &b.client_id_env);
        note(
            r,
            "zoom.client_secret_env",
            &a.client_secret_env,
            &b.client_secret_env,
        );
        note(
            r,
            "zoom.webhook_secret_env",
            &a.webhook_secret_env,
            &b.webhook_secret_env,
        );
        note_quiet(r, "the Zoom client id", &a.client_id, &b.client_id);
        note_quiet(
            r,
            "the Zoom client secret",
            &a.client_secret,
            &b.client_secret,
        );
        note_quiet(
            r,
            "the webhook secret token",
            &a.webhook_secret,
            &b.webhook_secret,
        );
        note(r, "zoom.ca_file", &a.ca_file, &b.ca_file);

        let (a, b) = (&self.rtms, &new.rtms);
        let ms = |d: std::time::Duration| d.as_millis();
        note(
            r,
            "rtms.connection_timeout_ms",
            &ms(a.connection_timeout),
            &ms(b.connection_timeout),
        );
        note(
            r,
            "rtms.connection_max_attempts",
            &a.connection_max_attempts,
            &b.connection_max_attempts,
        );
        note(
            r,
            "rtms.connection_retry_delay_ms",
            &ms(a.connection_retry_delay),
            &ms(b.connection_retry_delay),
        );
        note(
            r,
            "rtms.reconnect_max_attempts",
            &a.reconnect_max_attempts,
            &b.reconnect_max_attempts,
        );
        note(
            r,
            "rtms.reconnect_base_delay_ms",
            &ms(a.reconnect_base_delay),
            &ms(b.reconnect_base_delay),
        );
        note(
            r,
            "rtms.reconnect_max_delay_ms",
            &ms(a.reconnect_max_delay),
            &ms(b.reconnect_max_delay),
        );
        note(
            r,
            "rtms.reconnect_jitter_percent",
            &a.reconnect_jitter_percent,
            &b.reconnect_jitter_percent,
        );
        note(
            r,
            "rtms.reconnect_healthy_after_ms",
            &ms(a.reconnect_healthy_after),
            &ms(b.reconnect_healthy_after),
        );
        note(
            r,
            "rtms.reconnect_flap_max",
            &a.reconnect_flap_max,
            &b.reconnect_flap_max,
        );
        note(
            r,
            "rtms.reconnect_flap_window_ms",
            &ms(a.reconnect_flap_window),
            &ms(b.reconnect_flap_window),
        );
        note(
            r,
            "rtms.stop_drain_ms",
            &ms(a.stop_drain),
            &ms(b.stop_drain),
        );
        note(
            r,
            "rtms.keepalive_interval_ms",
            &ms(a.keepalive_interval),
            &ms(b.keepalive_interval),
        );
        note(
            r,
            "rtms.keepalive_timeout_ms",
            &ms(a.keepalive_timeout),
            &ms(b.keepalive_timeout),
        );
        note(
            r,
            "rtms.webhook_wait_timeout_ms",
            &ms(a.webhook_wait_timeout),
            &ms(b.webhook_wait_timeout),
        );
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
        note(
            r,
            "rtms.allow_insecure_ws",
            &a.allow_insecure_ws,
            &b.allow_insecure_ws,
        );
        note(r, "rtms.max_streams", &a.max_streams, &b.max_streams);
        note_quiet(
            r,
            "the media parameters ([rtms.audio] / [rtms.video] / [rtms.deskshare] / [rtms.transcript])",
            &a.media_params,
            &b.media_params,
        );

        let (a, b) = (&self.runtime, &new.runtime);
        note(r, "runtime.cache_dir", &a.cache_dir, &b.cache_dir);
        note(
            r,
            "runtime.epoch_tick_ms",
            &ms(a.epoch_tick),
            &ms(b.epoch_tick),
        );
        note(
            r,
            "runtime.dead_letter_dir",
            &a.dead_letter_dir,
            &b.dead_letter_dir,
        );
        note(
            r,
            "runtime.dead_letter_max_mb",
            &(a.dead_letter_max_bytes >> 20),
            &(b.dead_letter_max_bytes >> 20),
        );
        note(
            r,
            "runtime.dead_letter_files",
            &a.dead_letter_files,
            &b.dead_letter_files,
        );
        note(
            r,
            "runtime.shutdown_grace_ms",
            &ms(a.shutdown_grace),
            &ms(b.shutdown_grace),
        );
        note(r, "runtime.reload.watch", &a.reload.watch, &b.reload.watch);
        note(
            r,
            "runtime.reload.debounce_ms",
            &ms(a.reload.debounce),
            &ms(b.reload.debounce),
        );
        d
    }
}
