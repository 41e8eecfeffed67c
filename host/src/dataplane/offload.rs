//! Where a (plugin, session) worker runs: on its stream's core thread, or, while its calls
//! are slow, on the offload runtime (see `crate::dataplane::cores`).
//!
//! A worker starts on the runtime its stream's task spawned it on: the stream's core.
//! [`OFFLOAD_STREAK`] calls in a row that each hold the thread [`OFFLOAD_CALL`] or longer (the
//! time spent polling the call, see [`busy_time`]: not the time it waited for I/O or for its
//! turn on a busy core) move it to the offload runtime; a call that has held it
//! [`OFFLOAD_NOW`] moves at once, and the rest of that call is polled there ([`Mover`]). From
//! then on its frames go through its queue (never inline on the stream's task) and its task
//! runs there, so a slow plugin no longer holds up the other streams of its core. Once its
//! calls have stayed under [`OFFLOAD_CALL`] for [`OFFLOAD_QUIET`], it moves back. Each move
//! is counted (`rtms_plugin_offloaded_total`, `rtms_plugin_returned_total`); the first of a
//! plugin is logged.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use tracing::instrument::WithSubscriber;

use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::dataplane::stats::PluginStats;

/// A plugin call this long or longer moves the worker off its core. Every stream of a core
/// waits while the core runs a call: a 5 ms call alone puts every one of them past the
/// 5 ms read-to-plugin p99 the host aims for. The host's plugins take 2-40 µs per frame at
/// real-time pace, so only a plugin that is slow for real gets here.
pub const OFFLOAD_CALL: Duration = Duration::from_millis(5);

/// A call that has held its thread this long moves at once, mid-call: a plugin stuck in a
/// loop until its deadline holds its core for no more than this.
pub const OFFLOAD_NOW: Duration = Duration::from_millis(20);

/// Slow calls in a row that move a worker. One is not enough: an instance's first calls
/// are often slow once (fresh memory pages, cold caches), and a loaded machine can stretch a
/// single poll; a slow plugin is slow at every call.
pub const OFFLOAD_STREAK: u32 = 3;

/// An offloaded worker goes back to its core once its calls have stayed under
/// [`OFFLOAD_CALL`] this long: long enough that a plugin slow now and then does not move at
/// every other batch.
pub const OFFLOAD_QUIET: Duration = Duration::from_secs(10);

/// Runs `fut`, measuring the time spent in its polls: how long it held the thread that ran
/// it. A call that waits (on I/O, or behind other tasks of a busy core) costs its thread
/// nothing meanwhile, so the wall clock would move quick plugins off a busy core.
/// `so_far` sees the running total after each poll.
pub async fn busy_time<F: Future>(
    fut: F,
    mut so_far: impl FnMut(Duration),
) -> (F::Output, Duration) {
    let mut fut = std::pin::pin!(fut);
    let mut spent = Duration::ZERO;
    let out = std::future::poll_fn(|cx| {
        let t = std::time::Instant::now();
        let r = fut.as_mut().poll(cx);
        spent += t.elapsed();
        if r.is_pending() {
            so_far(spent);
        }
        r
    })
    .await;
    (out, spent)
}

/// Which runtime a worker should run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The runtime its stream spawned it on (the stream's core).
    Home,
    /// The shared offload runtime.
    Offload,
}

/// A worker's runtimes and the rule that moves it between them.
pub struct Placement {
    home: Handle,
    /// None when the host runs no cores (a data plane driven directly): the worker stays.
    offload: Option<Handle>,
    /// Where the worker runs, as counted.
    place: Place,
    /// Whether it should run on the offload runtime: set as soon as a call in progress has
    /// held its thread [`OFFLOAD_NOW`], read by whoever polls the call ([`Mover`]).
    off: Arc<AtomicBool>,
    last_slow: Option<Instant>,
    /// Slow calls in a row.
    streak: u32,
}

impl Placement {
    /// For a worker spawned now, on the current runtime; `offload` is where slow calls go.
    pub fn here(offload: Option<Handle>) -> Self {
        Self {
            home: Handle::current(),
            offload,
            place: Place::Home,
            off: Arc::new(AtomicBool::new(false)),
            last_slow: None,
            streak: 0,
        }
    }

    /// Where the worker should run now.
    pub fn place(&self) -> Place {
        if self.off.load(Ordering::Relaxed) {
            Place::Offload
        } else {
            Place::Home
        }
    }

    /// The runtime for `place`.
    pub fn runtime(&self, place: Place) -> &Handle {
        match (place, &self.offload) {
            (Place::Offload, Some(h)) => h,
            _ => &self.home,
        }
    }

    /// What moves this worker's call in progress once it should run elsewhere.
    pub fn mover(&self) -> Mover {
        Mover {
            off: self.off.clone(),
            offload: self.offload.clone(),
        }
    }

    /// A call in progress has held its thread `spent` so far: past [`OFFLOAD_NOW`] it goes
    /// on on the offload runtime ([`Mover::run`]).
    pub fn during_call(&self, spent: Duration) {
        if spent >= OFFLOAD_NOW && self.offload.is_some() {
            self.off.store(true, Ordering::Relaxed);
        }
    }

    /// Notes a call that held its thread for `took` (see [`busy_time`]): moves the worker
    /// off its core after [`OFFLOAD_STREAK`] slow calls in a row or one over
    /// [`OFFLOAD_NOW`], back after [`OFFLOAD_QUIET`] of quick ones; counts and logs moves.
    pub fn after_call(&mut self, took: Duration, stats: &Arc<PluginStats>, plugin: &str) {
        let now = Instant::now();
        let to = if took >= OFFLOAD_CALL {
            self.last_slow = Some(now);
            self.streak = self.streak.saturating_add(1);
            let off = self.streak >= OFFLOAD_STREAK || took >= OFFLOAD_NOW;
            if off && self.offload.is_some() {
                Place::Offload
            } else {
                self.place
            }
        } else {
            self.streak = 0;
            let quiet = self
                .last_slow
                .is_none_or(|t| now.saturating_duration_since(t) >= OFFLOAD_QUIET);
            if quiet { Place::Home } else { self.place }
        };
        self.off.store(to == Place::Offload, Ordering::Relaxed);
        if to == self.place {
            return;
        }
        self.place = to;
        if to == Place::Home {
            stats.returned.fetch_add(1, Ordering::Relaxed);
        } else if stats.offloaded.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                plugin,
                call_ms = took.as_secs_f64() * 1e3,
                "plugin calls are slow: its worker moves off its stream's core thread to the offload runtime, so the other streams of that core do not wait for it ({} calls in a row of {} ms or more, or one of {} ms, move a worker; it goes back after {} s of quick calls; every move is counted in rtms_plugin_offloaded_total; logged once per plugin)",
                OFFLOAD_STREAK,
                OFFLOAD_CALL.as_millis(),
                OFFLOAD_NOW.as_millis(),
                OFFLOAD_QUIET.as_secs()
            );
        }
    }
}

/// Polls a worker's future (its task's loop, or a call handed off by the stream's task) on
/// the current runtime until the worker should run on the offload runtime, then hands the
/// rest to it: a call that turns out slow leaves its core mid-way.
#[derive(Clone)]
pub struct Mover {
    off: Arc<AtomicBool>,
    offload: Option<Handle>,
}

impl Mover {
    /// Runs `fut` to its end, here then maybe on the offload runtime; `None` when the
    /// offload runtime was shut down before it ended.
    pub async fn run<F>(&self, fut: F) -> Option<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut fut = Box::pin(fut);
        let Some(offload) = &self.offload else {
            return Some(fut.await);
        };
        let here = std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if self.off.load(Ordering::Relaxed) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        if let Some(out) = here {
            return Some(out);
        }
        match offload.spawn(fut.with_current_subscriber()).await {
            Ok(out) => Some(out),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_moves_the_worker_off_and_quiet_brings_it_back() {
        let other = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let stats = Arc::new(PluginStats::default());
        let mut p = Placement::here(Some(other.handle().clone()));
        p.after_call(Duration::from_micros(300), &stats, "p");
        assert_eq!(p.place(), Place::Home, "a quick call stays");
        for _ in 1..OFFLOAD_STREAK {
            p.after_call(OFFLOAD_CALL, &stats, "p");
        }
        p.after_call(Duration::from_micros(300), &stats, "p");
        p.after_call(OFFLOAD_CALL, &stats, "p");
        assert_eq!(p.place(), Place::Home, "slow calls not in a row stay");
        for _ in 1..OFFLOAD_STREAK {
            p.after_call(OFFLOAD_CALL, &stats, "p");
        }
        assert_eq!(p.place(), Place::Offload);
        p.after_call(OFFLOAD_CALL * 3, &stats, "p");
        assert_eq!(stats.offloaded.load(Ordering::Relaxed), 1, "one move");
        tokio::time::advance(OFFLOAD_QUIET / 2).await;
        p.after_call(Duration::from_micros(300), &stats, "p");
        assert_eq!(p.place(), Place::Offload, "not quiet long enough");
        tokio::time::advance(OFFLOAD_QUIET / 2).await;
        p.after_call(Duration::from_micros(300), &stats, "p");
        assert_eq!(p.place(), Place::Home);
        assert_eq!(stats.returned.load(Ordering::Relaxed), 1);
        drop(p);
        other.shutdown_background();
    }

    #[tokio::test]
    async fn one_long_call_moves_at_once_and_its_rest_runs_on_the_offload_runtime() {
        let other = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("offload-test")
            .enable_all()
            .build()
            .unwrap();
        let stats = Arc::new(PluginStats::default());
        let mut p = Placement::here(Some(other.handle().clone()));
        let mover = p.mover();
        let placement = &p;
        let call = async {
            let (_, spent) = busy_time(
                async {
                    for _ in 0..5 {
                        std::thread::sleep(OFFLOAD_NOW / 4);
                        tokio::task::yield_now().await;
                    }
                },
                |spent| placement.during_call(spent),
            )
            .await;
            spent
        };
        let spent = call.await;
        assert_eq!(p.place(), Place::Offload, "moved while the call ran");
        p.after_call(spent, &stats, "p");
        assert_eq!(stats.offloaded.load(Ordering::Relaxed), 1);
        let thread = mover
            .run(async {
                tokio::task::yield_now().await;
                std::thread::current().name().map(str::to_owned)
            })
            .await
            .unwrap();
        assert_eq!(thread.as_deref(), Some("offload-test"));
        other.shutdown_background();
    }

    #[tokio::test]
    async fn busy_time_counts_the_polls_not_the_waits() {
        let (_, spent) = busy_time(
            async {
                std::thread::sleep(Duration::from_millis(20));
                tokio::time::sleep(Duration::from_millis(200)).await;
            },
            |_| {},
        )
        .await;
        assert!(spent >= Duration::from_millis(20), "{spent:?}");
        assert!(spent < Duration::from_millis(150), "{spent:?}");
    }

    #[tokio::test]
    async fn without_an_offload_runtime_the_worker_stays() {
        let stats = Arc::new(PluginStats::default());
        let mut p = Placement::here(None);
        p.after_call(OFFLOAD_CALL * 10, &stats, "p");
        assert_eq!(p.place(), Place::Home);
        assert_eq!(stats.offloaded.load(Ordering::Relaxed), 0);
    }
}
