//! The `rtms-host` command: a thin layer over the library. Each subcommand parses its
//! arguments, sets up logging and calls into `rtms_host`; configuration errors exit with
//! 64 (EX_USAGE) and a one-line message, other failures with 1.

use rtms_host::service::JournalAfter;
use rtms_host::service::handoff::{Inherited, Sockets};
use rtms_host::service::signals::Exit;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rtms_config::{LoadOptions, Pipeline, ProcessEnv};

/// jemalloc, with its background thread returning freed pages to the system (after about 10 s
/// of disuse) even while the process is idle. With the system allocator a burst of
/// short-lived streams (a flood of webhooks, a mass reconnection) left the process at its peak
/// RSS for good: glibc keeps freed memory in per-thread arenas.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for a bad configuration or bad arguments.
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "rtms-host",
    version,
    about = "Process Zoom RTMS meeting media with sandboxed WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the host in production: webhooks in, RTMS streams to plugins.
    Run {
        /// The pipeline file.
        #[arg(long, short, default_value = "pipeline.toml")]
        config: PathBuf,
    },
    /// Check a pipeline file without running anything: every error in it at once, then every
    /// enabled plugin's component loaded and its `init` trial-run with its [plugin.config].
    Validate {
        /// The pipeline file.
        config: PathBuf,
        /// Check the file only: do not load the components or trial-run their `init`.
        #[arg(long)]
        no_load: bool,
        /// Load and trial-run the components (the default; kept for older scripts).
        #[arg(long, hide = true, conflicts_with = "no_load")]
        load: bool,
    },
    /// Run the Zoom simulator alone (signed webhooks, signaling and media servers).
    Simulate(rtms_sim::cli::SimulateArgs),
    /// Push a recorded session through a pipeline, with no network.
    Replay(rtms_host::service::replay::ReplayArgs),
    /// Simulator + host + example plugins in one process: a scripted meeting end to end.
    Demo(rtms_host::cli::demo::DemoArgs),
    /// Print a running host's live frames and plugin outputs (from its admin listener).
    Tap(rtms_host::cli::tap::TapArgs),
    /// Start a meeting's stream through Zoom's REST API and wait for it to reach the host.
    Start(rtms_host::cli::zoom::RtmsArgs),
    /// Stop a meeting's stream through Zoom's REST API.
    Stop(rtms_host::cli::zoom::RtmsArgs),
    /// Pause a meeting's stream through Zoom's REST API.
    Pause(rtms_host::cli::zoom::RtmsArgs),
    /// Resume a paused stream through Zoom's REST API.
    Resume(rtms_host::cli::zoom::RtmsArgs),
    /// Write, build and test a plugin: `plugin new`, `plugin build`, `plugin test`.
    Plugin {
        #[command(subcommand)]
        cmd: rtms_host::plugin_dev::PluginCmd,
    },
}

/// Logs go to stderr; `RUST_LOG` filters them (default per command) and
/// `RTMS_LOG_FORMAT=json` makes them one JSON object per line for log collectors.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("RTMS_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Sockets passed by a predecessor (hand-off) or by systemd, taken while this process has
    // one thread: taking them clears their environment variables.
    let inherited = match rtms_host::service::handoff::Inherited::take() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("rtms-host: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtms-host: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Run { config } => {
                init_logging("info");
                run(config, inherited).await
            }
            Cmd::Validate {
                config, no_load, ..
            } => {
                let load = !no_load;
                init_logging("warn");
                validate(config, load).await
            }
            Cmd::Simulate(args) => {
                init_logging("info");
                report(rtms_sim::cli::simulate(args).await)
            }
            Cmd::Replay(args) => {
                init_logging("warn");
                report(rtms_host::service::replay::replay(args).await)
            }
            Cmd::Demo(args) => {
                init_logging("warn");
                report(rtms_host::cli::demo::demo(args).await)
            }
            Cmd::Tap(args) => {
                init_logging("warn");
                report(rtms_host::cli::tap::tap(args).await)
            }
            Cmd::Start(args) => rtms_action("start", args).await,
            Cmd::Stop(args) => rtms_action("stop", args).await,
            Cmd::Pause(args) => rtms_action("pause", args).await,
            Cmd::Resume(args) => rtms_action("resume", args).await,
            Cmd::Plugin { cmd } => {
                init_logging(&rtms_host::plugin_dev::log_filter(&cmd));
                match rtms_host::plugin_dev::run(cmd).await {
                    Ok(true) => ExitCode::SUCCESS,
                    Ok(false) => ExitCode::FAILURE,
                    Err(e) => {
                        eprintln!("rtms-host: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    })
}

async fn rtms_action(action: &str, args: rtms_host::cli::zoom::RtmsArgs) -> ExitCode {
    init_logging("warn");
    report(rtms_host::cli::zoom::rtms(action, args).await)
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtms-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: PathBuf, inherited: Inherited) -> ExitCode {
    let pipeline = match Pipeline::load(&config, &ProcessEnv, LoadOptions::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rtms-host: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    for w in &pipeline.warnings {
        tracing::warn!("{w}");
    }
    let Inherited {
        webhook,
        admin,
        predecessor,
    } = inherited;
    let listener = match listen(webhook, pipeline.server.listen, "server.listen").await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let admin_listener = if pipeline.admin.enabled {
        match listen(admin, pipeline.admin.listen, "admin.listen").await {
            Ok(l) => Some(l),
            Err(code) => return code,
        }
    } else {
        None
    };
    let sockets = match Sockets::of(&listener, admin_listener.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtms-host: cannot keep the listening sockets for a hand-off: {e}");
            return ExitCode::FAILURE;
        }
    };
    let signals = match rtms_host::service::signals::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtms-host: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (ready, journal_after) = successor_link(predecessor);
    let svc = match rtms_host::service::Service::start(
        pipeline,
        Box::new(ProcessEnv),
        listener,
        rtms_host::service::StartOptions {
            admin_listener,
            journal_after,
            ..Default::default()
        },
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtms-host: {e:#}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Some((tx, p)) = ready {
        // Serving: tell the predecessor, then take its streams once it released them.
        let _ = tx.send(p);
    }
    serve(svc, signals, sockets).await
}

/// What tells the predecessor this process serves, once it does.
type ReadyLink = (
    tokio::sync::oneshot::Sender<rtms_host::service::handoff::Predecessor>,
    rtms_host::service::handoff::Predecessor,
);

fn successor_link(
    predecessor: Option<rtms_host::service::handoff::Predecessor>,
) -> (Option<ReadyLink>, Option<JournalAfter>) {
    let Some(p) = predecessor else {
        return (None, None);
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<rtms_host::service::handoff::Predecessor>();
    let after: JournalAfter = Box::pin(async move {
        if let Ok(p) = rx.await {
            match p.ready() {
                Ok(released) => released.await,
                Err(e) => tracing::error!("hand-off: {e:#}"),
            }
        }
    });
    (Some((tx, p)), Some(after))
}

/// Serves until SIGINT / SIGTERM (shutdown) or a SIGUSR2 hand-off that succeeds.
async fn serve(
    svc: rtms_host::service::Service,
    mut signals: rtms_host::service::signals::Signals,
    sockets: Sockets,
) -> ExitCode {
    loop {
        match signals.wait(|| svc.request_reload()).await {
            Exit::Shutdown => {
                let m = svc.shutdown().await;
                tracing::info!(
                    frames = m.frames_in,
                    sessions = m.sessions_started,
                    "stopped"
                );
                return ExitCode::SUCCESS;
            }
            Exit::HandOff if !svc.can_hand_off() => {
                tracing::error!(
                    "SIGUSR2 ignored: a hand-off needs [runtime] journal_dir, where the successor finds the streams"
                );
            }
            Exit::HandOff => match rtms_host::service::handoff::start_successor(&sockets).await {
                Ok(successor) => {
                    tracing::info!(pid = successor.pid, "hand-off: the successor is ready");
                    let m = svc.hand_off().await;
                    tracing::info!(
                        frames = m.frames_in,
                        sessions = m.sessions_started,
                        successor = successor.pid,
                        "handed off"
                    );
                    return ExitCode::SUCCESS;
                }
                Err(e) => {
                    tracing::error!("hand-off failed, this process keeps serving: {e:#}");
                }
            },
        }
    }
}

/// The listener for `addr`: the inherited one when there is one, else bound now. `Err` is
/// the exit code, after the error was printed.
async fn listen(
    inherited: Option<std::net::TcpListener>,
    addr: std::net::SocketAddr,
    key: &str,
) -> Result<tokio::net::TcpListener, ExitCode> {
    let bound = match inherited {
        Some(l) => {
            tracing::info!(addr = ?l.local_addr().ok(), key, "serving an inherited listening socket");
            tokio::net::TcpListener::from_std(l)
        }
        None => tokio::net::TcpListener::bind(addr).await,
    };
    bound.map_err(|e| {
        eprintln!("rtms-host: cannot listen on {addr} ({key}): {e}");
        ExitCode::FAILURE
    })
}

async fn validate(config: PathBuf, load: bool) -> ExitCode {
    let pipeline = match Pipeline::load(&config, &ProcessEnv, LoadOptions::validate_only()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    for w in &pipeline.warnings {
        eprintln!("warning: {w}");
    }
    if load {
        let rt = match rtms_host::sandbox::Runtime::new(
            &rtms_host::pipeline::build::runtime_config(&pipeline),
        ) {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("{e:#}");
                return ExitCode::FAILURE;
            }
        };
        let errors = rtms_host::pipeline::build::check_plugins(&pipeline, &rt).await;
        if !errors.is_empty() {
            for e in &errors {
                eprintln!("{e}");
            }
            if errors.len() > 1 {
                eprintln!("{} errors in all", errors.len());
            }
            return ExitCode::from(EX_USAGE);
        }
    }
    println!(
        "{}: ok ({} plugin(s), {} sink(s))",
        config.display(),
        pipeline.plugins.len(),
        pipeline.sinks.len()
    );
    ExitCode::SUCCESS
}
