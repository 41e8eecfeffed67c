//! Plugin isolation on the live frame path: a plugin stuck in an endless loop and another
//! waiting out a long restart delay, both on `block` queues, while the stream plays in real
//! time. The session keeps answering keep-alives (the simulator never times the host out and
//! it never reconnects), the healthy plugins get exactly what the simulator sent, and every
//! frame the stuck plugins could not take is accounted for.

use std::time::Duration;

use rtms_config::{Pipeline, Plugin, PluginName};
use rtms_proto::Product;
use rtms_sim::{Pace, Simulator};

use crate::harness::*;
use crate::util;

/// A `block` plugin with a tiny queue that sheds after 50 ms, built from the seq plugin.
fn stuck_plugin(p: &Pipeline, name: &str, component: &str, config: &[(&str, &str)]) -> Plugin {
    let mut pl = p.plugin("seq").expect("seq plugin").clone();
    pl.name = PluginName::try_new(name).expect("name");
    pl.component = util::component(component);
    pl.config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pl.queue.capacity = 8;
    pl.queue.block_timeout = Duration::from_millis(50);
    pl.batch.max_frames = 8;
    pl
}

#[tokio::test]
async fn stuck_and_restarting_plugins_never_stall_the_stream_or_the_other_plugins() {
    // The simulator asks for a keep-alive whenever a socket is idle for 15 ms (between two
    // 20 ms audio frames, so all through the meeting) and gives up after 20 unanswered:
    // the host may not stop reading a socket for more than about 300 ms.
    let sim = Simulator::start(rtms_sim::SimConfig {
        keepalive_interval: Duration::from_millis(15),
        missed_keepalive_limit: 20,
        ..sim_config(false)
    })
    .await
    .expect("simulator");
    let host = start_host(&sim, Setup::default(), |p| {
        // Spins in every call until its 2 s deadline, then again in the next instance.
        let mut spin = stuck_plugin(p, "spin", "spin", &[("in", "on-frames")]);
        spin.limits.call_timeout = Duration::from_secs(2);
        spin.restart.base_delay = Duration::from_millis(10);
        spin.restart.max_delay = Duration::from_millis(10);
        spin.restart.max_failures = 1000;
        // Traps on its first frame, then waits out a restart delay longer than the meeting.
        let mut trap = stuck_plugin(p, "trap", "trap", &[("every", "1")]);
        trap.restart.base_delay = Duration::from_secs(60);
        trap.restart.max_delay = Duration::from_secs(60);
        p.plugins.push(spin);
        p.plugins.push(trap);
    })
    .await;
    // About five seconds of real-time audio, transcript and chat.
    let meeting = start(
        &sim,
        &host,
        script(40, vec![]),
        Product::Meeting,
        Pace::Realtime,
    );
    let ledger = finish(&host, &meeting).await;

    let c = &ledger.counters;
    assert_eq!(
        c.keepalive_timeouts, 0,
        "the host answered every keep-alive in time: {c:?}"
    );
    assert!(
        c.keepalive_answers >= 10,
        "the stream stayed up across keep-alives: {c:?}"
    );
    assert_eq!(c.signaling_connections, 1, "no reconnection: {c:?}");
    assert_eq!(c.media_connections, 1, "no reconnection: {c:?}");

    // The healthy plugins got exactly what was sent, in order.
    let rec = host.record(meeting.stream_id());
    assert_exactly_once(&ledger, &rec);
    assert_writer_matches(&ledger, &host.writer_lines(meeting.stream_id()));

    // The stuck ones shed, and nothing they missed went unaccounted.
    let m = host.svc.metrics();
    let sent = ledger.count(rtms_sim::MediaKind::Audio)
        + ledger_transcript(&ledger).len() as u64
        + ledger_chats(&ledger).len() as u64;
    for name in ["spin", "trap"] {
        let s = &m.plugins[name];
        assert!(s.shed > 0, "{name} shed frames: {s:?}");
        assert!(
            s.routed >= sent,
            "{name} was offered every frame sent ({sent}): {s:?}"
        );
        assert_eq!(
            s.routed,
            s.delivered + s.dead_lettered + s.dropped + s.discarded,
            "{name}: every frame routed is delivered, dead-lettered, dropped or discarded: {s:?}"
        );
        assert_eq!(
            s.sessions_with_losses, 1,
            "{name}: losses summarised: {s:?}"
        );
    }
    assert_eq!(m.plugins["seq"].shed, 0);
    assert_eq!(m.plugins["seq"].sessions_with_losses, 0);
}

/// A `fs_hog` plugin in `mode`, with its own directory under the host's output directory.
fn fs_hog(p: &Pipeline, name: &str, mode: &str, symlinks: bool) -> Plugin {
    let mut pl = p.plugin("seq").expect("seq plugin").clone();
    pl.name = PluginName::try_new(name).expect("name");
    pl.component = util::component("fs_hog");
    pl.config = vec![("mode".into(), mode.into())];
    let mut dir = pl.dirs[0].clone();
    dir.host = dir.host.join(name);
    std::fs::create_dir_all(&dir.host).expect("hog dir");
    dir.symlinks = symlinks;
    pl.dirs = vec![dir];
    pl.limits.max_inodes = 500;
    pl
}

#[tokio::test]
async fn descriptor_inode_and_symlink_hogs_leave_the_host_and_the_other_plugins_whole() {
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    let mut host = start_host(&sim, Setup::default(), |p| {
        let files = fs_hog(p, "fd-hog", "files", false);
        let inodes = fs_hog(p, "inode-hog", "inodes", false);
        let planter = fs_hog(p, "planter", "symlink", false);
        p.plugins.extend([files, inodes, planter]);
    })
    .await;
    // The first meeting's hogs hold their descriptors while a second meeting's webhook
    // arrives and its sockets open.
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
        Pace::Fast,
    );
    let second_ledger = within("the second meeting to finish", second.finished()).await;
    let first_ledger = finish(&host, &first).await;
    for (ledger, m) in [(&first_ledger, &first), (&second_ledger, &second)] {
        assert_eq!(
            ledger.counters.signaling_connections, 1,
            "{:?}",
            ledger.counters
        );
        assert_eq!(
            ledger.counters.media_connections, 1,
            "{:?}",
            ledger.counters
        );
        assert_exactly_once(ledger, &host.record(m.stream_id()));
    }
    let metrics = host.svc.metrics();
    let s = |n: &str| metrics.plugins[n].clone();
    assert_eq!(s("fd-hog").open_files_refused, 2, "one refusal per session");
    assert_eq!(s("planter").symlinks_refused, 2);
    assert!(s("inode-hog").inodes_refused >= 1, "{:?}", s("inode-hog"));
    for n in ["fd-hog", "inode-hog", "planter"] {
        assert_eq!(s(n).traps, 0, "{n}: errors it sees, not traps");
    }
    let inode_dir = host.out_dir().join("inode-hog");
    assert_eq!(std::fs::read_dir(inode_dir).unwrap().count(), 500);
    assert!(host.out_dir().join("planter/x").symlink_metadata().is_err());
}

/// The `made` each fs-hog reported in its `fs-hog` output, by plugin, from the JSON Lines
/// sink (read after the host shut down, so every output is flushed).
fn hog_reports(outputs: &std::path::Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(outputs).expect("outputs.jsonl");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "fs-hog")
        .map(|v| {
            (
                v["plugin"].as_str().unwrap_or_default().to_owned(),
                v["data"]["made"].as_u64().expect("made"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_descriptor_hogs_stop_at_the_process_budget_while_the_host_keeps_streaming() {
    const BUDGET: u64 = 30;
    let sim = Simulator::start(sim_config(false))
        .await
        .expect("simulator");
    // The well-behaved plugins run on meetings, the hogs on webinars; each hog alone may
    // hold 63 files (max_open_files), the two together are held to the process's budget.
    let mut host = start_host(&sim, Setup::default(), |p| {
        p.runtime.plugin_open_files = Some(BUDGET);
        let hogs = ["fd-hog-a", "fd-hog-b"].map(|n| {
            let mut h = fs_hog(p, n, "files", false);
            h.filter.products = Some(vec![Product::Webinar]);
            h
        });
        for pl in &mut p.plugins {
            pl.filter.products = Some(vec![Product::Meeting]);
        }
        p.plugins.extend(hogs);
    })
    .await;
    let budget = host.svc.shared().rt.descriptors().clone();
    assert_eq!(budget.limit() as u64, BUDGET);
    let meeting = start(
        &sim,
        &host,
        script(60, vec![]),
        Product::Meeting,
        Pace::Realtime,
    );
    wait_frame(
        &mut host,
        meeting.stream_id(),
        rtms_host::sandbox::bindings::MediaKind::Transcript,
    )
    .await;
    let held_by_meeting = budget.in_use();
    assert_eq!(held_by_meeting, 2, "the recorder's and the writer's files");
    let hogs = start(
        &sim,
        &host,
        script(60, vec![]),
        Product::Webinar,
        Pace::Realtime,
    );
    eventually("the hogs to spend the budget", || {
        budget.in_use() as u64 == BUDGET
    })
    .await;
    // While the hogs hold every descriptor the budget allows, a new stream's webhook is
    // accepted and its Zoom sockets open.
    let third = start(
        &sim,
        &host,
        script(10, vec![]),
        Product::Webinar,
        Pace::Fast,
    );
    let third_ledger = within("the third stream to finish", third.finished()).await;
    assert_eq!(third_ledger.counters.signaling_connections, 1);
    assert_eq!(third_ledger.counters.media_connections, 1);
    assert!(
        third_ledger
            .webhooks
            .iter()
            .any(|w| w.event.ends_with("rtms_started") && w.status == Some(200)),
        "{:?}",
        third_ledger.webhooks
    );
    assert!(third_ledger.count(rtms_sim::MediaKind::Audio) > 0);
    let ledger = finish(&host, &meeting).await;
    within("the hogs' webinar to finish", hogs.finished()).await;
    host.idle().await;
    assert_exactly_once(&ledger, &host.record(meeting.stream_id()));
    assert_writer_matches(&ledger, &host.writer_lines(meeting.stream_id()));
    assert_eq!(budget.peak() as u64, BUDGET, "never past the budget");
    assert_eq!(
        budget.in_use(),
        0,
        "every slot given back with its instance"
    );
    let metrics = host.svc.metrics();
    for n in ["fd-hog-a", "fd-hog-b"] {
        let s = &metrics.plugins[n];
        assert!(
            s.descriptors_refused >= 1,
            "{n} refused by the budget: {s:?}"
        );
        assert_eq!(s.traps, 0, "{n}: an error it sees, not a trap");
    }
    for n in ["seq", "writer"] {
        assert_eq!(metrics.plugins[n].descriptors_refused, 0, "{n}");
    }
    let Host { svc, dir, .. } = host;
    svc.shutdown().await;
    let made: Vec<(String, u64)> = hog_reports(&dir.path().join("outputs.jsonl"))
        .into_iter()
        .filter(|(p, _)| p.starts_with("fd-hog"))
        .collect();
    // Two hogs on the long webinar, two more on the short one, refused at once.
    assert_eq!(made.len(), 4, "{made:?}");
    let total: u64 = made.iter().map(|(_, n)| n).sum();
    assert_eq!(
        total,
        BUDGET - held_by_meeting as u64,
        "the hogs held what the meeting's plugins left of the budget, no more: {made:?}"
    );
}
