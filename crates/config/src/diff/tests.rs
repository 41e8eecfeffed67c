//! Plugin changes: each setting, changed alone, is found and classified.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rtms_proto::Product;

use crate::*;

/// A pipeline with one plugin, every setting written, nothing read from disk.
fn pipeline() -> Pipeline {
    let text = r#"
version = 1

[[plugin]]
name = "a"
component = "a.wasm"
media = ["audio", "transcript"]

[plugin.queue]
capacity = 256
block_timeout_ms = 2000

[plugin.batch]
max_frames = 16
max_wait_ms = 50

[plugin.limits]
memory_mb = 64
call_timeout_ms = 500
log_bytes_per_sec = 4096
emit_bytes_per_sec = 8192

[plugin.config]
threshold = 3
"#;
    let opts = LoadOptions {
        require_secrets: false,
        check_components: false,
    };
    match Pipeline::parse(text, Path::new("/p/pipeline.toml"), &MapEnv::new(), opts) {
        Ok(p) => p,
        Err(e) => panic!("should parse: {e}"),
    }
}

/// The diff after `edit` changes the plugin: exactly one changed plugin.
fn change(edit: impl FnOnce(&mut Plugin)) -> PluginChange {
    let old = pipeline();
    let mut new = old.clone();
    edit(&mut new.plugins[0]);
    let diff = old.diff(&new);
    assert!(diff.added_plugins.is_empty() && diff.removed_plugins.is_empty());
    assert!(
        diff.restart_required.is_empty(),
        "{:?}",
        diff.restart_required
    );
    assert_eq!(diff.changed_plugins.len(), 1, "{diff:?}");
    diff.changed_plugins[0].clone()
}

/// Changing only `setting` (by `edit`) is found as that setting alone, applied as `apply`.
fn assert_only(setting: PluginSetting, apply: Apply, edit: impl FnOnce(&mut Plugin)) {
    let ch = change(edit);
    assert_eq!(ch.name.as_str(), "a");
    assert_eq!(ch.settings, vec![setting], "{ch:?}");
    assert_eq!(setting.apply(), apply);
    assert_eq!(ch.apply(), apply);
    assert!(ch.changed(setting));
}

#[test]
fn a_new_component_path_needs_a_new_instance() {
    assert_only(PluginSetting::Component, Apply::NewInstance, |p| {
        p.component = PathBuf::from("/p/b.wasm");
    });
}

#[test]
fn a_changed_config_table_needs_a_new_instance() {
    assert_only(PluginSetting::Config, Apply::NewInstance, |p| {
        p.config = vec![("threshold".into(), "4".into())];
    });
}

#[test]
fn a_changed_network_allow_list_needs_a_new_instance() {
    assert_only(PluginSetting::Net, Apply::NewInstance, |p| {
        p.net.http = vec![crate::HttpRule::parse("https://api.example.com").unwrap()];
    });
    assert_only(PluginSetting::Net, Apply::NewInstance, |p| {
        p.net.max_concurrent = 9
    });
}

#[test]
fn enabling_or_disabling_is_applied_in_band() {
    assert_only(PluginSetting::Enabled, Apply::InBand, |p| p.enabled = false);
}

#[test]
fn changed_media_kinds_are_applied_in_band() {
    assert_only(PluginSetting::Media, Apply::InBand, |p| {
        p.media.insert(MediaKind::Chat);
    });
}

#[test]
fn each_session_filter_is_a_filter_change_applied_in_band() {
    assert_only(PluginSetting::Filter, Apply::InBand, |p| {
        p.filter.products = Some(vec![Product::Meeting]);
    });
    assert_only(PluginSetting::Filter, Apply::InBand, |p| {
        p.filter.meeting_ids = Some(vec!["m1".into()]);
    });
    assert_only(PluginSetting::Filter, Apply::InBand, |p| {
        p.filter.users = Some(vec!["u1".into()]);
    });
}

#[test]
fn a_changed_queue_capacity_is_applied_in_band() {
    assert_only(PluginSetting::QueueCapacity, Apply::InBand, |p| {
        p.queue.capacity = 512;
    });
}

#[test]
fn a_changed_on_full_policy_is_applied_in_band() {
    assert_only(PluginSetting::OnFull, Apply::InBand, |p| {
        p.queue.on_full = QueuePolicy::all(OnFull::Block);
    });
}

#[test]
fn a_changed_block_timeout_is_applied_in_band() {
    assert_only(PluginSetting::BlockTimeout, Apply::InBand, |p| {
        p.queue.block_timeout = Duration::from_millis(3000);
    });
}

#[test]
fn a_changed_batch_size_is_applied_in_band() {
    assert_only(PluginSetting::BatchMaxFrames, Apply::InBand, |p| {
        p.batch.max_frames = 8;
    });
}

#[test]
fn a_changed_batch_wait_is_applied_in_band() {
    assert_only(PluginSetting::BatchMaxWait, Apply::InBand, |p| {
        p.batch.max_wait = Duration::from_millis(80);
    });
}

#[test]
fn a_changed_memory_limit_needs_a_new_instance() {
    assert_only(PluginSetting::MemoryLimit, Apply::NewInstance, |p| {
        p.limits.memory_mb = 128;
    });
}

#[test]
fn a_changed_call_deadline_needs_a_new_instance() {
    assert_only(PluginSetting::CallTimeout, Apply::NewInstance, |p| {
        p.limits.call_timeout = Duration::from_millis(900);
    });
}

#[test]
fn a_changed_log_byte_rate_is_applied_in_band() {
    assert_only(PluginSetting::LogRate, Apply::InBand, |p| {
        p.limits.log_bytes_per_sec = 2048;
    });
}

#[test]
fn a_changed_emit_byte_rate_is_applied_in_band() {
    assert_only(PluginSetting::EmitRate, Apply::InBand, |p| {
        p.limits.emit_bytes_per_sec = 2048;
    });
}

#[test]
fn a_changed_restart_policy_is_applied_in_band() {
    assert_only(PluginSetting::RestartPolicy, Apply::InBand, |p| {
        p.restart.max_failures += 1;
    });
    assert_only(PluginSetting::RestartPolicy, Apply::InBand, |p| {
        p.restart.rollback_window = Duration::ZERO;
    });
}

#[test]
fn changed_directory_grants_need_a_new_instance() {
    let grant = DirGrant {
        host: PathBuf::from("/p/out"),
        guest: "/out".into(),
        read_only: false,
        quota_mb: Some(64),
        symlinks: false,
    };
    let added = grant.clone();
    assert_only(PluginSetting::Grants, Apply::NewInstance, |p| {
        p.dirs.push(added)
    });
    // A quota alone is a grant change too.
    let old = {
        let mut p = pipeline();
        p.plugins[0].dirs.push(grant.clone());
        p
    };
    let mut new = old.clone();
    new.plugins[0].dirs[0].quota_mb = Some(128);
    let diff = old.diff(&new);
    assert_eq!(diff.changed_plugins[0].settings, [PluginSetting::Grants]);
}

#[test]
fn several_changes_are_listed_in_order_and_the_most_demanding_applies() {
    let ch = change(|p| {
        p.limits.emit_bytes_per_sec = 2048;
        p.config = vec![];
        p.queue.block_timeout = Duration::from_millis(1);
    });
    assert_eq!(
        ch.settings,
        [
            PluginSetting::BlockTimeout,
            PluginSetting::EmitRate,
            PluginSetting::Config
        ]
    );
    assert_eq!(ch.apply(), Apply::NewInstance);
    assert_eq!(
        ch.settings_applied(Apply::InBand).collect::<Vec<_>>(),
        [PluginSetting::BlockTimeout, PluginSetting::EmitRate]
    );
    assert!(
        ch.limits && ch.config && !ch.route && !ch.component,
        "{ch:?}"
    );
}

#[test]
fn moving_a_plugin_within_the_file_is_no_change() {
    let old = pipeline();
    let mut new = old.clone();
    new.plugins[0].config_at = WrittenAt(None);
    assert!(old.diff(&new).is_empty());
}

#[test]
fn every_setting_has_its_own_key_and_the_severity_order() {
    let keys: std::collections::BTreeSet<&str> =
        PluginSetting::ALL.iter().map(|s| s.key()).collect();
    assert_eq!(keys.len(), PluginSetting::ALL.len());
    assert!(PluginSetting::ALL.windows(2).all(|w| w[0] < w[1]));
    assert!(Apply::InBand < Apply::NewInstance && Apply::NewInstance < Apply::RestartRequired);
    assert_eq!(
        PluginSetting::BlockTimeout.to_string(),
        "plugin.queue.block_timeout_ms"
    );
}

#[test]
fn changes_written_in_the_file_are_found_by_name() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("pipeline.toml");
    let opts = LoadOptions {
        require_secrets: false,
        check_components: false,
    };
    let parse = |extra: &str| {
        let text = format!(
            "version = 1\n[[plugin]]\nname = \"x\"\ncomponent = \"x.wasm\"\nmedia = [\"audio\", \"chat\"]\n{extra}"
        );
        Pipeline::parse(&text, &path, &MapEnv::new(), opts).unwrap()
    };
    let old = parse("");
    let new = parse(
        "[plugin.queue]\non_full = \"block\"\nblock_timeout_ms = 10\n[plugin.batch]\nmax_wait_ms = 1\n[plugin.limits]\nlog_bytes_per_sec = 2048\n",
    );
    let diff = old.diff(&new);
    let ch = diff.plugin_change("x").expect("x changed");
    assert_eq!(
        ch.settings,
        [
            PluginSetting::OnFull,
            PluginSetting::BlockTimeout,
            PluginSetting::BatchMaxWait,
            PluginSetting::LogRate
        ]
    );
    assert_eq!(ch.apply(), Apply::InBand);
    assert!(diff.plugin_change("y").is_none());
}
