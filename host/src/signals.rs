//! Process signals: SIGINT and SIGTERM end the host, SIGHUP asks for a reload.

/// Waits for SIGINT or SIGTERM, calling `on_hup` for every SIGHUP meanwhile.
pub async fn wait_for_shutdown(on_hup: impl Fn()) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); return Ok(()); }
            _ = int.recv() => { tracing::info!("SIGINT"); return Ok(()); }
            _ = hup.recv() => { tracing::info!("SIGHUP: reloading"); on_hup(); }
        }
    }
}
