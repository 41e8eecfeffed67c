//! One plugin instance: a Store, its limits, and the four calls of the contract.
//!
//! Every call runs under a deadline counted in epoch ticks: at each tick the guest yields to
//! the executor (so a busy plugin never starves other tasks on its thread), and once the
//! call's budget is spent the callback interrupts it with a trap. A call that waits on the
//! host instead (a filesystem call on the blocking pool that never returns, a timer, an
//! HTTP response) runs no guest code for the epoch to interrupt: the same deadline, a few
//! ticks later, ends it on the wall clock, as a trap too. A trap leaves the Store unusable;
//! the caller (the worker) must drop this `Instance` and build a new one.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;
use wasmtime::UpdateDeadline;

use super::caps::Caps;
use super::explain::explain_wasi_errors;
use super::store::{Grant, InstanceCtx, ProcessShare, Refused, ResourceLimits, StoreData};
use super::ws::Item;
use super::{PluginCode, Runtime};
use crate::sandbox::bindings::{EndReason, Frame, Plugin, PluginPre, SessionInfo};

/// How to build an instance of a plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// The longest a single call may run.
    pub call_timeout: Duration,
    pub grants: Vec<Grant>,
    /// What the guest may hold through WASI.
    pub resources: ResourceLimits,
    /// The plugin's `[plugin.config]` table, flattened for `init`.
    pub config: Vec<(String, String)>,
    /// Secrets, state bounds and units cap (contract 0.2; a 0.1 plugin cannot reach them).
    pub caps: Caps,
    /// The plugin's network grant (`[plugin.net]`), shared by its instances; `None`: every
    /// HTTP request is refused.
    pub net: Option<Arc<super::net::NetGate>>,
}

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned `err(..)`: logged and counted, the instance is kept.
    #[error("plugin returned an error: {0}")]
    Plugin(String),
    /// The instance trapped (panic, unreachable, out of memory, deadline) and is dead.
    #[error("plugin trapped: {0}")]
    Trap(String),
}

impl CallError {
    pub fn is_trap(&self) -> bool {
        matches!(self, CallError::Trap(_))
    }
}

/// Calls an export of the handler, whichever contract version the instance targets (their
/// Rust types are the same: see `bindings`), under the call's wall-clock deadline.
macro_rules! call {
    ($self:ident, $method:ident($($arg:expr),*)) => {{
        let wall = $self.wall;
        let call = async {
            match &$self.plugin {
                Plugin::V01(p) => p.rtms_plugin_handler().$method(&mut $self.store, $($arg),*).await,
                Plugin::V02(p) => p.rtms_plugin_handler().$method(&mut $self.store, $($arg),*).await,
                Plugin::V03(p) => p.rtms_plugin0_3_0_handler().$method(&mut $self.store, $($arg),*).await,
            }
        };
        within(wall, call).await
    }};
}

/// `call`, or a [`HostWait`] error once `wall` has passed.
async fn within<T>(
    wall: Duration,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    match tokio::time::timeout(wall, call).await {
        Ok(r) => r,
        Err(_) => Err(wasmtime::Error::new(HostWait)),
    }
}

/// A call ended on the wall clock while it waited on the host.
#[derive(Debug, thiserror::Error)]
#[error("the call waited on the host past its deadline")]
struct HostWait;

/// Epoch ticks a call may run past its deadline before the wall clock ends it: the epoch
/// interrupts a guest that runs, so its trap names the cause first.
const WALL_MARGIN_TICKS: u32 = 4;

pub struct Instance {
    store: Store<StoreData>,
    plugin: Plugin,
    pub code: Arc<PluginCode>,
    ticks_per_call: u64,
    /// The wall-clock bound of a call (see [`WALL_MARGIN_TICKS`]).
    wall: Duration,
    limits: TrapLimits,
    /// The pool the instance's slots come from, to name it when it is full.
    pool: Option<Arc<super::pool::Pool>>,
}

/// The limits a trap report names.
#[derive(Clone, Copy, Debug)]
struct TrapLimits {
    memory_bytes: usize,
    call_timeout: Duration,
    max_resources: usize,
}

impl Instance {
    /// Instantiates `code` in a fresh Store. Does not call `init`.
    pub async fn new(
        rt: &Runtime,
        code: Arc<PluginCode>,
        spec: &InstanceSpec,
        ctx: Arc<InstanceCtx>,
    ) -> Result<Self, CallError> {
        let state = StoreData::new(
            ctx.clone(),
            &spec.grants,
            spec.memory_bytes,
            spec.caps.clone(),
            spec.resources,
            ProcessShare {
                quotas: rt.quotas(),
                fds: rt.descriptors(),
                files: rt.files(),
            },
            spec.net.clone(),
        )
        .map_err(|e| CallError::Trap(format!("{e:#}")))?;
        let mut store = Store::new(rt.engine(), state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|mut cx| {
            let st = cx.data_mut();
            if st.ticks_left == 0 {
                return Ok(UpdateDeadline::Interrupt);
            }
            st.ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        let tick = rt.tick().as_nanos().max(1);
        let ticks_per_call = (spec.call_timeout.as_nanos() / tick).max(1) as u64;
        store.data_mut().ticks_left = ticks_per_call;
        store.set_epoch_deadline(1);
        let limits = TrapLimits {
            memory_bytes: spec.memory_bytes,
            call_timeout: spec.call_timeout,
            max_resources: spec.resources.max_resources,
        };
        let plugin = match &code.pre {
            PluginPre::V01(pre) => pre.instantiate_async(&mut store).await.map(Plugin::V01),
            PluginPre::V02(pre) => pre.instantiate_async(&mut store).await.map(Plugin::V02),
            PluginPre::V03(pre) => pre.instantiate_async(&mut store).await.map(Plugin::V03),
        };
        let pool = rt.pool().cloned();
        let plugin = match plugin {
            Ok(p) => p,
            Err(e) => return Err(failure(&pool, store.data_mut(), limits, e)),
        };
        Ok(Self {
            store,
            plugin,
            code,
            ticks_per_call,
            wall: spec.call_timeout + rt.tick() * WALL_MARGIN_TICKS,
            limits,
            pool,
        })
    }

    /// The instance's buffered file writes (a handle that outlives the instance).
    pub fn files(&self) -> super::filebuf::FileBuf {
        self.store.data().files.clone()
    }

    fn arm(&mut self) {
        let st = self.store.data_mut();
        st.ticks_left = self.ticks_per_call;
        st.limits.refused_memory = None;
        st.limits.refused_table = None;
        st.ctx.stderr_tail.lock().clear();
        self.store.set_epoch_deadline(1);
    }

    /// The outcome of a call: a plugin error with its sandbox errors named, or a trap
    /// report. What the call wrote to files is written out by the flusher within its
    /// interval (or sooner, once the buffer holds `KICK_AT` bytes), not a thread hop per
    /// call.
    fn outcome(&mut self, r: wasmtime::Result<Result<(), String>>) -> Result<(), CallError> {
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(CallError::Plugin(explain_wasi_errors(&msg).into_owned())),
            Err(e) => Err(failure(&self.pool, self.store.data_mut(), self.limits, e)),
        }
    }

    pub async fn init(&mut self, config: &[(String, String)]) -> Result<(), CallError> {
        self.arm();
        let r = call!(self, call_init(config));
        self.outcome(r)
    }

    /// Starts the session: 0.1 and 0.2 plugins get `info`, 0.3 plugins `info` with the
    /// session's details (`InstanceCtx::details`).
    pub async fn session_start(&mut self, info: &SessionInfo) -> Result<(), CallError> {
        self.arm();
        let wall = self.wall;
        let call = async {
            match &self.plugin {
                Plugin::V03(p) => {
                    let info = self.store.data().ctx.details.info_v03(info);
                    p.rtms_plugin0_3_0_handler()
                        .call_on_session_start(&mut self.store, &info)
                        .await
                }
                Plugin::V01(p) => {
                    p.rtms_plugin_handler()
                        .call_on_session_start(&mut self.store, info)
                        .await
                }
                Plugin::V02(p) => {
                    p.rtms_plugin_handler()
                        .call_on_session_start(&mut self.store, info)
                        .await
                }
            }
        };
        let r = within(wall, call).await;
        self.outcome(r)
    }

    /// A batch: 0.1 and 0.2 plugins get `frames` as they are, 0.3 plugins a copy with
    /// `length` (`SessionDetails::frames_v03`).
    pub async fn frames(&mut self, session: u64, frames: &[Frame]) -> Result<(), CallError> {
        self.arm();
        let wall = self.wall;
        let call = async {
            match &self.plugin {
                Plugin::V01(p) => {
                    p.rtms_plugin_handler()
                        .call_on_frames(&mut self.store, session, frames)
                        .await
                }
                Plugin::V02(p) => {
                    p.rtms_plugin_handler()
                        .call_on_frames(&mut self.store, session, frames)
                        .await
                }
                Plugin::V03(p) => {
                    let frames = self.store.data().ctx.details.frames_v03(frames);
                    p.rtms_plugin0_3_0_handler()
                        .call_on_frames(&mut self.store, session, &frames)
                        .await
                }
            }
        };
        let r = within(wall, call).await;
        self.outcome(r)
    }

    /// Delivers what the instance's WebSockets received since the last call (at most
    /// [`super::ws::DRAIN_MAX`] items), each as a call of its own; returns how many. A 0.1
    /// instance has no sockets. Plugin errors are counted in `errors` and do not stop the
    /// rest; a trap does.
    pub async fn ws_deliver(&mut self, errors: &mut u64) -> Result<usize, CallError> {
        if matches!(self.plugin, Plugin::V01(_)) {
            return Ok(0);
        }
        let items = self.store.data().ctx.ws.take();
        let n = items.len();
        for (conn, item) in items {
            self.arm();
            let wall = self.wall;
            let r = match (&self.plugin, &item) {
                (Plugin::V01(_), _) => return Ok(0),
                (Plugin::V02(p), Item::Message(m)) => {
                    let h = p.rtms_plugin_handler();
                    within(wall, h.call_on_ws_message(&mut self.store, conn, m)).await
                }
                (Plugin::V02(p), Item::Event(e)) => {
                    let h = p.rtms_plugin_handler();
                    within(wall, h.call_on_ws_event(&mut self.store, conn, e)).await
                }
                (Plugin::V03(p), Item::Message(m)) => {
                    let h = p.rtms_plugin0_3_0_handler();
                    within(wall, h.call_on_ws_message(&mut self.store, conn, m)).await
                }
                (Plugin::V03(p), Item::Event(e)) => {
                    let h = p.rtms_plugin0_3_0_handler();
                    within(wall, h.call_on_ws_event(&mut self.store, conn, e)).await
                }
            };
            match self.outcome(r) {
                Ok(()) => {}
                Err(CallError::Plugin(_)) => *errors += 1,
                Err(trap) => return Err(trap),
            }
        }
        Ok(n)
    }

    /// Ends the session, then waits (up to the call's deadline) until every byte the
    /// instance wrote to files is written out: a session's files are complete when it ends.
    pub async fn session_end(&mut self, session: u64, reason: EndReason) -> Result<(), CallError> {
        self.arm();
        let r = call!(self, call_on_session_end(session, reason));
        let files = &self.store.data().files;
        if tokio::time::timeout(self.wall, files.settle())
            .await
            .is_err()
        {
            let c = &self.store.data().ctx;
            tracing::warn!(plugin = %c.plugin, stream = %c.stream_id, pending_bytes = files.pending(), "the plugin's file writes were not all written out when its session ended: a file does not take them (a FIFO nobody reads, a hung mount); they are written when it does");
        }
        self.outcome(r)
    }
}

/// A failed instantiation or call: the pool refusing a slot (named, counted), or a trap.
fn failure(
    pool: &Option<Arc<super::pool::Pool>>,
    st: &mut StoreData,
    limits: TrapLimits,
    e: wasmtime::Error,
) -> CallError {
    match pool.as_ref().and_then(|p| p.exhausted(&e)) {
        Some(msg) => CallError::Trap(msg),
        None => trap_error(st, limits, e),
    }
}

/// Whether `e` is the resource table refusing one more entry.
fn table_full(e: &wasmtime::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    })
}

/// A trap's report: what stopped the instance, naming the limit and its pipeline.toml key
/// when a limit did, with the guest's last stderr lines of the call (a panic's message).
fn trap_error(st: &mut StoreData, limits: TrapLimits, e: wasmtime::Error) -> CallError {
    let mib = |b: usize| b.div_ceil(1 << 20);
    let mut msg = if let Some(wanted) = st.limits.refused_memory {
        format!(
            "out of memory: the instance asked to grow its linear memory to {} MiB, past [plugin.limits] memory_mb = {} (raise memory_mb, or keep less in memory: a plugin that holds every frame grows without end)",
            mib(wanted),
            mib(limits.memory_bytes)
        )
    } else if let Some(wanted) = st.limits.refused_table {
        format!(
            "table limit: the instance asked for a table of {wanted} elements, past the host's limit of {}",
            super::store::MAX_TABLE_ELEMENTS
        )
    } else if table_full(&e) {
        let max = limits.max_resources;
        st.ctx.refused_fs(Refused::Resources, || format!("plugin filled its resource table ({max} entries, [plugin.limits] max_resources): the call trapped"));
        format!(
            "resource table full: the instance holds {max} resources (open files, streams, pollables, directory listings), the most [plugin.limits] max_resources allows (drop what it no longer uses, or raise max_resources)"
        )
    } else {
        match e.downcast_ref::<wasmtime::Trap>() {
            _ if e.is::<HostWait>() => format!(
                "call deadline exceeded: the call waited on the host (a filesystem call, a timer or an HTTP response) past [plugin.limits] call_timeout_ms = {} (a file that never answers, such as a FIFO nobody reads or a hung mount, or a slow request: raise call_timeout_ms, or keep such work out of the plugin)",
                limits.call_timeout.as_millis()
            ),
            Some(wasmtime::Trap::Interrupt) => format!(
                "call deadline exceeded: the call ran past [plugin.limits] call_timeout_ms = {} (an endless loop, or too much work for one call: raise call_timeout_ms, or lower [plugin.batch] max_frames)",
                limits.call_timeout.as_millis()
            ),
            Some(t) => t.to_string(),
            // The error itself, without the wasm backtrace wasmtime adds as context (function
            // names of a stripped guest are `<unknown>`, which helps no one).
            None => {
                let bt = e
                    .downcast_ref::<wasmtime::WasmBacktrace>()
                    .map(|b| b.to_string());
                e.chain()
                    .map(|c| c.to_string())
                    .filter(|c| Some(c) != bt.as_ref())
                    .collect::<Vec<_>>()
                    .join(": ")
            }
        }
    };
    let stderr = st.ctx.stderr_tail.lock().take_text();
    let bt = e.downcast_ref::<wasmtime::WasmBacktrace>();
    // Where it trapped, when the guest says it (debug info) or nothing else would: a bare
    // C crash has no message of its own.
    if let Some(at) = bt.and_then(|bt| super::symbols::guest_location(bt, stderr.is_empty())) {
        msg.push_str(", at ");
        msg.push_str(&at);
    }
    if !stderr.is_empty() {
        msg.push_str(" — guest stderr: ");
        // Only the guest's own words carry WASI error numbers; the host's errors above
        // (a failed mmap, say) quote the host's.
        msg.push_str(&explain_wasi_errors(&stderr));
    }
    if let Some(bt) = bt {
        tracing::debug!(plugin = %st.ctx.plugin, stream = %st.ctx.stream_id, "trap backtrace: {bt}");
    }
    CallError::Trap(msg)
}
