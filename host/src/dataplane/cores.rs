//! Thread per core: the threads that run the streams.
//!
//! `[runtime] threads` core threads each run a tokio current-thread runtime of their own (its
//! own I/O driver and timers). A new stream's task — its sockets, its timers, the plugin calls
//! it makes inline — is placed on the core with the fewest live streams, and the workers of
//! its plugins are spawned from that task, so on that core too: a frame is read, routed and
//! handed to its plugins without waking a thread on another CPU. With `[runtime] pin_threads`
//! core `i` runs only on the `i`-th CPU of the process's affinity mask.
//!
//! A plugin whose calls are slow would hold up every stream of its core; its worker then
//! moves to the shared offload runtime (a multi-thread runtime of as many threads as cores)
//! until its calls are quick again (see `crate::dataplane::worker`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use rtms_client::sessions::{Placed, Placement};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// How long stopping waits for the blocking calls the cores' runtimes still run.
const BLOCKING_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The core threads and the offload runtime.
pub struct Cores {
    cores: Vec<Arc<Core>>,
    offload: Handle,
    /// The offload runtime, taken by [`Cores::stop`] (or dropped in the background).
    offload_rt: parking_lot::Mutex<Option<tokio::runtime::Runtime>>,
    threads: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
    stop: CancellationToken,
}

/// One core thread's runtime and its counts.
struct Core {
    runtime: Handle,
    /// Streams running on this core now.
    live: AtomicUsize,
    /// Streams placed on this core since the start.
    placed: AtomicU64,
}

/// What the metrics show of one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreCounts {
    pub live: usize,
    pub placed: u64,
}

impl Cores {
    /// Starts `threads` core threads (at least one; the service starts none unless
    /// `[runtime] threads` asks) and the offload runtime.
    /// With `pin`, core `i` is pinned to the `i`-th CPU of the process's affinity mask
    /// (cycling when there are more threads than CPUs).
    pub fn start(threads: u32, pin: bool) -> Result<Arc<Self>> {
        let n = threads.max(1) as usize;
        let cpus = if pin {
            core_affinity::get_core_ids().filter(|c| !c.is_empty())
        } else {
            None
        };
        if pin && cpus.is_none() {
            tracing::warn!(
                "[runtime] pin_threads: this system does not tell the CPUs this process may run on; core threads are not pinned"
            );
        }
        let stop = CancellationToken::new();
        // The core threads log where the thread that starts them does (a process's global
        // subscriber, or a test's or an embedder's own).
        let logs = tracing::dispatcher::get_default(Clone::clone);
        let mut cores = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let cpu = cpus.as_ref().map(|c| c[i % c.len()]);
            let (runtime, thread) = core_thread(i, cpu, logs.clone(), stop.clone())?;
            cores.push(Arc::new(Core {
                runtime,
                live: AtomicUsize::new(0),
                placed: AtomicU64::new(0),
            }));
            handles.push(thread);
        }
        let offload_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .thread_name("rtms-offload")
            .enable_all()
            .build()
            .context("cannot start the offload runtime")?;
        tracing::info!(threads = n, pinned = cpus.is_some(), "core threads started");
        Ok(Arc::new(Self {
            cores,
            offload: offload_rt.handle().clone(),
            offload_rt: parking_lot::Mutex::new(Some(offload_rt)),
            threads: parking_lot::Mutex::new(handles),
            stop,
        }))
    }

    /// How many core threads run.
    pub fn len(&self) -> usize {
        self.cores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cores.is_empty()
    }

    /// The runtime slow plugins' workers move to.
    pub fn offload(&self) -> &Handle {
        &self.offload
    }

    /// Each core's live and placed streams, in core order.
    pub fn counts(&self) -> Vec<CoreCounts> {
        self.cores
            .iter()
            .map(|c| CoreCounts {
                live: c.live.load(Ordering::Relaxed),
                placed: c.placed.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Stops the core threads and the offload runtime, and waits for them. Call it once
    /// every stream has ended: a task still on a core is dropped.
    pub async fn stop(&self) {
        self.stop.cancel();
        let threads = std::mem::take(&mut *self.threads.lock());
        let offload = self.offload_rt.lock().take();
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a core thread panicked");
                }
            }
            if let Some(rt) = offload {
                rt.shutdown_timeout(BLOCKING_WAIT);
            }
        });
        if let Err(e) = joined.await {
            tracing::error!(error = %e, "the core threads could not be joined");
        }
    }
}

impl Drop for Cores {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(rt) = self.offload_rt.get_mut().take() {
            rt.shutdown_background();
        }
    }
}

/// Starts core thread `i`, pinned to `cpu` when given; its runtime's handle.
fn core_thread(
    i: usize,
    cpu: Option<core_affinity::CoreId>,
    logs: tracing::Dispatch,
    stop: CancellationToken,
) -> Result<(Handle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let name = format!("rtms-core-{i}");
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let _logs = tracing::dispatcher::set_default(&logs);
            if let Some(cpu) = cpu
                && !core_affinity::set_for_current(cpu)
            {
                tracing::warn!(
                    core = i,
                    cpu = cpu.id,
                    "cannot pin a core thread to its CPU: it runs unpinned"
                );
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("{name}-blocking"))
                .build();
            let rt = match rt {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(rt.handle().clone()));
            rt.block_on(stop.cancelled());
            // Every stream has ended by now; a blocking call that never returns (a FIFO
            // nobody opens) must not hold the process.
            rt.shutdown_timeout(BLOCKING_WAIT);
        })
        .with_context(|| format!("cannot start core thread {i}"))?;
    let runtime = rx
        .recv()
        .context("a core thread ended before its runtime started")?
        .with_context(|| format!("cannot start the runtime of core thread {i}"))?;
    Ok((runtime, thread))
}

/// Held by a stream's task while it runs: its core's live count.
struct Lease(Arc<Core>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Placement for Cores {
    /// The core with the fewest live streams (the first of them on a tie).
    fn place(&self) -> Placed {
        let core = self
            .cores
            .iter()
            .min_by_key(|c| c.live.load(Ordering::Relaxed))
            .unwrap_or_else(|| unreachable!("Cores::start starts at least one thread"))
            .clone();
        core.live.fetch_add(1, Ordering::Relaxed);
        core.placed.fetch_add(1, Ordering::Relaxed);
        Placed {
            runtime: core.runtime.clone(),
            lease: Box::new(Lease(core)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_go_to_the_core_with_the_fewest_and_leave_it_when_they_end() {
        let cores = Cores::start(2, false).unwrap();
        let a = cores.place();
        let b = cores.place();
        let c = cores.place();
        let live = |cores: &Cores| cores.counts().iter().map(|c| c.live).collect::<Vec<_>>();
        assert_eq!(live(&cores), [2, 1]);
        drop(a);
        assert_eq!(live(&cores), [1, 1]);
        let name = b
            .runtime
            .spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("rtms-core-1"));
        drop((b, c));
        assert_eq!(live(&cores), [0, 0]);
        assert_eq!(cores.counts()[0].placed, 2);
        cores.stop().await;
    }

    #[tokio::test]
    async fn the_core_threads_are_as_many_as_asked_and_at_least_one() {
        for (asked, got) in [(3, 3), (0, 1)] {
            let cores = Cores::start(asked, false).unwrap();
            assert_eq!(cores.counts().len(), got, "threads = {asked}");
            cores.stop().await;
        }
    }
}
