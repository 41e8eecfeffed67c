//! One plugin setting changed at a time during a live meeting: the reload reports it with its
//! old and new value as applied in band, the live session takes it without a new instance,
//! and a session started after the reload has it too.

use std::time::Duration;

use rtms_config::PluginSetting;
use rtms_host::pipeline::changes::SettingChange;
use rtms_host::pipeline::reload::Outcome;
use rtms_host::service::Service;

use crate::rig::*;
use crate::util::component;

const WAIT: Duration = Duration::from_secs(10);

/// A seq-recorder that handles one frame per call and takes 25 ms for it: slower than the
/// frames come (one every 20 ms), so its queue fills.
fn slow(queue: &str) -> PluginToml {
    PluginToml::new("rec", component("seq_recorder"))
        .cfg("delay_ms", "25")
        .with(&format!(
            "\n[plugin.queue]\n{queue}\n[plugin.batch]\nmax_frames = 1\n"
        ))
}

fn flood(limits: &str) -> PluginToml {
    PluginToml::new("flood", component("flood"))
        .cfg("log_lines", "1")
        .cfg("emits", "1")
        .cfg("line_bytes", "2000")
        .with(&format!("\n[plugin.limits]\n{limits}\n"))
}

/// Rewrites the one plugin of `p` as `plugin`, reloads, and checks the outcome: that plugin's
/// settings changed in band, and exactly `setting` from `from` to `to`.
async fn reload_one(
    rig: &Rig,
    svc: &Service,
    p: &mut PipelineToml,
    plugin: PluginToml,
    setting: PluginSetting,
    (from, to): (&str, &str),
) {
    let name = plugin.name.clone();
    p.plugins[0] = plugin;
    rig.write_pipeline(p);
    match svc.reload().await {
        Outcome::Applied {
            changed, settings, ..
        } => {
            assert_eq!(changed, vec![format!("{name} settings")]);
            let want = SettingChange {
                plugin: name,
                setting,
                from: from.into(),
                to: to.into(),
            };
            assert_eq!(settings, vec![want.clone()]);
            assert_eq!(want.applied(), "in band");
        }
        other => panic!(
            "changing {} alone must be applied: {other:?}",
            setting.key()
        ),
    }
}

/// Waits until `cond` holds on the metrics of `plugin`.
async fn until(svc: &Service, what: &str, plugin_name: &str, cond: impl Fn(&PluginSnap) -> bool) {
    wait_for(what, WAIT, || cond(&plugin(&svc.metrics(), plugin_name))).await;
}

type PluginSnap = rtms_host::dataplane::stats::PluginSnapshot;

/// `on_full` from `block` to `drop-oldest`: the live queue that made the session wait now
/// drops to make room; a new session's queue drops too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_full_applies_to_the_live_queue_and_new_sessions() {
    let rig = Rig::new().await;
    let q =
        |on_full: &str| format!("capacity = 4\non_full = \"{on_full}\"\nblock_timeout_ms = 600000");
    let mut p = PipelineToml::new(vec![slow(&q("block"))]);
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "on-full-a", 1500);
    wait_for("a full queue", WAIT, || {
        queue_depth(&svc, "on-full-a", "rec") == 4
    })
    .await;
    delivered_beyond(&svc, "rec", 20).await;
    assert_eq!(
        plugin(&svc.metrics(), "rec").dropped,
        0,
        "block never drops"
    );

    let to = ("transcript: block", "transcript: drop-oldest");
    reload_one(
        &rig,
        &svc,
        &mut p,
        slow(&q("drop-oldest")),
        PluginSetting::OnFull,
        to,
    )
    .await;
    until(&svc, "the live queue to drop", "rec", |m| m.dropped > 0).await;

    end_meeting(&svc, meeting).await;
    let before = plugin(&svc.metrics(), "rec").dropped;
    let meeting = rig.meeting(&svc, "on-full-b", 1500);
    until(&svc, "the new session's queue to drop", "rec", |m| {
        m.dropped > before
    })
    .await;
    let (_, m) = finish(svc, meeting).await;
    assert_eq!(plugin(&m, "rec").swaps, 0, "in band: the instance stays");
}

/// `capacity` from 4 to 12: the live queue holds more than 4; so does a new session's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_capacity_applies_to_the_live_queue_and_new_sessions() {
    let rig = Rig::new().await;
    let q = |n: usize| format!("capacity = {n}\non_full = \"block\"\nblock_timeout_ms = 600000");
    let mut p = PipelineToml::new(vec![slow(&q(4))]);
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "capacity-a", 1500);
    wait_for("a full queue", WAIT, || {
        queue_depth(&svc, "capacity-a", "rec") == 4
    })
    .await;
    // Full, and the session waits for room: it never holds more.
    for _ in 0..20 {
        assert!(queue_depth(&svc, "capacity-a", "rec") <= 4);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    reload_one(
        &rig,
        &svc,
        &mut p,
        slow(&q(12)),
        PluginSetting::QueueCapacity,
        ("4", "12"),
    )
    .await;
    wait_for("the live queue to hold more than 4", WAIT, || {
        queue_depth(&svc, "capacity-a", "rec") > 4
    })
    .await;

    end_meeting(&svc, meeting).await;
    let meeting = rig.meeting(&svc, "capacity-b", 1500);
    wait_for("the new session's queue to hold more than 4", WAIT, || {
        queue_depth(&svc, "capacity-b", "rec") > 4
    })
    .await;
    let (_, m) = finish(svc, meeting).await;
    let rec = plugin(&m, "rec");
    assert_eq!((rec.swaps, rec.dropped, rec.shed), (0, 0, 0), "{rec:?}");
}

/// `block_timeout_ms` from 10 minutes to 1 ms: a full `block` queue that made the session
/// wait now sheds to the dead-letter file; a new session's sheds too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_timeout_applies_to_the_live_session_and_new_sessions() {
    let rig = Rig::new().await;
    let q = |ms: u64| format!("capacity = 2\non_full = \"block\"\nblock_timeout_ms = {ms}");
    let mut p = PipelineToml::new(vec![slow(&q(600_000))]);
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "block-a", 1500);
    wait_for("a full queue", WAIT, || {
        queue_depth(&svc, "block-a", "rec") == 2
    })
    .await;
    delivered_beyond(&svc, "rec", 20).await;
    assert_eq!(plugin(&svc.metrics(), "rec").shed, 0, "waits, never sheds");

    let to = ("600000 ms", "1 ms");
    reload_one(
        &rig,
        &svc,
        &mut p,
        slow(&q(1)),
        PluginSetting::BlockTimeout,
        to,
    )
    .await;
    until(&svc, "the live session to shed", "rec", |m| m.shed > 0).await;

    end_meeting(&svc, meeting).await;
    let before = plugin(&svc.metrics(), "rec").shed;
    let meeting = rig.meeting(&svc, "block-b", 1500);
    until(&svc, "the new session to shed", "rec", |m| m.shed > before).await;
    let (_, m) = finish(svc, meeting).await;
    let rec = plugin(&m, "rec");
    assert_eq!(rec.swaps, 0, "{rec:?}");
    assert_eq!(
        dead_letter_seqs(&rig.dead(), "rec").len() as u64,
        rec.shed,
        "every shed frame is in the dead-letter file"
    );
}

/// Frames per call over the next `n` frames delivered.
async fn frames_per_call(svc: &Service, n: u64) -> f64 {
    let m0 = plugin(&svc.metrics(), "rec");
    delivered_beyond(svc, "rec", m0.delivered + n).await;
    let m1 = plugin(&svc.metrics(), "rec");
    (m1.delivered - m0.delivered) as f64 / (m1.calls - m0.calls).max(1) as f64
}

fn batched(batch: &str) -> PluginToml {
    PluginToml::new("rec", component("seq_recorder")).with(&format!("\n[plugin.batch]\n{batch}\n"))
}

/// `max_frames` from 1 to 5 (waiting 150 ms to fill): one frame per call becomes several,
/// on the live session and on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_changes_the_batches_of_live_and_new_sessions() {
    let rig = Rig::new().await;
    let b = |n: usize| format!("max_frames = {n}\nmax_wait_ms = 150");
    let mut p = PipelineToml::new(vec![batched(&b(1))]);
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "batch-size-a", 1500);
    delivered_beyond(&svc, "rec", 0).await;
    assert_eq!(frames_per_call(&svc, 15).await, 1.0);

    let to = ("1", "5");
    reload_one(
        &rig,
        &svc,
        &mut p,
        batched(&b(5)),
        PluginSetting::BatchMaxFrames,
        to,
    )
    .await;
    frames_per_call(&svc, 5).await; // the batches around the swap marker
    let live = frames_per_call(&svc, 30).await;
    assert!(live >= 3.0, "live: {live} frames per call");

    end_meeting(&svc, meeting).await;
    let meeting = rig.meeting(&svc, "batch-size-b", 1500);
    let new = frames_per_call(&svc, 30).await;
    assert!(new >= 3.0, "new session: {new} frames per call");
    assert!(new <= 5.0, "never more than max_frames: {new}");
    let (_, m) = finish(svc, meeting).await;
    assert_eq!(plugin(&m, "rec").swaps, 0);
}

/// `max_wait_ms` from 0 to 200: frames delivered one by one as they come are gathered into
/// batches, on the live session and on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_wait_changes_the_batches_of_live_and_new_sessions() {
    let rig = Rig::new().await;
    let b = |ms: u64| format!("max_frames = 32\nmax_wait_ms = {ms}");
    let mut p = PipelineToml::new(vec![batched(&b(0))]);
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "batch-wait-a", 1500);
    delivered_beyond(&svc, "rec", 0).await;
    let before = frames_per_call(&svc, 20).await;
    assert!(
        before < 2.0,
        "no wait: frames go as they come ({before} per call)"
    );

    let to = ("0 ms", "200 ms");
    reload_one(
        &rig,
        &svc,
        &mut p,
        batched(&b(200)),
        PluginSetting::BatchMaxWait,
        to,
    )
    .await;
    frames_per_call(&svc, 10).await; // the batches around the swap marker
    let live = frames_per_call(&svc, 40).await;
    assert!(live >= 5.0, "live: {live} frames per call");

    end_meeting(&svc, meeting).await;
    let meeting = rig.meeting(&svc, "batch-wait-b", 1500);
    let new = frames_per_call(&svc, 40).await;
    assert!(new >= 5.0, "new session: {new} frames per call");
    let (_, m) = finish(svc, meeting).await;
    assert_eq!(plugin(&m, "rec").swaps, 0);
}

/// A byte rate cut from 1 MiB/s to 1 KiB/s while the plugin writes 2000-byte lines: nothing
/// was cut before, every line is after, on the live session and on a new one.
async fn byte_rate_case(setting: PluginSetting, key: &str, cut: fn(&PluginSnap) -> u64) {
    let rig = Rig::new().await;
    let limits =
        |log: u64, emit: u64| format!("log_bytes_per_sec = {log}\nemit_bytes_per_sec = {emit}");
    let mut p = PipelineToml::new(vec![flood(&limits(1 << 20, 1 << 20))]);
    let svc = rig.start(&p).await;
    let stream = format!("{key}-a");
    let meeting = rig.meeting(&svc, &stream, 1500);
    delivered_beyond(&svc, "flood", 30).await;
    assert_eq!(cut(&plugin(&svc.metrics(), "flood")), 0, "within the rate");

    let new = if setting == PluginSetting::LogRate {
        limits(1024, 1 << 20)
    } else {
        limits(1 << 20, 1024)
    };
    let to = ("1048576 bytes/s", "1024 bytes/s");
    reload_one(&rig, &svc, &mut p, flood(&new), setting, to).await;
    until(&svc, "the live session's budget to cut", "flood", |m| {
        cut(m) > 0
    })
    .await;
    let d0 = plugin(&svc.metrics(), "flood").delivered;
    let c0 = cut(&plugin(&svc.metrics(), "flood"));
    delivered_beyond(&svc, "flood", d0 + 20).await;
    let m = plugin(&svc.metrics(), "flood");
    assert!(
        cut(&m) - c0 >= 20,
        "every line over the new rate is cut: {m:?}"
    );

    end_meeting(&svc, meeting).await;
    let before = cut(&plugin(&svc.metrics(), "flood"));
    let meeting = rig.meeting(&svc, &format!("{key}-b"), 1500);
    until(&svc, "the new session's budget to cut", "flood", |m| {
        cut(m) > before
    })
    .await;
    let (_, m) = finish(svc, meeting).await;
    assert_eq!(plugin(&m, "flood").swaps, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_rate_applies_to_live_and_new_sessions() {
    byte_rate_case(PluginSetting::LogRate, "log-rate", |m| m.log_dropped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_rate_applies_to_live_and_new_sessions() {
    byte_rate_case(PluginSetting::EmitRate, "emit-rate", |m| m.emit_dropped).await;
}

/// A new `[plugin.config]` alone needs a new instance: the outcome says so, and shows the
/// config before and after by keys and digest (never its values), different on each side;
/// the admin answer carries the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_is_reported_as_a_new_instance_with_both_digests() {
    let rig = Rig::new().await;
    let rec = |file: &str| PluginToml::new("rec", component("seq_recorder")).cfg("file", file);
    let mut p = PipelineToml::new(vec![rec("one.txt")]);
    let svc = rig.start(&p).await;
    p.plugins[0] = rec("two.txt");
    rig.write_pipeline(&p);
    let outcome = svc.reload().await;
    let Outcome::Applied {
        changed, settings, ..
    } = &outcome
    else {
        panic!("a config change must be applied: {outcome:?}");
    };
    assert_eq!(changed, &["rec new instance".to_owned()]);
    assert_eq!(settings.len(), 1, "{settings:?}");
    let s = &settings[0];
    assert_eq!(
        (s.setting, s.applied()),
        (PluginSetting::Config, "new instance")
    );
    assert_ne!(s.from, s.to, "{s}");
    assert!(s.from.starts_with("keys [file], sha256 "), "{s}");
    assert!(!s.to.contains("two.txt"), "values are not shown: {s}");
    let (_, v) = rtms_host::pipeline::reload::outcome_json(1, false, &outcome);
    assert_eq!(v["settings"][0]["setting"], "[plugin.config]", "{v}");
    assert_eq!(v["settings"][0]["applied"], "new instance", "{v}");
    assert_eq!(v["settings"][0]["from"], s.from.as_str(), "{v}");
    svc.shutdown().await;
}
