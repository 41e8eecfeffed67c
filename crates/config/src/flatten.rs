//! `[plugin.config]` → the `init(config: list<tuple<string, string>>)` argument.
//!
//! The WIT rule: one pair per top-level key; a string value is passed as it is, every other
//! value (numbers, booleans, datetimes, arrays, tables) as JSON text. Datetimes become JSON
//! strings in TOML's own notation. Floats JSON cannot hold (nan, inf) are refused.

use serde_json::Value as Json;
use toml::Value as Toml;

/// Flattens a plugin's config table. The error names the key whose value JSON cannot hold.
pub fn flatten_config(table: &toml::Table) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::with_capacity(table.len());
    for (key, value) in table {
        let text = match value {
            Toml::String(s) => s.clone(),
            other => {
                let json = to_json(other).map_err(|e| format!("key {key:?}: {e}"))?;
                json.to_string()
            }
        };
        out.push((key.clone(), text));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A TOML value as JSON.
pub fn to_json(value: &Toml) -> Result<Json, String> {
    Ok(match value {
        Toml::String(s) => Json::String(s.clone()),
        Toml::Integer(i) => Json::from(*i),
        Toml::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("{f} cannot be passed as JSON: use a finite number"))?,
        Toml::Boolean(b) => Json::Bool(*b),
        Toml::Datetime(d) => Json::String(d.to_string()),
        Toml::Array(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Toml::Table(t) => Json::Object(
            t.iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("test table parses")
    }

    #[test]
    fn strings_are_raw_and_everything_else_is_json() {
        let t = table(
            r#"
            name = "he said \"hi\""
            count = 3
            ratio = 0.5
            on = true
            words = ["a", "b"]
            nested = { x = 1, y = "z" }
            when = 1979-05-27T07:32:00Z
            "#,
        );
        let flat = flatten_config(&t).unwrap();
        let get = |k: &str| {
            flat.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("name"), Some("he said \"hi\""));
        assert_eq!(get("count"), Some("3"));
        assert_eq!(get("ratio"), Some("0.5"));
        assert_eq!(get("on"), Some("true"));
        assert_eq!(get("words"), Some(r#"["a","b"]"#));
        assert_eq!(get("nested"), Some(r#"{"x":1,"y":"z"}"#));
        assert_eq!(get("when"), Some(r#""1979-05-27T07:32:00Z""#));
        let keys: Vec<&str> = flat.iter().map(|(k, _)| k.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn non_finite_floats_are_refused_with_the_key() {
        let t = table("x = nan");
        let err = flatten_config(&t).unwrap_err();
        assert!(err.contains("\"x\""), "{err}");
        let t = table("deep = { y = [inf] }");
        assert!(flatten_config(&t).is_err());
    }
}
