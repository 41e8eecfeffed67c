//! What a reload changed, in words: every plugin setting with its old and new value and how
//! it was applied, for the reload's log line and its answer.
//!
//! Whether a setting changed is decided by `rtms_config::PipelineDiff` alone; this module
//! only reads the values of what it reports, and adds the one change a pipeline file cannot
//! show: a component file whose bytes changed under the same path.

use std::fmt;

use rtms_config::{Apply, Pipeline, PipelineDiff, Plugin, PluginSetting};
use serde_json::{Value, json};

use crate::dataplane::routes::RouteTable;

/// One plugin setting a reload changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingChange {
    pub plugin: String,
    pub setting: PluginSetting,
    /// The value before, as pipeline.toml writes it (a component with its content hash).
    pub from: String,
    pub to: String,
}

impl SettingChange {
    /// How it was applied: in band, with a new instance, or not until a restart.
    pub fn apply(&self) -> Apply {
        self.setting.apply()
    }

    /// [`Self::apply`] in words.
    pub fn applied(&self) -> &'static str {
        match self.apply() {
            Apply::InBand => "in band",
            Apply::NewInstance => "new instance",
            Apply::RestartRequired => "restart required",
        }
    }

    /// For the admin answer.
    pub fn json(&self) -> Value {
        json!({"plugin": self.plugin, "setting": self.setting.key(), "from": self.from,
               "to": self.to, "applied": self.applied()})
    }
}

impl fmt::Display for SettingChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {} -> {} ({})",
            self.plugin,
            self.setting.key(),
            self.from,
            self.to,
            self.applied()
        )
    }
}

/// Every plugin setting `diff` reports as changed from `old` to `new`, with its values, in
/// the new file's order; then every component whose bytes changed under the same path
/// (`old_table` and `new_table` hold the hashes).
pub fn setting_changes(
    old: &Pipeline,
    new: &Pipeline,
    diff: &PipelineDiff,
    old_table: &RouteTable,
    new_table: &RouteTable,
) -> Vec<SettingChange> {
    let mut out = Vec::new();
    for c in &diff.changed_plugins {
        let (Some(o), Some(n)) = (find(old, &c.name), find(new, &c.name)) else {
            continue;
        };
        for &setting in &c.settings {
            out.push(SettingChange {
                plugin: c.name.to_string(),
                setting,
                from: value(o, setting, old_table),
                to: value(n, setting, new_table),
            });
        }
    }
    for e in &new_table.plugins {
        let Some(o) = old_table.get(&e.name) else {
            continue;
        };
        let path_changed = diff
            .plugin_change(&e.name)
            .is_some_and(|c| c.changed(PluginSetting::Component));
        if o.code.hash != e.code.hash && !path_changed {
            out.push(SettingChange {
                plugin: e.name.to_string(),
                setting: PluginSetting::Component,
                from: format!("{} ({})", o.code.path.display(), o.code.short_hash()),
                to: format!("{} ({})", e.code.path.display(), e.code.short_hash()),
            });
        }
    }
    out
}

fn find<'a>(p: &'a Pipeline, name: &rtms_config::PluginName) -> Option<&'a Plugin> {
    p.plugins.iter().find(|x| x.name == *name)
}

/// The value of one setting of `p`, as an operator reads it. `[plugin.config]` is shown by
/// its keys and a digest, never its values (they may hold credentials).
fn value(p: &Plugin, setting: PluginSetting, table: &RouteTable) -> String {
    use PluginSetting as S;
    let ms = |d: std::time::Duration| format!("{} ms", d.as_millis());
    match setting {
        S::Component => match table.get(p.name.as_str()) {
            Some(e) => format!("{} ({})", p.component.display(), e.code.short_hash()),
            None => p.component.display().to_string(),
        },
        S::Enabled => p.enabled.to_string(),
        S::Media => p.media.to_string(),
        S::Filter => filter_text(p),
        S::Grants => grants_text(p),
        S::QueueCapacity => p.queue.capacity.to_string(),
        S::OnFull => p.queue.on_full.describe(p.media),
        S::BlockTimeout => ms(p.queue.block_timeout),
        S::BatchMaxFrames => p.batch.max_frames.to_string(),
        S::BatchMaxWait => ms(p.batch.max_wait),
        S::MemoryLimit => format!("{} MiB", p.limits.memory_mb),
        S::CallTimeout => ms(p.limits.call_timeout),
        S::LogRate => format!("{} bytes/s", p.limits.log_bytes_per_sec),
        S::EmitRate => format!("{} bytes/s", p.limits.emit_bytes_per_sec),
        S::RestartPolicy => {
            let r = &p.restart;
            format!(
                "base_delay_ms={} max_delay_ms={} healthy_reset_ms={} max_failures={} window_ms={} rollback_traps={} rollback_window_ms={}",
                r.base_delay.as_millis(),
                r.max_delay.as_millis(),
                r.healthy_reset.as_millis(),
                r.max_failures,
                r.window.as_millis(),
                r.rollback_traps,
                r.rollback_window.as_millis()
            )
        }
        S::Config => config_text(p),
        // Names only: a secret's value is never shown.
        S::Secrets => {
            let names: Vec<&str> = p.secrets.iter().map(|s| s.name.as_str()).collect();
            format!("{names:?}")
        }
        S::StateLimits => format!(
            "max_keys={} max_bytes={}",
            p.state.max_keys, p.state.max_bytes
        ),
        S::ResourceLimits => format!(
            "max_resources={} max_open_files={} max_inodes={}",
            p.limits.max_resources, p.limits.max_open_files, p.limits.max_inodes
        ),
        S::Net => {
            let n = &p.net;
            let urls: Vec<&str> = n.http.iter().map(|r| r.text.as_str()).collect();
            format!(
                "http={urls:?} allow_private={} connect_timeout_ms={} first_byte_timeout_ms={} between_bytes_timeout_ms={} max_response_bytes={} max_concurrent={} requests_per_minute={}",
                n.allow_private,
                n.connect_timeout.as_millis(),
                n.first_byte_timeout.as_millis(),
                n.between_bytes_timeout.as_millis(),
                n.max_response_bytes,
                n.max_concurrent,
                n.requests_per_minute
            )
        }
        S::UnitsCap => match p.limits.units_per_session {
            Some(n) => n.to_string(),
            None => "none".to_owned(),
        },
    }
}

fn filter_text(p: &Plugin) -> String {
    let f = &p.filter;
    let mut parts = Vec::new();
    if let Some(v) = &f.products {
        parts.push(format!("products={v:?}"));
    }
    if let Some(v) = &f.meeting_ids {
        parts.push(format!("meeting_ids={v:?}"));
    }
    if let Some(v) = &f.users {
        parts.push(format!("users={v:?}"));
    }
    if parts.is_empty() {
        "every session".to_owned()
    } else {
        parts.join(" ")
    }
}

fn grants_text(p: &Plugin) -> String {
    if p.dirs.is_empty() {
        return "none".to_owned();
    }
    let each: Vec<String> = p
        .dirs
        .iter()
        .map(|d| {
            let mode = if d.read_only { "ro" } else { "rw" };
            match d.quota_mb {
                Some(q) => format!("{} at {} ({mode}, {q} MiB)", d.host.display(), d.guest),
                None => format!("{} at {} ({mode})", d.host.display(), d.guest),
            }
        })
        .collect();
    each.join(", ")
}

fn config_text(p: &Plugin) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (k, v) in &p.config {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    let keys: Vec<&str> = p.config.iter().map(|(k, _)| k.as_str()).collect();
    let digest = hex::encode(h.finalize());
    format!("keys [{}], sha256 {}", keys.join(", "), &digest[..12])
}
