//! `rtms-bench`: drives the simulator against the host on loopback and prints a results
//! table and JSON (also written to `target/bench/results.json`).
//!
//! ```text
//! cargo run --release -p rtms-bench -- [all|drain|concurrency|call|reload|startup] [--quick]
//! cargo run --release -p rtms-bench -- stall [--meetings 100] [--quick]
//! cargo run --release -p rtms-bench -- batching [--meetings 300,1000] [--batch-wait 0,20,100]
//! cargo run --release -p rtms-bench -- chaos [--meetings 50] [--minutes 5] [--faults 1000]
//! cargo build --release -p rtms-host && cargo run --release -p rtms-bench -- cluster [--rounds 3] [--quick]
//! ```
//!
//! Modules: [`drain`] (single-stream throughput with raw and client baselines),
//! [`concurrency`] (N real-time meetings: latency, CPU, memory, drops), [`call`] (plugin
//! call cost by batch size), [`reload`] (hot reload under load), [`startup`] (time to
//! ready), [`chaos`] (meetings under random faults beside hostile plugins, judged; not in
//! `all`); [`cluster`] (webhook to first frame with and without `[cluster]`, failover after
//! `kill -9`, the lease renewals' cost; nats-server and `rtms-host` processes; not in
//! `all`); [`stall`] (meetings beside a plugin stuck on a FIFO: keep-alive answer times,
//! the others' exact counts; not in `all`), [`batching`] (`max_wait_ms` 0/20/100 at real
//! time: CPU, calls per frame, latency; not in `all`); [`setup`] (pipelines, host, scripts), [`raw`] (the counting WebSocket reader),
//! [`hist`], [`probe`], [`report`].

mod batching;
mod call;
mod chaos;
mod cluster;
mod concurrency;
mod drain;
mod hist;
mod isolate;
mod probe;
mod raw;
mod reload;
mod report;
mod sdk;
mod sender;
mod setup;
mod stall;
mod startup;

#[path = "../../tests/shared/host_process.rs"]
mod host_process;
#[path = "../../tests/shared/nats.rs"]
mod nats;
#[path = "../../tests/shared/cluster_rig.rs"]
mod rig;

/// What the shared cluster rig takes from its harness: the built components and the warm
/// compile cache.
mod util {
    pub use crate::setup::component;

    pub fn cache_dir() -> std::path::PathBuf {
        crate::setup::warm_cache()
    }
}

use std::path::PathBuf;
use std::time::Instant;

/// The allocator the `rtms-host` binary runs with (jemalloc), so the host is measured as
/// operators run it; every receiver in a run (raw reader, client, host) shares it, and so
/// does the simulator child.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Result;
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    Drain,
    Concurrency,
    Call,
    Reload,
    Startup,
    /// N real-time meetings beside a plugin stuck on a FIFO, and without it (not part of
    /// `all`): keep-alive answer times, the other plugins' exact counts, the stuck one's shed.
    Stall,
    /// Real-time meetings with `[plugin.batch] max_wait_ms` 0, 20, 100 (not part of `all`):
    /// host CPU, calls per frame, latency.
    Batching,
    /// Meetings under random faults beside hostile plugins (not part of `all`); exits
    /// non-zero when a pass criterion fails.
    Chaos,
    /// A cluster of `rtms-host` processes on a nats-server it starts (not part of `all`;
    /// needs `target/release/rtms-host` and Debian's nats-server).
    Cluster,
    /// Internal: the host process of the chaos benchmark.
    #[value(hide = true)]
    HostChild,
    /// Internal: one measurement of a real-time case in a process of its own.
    #[value(hide = true)]
    MeasureChild,
    /// Internal: the simulator process of the concurrency benchmark.
    #[value(hide = true)]
    SimChild,
    /// Internal: the sender process of the drain benchmark.
    #[value(hide = true)]
    SenderChild,
}

/// rtms-host benchmarks (build with --release).
#[derive(Parser, Debug)]
#[command(name = "rtms-bench")]
struct Args {
    /// Which benchmark to run.
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Smaller sizes and shorter windows (under a minute in all).
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON results.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Rounds of the interleaved drain cases (median and spread over them); cluster: runs
    /// of each latency mode and of the failover.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Drain cases to run, comma-separated: raw, client, noop, audio, sdk (default: all).
    /// Cluster: latency, failover, renewals.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Concurrency: meeting counts to run, comma-separated (default 100,1000,2000); batching:
    /// likewise (default 300,1000). Stall and chaos: the first is the number of meetings
    /// (stall 100, chaos 50; 10 quick).
    #[arg(long, value_delimiter = ',')]
    meetings: Vec<usize>,
    /// Batching: the `[plugin.batch] max_wait_ms` values to run, comma-separated (default
    /// 0,20,100).
    #[arg(long, value_delimiter = ',')]
    batch_wait: Vec<u64>,
    /// Concurrency: the host's `[runtime] threads` values to run each meeting count with,
    /// comma-separated (default: the host's default, one run).
    #[arg(long, value_delimiter = ',')]
    threads: Vec<u32>,
    /// Chaos: length of each meeting in minutes (default 5; 1 quick).
    #[arg(long)]
    minutes: Option<f64>,
    /// Chaos: faults in all, over every meeting (default 1000; 120 quick).
    #[arg(long)]
    faults: Option<usize>,
    /// Chaos: the seed of the fault plan (the same seed plans the same faults).
    #[arg(long, default_value_t = 0x5eed_c4a0)]
    seed: u64,
    /// Chaos: the host's RSS may end at most this many MiB above where it started.
    #[arg(long, default_value_t = 128)]
    rss_slack_mib: u64,
    /// Chaos: the host's open descriptors may end at most this many above the start.
    #[arg(long, default_value_t = 16)]
    fd_slack: u64,
    /// Internal (host-child): the pipeline file.
    #[arg(long, hide = true)]
    pipeline: Option<PathBuf>,
    /// Do not pin: by default the benchmark process runs on every core but core 0 and the
    /// traffic source (a child process) on core 0, so neither waits for the other's CPU.
    #[arg(long)]
    no_pin: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Every process of a run (and the simulator child) may need thousands of sockets.
    let nofile = probe::raise_nofile();
    if !matches!(
        args.which,
        Which::SimChild | Which::SenderChild | Which::HostChild | Which::Cluster
    ) {
        let cores = probe::cpus();
        match probe::pin_receiver(!args.no_pin) {
            Ok(true) => eprintln!(
                "pinned: this process on cores {}-{}, senders on core {} ({cores} cores)",
                probe::SENDER_CPU + 1,
                cores - 1,
                probe::SENDER_CPU
            ),
            Ok(false) => eprintln!("not pinned: senders and receivers share the cores"),
            Err(e) => eprintln!("not pinned: {e}"),
        }
        match nofile {
            Ok((was, now, hard)) => {
                eprintln!("descriptors: RLIMIT_NOFILE {now} (was {was}, hard {hard})")
            }
            Err(e) => eprintln!("descriptors: {e}"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    if args.which == Which::SimChild {
        return concurrency::child().await;
    }
    if args.which == Which::MeasureChild {
        return isolate::child(measure_spec).await;
    }
    if args.which == Which::SenderChild {
        return sender::child().await;
    }
    if args.which == Which::HostChild {
        let path = args
            .pipeline
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("host-child needs --pipeline FILE"))?;
        return chaos::host_child(path).await;
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build; benchmark numbers need `cargo run --release -p rtms-bench`"
        );
    }
    let started = Instant::now();
    let mut report = report::Report {
        machine: probe::machine(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        rows: Vec::new(),
    };
    println!("machine: {}", report.machine);
    let all = args.which == Which::All;
    let q = args.quick;
    if all || args.which == Which::Startup {
        startup::run(&mut report, q).await?;
    }
    if all || args.which == Which::Call {
        call::run(&mut report, q).await?;
    }
    if all || args.which == Which::Drain {
        drain::run(&mut report, q, args.rounds.max(1), &args.cases).await?;
    }
    if all || args.which == Which::Reload {
        reload::run(&mut report, q).await?;
    }
    if all || args.which == Which::Concurrency {
        concurrency::run(&mut report, q, &args.meetings, &args.threads).await?;
    }
    if args.which == Which::Stall {
        stall::run(&mut report, q, &args.meetings).await?;
    }
    if args.which == Which::Batching {
        batching::run(&mut report, q, &args.meetings, &args.batch_wait).await?;
    }
    if args.which == Which::Cluster {
        let opts = cluster::Opts {
            parts: args.cases.clone(),
            ..cluster::Opts::new(q, args.rounds.max(1))
        };
        cluster::run(&mut report, &opts).await?;
    }
    let mut passed = true;
    if args.which == Which::Chaos {
        passed = chaos::run(&mut report, &chaos_opts(&args)).await?;
    }
    println!("\n{}", report.table());
    let out = args
        .out
        .unwrap_or_else(|| setup::bench_dir().join("results.json"));
    report.write_json(&out)?;
    println!(
        "results written to {} ({:.0} s)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        passed,
        "chaos: a pass criterion failed (see the verdict above)"
    );
    Ok(())
}

/// One real-time measurement, in the process `isolate` started for it.
async fn measure_spec(
    spec: isolate::Spec,
    n: usize,
    window: std::time::Duration,
) -> Result<concurrency::Window> {
    use isolate::Spec;
    match spec {
        Spec::Raw => concurrency::run_raw(n, window).await,
        Spec::Host { threads } => concurrency::run_host(n, window, threads).await,
        Spec::Batching { wait_ms } => batching::host(n, window, wait_ms).await,
        Spec::Stall { stuck } => stall::host(n, window, stuck).await,
    }
}

/// The chaos case's options from the command line.
fn chaos_opts(args: &Args) -> chaos::Opts {
    let q = args.quick;
    chaos::Opts {
        meetings: args
            .meetings
            .first()
            .copied()
            .unwrap_or(if q { 10 } else { 50 }),
        minutes: args.minutes.unwrap_or(if q { 1.0 } else { 5.0 }),
        faults: args.faults.unwrap_or(if q { 120 } else { 1000 }),
        seed: args.seed,
        rss_slack_mib: args.rss_slack_mib,
        fd_slack: args.fd_slack,
    }
}

#[cfg(test)]
mod tests {
    /// The harness end to end with a few hundred frames through both audio plugins, so it
    /// does not rot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quick_drain_through_the_audio_plugins() {
        let o = super::drain::smoke(300).await.expect("drain runs");
        assert!(o.rate > 0.0, "{o:?}");
        assert_eq!(o.dropped, 0);
    }

    /// The stall case end to end on three meetings: the well-behaved plugins get every
    /// frame with and without the stuck one, every keep-alive is answered, and no call of
    /// the stuck plugin succeeds, each of its frames accounted for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quick_stall_beside_a_plugin_stuck_on_a_fifo() {
        let o = super::stall::measure(3, std::time::Duration::from_secs(1))
            .await
            .expect("stall runs");
        for w in [&o.baseline, &o.stalled] {
            for (plugin, got, sent) in super::stall::others(w) {
                assert!(sent > 0, "{plugin}: frames were sent");
                assert_eq!(got, sent, "{plugin} got every frame sent");
            }
            let ka = w.sent.keepalive;
            assert!(ka.answered > 0, "keep-alives were timed: {ka:?}");
            assert_eq!(ka.timeouts, 0, "every keep-alive answered: {ka:?}");
        }
        assert!(!o.baseline.plugins.contains_key(super::stall::STUCK));
        let s = &o.stalled.plugins[super::stall::STUCK];
        assert!(s.dead_lettered > 0, "the stuck plugin lost frames: {s:?}");
        // The FIFO never opens: every call trapped on its deadline, or (once the directory
        // holds the most parked calls) failed at once with busy.
        assert_eq!(s.errors + s.traps, s.calls, "no call succeeded: {s:?}");
        assert!(
            s.delivered == 0 || s.parked_refused > 0,
            "frames answered only after the parked calls' bound: {s:?}"
        );
        assert_eq!(
            s.routed,
            s.delivered + s.dead_lettered + s.dropped + s.discarded,
            "every frame accounted for: {s:?}"
        );
    }
}
