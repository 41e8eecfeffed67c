//! The plugin author's tools: `rtms-host plugin new | build | test`.
//!
//! - [`scaffold`]: a new plugin folder for Rust, Python, JavaScript or C that builds and
//!   passes its own test unchanged;
//! - [`compile`]: builds a plugin folder with its language's toolchain ([`toolchain`]
//!   installs the toolchain into a cache on first use), caching the built component;
//! - [`harness`]: runs the component against a recorded or scripted meeting and compares
//!   its outputs and files with the expected ones.
//!
//! A plugin folder is described by `rtms-plugin.toml` ([`manifest`]).

pub mod compile;
pub mod contract;
pub mod harness;
pub mod manifest;
pub mod scaffold;
pub mod script;
pub mod toolchain;

use std::path::PathBuf;

use anyhow::Result;

pub use manifest::{Lang, Manifest};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum PluginCmd {
    /// Create a plugin folder: source, build settings, rtms-plugin.toml, a pipeline and a
    /// test with its expected outputs.
    New(NewArgs),
    /// Build the plugin in the current folder (or --dir) with its language's toolchain.
    Build(BuildArgs),
    /// Build, then run the plugin against its test meeting and compare what it emits and
    /// writes with the expected files.
    Test(TestArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and '-'. Also the folder's name.
    pub name: String,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to create the folder (default: ./NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// The plugin folder (holding rtms-plugin.toml).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TestArgs {
    /// The plugin folder (holding rtms-plugin.toml).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Another meeting than `[test] meeting`: a recording (.jsonl) or a script (.toml).
    #[arg(long)]
    pub meeting: Option<PathBuf>,
    /// Rewrite the expected files with what the plugin produced.
    #[arg(long)]
    pub update: bool,
    /// Test the component as it is, without building first.
    #[arg(long)]
    pub no_build: bool,
}

/// Runs one `plugin` subcommand. `Ok(false)` means a test failed (already reported).
pub async fn run(cmd: PluginCmd) -> Result<bool> {
    match cmd {
        PluginCmd::New(a) => {
            let dir = a.dir.unwrap_or_else(|| PathBuf::from(&a.name));
            scaffold::create(&a.name, a.lang, &dir)?;
            println!(
                "created {} ({}): cd {} && rtms-host plugin test",
                dir.display(),
                a.lang.as_str(),
                dir.display()
            );
            Ok(true)
        }
        PluginCmd::Build(a) => {
            let m = Manifest::load(&a.dir)?;
            let b = tokio::task::spawn_blocking(move || compile::build(&m, false)).await??;
            println!(
                "{} ({} bytes{})",
                b.component.display(),
                b.bytes,
                if b.cached { ", cached" } else { "" }
            );
            Ok(true)
        }
        PluginCmd::Test(a) => {
            let m = Manifest::load(&a.dir)?;
            if !a.no_build {
                let mb = m.clone();
                tokio::task::spawn_blocking(move || compile::build(&mb, false)).await??;
            }
            let o = harness::run(
                &m,
                &harness::TestOptions {
                    meeting: a.meeting,
                    update: a.update,
                    compile_cache: None,
                },
            )
            .await?;
            for d in &o.diffs {
                print!("{d}");
            }
            for p in &o.problems {
                println!("{}: {p}", m.name);
            }
            let p = &o.plugin;
            println!(
                "{}: {} frames in, {} delivered, {} calls, {} errors, {} traps; {} outputs, {} files",
                m.name, o.frames, p.delivered, p.calls, p.errors, p.traps, o.outputs, o.files
            );
            if o.updated {
                println!("updated {}", m.test.expected.display());
                return Ok(true);
            }
            if o.passed() {
                println!("{}: test passed", m.name);
                Ok(true)
            } else {
                println!(
                    "{}: test FAILED ({} file(s) differ); if the change is intended, run \
                     `rtms-host plugin test --update` and commit {}",
                    m.name,
                    o.diffs.len(),
                    m.test.expected.display()
                );
                Ok(false)
            }
        }
    }
}
