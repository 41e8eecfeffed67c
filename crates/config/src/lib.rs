//! pipeline.toml: parsing, environment overrides and validation into the type the host runs.
//!
//! The operator's file is read in two steps. [`raw`] holds serde types close to the text
//! (unknown keys are errors, positions are kept); `resolve` turns them into
//! a [`Pipeline`]: defaults filled, `RTMS_*` environment overrides applied, secrets read from
//! the environment, paths made absolute, every number range-checked. Only [`Pipeline`] reaches
//! the runtime. Errors ([`ConfigError`]) name `file:line:column`, the key, the problem and the
//! fix. Nothing here reads globals: the environment comes in through [`Env`].
//!
//! # Layout
//! - [`model`]: the validated types ([`Pipeline`], [`Plugin`], [`MediaKinds`], [`Secret`], ...).
//! - [`raw`]: the serde types of the file.
//! - `resolve`: defaults (`default_*`), checks, overrides.
//! - [`error`]: [`ConfigError`] and the rewording of toml / serde errors.
//! - [`flatten`]: `[plugin.config]` into `init`'s list of pairs.
//! - [`diff`]: [`PipelineDiff`] for hot reload, each changed plugin setting classified by what
//!   applying it takes ([`PluginSetting`], [`Apply`]).
//! - [`env`]: [`Env`], [`ProcessEnv`], [`MapEnv`].
//!
//! Every key is documented in `examples/pipeline.toml`.

use std::path::Path;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

pub mod diff;
pub mod env;
pub mod error;
pub mod flatten;
pub mod model;
pub mod net;
pub mod pool;
pub mod raw;
mod resolve;

pub use diff::{Apply, PipelineDiff, PluginChange, PluginSetting};
pub use env::{Env, MapEnv, ProcessEnv};
pub use error::{ConfigError, Location, UnknownKey};
pub use model::*;
pub use net::{HostPattern, HttpRule, HttpScheme, Net};
pub use pool::{PoolNeed, PoolPlan};
pub use resolve::{
    ALLOW_INSECURE_WS_ENV, ALLOWED_HOSTS_ENV, BUILTIN_PREFIX, ENV_OVERRIDES,
    MIN_KEEPALIVE_INTERVAL_MS,
};

use error::Source;

/// The only pipeline file version this host reads.
pub const VERSION: i64 = 1;

/// How strict loading is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Fail when a credential's environment variable is unset. `false` for `rtms-host validate`,
    /// which then reports the missing ones in [`Pipeline::warnings`].
    pub require_secrets: bool,
    /// Fail when an enabled plugin's component file does not exist. `false` only for checking
    /// a file's shape before its plugins are built (the examples test).
    pub check_components: bool,
}

impl Default for LoadOptions {
    /// Everything checked: what `rtms-host run` needs.
    fn default() -> Self {
        Self {
            require_secrets: true,
            check_components: true,
        }
    }
}

impl LoadOptions {
    /// For `rtms-host validate`: secrets may be missing (they become warnings).
    pub fn validate_only() -> Self {
        Self {
            require_secrets: false,
            check_components: true,
        }
    }
}

impl Pipeline {
    /// Reads and validates the pipeline file at `path`.
    pub fn load(path: &Path, env: &dyn Env, opts: LoadOptions) -> Result<Pipeline, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, env, opts)
    }

    /// Validates pipeline text. `path` names the file in errors (as given) and anchors relative
    /// paths (made absolute first); it is not read.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Env,
        opts: LoadOptions,
    ) -> Result<Pipeline, ConfigError> {
        let src = Source {
            name: path.display().to_string(),
            text,
        };
        let table = DeTable::parse(text).map_err(|e| error::from_toml(&src, None, &e))?;
        probe_version(&src, table.get_ref())?;
        check_integers(&src, table.get_ref())?;
        // A file whose shape is wrong is checked part by part: every shape error is
        // reported, and the parts without one are resolved too, so one run reports the
        // value errors of the rest as well.
        let (file, shape) =
            match raw::PipelineFile::deserialize(toml::de::Deserializer::from(table.clone())) {
                Ok(file) => (file, Shape::default()),
                Err(e) => {
                    let shape = shape_errors(&src, &table);
                    let whole = toml::Spanned::new(table.span(), shape.sound.clone());
                    match raw::PipelineFile::deserialize(toml::de::Deserializer::from(whole)) {
                        Ok(file) if !shape.errors.is_empty() => (file, shape),
                        _ => return Err(error::from_toml(&src, Some(table.get_ref()), &e)),
                    }
                }
            };
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let abs = resolve::normalize(&abs);
        let dir = abs.parent().map(Path::to_owned).unwrap_or_default();
        let resolver = resolve::Resolver {
            src,
            env,
            dir,
            opts,
            warnings: Vec::new(),
        };
        resolver.resolve(file, abs, shape.errors, &shape.dropped_plugins)
    }
}

/// What checking a file part by part found.
#[derive(Default)]
struct Shape<'i> {
    /// Every shape error (unknown key, wrong type, missing key), in file order.
    errors: Vec<ConfigError>,
    /// The file without the parts that have one.
    sound: DeTable<'i>,
    /// The names of the `[[plugin]]` entries left out (for sinks that name them).
    dropped_plugins: Vec<String>,
}

/// Checks each top-level section and each `[[plugin]]` and `[[sink]]` on its own.
fn shape_errors<'i>(src: &Source<'_>, table: &toml::Spanned<DeTable<'i>>) -> Shape<'i> {
    let version = table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "version");
    let check = |key: &toml::Spanned<toml::de::DeString<'i>>, value: toml::Spanned<DeValue<'i>>| {
        let mut part = DeTable::new();
        if let Some((k, v)) = version {
            part.insert(k.clone(), v.clone());
        }
        part.insert(key.clone(), value);
        let part = toml::Spanned::new(table.span(), part);
        raw::PipelineFile::deserialize(toml::de::Deserializer::from(part))
            .err()
            .map(|e| error::from_toml(src, Some(table.get_ref()), &e))
    };
    let mut shape = Shape::default();
    for (key, value) in table.get_ref() {
        if key.get_ref() == "version" {
            shape.sound.insert(key.clone(), value.clone());
            continue;
        }
        match value.get_ref() {
            DeValue::Array(items)
                if items
                    .iter()
                    .all(|i| matches!(i.get_ref(), DeValue::Table(_))) =>
            {
                let mut kept = Vec::new();
                for item in items.iter() {
                    let one: toml::de::DeArray<'i> = std::iter::once(item.clone()).collect();
                    match check(key, toml::Spanned::new(value.span(), DeValue::Array(one))) {
                        None => kept.push(item.clone()),
                        Some(e) => {
                            shape.errors.push(e);
                            if key.get_ref() == "plugin"
                                && let DeValue::Table(t) = item.get_ref()
                                && let Some((_, name)) =
                                    t.iter().find(|(k, _)| k.get_ref() == "name")
                                && let DeValue::String(name) = name.get_ref()
                            {
                                shape.dropped_plugins.push(name.to_string());
                            }
                        }
                    }
                }
                let kept: toml::de::DeArray<'i> = kept.into_iter().collect();
                shape.sound.insert(
                    key.clone(),
                    toml::Spanned::new(value.span(), DeValue::Array(kept)),
                );
            }
            _ => match check(key, value.clone()) {
                None => {
                    shape.sound.insert(key.clone(), value.clone());
                }
                Some(e) => shape.errors.push(e),
            },
        }
    }
    shape
}

/// Checks `version = 1` before anything else, so a future format gets a clear error.
fn probe_version(src: &Source<'_>, table: &DeTable<'_>) -> Result<(), ConfigError> {
    let Some((_, value)) = table.iter().find(|(k, _)| k.get_ref() == "version") else {
        return Err(src.invalid(
            0..0,
            format!("missing key \"version\": add `version = {VERSION}` at the top of the file"),
        ));
    };
    let ok = match value.get_ref() {
        DeValue::Integer(i) => i.radix() == 10 && i.as_str().trim_start_matches('+') == "1",
        _ => false,
    };
    if !ok {
        let shown = match value.get_ref() {
            DeValue::Integer(i) => i.as_str().to_owned(),
            DeValue::String(s) => format!("{s:?}"),
            other => format!("a {}", other.type_str()),
        };
        return Err(src.invalid(
            value.span(),
            format!("version = {shown} is not supported: this rtms-host reads version = {VERSION}"),
        ));
    }
    Ok(())
}

/// TOML integers are 64-bit signed: the `toml` parser lets a larger one through to an unsigned
/// field, but no other TOML reader (nor `toml`'s own `Table`) accepts the file, so it is refused
/// here, wherever it is, with its place.
fn check_integers(src: &Source<'_>, table: &DeTable<'_>) -> Result<(), ConfigError> {
    fn value(src: &Source<'_>, v: &toml::Spanned<DeValue<'_>>) -> Result<(), ConfigError> {
        match v.get_ref() {
            DeValue::Integer(i) if i64::from_str_radix(i.as_str(), i.radix()).is_err() => Err(src
                .invalid(
                    v.span(),
                    format!(
                        "integer {} is out of range: TOML integers are 64-bit signed \
                         (from {} to {}); use a smaller value",
                        i.as_str(),
                        i64::MIN,
                        i64::MAX
                    ),
                )),
            DeValue::Array(items) => items.iter().try_for_each(|item| value(src, item)),
            DeValue::Table(t) => check_integers(src, t),
            _ => Ok(()),
        }
    }
    table.values().try_for_each(|v| value(src, v))
}

#[cfg(test)]
mod tests;
