//! Property test: no input makes parsing panic. Random bytes, random TOML-ish tokens and
//! random mutations of `examples/pipeline.toml`, from a fixed seed so failures reproduce.

use std::path::Path;

use rtms_config::{LoadOptions, MapEnv, Pipeline};

/// xorshift64*: small, deterministic, good enough to explore inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn try_parse(text: &str) {
    let env = MapEnv::new().with("RTMS_KEEPALIVE_INTERVAL_MS", "3000");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipeline.toml");
    for opts in [
        LoadOptions::default(),
        LoadOptions {
            require_secrets: false,
            check_components: false,
        },
    ] {
        if let Err(e) = Pipeline::parse(text, &path, &env, opts) {
            // Formatting the error must not panic either.
            let _ = e.to_string();
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..1500 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        try_parse(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn random_tokens_never_panic() {
    const TOKENS: &[&str] = &[
        "version",
        " = ",
        "1",
        "2",
        "\n",
        "[",
        "]",
        "[[",
        "]]",
        "plugin",
        "sink",
        "rtms",
        "server",
        ".",
        "\"",
        "'",
        "{",
        "}",
        ",",
        "name",
        "media",
        "[\"audio\"]",
        "-1",
        "1e999",
        "nan",
        "18446744073709551616",
        "true",
        "#",
        "é",
        "\u{0}",
        "queue",
        "capacity",
        "type",
        "http",
        "url",
        "dir",
        "guest",
        "host",
        "config",
        "=",
        "1979-05-27",
        "\"\"\"",
        "0x10",
    ];
    let mut rng = Rng(42);
    for _ in 0..1500 {
        let n = rng.below(40);
        let text: String = (0..n).map(|_| TOKENS[rng.below(TOKENS.len())]).collect();
        try_parse(&text);
        try_parse(&format!("version = 1\n{text}"));
    }
}

#[test]
fn mutations_of_the_example_never_panic() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipeline.toml");
    let original = std::fs::read_to_string(path).expect("examples/pipeline.toml");
    let lines: Vec<&str> = original.lines().collect();
    let mut rng = Rng(7);
    for _ in 0..400 {
        let mut text: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        for _ in 0..=rng.below(4) {
            let i = rng.below(text.len());
            match rng.below(6) {
                0 => {
                    text.remove(i);
                }
                1 => {
                    let j = rng.below(text.len());
                    text.swap(i, j);
                }
                2 => {
                    let dup = text[i].clone();
                    text.insert(i, dup);
                }
                3 => {
                    // Cut a line at a random character boundary.
                    let l = &text[i];
                    let cut = l
                        .char_indices()
                        .map(|(k, _)| k)
                        .nth(rng.below(l.chars().count() + 1))
                        .unwrap_or(l.len());
                    text[i] = l[..cut].to_owned();
                }
                4 => {
                    // Replace a value with another line's value.
                    let j = rng.below(text.len());
                    if let (Some((k, _)), Some((_, v))) =
                        (text[i].split_once('='), text[j].split_once('='))
                    {
                        text[i] = format!("{k}={v}");
                    }
                }
                _ => {
                    let l = &mut text[i];
                    let digits = ["0", "99999999999999999999", "-5", "\"x\"", "[]", "{}"];
                    if let Some((k, _)) = l.split_once('=') {
                        *l = format!("{k}= {}", digits[rng.below(digits.len())]);
                    }
                }
            }
        }
        try_parse(&text.join("\n"));
    }
}
