//! Configuration errors and how they are located and worded.
//!
//! Every error about the file names `file:line:column`, the key, what is wrong and the fix.
//! Positions come from toml's spans: those of serde errors, and those kept by `Spanned` fields
//! for the checks in [`crate::resolve`]. Serde's own wording (unknown field, invalid type,
//! unknown variant) is rewritten here into the operator's terms, with the nearest valid key.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A position in the pipeline file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file as the caller named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Why a pipeline could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the pipeline file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key the schema does not have (boxed: it carries the list of valid keys).
    #[error("{0}")]
    UnknownKey(Box<UnknownKey>),
    /// Anything else wrong in the file: the message names the key, the problem and the fix.
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
    /// An `RTMS_*` environment variable that overrides the file holds a bad value.
    #[error(
        "{file}: environment variable {var}={value:?} (overrides {key}): {message}; fix or unset {var}"
    )]
    EnvOverride {
        file: String,
        var: String,
        value: String,
        /// The key it overrides, such as `rtms.keepalive_interval_ms`.
        key: String,
        message: String,
    },
    /// Several of the errors above, in file order: everything one check of the file found.
    #[error("{}", many_text(.0))]
    Many(Vec<ConfigError>),
    /// A credential's environment variable is unset.
    #[error(
        "{file}: {what} is missing: environment variable {var} is not set (named by zoom.{key}); export {var}=... before starting, or point zoom.{key} at the variable that holds it"
    )]
    MissingSecret {
        file: String,
        var: String,
        key: &'static str,
        what: &'static str,
    },
}

fn many_text(errors: &[ConfigError]) -> String {
    let mut out: Vec<String> = errors.iter().map(ToString::to_string).collect();
    out.push(format!("{} errors in all", errors.len()));
    out.join("\n")
}

impl ConfigError {
    /// One error for `errors`: itself when there is one, [`ConfigError::Many`] otherwise.
    /// `None` when there is none.
    pub fn gather(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ConfigError::Many(errors)),
        }
    }

    /// Every single error this holds.
    pub fn all(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(v) => v.iter().flat_map(ConfigError::all).collect(),
            e => vec![e],
        }
    }
}

/// An unknown key, with the nearest valid one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    pub at: Location,
    pub key: String,
    /// `in [plugin.queue]`, or `at the top level`.
    pub section: String,
    /// The nearest valid key, if one is close.
    pub suggestion: Option<String>,
    /// Every valid key of the section.
    pub valid: Vec<String>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: unknown key {:?} {}{}",
            self.at,
            self.key,
            self.section,
            suggestion_text(&self.suggestion, &self.valid)
        )
    }
}

fn suggestion_text(suggestion: &Option<String>, valid: &[String]) -> String {
    match suggestion {
        Some(s) => format!("; did you mean {s:?}?"),
        None if valid.is_empty() => "; this section takes no keys".to_owned(),
        None => format!("; valid keys: {}", valid.join(", ")),
    }
}

/// The nearest candidate to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::damerau_levenshtein(&word.to_ascii_lowercase(), c);
        let limit = (c.chars().count().max(word.chars().count()) / 3).max(1);
        let limit = if c.len() >= 4 { limit.max(2) } else { limit };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_owned())
}

/// The text being parsed and the name errors give it.
pub(crate) struct Source<'a> {
    pub name: String,
    pub text: &'a str,
}

impl Source<'_> {
    /// The location of a byte offset (clamped into the text).
    pub fn at(&self, offset: usize) -> Location {
        let before = rtms_proto::text::prefix(self.text, offset);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: self.name.clone(),
            line,
            column,
        }
    }

    /// An [`ConfigError::Invalid`] at the start of `span`.
    pub fn invalid(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            at: self.at(span.start),
            message: message.into(),
        }
    }

    /// An [`ConfigError::Invalid`] at a spanned value.
    pub fn invalid_at<T>(&self, value: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.invalid(value.span(), message)
    }
}

/// One step of a key path: a table key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index,
}

/// Finds the key path of the node a span points at: an exact key span, else the deepest value
/// whose span contains it. The boolean says whether the span was a key's.
fn locate(table: &DeTable<'_>, span: &Range<usize>) -> (Vec<Step>, bool) {
    let mut best: (Vec<Step>, bool, usize) = (Vec::new(), false, 0);
    let mut path = Vec::new();
    walk_table(table, span, &mut path, &mut best);
    (best.0, best.1)
}

fn walk_table(
    table: &DeTable<'_>,
    span: &Range<usize>,
    path: &mut Vec<Step>,
    best: &mut (Vec<Step>, bool, usize),
) {
    for (k, v) in table.iter() {
        path.push(Step::Key(k.get_ref().to_string()));
        if k.span() == *span {
            *best = (path.clone(), true, usize::MAX);
        }
        let vs = v.span();
        if vs.start <= span.start && span.end <= vs.end && path.len() > best.2 && !best.1 {
            *best = (path.clone(), false, path.len());
        }
        walk_value(v.get_ref(), span, path, best);
        path.pop();
    }
}

fn walk_value(
    value: &DeValue<'_>,
    span: &Range<usize>,
    path: &mut Vec<Step>,
    best: &mut (Vec<Step>, bool, usize),
) {
    match value {
        DeValue::Table(t) => walk_table(t, span, path, best),
        DeValue::Array(a) => {
            for item in a.iter() {
                path.push(Step::Index);
                let vs = item.span();
                if vs.start <= span.start && span.end <= vs.end && path.len() > best.2 && !best.1 {
                    *best = (path.clone(), false, path.len());
                }
                walk_value(item.get_ref(), span, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `plugin.queue.capacity` (array indexes are left out).
fn dotted(path: &[Step]) -> String {
    path.iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Index => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `in [plugin.queue]`, or `at the top level` for an empty path.
fn section(path: &[Step]) -> String {
    let d = dotted(path);
    if d.is_empty() {
        "at the top level".to_owned()
    } else {
        format!("in [{d}]")
    }
}

/// The words serde puts in backticks, in order.
fn backticked(message: &str) -> Vec<String> {
    message
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

/// Serde's type names in operator terms.
fn friendly_types(message: &str) -> String {
    let mut m = message.to_owned();
    for (from, to) in [
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
        ("expected struct", "expected a table for"),
    ] {
        m = m.replace(from, to);
    }
    m
}

/// Rewrites a toml / serde error into a [`ConfigError`] with its location and key path.
pub(crate) fn from_toml(
    src: &Source<'_>,
    table: Option<&DeTable<'_>>,
    err: &toml::de::Error,
) -> ConfigError {
    let message = err.message().trim().to_owned();
    let Some(span) = err.span() else {
        return ConfigError::Invalid {
            at: src.at(0),
            message: friendly_types(&message),
        };
    };
    let at = src.at(span.start);
    let Some(table) = table else {
        // A syntax error: toml's message is about characters, not keys.
        return ConfigError::Invalid {
            at,
            message: format!("invalid TOML: {}", message.replace('\n', "; ")),
        };
    };
    let (path, _) = locate(table, &span);
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let words = backticked(rest);
        let key = words.first().cloned().unwrap_or_default();
        let valid: Vec<String> = words.into_iter().skip(1).collect();
        let parent = match path.last() {
            Some(Step::Key(k)) if *k == key => &path[..path.len() - 1],
            _ => &path[..],
        };
        let suggestion = suggest(&key, valid.iter().map(String::as_str));
        return ConfigError::UnknownKey(Box::new(UnknownKey {
            at,
            key,
            section: section(parent),
            suggestion,
            valid,
        }));
    }
    let key = dotted(&path);
    let message = if let Some(rest) = message.strip_prefix("unknown variant ") {
        let words = backticked(rest);
        let value = words.first().cloned().unwrap_or_default();
        let valid: Vec<String> = words.into_iter().skip(1).collect();
        let quoted: Vec<String> = valid.iter().map(|v| format!("{v:?}")).collect();
        let hint = suggest(&value, valid.iter().map(String::as_str))
            .map(|s| format!("; did you mean {s:?}?"))
            .unwrap_or_default();
        format!(
            "{value:?} is not a valid value; use one of {}{hint}",
            quoted.join(", ")
        )
    } else if let Some(rest) = message.strip_prefix("missing field ") {
        let field = backticked(rest).into_iter().next().unwrap_or_default();
        return ConfigError::Invalid {
            at,
            message: format!(
                "missing key {field:?} {}: add {field} = ...",
                section(&path)
            ),
        };
    } else {
        friendly_types(&message)
    };
    if key.is_empty() {
        ConfigError::Invalid { at, message }
    } else {
        ConfigError::Invalid {
            at,
            message: format!("{key}: {message}"),
        }
    }
}
