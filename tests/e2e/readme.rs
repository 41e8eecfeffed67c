//! The README's production path, as written: on a fresh clone the example pipeline validates
//! (its components are carried by the binary, `builtin:NAME`), and `rtms-host run` on it takes
//! a meeting from `rtms-host simulate` and writes the transcript under `out/`.
//!
//! The two differences from a production run are the ones the README states for a local
//! trial: free ports instead of 8080 and 9464 (tests never take fixed ports), and
//! `RTMS_ALLOWED_HOSTS=127.0.0.1 RTMS_ALLOW_INSECURE_WS=true`, which let the host accept the
//! simulator's `ws://` server URLs on loopback.

use std::process::Command;

use crate::host_process::{CLIENT_ID, CLIENT_SECRET, HostProcess, WEBHOOK_SECRET, host_binary};

fn creds(cmd: &mut Command) -> &mut Command {
    cmd.env("ZM_RTMS_CLIENT", CLIENT_ID)
        .env("ZM_RTMS_SECRET", CLIENT_SECRET)
        .env("ZOOM_SECRET_TOKEN", WEBHOOK_SECRET)
}

#[test]
fn the_example_pipeline_validates_and_runs_against_the_simulator() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example = std::fs::read_to_string(root.join("examples/pipeline.toml")).unwrap();
    let text = example
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:9464\"", "listen = \"127.0.0.1:0\"");
    assert_eq!(
        text.matches("127.0.0.1:0").count(),
        2,
        "the example's two listeners moved"
    );
    let dir = tempfile::tempdir().unwrap();
    let rel = "examples/pipeline.toml";
    let path = dir.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &text).unwrap();
    let (bin, _) = host_binary();

    // `rtms-host validate examples/pipeline.toml`: the file, the components, each init.
    let out = creds(Command::new(&bin).arg("validate").arg(&path))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "validate failed: {said}");
    assert!(said.contains(": ok ("), "{said}");

    // `rtms-host run --config examples/pipeline.toml`, then a meeting from the simulator.
    let out_dir = dir.path().join("out");
    let host = HostProcess::start_in(
        dir,
        rel,
        &text,
        &[
            ("RTMS_ALLOWED_HOSTS", "127.0.0.1"),
            ("RTMS_ALLOW_INSECURE_WS", "true"),
        ],
    );
    let sim = creds(Command::new(&bin).args([
        "simulate",
        "--pace",
        "fast",
        "--webhook-url",
        &host.webhook_url(),
    ]))
    .output()
    .unwrap();
    assert!(
        sim.status.success(),
        "the simulated meeting failed: {}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let (logs, _dir) = host.stop_keeping_dir();
    let transcripts: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap_or_else(|e| panic!("no {}: {e}\n{}", out_dir.display(), logs.join("\n")))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    assert_eq!(transcripts.len(), 1, "{transcripts:?}\n{}", logs.join("\n"));
    let text = std::fs::read_to_string(&transcripts[0]).unwrap();
    assert!(
        text.lines().count() >= 5,
        "a short transcript: {text}\n{}",
        logs.join("\n")
    );
}
