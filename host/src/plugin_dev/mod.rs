//! The plugin author's tools: `rtms-host plugin new | build | test | run`.
//!
//! - [`scaffold`], [`scaffold_v02`]: a new plugin folder for Rust, Python, JavaScript or C
//!   that builds and passes its own test unchanged ([`contract`]: against 0.1 or 0.2);
//! - [`compile`]: builds a plugin folder with its language's toolchain ([`toolchain`]
//!   installs the toolchain into a cache on first use), caching the built component;
//! - [`harness`]: runs the component against a recorded or scripted meeting and compares
//!   its outputs and files with the expected ones ([`test_net`]: its HTTP calls answered
//!   from recorded exchanges; [`script`]: a meeting script played and recorded the same
//!   way every time);
//! - [`live`]: runs the component in a live pipeline against the local simulator.
//!
//! A plugin folder is described by `rtms-plugin.toml` ([`manifest`]).

pub mod compile;
pub mod contract;
pub mod harness;
pub mod live;
pub mod manifest;
pub mod scaffold;
pub mod scaffold_v02;
pub mod script;
pub mod test_net;
pub mod toolchain;

use std::path::PathBuf;

use anyhow::{Context, Result};

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
    /// Build, then run the plugin in a live pipeline against the local simulator: the
    /// simulator plays a meeting over webhooks and WebSockets on 127.0.0.1, the plugin's log
    /// lines and outputs are shown, its files and outputs land in out/.
    Run(RunArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The plugin folder (holding rtms-plugin.toml).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The meeting script to play (default: `[test] meeting` when it is a script, else
    /// the built-in stand-up).
    #[arg(long)]
    pub meeting: Option<PathBuf>,
    /// realtime plays the meeting at its own pace; fast as fast as the host reads.
    #[arg(long, value_enum, default_value = "realtime")]
    pub pace: rtms_sim::Pace,
    /// Where the plugin's directory (`files/`) and `outputs.jsonl` go (default: out/ in
    /// the plugin folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run the component as it is, without building first.
    #[arg(long)]
    pub no_build: bool,
    /// Hide the plugin's own log lines.
    #[arg(long, short)]
    pub quiet: bool,
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
    /// The contract: "0.2" (state, secrets, budget, HTTP; the default for python, js and
    /// c) or "0.1" (log, emit, files; the only one for rust, whose 0.2 route is the SDK).
    #[arg(long)]
    pub contract: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// The plugin folder (holding rtms-plugin.toml).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Leave out the debug info (C: DWARF; a trap then names the function but not the
    /// line), for production. The default keeps it.
    #[arg(long)]
    pub release: bool,
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
    /// Send the plugin's HTTP requests to the real services of its [net] list (this uses
    /// the network) and write them to [test] http, for later runs to replay.
    #[arg(long)]
    pub record: bool,
    /// Hide the plugin's own log lines (host.log, stdout, stderr), shown by default; the
    /// host's warnings stay.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The default log filter of a `plugin` subcommand (`RUST_LOG` replaces it): the host's
/// warnings, and for `plugin test` and `plugin run` the plugin's own log lines from `info`
/// up (their target is [`crate::sandbox::store::LOG_TARGET`]) unless `--quiet`.
pub fn log_filter(cmd: &PluginCmd) -> String {
    let plugin = match cmd {
        PluginCmd::Test(a) if !a.quiet => "info",
        PluginCmd::Run(a) if !a.quiet => "info",
        _ => "off",
    };
    format!("warn,{}={plugin}", crate::sandbox::store::LOG_TARGET)
}

/// `plugin new`: the skeleton of the contract asked for, or of the language's default.
fn new(a: &NewArgs, dir: &std::path::Path) -> Result<()> {
    let contract = match (&a.contract, a.lang) {
        (Some(c), _) => contract::Contract::parse(c).context("--contract")?,
        (None, Lang::Rust) => contract::Contract::V01,
        (None, _) => contract::Contract::V02,
    };
    match contract {
        contract::Contract::V01 => scaffold::create(&a.name, a.lang, dir),
        contract::Contract::V02 => scaffold_v02::create(&a.name, a.lang, dir),
    }
}

/// Runs one `plugin` subcommand. `Ok(false)` means a test failed (already reported).
pub async fn run(cmd: PluginCmd) -> Result<bool> {
    match cmd {
        PluginCmd::New(a) => {
            let dir = a.dir.clone().unwrap_or_else(|| PathBuf::from(&a.name));
            new(&a, &dir)?;
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
            let profile = if a.release {
                compile::Profile::Release
            } else {
                compile::Profile::Debug
            };
            let b = tokio::task::spawn_blocking(move || compile::build_as(&m, false, profile))
                .await??;
            println!(
                "{} ({} bytes{})",
                b.component.display(),
                b.bytes,
                if b.cached { ", cached" } else { "" }
            );
            Ok(true)
        }
        PluginCmd::Test(a) => test(a).await,
        PluginCmd::Run(a) => run_live(a).await,
    }
}

/// `plugin run`: builds unless told not to, plays the meeting, reports. `Ok(false)`: the
/// plugin trapped, returned an error or got nothing, or the host refused a webhook.
async fn run_live(a: RunArgs) -> Result<bool> {
    let m = Manifest::load(&a.dir)?;
    if !a.no_build {
        let mb = m.clone();
        tokio::task::spawn_blocking(move || compile::build(&mb, false)).await??;
    }
    let opts = live::RunOptions {
        meeting: a.meeting,
        pace: a.pace,
        out: a.out,
        compile_cache: None,
    };
    let r = live::run(&m, &opts).await?;
    for refusal in &r.refusals {
        println!("{}: the host refused a {refusal}", m.name);
    }
    let p = &r.plugin;
    println!(
        "{}: meeting ended (stop_reason {}): {} frames delivered, {} calls, {} errors, {} traps; \
         {} outputs in {}, files in {}",
        m.name,
        r.stop_reason,
        p.delivered,
        p.calls,
        p.errors,
        p.traps,
        r.outputs,
        r.out.join("outputs.jsonl").display(),
        r.out.join("files").display()
    );
    if !r.ok() {
        println!(
            "{}: run FAILED (see above: the host's refusal, or the plugin's traps and errors)",
            m.name
        );
    }
    Ok(r.ok())
}

/// `plugin test`: builds unless told not to, runs the test, reports. `Ok(false)`: it failed.
async fn test(a: TestArgs) -> Result<bool> {
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
            record: a.record,
        },
    )
    .await?;
    for d in &o.diffs {
        print!("{d}");
    }
    for p in o.problems.iter().chain(&o.trap) {
        println!("{}: {p}", m.name);
    }
    let p = &o.plugin;
    println!(
        "{}: {} frames in, {} delivered, {} calls, {} errors, {} traps; {} outputs, {} files",
        m.name, o.frames, p.delivered, p.calls, p.errors, p.traps, o.outputs, o.files
    );
    if let (Some(n), Some(f)) = (o.recorded, &m.test.http) {
        println!("recorded {n} HTTP exchange(s) in {}", f.display());
    }
    if o.updated {
        println!("updated {}", m.test.expected.display());
        return Ok(true);
    }
    if o.passed() {
        println!("{}: test passed", m.name);
        Ok(true)
    } else if o.trap.is_some() {
        // Never a hint to accept the outputs: a trap is a bug to fix, not a change to record.
        let what = if p.traps > 0 {
            format!("the plugin trapped {} time(s)", p.traps)
        } else {
            "the plugin failed to start".to_owned()
        };
        println!(
            "{}: test FAILED: {what} (the reason is above; the plugin's log lines too)",
            m.name
        );
        Ok(false)
    } else if o.diffs.is_empty() || !o.problems.is_empty() {
        // Outputs that differ because of an error are not to be accepted either.
        println!("{}: test FAILED (see above)", m.name);
        Ok(false)
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
