//! End-to-end and runtime tests for rtms-host: one test binary, a module per area, a
//! shared harness in `util`.
//!
//! Everything here is real: compiled components from `plugins/` (built by host/build.rs),
//! sockets on 127.0.0.1 port 0, files in temporary directories, and the Zoom simulator.

mod audio;
mod cli;
mod demo;
mod isolation;
mod layout;
mod net;
mod plugin_dev;
mod pool;
mod replay;
mod runtime;
mod sdk;
mod sinks;
mod state;
mod util;
mod ws;
