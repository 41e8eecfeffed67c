//! The house's layout as a test: no import cycle between modules anywhere in the workspace,
//! and the host's rooms depend on each other one way only.
//!
//! Every `.rs` file of every workspace crate is a module. An edge `a -> b` is any path
//! `crate::…`, `super::…` or `self::…` in `a`'s code (a `use` tree, expanded, or a path
//! written inline) that names `b` or something in it. Comments and `#[cfg(test)]` modules
//! do not count; a `pub use` that only re-exports a child's items from its parent does not
//! either (a facade is not a dependency). A cycle fails with its modules named in order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates to check: (name, source root).
const CRATES: &[(&str, &str)] = &[
    ("rtms-host", "host/src"),
    ("rtms-client", "crates/client/src"),
    ("rtms-sim", "crates/sim/src"),
    ("rtms-config", "crates/config/src"),
    ("rtms-proto", "crates/proto/src"),
    ("rtms-cluster", "crates/cluster/src"),
    ("rtms-bench", "benches/src"),
];

/// The host's rooms in dependency order: a room may use only the rooms after it.
const HOST_ROOMS: &[&str] = &[
    "cli",
    "plugin_dev",
    "service",
    "ops",
    "flows",
    "pipeline",
    "dataplane",
    "outputs",
    "sandbox",
    "urlenc",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Module path (`a::b`) of every `.rs` file under `root`.
fn modules(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            if parts.last().map(String::as_str) == Some("tests") {
                continue;
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) if !l[..at].contains('"') => &l[..at],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or("").trim();
        return vec![path.to_owned()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let close = tree.rfind('}').filter(|c| *c > open).unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => prefix.to_owned(),
            _ if prefix.is_empty() => p,
            _ => format!("{prefix}::{p}"),
        })
        .collect()
}

/// Every path a module's code names, relative to the crate root, each with whether it comes
/// from a `pub use` (a re-export).
fn paths(module: &str, text: &str) -> Vec<(String, bool)> {
    let code = code(text);
    let mut out = Vec::new();
    let lines: Vec<&str> = code.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let public = line.starts_with("pub");
        let stmt = line
            .strip_prefix("use ")
            .or_else(|| line.split_once(") use ").map(|(_, r)| r))
            .or_else(|| line.strip_prefix("pub use "));
        i += 1;
        let Some(first) = stmt else { continue };
        let mut text = first.to_owned();
        while !text.contains(';') && i < lines.len() {
            text.push_str(lines[i]);
            i += 1;
        }
        let tree = text.split(';').next().unwrap_or("");
        for p in expand(tree) {
            out.push((p, public));
        }
    }
    for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        if word.starts_with("crate::") || word.starts_with("super::") || word.starts_with("self::")
        {
            out.push((word.trim_end_matches(':').to_owned(), false));
        }
    }
    out.into_iter()
        .filter_map(|(p, public)| resolve(module, &p).map(|p| (p, public)))
        .collect()
}

/// A path as the crate-rooted module path it starts with, or `None` for other crates.
fn resolve(module: &str, path: &str) -> Option<String> {
    let mut base: Vec<&str> = if module.is_empty() {
        vec![]
    } else {
        module.split("::").collect()
    };
    let mut segs = path.split("::").peekable();
    match segs.peek().copied() {
        Some("crate") => {
            base.clear();
            segs.next();
        }
        Some("super") => {
            while segs.peek() == Some(&"super") {
                segs.next();
                base.pop();
            }
        }
        Some("self") => {
            segs.next();
        }
        _ => return None,
    }
    base.extend(segs);
    Some(base.join("::"))
}

/// The module a crate-rooted path lands in: its longest prefix that is a module.
fn owner<'a>(mods: &'a BTreeMap<String, PathBuf>, path: &str) -> Option<&'a str> {
    let mut p = path.to_owned();
    loop {
        if let Some((k, _)) = mods.get_key_value(&p) {
            return Some(k);
        }
        match p.rfind("::") {
            Some(at) => p.truncate(at),
            None => return mods.get_key_value("").map(|(k, _)| k.as_str()),
        }
    }
}

/// The module graph of one crate.
fn graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(root);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, file) in &mods {
        let text = std::fs::read_to_string(file).unwrap();
        let edges = g.entry(m.clone()).or_default();
        for (p, public) in paths(m, &text) {
            let Some(to) = owner(&mods, &p) else { continue };
            let child = to.starts_with(&format!("{m}::")) || m.is_empty();
            if to == m || (public && child) {
                continue;
            }
            // A parent's own declarations (`mod x;`) are not paths; a child naming its
            // parent's items (`super::X`) is an edge to the parent.
            edges.insert(to.to_owned());
        }
    }
    g
}

/// Every cycle's modules, in order, one per strongly connected component.
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative enough for a few hundred modules.
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.g.contains_key(w) {
                continue;
            }
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.reverse();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let mut found = Vec::new();
    for (name, src) in CRATES {
        let g = graph(&workspace().join(src));
        for c in cycles(&g) {
            found.push(format!("{name}: {}", c.join(" -> ")));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles between modules (break each by moving the shared item to the lower module):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_hosts_rooms_depend_on_each_other_one_way() {
    let g = graph(&workspace().join("host/src"));
    // The graph sees real dependencies (a check that sees none would pass anything).
    assert!(
        g["service"].contains("dataplane::registry"),
        "{:?}",
        g["service"]
    );
    assert!(
        g["dataplane::worker"].contains("sandbox::store"),
        "{:?}",
        g["dataplane::worker"]
    );
    let room = |m: &str| m.split("::").next().unwrap_or("").to_owned();
    let rank = |r: &str| HOST_ROOMS.iter().position(|x| *x == r);
    let mut wrong = BTreeSet::new();
    for (from, tos) in &g {
        let Some(rf) = rank(&room(from)) else {
            continue;
        };
        for to in tos {
            let Some(rt) = rank(&room(to)) else { continue };
            if rt < rf {
                wrong.insert(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "a room uses a room above it (order: {}):\n{}",
        HOST_ROOMS.join(" > "),
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    g.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    g.insert("d".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        cycles(&g),
        vec![vec!["a".to_owned(), "b".into(), "c".into()]]
    );
    assert_eq!(
        expand("crate::{a::{B, c}, d as e, self}"),
        vec!["crate::a::B", "crate::a::c", "crate::d", "crate"]
    );
    assert_eq!(resolve("x::y", "super::z::W").as_deref(), Some("x::z::W"));
}

/// The longest a function outside tests may be, in lines from `fn` to its closing brace.
const MAX_FN_LINES: usize = 80;

/// Functions allowed past [`MAX_FN_LINES`]: (file, function, why).
/// Every entry but a flat match is to be split and taken off this list; the test fails on
/// an entry that is no longer long, so the list only shrinks.
#[rustfmt::skip]
const LONG_FNS: &[(&str, &str, &str)] = &[
    ("crates/config/src/diff/plugin.rs", "changed_settings", "a flat table: each part destructured whole and one row per setting, so a new field must be classified there"),
];

/// Every function with a body in `text`: (name, first line, length in lines). Strings,
/// character literals and comments do not count as braces; nested functions are listed
/// on their own (and inside their parent's length).
fn fn_lengths(text: &str) -> Vec<(String, usize, usize)> {
    let b = code(text).into_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let line_at = |i: usize| b[..i].iter().filter(|c| **c == b'\n').count() + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if let Some(next) = skip_literal(&b, i) {
            i = next;
            continue;
        }
        let starts_word = i == 0 || !ident(b[i - 1]);
        if !(starts_word && b[i..].starts_with(b"fn ")) {
            i += 1;
            continue;
        }
        let name_at = i + 3;
        let name_end = (name_at..b.len())
            .find(|j| !ident(b[*j]))
            .unwrap_or(b.len());
        i = name_end;
        if name_end == name_at {
            continue; // `fn(…)`, a function pointer type
        }
        let name = String::from_utf8_lossy(&b[name_at..name_end]).into_owned();
        if let Some(end) = body_end(&b, name_end) {
            out.push((name, line_at(name_at), line_at(end) - line_at(name_at) + 1));
        }
    }
    out
}

/// Where the body of the function whose signature starts at `from` ends (its closing
/// brace); `None` for a declaration without a body.
fn body_end(b: &[u8], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = from;
    while i < b.len() {
        if let Some(next) = skip_literal(b, i) {
            i = next;
            continue;
        }
        match b[i] {
            b';' if depth == 0 => return None,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// If a string or character literal starts at `i`, the index just past it.
fn skip_literal(b: &[u8], i: usize) -> Option<usize> {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    match b[i] {
        b'"' => {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            Some(j + 1)
        }
        b'r' if (i == 0 || !ident(b[i - 1])) && matches!(b.get(i + 1), Some(b'#' | b'"')) => {
            let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                return None;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = i + 2 + hashes;
            let end = b[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())?;
            Some(body + end + close.len())
        }
        b'\'' if b.get(i + 1) == Some(&b'\\') => {
            Some(i + 2 + b[i + 2..].iter().position(|c| *c == b'\'')? + 1)
        }
        b'\'' if b.get(i + 2) == Some(&b'\'') => Some(i + 3),
        _ => None,
    }
}

#[test]
fn no_function_outside_tests_is_longer_than_80_lines() {
    let mut long = Vec::new();
    let mut allowed_seen = BTreeSet::new();
    for (_, src) in CRATES {
        for path in modules(&workspace().join(src)).values() {
            let text = std::fs::read_to_string(path).unwrap();
            let file = path
                .strip_prefix(workspace())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for (name, line, len) in fn_lengths(&text) {
                if len <= MAX_FN_LINES {
                    continue;
                }
                let allowed = LONG_FNS.iter().find(|(f, n, _)| *f == file && *n == name);
                match allowed {
                    Some(a) => drop(allowed_seen.insert((a.0, a.1))),
                    None => long.push(format!("{file}:{line} `{name}` is {len} lines")),
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split each into well-named functions; a flat \
         match whose arms are one line each may be listed in LONG_FNS with its reason):\n{}",
        long.join("\n")
    );
    let stale: Vec<_> = LONG_FNS
        .iter()
        .filter(|(f, n, _)| !allowed_seen.contains(&(*f, *n)))
        .map(|(f, n, _)| format!("{f} `{n}`"))
        .collect();
    assert!(
        stale.is_empty(),
        "LONG_FNS lists functions that are no longer over {MAX_FN_LINES} lines (remove them):\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_length_check_measures_bodies_not_strings_or_signatures() {
    let src = "fn a() {\n    let s = \"}{\";\n    let c = '}';\n    let r = r#\"}\"#;\n}\n\
               trait T {\n    fn decl(&self);\n    fn b<'a>(&'a self) -> fn(u8) -> u8 {\n        \
               if true {\n        }\n        |x| x\n    }\n}\n";
    assert_eq!(
        fn_lengths(src),
        vec![("a".to_owned(), 1, 5), ("b".to_owned(), 8, 5)]
    );
}
