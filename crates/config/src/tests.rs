//! Unit tests: defaults, environment overrides, secrets, plugins, the diff.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rtms_proto::Product;
use rtms_proto::params::{codec, data_opt, sample_rate};

use crate::*;

fn secrets() -> MapEnv {
    MapEnv::new()
        .with("ZM_RTMS_CLIENT", "id")
        .with("ZM_RTMS_SECRET", "s3cr3t-value")
        .with("ZOOM_SECRET_TOKEN", "tok3n-value")
}

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wasm"), b"").unwrap();
        std::fs::write(dir.path().join("b.wasm"), b"").unwrap();
        Dir { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("pipeline.toml")
    }

    fn parse_with(
        &self,
        text: &str,
        env: &dyn Env,
        opts: LoadOptions,
    ) -> Result<Pipeline, ConfigError> {
        Pipeline::parse(text, &self.path(), env, opts)
    }

    fn parse(&self, text: &str) -> Pipeline {
        match self.parse_with(text, &secrets(), LoadOptions::default()) {
            Ok(p) => p,
            Err(e) => panic!("should parse: {e}"),
        }
    }

    fn err(&self, text: &str) -> String {
        match self.parse_with(text, &secrets(), LoadOptions::default()) {
            Ok(_) => panic!("should fail:\n{text}"),
            Err(e) => e.to_string(),
        }
    }
}

const PLUGIN_A: &str = r#"
[[plugin]]
name = "a"
component = "a.wasm"
media = ["transcript", "chat"]
"#;

#[test]
fn a_minimal_file_gets_every_default() {
    let d = Dir::new();
    let p = d.parse("version = 1");
    assert_eq!(p.path, d.path());
    assert_eq!(p.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(p.server.webhook_path, "/webhook");
    assert_eq!(p.server.max_body_bytes, 1024 * 1024);
    assert_eq!(p.server.timestamp_window, Duration::from_secs(300));
    assert!(p.admin.enabled);
    assert_eq!(p.admin.listen.to_string(), "127.0.0.1:9464");
    assert_eq!(p.admin.token_env, "RTMS_ADMIN_TOKEN");
    assert_eq!(p.admin.token, None);
    assert_eq!(p.admin.reload_min_interval, Duration::from_millis(1_000));
    assert_eq!(p.zoom.client_id.as_deref(), Some("id"));
    assert_eq!(
        p.zoom.client_secret.as_ref().map(Secret::expose),
        Some("s3cr3t-value")
    );
    assert_eq!(
        p.zoom.webhook_secret.as_ref().map(Secret::expose),
        Some("tok3n-value")
    );
    let r = &p.rtms;
    assert_eq!(r.connection_timeout, Duration::from_millis(10_000));
    assert_eq!(r.connection_max_attempts, 5);
    assert_eq!(r.connection_retry_delay, Duration::from_millis(5_000));
    assert_eq!(r.reconnect_max_attempts, 3);
    assert_eq!(r.reconnect_base_delay, Duration::from_millis(2_000));
    assert_eq!(r.reconnect_max_delay, Duration::from_millis(30_000));
    assert_eq!(r.reconnect_jitter_percent, 20);
    assert_eq!(r.reconnect_healthy_after, Duration::from_millis(5_000));
    assert_eq!(r.reconnect_flap_max, 20);
    assert_eq!(r.reconnect_flap_window, Duration::from_millis(600_000));
    assert_eq!(r.stop_drain, Duration::from_millis(2_000));
    assert_eq!(r.keepalive_interval, Duration::from_millis(5_000));
    assert_eq!(r.keepalive_timeout, Duration::from_millis(15_000));
    assert_eq!(r.webhook_wait_timeout, Duration::from_millis(300_000));
    assert!(r.media.is_empty());
    assert!(r.events.is_empty());
    assert_eq!(r.socket_mode, SocketMode::Unified);
    assert!(r.buffer_data);
    assert_eq!(p.runtime.cache_dir, d.dir.path().join(".cache/rtms-host"));
    assert_eq!(p.runtime.dead_letter_dir, d.dir.path().join("dead-letter"));
    assert_eq!(p.runtime.epoch_tick, Duration::from_millis(5));
    assert_eq!(p.runtime.shutdown_grace, Duration::from_millis(10_000));
    assert!(p.runtime.reload.watch);
    assert_eq!(p.runtime.reload.debounce, Duration::from_millis(200));
    assert!(p.plugins.is_empty());
    assert_eq!(p.sinks.len(), 1);
    assert_eq!(p.sinks[0].target, SinkTarget::Stdout);
    assert_eq!(p.sinks[0].filter.min_severity, Severity::Info);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn an_exposed_admin_listener_needs_a_token_even_when_validating() {
    let d = Dir::new();
    let text = "version = 1\n[admin]\nlisten = \"0.0.0.0:9464\"";
    for opts in [LoadOptions::default(), LoadOptions::validate_only()] {
        let e = d
            .parse_with(text, &secrets(), opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin.listen = \"0.0.0.0:9464\""), "{e}");
        assert!(e.contains("export RTMS_ADMIN_TOKEN="), "{e}");
        assert!(e.contains("pipeline.toml:3:"), "{e}");
    }
    let env = secrets().with("RTMS_ADMIN_TOKEN", "0123456789abcdef0123");
    let p = d.parse_with(text, &env, LoadOptions::default()).unwrap();
    assert!(p.admin.exposed());
    assert_eq!(
        p.admin.token.as_ref().map(Secret::expose),
        Some("0123456789abcdef0123")
    );
    // A renamed variable is the one read and named.
    let renamed = format!("{text}\ntoken_env = \"OPS_TOKEN\"");
    let e = d
        .parse_with(&renamed, &env, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("export OPS_TOKEN="), "{e}");
    // Off, or on loopback, no token is needed.
    d.parse(&format!("{text}\nenabled = false"));
    assert!(
        !d.parse("version = 1\n[admin]\nlisten = \"127.0.0.2:1\"")
            .admin
            .exposed()
    );
    assert!(
        d.parse("version = 1\n[admin]\nlisten = \"[::1]:1\"")
            .admin
            .token
            .is_none()
    );
}

#[test]
fn a_short_admin_token_is_refused() {
    let d = Dir::new();
    let env = secrets().with("RTMS_ADMIN_TOKEN", "short");
    let e = d
        .parse_with("version = 1", &env, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("RTMS_ADMIN_TOKEN") && e.contains("shorter than 16"),
        "{e}"
    );
    assert!(!e.contains("short\""), "the token is never printed: {e}");
}

#[test]
fn a_weak_admin_token_is_refused_with_how_to_make_one() {
    let d = Dir::new();
    for (token, problem) in [
        ("                ", "is only whitespace"),
        ("\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t", "is only whitespace"),
        ("0123456789abcdef\n", "contains whitespace"),
        ("01234567 89abcdef", "contains whitespace"),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "fewer than 8 distinct characters",
        ),
        (
            "0101010101010101010101010101",
            "fewer than 8 distinct characters",
        ),
        ("abcdefgabcdefgabcdefg", "fewer than 8 distinct characters"),
    ] {
        let env = secrets().with("RTMS_ADMIN_TOKEN", token);
        let e = d
            .parse_with("version = 1", &env, LoadOptions::validate_only())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the admin token in environment variable RTMS_ADMIN_TOKEN")
                && e.contains(problem),
            "{token:?}: {e}"
        );
        assert!(e.contains("openssl rand -hex 32"), "{e}");
        assert!(
            token.trim().is_empty() || !e.contains(token.trim()),
            "the token is never printed: {e}"
        );
    }
    // Sixteen characters, eight of them distinct, is enough.
    let env = secrets().with("RTMS_ADMIN_TOKEN", "abcdefghabcdefgh");
    let p = d
        .parse_with("version = 1", &env, LoadOptions::default())
        .unwrap();
    assert_eq!(
        p.admin.token.as_ref().map(Secret::expose),
        Some("abcdefghabcdefgh")
    );
}

#[test]
fn the_old_server_admin_key_names_its_replacement() {
    let d = Dir::new();
    let e = d.err("version = 1\n[server]\nadmin = true");
    assert!(e.contains("pipeline.toml:3:"), "{e}");
    assert!(
        e.contains("server.admin was replaced by the [admin] section"),
        "{e}"
    );
    assert!(e.contains("enabled = true"), "{e}");
}

#[test]
fn on_full_is_one_policy_or_one_per_kind_and_warns_when_text_may_be_dropped_for_media() {
    let d = Dir::new();
    let plugin = |on_full: &str| {
        format!(
            "version = 1\n[[plugin]]\nname = \"b\"\ncomponent = \"b.wasm\"\nmedia = [\"audio\", \"transcript\", \"chat\"]\n[plugin.queue]\n{on_full}\n"
        )
    };
    let p = d.parse(&plugin(""));
    let q = p.plugin("b").unwrap().queue.on_full;
    assert_eq!(q, QueuePolicy::default_for(p.plugin("b").unwrap().media));
    assert_eq!(
        q.describe(p.plugin("b").unwrap().media),
        "audio: drop-oldest, transcript: block, chat: block"
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);

    // Per kind: the kinds named change, the others keep their default.
    let p = d.parse(&plugin(
        r#"on_full = { audio = "block", chat = "drop-oldest" }"#,
    ));
    let q = p.plugin("b").unwrap().queue.on_full;
    assert_eq!(q.on_full(MediaKind::Audio), OnFull::Block);
    assert_eq!(q.on_full(MediaKind::Chat), OnFull::DropOldest);
    assert_eq!(q.on_full(MediaKind::Transcript), OnFull::Block);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);

    // One policy for every kind: taken as said, with a warning for drop-oldest.
    let p = d.parse(&plugin(r#"on_full = "block""#));
    assert_eq!(p.plugin("b").unwrap().queue.on_full, QueuePolicy::BLOCK);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let p = d.parse(&plugin(r#"on_full = "drop-oldest""#));
    let q = p.plugin("b").unwrap().queue.on_full;
    assert_eq!(q.on_full(MediaKind::Transcript), OnFull::DropOldest);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].contains("lets transcript, chat frames be dropped to make room for audio")
            && p.warnings[0].contains(r#"on_full = { audio = "drop-oldest" }"#),
        "{}",
        p.warnings[0]
    );

    // Mistakes name the key and the fix.
    let e = d.err(&plugin("on_full = 3"));
    assert!(e.contains("is not a queue policy"), "{e}");
    let e = d.err(&plugin("on_full = {}"));
    assert!(e.contains("sets nothing"), "{e}");
    let e = d.err(&plugin(r#"on_full = { audio = "drop" }"#));
    assert!(
        e.contains(r#"plugin.queue.on_full.audio = "drop" is not a queue policy"#),
        "{e}"
    );
}

#[test]
fn plugin_defaults_follow_what_it_subscribes_to() {
    let d = Dir::new();
    let text = format!(
        "version = 1\n{PLUGIN_A}\n[[plugin]]\nname = \"b\"\ncomponent = \"b.wasm\"\nmedia = [\"audio\", \"event\"]\n"
    );
    let p = d.parse(&text);
    let a = p.plugin("a").unwrap();
    assert_eq!(a.component, d.dir.path().join("a.wasm"));
    assert!(a.enabled);
    assert_eq!(
        a.queue,
        Queue {
            capacity: 1024,
            on_full: QueuePolicy::BLOCK,
            block_timeout: Duration::from_millis(1000),
        }
    );
    assert_eq!(
        a.batch,
        Batch {
            max_frames: 32,
            max_wait: Duration::ZERO
        }
    );
    assert_eq!(a.limits.memory_mb, 64);
    assert_eq!(a.limits.memory_bytes(), 64 * 1024 * 1024);
    assert_eq!(a.limits.call_timeout, Duration::from_millis(1000));
    assert_eq!(
        a.restart,
        Restart {
            base_delay: Duration::from_millis(1000),
            max_delay: Duration::from_millis(30_000),
            healthy_reset: Duration::from_millis(10_000),
            max_failures: 5,
            window: Duration::from_millis(60_000),
            rollback_traps: 2,
            rollback_window: Duration::from_millis(10_000),
        }
    );
    assert_eq!(a.filter, PluginFilter::default());
    let b = p.plugin("b").unwrap();
    assert_eq!(
        b.queue.on_full.on_full(MediaKind::Audio),
        OnFull::DropOldest,
        "real-time media drops rather than blocks"
    );
    assert_eq!(
        b.queue.on_full.on_full(MediaKind::Event),
        OnFull::Block,
        "events are never dropped to make room for audio"
    );
    // Requested media: the union of the plugins' kinds, without `event`.
    let want: MediaKinds = [MediaKind::Audio, MediaKind::Transcript, MediaKind::Chat]
        .into_iter()
        .collect();
    assert_eq!(p.rtms.media, want);
    // Events: defaults, because plugin b takes events.
    assert_eq!(p.rtms.events, vec![2, 3, 4, 5, 6]);
    // Media params: only for requested kinds, with the project's defaults.
    let mp = &p.rtms.media_params;
    let audio = mp.audio.as_ref().unwrap();
    assert_eq!(audio.codec, Some(codec::L16));
    assert_eq!(audio.sample_rate, Some(sample_rate::SR_16K));
    assert_eq!(audio.channel, Some(1));
    assert_eq!(audio.send_rate, Some(20));
    assert_eq!(audio.data_opt, Some(data_opt::AUDIO_MIXED_STREAM));
    assert!(mp.video.is_none() && mp.deskshare.is_none());
    assert_eq!(mp.transcript.as_ref().unwrap().src_language, Some(-1));
    assert!(mp.chat.is_some());
}

#[test]
fn media_params_map_friendly_names_to_protocol_numbers() {
    let d = Dir::new();
    let p = d.parse(
        r#"version = 1
[rtms]
media = ["audio", "video", "share"]
[rtms.audio]
codec = "opus"
sample_rate = 48000
channels = 2
frame_ms = 100
per_speaker = true
[rtms.video]
codec = "png"
resolution = "fhd"
[rtms.deskshare]
codec = "h264"
resolution = "qhd"
fps = 30
"#,
    );
    let mp = &p.rtms.media_params;
    let a = mp.audio.as_ref().unwrap();
    assert_eq!(
        (a.codec, a.sample_rate, a.channel, a.send_rate, a.data_opt),
        (
            Some(codec::OPUS),
            Some(sample_rate::SR_48K),
            Some(2),
            Some(100),
            Some(data_opt::AUDIO_MULTI_STREAMS)
        )
    );
    let v = mp.video.as_ref().unwrap();
    assert_eq!(
        (v.codec, v.resolution, v.fps),
        (Some(codec::PNG), Some(3), Some(5))
    );
    let s = mp.deskshare.as_ref().unwrap();
    assert_eq!(
        (s.codec, s.resolution, s.fps),
        (Some(codec::H264), Some(4), Some(30))
    );
}

#[test]
fn stereo_needs_opus_and_sample_rates_are_zooms() {
    let d = Dir::new();
    let e = d.err("version = 1\n[rtms]\nmedia = [\"audio\"]\n[rtms.audio]\nchannels = 2");
    assert!(
        e.contains("rtms.audio.channels = 2 needs codec = \"opus\""),
        "{e}"
    );
    let e = d.err("version = 1\n[rtms]\nmedia = [\"audio\"]\n[rtms.audio]\nsample_rate = 44100");
    assert!(e.contains("use 8000, 16000, 32000 or 48000"), "{e}");
}

#[test]
fn environment_overrides_win_over_the_file() {
    let d = Dir::new();
    let text = "version = 1\n[rtms]\nconnection_timeout_ms = 1000\nkeepalive_interval_ms = 4000\n";
    let env = secrets()
        .with("RTMS_CONNECTION_TIMEOUT_MS", "2500")
        .with("RTMS_CONNECTION_MAX_ATTEMPTS", "9")
        .with("RTMS_CONNECTION_RETRY_DELAY_MS", "100")
        .with("RTMS_RECONNECT_MAX_ATTEMPTS", "7")
        .with("RTMS_RECONNECT_BASE_DELAY_MS", "300")
        .with("RTMS_KEEPALIVE_INTERVAL_MS", "6000")
        .with("RTMS_KEEPALIVE_TIMEOUT_MS", "20000")
        .with("RTMS_WEBHOOK_WAIT_TIMEOUT_MS", "60000");
    let p = d.parse_with(text, &env, LoadOptions::default()).unwrap();
    let r = &p.rtms;
    assert_eq!(r.connection_timeout, Duration::from_millis(2500));
    assert_eq!(r.connection_max_attempts, 9);
    assert_eq!(r.connection_retry_delay, Duration::from_millis(100));
    assert_eq!(r.reconnect_max_attempts, 7);
    assert_eq!(r.reconnect_base_delay, Duration::from_millis(300));
    assert_eq!(r.keepalive_interval, Duration::from_millis(6000));
    assert_eq!(r.keepalive_timeout, Duration::from_millis(20_000));
    assert_eq!(r.webhook_wait_timeout, Duration::from_millis(60_000));
    // Without the variables, the file's values hold.
    let p = d.parse(text);
    assert_eq!(p.rtms.connection_timeout, Duration::from_millis(1000));
    assert_eq!(p.rtms.keepalive_interval, Duration::from_millis(4000));
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let d = Dir::new();
    let env = secrets().with("RTMS_CONNECTION_MAX_ATTEMPTS", "-1");
    let e = d
        .parse_with("version = 1", &env, LoadOptions::default())
        .unwrap_err();
    assert!(
        matches!(&e, ConfigError::EnvOverride { var, .. } if var == "RTMS_CONNECTION_MAX_ATTEMPTS"),
        "{e}"
    );
    // An override that breaks a cross-check is reported against the variable too.
    let env = secrets().with("RTMS_KEEPALIVE_TIMEOUT_MS", "4000");
    let e = d
        .parse_with("version = 1", &env, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("RTMS_KEEPALIVE_TIMEOUT_MS=\"4000\""), "{e}");
    assert!(
        e.contains("must be greater than keepalive_interval_ms (5000)"),
        "{e}"
    );
}

#[test]
fn missing_secrets_are_errors_unless_only_validating() {
    let d = Dir::new();
    let env = MapEnv::new().with("ZM_RTMS_CLIENT", "id");
    let e = d
        .parse_with("version = 1", &env, LoadOptions::default())
        .unwrap_err();
    assert!(
        matches!(&e, ConfigError::MissingSecret { var, .. } if var == "ZM_RTMS_SECRET"),
        "{e}"
    );
    let p = d
        .parse_with("version = 1", &env, LoadOptions::validate_only())
        .unwrap();
    assert!(p.zoom.client_secret.is_none() && p.zoom.webhook_secret.is_none());
    assert!(!p.zoom.has_credentials());
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("ZM_RTMS_SECRET"));
    assert!(p.warnings[1].contains("ZOOM_SECRET_TOKEN"));
}

#[test]
fn credential_variables_can_be_renamed_and_secrets_never_print() {
    let d = Dir::new();
    let env = MapEnv::new()
        .with("MY_ID", "the-id")
        .with("MY_SECRET", "very-secret")
        .with("MY_TOKEN", "very-token");
    let text = "version = 1\n[zoom]\nclient_id_env = \"MY_ID\"\nclient_secret_env = \"MY_SECRET\"\nwebhook_secret_env = \"MY_TOKEN\"\n";
    let p = d.parse_with(text, &env, LoadOptions::default()).unwrap();
    assert_eq!(
        p.zoom.client_secret.as_ref().unwrap().expose(),
        "very-secret"
    );
    let shown = format!("{p:?} {}", p.zoom.client_secret.as_ref().unwrap());
    assert!(
        !shown.contains("very-secret") && !shown.contains("very-token"),
        "{shown}"
    );
}

#[test]
fn plaintext_secrets_need_the_operators_opt_in() {
    let d = Dir::new();
    let text = "version = 1\n[zoom]\nallow_plaintext_secrets = true\nclient_secret = \"in-file\"\nwebhook_secret = \"tok\"\n";
    let p = d
        .parse_with(
            text,
            &MapEnv::new().with("ZM_RTMS_CLIENT", "id"),
            LoadOptions::default(),
        )
        .unwrap();
    assert_eq!(p.zoom.client_secret.as_ref().unwrap().expose(), "in-file");
    assert_eq!(p.zoom.webhook_secret.as_ref().unwrap().expose(), "tok");
    let e = d.err("version = 1\n[zoom]\nwebhook_secret = \"tok\"\n");
    assert!(
        e.contains("zoom.webhook_secret holds a secret in plain text"),
        "{e}"
    );
}

#[test]
fn components_are_checked_only_when_asked_and_only_for_enabled_plugins() {
    let d = Dir::new();
    let text =
        "version = 1\n[[plugin]]\nname = \"x\"\ncomponent = \"missing.wasm\"\nmedia = [\"chat\"]\n";
    let e = d.err(text);
    assert!(
        e.contains("missing.wasm does not exist; it may need building"),
        "{e}"
    );
    let opts = LoadOptions {
        check_components: false,
        ..LoadOptions::default()
    };
    let p = d.parse_with(text, &secrets(), opts).unwrap();
    assert_eq!(p.plugins[0].component, d.dir.path().join("missing.wasm"));
    let p = d.parse(&format!("{text}enabled = false\n"));
    assert!(!p.plugins[0].enabled);
    assert_eq!(p.enabled_plugins().count(), 0);
    assert!(
        p.rtms.media.is_empty(),
        "a disabled plugin requests nothing"
    );
}

#[test]
fn granted_directories_resolve_and_need_an_existing_parent() {
    let d = Dir::new();
    let text = format!(
        "version = 1\n{PLUGIN_A}\n[[plugin.dir]]\nhost = \"out\"\nguest = \"/out\"\nread_only = true\n"
    );
    let p = d.parse(&text);
    assert_eq!(
        p.plugins[0].dirs,
        vec![DirGrant {
            host: d.dir.path().join("out"),
            guest: "/out".into(),
            read_only: true,
            quota_mb: None,
            symlinks: false,
        }]
    );
    let e = d.err(&text.replace("\"out\"", "\"no/such/out\""));
    assert!(
        e.contains("does not exist; the host creates the directory itself"),
        "{e}"
    );
}

#[test]
fn sandbox_bounds_default_and_refuse_contradictions() {
    let d = Dir::new();
    let p = d.parse(&format!("version = 1\n{PLUGIN_A}"));
    let l = p.plugins[0].limits;
    assert_eq!(
        (l.max_resources, l.max_open_files, l.max_inodes),
        (4096, 64, 100_000)
    );
    let p = d.parse(&format!(
        "version = 1\n{PLUGIN_A}\n[plugin.limits]\nmax_open_files = 8\nmax_inodes = 10\n\n[[plugin.dir]]\nhost = \"out\"\nguest = \"/out\"\nsymlinks = true\n"
    ));
    assert_eq!(p.plugins[0].limits.max_open_files, 8);
    assert!(p.plugins[0].dirs[0].symlinks);
    let e = d.err(&format!(
        "version = 1\n{PLUGIN_A}\n[plugin.limits]\nmax_open_files = 4000\n"
    ));
    assert!(
        e.contains("max_open_files (4000) above half of max_resources (4096)"),
        "{e}"
    );
    let e = d.err(&format!(
        "version = 1\n{PLUGIN_A}\n[[plugin.dir]]\nhost = \"out\"\nguest = \"/out\"\nread_only = true\nsymlinks = true\n"
    ));
    assert!(e.contains("read_only and says symlinks = true"), "{e}");
}

#[test]
fn filters_match_products_meetings_and_users() {
    let d = Dir::new();
    let text = format!("version = 1\n{PLUGIN_A}products = [\"webinar\"]\nusers = [\"u1\"]\n");
    let p = d.parse(&text);
    let f = &p.plugins[0].filter;
    assert!(f.matches(Product::Webinar, "m", Some("u1")));
    assert!(!f.matches(Product::Meeting, "m", Some("u1")));
    assert!(!f.matches(Product::Webinar, "m", None));
    let e = d.err(&format!("version = 1\n{PLUGIN_A}meeting_ids = []\n"));
    assert!(e.contains("meeting_ids = [] matches nothing"), "{e}");
}

#[test]
fn plugin_config_is_flattened_for_init() {
    let d = Dir::new();
    let text = format!(
        "version = 1\n{PLUGIN_A}\n[plugin.config]\nkeywords = [\"refund\"]\nformat = \"text\"\nlimit = 3\n"
    );
    let p = d.parse(&text);
    assert_eq!(
        p.plugins[0].config,
        vec![
            ("format".to_owned(), "text".to_owned()),
            ("keywords".to_owned(), "[\"refund\"]".to_owned()),
            ("limit".to_owned(), "3".to_owned()),
        ]
    );
}

#[test]
fn sinks_resolve_paths_and_check_their_plugins() {
    let d = Dir::new();
    let text = format!(
        "version = 1\n{PLUGIN_A}\n[[sink]]\ntype = \"jsonl\"\npath = \"out/a.jsonl\"\nmin_severity = \"warning\"\nplugins = [\"a\"]\nkinds = [\"keyword\"]\n[[sink]]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\n"
    );
    let p = d.parse(&text);
    assert_eq!(p.sinks.len(), 2);
    assert_eq!(
        p.sinks[0].target,
        SinkTarget::Jsonl {
            path: d.dir.path().join("out/a.jsonl")
        }
    );
    let f = &p.sinks[0].filter;
    assert!(f.matches("a", "keyword", Severity::Critical));
    assert!(!f.matches("a", "keyword", Severity::Notice));
    assert!(!f.matches("b", "keyword", Severity::Critical));
    assert!(!f.matches("a", "summary", Severity::Critical));
    assert_eq!(
        p.sinks[1].target,
        SinkTarget::Http {
            url: "http://127.0.0.1:9/x".into()
        }
    );
    let e = d.err("version = 1\n[[sink]]\ntype = \"jsonl\"\n");
    assert!(e.contains("needs a file: add path"), "{e}");
}

#[test]
fn outputs_are_bounded_in_bytes_with_defaults_and_limits() {
    let d = Dir::new();
    let p = d.parse("version = 1\n[[sink]]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\n");
    assert_eq!(p.sinks[0].queue_bytes, 16 << 20);
    assert_eq!(p.sinks[0].delivery, Delivery::default());
    assert_eq!(p.sinks[0].delivery.request_timeout, Duration::from_secs(5));
    assert_eq!(p.runtime.output_queue_bytes, 64 << 20);
    assert_eq!(p.runtime.tap_bytes, 16 << 20);
    let p = d.parse(
        "version = 1\n[runtime]\noutput_queue_mb = 8\ntap_mb = 2\n[[sink]]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\nqueue_mb = 4\nconnect_timeout_ms = 100\nrequest_timeout_ms = 300\nretries = 0\nretry_backoff_ms = 50\n",
    );
    let s = &p.sinks[0];
    assert_eq!(s.queue_bytes, 4 << 20);
    assert_eq!(s.delivery.connect_timeout, Duration::from_millis(100));
    assert_eq!(s.delivery.request_timeout, Duration::from_millis(300));
    assert_eq!(s.delivery.retries, 0);
    assert_eq!(s.delivery.retry_backoff, Duration::from_millis(50));
    assert_eq!(
        (p.runtime.output_queue_bytes, p.runtime.tap_bytes),
        (8 << 20, 2 << 20)
    );
    let e = d.err("version = 1\n[[sink]]\ntype = \"stdout\"\nqueue_mb = 0\n");
    assert!(e.contains("sink.queue_mb"), "{e}");
    let e = d.err(
        "version = 1\n[[sink]]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\nretries = 100\n",
    );
    assert!(e.contains("sink.retries"), "{e}");
}

#[test]
fn the_plugins_descriptor_budget_is_optional_bounded_and_needs_a_restart() {
    let d = Dir::new();
    let p = d.parse("version = 1\n");
    assert_eq!(
        p.runtime.plugin_open_files, None,
        "from RLIMIT_NOFILE at start"
    );
    let q = d.parse("version = 1\n[runtime]\nplugin_open_files = 4096\n");
    assert_eq!(q.runtime.plugin_open_files, Some(4096));
    let e = d.err("version = 1\n[runtime]\nplugin_open_files = 3\n");
    assert!(e.contains("runtime.plugin_open_files"), "{e}");
    assert!(
        p.diff(&q)
            .restart_required
            .iter()
            .any(|r| r.starts_with("runtime.plugin_open_files changed")),
        "{:?}",
        p.diff(&q).restart_required
    );
}

#[test]
fn core_threads_are_off_by_default_bounded_and_need_a_restart() {
    let d = Dir::new();
    let p = d.parse("version = 1\n");
    assert_eq!(p.runtime.threads, None, "no core threads unless asked for");
    let z = d.parse("version = 1\n[runtime]\nthreads = 0\n");
    assert_eq!(z.runtime.threads, Some(0), "0 is the default said out loud");
    assert!(!p.runtime.pin_threads);
    let q = d.parse("version = 1\n[runtime]\nthreads = 2\npin_threads = true\n");
    assert_eq!((q.runtime.threads, q.runtime.pin_threads), (Some(2), true));
    for bad in ["threads = 5000", "threads = 2.5"] {
        let e = d.err(&format!("version = 1\n[runtime]\n{bad}\n"));
        assert!(e.contains("runtime.threads"), "{e}");
    }
    let e = d.err("version = 1\n[runtime]\npin_threads = 2\n");
    assert!(e.contains("pin_threads"), "{e}");
    let changes = p.diff(&q).restart_required;
    for key in ["runtime.threads changed", "runtime.pin_threads changed"] {
        assert!(changes.iter().any(|r| r.starts_with(key)), "{changes:?}");
    }
}

#[test]
fn plugin_names_are_validated_newtypes() {
    assert!(PluginName::try_new("transcript-writer").is_ok());
    assert!(PluginName::try_new("a1").is_ok());
    for bad in [
        "",
        "1abc",
        "-x",
        "Upper",
        "with space",
        "a_b",
        &"x".repeat(65),
    ] {
        assert!(
            PluginName::try_new(bad).is_err(),
            "{bad:?} should be refused"
        );
    }
    let parsed: Result<PluginName, _> = serde_json::from_str("\"Bad\"");
    assert!(parsed.is_err());
    let parsed: PluginName = serde_json::from_str("\"good-1\"").unwrap();
    assert_eq!(parsed.as_str(), "good-1");
    let e = PluginName::try_new("My_Plugin").unwrap_err();
    assert!(e.contains("try \"my-plugin\""), "{e}");
}

/// Found by the pipeline.toml fuzz target: a name whose offending character the suggested fix
/// leaves unchanged (any non-ASCII letter) made the check call itself for ever.
#[test]
fn a_non_ascii_plugin_name_is_refused_not_a_stack_overflow() {
    for bad in ["\u{e9}a", "\u{fffd}a", "a\u{e9}"] {
        let e = PluginName::try_new(bad).unwrap_err();
        assert!(e.contains("use only lowercase letters"), "{e}");
        assert!(
            !e.contains("(try"),
            "no suggestion that is itself refused: {e}"
        );
    }
}

#[test]
fn unknown_keys_list_valid_keys_when_nothing_is_close() {
    let d = Dir::new();
    let e = d.err("version = 1\n[server]\nzzzzzzzz = 1\n");
    assert!(
        e.contains("unknown key \"zzzzzzzz\" in [server]; valid keys: listen, webhook_path"),
        "{e}"
    );
}

#[test]
fn load_reads_the_file_and_reports_a_missing_one() {
    let d = Dir::new();
    std::fs::write(d.path(), "version = 1\n").unwrap();
    let p = Pipeline::load(&d.path(), &secrets(), LoadOptions::default()).unwrap();
    assert_eq!(p.path, d.path());
    let missing = d.dir.path().join("nope.toml");
    let e = Pipeline::load(&missing, &secrets(), LoadOptions::default()).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e.to_string().contains("cannot read the pipeline file"));
}

fn two_plugins(d: &Dir, extra: &str) -> Pipeline {
    d.parse(&format!("version = 1\n{extra}\n{PLUGIN_A}\n[[plugin]]\nname = \"b\"\ncomponent = \"b.wasm\"\nmedia = [\"transcript\"]\n"))
}

#[test]
fn diff_of_identical_pipelines_is_empty() {
    let d = Dir::new();
    let a = two_plugins(&d, "");
    assert!(a.diff(&a.clone()).is_empty());
}

#[test]
fn diff_finds_added_removed_and_changed_plugins() {
    let d = Dir::new();
    let old = two_plugins(&d, "");
    let mut new = old.clone();
    new.plugins.retain(|p| p.name.as_str() != "b");
    let mut c = old.plugins[0].clone();
    c.name = PluginName::try_new("c").unwrap();
    new.plugins.push(c);
    new.plugins[0].config = vec![("k".into(), "v".into())];
    new.plugins[0].queue.capacity = 10;
    let diff = old.diff(&new);
    assert_eq!(diff.added_plugins, vec![PluginName::try_new("c").unwrap()]);
    assert_eq!(
        diff.removed_plugins,
        vec![PluginName::try_new("b").unwrap()]
    );
    assert_eq!(
        diff.changed_plugins,
        vec![PluginChange {
            name: PluginName::try_new("a").unwrap(),
            component: false,
            config: true,
            route: false,
            limits: true,
            settings: vec![PluginSetting::QueueCapacity, PluginSetting::Config],
        }]
    );
    assert!(
        diff.restart_required.is_empty(),
        "{:?}",
        diff.restart_required
    );
    assert!(!diff.sinks_changed);
}

#[test]
fn diff_marks_component_and_route_changes() {
    let d = Dir::new();
    let old = two_plugins(&d, "");
    let new = d.parse(
        "version = 1\n[[plugin]]\nname = \"a\"\ncomponent = \"b.wasm\"\nmedia = [\"transcript\", \"chat\"]\nproducts = [\"meeting\"]\n[[plugin]]\nname = \"b\"\ncomponent = \"b.wasm\"\nmedia = [\"transcript\"]\n[[sink]]\ntype = \"stdout\"\nmin_severity = \"warning\"\n"
    );
    let diff = old.diff(&new);
    assert_eq!(diff.changed_plugins.len(), 1);
    let ch = &diff.changed_plugins[0];
    assert!(
        ch.component && ch.route && !ch.config && !ch.limits,
        "{ch:?}"
    );
    assert!(diff.sinks_changed);
}

#[test]
fn diff_says_which_settings_need_a_restart() {
    let d = Dir::new();
    let old = two_plugins(&d, "");
    let new = two_plugins(
        &d,
        "[server]\nlisten = \"127.0.0.1:9090\"\n[rtms]\nkeepalive_interval_ms = 6000\nmedia = [\"transcript\", \"chat\", \"audio\"]\n",
    );
    let diff = old.diff(&new);
    assert!(
        diff.restart_required.contains(
            &"server.listen changed from 127.0.0.1:8080 to 127.0.0.1:9090: restart to apply"
                .to_owned()
        ),
        "{:?}",
        diff.restart_required
    );
    assert!(
        diff.restart_required
            .iter()
            .any(|s| s.starts_with("rtms.keepalive_interval_ms changed from 5000 to 6000"))
    );
    assert!(diff.restart_required.iter().any(|s| {
        s.starts_with("rtms.media changed from [transcript, chat] to [audio, transcript, chat]")
    }));
    let secret_changed = d
        .parse_with(&format!("version = 1\n{PLUGIN_A}\n[[plugin]]\nname = \"b\"\ncomponent = \"b.wasm\"\nmedia = [\"transcript\"]\n"), &secrets().with("ZM_RTMS_SECRET", "rotated"), LoadOptions::default())
        .unwrap();
    let diff = old.diff(&secret_changed);
    assert_eq!(
        diff.restart_required,
        vec!["the Zoom client secret changed: restart to apply".to_owned()]
    );
    assert!(!format!("{diff:?}").contains("rotated"));
}

#[test]
fn media_kinds_behave_like_a_set() {
    let mut s = MediaKinds::EMPTY;
    assert!(s.is_empty());
    s.insert(MediaKind::Chat);
    s.insert(MediaKind::Audio);
    assert_eq!(
        s.iter().collect::<Vec<_>>(),
        vec![MediaKind::Audio, MediaKind::Chat]
    );
    assert_eq!(s.to_string(), "[audio, chat]");
    assert!(s.contains(MediaKind::Chat) && !s.contains(MediaKind::Event));
    s.remove(MediaKind::Chat);
    assert!(s.is_subset([MediaKind::Audio].into_iter().collect()));
}

#[test]
fn paths_in_the_file_are_made_absolute_and_clean() {
    let d = Dir::new();
    let p = d.parse("version = 1\n[runtime]\ncache_dir = \"./x/../cache\"\n");
    assert_eq!(p.runtime.cache_dir, d.dir.path().join("cache"));
    let rel = Path::new("relative/pipeline.toml");
    let p = Pipeline::parse("version = 1", rel, &secrets(), LoadOptions::default()).unwrap();
    assert!(p.path.is_absolute());
}

#[test]
fn rollback_threshold_is_configurable_and_range_checked() {
    let d = Dir::new();
    let p = d.parse(&format!(
        "version = 1\n{PLUGIN_A}[plugin.restart]\nrollback_traps = 4\nrollback_window_ms = 0\n"
    ));
    let r = p.plugin("a").unwrap().restart;
    assert_eq!(r.rollback_traps, 4);
    assert_eq!(r.rollback_window, Duration::ZERO);
    let e = d.err(&format!(
        "version = 1\n{PLUGIN_A}[plugin.restart]\nrollback_traps = 0\n"
    ));
    assert!(e.contains("rollback_traps"), "{e}");
}

#[test]
fn intake_limits_default_to_zoom_hosts_and_sensible_caps() {
    let d = Dir::new();
    let p = d.parse("version = 1");
    assert_eq!(p.rtms.allowed_hosts, ["*.zoom.us", "*.zoomgov.com"]);
    assert!(!p.rtms.allow_insecure_ws);
    assert_eq!(p.rtms.max_streams, 2000);
    assert_eq!(p.server.max_connections, 1024);
    assert_eq!(p.server.header_timeout, Duration::from_secs(5));
    assert_eq!(p.server.body_timeout, Duration::from_secs(10));
    assert_eq!(p.server.tls, None);
    let p = d.parse(
        "version = 1\n[server]\nmax_connections = 10\nbody_timeout_ms = 500\n\
         [rtms]\nallowed_hosts = [\"127.0.0.1\", \"*.Example.com\"]\nallow_insecure_ws = true\nmax_streams = 3\n",
    );
    assert_eq!(p.rtms.allowed_hosts, ["127.0.0.1", "*.example.com"]);
    assert!(p.rtms.allow_insecure_ws);
    assert_eq!((p.rtms.max_streams, p.server.max_connections), (3, 10));
    assert_eq!(p.server.body_timeout, Duration::from_millis(500));
}

#[test]
fn bad_intake_settings_are_named() {
    let d = Dir::new();
    let e = d.err("version = 1\n[rtms]\nallowed_hosts = [\"wss://rtms.zoom.us\"]\n");
    assert!(
        e.contains("rtms.allowed_hosts") && e.contains("not a host pattern"),
        "{e}"
    );
    let e = d.err("version = 1\n[rtms]\nallowed_hosts = []\n");
    assert!(e.contains("rtms.allowed_hosts is empty"), "{e}");
    let e = d.err("version = 1\n[rtms]\nmax_streams = 0\n");
    assert!(e.contains("rtms.max_streams"), "{e}");
    let e = d.err("version = 1\n[server.tls]\ncert = \"nope.pem\"\nkey = \"a.wasm\"\n");
    assert!(
        e.contains("server.tls.cert") && e.contains("nope.pem"),
        "{e}"
    );
}

#[test]
fn integers_past_toml_range_are_refused_wherever_they_are() {
    let d = Dir::new();
    // An [rtms.audio] no medium uses is not range-checked, but the file is still not TOML.
    let e = d.err("version = 1\n[rtms]\nmedia = [\"transcript\"]\n[rtms.audio]\nsample_rate = 18446744073709551615");
    assert!(e.contains("pipeline.toml:5:"), "{e}");
    assert!(
        e.contains("integer 18446744073709551615 is out of range: TOML integers are 64-bit signed"),
        "{e}"
    );
    let e = d.err("version = 1\n[rtms]\nmax_streams = 0x8000000000000000");
    assert!(e.contains("out of range"), "{e}");
    // The largest TOML integer is still read (and then range-checked by its key).
    let e = d.err("version = 1\n[rtms]\nmax_streams = 9223372036854775807\nconnection_timeout_ms = [1, 99999999999999999999]");
    assert!(e.contains("pipeline.toml:4:"), "{e}");
}

#[test]
fn the_proxy_is_env_none_or_an_http_url_without_credentials() {
    let d = Dir::new();
    let p = d.parse("version = 1\n");
    assert_eq!(p.rtms.proxy, Proxy::Env);
    let p = d.parse("version = 1\n[rtms]\nproxy = \"none\"\n");
    assert_eq!(p.rtms.proxy, Proxy::None);
    let p = d.parse("version = 1\n[rtms]\nproxy = \"http://proxy.corp:3128\"\n");
    assert_eq!(p.rtms.proxy, Proxy::Url("http://proxy.corp:3128".into()));
    let e = d.err("version = 1\n[rtms]\nproxy = \"http://bob:pw@proxy.corp:3128\"\n");
    assert!(e.contains("must not hold credentials"), "{e}");
    assert!(
        e.contains("HTTPS_PROXY=http://user:password@host:port"),
        "{e}"
    );
    assert!(!e.contains("bob:pw"), "the password is not echoed: {e}");
    let e = d.err("version = 1\n[rtms]\nproxy = \"socks5://proxy:1080\"\n");
    assert!(e.contains("pipeline.toml:3:"), "{e}");
    assert!(e.contains("\"none\""), "{e}");
    let e = d.err("version = 1\n[rtms]\nproxy = \"http://proxy.corp\"\n");
    assert!(e.contains("needs a host and a port"), "{e}");
}

#[test]
fn the_event_websocket_needs_a_plain_subscription_id_and_a_ws_url() {
    let d = Dir::new();
    let p = d.parse("version = 1\n[zoom]\nevent_subscription_id = \"AbC-1_x\"\n");
    let ws = p.zoom.event_ws.expect("the event WebSocket is on");
    assert_eq!(ws.url, "wss://ws.zoom.us/ws");
    assert_eq!(ws.subscription_id, "AbC-1_x");
    assert!(d.parse("version = 1\n").zoom.event_ws.is_none());
    let e = d.err("version = 1\n[zoom]\nevent_subscription_id = \"a b\"\n");
    assert!(e.contains("event_subscription_id"), "{e}");
    let e = d.err("version = 1\n[zoom]\nevent_subscription_id = \"ab\"\nevent_ws_url = \"https://ws.zoom.us/ws\"\n");
    assert!(
        e.contains("pipeline.toml:4:") && e.contains("wss://ws.zoomgov.com/ws"),
        "{e}"
    );
}

#[test]
fn an_out_of_range_port_is_refused_in_every_url_and_address() {
    let d = Dir::new();
    for (text, key) in [
        ("[server]\nlisten = \"127.0.0.1:99999\"", "server.listen"),
        ("[admin]\nlisten = \"[::1]:99999\"", "admin.listen"),
        (
            "[zoom]\napi_base_url = \"https://api.zoom.us:99999\"",
            "zoom.api_base_url",
        ),
        (
            "[zoom]\noauth_base_url = \"http://127.0.0.1:99999/\"",
            "zoom.oauth_base_url",
        ),
        (
            "[zoom]\nevent_subscription_id = \"s\"\nevent_ws_url = \"ws://127.0.0.1:99999/\"",
            "zoom.event_ws_url",
        ),
        ("[rtms]\nproxy = \"http://proxy.corp:99999\"", "rtms.proxy"),
        (
            "[rtms]\nallowed_hosts = [\"ws://127.0.0.1:99999/\"]",
            "rtms.allowed_hosts",
        ),
        (
            "[rtms]\nallowed_hosts = [\"[::1]:99999\"]",
            "rtms.allowed_hosts",
        ),
        (
            "[[sink]]\ntype = \"http\"\nurl = \"http://127.0.0.1:99999/alerts\"",
            "sink.url",
        ),
    ] {
        let e = d.err(&format!("version = 1\n{text}\n"));
        assert!(
            e.contains(key) && e.contains("has port 99999, which is out of range: a port is"),
            "{text}: {e}"
        );
        assert!(e.contains("pipeline.toml:"), "{e}");
    }
    // Outgoing URLs cannot ask for port 0; a listener can (any free port).
    let e = d.err("version = 1\n[[sink]]\ntype = \"http\"\nurl = \"http://127.0.0.1:0/\"\n");
    assert!(e.contains("a port is 1 to 65535"), "{e}");
    let e = d.err("version = 1\n[rtms]\nproxy = \"http://proxy.corp:31x8\"\n");
    assert!(e.contains("is not a number"), "{e}");
    let p = d.parse(
        "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n[zoom]\nevent_subscription_id = \"s\"\nevent_ws_url = \"ws://127.0.0.1:65535/ws\"\n[rtms]\nproxy = \"http://[::1]:3128\"\nallowed_hosts = [\"[::1]\", \"127.0.0.1\"]\n",
    );
    assert_eq!(p.server.listen.port(), 0);
    assert_eq!(p.rtms.proxy, Proxy::Url("http://[::1]:3128".into()));
    assert_eq!(p.rtms.allowed_hosts, ["[::1]", "127.0.0.1"]);
}

#[test]
fn an_allowed_host_with_a_port_or_a_scheme_names_the_host_to_write() {
    let d = Dir::new();
    for (entry, what, host) in [
        ("127.0.0.1:8443", "has a port", "\"127.0.0.1\""),
        ("wss://rtms.zoom.us/x", "is a URL", "\"rtms.zoom.us\""),
        ("*.zoom.us:443", "has a port", "\"*.zoom.us\""),
    ] {
        let e = d.err(&format!(
            "version = 1\n[rtms]\nallowed_hosts = [\"{entry}\"]\n"
        ));
        assert!(
            e.contains(&format!(
                "{what}, not a host pattern: list the host alone, {host}"
            )),
            "{entry}: {e}"
        );
    }
    let e = d.err("version = 1\n[rtms]\nallowed_hosts = [\"[not-an-ip]\"]\n");
    assert!(e.contains("is not a host pattern"), "{e}");
}

#[test]
fn debug_of_the_resolved_pipeline_never_shows_a_secret() {
    let d = Dir::new();
    let secret_values = [
        "client-secret-value-7f3a",
        "webhook-token-value-9c1d",
        "admin-token-value-2b8e4d",
        "oauth-secret-value-5e6f",
    ];
    let env = MapEnv::new()
        .with("ZM_RTMS_CLIENT", "the-client-id")
        .with("ZM_RTMS_SECRET", secret_values[0])
        .with("ZOOM_SECRET_TOKEN", secret_values[1])
        .with("RTMS_ADMIN_TOKEN", secret_values[2])
        .with("ZOOM_ACCOUNT_ID", "the-account")
        .with("ZOOM_OAUTH_CLIENT_ID", "the-oauth-client")
        .with("ZOOM_OAUTH_CLIENT_SECRET", secret_values[3]);
    let p = d
        .parse_with(
            "version = 1\n[admin]\nlisten = \"0.0.0.0:9464\"\n",
            &env,
            LoadOptions::default(),
        )
        .unwrap();
    // Every secret was read ...
    assert_eq!(
        p.zoom.client_secret.as_ref().map(Secret::expose),
        Some(secret_values[0])
    );
    assert_eq!(
        p.zoom.webhook_secret.as_ref().map(Secret::expose),
        Some(secret_values[1])
    );
    assert_eq!(
        p.admin.token.as_ref().map(Secret::expose),
        Some(secret_values[2])
    );
    let rest = p.zoom.rest.as_ref().expect("REST credentials are set");
    assert_eq!(rest.client_secret.expose(), secret_values[3]);
    // ... and none is shown, whatever the format or the part printed.
    let shown = [
        format!("{p:?}"),
        format!("{p:#?}"),
        format!("{:?}", p.zoom),
        format!("{:?}", p.admin),
        format!("{rest:?}"),
        format!("{:?}", p.diff(&d.parse("version = 1"))),
    ];
    for text in &shown {
        for value in secret_values {
            assert!(!text.contains(value), "{value} is shown in: {text}");
        }
    }
    assert!(shown[0].contains("Secret(***)"), "{}", shown[0]);
}

#[test]
fn plaintext_secrets_are_redacted_from_the_raw_file_too() {
    let text = "version = 1\n[zoom]\nallow_plaintext_secrets = true\nclient_secret = \"in-file-secret-81\"\nwebhook_secret = \"in-file-token-42\"\n";
    let file: raw::PipelineFile = toml::from_str(text).unwrap();
    let shown = format!("{file:?}");
    assert!(
        !shown.contains("in-file-secret-81") && !shown.contains("in-file-token-42"),
        "{shown}"
    );
    let p = Dir::new()
        .parse_with(
            text,
            &MapEnv::new().with("ZM_RTMS_CLIENT", "id"),
            LoadOptions::default(),
        )
        .unwrap();
    assert_eq!(
        p.zoom.client_secret.as_ref().map(Secret::expose),
        Some("in-file-secret-81")
    );
}

#[test]
fn urls_with_credentials_are_refused_without_repeating_them() {
    let d = Dir::new();
    for (text, key) in [
        (
            "[[sink]]\ntype = \"http\"\nurl = \"http://bob:hunter2@127.0.0.1:9000/alerts\"",
            "sink.url",
        ),
        (
            "[zoom]\napi_base_url = \"https://bob:hunter2@api.zoom.us\"",
            "zoom.api_base_url",
        ),
        (
            "[zoom]\noauth_base_url = \"https://bob:hunter2@zoom.us\"",
            "zoom.oauth_base_url",
        ),
        (
            "[zoom]\nevent_subscription_id = \"s\"\nevent_ws_url = \"wss://bob:hunter2@ws.zoom.us/ws\"",
            "zoom.event_ws_url",
        ),
    ] {
        let e = d.err(&format!("version = 1\n{text}\n"));
        assert!(
            e.contains(&format!("{key} must not hold credentials")),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "the password is not echoed: {e}");
    }
}

#[test]
fn diff_says_the_rest_api_event_websocket_and_zoom_app_need_a_restart() {
    let d = Dir::new();
    let old = d.parse("version = 1");
    let env = secrets()
        .with("ZOOM_ACCOUNT_ID", "acct")
        .with("ZOOM_OAUTH_CLIENT_ID", "oauth-id")
        .with("ZOOM_OAUTH_CLIENT_SECRET", "oauth-secret-value");
    let new = d
        .parse_with(
            "version = 1\n[server]\nzoom_app = true\n[zoom]\napi_base_url = \"https://api.zoomgov.com\"\noauth_client_id_env = \"MY_OAUTH_ID\"\nevent_subscription_id = \"sub-1\"\n",
            &env,
            LoadOptions::default(),
        )
        .unwrap();
    let r = old.diff(&new).restart_required;
    for start in [
        "server.zoom_app changed from false to true",
        "zoom.api_base_url changed from \"https://api.zoom.us\" to \"https://api.zoomgov.com\"",
        "zoom.oauth_client_id_env changed from \"ZOOM_OAUTH_CLIENT_ID\" to \"MY_OAUTH_ID\"",
        "zoom.event_subscription_id changed from None to Some(\"sub-1\")",
        "zoom.event_ws_url changed from None to Some(\"wss://ws.zoom.us/ws\")",
    ] {
        assert!(r.iter().any(|s| s.starts_with(start)), "{start}: {r:?}");
    }
    assert!(!r.iter().any(|s| s.contains("REST API")), "{r:?}");
    // The credentials themselves are named, never shown.
    let with_rest = d
        .parse_with("version = 1", &env, LoadOptions::default())
        .unwrap();
    let r = old.diff(&with_rest).restart_required;
    assert_eq!(
        r,
        ["the REST API's Server-to-Server OAuth credentials changed: restart to apply"]
    );
}

#[test]
fn the_flap_limit_is_read_and_range_checked() {
    let d = Dir::new();
    let p =
        d.parse("version = 1\n[rtms]\nreconnect_flap_max = 5\nreconnect_flap_window_ms = 60000\n");
    assert_eq!(p.rtms.reconnect_flap_max, 5);
    assert_eq!(p.rtms.reconnect_flap_window, Duration::from_secs(60));
    let e = d.err("version = 1\n[rtms]\nreconnect_flap_max = 0\n");
    assert!(e.contains("rtms.reconnect_flap_max"), "{e}");
    assert!(e.contains("pipeline.toml:3:"), "{e}");
    let e = d.err("version = 1\n[rtms]\nreconnect_flap_window_ms = 10\n");
    assert!(e.contains("rtms.reconnect_flap_window_ms"), "{e}");
}

#[test]
fn an_event_ws_url_with_a_port_out_of_range_is_refused_with_the_fix() {
    let d = Dir::new();
    let e = d.err("version = 1\n[zoom]\nevent_subscription_id = \"ab\"\nevent_ws_url = \"ws://127.0.0.1:99999/ws\"\n");
    assert!(e.contains("has port 99999, which is out of range"), "{e}");
    assert!(e.contains("1 to 65535"), "{e}");
    let p = d.parse("version = 1\n[zoom]\nevent_subscription_id = \"ab\"\nevent_ws_url = \"ws://127.0.0.1:9999/ws\"\n");
    assert_eq!(
        p.zoom.event_ws.map(|w| w.url).as_deref(),
        Some("ws://127.0.0.1:9999/ws")
    );
}

#[test]
fn a_plugin_s_secrets_are_read_from_the_environment_and_never_printed() {
    let d = Dir::new();
    let text = format!(
        "version = 1\n{PLUGIN_A}secrets = [\"PROVIDER_KEY\"]\n\n[plugin.state]\nmax_keys = 7\n\n[plugin.limits]\nunits_per_session = 500\n"
    );
    let env = secrets().with("PROVIDER_KEY", "pk-very-secret-value");
    let p = d.parse_with(&text, &env, LoadOptions::default()).unwrap();
    let a = p.plugin("a").unwrap();
    assert_eq!(a.secrets[0].name, "PROVIDER_KEY");
    assert_eq!(
        a.secrets[0].value.as_ref().unwrap().expose(),
        "pk-very-secret-value"
    );
    assert_eq!(a.state.max_keys, 7);
    assert_eq!(a.state.max_bytes, 1024 * 1024);
    assert_eq!(a.limits.units_per_session, Some(500));
    let dump = format!("{p:?} {p:#?}");
    assert!(
        dump.contains("PROVIDER_KEY") && !dump.contains("pk-very-secret"),
        "{dump}"
    );

    // Missing: an error naming the variable and the line when running, a warning when
    // validating.
    let e = d
        .parse_with(&text, &secrets(), LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("secret PROVIDER_KEY is missing") && e.contains("export PROVIDER_KEY="),
        "{e}"
    );
    assert!(e.contains(":7:"), "names the line: {e}");
    let p = d
        .parse_with(&text, &secrets(), LoadOptions::validate_only())
        .unwrap();
    assert!(
        p.warnings.iter().any(|w| w.contains("PROVIDER_KEY")),
        "{:?}",
        p.warnings
    );

    let twice =
        format!("version = 1\n{PLUGIN_A}secrets = [\"ZM_RTMS_CLIENT\", \"ZM_RTMS_CLIENT\"]\n");
    assert!(d.err(&twice).contains("names ZM_RTMS_CLIENT twice"));
    let bad = format!("version = 1\n{PLUGIN_A}secrets = [\"A B\"]\n");
    assert!(d.err(&bad).contains("not an environment variable name"));
}

#[test]
fn the_per_peer_limit_and_admin_tls_are_read_and_checked() {
    let d = Dir::new();
    let p = d.parse("version = 1");
    assert_eq!(p.server.max_connections_per_peer, 256);
    assert_eq!(p.admin.tls, None);
    std::fs::write(d.dir.path().join("c.pem"), "x").unwrap();
    std::fs::write(d.dir.path().join("k.pem"), "x").unwrap();
    let p = d.parse(
        "version = 1\n[server]\nmax_connections_per_peer = 8\n\
         [admin.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
    );
    assert_eq!(p.server.max_connections_per_peer, 8);
    let tls = p.admin.tls.expect("admin.tls");
    assert_eq!(tls.cert, d.dir.path().join("c.pem"));
    let e = d.err("version = 1\n[admin.tls]\ncert = \"c.pem\"\nkey = \"missing.pem\"\n");
    assert!(
        e.contains("admin.tls.key") && e.contains("missing.pem"),
        "{e}"
    );
    let e = d.err("version = 1\n[server]\nmax_connections_per_peer = 0\n");
    assert!(e.contains("server.max_connections_per_peer"), "{e}");
}

#[test]
fn a_plugin_has_no_network_unless_its_net_table_lists_urls() {
    let d = Dir::new();
    let p = d.parse(&format!("version = 1\n{PLUGIN_A}"));
    let net = &p.plugins[0].net;
    assert!(!net.enabled());
    assert!(!net.allow_private);
    assert_eq!(net.connect_timeout, Duration::from_millis(5_000));
    assert_eq!(net.first_byte_timeout, Duration::from_millis(10_000));
    assert_eq!(net.between_bytes_timeout, Duration::from_millis(10_000));
    assert_eq!(net.max_response_bytes, 1024 * 1024);
    assert_eq!(net.max_concurrent, 4);
    assert_eq!(net.requests_per_minute, 60);
    assert!(net.allows("https", "api.example.com", None, "/").is_none());

    let p = d.parse(&format!(
        "version = 1\n{PLUGIN_A}\n[plugin.net]\nhttp = [\"https://api.example.com/v1\", \"http://127.0.0.1:8080\"]\nallow_private = true\nmax_concurrent = 2\nrequests_per_minute = 10\n"
    ));
    let net = &p.plugins[0].net;
    assert_eq!(net.http.len(), 2);
    assert!(net.allow_private);
    assert_eq!((net.max_concurrent, net.requests_per_minute), (2, 10));
    let hit = net.allows("https", "api.example.com", None, "/v1/items");
    assert_eq!(
        hit.map(|r| r.text.as_str()),
        Some("https://api.example.com/v1")
    );
    assert!(net.allows("http", "127.0.0.1", Some(8080), "/").is_some());
    assert!(net.allows("http", "localhost", Some(8080), "/").is_none());
}

#[test]
fn a_bad_net_pattern_is_named_with_its_position_and_the_form() {
    let d = Dir::new();
    let e = d.err(&format!(
        "version = 1\n{PLUGIN_A}\n[plugin.net]\nhttp = [\"ftp://files.example.com\"]\n"
    ));
    assert!(e.contains("plugin.net.http"), "{e}");
    assert!(e.contains("other than http, https, ws or wss"), "{e}");
    assert!(e.contains("scheme://host[:port][/path-prefix]"), "{e}");
    let e = d.err(&format!(
        "version = 1\n{PLUGIN_A}\n[plugin.net]\nhttp = [\"https://a.com\", \"https://a.com\"]\n"
    ));
    assert!(e.contains("twice"), "{e}");
}

#[test]
fn without_a_cluster_section_nothing_is_shared() {
    let d = Dir::new();
    assert_eq!(d.parse("version = 1").cluster, None);
}

#[test]
fn a_cluster_section_gets_its_defaults_and_reads_credentials_from_the_environment() {
    let d = Dir::new();
    let text = "version = 1\n[cluster]\nnats_url = \"nats://127.0.0.1:4222\"\n";
    let c = d.parse(text).cluster.expect("cluster");
    assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
    assert_eq!(c.host_id, None, "the host picks <hostname>-<pid>");
    assert_eq!(c.prefix, "rtms");
    assert_eq!(c.lease, Duration::from_millis(10_000));
    assert_eq!(
        c.renew,
        Duration::from_millis(3_333),
        "a third of the lease"
    );
    assert_eq!(c.ack_wait, Duration::from_millis(10_000));
    assert_eq!(c.dedup_window, Duration::from_secs(7_200));
    assert_eq!(c.drain, Duration::from_secs(30));
    assert_eq!(c.placement, Placement::LeastLoaded);
    assert_eq!(c.auth, ClusterAuth::None);
    let env = secrets()
        .with("RTMS_NATS_USER", "rtms")
        .with("RTMS_NATS_PASSWORD", "pw-value");
    let p = d
        .parse_with(text, &env, LoadOptions::default())
        .expect("parses");
    assert_eq!(
        p.cluster.unwrap().auth,
        ClusterAuth::UserPassword {
            user: "rtms".into(),
            password: Secret::new("pw-value")
        }
    );
    let half = secrets().with("RTMS_NATS_PASSWORD", "pw-value");
    let e = d
        .parse_with(text, &half, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("RTMS_NATS_USER") && !e.contains("pw-value"),
        "{e}"
    );
}

#[test]
fn cluster_values_are_checked_with_their_fix() {
    let d = Dir::new();
    let base = "version = 1\n[cluster]\n";
    let cases = [
        ("", "needs nats_url"),
        ("nats_url = \"http://x:4222\"", "is not a NATS URL"),
        (
            "nats_url = \"nats://u:p@x:4222\"",
            "must not hold credentials",
        ),
        ("nats_url = \"nats://x:99999\"", "out of range"),
        (
            "nats_url = \"nats://x:4222\"\nhost_id = \"a.b\"",
            "letters, digits",
        ),
        (
            "nats_url = \"nats://x:4222\"\nlease_ms = 60000",
            "above the maximum 20000",
        ),
        (
            "nats_url = \"nats://x:4222\"\nlease_ms = 4000\nrenew_ms = 3000",
            "above the maximum 2000",
        ),
        (
            "nats_url = \"nats://x:4222\"\ndedup_window_ms = 60000",
            "below the minimum 5400000",
        ),
        (
            "nats_url = \"nats://x:4222\"\nplacement = \"random\"",
            "use one of \"least_loaded\", \"receiver_first\"",
        ),
    ];
    for (body, needle) in cases {
        let e = d.err(&format!("{base}{body}\n"));
        assert!(e.contains(needle), "{body:?}: {e}");
    }
    let e = d.err(
        "version = 1\n[runtime]\njournal_dir = \"j\"\n[cluster]\nnats_url = \"nats://x:4222\"\n",
    );
    assert!(e.contains("remove runtime.journal_dir"), "{e}");
}

#[test]
fn a_changed_cluster_section_needs_a_restart() {
    let d = Dir::new();
    let a = d.parse("version = 1\n[cluster]\nnats_url = \"nats://x:4222\"\n");
    let b = d.parse("version = 1\n[cluster]\nnats_url = \"nats://y:4222\"\n");
    assert_eq!(
        a.diff(&b).restart_required,
        ["[cluster] changed: restart to apply"]
    );
}

#[test]
fn video_mode_sets_the_data_option_and_individual_video_takes_a_policy() {
    let d = Dir::new();
    let base = "version = 1\n[rtms]\nmedia = [\"video\"]\n[rtms.video]\n";
    let p = d.parse(&format!("{base}mode = \"gallery\"\n"));
    let v = p.rtms.media_params.video.as_ref().unwrap();
    assert_eq!(v.data_opt, Some(data_opt::VIDEO_MIXED_GALLERY_VIEW));
    assert_eq!(p.rtms.video_following, None);

    let p = d.parse(&format!(
        "{base}mode = \"individual\"\nfollow = \"users\"\nusers = [\"Ann\", \"16778240\"]\nmax = 2\n"
    ));
    let v = p.rtms.media_params.video.as_ref().unwrap();
    assert_eq!(v.data_opt, Some(data_opt::VIDEO_SINGLE_INDIVIDUAL_STREAM));
    assert_eq!(
        p.rtms.video_following,
        Some(VideoFollowing {
            follow: Following::Users(vec!["Ann".into(), "16778240".into()]),
            max: 2
        })
    );
    let p = d.parse(&format!("{base}mode = \"individual\"\n"));
    assert_eq!(
        p.rtms.video_following,
        Some(VideoFollowing {
            follow: Following::ActiveSpeaker,
            max: 1
        })
    );
}

#[test]
fn individual_video_keys_out_of_place_are_refused_with_the_fix() {
    let d = Dir::new();
    let base = "version = 1\n[rtms]\nmedia = [\"video\", \"share\"]\n";
    let e = d.err(&format!("{base}[rtms.video]\nfollow = \"sharer\"\n"));
    assert!(e.contains("add mode = \"individual\""), "{e}");
    let e = d.err(&format!(
        "{base}[rtms.video]\nmode = \"individual\"\nmax = 5\n"
    ));
    assert!(e.contains("rtms.video.max") && e.contains("1 to 4"), "{e}");
    let e = d.err(&format!(
        "{base}[rtms.video]\nmode = \"individual\"\nfollow = \"users\"\n"
    ));
    assert!(e.contains("needs rtms.video.users"), "{e}");
    let e = d.err(&format!(
        "{base}[rtms.video]\nmode = \"individual\"\nusers = [\"Ann\"]\n"
    ));
    assert!(e.contains("only with follow = \"users\""), "{e}");
    let e = d.err(&format!("{base}[rtms.deskshare]\nmode = \"individual\"\n"));
    assert!(e.contains("a key of [rtms.video] only"), "{e}");
    let e = d.err(&format!("{base}[rtms.video]\nmode = \"speaker\"\n"));
    assert!(e.contains("individual"), "{e}");
}

#[test]
fn transcript_settings_take_zoom_language_names_or_numbers() {
    let d = Dir::new();
    let text = |t: &str| {
        format!("version = 1\n[rtms]\nmedia = [\"transcript\"]\n[rtms.transcript]\n{t}\n")
    };
    let parse = |t: &str| d.parse(&text(t));
    let err = |t: &str| d.err(&text(t));
    let tp = |p: &Pipeline| p.rtms.media_params.transcript.clone().unwrap();
    let p = parse("src_language = \"french-canada\"\nenable_lid = false");
    assert_eq!(
        (tp(&p).src_language, tp(&p).enable_lid),
        (Some(12), Some(false))
    );
    let p = parse("src_language = 9");
    assert_eq!(
        (tp(&p).src_language, tp(&p).enable_lid),
        (Some(9), Some(true))
    );
    // The older spellings still work.
    let p = parse("language = 20\ndetect_language = false");
    assert_eq!(
        (tp(&p).src_language, tp(&p).enable_lid),
        (Some(20), Some(false))
    );
    let e = err("src_language = 37");
    assert!(
        e.contains("src_language = 37 is not a transcript language"),
        "{e}"
    );
    assert!(e.contains("english (9)"), "{e}");
    let e = err("src_language = 9\nlanguage = 9");
    assert!(e.contains("set src_language only"), "{e}");
}

#[test]
fn the_instance_pool_is_sized_from_the_pipeline_and_its_settings_need_a_restart() {
    let d = Dir::new();
    let p = d.parse("version = 1\n[rtms]\nmax_streams = 10\n");
    let plan = p.runtime.pool.expect("on by default");
    // No plugin: the smallest pool.
    assert_eq!(
        (plan.needed, plan.instances),
        (0, 11),
        "room for one plugin"
    );
    let q = d.parse("version = 1\n[rtms]\nmax_streams = 10\n[runtime]\npool = \"off\"\n");
    assert_eq!(q.runtime.pool, None);
    let r = d.parse("version = 1\n[rtms]\nmax_streams = 10\n[runtime]\npool_instances = 64\n");
    assert_eq!(r.runtime.pool.map(|p| p.instances), Some(64));
    let restart = |a: &Pipeline, b: &Pipeline, key: &str| {
        a.diff(b)
            .restart_required
            .iter()
            .any(|r| r.starts_with(&format!("{key} changed")))
    };
    assert!(restart(&p, &q, "runtime.pool"));
    assert!(restart(&p, &r, "runtime.pool_instances"));
    let e = d.err("version = 1\n[runtime]\npool_instances = 0\n");
    assert!(e.contains("runtime.pool_instances"), "{e}");
}
