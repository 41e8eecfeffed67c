//! The `rtms-host` binary itself: exit codes and messages of `validate` and `run`, and a
//! real process shut down by SIGTERM after a SIGHUP reload.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rtms-host"))
}

/// `rtms-host validate --no-load <path>`: its exit code and stderr.
fn validate_no_load(path: &std::path::Path) -> (Option<i32>, String) {
    let out = bin()
        .args(["validate", "--no-load"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The example names components the binary carries (`builtin:NAME`), so it validates with
/// no plugin build.
#[test]
fn validate_accepts_the_example_pipeline() {
    let text = std::fs::read_to_string(root().join("examples/pipeline.toml")).unwrap();
    assert!(
        text.contains("component = \"builtin:transcript_writer\""),
        "the example names the binary's own components"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pipeline.toml");
    std::fs::write(&p, text).unwrap();
    let out = bin()
        .args(["validate", "--load"])
        .arg(&p)
        .env_remove("ZM_RTMS_SECRET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": ok ("), "{stdout}");
}

#[test]
fn validate_names_the_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\nlistne = 3\n",
    )
    .unwrap();
    let out = bin().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:4:1"), "{err}");
    assert!(err.contains("did you mean \"listen\""), "{err}");
}

#[test]
fn validate_reports_every_error_in_one_run_plugin_config_mistakes_included() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    // Two mistakes in the file: all reported at once, with their lines.
    std::fs::write(
        &p,
        "version = 1\n[server]\nmax_body_bytes = 10\n[rtms]\nkeepalive_interval_ms = 100\n",
    )
    .unwrap();
    let out = bin().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3:18: server.max_body_bytes")
            && err.contains("bad.toml:5:25: rtms.keepalive_interval_ms")
            && err.contains("2 errors in all"),
        "{err}"
    );
    // Mistakes only the plugins' init can see: found without --load, each with the line of
    // the plugin's [plugin.config].
    let plugins = env!("RTMS_PLUGINS_DIR");
    let text = format!(
        r#"version = 1

[[plugin]]
name = "alerter"
component = "{plugins}/keyword_alerter.wasm"
media = ["transcript"]

[plugin.config]
keywords = ["refund"]
severity = "loud"

[[plugin]]
name = "writer"
component = "{plugins}/transcript_writer.wasm"
media = ["transcript"]

[plugin.config]
formt = "text"
"#
    );
    std::fs::write(&p, text).unwrap();
    let out = bin().arg("validate").arg(&p).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("bad.toml:8:1: plugin \"alerter\"") && err.contains("severity"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:17:1: plugin \"writer\"") && err.contains("formt"),
        "{err}"
    );
    assert!(err.contains("2 errors in all"), "{err}");
    // --no-load checks the file alone.
    let (code, err) = validate_no_load(&p);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn validate_and_run_refuse_an_exposed_admin_listener_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("exposed.toml");
    std::fs::write(&p, "version = 1\n[admin]\nlisten = \"0.0.0.0:9464\"\n").unwrap();
    let out = bin()
        .arg("validate")
        .arg(&p)
        .env_remove("RTMS_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exposed.toml:3:"), "{err}");
    assert!(err.contains("admin.listen = \"0.0.0.0:9464\""), "{err}");
    assert!(err.contains("export RTMS_ADMIN_TOKEN="), "{err}");
    let out = bin()
        .args(["run", "--config"])
        .arg(&p)
        .env("ZM_RTMS_CLIENT", "id")
        .env("ZM_RTMS_SECRET", "secret")
        .env("ZOOM_SECRET_TOKEN", "token")
        .env_remove("RTMS_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RTMS_ADMIN_TOKEN"));
    // The old key is refused with its replacement named.
    std::fs::write(&p, "version = 1\n[server]\nadmin = true\n").unwrap();
    let out = bin().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replaced by the [admin] section"), "{err}");
}

#[test]
fn run_without_credentials_says_which_variable_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(&p, "version = 1\n").unwrap();
    let out = bin()
        .args(["run", "--config"])
        .arg(&p)
        .env_remove("ZM_RTMS_CLIENT")
        .env_remove("ZM_RTMS_SECRET")
        .env_remove("ZOOM_SECRET_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ZM_RTMS_"), "{err}");
}

#[test]
fn run_reloads_on_sighup_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pipeline.toml");
    std::fs::write(
        &p,
        format!(
            r#"version = 1
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[runtime]
cache_dir = "{cache}"
[runtime.reload]
watch = false
[[plugin]]
name = "noop"
component = "{plugins}/noop.wasm"
media = ["transcript"]
"#,
            cache = crate::util::cache_dir().display(),
            plugins = rtms_host::cli::demo::BUILT_PLUGINS_DIR,
        ),
    )
    .unwrap();
    let mut child = bin()
        .args(["run", "--config"])
        .arg(&p)
        .env("ZM_RTMS_CLIENT", "id")
        .env("ZM_RTMS_SECRET", "secret")
        .env("ZOOM_SECRET_TOKEN", "token")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut wait_for = |needle: &str| {
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains(needle) {
                return line;
            }
        }
        panic!("the host exited before logging {needle:?}");
    };
    wait_for("rtms-host ready");
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for("nothing to change");
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for("stopped");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// A pipeline whose plugin instance pool cannot be reserved is refused with the reason and
/// the settings to change; `[runtime] pool = "off"` takes it as it is.
#[test]
fn validate_refuses_a_pool_that_cannot_be_sized() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pool.toml");
    let pipeline = |runtime: &str| {
        format!(
            r#"version = 1
[rtms]
max_streams = 200000
[runtime]
{runtime}

[[plugin]]
name = "writer"
component = "builtin:transcript_writer"
media = ["transcript"]
[plugin.limits]
memory_mb = 512

[[plugin]]
name = "alerter"
component = "builtin:keyword_alerter"
media = ["transcript"]
[plugin.config]
keywords = ["refund"]
"#
        )
    };
    std::fs::write(&p, pipeline("")).unwrap();
    let (code, err) = validate_no_load(&p);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("the instance pool cannot be sized")
            && err.contains("rtms.max_streams = 200000 × 2 enabled plugin(s)")
            && err.contains("lower rtms.max_streams")
            && err.contains("pool = \"off\""),
        "{err}"
    );
    std::fs::write(&p, pipeline("pool = \"off\"")).unwrap();
    let (code, err) = validate_no_load(&p);
    assert_eq!(code, Some(0), "{err}");
    std::fs::write(&p, pipeline("pool_instances = 1000")).unwrap();
    let (code, err) = validate_no_load(&p);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains(
            "pool.toml:5:18: runtime.pool_instances = 1000 is fewer than the 400002 instances"
        ),
        "{err}"
    );
    std::fs::write(&p, pipeline("pool = \"big\"")).unwrap();
    let (_, err) = validate_no_load(&p);
    assert!(
        err.contains("runtime.pool = \"big\" is not a pool setting"),
        "{err}"
    );
}
