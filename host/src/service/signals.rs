//! Process signals: SIGINT and SIGTERM end the host, SIGHUP asks for a reload, SIGUSR2 asks
//! for a hand-off to a successor process ([`super::handoff`]).
//!
//! Install the handlers before announcing readiness: a signal that arrives before its
//! handler exists takes the default action (SIGHUP and SIGUSR2 would kill the process).

use tokio::signal::unix::{Signal, SignalKind, signal};

pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr2: Signal,
}

/// Why [`Signals::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGINT or SIGTERM: end the streams and stop.
    Shutdown,
    /// SIGUSR2: start a successor and hand the streams to it.
    HandOff,
}

impl Signals {
    /// Installs the handlers now.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Waits for SIGINT, SIGTERM or SIGUSR2, calling `on_hup` for every SIGHUP meanwhile.
    pub async fn wait(&mut self, on_hup: impl Fn()) -> Exit {
        loop {
            tokio::select! {
                _ = self.term.recv() => { tracing::info!("SIGTERM"); return Exit::Shutdown; }
                _ = self.int.recv() => { tracing::info!("SIGINT"); return Exit::Shutdown; }
                _ = self.usr2.recv() => { tracing::info!("SIGUSR2: handing off to a successor"); return Exit::HandOff; }
                _ = self.hup.recv() => { tracing::info!("SIGHUP: reloading"); on_hup(); }
            }
        }
    }
}
