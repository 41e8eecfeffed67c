//! The pooling allocator: every instance's memory, tables and fiber stack are slots of a few
//! large mappings made once at start (`[runtime] pool`, sized by `rtms_config::pool`), so
//! instantiating touches no new mapping of its own and the process stays far below the
//! kernel's mapping limit (`vm.max_map_count`) at thousands of instances.
//!
//! Here: the wasmtime settings of a [`PoolPlan`], the check of a component against the
//! pool's per-instance limits when it is loaded, and the pool's numbers for `/metrics`
//! (occupancy, and the instantiations refused because the pool was full).

use std::sync::atomic::{AtomicU64, Ordering};

use rtms_config::PoolPlan;
use rtms_config::pool::MEMORIES_PER_INSTANCE;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::store::{MAX_TABLE_ELEMENTS, MAX_TABLES};

/// Core instances counted per component instance (a Python or JavaScript component has a
/// dozen or more).
const CORE_INSTANCES_PER_INSTANCE: u32 = 64;

/// Sets `config` to allocate from a pool of `plan`'s size.
pub fn configure(config: &mut Config, plan: &PoolPlan) {
    let mut p = PoolingAllocationConfig::new();
    p.total_component_instances(plan.instances)
        .total_core_instances(plan.instances.saturating_mul(CORE_INSTANCES_PER_INSTANCE))
        .total_memories(plan.memories())
        .max_memories_per_component(MEMORIES_PER_INSTANCE)
        .max_memories_per_module(MEMORIES_PER_INSTANCE)
        .total_tables(plan.tables())
        .max_tables_per_component(MAX_TABLES as u32)
        .max_tables_per_module(MAX_TABLES as u32)
        .table_elements(MAX_TABLE_ELEMENTS)
        .total_stacks(plan.instances)
        .max_memory_size(usize::try_from(plan.max_memory_bytes).unwrap_or(usize::MAX));
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    config.memory_reservation(plan.memory_reservation);
    config.memory_guard_size(plan.memory_guard);
    // A copy-on-write image is one more mapping (two splits) inside each slot in use;
    // copying the data segments at instantiation adds none.
    config.memory_init_cow(false);
}

/// Mappings the process holds with every slot of `plan` in use: two per fiber stack (each
/// has a guard page, mapped up front), two per instance's memory in use (its accessible
/// part splits the slot's reservation), and about two thousand for the rest of the
/// process (code, threads, sockets' buffers).
pub fn mappings_at_full(plan: &PoolPlan) -> u64 {
    4 * u64::from(plan.instances) + 2048
}

/// Logs the pool's size, and a warning when a full pool would pass the kernel's mapping
/// limit (`vm.max_map_count`), with the fix. A pool whose fiber stacks alone (mapped at
/// start) would pass it is refused: the engine could not be created.
pub fn announce(plan: &PoolPlan) -> Result<(), String> {
    tracing::info!(%plan, "plugin instance pool");
    let Some(limit) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return Ok(());
    };
    let fix = |need: u64| {
        format!(
            "raise it (sysctl -w vm.max_map_count={}), lower rtms.max_streams or [runtime] pool_instances, or set [runtime] pool = \"off\"",
            need.next_multiple_of(65_536)
        )
    };
    let at_start = 2 * u64::from(plan.instances) + 2048;
    if at_start > limit {
        return Err(format!(
            "the instance pool of {} instances needs about {at_start} memory mappings for its fiber stacks alone, past the kernel's limit vm.max_map_count = {limit}: {}",
            plan.instances,
            fix(mappings_at_full(plan))
        ));
    }
    let need = mappings_at_full(plan);
    if need > limit {
        tracing::warn!(
            "a full instance pool of {} instances needs about {need} memory mappings, past the kernel's limit vm.max_map_count = {limit}: instances will fail to start (ENOMEM) before the pool is full; {}",
            plan.instances,
            fix(need)
        );
    }
    Ok(())
}

/// The running pool: its plan, and what `/metrics` reads.
pub struct Pool {
    plan: PoolPlan,
    engine: Engine,
    exhausted: AtomicU64,
}

/// The pool's occupancy, as `/metrics` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUse {
    pub instances: u64,
    pub instances_limit: u64,
    pub memories: u64,
    pub stacks: u64,
    /// Instantiations (and calls) refused because a part of the pool was full.
    pub exhausted: u64,
}

impl Pool {
    pub fn new(plan: PoolPlan, engine: Engine) -> Self {
        Self {
            plan,
            engine,
            exhausted: AtomicU64::new(0),
        }
    }

    pub fn plan(&self) -> &PoolPlan {
        &self.plan
    }

    pub fn usage(&self) -> PoolUse {
        let m = self.engine.pooling_allocator_metrics();
        PoolUse {
            instances: m.as_ref().map_or(0, |m| m.component_instances()),
            instances_limit: u64::from(self.plan.instances),
            memories: m.as_ref().map_or(0, |m| m.memories() as u64),
            stacks: m.as_ref().map_or(0, |m| m.stacks() as u64),
            exhausted: self.exhausted.load(Ordering::Relaxed),
        }
    }

    /// When `e` is the pool refusing a slot: counts it, logs the first, and returns the
    /// report naming the setting to raise.
    pub fn exhausted(&self, e: &wasmtime::Error) -> Option<String> {
        let full = e
            .chain()
            .find_map(|c| c.downcast_ref::<wasmtime::PoolConcurrencyLimitError>())?;
        let n = self.exhausted.fetch_add(1, Ordering::Relaxed);
        let msg = format!(
            "the instance pool is full ({full}): it holds {} plugin instances, sized from rtms.max_streams × the enabled plugins when the host started; raise [runtime] pool_instances (or rtms.max_streams) and restart the host",
            self.plan.instances
        );
        if n == 0 {
            tracing::error!(
                "{msg}; further refusals are counted in rtms_plugin_pool_exhausted_total"
            );
        }
        Some(msg)
    }

    /// Whether `component` fits one slot of the pool; the reason and the fix when not.
    pub fn admits(&self, component: &Component) -> Result<(), String> {
        let Some(r) = component.resources_required() else {
            return Ok(());
        };
        if r.num_memories > MEMORIES_PER_INSTANCE {
            return Err(format!(
                "it defines {} linear memories; a plugin instance may have {MEMORIES_PER_INSTANCE}",
                r.num_memories
            ));
        }
        if r.num_tables as usize > MAX_TABLES {
            return Err(format!(
                "it defines {} tables; a plugin instance may have {MAX_TABLES}",
                r.num_tables
            ));
        }
        let initial = r
            .max_initial_memory_size
            .unwrap_or(0)
            .saturating_mul(1 << 16);
        if initial > self.plan.max_memory_bytes {
            return Err(format!(
                "its memory starts at {} MiB, past the {} MiB a slot of the instance pool holds (raise [plugin.limits] memory_mb and restart the host, or set [runtime] pool = \"off\")",
                initial >> 20,
                self.plan.max_memory_bytes >> 20
            ));
        }
        Ok(())
    }
}
