//! What does not load is refused whole, with a message naming the problem, and the running
//! version keeps serving.

use rtms_host::pipeline::reload::Outcome;

use crate::rig::*;
use crate::util::component;

/// An empty component: valid binary, but it exports nothing.
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
/// An empty core module: WebAssembly, but not a component.
const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_components_and_pipelines_are_refused_while_the_old_version_serves() {
    let rig = Rig::new().await;
    let good = rig.install("transcript_writer", "writer.wasm");
    let writer = |path: &std::path::Path| PluginToml::new("writer", path).cfg("format", "jsonl");
    let rec = PluginToml::new("rec", component("seq_recorder"));
    let p = PipelineToml::new(vec![writer(&good), rec.clone()]);
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "reload-refuse", 1500);
    delivered_beyond(&svc, "writer", 0).await;
    let serving_hash_before = serving_hash(&svc, "writer").expect("writer runs");

    let garbage = rig.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not WebAssembly at all").expect("write");
    let core = rig.path().join("core.wasm");
    std::fs::write(&core, CORE_MODULE).expect("write");
    let empty = rig.path().join("empty.wasm");
    std::fs::write(&empty, EMPTY_COMPONENT).expect("write");
    // A real component of another plugin renamed as the writer: it loads and fits the
    // contract, but refuses the writer's configuration in its `init`.
    let other = rig.install("seq_recorder", "not-the-writer.wasm");

    let with_writer = |w: PluginToml| {
        let mut q = p.clone();
        q.plugins[0] = w;
        q.render(rig.path())
    };
    let mut unknown_key = p.clone();
    unknown_key.extra = "\n[sinkz]\ntype = \"stdout\"\n".into();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "garbage bytes",
            with_writer(writer(&garbage)),
            vec!["writer", "garbage.wasm"],
        ),
        (
            "a core module",
            with_writer(writer(&core)),
            vec!["writer", "core.wasm"],
        ),
        (
            "a component without the exports",
            with_writer(writer(&empty)),
            vec!["writer", "empty.wasm", "handler"],
        ),
        (
            "another plugin's component",
            with_writer(writer(&other)),
            vec!["writer", "init", "format"],
        ),
        (
            "init refusing the config",
            with_writer(writer(&good).cfg("bogus_option", "1")),
            vec!["writer", "init", "bogus_option"],
        ),
        (
            "a memory limit past the instance pool's slots",
            with_writer(writer(&good).with("\n[plugin.limits]\nmemory_mb = 128\n")),
            vec!["memory_mb = 128", "instance pool", "restart the host"],
        ),
        (
            "a syntax error",
            p.render(rig.path()).replacen("[server]", "[server", 1),
            vec!["pipeline.toml"],
        ),
        (
            "an unknown key",
            unknown_key.render(rig.path()),
            vec!["sinkz"],
        ),
    ];
    let mut refused = 0;
    for (what, text, needles) in cases {
        rig.write_pipeline_text(&text);
        let before = plugin(&svc.metrics(), "rec").delivered;
        let msg = match svc.reload().await {
            Outcome::Refused(msg) => msg,
            other => panic!("{what}: expected a refusal, got {other:?}"),
        };
        refused += 1;
        eprintln!("{what}: refused: {msg}");
        for n in needles {
            assert!(
                msg.contains(n),
                "{what}: the refusal should name {n:?}: {msg}"
            );
        }
        let m = svc.metrics();
        assert_eq!(m.reloads_refused, refused, "{what}");
        assert_eq!(m.reloads_applied, 0, "{what}");
        assert_eq!(
            serving_hash(&svc, "writer").as_deref(),
            Some(serving_hash_before.as_str())
        );
        // The old version keeps serving.
        delivered_beyond(&svc, "rec", before + 2).await;
        delivered_beyond(
            &svc,
            "writer",
            plugin(&svc.metrics(), "writer").delivered + 2,
        )
        .await;
    }

    // A good file again: nothing changed from what runs.
    rig.write_pipeline(&p);
    assert_eq!(svc.reload().await, Outcome::Unchanged);

    let (texts, m) = finish(svc, meeting).await;
    let written: Vec<String> = writer_lines(&rig.out())
        .iter()
        .map(|l| l["text"].as_str().expect("text").to_owned())
        .collect();
    assert_eq!(
        written, texts,
        "the writer kept its instance and lost nothing"
    );
    for name in ["writer", "rec"] {
        let s = plugin(&m, name);
        assert_eq!(
            (s.swaps, s.dropped, s.dead_lettered, s.traps),
            (0, 0, 0, 0),
            "{name}: {s:?}"
        );
    }
}
