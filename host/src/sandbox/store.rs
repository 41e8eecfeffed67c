//! What a plugin instance's Store holds, and the host side of the contract's imports
//! (`host.log`, `host.emit`, `host.now-ms`).
//!
//! The sandbox is built here too: WASI with no environment, no arguments, no sockets, no
//! inherited stdio (the guest's stdout and stderr become log lines labelled with the
//! plugin and session), and only the directories the pipeline grants; outgoing HTTP only as
//! the plugin's `[plugin.net]` allows ([`super::net`]). Log lines and emitted
//! outputs are held to byte-rate budgets ([`super::budget`]); the Store's limits (one
//! linear memory, bounded tables) are [`store_limits`].

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::budget::{Budget, Take};
use super::caps::{Caps, Units};
use super::descriptors::Descriptors;
use super::explain::explain_wasi_errors;
use super::fs_limits::FsState;
pub use super::fs_limits::{Grant, Refused, ResourceLimits};
use super::net::{Caller, NetEvent, NetGate, NetHooks};
use super::state::{MemoryStateStore, StateStore};
use crate::sandbox::bindings::v01::rtms::plugin::{host, types};

/// Most tables one instance (all its core modules together) may create.
pub const MAX_TABLES: usize = 16;
/// Most elements one table may hold (each costs a pointer of host memory).
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The Store limits of an instance: one linear memory of at most `memory_bytes`, at most
/// [`MAX_TABLES`] tables of at most [`MAX_TABLE_ELEMENTS`] elements, a bounded number of
/// core instances; a refused growth traps.
pub fn store_limits(memory_bytes: usize) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(memory_bytes)
        .memories(1)
        .tables(MAX_TABLES)
        .table_elements(MAX_TABLE_ELEMENTS)
        .instances(64)
        .trap_on_grow_failure(true)
        .build()
}

/// Byte-rate limits of one (plugin, session).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rates {
    /// Bytes per second of log lines: `host.log`, stdout and stderr together.
    pub log_bytes_per_sec: u64,
    /// Bytes per second of emitted outputs (kind + message + data).
    pub emit_bytes_per_sec: u64,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            log_bytes_per_sec: 64 * 1024,
            emit_bytes_per_sec: 1024 * 1024,
        }
    }
}

/// What the sandbox needs from the program that embeds it, one per (plugin, session): where a
/// guest's emitted outputs go, and where the losses its byte-rate budgets cause are counted.
/// The sandbox knows nothing of sessions, sinks or metrics beyond this.
pub trait Embedder: Send + Sync {
    /// An output the guest emitted within its budget. Runs inside a guest call: it must
    /// never block.
    fn emit(&self, ctx: &InstanceCtx, out: types::Output);
    /// A log line or an output cut by a byte-rate budget; returns how many of that kind were
    /// cut so far for this (plugin, session), for the warning.
    fn dropped(&self, what: Dropped) -> u64;
    /// Units the guest charged to the session's budget (`budget.charge`), within its cap.
    /// Runs inside a guest call: it must never block.
    fn charged(&self, what: &str, units: u64);
    /// A guest request a sandbox bound refused; returns how many of that kind the plugin
    /// had refused so far, for the warning.
    fn refused(&self, what: Refused) -> u64;
    /// What happened to an outgoing HTTP request, for the metrics. Runs inside a guest call
    /// or on a request's task: it must never block.
    fn net(&self, event: NetEvent) {
        let _ = event;
    }
    /// The guest asks to pin, drop or release a participant's individual video on its
    /// session's stream (contract 0.3 `video.request`); `Err` says why it cannot be done.
    /// Runs inside a guest call: it must never block.
    fn video(&self, ctx: &InstanceCtx, user_id: i64, action: VideoAction) -> Result<(), String> {
        let _ = (ctx, user_id, action);
        Err("this host takes no video requests".into())
    }
}

/// What a plugin asks of a participant's individual video.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoAction {
    Pin,
    Drop,
    Release,
}

/// What a byte-rate budget cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// A log line (`host.log`, stdout or stderr).
    Log,
    /// An emitted output (`host.emit`).
    Emit,
    /// A state write refused: past a bound of its scope (`[plugin.state]`).
    State,
    /// A charge refused: past the session's units cap.
    Units,
}

/// Who an instance is, shared by its Store and its worker; one per (plugin, session), kept
/// across the instances a restart or a swap builds.
pub struct InstanceCtx {
    pub plugin: Arc<str>,
    pub session: u64,
    pub stream_id: Arc<str>,
    pub meeting_id: Arc<str>,
    /// The guest's last stderr lines of the current call: a panic's message lands here just
    /// before the trap, and goes into the trap's report.
    pub stderr_tail: Mutex<StderrTail>,
    pub log_budget: Budget,
    pub emit_budget: Budget,
    /// Where outputs and losses go.
    pub embedder: Arc<dyn Embedder>,
    /// The units charged on this session (`budget.charge`).
    pub units: Units,
    /// Where the plugin's state lives (`state.*`). [`InstanceCtx::new`] gives a store of
    /// its own, thrown away with the context (trial runs); the data plane gives the host's
    /// with [`InstanceCtx::with_state`].
    pub state: Arc<dyn StateStore>,
    /// The session's WebSockets: what their tasks received, for the worker to deliver.
    pub ws: Arc<super::ws_hub::Hub>,
    /// The kinds of [`Refused`] already logged for this (plugin, session), as bits.
    refusals_logged: std::sync::atomic::AtomicU8,
    /// What the started webhook said of the session beyond 0.2's `session-info`: handed to
    /// plugins of contract 0.3 in theirs ([`InstanceCtx::with_details`]).
    pub details: Arc<super::bindings::SessionDetails>,
}

impl std::fmt::Debug for InstanceCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceCtx")
            .field("plugin", &self.plugin)
            .field("session", &self.session)
            .field("stream_id", &self.stream_id)
            .finish_non_exhaustive()
    }
}

impl InstanceCtx {
    pub fn new(
        plugin: Arc<str>,
        session: u64,
        stream_id: Arc<str>,
        meeting_id: Arc<str>,
        rates: Rates,
        embedder: Arc<dyn Embedder>,
    ) -> Self {
        Self {
            plugin,
            session,
            stream_id,
            meeting_id,
            stderr_tail: Default::default(),
            log_budget: Budget::new(rates.log_bytes_per_sec),
            emit_budget: Budget::new(rates.emit_bytes_per_sec),
            embedder,
            units: Units::default(),
            state: Arc::new(MemoryStateStore::new()),
            ws: Default::default(),
            refusals_logged: Default::default(),
            details: Default::default(),
        }
    }

    /// This context with its state kept in `state`.
    pub fn with_state(mut self, state: Arc<dyn StateStore>) -> Self {
        self.state = state;
        self
    }

    /// The session's details for plugins of contract 0.3 (none by default).
    pub fn with_details(mut self, details: Arc<super::bindings::SessionDetails>) -> Self {
        self.details = details;
        self
    }

    /// Counts a refusal of kind `what` and logs the 1st, 10th, 100th, ... of this (plugin,
    /// session), so a guest retrying in a loop cannot flood the log.
    pub(crate) fn refused(&self, what: Dropped, error: &str) {
        let total = self.embedder.dropped(what);
        if is_power_of_ten(total) {
            tracing::warn!(plugin = %self.plugin, stream = %self.stream_id, total, error, "plugin call refused");
        }
    }

    /// Counts a request a sandbox bound refused; the first of its kind for this (plugin,
    /// session) is logged (rate-limited across sessions) with `why`, which names the key to
    /// raise.
    pub fn refused_fs(&self, what: Refused, why: impl FnOnce() -> String) {
        let total = self.embedder.refused(what);
        let first = self
            .refusals_logged
            .fetch_or(what.bit(), std::sync::atomic::Ordering::Relaxed)
            & what.bit()
            == 0;
        if first && rtms_client::ratelog::admit("plugin-sandbox-refused") {
            tracing::warn!(plugin = %self.plugin, stream = %self.stream_id, total, "{}; later refusals of this kind are counted, not logged", why());
        }
    }

    /// Takes new byte rates (a reload): log lines and outputs from now on are held to them.
    pub fn set_rates(&self, rates: Rates) {
        self.log_budget.set_rate(rates.log_bytes_per_sec);
        self.emit_budget.set_rate(rates.emit_bytes_per_sec);
    }

    /// The byte rates in force.
    pub fn rates(&self) -> Rates {
        Rates {
            log_bytes_per_sec: self.log_budget.rate(),
            emit_bytes_per_sec: self.emit_budget.rate(),
        }
    }

    /// Whether a log line of `bytes` fits the log budget; counts and reports it if not.
    fn log_allowed(&self, bytes: usize) -> bool {
        match self.log_budget.take(bytes) {
            Take::Ok => true,
            Take::Drop { warn } => {
                let total = self.embedder.dropped(Dropped::Log);
                if let Some(n) = warn {
                    tracing::warn!(plugin = %self.plugin, stream = %self.stream_id, dropped = n, total, "plugin logs faster than its log budget (limits.log_bytes_per_sec): log lines dropped");
                }
                false
            }
        }
    }
}

/// 1, 10, 100, ...: which occurrences of a repeated event are logged.
pub(crate) fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

/// The last lines a guest wrote to stderr during one call (bounded).
#[derive(Debug, Default)]
pub struct StderrTail {
    lines: std::collections::VecDeque<String>,
    bytes: usize,
}

impl StderrTail {
    /// Lines kept.
    const LINES: usize = 12;
    /// Bytes kept.
    const BYTES: usize = 4096;

    pub fn push(&mut self, line: &str) {
        self.bytes += line.len();
        self.lines.push_back(line.to_owned());
        while self.lines.len() > Self::LINES || (self.bytes > Self::BYTES && self.lines.len() > 1) {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    pub fn clear(&mut self) {
        self.lines.clear();
        self.bytes = 0;
    }

    /// The lines kept, joined with spaces, without blank lines and without the hint a Rust
    /// panic adds (`note: run with RUST_BACKTRACE=1 ...`), which means nothing here.
    pub fn take_text(&mut self) -> String {
        let text: Vec<String> = self
            .lines
            .drain(..)
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        self.bytes = 0;
        text.join(" ")
    }
}

/// The Store's resource limiter: [`store_limits`], noting what it refused so a trap can say
/// it ran out of memory and name the limit.
pub struct Limiter {
    inner: StoreLimits,
    /// The size a refused memory growth asked for, in bytes, since the call began.
    pub refused_memory: Option<usize>,
    /// The element count a refused table growth asked for.
    pub refused_table: Option<usize>,
}

impl Limiter {
    pub fn new(memory_bytes: usize) -> Self {
        Self {
            inner: store_limits(memory_bytes),
            refused_memory: None,
            refused_table: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.inner.memory_growing(current, desired, maximum);
        if !matches!(r, Ok(true)) {
            self.refused_memory = Some(desired);
        }
        r
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.inner.table_growing(current, desired, maximum);
        if !matches!(r, Ok(true)) {
            self.refused_table = Some(desired);
        }
        r
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// What every instance of the process shares: the entry counts of granted directories and
/// the plugins' descriptor budget.
#[derive(Clone, Copy)]
pub struct ProcessShare<'a> {
    pub quotas: &'a super::quota::Quotas,
    pub fds: &'a Descriptors,
    /// Where the instance's file writes are buffered and written out.
    pub files: &'a super::filebuf::Flusher,
}

/// The data of one instance's Store.
pub struct StoreData {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) net: NetHooks,
    table: ResourceTable,
    pub(crate) limits: Limiter,
    pub ctx: Arc<InstanceCtx>,
    /// What the plugin's version may hold (secrets, state bounds, units cap).
    pub(crate) caps: Caps,
    /// What the guest holds and creates through the filesystem, and its bounds.
    pub(crate) fs: FsState,
    /// Epoch ticks the current call may still run before it is interrupted.
    pub(crate) ticks_left: u64,
    /// The guest's file writes, not yet written out.
    pub(crate) files: super::filebuf::FileBuf,
}

impl StoreData {
    pub fn new(
        ctx: Arc<InstanceCtx>,
        grants: &[Grant],
        memory_bytes: usize,
        caps: Caps,
        resources: ResourceLimits,
        process: ProcessShare<'_>,
        net: Option<Arc<NetGate>>,
    ) -> anyhow::Result<Self> {
        let ProcessShare { quotas, fds, files } = process;
        let mut b = WasiCtxBuilder::new();
        b.stdout(LogSink::new(ctx.clone(), Stream::Stdout));
        b.stderr(LogSink::new(ctx.clone(), Stream::Stderr));
        // Every filesystem call runs on the blocking pool (wasmtime-wasi's default), never on
        // the calling thread: a call that never returns (a FIFO, a hung mount) holds only the
        // plugin's own call, which its deadline ends. File writes do not leave the call at
        // all: they go to the instance's buffer (`super::filebuf`, linked in `super::fs`).
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for g in grants {
            let perms = if g.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&g.host, &g.guest, perms).map_err(|e| {
                anyhow::anyhow!(
                    "cannot grant {} as {} to plugin {}: {e}",
                    g.host.display(),
                    g.guest,
                    ctx.plugin
                )
            })?;
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(resources.max_resources);
        Ok(Self {
            wasi: b.build(),
            http: WasiHttpCtx::new(),
            net: NetHooks {
                gate: net,
                ctx: Arc::new(Caller {
                    plugin: ctx.plugin.clone(),
                    stream_id: ctx.stream_id.clone(),
                    events: {
                        let embedder = ctx.embedder.clone();
                        Box::new(move |e| embedder.net(e))
                    },
                    fds: fds.clone(),
                }),
            },
            table,
            limits: Limiter::new(memory_bytes),
            fs: FsState::new(
                grants,
                resources,
                grants
                    .iter()
                    .map(|g| (quotas.inodes(&g.host), quotas.parked(&g.host)))
                    .collect(),
                fds.clone(),
            ),
            ctx,
            caps,
            ticks_left: 0,
            files: files.buffer(),
        })
    }
}

impl StoreData {
    pub(crate) fn table_mut(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.net,
        }
    }
}

impl types::Host for StoreData {}

impl host::Host for StoreData {
    fn log(&mut self, level: types::Level, message: String) {
        let c = &self.ctx;
        let message = explain_wasi_errors(&message);
        let message = escape_controls(&message);
        let message = rtms_proto::text::prefix(&message, MAX_LOG_LINE);
        if !c.log_allowed(message.len()) {
            return;
        }
        match level {
            types::Level::Trace => {
                tracing::trace!(target: LOG_TARGET, plugin = %c.plugin, stream = %c.stream_id, "{message}")
            }
            types::Level::Debug => {
                tracing::debug!(target: LOG_TARGET, plugin = %c.plugin, stream = %c.stream_id, "{message}")
            }
            types::Level::Info => {
                tracing::info!(target: LOG_TARGET, plugin = %c.plugin, stream = %c.stream_id, "{message}")
            }
            types::Level::Warn => {
                tracing::warn!(target: LOG_TARGET, plugin = %c.plugin, stream = %c.stream_id, "{message}")
            }
            types::Level::Error => {
                tracing::error!(target: LOG_TARGET, plugin = %c.plugin, stream = %c.stream_id, "{message}")
            }
        }
    }

    fn emit(&mut self, out: types::Output) {
        let c = &self.ctx;
        let bytes = out.kind.len() + out.message.len() + out.data.as_ref().map_or(0, String::len);
        if let Take::Drop { warn } = c.emit_budget.take(bytes) {
            let total = c.embedder.dropped(Dropped::Emit);
            if let Some(n) = warn {
                tracing::warn!(plugin = %c.plugin, stream = %c.stream_id, dropped = n, total, "plugin emits faster than its output budget (limits.emit_bytes_per_sec): outputs dropped");
            }
            return;
        }
        c.embedder.emit(c, out);
    }

    fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// The `tracing` target of a plugin's own log lines (`host.log`, stdout, stderr), apart from
/// the host's: `RUST_LOG=warn,plugin=info` shows them with the host's warnings only.
pub const LOG_TARGET: &str = "plugin";

/// Longest log line kept from a plugin; the rest is cut, so a plugin cannot flood the log.
const MAX_LOG_LINE: usize = 4096;

/// Plugin-supplied text with its control characters (newlines, carriage returns, ANSI
/// escapes, ...) and Unicode line separators escaped (`\n`, `\u{1b}`), so one plugin line is
/// one log line and cannot forge another or restyle a terminal.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[derive(Clone, Copy, Debug)]
enum Stream {
    Stdout,
    Stderr,
}

/// The guest's stdout or stderr: complete lines become log lines.
#[derive(Clone)]
struct LogSink {
    ctx: Arc<InstanceCtx>,
    stream: Stream,
}

impl LogSink {
    fn new(ctx: Arc<InstanceCtx>, stream: Stream) -> Self {
        Self { ctx, stream }
    }
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            sink: self.clone(),
            buf: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

struct LineWriter {
    sink: LogSink,
    buf: Vec<u8>,
}

impl LineWriter {
    fn emit_line(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = explain_wasi_errors(text.trim_end());
        let text = escape_controls(&text);
        let text = rtms_proto::text::prefix(&text, MAX_LOG_LINE);
        let c = &self.sink.ctx;
        if let Stream::Stderr = self.sink.stream {
            c.stderr_tail.lock().push(text);
        }
        if !c.log_allowed(text.len()) {
            return;
        }
        match self.sink.stream {
            Stream::Stdout => {
                tracing::info!(target: LOG_TARGET, plugin = %c.plugin, stream = %c.stream_id, "stdout: {text}")
            }
            Stream::Stderr => {
                tracing::warn!(target: LOG_TARGET, plugin = %c.plugin, stream = %c.stream_id, "stderr: {text}");
            }
        }
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.buf.extend_from_slice(&bytes);
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            self.emit_line(&line);
        }
        if self.buf.len() > MAX_LOG_LINE {
            let line = std::mem::take(&mut self.buf);
            self.emit_line(&line);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.emit_line(&line);
        }
    }
}
