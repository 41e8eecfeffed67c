//! Every pipeline in `examples/` must validate. Component files are not required to exist
//! (a fresh checkout has not built the plugins yet); everything else is checked, with no
//! credentials in the environment.

use std::path::Path;

use rtms_config::{LoadOptions, MapEnv, MediaKind, Pipeline};

#[test]
fn every_example_pipeline_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let opts = LoadOptions {
        require_secrets: false,
        check_components: false,
    };
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        if let Err(e) = Pipeline::load(&path, &MapEnv::new(), opts) {
            panic!("{} does not validate: {e}", path.display());
        }
    }
    assert!(seen >= 1, "no example pipeline found in {}", dir.display());
}

#[test]
fn the_main_example_runs_the_two_shipped_plugins() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipeline.toml");
    let env = MapEnv::new()
        .with("ZM_RTMS_CLIENT", "id")
        .with("ZM_RTMS_SECRET", "secret")
        .with("ZOOM_SECRET_TOKEN", "token");
    let opts = LoadOptions {
        require_secrets: true,
        check_components: false,
    };
    let p = Pipeline::load(&path, &env, opts).expect("examples/pipeline.toml validates");
    let names: Vec<&str> = p.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["transcript-writer", "keyword-alerter"]);
    for plugin in &p.plugins {
        assert_eq!(
            plugin.component,
            Path::new(&format!(
                "builtin:{}",
                plugin.name.as_str().replace('-', "_")
            ))
        );
    }
    assert!(p.rtms.media.contains(MediaKind::Transcript));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // Without credentials it still validates, with one warning per missing variable.
    let p = Pipeline::load(
        &path,
        &MapEnv::new(),
        LoadOptions {
            require_secrets: false,
            check_components: false,
        },
    )
    .expect("validates without secrets");
    assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
}
