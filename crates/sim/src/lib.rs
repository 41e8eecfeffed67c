//! The Zoom simulator: Zoom's side of Real-Time Media Streams, faithful to
//! `rtms-protocol.md`, for the demo, the host's end-to-end tests, benchmarks, and anyone who
//! wants to try a client without a Zoom account.
//!
//! A [`Simulator`] binds a signaling server and a media server on 127.0.0.1 (port 0, `ws://`
//! or `wss://` with a generated CA) and runs any number of meetings at once, each of any
//! product. A meeting plays a [`MeetingScript`] once the client is ready, sends signed
//! webhooks, accepts [`Fault`]s, and keeps a [`Ledger`] of what it sent.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rtms_sim::{MeetingOptions, MeetingScript, SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default()).await?;
//! let script = MeetingScript::builder().synthetic_speech(2, 10, 50).build()?;
//! let meeting = sim.start_meeting(script, MeetingOptions {
//!     webhook_url: Some("http://127.0.0.1:8080/webhook".into()),
//!     ..Default::default()
//! })?;
//! let ledger = meeting.finished().await;
//! println!("{} transcript lines sent", ledger.transcript_lines().len());
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: the simulator's configuration, [`SimConfig`].
//! - [`script`]: meeting files and the builder; [`chat_group`]: their chat-group changes.
//! - [`faults`]: [`Fault`], scheduled faults, and applying them to a stream.
//! - [`ledger`]: what was sent and who was connected, and the ledger's guarantee.
//! - [`media_gen`]: audio synthesis and sample frames.
//! - [`webhook`]: a stream's webhooks, their signed delivery with retries, url validation.
//! - [`record`]: the JSON Lines recording.
//! - `meeting` / `timeline` / `server`: one stream's state, its player, the sockets.
//! - [`cli`]: `rtms-host simulate`.

pub mod api;
pub mod chaos;
pub mod chat_group;
pub mod cli;
pub mod config;
pub mod faults;
pub mod ledger;
pub mod media_gen;
mod meeting;
pub mod record;
pub mod script;
mod server;
mod timeline;
pub mod tls;
pub mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rtms_proto::{Product, WebhookEvent};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use chat_group::{ChatGroupAction, ChatGroupEvent};
pub use config::SimConfig;
pub use faults::{Fault, ScheduledFault, SocketSel, Trigger};
pub use ledger::{
    ChatLine, ConnectionChange, ConnectionEvent, Counters, KindStats, Ledger, SocketKind,
    TranscriptLine, VideoSubscription, WebhookDelivery,
};
pub use meeting::{MeetingOptions, Pace};
pub use script::{EventKind, MeetingBuilder, MeetingScript, ScriptError};

/// The media kinds, defined once in `rtms-proto` (`Share` is `deskshare` on the wire; the
/// simulator sends every kind but `Event` on media sockets).
pub use rtms_proto::MediaKind;

/// Distinct audio frames per speaker when [`SimConfig::preencoded_audio`] is on.
pub const PREENCODED_RING: usize = 64;

/// What every server task and meeting shares.
pub(crate) struct SimShared {
    pub config: SimConfig,
    pub tls: Option<tls::SimTls>,
    signaling_addr: SocketAddr,
    media_addr: SocketAddr,
    registry: Mutex<HashMap<String, Arc<meeting::Meeting>>>,
}

impl SimShared {
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "wss" } else { "ws" }
    }

    pub(crate) fn signaling_base(&self) -> String {
        format!(
            "{}://{}:{}/signaling",
            self.scheme(),
            self.config.advertise_host,
            self.signaling_addr.port()
        )
    }

    pub(crate) fn signaling_url_for(&self, stream_id: &str, generation: u32) -> String {
        format!("{}/{stream_id}/{generation}", self.signaling_base())
    }

    pub(crate) fn media_url(&self, stream_id: &str, key: &str) -> String {
        format!(
            "{}://{}:{}/media/{stream_id}/{key}",
            self.scheme(),
            self.config.advertise_host,
            self.media_addr.port()
        )
    }

    pub(crate) fn meeting(&self, stream_id: &str) -> Option<Arc<meeting::Meeting>> {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream_id)
            .cloned()
    }

    pub(crate) fn remove_meeting(&self, stream_id: &str) {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(stream_id);
    }
}

/// A running simulator: two WebSocket servers on 127.0.0.1 and the meetings they serve.
/// Dropping it stops the servers and every meeting.
pub struct Simulator {
    shared: Arc<SimShared>,
    pub(crate) cancel: CancellationToken,
}

impl Simulator {
    /// Binds the signaling and media servers on 127.0.0.1 port 0 (generating the TLS
    /// certificate first when `config.tls`).
    pub async fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        let tls = match (&config.tls, &config.ca_dir) {
            (false, _) => None,
            (true, None) => Some(tls::SimTls::generate().context("cannot set up TLS for wss://")?),
            (true, Some(dir)) => {
                Some(tls::SimTls::from_ca_dir(dir).context("cannot set up TLS for wss://")?)
            }
        };
        let sig = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the signaling server on 127.0.0.1")?;
        let media = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the media server on 127.0.0.1")?;
        let shared = Arc::new(SimShared {
            signaling_addr: sig.local_addr()?,
            media_addr: media.local_addr()?,
            config,
            tls,
            registry: Mutex::new(HashMap::new()),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(server::serve(
            sig,
            server::Role::Signaling,
            shared.clone(),
            cancel.clone(),
        ));
        tokio::spawn(server::serve(
            media,
            server::Role::Media,
            shared.clone(),
            cancel.clone(),
        ));
        Ok(Simulator { shared, cancel })
    }

    /// The signaling server's base URL (`ws[s]://host:port/signaling`). A client may
    /// connect here with any live stream's handshake; meetings hand out per-stream URLs
    /// below it (see [`MeetingHandle::signaling_url`]).
    pub fn signaling_url(&self) -> String {
        self.shared.signaling_base()
    }

    /// The CA certificate (PEM) a client must trust for `wss://`; `None` without TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.shared.tls.as_ref().map(|t| t.ca_pem.clone())
    }

    /// The configuration in force.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// Meetings not finished yet.
    pub fn live_meetings(&self) -> usize {
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Handles of the meetings not finished yet.
    pub fn meetings(&self) -> Vec<MeetingHandle> {
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|m| MeetingHandle { m: m.clone() })
            .collect()
    }

    /// Ends every live meeting with `reason` (msg 9 STOPPED, msg 8 state 4, the stopped
    /// webhook) and waits at most `limit` for them to finish. Their recordings are then
    /// flushed and closed whether they finished or not, so no file ends in a partial line.
    /// `rtms-host simulate` calls it on SIGINT / SIGTERM with STOP_REASON 17 EXIT_SIGNAL.
    pub async fn shutdown(&self, reason: u32, limit: std::time::Duration) {
        let live = self.meetings();
        for h in &live {
            h.stop(reason);
        }
        let all = futures_util::future::join_all(live.iter().map(|h| h.finished()));
        let _ = tokio::time::timeout(limit, all).await;
        for h in &live {
            h.m.close_recording();
        }
    }

    /// Starts a meeting: registers the stream, sends `*_rtms_started` when
    /// `opts.webhook_url` is set, and plays `script` once the client is ready.
    pub fn start_meeting(
        &self,
        script: MeetingScript,
        opts: MeetingOptions,
    ) -> anyhow::Result<MeetingHandle> {
        start_meeting_on(&self.shared, &self.cancel, script, opts)
    }

    /// Starts meetings later, from another task (the REST API's `start`).
    pub(crate) fn starter(
        &self,
    ) -> Arc<dyn Fn(MeetingScript, MeetingOptions) -> anyhow::Result<MeetingHandle> + Send + Sync>
    {
        let (shared, cancel) = (self.shared.clone(), self.cancel.clone());
        Arc::new(move |script, opts| start_meeting_on(&shared, &cancel, script, opts))
    }

    /// Runs Zoom's `endpoint.url_validation` challenge against a webhook endpoint, signed
    /// with the configured secret token, and checks its answer.
    pub async fn validate_endpoint(&self, url: &str) -> Result<(), webhook::WebhookError> {
        let c = &self.shared.config;
        webhook::WebhookClient::new(&c.webhook_secret, c.webhook_timeout)
            .validate_endpoint(url)
            .await
    }
}

/// Registers and starts a meeting on `shared` (see [`Simulator::start_meeting`]).
fn start_meeting_on(
    shared: &Arc<SimShared>,
    cancel: &CancellationToken,
    script: MeetingScript,
    opts: MeetingOptions,
) -> anyhow::Result<MeetingHandle> {
    let cancel = cancel.child_token();
    let (m, control) = meeting::Meeting::new(shared.clone(), cancel.clone(), script, opts)?;
    {
        let mut reg = shared.registry.lock().unwrap_or_else(|p| p.into_inner());
        if reg.contains_key(&m.stream_id) {
            anyhow::bail!(
                "stream id {:?} is already live in this simulator; pick another",
                m.stream_id
            );
        }
        reg.insert(m.stream_id.clone(), m.clone());
    }
    tokio::spawn(timeline::run(m.clone(), control, cancel));
    m.send_started();
    Ok(MeetingHandle { m })
}

impl Drop for Simulator {
    /// Stops the servers, every meeting task and every socket (meetings and servers
    /// reference each other through the registry, which is cleared here).
    fn drop(&mut self) {
        self.cancel.cancel();
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// A live (or finished) meeting.
#[derive(Clone)]
pub struct MeetingHandle {
    m: Arc<meeting::Meeting>,
}

impl MeetingHandle {
    pub fn stream_id(&self) -> &str {
        &self.m.stream_id
    }

    /// The meeting uuid / webinar uuid / session id / engagement id.
    pub fn meeting_id(&self) -> &str {
        &self.m.id
    }

    pub fn product(&self) -> Product {
        self.m.product
    }

    /// The `rtms_session_id` of msg 9.
    pub fn session_id(&self) -> &str {
        &self.m.session_id
    }

    /// The current `*_rtms_started` event (a new one after a failover).
    pub fn started_event(&self) -> WebhookEvent {
        self.m.started_event()
    }

    /// The body of the current started event, exactly as the simulator would POST it (for
    /// callers that deliver it themselves; sign it with `rtms_proto::sign::webhook_signature`).
    pub fn started_body(&self) -> Vec<u8> {
        webhook::webhook_body(&self.m.started_event(), &self.m.sim.config.account_id)
    }

    /// The signaling URL of the current generation (the started event's `server_urls`).
    pub fn signaling_url(&self) -> String {
        self.started_event().server_url.unwrap_or_default()
    }

    /// The handshake signature a client must send for this stream.
    pub fn expected_signature(&self) -> String {
        self.m.expected_signature()
    }

    /// Every webhook event this meeting emits from now on (started after failover,
    /// interrupted, stopped, duplicates), whether or not a target URL is set.
    pub fn subscribe_webhooks(&self) -> broadcast::Receiver<WebhookEvent> {
        self.m.subscribe_webhooks()
    }

    /// Sends one of Zoom's concurrency notices about this meeting to its webhook target
    /// (see [`webhook::notice_body`]); resolves once it was delivered or its first attempt
    /// failed (retries go on). `None` when the meeting has no webhook target.
    pub fn send_notice(
        &self,
        kind: rtms_proto::webhook::NoticeKind,
    ) -> Option<tokio::sync::oneshot::Receiver<()>> {
        self.m.send_notice(kind)
    }

    /// Applies a fault now.
    pub fn inject(&self, fault: Fault) {
        self.m.apply_fault(fault);
    }

    /// A snapshot of what was sent so far.
    pub fn ledger(&self) -> Ledger {
        self.m.ledger()
    }

    /// True once the stream ended.
    pub fn is_finished(&self) -> bool {
        *self.m.finished.borrow()
    }

    /// Waits for the stream to end (script over, terminated, grace lapsed, or stopped) and
    /// returns the final ledger.
    pub async fn finished(&self) -> Ledger {
        let mut rx = self.m.finished.subscribe();
        let _ = rx.wait_for(|f| *f).await;
        self.m.ledger()
    }

    /// Ends the stream now with a STOP_REASON (msg 8 state 4, then `*_rtms_stopped`).
    /// Await [`MeetingHandle::finished`] to know it is done.
    pub fn stop(&self, reason: u32) {
        self.m.apply_fault(Fault::Terminate { reason });
    }
}
