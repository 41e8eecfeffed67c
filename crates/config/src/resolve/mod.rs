//! From [`PipelineFile`] to [`Pipeline`]: defaults, environment overrides, range checks,
//! path resolution and cross-checks (names unique, plugins' media requested, sinks' plugins
//! defined).
//!
//! Each default is a named `const fn default_*()`; each check returns a [`ConfigError`] that
//! points at the value and says the allowed range or the fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rtms_proto::MediaParams;
use rtms_proto::params::{
    AudioParams, ChatParams, TranscriptParams, VideoParams, codec, content_type, data_opt,
    sample_rate,
};
use toml::Spanned;

use crate::LoadOptions;
use crate::env::Env;
use crate::error::{ConfigError, Source, suggest};
use crate::flatten::flatten_config;
use crate::model::*;
use crate::pool::{PoolNeed, PoolPlan};
use crate::raw::*;

mod cluster;
mod defaults;
mod plugin;
mod rtms;
mod runtime;
mod server;
mod sink;
mod url;
mod video;
mod zoom;

pub use defaults::*;
use url::{has_credentials, host_port, listen_port_problem, url_port_problem};

const MAX_MS: u64 = 86_400_000;

/// Where a number came from, so an error can point at it.
#[derive(Clone, Debug)]
enum Origin {
    File(Range<usize>),
    Env { var: &'static str, value: String },
    Default,
}

/// A number and its origin.
#[derive(Clone, Debug)]
struct Value {
    n: u64,
    origin: Origin,
}

pub(crate) struct Resolver<'a> {
    pub src: Source<'a>,
    pub env: &'a dyn Env,
    /// The pipeline file's folder, absolute.
    pub dir: PathBuf,
    pub opts: LoadOptions,
    pub warnings: Vec<String>,
}

/// The value, or `None` with the error added to `errors`.
fn keep<T>(errors: &mut Vec<ConfigError>, r: Result<T, ConfigError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Removes `.` and resolves `..` lexically, so messages show clean paths.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn range_message(n: u64, min: u64, max: u64) -> Option<String> {
    if n < min {
        Some(format!(
            "is below the minimum {min} (allowed: {min} to {max})"
        ))
    } else if n > max {
        Some(format!(
            "is above the maximum {max} (allowed: {min} to {max})"
        ))
    } else {
        None
    }
}

impl Resolver<'_> {
    /// An error about a value, at its origin.
    fn fail(&self, key: &str, v: &Value, message: &str) -> ConfigError {
        match &v.origin {
            Origin::File(span) => self
                .src
                .invalid(span.clone(), format!("{key} = {} {message}", v.n)),
            Origin::Env { var, value } => ConfigError::EnvOverride {
                file: self.src.name.clone(),
                var: (*var).to_owned(),
                value: value.clone(),
                key: key.to_owned(),
                message: message.to_owned(),
            },
            Origin::Default => self
                .src
                .invalid(0..0, format!("{key} (default {}) {message}", v.n)),
        }
    }

    /// A number from the file or its default, range-checked.
    fn num(
        &self,
        raw: &Num,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<Value, ConfigError> {
        let v = match raw {
            Some(s) => Value {
                n: *s.get_ref(),
                origin: Origin::File(s.span()),
            },
            None => Value {
                n: default,
                origin: Origin::Default,
            },
        };
        self.check(key, v, min, max)
    }

    fn check(&self, key: &str, v: Value, min: u64, max: u64) -> Result<Value, ConfigError> {
        match range_message(v.n, min, max) {
            Some(m) => Err(self.fail(key, &v, &m)),
            None => Ok(v),
        }
    }

    /// An `[rtms]` number: the environment variable wins over the file.
    fn rtms_num(
        &self,
        raw: &Num,
        name: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<Value, ConfigError> {
        let key = format!("rtms.{name}");
        let var = ENV_OVERRIDES
            .iter()
            .find(|(_, k)| *k == name)
            .map(|(v, _)| *v);
        if let Some(var) = var
            && let Some(value) = self.env.var(var)
        {
            let n = value
                .trim()
                .parse::<u64>()
                .map_err(|_| ConfigError::EnvOverride {
                    file: self.src.name.clone(),
                    var: var.to_owned(),
                    value: value.clone(),
                    key: key.clone(),
                    message: "not a non-negative whole number".to_owned(),
                })?;
            let v = Value {
                n,
                origin: Origin::Env { var, value },
            };
            return self.check(&key, v, min, max);
        }
        self.num(raw, &key, default, min, max)
    }

    /// A path from the file, resolved against the pipeline's folder.
    fn path(&self, s: &str) -> PathBuf {
        normalize(&self.dir.join(s))
    }

    /// Resolves every section, collecting the errors of each (a section, or one plugin or
    /// sink, stops at its first), so one run reports everything it can.
    ///
    /// `errors` holds what was found before (the file's shape errors, whose parts `file`
    /// leaves out) and `dropped` the names of the plugins left out for them.
    pub fn resolve(
        mut self,
        file: PipelineFile,
        path: PathBuf,
        mut errors: Vec<ConfigError>,
        dropped: &[String],
    ) -> Result<Pipeline, ConfigError> {
        let server = keep(&mut errors, self.server(&file.server));
        let admin = keep(&mut errors, self.admin(&file.admin));
        let zoom = keep(&mut errors, self.zoom(&file.zoom));
        let mut runtime = keep(&mut errors, self.runtime(&file.runtime));
        let cluster = keep(&mut errors, self.cluster(&file.cluster)).flatten();
        if let (Some(_), Some(dir)) = (&file.cluster, &file.runtime.journal_dir) {
            errors.push(self.src.invalid_at(
                dir,
                "runtime.journal_dir and [cluster] do not go together: a cluster keeps each stream's journal in its engine, where any host can resume it; remove runtime.journal_dir",
            ));
        }
        let (plugins, plugin_errors) = self.plugins(&file.plugin);
        let mut failed: Vec<String> = plugin_errors.iter().map(|(n, _)| n.clone()).collect();
        errors.extend(plugin_errors.into_iter().map(|(_, e)| e));
        let resolved: Vec<&Spanned<PluginConfig>> = file
            .plugin
            .iter()
            .filter(|p| !failed.contains(p.get_ref().name.get_ref()))
            .collect();
        let rtms = keep(&mut errors, self.rtms(&file.rtms, &resolved, &plugins));
        if let (Some(rt), Some(r)) = (runtime.as_mut(), rtms.as_ref()) {
            match self.pool(&file.runtime, r.max_streams, &plugins) {
                Ok(p) => rt.pool = p,
                Err(e) => errors.push(e),
            }
        }
        failed.extend(dropped.iter().cloned());
        let (sinks, sink_errors) = self.sinks(&file.sink, &plugins, &failed);
        errors.extend(sink_errors);
        // File order, so the operator reads them top to bottom.
        errors.sort_by_key(|e| match e {
            ConfigError::Invalid { at, .. } => (0, at.line, at.column),
            ConfigError::UnknownKey(u) => (0, u.at.line, u.at.column),
            _ => (1, 0, 0),
        });
        if let Some(e) = ConfigError::gather(errors) {
            return Err(e);
        }
        let (Some(server), Some(admin), Some(zoom), Some(runtime), Some(rtms)) =
            (server, admin, zoom, runtime, rtms)
        else {
            unreachable!("every section without an error resolved");
        };
        Ok(Pipeline {
            path,
            server,
            admin,
            zoom,
            rtms,
            runtime,
            cluster,
            plugins,
            sinks,
            warnings: self.warnings,
        })
    }

    fn unused_section<T>(
        &mut self,
        section: &Option<Spanned<T>>,
        name: &str,
        kind: MediaKind,
        media: MediaKinds,
    ) {
        if let Some(s) = section
            && !media.contains(kind)
        {
            let at = self.src.at(s.span().start);
            self.warnings.push(format!(
                "{at}: [rtms.{name}] has no effect: {kind} is not requested (add it to rtms.media or subscribe a plugin to it)"
            ));
        }
    }

    fn nonempty_list<T: Clone>(
        &self,
        raw: &Option<Spanned<Vec<T>>>,
        key: &str,
        name: &str,
        what: &str,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        match raw {
            Some(l) if l.get_ref().is_empty() => Err(self.src.invalid_at(
                l,
                format!("plugin {name:?}: {key} = [] matches nothing: list at least one, or remove the key to serve every {what}"),
            )),
            Some(l) => Ok(Some(l.get_ref().clone())),
            None => Ok(None),
        }
    }
}
