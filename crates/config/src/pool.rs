//! `[runtime] pool`: the size of the pooling allocator every plugin instance is carved from.
//!
//! The pool is sized once, when the process starts, from the pipeline: every stream
//! (`rtms.max_streams`) runs one instance of each enabled plugin, a build or reload runs one
//! trial instance of each plugin beside them, and room for one more plugin on every stream
//! (and its trial run) is kept, so a reload that adds a plugin always fits. Each instance may hold up to [`MEMORIES_PER_INSTANCE`]
//! linear memories, [`TABLES_PER_INSTANCE`] tables on average, and one fiber stack.
//!
//! A memory slot reserves address space: 4 GiB plus a 32 MiB guard while the whole pool fits
//! in [`ADDRESS_BUDGET`] (guest loads and stores then need no bounds check), otherwise the
//! largest `[plugin.limits] memory_mb` rounded up to a power of two plus a 2 MiB guard
//! (every access is then bounds-checked explicitly). A pool that does not fit the budget
//! either way is refused.

use std::fmt;

/// Linear memories one instance may hold: one, as the Store's own limit allows (a Rust, C,
/// Python or JavaScript component has one).
pub const MEMORIES_PER_INSTANCE: u32 = 1;
/// Tables the pool holds per instance, on average (a Rust component has one or two; one
/// instance may have up to the Store's own limit of 16).
pub const TABLES_PER_INSTANCE: u32 = 4;
/// The most address space the memory pool may reserve: an eighth of x86-64's 128 TiB user
/// space.
pub const ADDRESS_BUDGET: u64 = 16 << 40;
/// The most instances a pool may hold.
pub const MAX_INSTANCES: u64 = 1 << 20;

/// A memory slot without explicit bounds checks: a 32-bit index cannot leave it.
const WIDE_RESERVATION: u64 = 4 << 30;
const WIDE_GUARD: u64 = 32 << 20;
const NARROW_GUARD: u64 = 2 << 20;

/// The pool's size, computed from the pipeline (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolPlan {
    /// Component instances the pool holds at once: each with its memories, tables and stack.
    pub instances: u32,
    /// Instances the pipeline needs at most: max_streams × enabled plugins + one trial run of
    /// each plugin.
    pub needed: u64,
    /// The largest linear memory any instance may grow to, in bytes (the per-plugin limit is
    /// `[plugin.limits] memory_mb`, enforced below it).
    pub max_memory_bytes: u64,
    /// Address space reserved per memory slot, in bytes.
    pub memory_reservation: u64,
    /// The inaccessible guard after each memory slot, in bytes.
    pub memory_guard: u64,
}

/// What a pipeline needs of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolNeed {
    /// `rtms.max_streams`.
    pub streams: u64,
    /// Enabled plugins.
    pub plugins: u64,
    /// The largest `[plugin.limits] memory_mb`, in bytes.
    pub largest_memory: u64,
}

impl PoolNeed {
    /// What `max_streams` streams of the enabled ones of `plugins` need.
    pub fn of(max_streams: usize, plugins: &[crate::Plugin]) -> Self {
        let enabled = plugins.iter().filter(|p| p.enabled);
        Self {
            streams: max_streams as u64,
            plugins: enabled.clone().count() as u64,
            largest_memory: enabled
                .map(|p| p.limits.memory_bytes() as u64)
                .max()
                .unwrap_or(0),
        }
    }

    /// Instances the pipeline needs at most.
    pub fn instances(&self) -> u64 {
        self.streams
            .saturating_mul(self.plugins)
            .saturating_add(self.plugins)
    }
}

fn gib(b: u64) -> String {
    if b >= 1 << 40 {
        format!("{:.1} TiB", b as f64 / (1u64 << 40) as f64)
    } else {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    }
}

impl PoolPlan {
    /// The pool for `need`: `instances` slots when given (the operator's
    /// `runtime.pool_instances`, at least what the pipeline needs), else the need and a
    /// room for one more plugin on every stream. An error says why it cannot be sized and
    /// what to change.
    pub fn size(need: PoolNeed, instances: Option<u64>) -> Result<Self, String> {
        let needed = need.instances();
        let slots = match instances {
            Some(n) if n < needed => {
                return Err(format!(
                    "runtime.pool_instances = {n} is fewer than the {needed} instances this pipeline needs (rtms.max_streams = {} × {} enabled plugin(s), plus one trial run of each): raise it to at least {needed}, lower rtms.max_streams, or remove it to size the pool automatically",
                    need.streams, need.plugins
                ));
            }
            Some(n) => n,
            None => needed.saturating_add(need.streams.saturating_add(1)).max(8),
        };
        if slots > MAX_INSTANCES {
            return Err(format!(
                "the instance pool cannot be sized: {slots} instances (rtms.max_streams = {} × {} enabled plugin(s), and headroom) is past the most the host pools, {MAX_INSTANCES}: lower rtms.max_streams, or set [runtime] pool = \"off\"",
                need.streams, need.plugins
            ));
        }
        let memories = slots * u64::from(MEMORIES_PER_INSTANCE);
        let (max_memory_bytes, memory_reservation, memory_guard) =
            if memories.saturating_mul(WIDE_RESERVATION + WIDE_GUARD) <= ADDRESS_BUDGET {
                (WIDE_RESERVATION, WIDE_RESERVATION, WIDE_GUARD)
            } else {
                let r = need.largest_memory.max(1 << 20).next_power_of_two();
                (r, r, NARROW_GUARD)
            };
        let plan = Self {
            instances: slots as u32,
            needed,
            max_memory_bytes,
            memory_reservation,
            memory_guard,
        };
        if plan.address_space() > ADDRESS_BUDGET {
            return Err(format!(
                "the instance pool cannot be sized: {slots} instances (rtms.max_streams = {} × {} enabled plugin(s), and headroom), each a memory slot of {} (the largest [plugin.limits] memory_mb, rounded up to a power of two, and its guard), need {} of address space, past the {} the host reserves at most: lower rtms.max_streams or the largest memory_mb, or set [runtime] pool = \"off\"",
                need.streams,
                need.plugins,
                gib(memory_reservation + memory_guard),
                gib(plan.address_space()),
                gib(ADDRESS_BUDGET)
            ));
        }
        Ok(plan)
    }

    /// Memory slots: [`MEMORIES_PER_INSTANCE`] per instance.
    pub fn memories(&self) -> u32 {
        self.instances.saturating_mul(MEMORIES_PER_INSTANCE)
    }

    /// Tables: [`TABLES_PER_INSTANCE`] per instance.
    pub fn tables(&self) -> u32 {
        self.instances.saturating_mul(TABLES_PER_INSTANCE)
    }

    /// Whether memory accesses are bounds-checked explicitly (slots smaller than 4 GiB).
    pub fn bounds_checked(&self) -> bool {
        self.memory_reservation < WIDE_RESERVATION
    }

    /// Address space the memory pool reserves, in bytes.
    pub fn address_space(&self) -> u64 {
        u64::from(self.memories()).saturating_mul(self.memory_reservation + self.memory_guard)
    }

    /// Whether a pipeline needing `need` can replace the running one in this pool, with
    /// `live` streams running now. The pool cannot be resized while the process runs:
    /// a memory limit past the slots, or more instances than the pool holds for the streams
    /// running now, is refused with the reason. `Ok(Some(warning))` when it fits now but not
    /// at `rtms.max_streams`: past the streams it can hold, instances are refused until a
    /// restart sizes the pool again.
    pub fn admits(&self, need: PoolNeed, live: u64) -> Result<Option<String>, String> {
        if need.largest_memory > self.max_memory_bytes {
            return Err(format!(
                "a plugin's [plugin.limits] memory_mb = {} is past the {} MiB each slot of the running instance pool holds; the pool is sized when the host starts: restart the host to apply it",
                need.largest_memory >> 20,
                self.max_memory_bytes >> 20
            ));
        }
        let now = PoolNeed {
            streams: live,
            ..need
        };
        if now.instances() > u64::from(self.instances) {
            return Err(format!(
                "the new pipeline needs {} plugin instances for the {live} streams running now ({} enabled plugin(s) each, plus one trial run of each), more than the {} the running instance pool holds; the pool is sized when the host starts: restart the host to apply it",
                now.instances(),
                need.plugins,
                self.instances
            ));
        }
        if need.instances() <= u64::from(self.instances) {
            return Ok(None);
        }
        let streams = (u64::from(self.instances) - need.plugins) / need.plugins.max(1);
        Ok(Some(format!(
            "the running instance pool holds {} plugin instances: enough for {streams} streams of the new pipeline's {} enabled plugin(s), not rtms.max_streams = {}; past that, plugin instances are refused (counted in rtms_plugin_pool_exhausted_total) until a restart sizes the pool for the new pipeline",
            self.instances, need.plugins, need.streams
        )))
    }
}

impl fmt::Display for PoolPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} instances ({} needed), memories up to {} MiB in {} slots of {} + {} MiB guard ({}, {})",
            self.instances,
            self.needed,
            self.max_memory_bytes >> 20,
            self.memories(),
            gib(self.memory_reservation),
            self.memory_guard >> 20,
            gib(self.address_space()),
            if self.bounds_checked() {
                "bounds-checked"
            } else {
                "guard pages"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(streams: u64, plugins: u64, mb: u64) -> PoolNeed {
        PoolNeed {
            streams,
            plugins,
            largest_memory: mb << 20,
        }
    }

    #[test]
    fn a_small_pipeline_gets_4_gib_slots_and_a_large_one_bounds_checked_slots() {
        let p = PoolPlan::size(need(100, 4, 64), None).unwrap();
        assert_eq!((p.needed, p.instances), (404, 505));
        assert!(!p.bounds_checked(), "{p}");
        assert_eq!(p.max_memory_bytes, 4 << 30);
        // 3,000 meetings with four plugins.
        let p = PoolPlan::size(need(3000, 4, 64), None).unwrap();
        assert_eq!((p.needed, p.instances), (12_004, 15_005));
        assert!(p.bounds_checked(), "{p}");
        assert_eq!(p.max_memory_bytes, 64 << 20);
        assert!(p.address_space() < 2 << 40, "{p}");
        let p = PoolPlan::size(need(10, 1, 100), Some(5000)).unwrap();
        assert_eq!(p.instances, 5000);
        assert_eq!(p.max_memory_bytes, 128 << 20, "rounded up: {p}");
    }

    #[test]
    fn a_pool_that_cannot_be_sized_says_why() {
        let e = PoolPlan::size(need(100_000, 8, 4096), None).unwrap_err();
        assert!(
            e.contains("address space") && e.contains("rtms.max_streams"),
            "{e}"
        );
        let e = PoolPlan::size(need(1_000_000, 8, 64), None).unwrap_err();
        assert!(e.contains("pool = \"off\""), "{e}");
        let e = PoolPlan::size(need(100, 4, 64), Some(300)).unwrap_err();
        assert!(
            e.contains("pool_instances = 300") && e.contains("404"),
            "{e}"
        );
    }

    #[test]
    fn a_reload_that_needs_more_than_the_pool_is_refused() {
        let p = PoolPlan::size(need(3000, 4, 64), None).unwrap();
        assert_eq!(p.admits(need(3000, 5, 64), 3000), Ok(None));
        // A sixth plugin: fits the 1,000 streams running now, not 3,000.
        let w = p.admits(need(3000, 6, 64), 1000).unwrap().unwrap();
        assert!(w.contains("enough for 2499 streams"), "{w}");
        let e = p.admits(need(3000, 6, 64), 2600).unwrap_err();
        assert!(
            e.contains("2600 streams running now") && e.contains("restart the host"),
            "{e}"
        );
        let e = p.admits(need(3000, 4, 65), 0).unwrap_err();
        assert!(e.contains("memory_mb = 65"), "{e}");
    }
}
