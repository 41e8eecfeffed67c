//! File I/O that stalls or floods, on the live frame path: a plugin whose every batch opens a
//! FIFO nobody reads (the open never returns), and one that writes 100 MiB per call, each
//! beside the well-behaved plugins, in one real-time meeting and in a second stream started
//! meanwhile. The sessions keep answering keep-alives, the second stream's webhook is
//! accepted, the well-behaved plugins get exactly what the simulator sent, and the stalled
//! plugin sheds its own frames, every one accounted for; the threads its abandoned opens
//! leave on the blocking pool stop at the bound. And a plugin failing every batch is counted
//! each time but logged only for the 1st, 10th, 100th, ... failure of the session.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rtms_config::{Pipeline, Plugin, PluginName};
use rtms_proto::Product;
use rtms_sim::{Pace, Simulator};

use crate::harness::*;
use crate::util;

/// The `fs_stall` fixture in `mode` as plugin `name`, on a `block` queue of `capacity`
/// that sheds after 50 ms, with its own directory under the host's output directory.
fn stall_plugin(p: &Pipeline, name: &str, config: &[(&str, &str)], capacity: usize) -> Plugin {
    let mut pl = p.plugin("seq").expect("seq plugin").clone();
    pl.name = PluginName::try_new(name).expect("name");
    pl.component = util::component("fs_stall");
    pl.config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut dir = pl.dirs[0].clone();
    dir.host = dir.host.join(name);
    std::fs::create_dir_all(&dir.host).expect("plugin dir");
    pl.dirs = vec![dir];
    pl.queue.capacity = capacity;
    pl.queue.block_timeout = Duration::from_millis(50);
    pl.batch.max_frames = capacity;
    pl.restart.base_delay = Duration::from_millis(10);
    pl.restart.max_delay = Duration::from_millis(10);
    pl.restart.max_failures = 1000;
    pl
}

/// Runs a real-time meeting and, once it is under way, a second stream, with `stalled` in
/// the pipeline beside the seq-recorder and the transcript-writer; checks everything the
/// module promises.
async fn beside_a_stalled_plugin(stalled: impl FnOnce(&Pipeline) -> (Plugin, Option<PathBuf>)) {
    // A keep-alive request whenever a socket is idle for 15 ms, 20 unanswered end the
    // stream: the host may not stop reading a socket for more than about 300 ms.
    let sim = Simulator::start(rtms_sim::SimConfig {
        keepalive_interval: Duration::from_millis(15),
        missed_keepalive_limit: 20,
        ..sim_config(false)
    })
    .await
    .expect("simulator");
    let mut name = String::new();
    let mut fifo = None;
    let mut host = start_host(&sim, Setup::default(), |p| {
        let (pl, path) = stalled(p);
        name = pl.name.to_string();
        fifo = path;
        p.plugins.push(pl);
    })
    .await;
    // Dropped before the host (and its directory), the test failed or not.
    let _fifo = Fifo(fifo);
    let first = start(
        &sim,
        &host,
        script(40, vec![]),
        Product::Meeting,
        Pace::Realtime,
    );
    wait_frame(
        &mut host,
        first.stream_id(),
        rtms_host::sandbox::bindings::MediaKind::Transcript,
    )
    .await;
    let second = start(
        &sim,
        &host,
        script(10, vec![]),
        Product::Meeting,
        Pace::Realtime,
    );
    let second_ledger = within("the second stream to finish", second.finished()).await;
    let first_ledger = finish(&host, &first).await;
    host.idle().await;
    for (ledger, m) in [(&first_ledger, &first), (&second_ledger, &second)] {
        let c = &ledger.counters;
        assert_eq!(c.keepalive_timeouts, 0, "every keep-alive answered: {c:?}");
        assert!(c.keepalive_answers >= 10, "{c:?}");
        assert_eq!(c.signaling_connections, 1, "no reconnection: {c:?}");
        assert_eq!(c.media_connections, 1, "no reconnection: {c:?}");
        assert!(
            ledger
                .webhooks
                .iter()
                .any(|w| w.event.ends_with("rtms_started") && w.status == Some(200)),
            "the webhook was accepted: {:?}",
            ledger.webhooks
        );
        assert_exactly_once(ledger, &host.record(m.stream_id()));
        assert_writer_matches(ledger, &host.writer_lines(m.stream_id()));
    }
    let m = host.svc.metrics();
    let s = &m.plugins[name.as_str()];
    assert!(s.shed > 0, "{name} shed frames: {s:?}");
    if _fifo.0.is_some() {
        // Each restart opened the FIFO again; the threads those opens left on the blocking
        // pool stop at the bound (one more per session for an open not yet abandoned), and
        // the opens past it were refused and counted.
        let parked = threads_waiting_on_a_fifo();
        let bound = rtms_host::sandbox::fs_limits::PARKED_MAX + 2;
        assert!(
            parked <= bound,
            "{parked} threads wait on the FIFO, over {bound}: {s:?}"
        );
        assert!(
            s.parked_refused > 0,
            "{name}: calls past the bound refused: {s:?}"
        );
    }
    assert_eq!(
        s.routed,
        s.delivered + s.dead_lettered + s.dropped + s.discarded,
        "{name}: every frame routed is delivered, dead-lettered, dropped or discarded: {s:?}"
    );
    assert_eq!(s.sessions_with_losses, 2, "{name}: summarised: {s:?}");
    // Every frame it shed or trapped on is in its dead-letter file (written by the one
    // writer, which the stream never waited for).
    let letters = std::fs::read_to_string(
        host.dir
            .path()
            .join(format!("dead/{name}.deadletter.jsonl")),
    )
    .expect("dead letters");
    let lettered: u64 = letters
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a letter is JSON");
            v["frames"].as_array().expect("frames").len() as u64
        })
        .sum();
    assert_eq!(lettered, s.dead_lettered, "{name}: {s:?}");
    assert_eq!(
        host.svc
            .shared()
            .services
            .dead_letters
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    for n in ["seq", "writer"] {
        assert_eq!(m.plugins[n].shed, 0, "{n}");
        assert_eq!(m.plugins[n].sessions_with_losses, 0, "{n}");
    }
}

/// Threads of this process blocked opening a FIFO (`wait_for_partner` in the kernel).
fn threads_waiting_on_a_fifo() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w == "wait_for_partner")
        })
        .count()
}

/// Lets every `open` waiting on the FIFO at `path` return: a reader that comes and goes
/// wakes them all (the opens on the blocking pool that the deadline abandoned).
fn release_fifo(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
    {
        eprintln!("cannot open the reading end of {}: {e}", path.display());
    }
}

/// Releases the FIFO at its path (if any) when dropped: the runtime's end waits for the
/// blocking pool's threads, and once the directory is gone nothing could reach them.
struct Fifo(Option<PathBuf>);

impl Drop for Fifo {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            release_fifo(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_stuck_opening_a_fifo_stalls_nothing_but_itself() {
    beside_a_stalled_plugin(|p| {
        let mut pl = stall_plugin(p, "fifo", &[("mode", "fifo")], 8);
        pl.limits.call_timeout = Duration::from_millis(300);
        let path = pl.dirs[0].host.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        (pl, Some(path))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_writing_100_mib_per_call_stalls_nothing_but_itself() {
    beside_a_stalled_plugin(|p| {
        let mut pl = stall_plugin(p, "flood", &[("mode", "flood"), ("mb", "100")], 2);
        pl.limits.call_timeout = Duration::from_secs(10);
        (pl, None)
    })
    .await;
}

/// A plugin that answers every batch with an error has each one counted, and the 1st, 10th,
/// 100th, ... of the session logged: a plugin cannot flood the log by failing.
#[tokio::test]
async fn a_plugin_failing_every_batch_is_counted_each_time_and_logged_sparingly() {
    let logs = LogCapture::start();
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let host = start_host(&sim, Setup::default(), |p| {
        // No FIFO in its directory: every open fails, and the call returns the error.
        let mut pl = stall_plugin(p, "failing", &[("mode", "fifo")], 1024);
        pl.batch.max_frames = 1;
        p.plugins.push(pl);
    })
    .await;
    let m = start(
        &sim,
        &host,
        script(30, vec![]),
        Product::Meeting,
        Pace::Fast,
    );
    finish(&host, &m).await;
    host.idle().await;
    let s = &host.svc.metrics().plugins["failing"];
    assert!(s.errors >= 100, "the plugin failed its batches: {s:?}");
    assert_eq!(s.errors, s.calls, "every call failed: {s:?}");
    let logged = logs
        .lines()
        .iter()
        .filter(|l| l.contains("plugin reported an error for a batch"))
        .count();
    let powers_of_ten = (0..)
        .map(|k| 10u64.pow(k))
        .take_while(|p| *p <= s.errors)
        .count();
    assert_eq!(
        logged, powers_of_ten,
        "{} errors, logged {logged} times",
        s.errors
    );
}
