//! Hot reload end to end: a real `Service`, a real simulated meeting over real sockets, real
//! components and real files. See the modules:
//!
//! - `live`: a hundred reloads of the transcript writer during a meeting, by `reload()`, by
//!   a rewritten pipeline.toml and by a component file replaced in place; no line lost or
//!   doubled; the reload latency, measured.
//! - `refuse`: broken components and pipeline files are refused; the old version serves.
//! - `plugins`: plugins added and removed mid-meeting; a plugin that traps every N frames;
//!   a version that traps at once, rolled back and refused until it changes.
//! - `settings`: each plugin setting a worker applies in band (queue policy, capacity and
//!   block timeout, batch size and wait, log and emit byte rates) changed alone during a
//!   meeting: reported with its old and new value, taken by the live session and new ones.
//! - `admin`: settings that need a restart are reported; the admin listener over HTTP
//!   (reload, metrics, the token, coalescing and the rate limit).

#[path = "../all/util.rs"]
mod util;

mod admin;
mod live;
mod plugins;
mod refuse;
mod rig;
mod settings;
mod state;
