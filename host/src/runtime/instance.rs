//! One plugin instance: a Store, its limits, and the four calls of the contract.
//!
//! Every call runs under a deadline counted in epoch ticks: at each tick the guest yields to
//! the executor (so a busy plugin never starves other tasks on its thread), and once the
//! call's budget is spent the callback interrupts it with a trap. A trap leaves the Store
//! unusable; the caller (the worker) must drop this `Instance` and build a new one.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;
use wasmtime::UpdateDeadline;

use super::host::{Grant, HostState, InstanceCtx};
use super::{PluginCode, Runtime};
use crate::bindings::{EndReason, Frame, Plugin, SessionInfo};

/// How to build an instance of a plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// The longest a single call may run.
    pub call_timeout: Duration,
    pub grants: Vec<Grant>,
    /// The plugin's `[plugin.config]` table, flattened for `init`.
    pub config: Vec<(String, String)>,
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

pub struct Instance {
    store: Store<HostState>,
    plugin: Plugin,
    pub code: Arc<PluginCode>,
    ticks_per_call: u64,
}

impl Instance {
    /// Instantiates `code` in a fresh Store. Does not call `init`.
    pub async fn new(
        rt: &Runtime,
        code: Arc<PluginCode>,
        spec: &InstanceSpec,
        ctx: Arc<InstanceCtx>,
    ) -> Result<Self, CallError> {
        let state = HostState::new(ctx.clone(), &spec.grants, spec.memory_bytes)
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
        let plugin = code
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| trap_error(&ctx, e))?;
        Ok(Self {
            store,
            plugin,
            code,
            ticks_per_call,
        })
    }

    fn arm(&mut self) {
        self.store.data_mut().ticks_left = self.ticks_per_call;
        self.store.set_epoch_deadline(1);
    }

    fn ctx(&self) -> Arc<InstanceCtx> {
        self.store.data().ctx.clone()
    }

    pub async fn init(&mut self, config: &[(String, String)]) -> Result<(), CallError> {
        self.arm();
        let ctx = self.ctx();
        let r = self
            .plugin
            .rtms_plugin_handler()
            .call_init(&mut self.store, config)
            .await;
        flatten(&ctx, r)
    }

    pub async fn session_start(&mut self, info: &SessionInfo) -> Result<(), CallError> {
        self.arm();
        let ctx = self.ctx();
        let r = self
            .plugin
            .rtms_plugin_handler()
            .call_on_session_start(&mut self.store, info)
            .await;
        flatten(&ctx, r)
    }

    pub async fn frames(&mut self, session: u64, frames: &[Frame]) -> Result<(), CallError> {
        self.arm();
        let ctx = self.ctx();
        let r = self
            .plugin
            .rtms_plugin_handler()
            .call_on_frames(&mut self.store, session, frames)
            .await;
        flatten(&ctx, r)
    }

    pub async fn session_end(&mut self, session: u64, reason: EndReason) -> Result<(), CallError> {
        self.arm();
        let ctx = self.ctx();
        let r = self
            .plugin
            .rtms_plugin_handler()
            .call_on_session_end(&mut self.store, session, reason)
            .await;
        flatten(&ctx, r)
    }
}

fn flatten(ctx: &InstanceCtx, r: wasmtime::Result<Result<(), String>>) -> Result<(), CallError> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(msg)) => Err(CallError::Plugin(msg)),
        Err(e) => Err(trap_error(ctx, e)),
    }
}

fn trap_error(ctx: &InstanceCtx, e: wasmtime::Error) -> CallError {
    let mut msg = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => "call deadline exceeded (interrupted)".to_owned(),
        Some(t) => t.to_string(),
        None => format!("{e}"),
    };
    let last = std::mem::take(&mut *ctx.last_stderr.lock());
    if !last.is_empty() {
        msg.push_str(" — guest stderr: ");
        msg.push_str(&last);
    }
    CallError::Trap(msg)
}
