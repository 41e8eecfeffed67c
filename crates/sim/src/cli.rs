//! `rtms-host simulate`: the simulator alone, driven from the command line.
//!
//! Starts a [`Simulator`], plays one or more meeting files (or the built-in stand-up) as
//! `--count` meetings of a product, sends their webhooks to `--webhook-url` (or prints the
//! started events for the user to deliver), prints what it does, and exits when every
//! meeting ended.
//!
//! With `--zoom-api-listen ADDR` it also serves Zoom's REST side (Server-to-Server OAuth
//! tokens, the RTMS app status endpoint, the event WebSocket: see [`crate::api`]), and the
//! meetings wait to be started through it, as `rtms-host start` does against Zoom: the
//! whole start-on-purpose flow without a Zoom account.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rtms_proto::Product;

use crate::api::ZoomApi;
use crate::{MeetingHandle, MeetingOptions, MeetingScript, Pace, SimConfig, Simulator};

/// The stand-up meeting shipped in `examples/meetings/standup.toml`.
pub const BUILTIN_STANDUP: &str = include_str!("../../../examples/meetings/standup.toml");

/// Options of `rtms-host simulate`.
#[derive(Clone, Debug, clap::Args)]
pub struct SimulateArgs {
    /// Meeting file(s) (TOML, see examples/meetings/README.md); the built-in stand-up when
    /// none is given. Several files are played in turn over the meetings started.
    #[arg(long = "meeting", value_name = "FILE")]
    pub meetings: Vec<PathBuf>,
    /// Product of every meeting: meeting, webinar, video-sdk or contact-center.
    #[arg(long, default_value = "meeting")]
    pub product: Product,
    /// How many meetings to run at once.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// realtime plays the script at its own pace; fast sends as fast as the client reads.
    #[arg(long, value_enum, default_value_t = Pace::Realtime)]
    pub pace: Pace,
    /// Pre-encode each speaker's audio once (a ring of distinct frames) and send copies,
    /// in bursts in fast pace: a sender cheap enough to measure a client with.
    #[arg(long)]
    pub preencoded_audio: bool,
    /// Where to POST webhooks (http://127.0.0.1:PORT/PATH). Without it the started events
    /// are printed for you to deliver.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Run Zoom's endpoint.url_validation challenge against --webhook-url first.
    #[arg(long)]
    pub validate_endpoint: bool,
    /// OAuth client id the handshakes are signed with.
    #[arg(long, env = "ZM_RTMS_CLIENT", default_value = "test_client_id")]
    pub client_id: String,
    /// OAuth client secret the handshakes are signed with.
    #[arg(
        long,
        env = "ZM_RTMS_SECRET",
        default_value = "test_client_secret",
        hide_env_values = true
    )]
    pub client_secret: String,
    /// Webhook secret token (signs x-zm-signature and url validation).
    #[arg(
        long,
        env = "ZOOM_SECRET_TOKEN",
        default_value = "test_webhook_secret",
        hide_env_values = true
    )]
    pub webhook_secret: String,
    /// Serve wss:// with a generated CA (write it with --ca-out so a client can trust it).
    #[arg(long)]
    pub tls: bool,
    /// Host written into URLs. Default: `localhost` with --tls (Zoom's SDK checks the
    /// certificate's DNS names only, not its IP addresses), else `127.0.0.1`.
    #[arg(long)]
    pub advertise_host: Option<String>,
    /// Write the CA certificate (PEM) here when --tls is on.
    #[arg(long, value_name = "FILE")]
    pub ca_out: Option<PathBuf>,
    /// Keep the CA in DIR (implies --tls): created there on the first run (ca.pem, and
    /// ca.key with mode 0600) and reused on later runs, so a client can trust DIR/ca.pem
    /// before any webhook arrives.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// Record every message sent to FILE (JSON Lines); with several meetings, FILE gets a
    /// -N suffix per meeting.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Keep-alive interval on idle sockets, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub keepalive_ms: u64,
    /// Individual video subscriptions a stream may hold at once (msg 28): past it one is
    /// refused with status 25; 1 makes the newest replace the previous, as on a V1 server.
    #[arg(long, default_value_t = 4)]
    pub individual_video_limit: usize,
    /// Seconds to wait for a client before a started meeting gives up (reason 11).
    #[arg(long, default_value_t = 120)]
    pub connect_timeout_secs: u64,
    /// Serve Zoom's REST API here (e.g. 127.0.0.1:8090; port 0 picks one) and let the
    /// meetings wait for a start through it (`rtms-host start --meeting ID`), instead of
    /// starting them at once. Point pipeline.toml's `[zoom] api_base_url` and
    /// `oauth_base_url` at the printed URL.
    #[arg(long, value_name = "ADDR")]
    pub zoom_api_listen: Option<SocketAddr>,
    /// The Server-to-Server OAuth account the API accepts (the host reads the same variable).
    #[arg(long, env = "ZOOM_ACCOUNT_ID", default_value = "sim-account")]
    pub oauth_account_id: String,
    /// The Server-to-Server OAuth client id the API accepts.
    #[arg(long, env = "ZOOM_OAUTH_CLIENT_ID", default_value = "sim-oauth-client")]
    pub oauth_client_id: String,
    /// The Server-to-Server OAuth client secret the API accepts.
    #[arg(
        long,
        env = "ZOOM_OAUTH_CLIENT_SECRET",
        default_value = "sim-oauth-secret",
        hide_env_values = true
    )]
    pub oauth_client_secret: String,
}

fn record_path(base: &std::path::Path, i: usize, count: usize) -> PathBuf {
    if count <= 1 {
        return base.to_path_buf();
    }
    let stem = base
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("record");
    let ext = base.extension().and_then(|s| s.to_str()).unwrap_or("jsonl");
    base.with_file_name(format!("{stem}-{}.{ext}", i + 1))
}

/// How long a shutdown signal lets the meetings end before their recordings are closed.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// Runs `rtms-host simulate` until every meeting ended, or until SIGINT or SIGTERM: then
/// every live meeting is stopped with STOP_REASON 17 EXIT_SIGNAL, and the recordings are
/// flushed and closed (see [`simulate_until`]).
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    simulate_until(args, shutdown_signal()).await
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// [`simulate`], with the shutdown signal as a parameter. When `shutdown` resolves before
/// the meetings ended, each is stopped with STOP_REASON 17 EXIT_SIGNAL (its client and
/// webhook target learn it as from Zoom) and given up to 10 s to end; every recording is
/// then flushed and closed, ending with its last whole line.
pub async fn simulate_until(
    args: SimulateArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let scripts = load_scripts(&args)?;
    if args.count == 0 {
        anyhow::bail!("--count must be at least 1");
    }
    let sim = start_simulator(&args).await?;
    if let (true, Some(url)) = (args.validate_endpoint, &args.webhook_url) {
        sim.validate_endpoint(url)
            .await
            .context("endpoint.url_validation failed")?;
        println!("endpoint.url_validation answered correctly by {url}");
    }
    let api = start_api(&sim, &args).await?;
    let mut handles = start_meetings(&sim, api.as_ref(), &scripts, &args)?;
    if let (Some(url), None) = (&args.webhook_url, &api) {
        println!(
            "sent {} started webhook(s) to {url}; waiting for clients",
            handles.len()
        );
    }
    let run = async {
        if let Some(api) = &api {
            handles = wait_for_starts(api, &args).await;
        }
        for (i, h) in handles.iter().enumerate() {
            print_end(i, &h.finished().await);
        }
    };
    tokio::select! {
        () = run => {}
        () = shutdown => {
            println!("shutting down: stopping every live meeting (stop_reason 17)");
            let live = sim.meetings();
            sim.shutdown(rtms_proto::codes::stop_reason::EXIT_SIGNAL, SHUTDOWN_LIMIT)
                .await;
            for (i, h) in live.iter().enumerate() {
                print_end(i, &h.ledger());
            }
        }
    }
    Ok(())
}

/// The meeting scripts: the files given, or the built-in stand-up.
fn load_scripts(args: &SimulateArgs) -> anyhow::Result<Vec<MeetingScript>> {
    if args.meetings.is_empty() {
        return Ok(vec![
            MeetingScript::from_toml_str(BUILTIN_STANDUP).context("built-in stand-up")?,
        ]);
    }
    args.meetings
        .iter()
        .map(|p| MeetingScript::from_file(p).map_err(anyhow::Error::from))
        .collect()
}

/// The simulator the arguments describe; says where it listens and where its CA is.
async fn start_simulator(args: &SimulateArgs) -> anyhow::Result<Simulator> {
    let tls = args.tls || args.ca_dir.is_some();
    let config = SimConfig {
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone(),
        webhook_secret: args.webhook_secret.clone(),
        tls,
        ca_dir: args.ca_dir.clone(),
        advertise_host: advertised_host(args.advertise_host.as_deref(), tls),
        keepalive_interval: Duration::from_millis(args.keepalive_ms.max(100)),
        connect_timeout: Duration::from_secs(args.connect_timeout_secs.max(1)),
        preencoded_audio: args.preencoded_audio,
        individual_video_limit: args.individual_video_limit.max(1),
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).await?;
    println!("signaling server: {}", sim.signaling_url());
    if let (Some(pem), Some(path)) = (sim.ca_pem(), &args.ca_out) {
        std::fs::write(path, pem)
            .with_context(|| format!("cannot write the CA to {}", path.display()))?;
        println!(
            "CA certificate written to {} (trust it for wss://)",
            path.display()
        );
    }
    if let Some(dir) = &args.ca_dir {
        println!(
            "CA kept in {} (trust {} for wss://; it is reused on later runs)",
            dir.display(),
            dir.join(crate::tls::CA_CERT_FILE).display()
        );
    } else if tls && args.ca_out.is_none() {
        println!(
            "TLS is on with a new CA; pass --ca-out FILE to save it, or --ca-dir DIR to keep one"
        );
    }
    Ok(sim)
}

/// The simulated Zoom REST API, when `--zoom-api-listen` asks for it.
async fn start_api(sim: &Simulator, args: &SimulateArgs) -> anyhow::Result<Option<ZoomApi>> {
    let Some(addr) = args.zoom_api_listen else {
        return Ok(None);
    };
    let cfg = crate::api::ApiConfig {
        account_id: args.oauth_account_id.clone(),
        oauth_client_id: args.oauth_client_id.clone(),
        oauth_client_secret: args.oauth_client_secret.clone(),
        ..Default::default()
    };
    let api = ZoomApi::start_on(sim, cfg, addr).await?;
    println!(
        "Zoom REST API: {} (set [zoom] api_base_url and oauth_base_url to it; it accepts account {} and OAuth client {}; event WebSocket {})",
        api.base_url(),
        args.oauth_account_id,
        args.oauth_client_id,
        api.event_ws_url()
    );
    Ok(Some(api))
}

/// Starts `--count` meetings from the scripts in turn (with the REST API, prepares them to
/// wait for a start instead); the handles of those started.
fn start_meetings(
    sim: &Simulator,
    api: Option<&ZoomApi>,
    scripts: &[MeetingScript],
    args: &SimulateArgs,
) -> anyhow::Result<Vec<MeetingHandle>> {
    let mut handles = Vec::new();
    for i in 0..args.count {
        let script = scripts[i % scripts.len()].clone();
        let title = script.title.clone();
        let opts = MeetingOptions {
            product: args.product,
            pace: args.pace,
            webhook_url: args.webhook_url.clone(),
            record: args
                .record
                .as_deref()
                .map(|p| record_path(p, i, args.count)),
            ..Default::default()
        };
        if let Some(api) = api {
            let id = api.prepare(script, opts);
            println!(
                "meeting {} ({title:?}): {} {id} waits for a start: rtms-host start --meeting {id}",
                i + 1,
                args.product.as_str(),
            );
            continue;
        }
        let h = sim.start_meeting(script, opts)?;
        println!(
            "meeting {} ({title:?}): {} {} stream {}",
            i + 1,
            args.product.as_str(),
            h.meeting_id(),
            h.stream_id()
        );
        if args.webhook_url.is_none() {
            println!("{}", String::from_utf8_lossy(&h.started_body()));
        }
        handles.push(h);
    }
    Ok(handles)
}

fn print_end(i: usize, l: &crate::Ledger) {
    println!(
        "meeting {} ended (stop_reason {}): audio {} video {} share {} transcript {} chat {} frames",
        i + 1,
        l.stop_reason.unwrap_or(0),
        l.count(crate::MediaKind::Audio),
        l.count(crate::MediaKind::Video),
        l.count(crate::MediaKind::Share),
        l.count(crate::MediaKind::Transcript),
        l.count(crate::MediaKind::Chat),
    );
    // Why the host did not take a webhook, as it answered (the fix is usually named there).
    for w in l.webhooks.iter().filter(|w| w.error.is_some()) {
        println!(
            "  webhook {} (attempt {}) not accepted: {}",
            w.event,
            w.attempt,
            w.error.as_deref().unwrap_or_default()
        );
    }
}

/// Waits for every prepared meeting to be started through the API, in any order; prints each
/// start (and its started event when no webhook URL delivers it).
async fn wait_for_starts(api: &crate::api::ZoomApi, args: &SimulateArgs) -> Vec<MeetingHandle> {
    let ids = api.prepared_ids();
    let mut starts: futures_util::stream::FuturesUnordered<_> = ids
        .iter()
        .map(|id| async move { api.started(id).await })
        .collect();
    let mut handles = Vec::new();
    while let Some(h) = futures_util::StreamExt::next(&mut starts).await {
        println!(
            "meeting {} started through the REST API: stream {}",
            h.meeting_id(),
            h.stream_id()
        );
        if args.webhook_url.is_none() {
            println!("{}", String::from_utf8_lossy(&h.started_body()));
        }
        handles.push(h);
    }
    handles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_standup_parses_and_has_keywords() {
        let s = MeetingScript::from_toml_str(BUILTIN_STANDUP).unwrap();
        assert!((3..=4).contains(&s.participants.len()));
        assert!(
            (60_000..=95_000).contains(&s.duration_ms),
            "{}",
            s.duration_ms
        );
        let text: String = s.utterances.iter().map(|u| u.text.to_lowercase()).collect();
        for w in ["deadline", "budget", "blocker"] {
            assert!(text.contains(w), "missing {w}");
        }
        assert!(!s.chats.is_empty());
    }

    #[test]
    fn products_are_parsed_by_their_one_parser() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: SimulateArgs,
        }
        let parse = |p: &str| Cli::try_parse_from(["simulate", "--product", p]);
        assert_eq!(parse("video-sdk").unwrap().args.product, Product::VideoSdk);
        let e = parse("zoom-phone").err().unwrap().to_string();
        assert!(
            e.contains("use meeting, webinar, video-sdk or contact-center"),
            "{e}"
        );
    }

    #[test]
    fn record_paths_get_a_suffix_per_meeting() {
        let p = std::path::Path::new("/tmp/rec.jsonl");
        assert_eq!(record_path(p, 0, 1), p);
        assert_eq!(
            record_path(p, 1, 3),
            std::path::Path::new("/tmp/rec-2.jsonl")
        );
    }
}

/// The host written into URLs: the one given, else `localhost` with TLS (Zoom's SDK ignores
/// IP addresses in the certificate) and `127.0.0.1` without.
pub fn advertised_host(given: Option<&str>, tls: bool) -> String {
    match given {
        Some(h) => h.to_owned(),
        None if tls => "localhost".to_owned(),
        None => "127.0.0.1".to_owned(),
    }
}

#[cfg(test)]
mod advertise_tests {
    use super::advertised_host;

    #[test]
    fn tls_advertises_localhost_unless_told_otherwise() {
        assert_eq!(advertised_host(None, true), "localhost");
        assert_eq!(advertised_host(None, false), "127.0.0.1");
        assert_eq!(advertised_host(Some("sim.test"), true), "sim.test");
    }
}
