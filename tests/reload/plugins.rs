//! Plugins changing under a live meeting: added, removed, trapping every N frames, and a
//! new version that traps at once and is rolled back.

use std::collections::BTreeSet;
use std::time::Duration;

use rtms_host::pipeline::reload::Outcome;

use crate::rig::*;
use crate::util::component;

fn recorder(name: &str, file: &str) -> PluginToml {
    PluginToml::new(name, component("seq_recorder")).cfg("file", file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_added_and_removed_mid_meeting_start_live_and_drain() {
    let rig = Rig::new().await;
    let base = recorder("base", "base.txt");
    let gone = recorder("gone", "gone.txt");
    let added = recorder("added", "added.txt");
    let mut p = PipelineToml::new(vec![base.clone(), gone.clone()]);
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "reload-add-remove", 1500);
    delivered_beyond(&svc, "gone", 10).await;

    p.plugins.push(added.clone());
    rig.write_pipeline(&p);
    match svc.reload().await {
        Outcome::Applied { changed, .. } => assert_eq!(changed, vec!["added added".to_owned()]),
        other => panic!("adding a plugin: {other:?}"),
    }
    delivered_beyond(&svc, "added", 10).await;

    p.plugins.retain(|x| x.name != "gone");
    rig.write_pipeline(&p);
    match svc.reload().await {
        Outcome::Applied { changed, .. } => assert_eq!(changed, vec!["gone removed".to_owned()]),
        other => panic!("removing a plugin: {other:?}"),
    }
    // What was queued before the removal still drains into the plugin; nothing new is
    // routed to it.
    let gone_at = plugin(&svc.metrics(), "gone").routed;
    delivered_beyond(&svc, "base", plugin(&svc.metrics(), "base").delivered + 10).await;
    assert_eq!(
        plugin(&svc.metrics(), "gone").routed,
        gone_at,
        "a removed plugin is routed nothing more"
    );

    let (texts, m) = finish(svc, meeting).await;
    let (base_frames, base_marks) = recorder_file(&rig.out().join("base.txt"));
    let base_texts: Vec<&str> = base_frames.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(base_texts, texts);
    assert_eq!(base_marks, ["# start resumed=false", "# end stopped(6)"]);

    let (gone_frames, gone_marks) = recorder_file(&rig.out().join("gone.txt"));
    assert_eq!(gone_marks, ["# start resumed=false", "# end removed"]);
    assert!(!gone_frames.is_empty());
    assert_eq!(
        gone_frames[..],
        base_frames[..gone_frames.len()],
        "the removed plugin drained a prefix"
    );

    let (added_frames, added_marks) = recorder_file(&rig.out().join("added.txt"));
    assert_eq!(added_marks, ["# start resumed=false", "# end stopped(6)"]);
    assert!(added_frames.len() > 10 && added_frames.len() < base_frames.len());
    assert_eq!(
        added_frames[..],
        base_frames[base_frames.len() - added_frames.len()..],
        "the added plugin got every frame from its start on"
    );
    for name in ["base", "gone", "added"] {
        let s = plugin(&m, name);
        assert_eq!(
            (s.dropped, s.dead_lettered, s.swaps),
            (0, 0, 0),
            "{name}: {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_trapping_every_n_frames_is_rebuilt_and_the_others_lose_nothing() {
    let rig = Rig::new().await;
    let trap = PluginToml::new("trap", component("trap"))
        .cfg("every", "7")
        .cfg("file", "trap.txt");
    let writer = PluginToml::new("writer", component("transcript_writer")).cfg("format", "jsonl");
    let rec = recorder("rec", "rec.txt");
    let svc = rig.start(&PipelineToml::new(vec![trap, writer, rec])).await;
    let meeting = rig.meeting(&svc, "reload-trap", 1500);
    wait_for("three traps", Duration::from_secs(8), || {
        plugin(&svc.metrics(), "trap").traps >= 3
    })
    .await;
    let (texts, m) = finish(svc, meeting).await;

    let written: Vec<String> = writer_lines(&rig.out())
        .iter()
        .map(|l| l["text"].as_str().expect("text").to_owned())
        .collect();
    assert_eq!(written, texts, "the writer lost nothing");
    let (rec_frames, _) = recorder_file(&rig.out().join("rec.txt"));
    let rec_texts: Vec<&str> = rec_frames.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(rec_texts, texts, "the recorder lost nothing");
    for name in ["writer", "rec"] {
        let s = plugin(&m, name);
        assert_eq!(
            (s.dropped, s.dead_lettered, s.traps, s.restarts),
            (0, 0, 0, 0),
            "{name}: {s:?}"
        );
    }

    let t = plugin(&m, "trap");
    assert!(t.traps >= 3);
    assert_eq!(
        t.restarts, t.traps,
        "every trap was followed by a rebuild: {t:?}"
    );
    let dead = dead_letter_seqs(&rig.dead(), "trap");
    assert_eq!(dead.len() as u64, t.dead_lettered);
    assert_eq!(t.delivered + t.dead_lettered, texts.len() as u64, "{t:?}");
    let text = std::fs::read_to_string(rig.out().join("trap.txt")).expect("trap record");
    let trapped: BTreeSet<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# trap "))
        .map(|s| s.trim().parse().expect("seq"))
        .collect();
    assert_eq!(trapped.len() as u64, t.traps, "{text}");
    let dead_set: BTreeSet<u64> = dead.iter().copied().collect();
    assert!(
        trapped.is_subset(&dead_set),
        "each trapping frame is in a dead letter"
    );
    // Each restart builds a fresh instance when the next batch comes (the last one may not
    // have come before the meeting ended), and it is told it resumes the session.
    let resumed = text.matches("# start resumed=true").count() as u64;
    assert!(
        resumed == t.restarts || resumed + 1 == t.restarts,
        "{resumed} resumed starts, {t:?}"
    );
    // Every frame reached the trap plugin: recorded, or in the batch that trapped.
    let recorded: BTreeSet<u64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.trim().parse().expect("seq"))
        .collect();
    let all: BTreeSet<u64> = rec_frames.iter().map(|(s, _)| *s).collect();
    assert_eq!(&recorded | &dead_set, all);
}

/// Appends a custom section: other bytes, same component.
fn with_custom_section(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"reload-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    assert!(payload.len() < 128, "one-byte LEB128 size");
    let mut out = bytes.to_vec();
    out.push(0);
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_keeps_trapping_is_rolled_back_and_refused_until_it_changes() {
    let rig = Rig::new().await;
    let rec = recorder("rec", "rec.txt");
    let base = recorder("base", "base.txt");
    let mut p = PipelineToml::new(vec![rec.clone(), base]);
    let svc = rig.start(&p).await;
    let good_hash = serving_hash(&svc, "rec").expect("rec runs");
    let meeting = rig.meeting(&svc, "reload-rollback", 1500);
    delivered_beyond(&svc, "rec", 5).await;

    // Same name, a component that traps on every frame.
    let bad = rig.install("trap", "bad.wasm");
    p.plugins[0] = PluginToml::new("rec", &bad)
        .cfg("every", "1")
        .cfg("file", "bad.txt");
    rig.write_pipeline(&p);
    assert!(matches!(svc.reload().await, Outcome::Applied { .. }));
    wait_for("the rollback", Duration::from_secs(8), || {
        plugin(&svc.metrics(), "rec").rollbacks >= 1
            && serving_hash(&svc, "rec").as_deref() == Some(&*good_hash)
    })
    .await;
    // Frames keep flowing to the previous version.
    let after = plugin(&svc.metrics(), "rec").delivered;
    delivered_beyond(&svc, "rec", after + 10).await;

    // The same bad bytes again: refused.
    let refused_before = svc.metrics().reloads_refused;
    match svc.reload().await {
        Outcome::Refused(msg) => {
            assert!(msg.contains("rolled back") && msg.contains("rec"), "{msg}")
        }
        other => panic!("the rolled-back bytes must be refused: {other:?}"),
    }
    assert_eq!(svc.metrics().reloads_refused, refused_before + 1);
    assert_eq!(serving_hash(&svc, "rec").as_deref(), Some(&*good_hash));

    // Changed bytes (and a config that does not trap) are taken.
    let fixed = with_custom_section(&std::fs::read(&bad).expect("read"), "v2");
    write_atomic(&bad, &fixed);
    p.plugins[0] = PluginToml::new("rec", &bad)
        .cfg("every", "1000000")
        .cfg("file", "bad.txt");
    rig.write_pipeline(&p);
    assert!(matches!(svc.reload().await, Outcome::Applied { .. }));
    let fixed_hash = file_hash(&bad);
    serving(&svc, "rec", &fixed_hash).await;
    let after = plugin(&svc.metrics(), "rec").delivered;
    delivered_beyond(&svc, "rec", after + 10).await;

    let (texts, m) = finish(svc, meeting).await;
    let r = plugin(&m, "rec");
    assert!(r.rollbacks >= 1, "{r:?}");
    assert_eq!(
        r.traps, 2,
        "two traps roll back (the default policy): {r:?}"
    );
    assert_eq!(r.dead_lettered, 2);
    assert_eq!(
        r.swaps, 2,
        "to the trapping version and to the fixed one; the rollback is no swap: {r:?}"
    );
    let (base_frames, _) = recorder_file(&rig.out().join("base.txt"));
    let base_texts: Vec<&str> = base_frames.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(base_texts, texts, "the other plugin lost nothing");
    assert_eq!(plugin(&m, "base").swaps, 0);

    // Every frame reached `rec` in one of its versions, or is in a dead letter.
    let (rec_frames, rec_marks) = recorder_file(&rig.out().join("rec.txt"));
    let bad_text = std::fs::read_to_string(rig.out().join("bad.txt")).expect("bad record");
    let mut seen: Vec<u64> = rec_frames.iter().map(|(s, _)| *s).collect();
    seen.extend(
        bad_text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.trim().parse::<u64>().expect("seq")),
    );
    seen.extend(dead_letter_seqs(&rig.dead(), "rec"));
    seen.sort_unstable();
    let all: Vec<u64> = base_frames.iter().map(|(s, _)| *s).collect();
    assert_eq!(seen, all, "each frame once: {rec_marks:?}");
    // The first instance ends for the reload; the instance the rollback built resumes the
    // session and ends for the reload to the fixed version, with no swap in between.
    assert_eq!(
        rec_marks,
        [
            "# start resumed=false",
            "# end reload",
            "# start resumed=true",
            "# end reload"
        ]
    );
    let bad_marks: Vec<&str> = bad_text.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        bad_marks
            .iter()
            .filter(|m| m.starts_with("# start"))
            .copied()
            .collect::<Vec<_>>(),
        ["# start resumed=true"; 3],
        "two instances of the trapping version and one of the fixed one resumed the session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_worker_settings_apply_to_live_sessions_without_a_new_instance() {
    let rig = Rig::new().await;
    let trap = PluginToml::new("trap", component("trap"))
        .cfg("every", "5")
        .cfg("file", "trap.txt");
    let mut p = PipelineToml::new(vec![trap, recorder("rec", "rec.txt")]);
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "reload-settings", 1500);
    wait_for("a trap", Duration::from_secs(8), || {
        plugin(&svc.metrics(), "trap").traps >= 1
    })
    .await;
    assert_eq!(plugin(&svc.metrics(), "trap").breaker_trips, 0);

    // A breaker that opens at the next trap; same component, same config.
    p.plugins[0].max_failures = 1;
    rig.write_pipeline(&p);
    match svc.reload().await {
        Outcome::Applied { changed, .. } => assert_eq!(changed, vec!["trap settings".to_owned()]),
        other => panic!("a restart policy change: {other:?}"),
    }
    wait_for("the breaker", Duration::from_secs(8), || {
        plugin(&svc.metrics(), "trap").breaker_trips == 1
    })
    .await;
    let discarded = plugin(&svc.metrics(), "trap").discarded;
    wait_for(
        "frames discarded by the open breaker",
        Duration::from_secs(8),
        || plugin(&svc.metrics(), "trap").discarded > discarded,
    )
    .await;
    let (texts, m) = finish(svc, meeting).await;
    let t = plugin(&m, "trap");
    assert_eq!(t.swaps, 0, "settings alone do not swap the instance: {t:?}");
    assert_eq!(
        t.delivered + t.dead_lettered + t.discarded,
        texts.len() as u64,
        "{t:?}"
    );
    let (rec_frames, _) = recorder_file(&rig.out().join("rec.txt"));
    assert_eq!(rec_frames.len(), texts.len());
}

/// A version that traps on a session that started after the reload (none was live to swap)
/// is rolled back as well, and the log of the rollback tells what it undid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_trapping_on_sessions_started_after_the_reload_is_rolled_back() {
    let rig = Rig::new().await;
    let mut p = PipelineToml::new(vec![recorder("rec", "rec.txt")]);
    let svc = rig.start(&p).await;
    let good_hash = serving_hash(&svc, "rec").expect("rec runs");
    let bad = rig.install("trap", "bad.wasm");
    p.plugins[0] = PluginToml::new("rec", &bad)
        .cfg("every", "1")
        .cfg("file", "bad.txt");
    rig.write_pipeline(&p);
    assert!(matches!(svc.reload().await, Outcome::Applied { .. }));
    assert_ne!(serving_hash(&svc, "rec").as_deref(), Some(&*good_hash));

    let meeting = rig.meeting(&svc, "reload-rollback-new", 1500);
    wait_for("the rollback", Duration::from_secs(8), || {
        plugin(&svc.metrics(), "rec").rollbacks >= 1
            && serving_hash(&svc, "rec").as_deref() == Some(&*good_hash)
    })
    .await;
    // The session goes on with the version it rolled back to.
    let after = plugin(&svc.metrics(), "rec").delivered;
    delivered_beyond(&svc, "rec", after + 10).await;
    // The bad bytes are refused from now on.
    match svc.reload().await {
        Outcome::Refused(msg) => assert!(msg.contains("rolled back"), "{msg}"),
        other => panic!("the rolled-back bytes must be refused: {other:?}"),
    }
    let (_, m) = finish(svc, meeting).await;
    assert_eq!(plugin(&m, "rec").traps, 2, "two traps roll back");
}
