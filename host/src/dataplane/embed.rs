//! The data plane's side of the sandbox's [`Embedder`]: one [`PluginLink`] per (plugin,
//! session) sends what the guest emits to the outputs and counts what its budgets cut, in the
//! plugin's counters (all sessions) and the session's losses (summarised at its end).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dataplane::stats::{Losses, PluginStats};
use crate::outputs::{OutputRecord, Outputs};
use crate::sandbox::bindings::Output;
use crate::sandbox::net::NetEvent;
use crate::sandbox::store::{Dropped, Embedder, InstanceCtx, Refused};

/// Where one (plugin, session)'s outputs and losses go.
pub struct PluginLink {
    pub outputs: Outputs,
    /// The plugin's counters (all sessions).
    pub stats: Arc<PluginStats>,
    /// What the plugin lost on this session.
    pub losses: Losses,
    /// State writes and charges refused on this session (the guest saw the error; nothing
    /// the host accepted was lost).
    pub refused: (AtomicU64, AtomicU64),
    /// Where the plugin's individual-video requests go, once the host has a client.
    pub video: Option<crate::dataplane::services::VideoControl>,
}

impl PluginLink {
    pub fn new(outputs: Outputs, stats: Arc<PluginStats>) -> Arc<Self> {
        Arc::new(Self {
            outputs,
            stats,
            losses: Losses::default(),
            refused: Default::default(),
            video: None,
        })
    }
}

impl PluginLink {
    /// With the host's individual-video control, when it has one.
    pub fn with_video(
        outputs: Outputs,
        stats: Arc<PluginStats>,
        video: Option<crate::dataplane::services::VideoControl>,
    ) -> Arc<Self> {
        let mut link = Arc::into_inner(Self::new(outputs, stats)).expect("a new link");
        link.video = video;
        Arc::new(link)
    }
}

impl Embedder for PluginLink {
    fn video(
        &self,
        ctx: &InstanceCtx,
        user_id: i64,
        action: crate::sandbox::store::VideoAction,
    ) -> Result<(), String> {
        match &self.video {
            Some(control) => control(&ctx.stream_id, user_id, action),
            None => Err("this host takes no video requests (it runs no Zoom client)".into()),
        }
    }

    fn emit(&self, ctx: &InstanceCtx, out: Output) {
        self.outputs.send(OutputRecord::new(
            ctx.plugin.clone(),
            ctx.session,
            ctx.stream_id.clone(),
            ctx.meeting_id.clone(),
            out,
        ));
    }

    fn dropped(&self, what: Dropped) -> u64 {
        let (plugin, session) = match what {
            Dropped::Log => (&self.stats.log_dropped, &self.losses.log_dropped),
            Dropped::Emit => (&self.stats.emit_dropped, &self.losses.emit_dropped),
            Dropped::State => (&self.stats.state_refused, &self.refused.0),
            Dropped::Units => (&self.stats.units_refused, &self.refused.1),
        };
        plugin.fetch_add(1, Ordering::Relaxed);
        session.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn charged(&self, what: &str, units: u64) {
        self.stats.units.add(what, units);
    }

    fn refused(&self, what: Refused) -> u64 {
        let counter = match what {
            Refused::OpenFiles => &self.stats.open_files_refused,
            Refused::Inodes => &self.stats.inodes_refused,
            Refused::Symlink => &self.stats.symlinks_refused,
            Refused::Resources => &self.stats.resources_exhausted,
            Refused::Descriptors => &self.stats.descriptors_refused,
            Refused::Parked => &self.stats.parked_refused,
        };
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn net(&self, event: NetEvent) {
        self.stats.http.record(event);
    }
}
