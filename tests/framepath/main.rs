//! The frame path's inline delivery, in a test binary of its own.
//!
//! Whether a frame goes inline depends on how long the plugin's previous call took in real
//! time (`INLINE_CALL_MAX`), so these tests must not share the machine's cores with the CPU-heavy
//! tests of `tests/all` (hundreds of thousands of guest calls, descriptor hogs, floods): cargo
//! runs test binaries one after another.

#[path = "../all/util.rs"]
mod util;

mod cases;
