//! End-to-end tests of the whole host: a real `Service` (webhook ingress over HTTP, RTMS
//! client over ws/wss, WebAssembly plugins writing files) against the Zoom simulator, with
//! every assertion made against the simulator's ledger of what it actually sent.
//!
//! - `harness`: starting a host for a simulator, reading what the plugins wrote, raw HTTP.
//! - `happy`: each product end to end, unified and split sockets.
//! - `event_ws`: Zoom's event WebSocket as the intake: events, heartbeats, reconnection.
//! - `faults`: dropped sockets, keep-alive loss, handshake rejections, refused connections,
//!   failover scenarios 1-3, stop reasons.
//! - `outages`: repeated short outages within the per-outage budget, unified mode with a
//!   per-type URL map, the bounded drain after a stop.
//! - `timing`: retry and reconnection delays against the configured bounds.
//! - `zoom_app`: the in-client Zoom App page (SDK stubbed, in headless Chromium) and its
//!   server-side start, guarded by Zoom's sealed app context.
//! - `zoom_rest`: starting, pausing, resuming and stopping streams through Zoom's REST API
//!   (OAuth token, status call, then the started webhook), its errors and the timeout.
//! - `webhooks`: forged, stale, replayed, oversize and malformed webhooks; url validation.
//! - `proxy`: signaling and media through an HTTP CONNECT proxy from the environment.
//! - `recorders`: the video recorder's H.264 checked by ffprobe, its JPEG frames, against the
//!   ledger.
//! - `scale`: a hundred concurrent meetings.
//! - `shutdown`: graceful shutdown with a live meeting.
//! - `close`: closing a stream from the host's side (STREAM_CLOSE_REQ): `rtms-host stop
//!   --stream`, a shutdown that closes streams, refusals counted by status name.
//! - `cores`: thread per core: streams balanced over the core threads, a slow plugin
//!   moved off its core, a shutdown with streams on two cores.
//! - `details`: contract 0.3's `session-info` carries the started webhook's fields, beside 0.1
//!   plugins.
//! - `ops`: Prometheus metrics against the ledger, the admin API, the token rule, `rtms-host
//!   tap` and the dashboard in headless Chromium.
//! - `notices`: Zoom's concurrency webhooks in `/metrics` and in a sink, retries counted once.
//! - `transcript`: `[rtms.transcript]` source language and language identification in the
//!   data handshake, as the simulator recorded them.
//! - `isolation`: stuck and restarting plugins never stall the stream or the other plugins.
//! - `journal`: a host killed with `kill -9` mid-meeting and restarted on the same
//!   `[runtime] journal_dir` resumes the stream within the grace window, or ends it after.
//! - `file_writes`: plugins' buffered file writes on disk at session end, across a reload,
//!   at SIGTERM and after `kill -9` (up to the flush interval).
//! - `stalls`: a plugin stuck opening a FIFO, or writing 100 MiB per call, stalls only
//!   itself.
//! - `drops`: a plugin falling behind loses audio only, counted, warned about and summarised.
//! - `providers`: the speech-to-text and meeting-summary examples against fakes of the
//!   providers' protocols (`rtms-fakes`), secrets included.

#[path = "../shared/host_process.rs"]
mod host_process;
#[path = "../shared/pyvenv.rs"]
mod pyvenv;
#[path = "../shared/record.rs"]
mod record;
#[path = "../all/util.rs"]
mod util;

mod harness;

mod chaos;
mod close;
mod cores;
mod details;
mod drops;
mod event_ws;
mod faults;
mod file_writes;
mod happy;
mod isolation;
mod journal;
mod notices;
mod ops;
mod outages;
mod providers;
mod proxy;
mod readme;
mod recorders;
mod scale;
mod shutdown;
mod stalls;
mod timing;
mod transcript;
mod webhooks;
mod zoom_app;
mod zoom_rest;
