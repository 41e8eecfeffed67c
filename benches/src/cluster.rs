//! Cluster: what `[cluster]` costs and how fast it fails over, measured on real processes
//! with the cluster tests' rig (`tests/shared/cluster_rig.rs`): a nats-server it starts
//! itself (fresh data directory, monitoring endpoint on a port of its choosing), real
//! `rtms-host run` processes (`target/release/rtms-host`, or `RTMS_HOST_BIN`) behind a TCP
//! balancer, and the simulator with Zoom's keep-alive (10 s). The hosts run the cluster's
//! default timings (`lease_ms` 10000, `renew_ms` 3333).
//!
//! Every time is read from the hosts' JSON logs (their `timestamp`, the wall clock of this
//! one machine), against this process's wall clock when it started the meeting or sent the
//! kill:
//!
//! - **webhook to first frame**: from the simulator's start of a meeting (it posts the
//!   started webhook at once) to the owner's `session's first frame` line, for the same
//!   meetings on the same three hosts with and without `[cluster]`, alternated run by run;
//!   `session started` (signaling and media handshakes done) splits it.
//! - **failover**: `kill -9` of one of three hosts carrying 30 live meetings; for each of
//!   its streams, from the kill to the survivors' `cluster: lease lapsed` (detection),
//!   `cluster: stream taken` (claim), `session started` (reconnected) and `session's first
//!   frame` (first frame delivered).
//! - **renewals**: one host owning N idle streams (meetings that send nothing but Zoom's
//!   keep-alives) in a cluster of three, then the same host once they ended: its CPU
//!   (`/proc/<pid>/stat`) and the engine's traffic (`/varz` counters) over equal windows;
//!   the same N streams on a host without `[cluster]` give the share that is not the lease's.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use rtms_sim::{MeetingHandle, MeetingScript, Simulator};
use serde_json::json;

use crate::report::{Report, Row};
use crate::rig::{HostSpec, Rig, http_get};
use crate::{host_process, probe, setup};

/// The cluster's default lease and renewal period, which the hosts run with.
const LEASE_MS: u64 = 10_000;
const RENEW_MS: u64 = 3_333;
/// The longest wait for anything the benchmark waits for.
const LIMIT: Duration = Duration::from_secs(120);

/// Sizes of one run of the case.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Runs of each latency mode and of the failover.
    pub runs: usize,
    /// Meetings per latency run.
    pub meetings: usize,
    /// Live meetings when a host is killed.
    pub failover_meetings: usize,
    /// Idle streams the renewal windows hold.
    pub idle: usize,
    /// Length of each renewal window (the median of three is reported).
    pub window: Duration,
    /// Parts to run: latency, failover, renewals (empty: all).
    pub parts: Vec<String>,
}

impl Opts {
    /// `runs` latency runs of each mode and failover runs (1 when `quick`).
    pub fn new(quick: bool, runs: usize) -> Self {
        Self {
            runs: if quick { 1 } else { runs },
            meetings: if quick { 5 } else { 10 },
            failover_meetings: 30,
            idle: if quick { 50 } else { 500 },
            window: Duration::from_secs(if quick { 5 } else { 30 }),
            parts: Vec::new(),
        }
    }

    fn runs(&self, part: &str) -> bool {
        self.parts.is_empty() || self.parts.iter().any(|p| p == part)
    }
}

pub async fn run(report: &mut Report, opts: &Opts) -> Result<()> {
    let (bin, why) = host_process::host_binary();
    if !bin.exists() {
        bail!(
            "the cluster case runs {} ({why}), which does not exist: build it first with `cargo build --release -p rtms-host`",
            bin.display()
        );
    }
    warn_if_stale(&bin);
    println!(
        "cluster: hosts run {}; lease_ms {LEASE_MS}, renew_ms {RENEW_MS}",
        bin.display()
    );
    if opts.runs("latency") {
        latency(report, opts).await?;
    }
    if opts.runs("failover") {
        failover(report, opts).await?;
    }
    if opts.runs("renewals") {
        renewals(report, opts).await?;
    }
    Ok(())
}

/// Warns when the host binary is older than this benchmark's own (it may lack a change).
fn warn_if_stale(bin: &std::path::Path) {
    let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let me = std::env::current_exe().ok();
    if let (Some(host), Some(bench)) = (mtime(bin), me.as_deref().and_then(mtime))
        && host < bench
    {
        eprintln!(
            "warning: {} is older than this benchmark; rebuild it (cargo build --release -p rtms-host) if the host changed",
            bin.display()
        );
    }
}

/// The simulator: the hosts' credentials, Zoom's timers but for webhook retries, which
/// come after a second (hundreds of meetings start at once from one address, past the
/// host's `max_connections_per_peer`).
async fn simulator() -> Result<Simulator> {
    Simulator::start(rtms_sim::SimConfig {
        webhook_secret: host_process::WEBHOOK_SECRET.into(),
        client_id: host_process::CLIENT_ID.into(),
        client_secret: host_process::CLIENT_SECRET.into(),
        webhook_retry_delay: Duration::from_secs(1),
        webhook_max_attempts: 20,
        ..setup::sim_config()
    })
    .await
}

/// `n` hosts with the default cluster timings, with or without `[cluster]`.
async fn rig(n: usize, cluster: bool, tweak: impl Fn(usize, &mut HostSpec)) -> Result<Rig> {
    let sim = simulator().await?;
    Ok(Rig::start_on(n, sim, |i, spec| {
        spec.cluster = cluster;
        spec.lease_ms = LEASE_MS;
        spec.renew_ms = RENEW_MS;
        tweak(i, spec);
    })
    .await)
}

/// One JSON log line of a host: its time, message and fields.
struct Line {
    at: SystemTime,
    message: String,
    fields: serde_json::Value,
}

impl Line {
    fn parse(text: &str) -> Option<Line> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let ts = v["timestamp"].as_str()?;
        let at =
            time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
        Some(Line {
            at: at.into(),
            message: v["fields"]["message"].as_str()?.to_owned(),
            fields: v["fields"].clone(),
        })
    }

    /// The stream the line is about (`stream` or `stream_id`).
    fn stream(&self) -> Option<&str> {
        self.fields["stream"]
            .as_str()
            .or_else(|| self.fields["stream_id"].as_str())
    }
}

/// The first line of the hosts at `hosts` with `message` about `stream`, if logged yet.
fn first(rig: &Rig, hosts: &[usize], message: &str, stream: &str) -> Option<Line> {
    hosts
        .iter()
        .filter_map(|i| rig.hosts[*i].as_ref())
        .flat_map(|h| h.logs())
        .filter(|l| l.contains(message) && l.contains(stream))
        .filter_map(|l| Line::parse(&l))
        .filter(|l| l.message == message && l.stream() == Some(stream))
        .min_by_key(|l| l.at)
}

/// Waits (polling the logs every 10 ms) until `message` about `stream` is logged by one of
/// `hosts`.
async fn logged(rig: &Rig, hosts: &[usize], message: &str, stream: &str) -> Result<Line> {
    let start = Instant::now();
    loop {
        if let Some(l) = first(rig, hosts, message, stream) {
            return Ok(l);
        }
        if start.elapsed() > LIMIT {
            bail!("no {message:?} for stream {stream} within {LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (polling the logs every 50 ms, one pass over them each time) until `message` was
/// logged about every one of `streams` by one of `hosts`.
async fn all_logged(rig: &Rig, hosts: &[usize], message: &str, streams: &[&str]) -> Result<()> {
    let start = Instant::now();
    let mut left: std::collections::HashSet<&str> = streams.iter().copied().collect();
    loop {
        for h in hosts.iter().filter_map(|i| rig.hosts[*i].as_ref()) {
            for l in h.logs().iter().filter(|l| l.contains(message)) {
                if let Some(line) = Line::parse(l)
                    && line.message == message
                {
                    line.stream().map(|s| left.remove(s));
                }
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        if start.elapsed() > LIMIT {
            bail!(
                "no {message:?} within {LIMIT:?} for {} of {} streams, such as {:?}",
                left.len(),
                streams.len(),
                left.iter().next()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Milliseconds from `from` to `to` (negative when `to` came first).
fn ms(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

/// The `q` quantile (nearest rank) of `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// A median row and a p90 row for `values`.
fn spread(report: &mut Report, case: &str, values: &[f64], note: &str) {
    let med = quantile(values, 0.5);
    let p90 = quantile(values, 0.9);
    let extra = json!({"values": values});
    let mut row = Row::new("cluster", &format!("{case} (median)"), "ms", med).note(format!(
        "{note}; {} samples, p90 {p90:.0} ms, max {:.0} ms",
        values.len(),
        quantile(values, 1.0)
    ));
    row.extra = extra;
    report.push(row);
    report.push(Row::new("cluster", &format!("{case} (p90)"), "ms", p90));
}

/// (a) Webhook to first frame, alternating runs without and with `[cluster]`.
async fn latency(report: &mut Report, opts: &Opts) -> Result<()> {
    let mut times: [(Vec<f64>, Vec<f64>); 2] = Default::default();
    let mut run_medians: [Vec<f64>; 2] = Default::default();
    let mut kinds = std::collections::BTreeSet::new();
    for run in 0..opts.runs {
        for (mode, cluster) in [(0, false), (1, true)] {
            let (handshake, first) = latency_run(opts.meetings, cluster, &mut kinds).await?;
            println!(
                "  cluster      latency run {} {}: median {:.1} ms to the first frame",
                run + 1,
                if cluster { "with [cluster]" } else { "without" },
                quantile(&first, 0.5)
            );
            run_medians[mode].push(quantile(&first, 0.5));
            times[mode].0.extend(handshake);
            times[mode].1.extend(first);
        }
    }
    for (mode, name) in [(0, "alone"), (1, "cluster")] {
        let runs = &run_medians[mode];
        let note = format!(
            "{} runs x {} meetings, three hosts {}; first frames: {kinds:?}; run medians {:.0}-{:.0} ms",
            opts.runs,
            opts.meetings,
            if mode == 1 {
                "with [cluster]"
            } else {
                "without [cluster]"
            },
            quantile(runs, 0.0),
            quantile(runs, 1.0)
        );
        spread(
            report,
            &format!("webhook to handshakes done, {name}"),
            &times[mode].0,
            "session started",
        );
        spread(
            report,
            &format!("webhook to first frame, {name}"),
            &times[mode].1,
            &note,
        );
    }
    Ok(())
}

/// One latency run: meetings started one after another, each once the previous one's
/// first frame arrived. Returns (to handshakes done, to first frame) per meeting, in ms.
async fn latency_run(
    meetings: usize,
    cluster: bool,
    kinds: &mut std::collections::BTreeSet<String>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let rig = rig(3, cluster, |_, _| {}).await?;
    let all = [0, 1, 2];
    let url = rig.lb.webhook_url();
    let (mut handshake, mut first_frame) = (Vec::new(), Vec::new());
    let mut live = Vec::new();
    for _ in 0..meetings {
        let sent = SystemTime::now();
        let m = rig.meeting_at(&url, 10, 2);
        let first = logged(&rig, &all, "session's first frame", m.stream_id()).await?;
        let started = logged(&rig, &all, "session started", m.stream_id()).await?;
        kinds.insert(first.fields["kind"].as_str().unwrap_or("?").to_owned());
        handshake.push(ms(sent, started.at));
        first_frame.push(ms(sent, first.at));
        live.push(m);
    }
    for m in &live {
        tokio::time::timeout(LIMIT, m.finished())
            .await
            .context("a latency meeting did not end")?;
    }
    Ok((handshake, first_frame))
}

/// When each phase of one stream's takeover happened, in ms after the kill.
#[derive(Default)]
struct Phases {
    detection: Vec<f64>,
    claim: Vec<f64>,
    reconnect: Vec<f64>,
    first_frame: Vec<f64>,
}

/// (b) Failover after `kill -9` of one host of three.
async fn failover(report: &mut Report, opts: &Opts) -> Result<()> {
    let mut p = Phases::default();
    let mut victims = 0;
    let mut doubled = 0;
    for run in 0..opts.runs {
        let before = p.first_frame.len();
        let (n, d) = failover_run(opts.failover_meetings, &mut p).await?;
        println!(
            "  cluster      failover run {}: {n} streams taken over, first frame median {:.0} ms after the kill",
            run + 1,
            quantile(&p.first_frame[before..], 0.5)
        );
        victims += n;
        doubled += d;
    }
    let note = format!(
        "kill -9 of 1 host of 3 with {} live meetings, {} runs: {victims} streams taken over; streams ever with two clients: {doubled}",
        opts.failover_meetings, opts.runs
    );
    spread(report, "failover: lease lapse noticed", &p.detection, &note);
    spread(
        report,
        "failover: claimed",
        &p.claim,
        "cluster: stream taken",
    );
    spread(
        report,
        "failover: reconnected",
        &p.reconnect,
        "signaling and media handshakes done",
    );
    spread(
        report,
        "failover: first frame",
        &p.first_frame,
        "first frame of the resumed session",
    );
    // Each phase on its own, stream by stream.
    let step = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| b - a).collect::<Vec<_>>();
    let phases = [
        ("claim after detection", step(&p.detection, &p.claim)),
        ("reconnected after claim", step(&p.claim, &p.reconnect)),
        (
            "first frame after reconnection",
            step(&p.reconnect, &p.first_frame),
        ),
    ];
    for (what, v) in phases {
        spread(report, &format!("failover: {what}"), &v, "per stream");
    }
    Ok(())
}

/// One failover run: returns the streams taken over and those the simulator saw two
/// clients for at once.
async fn failover_run(meetings: usize, p: &mut Phases) -> Result<(usize, usize)> {
    let mut rig = rig(3, true, |_, _| {}).await?;
    let all = [0, 1, 2];
    let url = rig.lb.webhook_url();
    // 150 lines 200 ms apart: 30 s, long enough for a takeover at the default lease.
    let live: Vec<MeetingHandle> = (0..meetings)
        .map(|_| rig.meeting_at(&url, 150, 10))
        .collect();
    let ids: Vec<&str> = live.iter().map(MeetingHandle::stream_id).collect();
    all_logged(&rig, &all, "session's first frame", &ids).await?;
    all_logged(&rig, &all, "cluster: stream taken", &ids).await?;
    let victims: Vec<&MeetingHandle> = live
        .iter()
        .filter(|m| first(&rig, &[0], "cluster: stream taken", m.stream_id()).is_some())
        .collect();
    // A crash comes at any point of the renewal period: the kill waits a spread-out part of
    // it (the time's own nanoseconds pick it).
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .subsec_nanos();
    tokio::time::sleep(Duration::from_millis(u64::from(nanos) % RENEW_MS)).await;
    let host = rig.hosts[0].take().context("host-a runs")?;
    let killed = SystemTime::now();
    tokio::task::spawn_blocking(move || host.kill9()).await?;
    rig.rebalance();
    let rest = [1, 2];
    for m in &victims {
        let s = m.stream_id();
        let first_frame = logged(&rig, &rest, "session's first frame", s).await?;
        let lapse = logged(
            &rig,
            &rest,
            "cluster: lease lapsed; taking the stream over",
            s,
        );
        p.detection.push(ms(killed, lapse.await?.at));
        p.claim.push(ms(
            killed,
            logged(&rig, &rest, "cluster: stream taken", s).await?.at,
        ));
        p.reconnect.push(ms(
            killed,
            logged(&rig, &rest, "session started", s).await?.at,
        ));
        p.first_frame.push(ms(killed, first_frame.at));
    }
    let doubled = live
        .iter()
        .filter(|m| m.ledger().one_client_at_a_time().is_err())
        .count();
    Ok((victims.len(), doubled))
}

/// A host's CPU, its renewals and the engine's counters at one moment.
struct Mark {
    at: Instant,
    cpu_s: f64,
    renewals: f64,
    varz: [f64; 4],
}

/// The `/varz` counters: in_msgs, out_msgs, in_bytes, out_bytes.
const VARZ: [&str; 4] = ["in_msgs", "out_msgs", "in_bytes", "out_bytes"];

/// A counter of the host's `/metrics` on `admin` (0 when it has none).
fn metric(admin: SocketAddr, name: &str) -> f64 {
    let (_, text) = http_get(admin, "/metrics");
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn mark(pid: u32, admin: SocketAddr, monitor: SocketAddr) -> Result<Mark> {
    let (status, body) = http_get(monitor, "/varz");
    anyhow::ensure!(status == 200, "GET /varz answered {status}");
    let v: serde_json::Value = serde_json::from_str(&body).context("/varz is not JSON")?;
    Ok(Mark {
        at: Instant::now(),
        cpu_s: probe::cpu_secs(&pid.to_string()).context("the host's /proc/<pid>/stat")?,
        renewals: metric(admin, "rtms_cluster_lease_renewals_total"),
        varz: VARZ.map(|k| v[k].as_f64().unwrap_or(f64::NAN)),
    })
}

/// The element-wise median of `WINDOWS` consecutive windows of `len` each.
async fn windows(
    pid: u32,
    admin: SocketAddr,
    monitor: SocketAddr,
    len: Duration,
) -> Result<[f64; 6]> {
    let mut all = Vec::new();
    for _ in 0..WINDOWS {
        all.push(window(pid, admin, monitor, len).await?);
    }
    Ok(std::array::from_fn(|i| {
        quantile(&all.iter().map(|w| w[i]).collect::<Vec<_>>(), 0.5)
    }))
}

/// Renewal windows per state (with streams, without): their median is reported.
const WINDOWS: usize = 3;

/// What one window cost per minute: host CPU ms, the four `/varz` deltas, the renewals.
async fn window(
    pid: u32,
    admin: SocketAddr,
    monitor: SocketAddr,
    len: Duration,
) -> Result<[f64; 6]> {
    let a = tokio::task::spawn_blocking(move || mark(pid, admin, monitor)).await??;
    tokio::time::sleep(len).await;
    let b = tokio::task::spawn_blocking(move || mark(pid, admin, monitor)).await??;
    let per_min = 60.0 / b.at.duration_since(a.at).as_secs_f64();
    let mut out = [(b.cpu_s - a.cpu_s) * 1e3 * per_min, 0.0, 0.0, 0.0, 0.0, 0.0];
    for i in 0..4 {
        out[i + 1] = (b.varz[i] - a.varz[i]) * per_min;
    }
    out[5] = (b.renewals - a.renewals) * per_min;
    Ok(out)
}

/// An idle meeting: a participant, nothing said, `minutes` long.
fn idle_script(minutes: u64) -> MeetingScript {
    MeetingScript::builder()
        .participant(1001, "Speaker 1")
        .duration_ms(minutes * 60_000)
        .build()
        .expect("an idle script")
}

/// Host-a of `rig` with `n` idle streams, all its own; the windows with them and once they
/// ended, per minute.
async fn idle_windows(rig: &mut Rig, n: usize, len: Duration) -> Result<([f64; 6], [f64; 6])> {
    let minutes = (2 * WINDOWS as u64 * len.as_secs()) / 60 + 2;
    let url = rig.lb.webhook_url();
    let live: Vec<MeetingHandle> = (0..n)
        .map(|_| rig.sim.start_meeting(idle_script(minutes), options(&url)))
        .collect::<Result<_>>()?;
    let ids: Vec<&str> = live.iter().map(MeetingHandle::stream_id).collect();
    all_logged(rig, &[0], "session started", &ids).await?;
    if rig.specs[0].cluster {
        // The others join once host-a owns every stream.
        rig.add_host("host-b").await;
        rig.add_host("host-c").await;
    }
    let pid = rig.host(0).pid();
    let admin = rig.admin_addr(0);
    let nats = rig.nats.as_ref().context("the engine runs")?;
    let monitor: SocketAddr = ([127, 0, 0, 1], nats.monitor_port).into();
    // A renewal period to settle.
    tokio::time::sleep(Duration::from_millis(2 * RENEW_MS)).await;
    let busy = windows(pid, admin, monitor, len).await?;
    for m in &live {
        m.stop(rtms_proto::codes::stop_reason::MEETING_ENDED);
    }
    for m in &live {
        tokio::time::timeout(LIMIT, m.finished()).await?;
    }
    tokio::time::sleep(Duration::from_millis(2 * RENEW_MS)).await;
    let idle = windows(pid, admin, monitor, len).await?;
    Ok((busy, idle))
}

fn options(url: &str) -> rtms_sim::MeetingOptions {
    rtms_sim::MeetingOptions {
        product: rtms_proto::Product::Meeting,
        pace: rtms_sim::Pace::Realtime,
        webhook_url: Some(url.to_owned()),
        ..Default::default()
    }
}

/// (c) What N idle streams' lease renewals cost their owner and the engine.
async fn renewals(report: &mut Report, opts: &Opts) -> Result<()> {
    let n = opts.idle;
    let mut with = rig(1, true, |_, spec| spec.admin = true).await?;
    let (c_busy, c_idle) = idle_windows(&mut with, n, opts.window).await?;
    drop(with);
    let mut alone = rig(1, false, |_, spec| spec.admin = true).await?;
    let (a_busy, a_idle) = idle_windows(&mut alone, n, opts.window).await?;
    drop(alone);
    let per = |busy: &[f64; 6], idle: &[f64; 6], i: usize| (busy[i] - idle[i]) / n as f64;
    let cluster_cpu = per(&c_busy, &c_idle, 0);
    let alone_cpu = per(&a_busy, &a_idle, 0);
    let note = format!(
        "{n} idle streams vs none, median of {WINDOWS} windows of {:.0} s each, renew_ms {RENEW_MS}",
        opts.window.as_secs_f64()
    );
    let row = |case: &str, unit: &str, v: f64| Row::new("cluster", case, unit, v);
    report.push(row("idle stream: host CPU, cluster", "ms/min", cluster_cpu).note(&note));
    report.push(row("idle stream: host CPU, alone", "ms/min", alone_cpu));
    report.push(row(
        "idle stream: host CPU of the lease",
        "ms/min",
        cluster_cpu - alone_cpu,
    ));
    let renewals = per(&c_busy, &c_idle, 5);
    report.push(
        row("idle stream: lease renewals", "/min", renewals)
            .note("rtms_cluster_lease_renewals_total of the owner"),
    );
    for (i, what) in VARZ.iter().enumerate() {
        let v = per(&c_busy, &c_idle, i + 1);
        let mut r = row(&format!("idle stream: engine {what}"), "/min", v)
            .note(format!("{:.2} per renewal", v / renewals));
        if i == 0 {
            r = r.note(format!(
                "{:.2} per renewal; nats /varz deltas, three hosts, one owning every stream",
                v / renewals
            ));
        }
        r.extra = json!({"busy": c_busy[i + 1], "idle": c_idle[i + 1]});
        report.push(r);
    }
    Ok(())
}
