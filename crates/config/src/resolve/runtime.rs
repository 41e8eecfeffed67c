//! `[runtime]`: the compile cache, dead letters and their caps, the epoch tick, shutdown and
//! reload settings.

use super::*;

/// The most core threads `[runtime] threads` may ask for.
pub const MAX_THREADS: u64 = 1024;

impl Resolver<'_> {
    pub(super) fn runtime(&self, r: &RuntimeConfig) -> Result<Runtime, ConfigError> {
        let cache_dir = self.path(
            r.cache_dir
                .as_ref()
                .map_or(default_cache_dir(), |c| c.get_ref()),
        );
        let dead_letter_dir = self.path(
            r.dead_letter_dir
                .as_ref()
                .map_or(default_dead_letter_dir(), |c| c.get_ref()),
        );
        let tick = self.num(
            &r.epoch_tick_ms,
            "runtime.epoch_tick_ms",
            default_epoch_tick_ms(),
            1,
            1000,
        )?;
        let grace = self.num(
            &r.shutdown_grace_ms,
            "runtime.shutdown_grace_ms",
            default_shutdown_grace_ms(),
            0,
            600_000,
        )?;
        let debounce = self.num(
            &r.reload.debounce_ms,
            "runtime.reload.debounce_ms",
            default_debounce_ms(),
            0,
            60_000,
        )?;
        let journal_grace = self.num(
            &r.journal_grace_ms,
            "runtime.journal_grace_ms",
            default_journal_grace_ms(),
            1_000,
            120_000,
        )?;
        let (threads, pin_threads) = self.core_threads(r)?;
        let (dead_letter_max_bytes, dead_letter_files) = self.dead_letter_caps(r)?;
        let (output_queue_bytes, tap_bytes) = self.output_caps(r)?;
        let plugin_open_files = match &r.plugin_open_files {
            None => None,
            Some(_) => Some(
                self.num(
                    &r.plugin_open_files,
                    "runtime.plugin_open_files",
                    0,
                    16,
                    1 << 24,
                )?
                .n,
            ),
        };
        Ok(Runtime {
            cache_dir,
            epoch_tick: ms(tick.n),
            dead_letter_dir,
            dead_letter_max_bytes,
            dead_letter_files,
            output_queue_bytes,
            tap_bytes,
            plugin_open_files,
            pool: None,
            pool_instances: r.pool_instances.as_ref().map(|n| *n.get_ref()),
            shutdown_grace: ms(grace.n),
            journal_dir: r.journal_dir.as_ref().map(|d| self.path(d.get_ref())),
            journal_grace: ms(journal_grace.n),
            close_streams_on_shutdown: r.close_streams_on_shutdown.unwrap_or(false),
            threads,
            pin_threads,
            reload: Reload {
                watch: r.reload.watch.unwrap_or(default_reload_watch()),
                debounce: ms(debounce.n),
            },
        })
    }

    /// `[runtime] dead_letter_max_mb` (in bytes) and `dead_letter_files`.
    pub(super) fn dead_letter_caps(&self, r: &RuntimeConfig) -> Result<(u64, u32), ConfigError> {
        let max = self.num(
            &r.dead_letter_max_mb,
            "runtime.dead_letter_max_mb",
            default_dead_letter_max_mb(),
            1,
            1 << 20,
        )?;
        let files = self.num(
            &r.dead_letter_files,
            "runtime.dead_letter_files",
            default_dead_letter_files(),
            0,
            1000,
        )?;
        Ok((max.n << 20, to_u32(files.n)))
    }
}

impl Resolver<'_> {
    /// `[runtime] threads` (`None`: one per CPU, counted at start) and `pin_threads`.
    fn core_threads(&self, r: &RuntimeConfig) -> Result<(Option<u32>, bool), ConfigError> {
        let threads = match &r.threads {
            None => None,
            Some(_) => Some(to_u32(
                self.num(&r.threads, "runtime.threads", 0, 0, MAX_THREADS)?
                    .n,
            )),
        };
        Ok((threads, r.pin_threads.unwrap_or(false)))
    }

    /// `[runtime] output_queue_mb` and `tap_mb`, in bytes.
    fn output_caps(&self, r: &RuntimeConfig) -> Result<(u64, u64), ConfigError> {
        let queue = self.num(
            &r.output_queue_mb,
            "runtime.output_queue_mb",
            default_output_queue_mb(),
            1,
            16_384,
        )?;
        let tap = self.num(&r.tap_mb, "runtime.tap_mb", default_tap_mb(), 1, 4096)?;
        Ok((queue.n << 20, tap.n << 20))
    }
}

impl Resolver<'_> {
    /// `[runtime] pool` ("auto", the default, or "off") and `pool_instances`: the pool sized
    /// for `max_streams` streams of the enabled `plugins` (`crate::pool`).
    pub(super) fn pool(
        &self,
        r: &RuntimeConfig,
        max_streams: usize,
        plugins: &[Plugin],
    ) -> Result<Option<PoolPlan>, ConfigError> {
        match r.pool.as_ref().map(|p| (p, p.get_ref().as_str())) {
            None | Some((_, "auto")) => {}
            Some((_, "off")) => return Ok(None),
            Some((p, other)) => {
                return Err(self.src.invalid_at(
                    p,
                    format!("runtime.pool = {other:?} is not a pool setting: use \"auto\" (sized from the pipeline) or \"off\" (each instance maps its own memory)"),
                ));
            }
        }
        let instances = match &r.pool_instances {
            None => None,
            Some(_) => Some(
                self.num(
                    &r.pool_instances,
                    "runtime.pool_instances",
                    0,
                    1,
                    crate::pool::MAX_INSTANCES,
                )?
                .n,
            ),
        };
        let need = PoolNeed::of(max_streams, plugins);
        PoolPlan::size(need, instances).map(Some).map_err(|m| {
            let span = r
                .pool_instances
                .as_ref()
                .map(|s| s.span())
                .or(r.pool.as_ref().map(|s| s.span()))
                .unwrap_or(0..0);
            self.src.invalid(span, m)
        })
    }
}
