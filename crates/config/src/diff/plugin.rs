//! How one plugin changed: each setting that differs, and what applying it takes.
//!
//! [`PluginChange::between`] is the one place that compares two versions of a plugin; it
//! destructures [`Plugin`] and its parts whole, so a setting added to the model does not
//! compile until it is classified here.

use std::fmt;

use crate::model::{Batch, Limits, Plugin, PluginName, Queue};

/// What applying a changed setting takes, from least to most: the order is the severity, so
/// the most a plugin's changes take is their maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Apply {
    /// Applied to live sessions as they run, keeping the instance: the worker takes the new
    /// setting at the reload's swap marker (routing, queue, batching, block timeout, byte
    /// rates, restart policy).
    InBand,
    /// Needs a new instance: the old one ends the session with `reload` at the swap marker
    /// and a new one, built with the new code, config, limits or grants, resumes it.
    NewInstance,
    /// Cannot be applied to a running host: reported until the process restarts. No plugin
    /// setting needs this today; it is here so the host's handling is complete when one does.
    RestartRequired,
}

/// One plugin setting, as pipeline.toml groups them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PluginSetting {
    /// `component`: the code, a new file to compile.
    Component,
    /// `enabled`: the plugin starts on, or drains from, live sessions.
    Enabled,
    /// `media`: which frames are routed to it.
    Media,
    /// `products`, `meeting_ids`, `users`: which sessions it serves.
    Filter,
    /// `[[plugin.dir]]`: the granted directories, their modes and quotas.
    Grants,
    /// `[plugin.queue] capacity`.
    QueueCapacity,
    /// `[plugin.queue] on_full`: which kinds may be dropped to make room.
    OnFull,
    /// `[plugin.queue] block_timeout_ms`.
    BlockTimeout,
    /// `[plugin.batch] max_frames`.
    BatchMaxFrames,
    /// `[plugin.batch] max_wait_ms`.
    BatchMaxWait,
    /// `[plugin.limits] memory_mb`.
    MemoryLimit,
    /// `[plugin.limits] call_timeout_ms`.
    CallTimeout,
    /// `[plugin.limits] log_bytes_per_sec`.
    LogRate,
    /// `[plugin.limits] emit_bytes_per_sec`.
    EmitRate,
    /// `[plugin.limits] max_resources`, `max_open_files`, `max_inodes`.
    ResourceLimits,
    /// `[plugin.restart]`: backoff, circuit breaker and rollback.
    RestartPolicy,
    /// `[plugin.config]`: what `init` receives.
    Config,
    /// `secrets`: the names granted, or a value in the environment.
    Secrets,
    /// `[plugin.state]`: the bounds of each state scope.
    StateLimits,
    /// `[plugin.limits] units_per_session`.
    UnitsCap,
    /// `[plugin.net]`: the URLs the plugin may call and the limits on its requests.
    Net,
}

impl PluginSetting {
    /// Every setting, in the order [`PluginChange::settings`] lists them.
    pub const ALL: [PluginSetting; 21] = [
        PluginSetting::Component,
        PluginSetting::Enabled,
        PluginSetting::Media,
        PluginSetting::Filter,
        PluginSetting::Grants,
        PluginSetting::QueueCapacity,
        PluginSetting::OnFull,
        PluginSetting::BlockTimeout,
        PluginSetting::BatchMaxFrames,
        PluginSetting::BatchMaxWait,
        PluginSetting::MemoryLimit,
        PluginSetting::CallTimeout,
        PluginSetting::LogRate,
        PluginSetting::EmitRate,
        PluginSetting::ResourceLimits,
        PluginSetting::RestartPolicy,
        PluginSetting::Config,
        PluginSetting::Secrets,
        PluginSetting::StateLimits,
        PluginSetting::UnitsCap,
        PluginSetting::Net,
    ];

    /// What applying a change of this setting takes (see the module documentation of
    /// [`crate::diff`] for the reasons).
    pub const fn apply(self) -> Apply {
        match self {
            PluginSetting::Component => Apply::NewInstance,
            PluginSetting::Enabled => Apply::InBand,
            PluginSetting::Media => Apply::InBand,
            PluginSetting::Filter => Apply::InBand,
            PluginSetting::Grants => Apply::NewInstance,
            PluginSetting::QueueCapacity => Apply::InBand,
            PluginSetting::OnFull => Apply::InBand,
            PluginSetting::BlockTimeout => Apply::InBand,
            PluginSetting::BatchMaxFrames => Apply::InBand,
            PluginSetting::BatchMaxWait => Apply::InBand,
            PluginSetting::MemoryLimit => Apply::NewInstance,
            PluginSetting::CallTimeout => Apply::NewInstance,
            PluginSetting::LogRate => Apply::InBand,
            PluginSetting::EmitRate => Apply::InBand,
            PluginSetting::ResourceLimits => Apply::NewInstance,
            PluginSetting::RestartPolicy => Apply::InBand,
            PluginSetting::Config => Apply::NewInstance,
            PluginSetting::Secrets => Apply::NewInstance,
            PluginSetting::StateLimits => Apply::NewInstance,
            PluginSetting::UnitsCap => Apply::NewInstance,
            PluginSetting::Net => Apply::NewInstance,
        }
    }

    /// The key in pipeline.toml, for messages: `plugin.queue.block_timeout_ms`.
    pub const fn key(self) -> &'static str {
        match self {
            PluginSetting::Component => "plugin.component",
            PluginSetting::Enabled => "plugin.enabled",
            PluginSetting::Media => "plugin.media",
            PluginSetting::Filter => "plugin.products / meeting_ids / users",
            PluginSetting::Grants => "[[plugin.dir]]",
            PluginSetting::QueueCapacity => "plugin.queue.capacity",
            PluginSetting::OnFull => "plugin.queue.on_full",
            PluginSetting::BlockTimeout => "plugin.queue.block_timeout_ms",
            PluginSetting::BatchMaxFrames => "plugin.batch.max_frames",
            PluginSetting::BatchMaxWait => "plugin.batch.max_wait_ms",
            PluginSetting::MemoryLimit => "plugin.limits.memory_mb",
            PluginSetting::CallTimeout => "plugin.limits.call_timeout_ms",
            PluginSetting::LogRate => "plugin.limits.log_bytes_per_sec",
            PluginSetting::EmitRate => "plugin.limits.emit_bytes_per_sec",
            PluginSetting::ResourceLimits => {
                "plugin.limits.max_resources / max_open_files / max_inodes"
            }
            PluginSetting::RestartPolicy => "[plugin.restart]",
            PluginSetting::Config => "[plugin.config]",
            PluginSetting::Secrets => "plugin.secrets",
            PluginSetting::StateLimits => "[plugin.state]",
            PluginSetting::UnitsCap => "plugin.limits.units_per_session",
            PluginSetting::Net => "[plugin.net]",
        }
    }
}

impl fmt::Display for PluginSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// How one plugin changed.
///
/// `settings` is the detail the host reloads from; the four flags summarize it for logs
/// and older callers.
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
    /// Every setting that differs, in [`PluginSetting::ALL`] order; never empty.
    pub settings: Vec<PluginSetting>,
}

impl PluginChange {
    /// How `new` differs from `old` (the same plugin, by name), or `None` when it does not.
    /// Where the plugin is written in the file is not a setting: moving it changes nothing.
    pub fn between(old: &Plugin, new: &Plugin) -> Option<Self> {
        let settings = changed_settings(old, new);
        if settings.is_empty() {
            return None;
        }
        let any = |of: &[PluginSetting]| settings.iter().any(|s| of.contains(s));
        use PluginSetting as S;
        Some(Self {
            name: new.name.clone(),
            component: any(&[S::Component]),
            config: any(&[S::Config]),
            route: any(&[S::Media, S::Filter, S::Enabled]),
            limits: any(&[
                S::Grants,
                S::QueueCapacity,
                S::OnFull,
                S::BlockTimeout,
                S::BatchMaxFrames,
                S::BatchMaxWait,
                S::MemoryLimit,
                S::CallTimeout,
                S::LogRate,
                S::EmitRate,
                S::ResourceLimits,
                S::RestartPolicy,
                S::Net,
            ]),
            settings,
        })
    }

    /// What applying every changed setting takes: the most any of them takes.
    pub fn apply(&self) -> Apply {
        self.settings
            .iter()
            .map(|s| s.apply())
            .max()
            .unwrap_or(Apply::InBand)
    }

    /// Whether `setting` changed.
    pub fn changed(&self, setting: PluginSetting) -> bool {
        self.settings.contains(&setting)
    }

    /// The changed settings that `apply` takes.
    pub fn settings_applied(&self, apply: Apply) -> impl Iterator<Item = PluginSetting> + '_ {
        self.settings
            .iter()
            .copied()
            .filter(move |s| s.apply() == apply)
    }
}

/// Every setting that differs between two versions of a plugin, in [`PluginSetting::ALL`]
/// order. Each part is destructured whole so a new field must be classified here.
fn changed_settings(old: &Plugin, new: &Plugin) -> Vec<PluginSetting> {
    use PluginSetting as S;
    let Plugin {
        name: _,
        component,
        enabled,
        media,
        filter,
        dirs,
        queue,
        batch,
        limits,
        restart,
        secrets,
        state,
        net,
        config,
        config_at: _,
    } = new;
    let Queue {
        capacity,
        on_full,
        block_timeout,
    } = queue;
    let Batch {
        max_frames,
        max_wait,
    } = batch;
    let Limits {
        memory_mb,
        call_timeout,
        log_bytes_per_sec,
        emit_bytes_per_sec,
        units_per_session,
        max_resources,
        max_open_files,
        max_inodes,
    } = limits;
    let differs = [
        (S::Component, old.component != *component),
        (S::Enabled, old.enabled != *enabled),
        (S::Media, old.media != *media),
        (S::Filter, old.filter != *filter),
        (S::Grants, old.dirs != *dirs),
        (S::QueueCapacity, old.queue.capacity != *capacity),
        (S::OnFull, old.queue.on_full != *on_full),
        (S::BlockTimeout, old.queue.block_timeout != *block_timeout),
        (S::BatchMaxFrames, old.batch.max_frames != *max_frames),
        (S::BatchMaxWait, old.batch.max_wait != *max_wait),
        (S::MemoryLimit, old.limits.memory_mb != *memory_mb),
        (S::CallTimeout, old.limits.call_timeout != *call_timeout),
        (
            S::LogRate,
            old.limits.log_bytes_per_sec != *log_bytes_per_sec,
        ),
        (
            S::EmitRate,
            old.limits.emit_bytes_per_sec != *emit_bytes_per_sec,
        ),
        (
            S::ResourceLimits,
            (
                old.limits.max_resources,
                old.limits.max_open_files,
                old.limits.max_inodes,
            ) != (*max_resources, *max_open_files, *max_inodes),
        ),
        (S::RestartPolicy, old.restart != *restart),
        (S::Config, old.config != *config),
        (S::Secrets, old.secrets != *secrets),
        (S::StateLimits, old.state != *state),
        (
            S::UnitsCap,
            old.limits.units_per_session != *units_per_session,
        ),
        (S::Net, old.net != *net),
    ];
    differs
        .into_iter()
        .filter_map(|(s, changed)| changed.then_some(s))
        .collect()
}
