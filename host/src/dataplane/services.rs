//! What every plugin worker needs from the host, whichever session it serves: the wasm
//! runtime, the output sinks, the dead-letter file, the metrics and the channel to the
//! reload controller.
//!
//! `crate::dataplane::registry::Registry` (the routing table and the live sessions) builds on this; workers
//! see only this part, so the worker module does not depend on the session module.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::dataplane::stats::Metrics;
use crate::outputs::Outputs;
use crate::outputs::deadletter::DeadLetters;
use crate::sandbox::Runtime;

/// The host's services, shared by every session and worker.
pub struct Services {
    pub rt: Runtime,
    pub outputs: Outputs,
    pub dead_letters: DeadLetters,
    pub metrics: Arc<Metrics>,
    pub rollback_tx: Option<mpsc::UnboundedSender<RollbackRequest>>,
    /// Set while the host hands its streams to a successor process: a stream ending for
    /// shutdown then ends for its plugins as `reload` (a new instance takes over), and their
    /// session state is kept for the journal.
    pub handing_off: std::sync::atomic::AtomicBool,
    /// Where a plugin's individual-video requests go (contract 0.3 `video.request`): set once
    /// the streams' client exists; until then a request is refused.
    pub video: std::sync::OnceLock<VideoControl>,
    /// The core threads the streams run on, and the runtime slow plugins move to: set once
    /// the service starts them; without them (a data plane driven directly) every worker
    /// stays on the runtime it was spawned on.
    pub cores: std::sync::OnceLock<Arc<crate::dataplane::cores::Cores>>,
}

/// Takes a plugin's individual-video request for a stream: `(stream id, user id, action)`;
/// `Err` says why it cannot be done.
pub type VideoControl =
    Arc<dyn Fn(&str, i64, crate::sandbox::store::VideoAction) -> Result<(), String> + Send + Sync>;

/// Sent to the reload controller when a freshly swapped version keeps trapping.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    pub plugin: Arc<str>,
    /// The hash of the version that failed.
    pub bad_hash: String,
    pub error: String,
}
