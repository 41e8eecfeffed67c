//! Process signals: SIGINT and SIGTERM end the host, SIGHUP asks for a reload.
//!
//! Install the handlers before announcing readiness: a signal that arrives before its
//! handler exists takes the default action (SIGHUP would kill the process).

use tokio::signal::unix::{Signal, SignalKind, signal};

pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers now.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGINT or SIGTERM, calling `on_hup` for every SIGHUP meanwhile.
    pub async fn wait_for_shutdown(mut self, on_hup: impl Fn()) {
        loop {
            tokio::select! {
                _ = self.term.recv() => { tracing::info!("SIGTERM"); return; }
                _ = self.int.recv() => { tracing::info!("SIGINT"); return; }
                _ = self.hup.recv() => { tracing::info!("SIGHUP: reloading"); on_hup(); }
            }
        }
    }
}
