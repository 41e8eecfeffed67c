//! Where in the guest a call trapped, from the component's DWARF (function, file, line) or
//! its name section (function): the frames wasmtime's backtrace holds, innermost first.

use wasmtime::WasmBacktrace;

/// The most frames named in a trap's report.
const MAX_FRAMES: usize = 6;

/// The guest frames of `bt` as `f (file:line:col), called from g (file:line:col), …`:
/// `None` when no frame has a source line (no debug info) unless `names_alone`, and when no
/// frame has even a name.
pub fn guest_location(bt: &WasmBacktrace, names_alone: bool) -> Option<String> {
    let mut lines = false;
    let mut frames = Vec::new();
    for f in bt.frames() {
        let mut here = Vec::new();
        for s in f.symbols() {
            let name = s.name().or(f.func_name());
            let at = match (s.file(), s.line()) {
                (Some(file), Some(line)) => {
                    lines = true;
                    let file = file.strip_prefix("./").unwrap_or(file);
                    match s.column().filter(|c| *c > 0) {
                        Some(col) => format!(" ({file}:{line}:{col})"),
                        None => format!(" ({file}:{line})"),
                    }
                }
                _ => String::new(),
            };
            if let Some(name) = name {
                here.push(format!("{name}{at}"));
            }
        }
        if here.is_empty()
            && let Some(name) = f.func_name()
        {
            here.push(name.to_owned());
        }
        frames.extend(here);
    }
    if frames.is_empty() || !(lines || names_alone) {
        return None;
    }
    let more = frames.len().saturating_sub(MAX_FRAMES);
    frames.truncate(MAX_FRAMES);
    let mut text = frames.join(", called from ");
    if more > 0 {
        text.push_str(&format!(" (and {more} more frames)"));
    }
    Some(text)
}
