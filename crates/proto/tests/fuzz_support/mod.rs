//! Generators shared by the fuzz targets of `rtms-proto`, `rtms-client` and `rtms-config`
//! (each includes this file with `#[path]`): the case count, arbitrary JSON values,
//! structure-aware mutations of a JSON sample, and byte-level mutations of any text.
//!
//! The short run (CI) takes each target's default case count; the long run sets
//! `FUZZ_CASES` (see docs/fuzzing.md).

#![allow(dead_code)]

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Proptest settings for a fuzz target: `FUZZ_CASES` cases if set, else `default`.
pub fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Large runs: do not spend minutes shrinking a failure before reporting it.
        max_shrink_iters: 4096,
        // Failures become named regression tests beside the targets, not seed files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings that hit edge cases of parsers: empty, huge numbers, escapes, non-ASCII, NUL.
pub const TRICKY: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "18446744073709551616",
    "-9223372036854775808",
    "9223372036854775807",
    "1e999",
    "NaN",
    "\\u0000",
    "\u{0}",
    "é",
    "\u{FEFF}",
    "data:",
    "data:x;base64,",
    "====",
    "wss://",
];

/// A short string: printable, tricky, or any.
pub fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9_.:/+=-]{0,12}",
        2 => proptest::sample::select(TRICKY).prop_map(str::to_owned),
        1 => any::<String>().prop_map(|s| s.chars().take(16).collect()),
    ]
}

/// A number, including the limits of every integer type JSON may be read into.
pub fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..20).prop_map(Value::from),
        proptest::sample::select(vec![
            0u64,
            u32::MAX as u64,
            u32::MAX as u64 + 1,
            i64::MAX as u64,
            u64::MAX,
        ])
        .prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
    ]
}

/// Any JSON value, a few levels deep, with keys drawn from `keys` or arbitrary.
pub fn arb_json(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((arb_key(keys), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A key: one the parser looks for, or any.
pub fn arb_key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(keys).prop_map(str::to_owned),
        1 => arb_string(),
    ]
}

/// One change to a JSON document; `at` picks a node in pre-order (modulo the node count).
#[derive(Clone, Debug)]
pub enum JsonEdit {
    /// Replace the node with another value.
    Replace { at: usize, with: Value },
    /// Remove the node from its parent.
    Remove { at: usize },
    /// Insert a member into an object node (or push onto an array node).
    Insert { at: usize, key: String, with: Value },
}

pub fn arb_edit(keys: &'static [&'static str]) -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (any::<usize>(), arb_json(keys)).prop_map(|(at, with)| JsonEdit::Replace { at, with }),
        2 => any::<usize>().prop_map(|at| JsonEdit::Remove { at }),
        2 => (any::<usize>(), arb_key(keys), arb_json(keys))
            .prop_map(|(at, key, with)| JsonEdit::Insert { at, key, with }),
    ]
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(m) => m.values().map(count).sum(),
        _ => 0,
    }
}

/// Applies `edit` to the node numbered `*n` (counting down in pre-order). True once applied.
fn apply_at(v: &mut Value, n: &mut usize, edit: &JsonEdit) -> bool {
    if *n == 0 {
        match edit {
            JsonEdit::Replace { with, .. } => *v = with.clone(),
            JsonEdit::Insert { key, with, .. } => match v {
                Value::Object(m) => {
                    m.insert(key.clone(), with.clone());
                }
                Value::Array(a) => a.push(with.clone()),
                other => *other = with.clone(),
            },
            JsonEdit::Remove { .. } => *v = Value::Null,
        }
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(a) => {
            for i in 0..a.len() {
                if *n == 0 && matches!(edit, JsonEdit::Remove { .. }) {
                    a.remove(i);
                    return true;
                }
                if apply_at(&mut a[i], n, edit) {
                    return true;
                }
            }
            false
        }
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if *n == 0 && matches!(edit, JsonEdit::Remove { .. }) {
                    m.remove(&k);
                    return true;
                }
                if let Some(child) = m.get_mut(&k)
                    && apply_at(child, n, edit)
                {
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

/// `sample` with `edits` applied in order.
pub fn apply_edits(sample: &Value, edits: &[JsonEdit]) -> Value {
    let mut v = sample.clone();
    for e in edits {
        let at = match e {
            JsonEdit::Replace { at, .. }
            | JsonEdit::Remove { at }
            | JsonEdit::Insert { at, .. } => *at,
        };
        let mut n = at % count(&v);
        apply_at(&mut v, &mut n, e);
    }
    v
}

/// One change to a byte string; positions are taken modulo the length.
#[derive(Clone, Debug)]
pub enum ByteEdit {
    Set(usize, u8),
    Remove(usize),
    Insert(usize, u8),
    Truncate(usize),
    /// Repeat a slice `(start, len, times)`: deep nesting, long runs.
    Repeat(usize, usize, usize),
}

/// Byte edits that favour the characters that carry structure in JSON and TOML.
pub fn arb_byte_edit() -> impl Strategy<Value = ByteEdit> {
    let structural = proptest::sample::select(b"{}[]\":,0-e\\=\n'#.".to_vec());
    let byte = prop_oneof![3 => structural, 1 => any::<u8>()];
    prop_oneof![
        3 => (any::<usize>(), byte.clone()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        2 => any::<usize>().prop_map(ByteEdit::Remove),
        3 => (any::<usize>(), byte).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        1 => any::<usize>().prop_map(ByteEdit::Truncate),
        1 => (any::<usize>(), 1usize..8, 1usize..200)
            .prop_map(|(s, l, t)| ByteEdit::Repeat(s, l, t)),
    ]
}

/// `text` with `edits` applied in order.
pub fn apply_byte_edits(text: &[u8], edits: &[ByteEdit]) -> Vec<u8> {
    let mut v = text.to_vec();
    for e in edits {
        let len = v.len();
        let at = |i: usize| if len == 0 { 0 } else { i % len };
        match *e {
            ByteEdit::Set(i, b) if len > 0 => v[at(i)] = b,
            ByteEdit::Set(_, b) | ByteEdit::Insert(_, b) if len == 0 => v.push(b),
            ByteEdit::Insert(i, b) => v.insert(at(i), b),
            ByteEdit::Remove(i) if len > 0 => {
                v.remove(at(i));
            }
            ByteEdit::Truncate(i) => v.truncate(at(i)),
            ByteEdit::Repeat(s, l, t) if len > 0 => {
                let s = at(s);
                let end = (s + l).min(len);
                let piece = v[s..end].to_vec();
                let tail = v.split_off(end);
                for _ in 0..t {
                    v.extend_from_slice(&piece);
                }
                v.extend_from_slice(&tail);
            }
            _ => {}
        }
    }
    v
}
