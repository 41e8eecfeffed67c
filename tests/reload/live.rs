//! A hundred reloads of the transcript writer while a meeting is live: every line the
//! simulator sent is in the writer's file exactly once and in order, across both builds.

use std::time::{Duration, Instant};

use crate::rig::*;
use crate::util::component;

fn writer(path: &std::path::Path) -> PluginToml {
    PluginToml::new("writer", path).cfg("format", "jsonl")
}

fn is_b(line: &serde_json::Value) -> bool {
    line.get("build").and_then(|b| b.as_str()) == Some("b")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_during_a_live_meeting_lose_and_double_no_line() {
    let rig = Rig::new().await;
    let a = rig.install("transcript_writer", "writer-a.wasm");
    let b = rig.install("transcript_writer_b", "writer-b.wasm");
    // The path the last reloads replace in place (watched).
    let live = rig.install("transcript_writer", "writer.wasm");
    let (hash_a, hash_b) = (file_hash(&a), file_hash(&b));
    assert_ne!(hash_a, hash_b);
    let rec = PluginToml::new("rec", component("seq_recorder"));
    let mut p = PipelineToml::new(vec![writer(&a), rec.clone()]);
    p.watch = true;
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "reload-hundred", 1500);
    delivered_beyond(&svc, "writer", 0).await;

    let mut by_admin = 0;
    let mut by_watcher = 0;
    let mut published_ms = Vec::new();
    let mut serving_ms = Vec::new();
    for i in 0..100 {
        let to_b = i % 2 == 0;
        let (path, hash) = if to_b { (&b, &hash_b) } else { (&a, &hash_a) };
        if i < 90 {
            // Rewrite pipeline.toml and ask for a reload. The watcher sees the rewrite too;
            // whichever comes first applies it, the other finds nothing to change.
            p.plugins[0] = writer(path);
            rig.write_pipeline(&p);
            match svc.reload().await {
                rtms_host::pipeline::reload::Outcome::Applied { .. } => by_admin += 1,
                rtms_host::pipeline::reload::Outcome::Unchanged => by_watcher += 1,
                other => panic!("reload {i} was not applied: {other:?}"),
            }
            serving(&svc, "writer", hash).await;
        } else {
            // Replace the component file in place; the watcher alone reloads it. The first
            // of these points the pipeline at that file (a pipeline change, also watched).
            let lines_of_build =
                |lines: &[serde_json::Value]| lines.iter().filter(|l| is_b(l) == to_b).count();
            let before = lines_of_build(&writer_lines(&rig.out()));
            let bytes = std::fs::read(path).expect("build");
            let written = Instant::now();
            write_atomic(&live, &bytes);
            if i == 90 {
                p.plugins[0] = writer(&live);
                rig.write_pipeline(&p);
            }
            serving(&svc, "writer", hash).await;
            published_ms.push(written.elapsed().as_secs_f64() * 1000.0);
            wait_for("a line from the new build", Duration::from_secs(8), || {
                lines_of_build(&writer_lines(&rig.out())) > before
            })
            .await;
            serving_ms.push(written.elapsed().as_secs_f64() * 1000.0);
            by_watcher += 1;
        }
    }
    assert_eq!(
        svc.sessions().len(),
        1,
        "the meeting must outlast the reloads"
    );
    let during = svc.metrics();
    let writer_m = plugin(&during, "writer");
    let (texts, m) = finish(svc, meeting).await;

    eprintln!(
        "reloads: {by_admin} applied by reload(), {by_watcher} by the file watcher; \
         {} transcript lines sent",
        texts.len()
    );
    eprintln!(
        "component file written -> new version published (warm compile cache, debounce 50 ms): {}",
        stats(&published_ms)
    );
    eprintln!(
        "component file written -> first line written by the new version (frames every 20 ms): {}",
        stats(&serving_ms)
    );

    assert_eq!(
        during.reloads_applied, 100,
        "every step changed the writer once"
    );
    assert_eq!(during.reloads_refused, 0);
    assert_eq!(
        writer_m.swaps, 100,
        "the live session swapped at every reload"
    );
    let lines = writer_lines(&rig.out());
    let written: Vec<&str> = lines
        .iter()
        .map(|l| l["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        written, texts,
        "every line once, in order, across the builds"
    );
    let from_b = lines.iter().filter(|l| is_b(l)).count();
    assert!(
        from_b > 0 && from_b < lines.len(),
        "both builds wrote lines ({from_b} of {} from B)",
        lines.len()
    );
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| l["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs ascend");

    let (rec_frames, rec_marks) = recorder_file(&rig.out().join("seqs-reload-hundred.txt"));
    let rec_texts: Vec<&str> = rec_frames.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(rec_texts, texts, "the unchanged plugin saw every line");
    assert_eq!(
        rec_marks.first().map(String::as_str),
        Some("# start resumed=false")
    );
    assert_eq!(
        rec_marks.len(),
        2,
        "the unchanged plugin kept its instance: {rec_marks:?}"
    );
    for name in ["writer", "rec"] {
        let s = plugin(&m, name);
        assert_eq!(
            (s.dropped, s.dead_lettered, s.discarded, s.traps),
            (0, 0, 0, 0),
            "{name}: {s:?}"
        );
        assert_eq!(s.delivered, texts.len() as u64, "{name}");
    }
    assert_eq!(plugin(&m, "rec").swaps, 0);
}

fn stats(ms: &[f64]) -> String {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return "no samples".into();
    }
    format!(
        "n={} min={:.1} ms median={:.1} ms max={:.1} ms",
        v.len(),
        v[0],
        v[v.len() / 2],
        v[v.len() - 1]
    )
}
