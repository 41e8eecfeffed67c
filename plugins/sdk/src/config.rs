//! Typed access to the configuration `init` receives.
//!
//! The host passes the plugin's `[plugin.config]` table from pipeline.toml as one pair per
//! top-level key: strings as they are, every other value (numbers, booleans, arrays, tables)
//! as JSON text. So `cooldown_ms = 5000` arrives as `"5000"` and `keywords = ["a", "b"]` as
//! `"[\"a\",\"b\"]"`. [`Config`] parses those values and remembers which keys the plugin asked
//! for, so [`Config::finish`] can refuse keys it does not know (usually a typo).
//!
//! Every error names the key, what was expected and what was found, so the operator can fix
//! pipeline.toml from the message alone.

use std::cell::RefCell;

/// A configuration value the plugin cannot accept. `init` returns it as its error string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key the plugin never reads, most likely misspelt.
    #[error(
        "unknown config key `{key}`: this plugin accepts {known}; fix or remove it in [plugin.config]"
    )]
    UnknownKey {
        /// The key as written in pipeline.toml.
        key: String,
        /// The keys the plugin reads, quoted and comma separated.
        known: String,
    },
    /// A value of the wrong type or out of range.
    #[error("config key `{key}` must be {expected}, got `{value}`")]
    Invalid {
        /// The key as written in pipeline.toml.
        key: String,
        /// What the plugin accepts, as a phrase ("true or false", "one of \"text\", \"jsonl\"").
        expected: String,
        /// The value the host passed.
        value: String,
    },
}

impl From<ConfigError> for String {
    fn from(err: ConfigError) -> Self {
        err.to_string()
    }
}

/// The `[plugin.config]` table of one plugin, as `init` receives it.
#[derive(Debug, Default)]
pub struct Config {
    pairs: Vec<(String, String)>,
    /// Every key the plugin asked for, present or not, in the order asked: the list
    /// [`Config::finish`] reports as accepted keys.
    asked: RefCell<Vec<String>>,
}

impl Config {
    /// Wraps the pairs `init` received.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self {
            pairs,
            asked: RefCell::new(Vec::new()),
        }
    }

    /// The raw value of `key`, if the table has it.
    pub fn str(&self, key: &str) -> Option<&str> {
        {
            let mut asked = self.asked.borrow_mut();
            if !asked.iter().any(|k| k == key) {
                asked.push(key.to_owned());
            }
        }
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` as a string, or `default` when absent. Empty strings are refused,
    /// since an empty path or name is never what the operator meant.
    pub fn string_or(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        match self.str(key) {
            None => Ok(default.to_owned()),
            Some(v) if v.trim().is_empty() => Err(invalid(key, "a non-empty string", v)),
            Some(v) => Ok(v.to_owned()),
        }
    }

    /// The value of `key` as a boolean (`true` or `false`), or `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.str(key).map(str::trim) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(invalid(key, "true or false", v)),
        }
    }

    /// The value of `key` as a non-negative integer, or `default` when absent.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        match self.str(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| invalid(key, "a whole number of 0 or more", v)),
        }
    }

    /// The value of `key`, which must be one of `choices`, or `default` when absent.
    pub fn choice_or<'a>(
        &self,
        key: &str,
        choices: &[&'a str],
        default: &'a str,
    ) -> Result<&'a str, ConfigError> {
        match self.str(key) {
            None => Ok(default),
            Some(v) => choices
                .iter()
                .find(|c| c.eq_ignore_ascii_case(v.trim()))
                .copied()
                .ok_or_else(|| {
                    let list: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
                    invalid(key, &format!("one of {}", list.join(", ")), v)
                }),
        }
    }

    /// The value of `key` as a JSON array of strings, such as `["refund", "cancel my plan"]`;
    /// `None` when absent.
    pub fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(v) = self.str(key) else {
            return Ok(None);
        };
        serde_json::from_str::<Vec<String>>(v)
            .map(Some)
            .map_err(|_| invalid(key, "an array of strings, like [\"refund\", \"cancel\"]", v))
    }

    /// Refuses keys the plugin never asked for. Call it after reading every key.
    pub fn finish(self) -> Result<(), ConfigError> {
        let asked = self.asked.into_inner();
        match self.pairs.iter().find(|(k, _)| !asked.contains(k)) {
            None => Ok(()),
            Some((key, _)) => {
                let known = if asked.is_empty() {
                    "no keys".to_owned()
                } else {
                    asked
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                Err(ConfigError::UnknownKey {
                    key: key.clone(),
                    known,
                })
            }
        }
    }
}

fn invalid(key: &str, expected: &str, value: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        expected: expected.to_owned(),
        value: value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn absent_keys_take_their_defaults() {
        let c = config(&[]);
        assert_eq!(c.string_or("dir", "/out").unwrap(), "/out");
        assert!(!c.bool_or("include_chat", false).unwrap());
        assert_eq!(c.u64_or("cooldown_ms", 30_000).unwrap(), 30_000);
        assert_eq!(
            c.choice_or("format", &["text", "jsonl"], "text").unwrap(),
            "text"
        );
        assert_eq!(c.string_list("keywords").unwrap(), None);
        c.finish().unwrap();
    }

    #[test]
    fn values_arrive_as_json_text_and_parse() {
        let c = config(&[
            ("include_chat", "true"),
            ("cooldown_ms", "1500"),
            ("format", "JSONL"),
            ("keywords", r#"["refund","cancel my plan"]"#),
        ]);
        assert!(c.bool_or("include_chat", false).unwrap());
        assert_eq!(c.u64_or("cooldown_ms", 0).unwrap(), 1500);
        assert_eq!(
            c.choice_or("format", &["text", "jsonl"], "text").unwrap(),
            "jsonl"
        );
        assert_eq!(
            c.string_list("keywords").unwrap().unwrap(),
            vec!["refund".to_owned(), "cancel my plan".to_owned()]
        );
        c.finish().unwrap();
    }

    #[test]
    fn bad_values_name_the_key_and_what_is_expected() {
        let c = config(&[
            ("include_chat", "yes"),
            ("cooldown_ms", "-5"),
            ("format", "xml"),
            ("keywords", "refund"),
            ("dir", ""),
        ]);
        assert_eq!(
            c.bool_or("include_chat", false).unwrap_err().to_string(),
            "config key `include_chat` must be true or false, got `yes`"
        );
        assert!(
            c.u64_or("cooldown_ms", 0)
                .unwrap_err()
                .to_string()
                .contains("`cooldown_ms`")
        );
        assert_eq!(
            c.choice_or("format", &["text", "jsonl"], "text")
                .unwrap_err()
                .to_string(),
            "config key `format` must be one of \"text\", \"jsonl\", got `xml`"
        );
        assert!(
            c.string_list("keywords")
                .unwrap_err()
                .to_string()
                .contains("array of strings")
        );
        assert!(c.string_or("dir", "/out").is_err());
    }

    #[test]
    fn finish_refuses_keys_never_asked_for_and_lists_the_known_ones() {
        let c = config(&[("dir", "/out"), ("fromat", "text")]);
        c.string_or("dir", "/out").unwrap();
        c.choice_or("format", &["text"], "text").unwrap();
        let err: String = c.finish().unwrap_err().into();
        assert_eq!(
            err,
            "unknown config key `fromat`: this plugin accepts `dir`, `format`; fix or remove it in [plugin.config]"
        );
    }
}
