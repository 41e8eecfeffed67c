//! Which contract a plugin folder is built against (`[plugin] contract` in
//! `rtms-plugin.toml`), and the `wit/` folder each one lays out for the toolchains.
//!
//! - `0.1` (the default): `wit/plugin.wit` alone, package `rtms:plugin@0.1.0`, world `plugin`.
//! - `0.2`: the world `plugin` of `wit/v0.2/http/plugin.wit` (the contract
//!   `rtms:plugin@0.2.0` plus `wasi:http/outgoing-handler`), with the contract and the WASI
//!   0.2.12 packages it needs in `deps/`:
//!
//! ```text
//! wit/plugin.wit              package rtms:plugin-http@0.2.0, world plugin
//! wit/deps/rtms-plugin.wit    package rtms:plugin@0.2.0 (wit/v0.2/plugin.wit)
//! wit/deps/http.wit, io.wit, clocks.wit, cli.wit, random.wit, filesystem.wit, sockets.wit
//! ```
//!
//! Both worlds are named `plugin`, so a toolchain is pointed at `wit` with world `plugin`
//! whichever the version, and C bindings keep their names (`plugin.h`, `plugin_string_t`).

use std::path::Path;

use anyhow::{Context, Result, bail};

/// `rtms:plugin@0.1.0`.
const V01: &str = include_str!("../../../wit/plugin.wit");
/// `rtms:plugin@0.2.0`.
const V02: &str = include_str!("../../../wit/v0.2/plugin.wit");
/// The 0.2 contract plus `wasi:http/outgoing-handler`.
const V02_HTTP: &str = include_str!("../../../wit/v0.2/http/plugin.wit");

/// WASI 0.2.12 as wasmtime-wasi-http 48.0.8 ships it, vendored in `wit/v0.2/deps/`.
const WASI: [(&str, &str); 7] = [
    (
        "deps/cli.wit",
        include_str!("../../../wit/v0.2/deps/cli.wit"),
    ),
    (
        "deps/clocks.wit",
        include_str!("../../../wit/v0.2/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../wit/v0.2/deps/filesystem.wit"),
    ),
    (
        "deps/http.wit",
        include_str!("../../../wit/v0.2/deps/http.wit"),
    ),
    ("deps/io.wit", include_str!("../../../wit/v0.2/deps/io.wit")),
    (
        "deps/random.wit",
        include_str!("../../../wit/v0.2/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../wit/v0.2/deps/sockets.wit"),
    ),
];

/// A contract version a plugin folder targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Contract {
    /// `rtms:plugin@0.1.0`: log, emit, a clock, granted directories.
    #[default]
    V01,
    /// `rtms:plugin@0.2.0` and `wasi:http`: state, secrets, budget, WebSockets, HTTP.
    V02,
}

impl Contract {
    /// Reads `[plugin] contract`: `"0.1"` or `"0.2"` (a patch number is allowed).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "0.1" | "0.1.0" => Ok(Self::V01),
            "0.2" | "0.2.0" => Ok(Self::V02),
            other => bail!(
                "contract {other:?}: this host builds plugins against \"0.1\" (log, emit, files) \
                 or \"0.2\" (also state, secrets, budget, WebSockets and HTTP)"
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V01 => "0.1",
            Self::V02 => "0.2",
        }
    }

    /// The package the plugin's exports belong to.
    pub fn package(self) -> &'static str {
        match self {
            Self::V01 => "rtms:plugin@0.1.0",
            Self::V02 => "rtms:plugin@0.2.0",
        }
    }

    /// The files of the `wit/` folder: paths relative to it, and their text.
    pub fn files(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Self::V01 => vec![("plugin.wit", V01)],
            Self::V02 => {
                let mut files = vec![("plugin.wit", V02_HTTP), ("deps/rtms-plugin.wit", V02)];
                files.extend(WASI);
                files
            }
        }
    }

    /// Writes the `wit/` folder into `dir` (created when missing).
    pub fn write(self, dir: &Path) -> Result<()> {
        for (rel, text) in self.files() {
            let p = dir.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
        }
        Ok(())
    }

    /// What the built-component cache key takes of the contract. For 0.1 it is the text of
    /// `wit/plugin.wit` alone, as before there were two versions, so cached builds stay valid.
    pub fn key_material(self) -> Vec<u8> {
        match self {
            Self::V01 => V01.as_bytes().to_vec(),
            Self::V02 => {
                let mut out = b"contract 0.2\n".to_vec();
                for (rel, text) in self.files() {
                    out.extend_from_slice(rel.as_bytes());
                    out.push(0);
                    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_others_are_refused_with_the_choices() {
        assert_eq!(Contract::parse("0.2").unwrap(), Contract::V02);
        assert_eq!(Contract::parse("0.1.0").unwrap(), Contract::V01);
        let e = format!("{:#}", Contract::parse("1.0").unwrap_err());
        assert!(e.contains("\"1.0\"") && e.contains("\"0.2\""), "{e}");
    }

    /// The 0.2 folder parses as laid out, and its world imports the contract's interfaces
    /// and wasi:http's outgoing handler.
    #[test]
    fn the_v02_folder_resolves_with_http() {
        use wit_parser::Resolve;
        let d = tempfile::tempdir().unwrap();
        Contract::V02.write(d.path()).unwrap();
        let mut r = Resolve::default();
        let (pkg, _) = r.push_dir(d.path()).unwrap();
        let world = r.select_world(&[pkg], Some("plugin")).unwrap();
        let imports: Vec<String> = r.worlds[world]
            .imports
            .keys()
            .map(|k| r.name_world_key(k))
            .collect();
        for want in [
            "rtms:plugin/state@0.2.0",
            "rtms:plugin/websocket@0.2.0",
            "wasi:http/outgoing-handler@0.2.12",
        ] {
            assert!(imports.iter().any(|i| i == want), "{want} in {imports:?}");
        }
    }
}
