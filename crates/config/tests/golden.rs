//! Golden tests: every `tests/config/invalid/<name>.toml` must fail with exactly the text in
//! `<name>.err` beside it. Run with `BLESS=1` to write the `.err` files from the current output.
//!
//! A case sets up its environment with leading comment lines: `# env: NAME=value` sets a
//! variable, `# env: -NAME` unsets one of the three Zoom credentials that are set by default.
//! Paths in messages are printed relative to `tests/config/invalid/` so the text is stable.

use std::path::{Path, PathBuf};

use rtms_config::{LoadOptions, MapEnv, Pipeline};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/config/invalid")
}

fn env_for(text: &str) -> MapEnv {
    let mut vars = vec![
        ("ZM_RTMS_CLIENT".to_owned(), "client-id".to_owned()),
        ("ZM_RTMS_SECRET".to_owned(), "client-secret".to_owned()),
        ("ZOOM_SECRET_TOKEN".to_owned(), "webhook-secret".to_owned()),
    ];
    for line in text.lines() {
        let Some(spec) = line.strip_prefix("# env: ") else {
            continue;
        };
        if let Some(name) = spec.strip_prefix('-') {
            vars.retain(|(k, _)| k != name.trim());
        } else if let Some((k, v)) = spec.split_once('=') {
            vars.push((k.trim().to_owned(), v.to_owned()));
        }
    }
    vars.into_iter().collect()
}

/// The error text of one case, with the case directory removed from paths.
fn run_case(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let dir = path.parent().expect("case has a folder");
    let dir = rtms_config_dir_prefix(dir);
    match Pipeline::parse(&text, path, &env_for(&text), LoadOptions::default()) {
        Ok(_) => Err("parsed without error".to_owned()),
        Err(e) => Ok(e.to_string().replace(&dir, "")),
    }
}

/// Both spellings of the folder that messages may use: as given and made absolute / clean.
fn rtms_config_dir_prefix(dir: &Path) -> String {
    format!("{}/", dir.display())
}

#[test]
fn invalid_pipelines_fail_with_the_golden_message() {
    let dir = cases_dir();
    // Messages print the file as given (cases_dir()/x.toml) and resolved paths absolute and
    // clean; pass the clean absolute path so both share one prefix.
    let dir = std::path::absolute(&dir).expect("absolute path");
    let dir: PathBuf = dir.components().fold(PathBuf::new(), |mut acc, c| {
        match c {
            std::path::Component::ParentDir => {
                acc.pop();
            }
            std::path::Component::CurDir => {}
            other => acc.push(other.as_os_str()),
        }
        acc
    });
    let fixtures = dir.parent().expect("tests/config").join("fixtures");
    let bless = std::env::var_os("BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/config/invalid exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 18,
        "expected the golden cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let expected_path = case.with_extension("err");
        let actual = match run_case(case) {
            Ok(text) => text.replace(&format!("{}/", fixtures.display()), "../fixtures/"),
            Err(why) => {
                failures.push(format!("{}: {why}", case.display()));
                continue;
            }
        };
        if bless {
            std::fs::write(&expected_path, format!("{actual}\n")).expect("write .err");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected.trim_end() != actual.trim_end() {
            failures.push(format!(
                "{}:\n  expected: {}\n  actual:   {}",
                case.file_name().unwrap_or_default().to_string_lossy(),
                expected.trim_end(),
                actual
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ (run with BLESS=1 to accept the new text):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
