//! The components this binary carries, named in pipeline.toml as `builtin:NAME`: the example
//! plugins (transcript writer, keyword alerter, audio recorder), built and embedded by
//! `host/build.rs`, so the example pipeline and the demo run from an installed binary with no
//! source tree and no plugin build.

use std::path::Path;

/// The embedded components, (file name, bytes).
pub const COMPONENTS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/demo_components.rs"));

/// The bytes of `path` when it names a built-in component (`builtin:NAME`); `Err` with the
/// names this binary has when it names one it lacks; `Ok(None)` for a file path.
pub fn bytes(path: &Path) -> Result<Option<&'static [u8]>, String> {
    let Some(name) = path
        .to_str()
        .and_then(|p| p.strip_prefix(rtms_config::BUILTIN_PREFIX))
    else {
        return Ok(None);
    };
    let file = format!("{name}.wasm");
    match COMPONENTS.iter().find(|(n, _)| *n == file) {
        Some((_, bytes)) => Ok(Some(bytes)),
        None => Err(format!(
            "{} is not a component this binary carries; it has {}{}",
            path.display(),
            if COMPONENTS.is_empty() {
                "none (it was built with RTMS_SKIP_PLUGIN_BUILD)".to_owned()
            } else {
                names()
            },
            "; or name a component file instead"
        )),
    }
}

/// Whether `path` names a built-in component.
pub fn is_builtin(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|p| p.starts_with(rtms_config::BUILTIN_PREFIX))
}

fn names() -> String {
    COMPONENTS
        .iter()
        .map(|(n, _)| format!("builtin:{}", n.trim_end_matches(".wasm")))
        .collect::<Vec<_>>()
        .join(", ")
}
