//! The validated pipeline: the types the host runs.
//!
//! Everything here has been checked: durations are [`Duration`]s, paths are absolute, names are
//! valid, numbers are in range, and secrets hold their values. These types are built only by
//! [`crate::Pipeline::parse`] / [`crate::Pipeline::load`]; the serde types of the file live in
//! [`crate::raw`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use rtms_proto::{MediaKind, MediaKinds};
use rtms_proto::{MediaParams, Product};
use serde::{Deserialize, Serialize};

/// A pipeline ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    /// The pipeline file, absolute. Relative paths inside it were resolved against its folder.
    pub path: PathBuf,
    /// The HTTP server that receives Zoom's webhooks.
    pub server: Server,
    /// The admin listener (health, metrics, reload).
    pub admin: Admin,
    /// Zoom credentials, read from the environment.
    pub zoom: Zoom,
    /// How to talk to Zoom's RTMS servers and what to ask them for.
    pub rtms: Rtms,
    /// The WebAssembly runtime and the process around it.
    pub runtime: Runtime,
    /// `[cluster]`: several hosts sharing webhooks and streams through NATS JetStream;
    /// `None` runs one host alone, with no external service.
    pub cluster: Option<Cluster>,
    /// Every `[[plugin]]`, in file order, disabled ones included (see [`Plugin::enabled`]).
    pub plugins: Vec<Plugin>,
    /// Where plugin outputs go; one stdout sink when the file names none.
    pub sinks: Vec<Sink>,
    /// Things that are not errors but need the operator's attention, such as a missing secret
    /// when validating without secrets. `rtms-host validate` prints them.
    pub warnings: Vec<String>,
}

impl Pipeline {
    /// The plugin of that name.
    pub fn plugin(&self, name: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.name.as_str() == name)
    }

    /// The plugins that run (`enabled = true`).
    pub fn enabled_plugins(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.iter().filter(|p| p.enabled)
    }
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    /// The address the webhook server binds.
    pub listen: SocketAddr,
    /// The path Zoom posts webhooks to; starts with `/`.
    pub webhook_path: String,
    /// Larger webhook bodies are refused with 413 before they are read whole.
    pub max_body_bytes: usize,
    /// Webhooks whose signed timestamp is further than this from now are refused (replays).
    pub timestamp_window: Duration,
    /// Open connections at most; past it the oldest idle one is closed to make room.
    pub max_connections: usize,
    /// Open connections from one IP address at most; past it that address's oldest idle
    /// one is closed.
    pub max_connections_per_peer: usize,
    /// A request's headers (and the TLS handshake) must arrive within this.
    pub header_timeout: Duration,
    /// A webhook's whole body must arrive within this.
    pub body_timeout: Duration,
    /// `[server.tls]`: serve HTTPS with these PEM files (reloaded when they change).
    pub tls: Option<ServerTls>,
    /// Serve the in-client Zoom App under `/zoom-app/`.
    pub zoom_app: bool,
}

/// `[server.tls]`: the listener's certificate chain and private key (PEM), absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[admin]`: the admin routes (`/healthz`, `/admin/metrics`, `/admin/reload`) on their own
/// listener, never on the webhook port.
#[derive(Clone, Debug, PartialEq)]
pub struct Admin {
    /// Whether the admin listener runs.
    pub enabled: bool,
    /// The address it binds; loopback by default.
    pub listen: SocketAddr,
    /// The environment variable holding the bearer token (`RTMS_ADMIN_TOKEN`).
    pub token_env: String,
    /// The bearer token every request must carry. Always set when the listener is
    /// [`exposed`](Admin::exposed) and enabled (loading refuses otherwise); optional on loopback,
    /// where it is required once set.
    pub token: Option<Secret>,
    /// Reload requests closer than this to the previous reload are answered 429.
    pub reload_min_interval: Duration,
    /// `[admin.tls]`: serve HTTPS with these PEM files (reloaded when they change). Without
    /// it the bearer token travels in clear.
    pub tls: Option<ServerTls>,
}

impl Admin {
    /// True when `listen` is not a loopback address: reachable from other machines.
    pub fn exposed(&self) -> bool {
        !self.listen.ip().is_loopback()
    }
}

/// A secret value read from the environment (or, if the operator insists, from the file).
/// Its `Debug` and `Display` never print the value; call [`Secret::expose`] where it is used.
/// Every secret the configuration holds is one: the admin token, the Zoom client secret, the
/// webhook secret token and the REST API's OAuth client secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for signing. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `[zoom]`: the app's credentials and where they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Zoom {
    /// The environment variable the client id is read from (`ZM_RTMS_CLIENT` by default).
    pub client_id_env: String,
    /// The environment variable the client secret is read from (`ZM_RTMS_SECRET`).
    pub client_secret_env: String,
    /// The environment variable the webhook secret token is read from (`ZOOM_SECRET_TOKEN`).
    pub webhook_secret_env: String,
    /// The OAuth client id; it signs the RTMS handshake. `None` only when loaded with
    /// `require_secrets = false` and the variable is unset.
    pub client_id: Option<String>,
    /// The OAuth client secret; it signs the RTMS handshake. `None` as for `client_id`.
    pub client_secret: Option<Secret>,
    /// The webhook secret token; it verifies webhook signatures and answers URL validation.
    pub webhook_secret: Option<Secret>,
    /// An extra CA certificate (PEM) to trust for `wss://`, such as the simulator's; absolute.
    pub ca_file: Option<PathBuf>,
    /// Zoom's REST API (`https://api.zoom.us`; `https://api.zoomgov.com` for Zoom for
    /// Government), for starting and stopping RTMS on purpose.
    pub api_base_url: String,
    /// Zoom's OAuth server (`https://zoom.us`; `https://zoomgov.com`).
    pub oauth_base_url: String,
    /// Server-to-Server OAuth credentials for the REST API, from the environment
    /// (`ZOOM_ACCOUNT_ID`, `ZOOM_OAUTH_CLIENT_ID`, `ZOOM_OAUTH_CLIENT_SECRET` by default);
    /// `None` when unset (starting RTMS from the host then says what to export).
    pub rest: Option<RestCredentials>,
    /// The variables `rest` is read from, for messages.
    pub rest_env: [String; 3],
    /// Zoom's event WebSocket as a second intake, when `zoom.event_subscription_id` is set.
    pub event_ws: Option<EventWs>,
}

/// Zoom's event WebSocket: webhook events over a WebSocket the host opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventWs {
    /// `wss://ws.zoom.us/ws` (Zoom for Government: `wss://ws.zoomgov.com/ws`).
    pub url: String,
    /// The event subscription's id (from the app's Event Subscriptions page).
    pub subscription_id: String,
    /// How often the host sends a heartbeat (Zoom asks for one every 30 s).
    pub heartbeat: std::time::Duration,
}

/// Server-to-Server OAuth credentials (account credentials grant).
#[derive(Clone, Debug, PartialEq)]
pub struct RestCredentials {
    pub account_id: String,
    pub client_id: String,
    pub client_secret: Secret,
}

impl Zoom {
    /// True when every credential is present.
    pub fn has_credentials(&self) -> bool {
        self.client_id.is_some() && self.client_secret.is_some() && self.webhook_secret.is_some()
    }
}

/// `[rtms]`: talking to Zoom's media servers.
#[derive(Clone, Debug, PartialEq)]
pub struct Rtms {
    /// Deadline for one connection attempt (socket + handshake).
    pub connection_timeout: Duration,
    /// Attempts of the first connection before giving up on a stream.
    pub connection_max_attempts: u32,
    /// Pause between first-connection attempts.
    pub connection_retry_delay: Duration,
    /// Reconnection attempts after a live connection broke.
    pub reconnect_max_attempts: u32,
    /// First reconnection delay; doubles each attempt (with jitter) ...
    pub reconnect_base_delay: Duration,
    /// ... up to this (jitter included).
    pub reconnect_max_delay: Duration,
    /// Random extra on each reconnection delay: at most this percentage of it (0 to 100).
    pub reconnect_jitter_percent: u32,
    /// Streaming this long after a reconnection ends an outage: the next loss gets a fresh
    /// `reconnect_max_attempts` budget.
    pub reconnect_healthy_after: Duration,
    /// The most successful reconnections within `reconnect_flap_window`: the next loss gives
    /// up (a network that fails every few seconds for good).
    pub reconnect_flap_max: u32,
    /// The sliding window of `reconnect_flap_max`.
    pub reconnect_flap_window: Duration,
    /// After a stop, how long the host keeps reading (and answering keep-alives) before it
    /// closes the sockets.
    pub stop_drain: Duration,
    /// `close_timeout_ms`: how long a stream waits for Zoom's answer to STREAM_CLOSE_REQ
    /// (an operator's stop, or a shutdown with `runtime.close_streams_on_shutdown`) before
    /// it ends this host's side only.
    pub close_timeout: Duration,
    /// How often an idle connection is checked (at least 3 s).
    pub keepalive_interval: Duration,
    /// Silence longer than this means the peer is dead; always above the interval.
    pub keepalive_timeout: Duration,
    /// How long a stream may wait for the webhook that completes it.
    pub webhook_wait_timeout: Duration,
    /// The media kinds requested from Zoom (never contains [`MediaKind::Event`]).
    pub media: MediaKinds,
    /// One socket for all media, or one per kind.
    pub socket_mode: SocketMode,
    /// Ask Zoom to deliver the audio it buffered before the host connected.
    pub buffer_data: bool,
    /// Also send WebSocket pings every keep-alive interval (their round trip is a metric).
    pub ws_ping: bool,
    /// EVENT_TYPE numbers to subscribe to (msg 5), in file order, no duplicates.
    pub events: Vec<u32>,
    /// The `media_params` sent in the media handshake: a section for each requested kind that
    /// has parameters, every field filled.
    pub media_params: MediaParams,
    /// Hosts the host may connect to (the webhook's `server_urls`, msg 2's media URLs):
    /// exact names or `*.domain`. Default: Zoom's (`*.zoom.us`, `*.zoomgov.com`).
    pub allowed_hosts: Vec<String>,
    /// Allow plain `ws://` besides `wss://` (tests and the simulator only).
    pub allow_insecure_ws: bool,
    /// How the signaling and media sockets reach Zoom.
    pub proxy: Proxy,
    /// Streams run at once at most; a started webhook past it gets 503.
    pub max_streams: usize,
    /// Whose individual video to follow (`[rtms.video] mode = "individual"`); `None` in the
    /// other modes.
    pub video_following: Option<VideoFollowing>,
}

/// `[rtms.video]` in individual mode: the policy and the cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoFollowing {
    pub follow: Following,
    /// 1 to 4 (Zoom's limit per stream).
    pub max: usize,
}

/// Whom individual video follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Following {
    ActiveSpeaker,
    Sharer,
    FirstWithVideo,
    /// User ids or display names, in order of preference.
    Users(Vec<String>),
}

/// How outgoing WebSockets reach Zoom (`rtms.proxy`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Proxy {
    /// As `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` say (the default).
    #[default]
    Env,
    /// Always direct, whatever the environment says.
    None,
    /// Through this HTTP proxy (`http://host:port`, no credentials: those go in the
    /// environment's proxy URL), except for the hosts `NO_PROXY` names.
    Url(String),
}

/// `[cluster]`: how this host shares webhooks and streams with the others.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// `nats_url`: the engine's URLs (`nats://host:port`, `tls://host:port`), comma-separated.
    pub nats_url: String,
    /// `host_id`: this host's name in the cluster (letters, digits, `-`, `_`); `None`: the
    /// host uses `<hostname>-<pid>`.
    pub host_id: Option<String>,
    /// `prefix`: the first part of every stream, bucket and subject name in the engine.
    pub prefix: String,
    /// `lease_ms`: a stream whose owner wrote nothing for this long is taken over.
    pub lease: Duration,
    /// `renew_ms`: how often an owner renews its leases (and writes its load).
    pub renew: Duration,
    /// `ack_wait_ms`: a logged webhook a host took but did not act on is handed to another
    /// host after this long.
    pub ack_wait: Duration,
    /// `dedup_window_ms`: webhooks with the same event, stream and time are logged once
    /// within this window.
    pub dedup_window: Duration,
    /// `drain_ms`: on SIGTERM, the most time spent handing streams to other hosts.
    pub drain: Duration,
    /// `placement`: which host a new stream goes to.
    pub placement: Placement,
    /// The engine's credentials, from the environment variables named by `user_env` and
    /// `password_env`, or `token_env`.
    pub auth: ClusterAuth,
    /// The variables named, for messages.
    pub auth_env: [String; 3],
}

/// `[cluster] placement`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The live host with the most free room (the receiver on a tie).
    LeastLoaded,
    /// The host that took the webhook from the log when it has room, else the least loaded.
    ReceiverFirst,
}

/// Credentials for the cluster's engine.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum ClusterAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: Secret,
    },
    Token(Secret),
}

/// How media sockets are opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketMode {
    /// One socket to the `all` URL carrying every requested kind.
    Unified,
    /// One socket per media kind.
    Split,
}

/// `[runtime]`: the WebAssembly runtime and process-wide settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Runtime {
    /// Compiled components are cached here by content hash; absolute.
    pub cache_dir: PathBuf,
    /// The epoch ticker's period: the granularity of plugin call deadlines.
    pub epoch_tick: Duration,
    /// Batches that trapped a plugin are written here; absolute.
    pub dead_letter_dir: PathBuf,
    /// A plugin's dead-letter file is rotated when it would pass this size.
    pub dead_letter_max_bytes: u64,
    /// Rotated dead-letter files kept per plugin; older ones are deleted.
    pub dead_letter_files: u32,
    /// Bytes of emitted outputs waiting for the dispatcher before `emit` drops.
    pub output_queue_bytes: u64,
    /// Bytes of outputs the live tap may hold for its subscribers; past it the tap carries
    /// outputs without their `data` and with a shortened `message`.
    pub tap_bytes: u64,
    /// `[runtime] plugin_open_files`: descriptors every plugin of the process may hold
    /// together (files they open, their outgoing connections); `None`: half of the process's
    /// RLIMIT_NOFILE, read at start.
    pub plugin_open_files: Option<u64>,
    /// `[runtime] pool` and `pool_instances`: the pooling allocator's size, computed from
    /// the pipeline (`crate::pool`); `None` with `pool = "off"` (each instance maps its own
    /// memory).
    pub pool: Option<crate::pool::PoolPlan>,
    /// `[runtime] pool_instances` as written (`None`: sized from the pipeline).
    pub pool_instances: Option<u64>,
    /// On SIGINT/SIGTERM, queues drain for at most this long.
    pub shutdown_grace: Duration,
    /// `[runtime] journal_dir`: where the stream journal lives (absolute); `None` keeps no
    /// journal, so a crash ends every live stream.
    pub journal_dir: Option<PathBuf>,
    /// `[runtime] journal_grace_ms`: a journaled stream is resumed after a restart only
    /// within this long of the journal's last heartbeat (Zoom keeps media ~30 s).
    pub journal_grace: Duration,
    /// `[runtime] close_streams_on_shutdown`: at shutdown, ask Zoom to end every stream
    /// (STREAM_CLOSE_REQ) rather than leave them to Zoom's reconnection window.
    pub close_streams_on_shutdown: bool,
    /// `[runtime] threads`: the core threads that run the streams (each its own event loop);
    /// `None` or 0: none, the streams run on the main runtime.
    pub threads: Option<u32>,
    /// `[runtime] pin_threads`: pin core thread `i` to the `i`-th CPU the process may run on.
    pub pin_threads: bool,
    /// Hot reload of the pipeline file and components.
    pub reload: Reload,
}

/// `[runtime.reload]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reload {
    /// Watch the pipeline file and every component for changes.
    pub watch: bool,
    /// Changes closer together than this are applied once.
    pub debounce: Duration,
}

/// A plugin name: 1-64 of `a-z`, `0-9` and `-`, starting with a letter. Deserializing one
/// validates it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct PluginName(String);

impl TryFrom<String> for PluginName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        Self::try_new(&name)
    }
}

impl PluginName {
    /// Checks a name; the error says what is wrong and how to fix it.
    pub fn try_new(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err(
                "a plugin name cannot be empty: use lowercase letters, digits and '-'".into(),
            );
        }
        if name.len() > 64 {
            return Err(format!("plugin name {name:?} is longer than 64 characters"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            let fixed = name.to_ascii_lowercase().replace(['_', ' ', '.'], "-");
            // Only a changed name is worth checking (and checking the same one would recurse
            // for ever: a non-ASCII letter survives the fix unchanged).
            let hint = if fixed != name && PluginName::try_new(&fixed).is_ok() {
                format!(" (try {fixed:?})")
            } else {
                String::new()
            };
            return Err(format!(
                "plugin name {name:?} has {c:?}: use only lowercase letters, digits and '-'{hint}"
            ));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(format!(
                "plugin name {name:?} must start with a lowercase letter"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `[[plugin]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Plugin {
    /// Unique within the pipeline; labels logs, metrics and outputs.
    pub name: PluginName,
    /// The component file (`.wasm`), absolute.
    pub component: PathBuf,
    /// A disabled plugin is validated but not run.
    pub enabled: bool,
    /// The kinds of frames it receives; never empty.
    pub media: MediaKinds,
    /// Which sessions it serves.
    pub filter: PluginFilter,
    /// Host directories it may use, each at a guest path.
    pub dirs: Vec<DirGrant>,
    /// Its queue per session.
    pub queue: Queue,
    /// How frames are grouped into `on-frames` calls.
    pub batch: Batch,
    /// Resource limits per instance.
    pub limits: Limits,
    /// Restart policy after traps.
    pub restart: Restart,
    /// Environment variables granted to the plugin (`secrets = [...]`), in file order, with
    /// their values read at load (`None` only when validating without secrets).
    pub secrets: Vec<PluginSecret>,
    /// The bounds of each of its state scopes (`[plugin.state]`).
    pub state: StateLimits,
    /// `[plugin.net]`: the URLs it may call and the limits on its requests.
    pub net: crate::net::Net,
    /// The `[plugin.config]` table as `init` receives it: one pair per top-level key, sorted by
    /// key, strings raw and every other value as JSON text.
    pub config: Vec<(String, String)>,
    /// Where the `[plugin.config]` table (or, without one, the plugin's `name`) is written,
    /// for the errors only the plugin's `init` can find.
    pub config_at: WrittenAt,
}

/// Where something is written in the pipeline file. Not part of equality: the same plugin
/// moved within the file is the same plugin.
#[derive(Clone, Debug, Default)]
pub struct WrittenAt(pub Option<crate::error::Location>);

impl PartialEq for WrittenAt {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Display for WrittenAt {
    /// `file:line:column: `, or nothing when unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(at) => write!(f, "{at}: "),
            None => Ok(()),
        }
    }
}

/// Session filters of a plugin; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PluginFilter {
    /// Only sessions of these products.
    pub products: Option<Vec<Product>>,
    /// Only these meeting uuids / webinar uuids / session ids / engagement ids.
    pub meeting_ids: Option<Vec<String>>,
    /// Only sessions started by these users (the stream's operator id).
    pub users: Option<Vec<String>>,
}

impl PluginFilter {
    /// Whether a session with these properties is served. A filter on users does not match a
    /// session whose operator is unknown.
    pub fn matches(&self, product: Product, meeting_id: &str, operator_id: Option<&str>) -> bool {
        self.products.as_ref().is_none_or(|p| p.contains(&product))
            && self
                .meeting_ids
                .as_ref()
                .is_none_or(|m| m.iter().any(|id| id == meeting_id))
            && self
                .users
                .as_ref()
                .is_none_or(|u| operator_id.is_some_and(|op| u.iter().any(|user| user == op)))
    }
}

/// A host directory granted to a plugin (`[[plugin.dir]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host, absolute. Its parent exists; the host creates it at start.
    pub host: PathBuf,
    /// Where the plugin sees it: an absolute guest path such as `/out`.
    pub guest: String,
    /// Whether the plugin may only read.
    pub read_only: bool,
    /// Write quota in MiB (`None` for a read-only grant): past it the plugin is stopped for
    /// the session.
    pub quota_mb: Option<u64>,
    /// Whether the plugin may create symbolic links there (`symlinks`, default false).
    pub symlinks: bool,
}

/// `[plugin.queue]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    /// Frames held per (plugin, session) before `on_full` applies.
    pub capacity: usize,
    /// What happens when the queue is full, per kind of frame.
    pub on_full: QueuePolicy,
    /// Under `block`, how long the session waits for room before the frame is shed
    /// (dead-lettered) for this plugin alone.
    pub block_timeout: Duration,
}

/// What a full queue does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFull {
    /// The session's intake waits: lossless, for transcripts and chat.
    Block,
    /// The oldest frame is dropped and counted: for real-time media.
    DropOldest,
}

/// What a full queue does, per kind of frame (`[plugin.queue] on_full`): the kinds whose
/// frames may be dropped to make room, oldest first; a frame of any other kind is never
/// dropped to make room: it waits for room (`block`, up to the block timeout).
///
/// So with the default for a plugin taking audio and transcript, a full queue drops its
/// oldest *audio* frame to make room for either kind, and a transcript frame waits only
/// when the queue holds no audio to drop.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct QueuePolicy {
    drop_oldest: MediaKinds,
}

impl QueuePolicy {
    /// Every kind waits for room: lossless up to the block timeout.
    pub const BLOCK: QueuePolicy = QueuePolicy {
        drop_oldest: MediaKinds::EMPTY,
    };

    /// One policy for every kind (`on_full = "block"` or `"drop-oldest"`).
    pub fn all(on_full: OnFull) -> QueuePolicy {
        match on_full {
            OnFull::Block => QueuePolicy::BLOCK,
            OnFull::DropOldest => QueuePolicy {
                drop_oldest: MediaKinds::of(MediaKind::ALL),
            },
        }
    }

    /// The default for a plugin taking `media`: real-time media (audio, video, share) is
    /// dropped oldest first when the plugin falls behind; transcript, chat and events wait.
    pub fn default_for(media: MediaKinds) -> QueuePolicy {
        QueuePolicy {
            drop_oldest: media.iter().filter(|k| k.is_realtime_media()).collect(),
        }
    }

    /// This policy with `kind` set to `on_full`.
    pub fn with(mut self, kind: MediaKind, on_full: OnFull) -> QueuePolicy {
        match on_full {
            OnFull::Block => self.drop_oldest.remove(kind),
            OnFull::DropOldest => self.drop_oldest.insert(kind),
        }
        self
    }

    /// What a full queue does for a frame of `kind`.
    pub fn on_full(self, kind: MediaKind) -> OnFull {
        if self.drop_oldest.contains(kind) {
            OnFull::DropOldest
        } else {
            OnFull::Block
        }
    }

    /// Whether a frame of `kind` may be dropped to make room.
    pub fn drops(self, kind: MediaKind) -> bool {
        self.drop_oldest.contains(kind)
    }

    /// The kinds that may be dropped.
    pub fn dropped_kinds(self) -> MediaKinds {
        self.drop_oldest
    }

    /// The policy of each of `media`, for messages: `audio: drop-oldest, chat: block`.
    pub fn describe(self, media: MediaKinds) -> String {
        let parts: Vec<String> = media
            .iter()
            .map(|k| format!("{k}: {}", self.on_full(k).as_str()))
            .collect();
        parts.join(", ")
    }
}

impl fmt::Debug for QueuePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueuePolicy {{ drop_oldest: {} }}", self.drop_oldest)
    }
}

impl OnFull {
    /// The name used in pipeline.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFull::Block => "block",
            OnFull::DropOldest => "drop-oldest",
        }
    }

    /// Reads a name used in pipeline.toml.
    pub fn from_name(name: &str) -> Option<OnFull> {
        match name {
            "block" => Some(OnFull::Block),
            "drop-oldest" => Some(OnFull::DropOldest),
            _ => None,
        }
    }
}

/// `[plugin.batch]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    /// At most this many frames per `on-frames` call.
    pub max_frames: usize,
    /// A partial batch is delivered after waiting this long.
    pub max_wait: Duration,
}

/// One secret a plugin may read: an environment variable's name and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginSecret {
    pub name: String,
    pub value: Option<Secret>,
}

/// `[plugin.state]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateLimits {
    /// Most keys one scope (a session's, or the plugin's) holds.
    pub max_keys: u64,
    /// Most bytes one scope holds, keys and values together.
    pub max_bytes: u64,
}

/// `[plugin.limits]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory an instance may grow to, in MiB.
    pub memory_mb: u32,
    /// Deadline of one call into the plugin; past it the instance traps.
    pub call_timeout: Duration,
    /// Bytes per second of log lines (`host.log`, stdout, stderr) per session.
    pub log_bytes_per_sec: u64,
    /// Bytes per second of emitted outputs per session.
    pub emit_bytes_per_sec: u64,
    /// Most units a session may be charged (`budget.charge`); `None`: no cap.
    pub units_per_session: Option<u64>,
    /// Entries of an instance's resource table (open files, streams, pollables, listings);
    /// past it the call that needed one more traps.
    pub max_resources: u32,
    /// Files and directories an instance holds open at once; past it `open-at` fails.
    pub max_open_files: u32,
    /// Files and directories a writable granted directory may hold for the plugin to
    /// create more; past it creating fails.
    pub max_inodes: u64,
}

impl Limits {
    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mb as usize).saturating_mul(1024 * 1024)
    }
}

/// `[plugin.restart]`: backoff after traps and the circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restart {
    /// First delay before a fresh instance; doubles per consecutive trap ...
    pub base_delay: Duration,
    /// ... up to this.
    pub max_delay: Duration,
    /// An instance that runs this long without trapping resets the backoff.
    pub healthy_reset: Duration,
    /// This many traps within `window` stop the plugin for the session (circuit open).
    pub max_failures: u32,
    /// The circuit breaker's window.
    pub window: Duration,
    /// A version swapped in by a reload that traps this many times within
    /// `rollback_window` is rolled back to the version it replaced.
    pub rollback_traps: u32,
    /// How long after a swap traps count towards a rollback (0 turns rollback off).
    pub rollback_window: Duration,
}

/// Output severities, mirroring the WIT `severity`, in increasing order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Notice,
    Warning,
    Critical,
}

impl Severity {
    /// The name used in pipeline.toml and in every sink's output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `type` of a `[[sink]]`, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    Stdout,
    Jsonl,
    Http,
}

/// One `[[sink]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sink {
    /// Where outputs go.
    pub target: SinkTarget,
    /// Which outputs go there.
    pub filter: SinkFilter,
    /// Bytes of outputs waiting for this sink before it drops new ones.
    pub queue_bytes: u64,
    /// How an `http` sink delivers (ignored by the others).
    pub delivery: Delivery,
}

impl Sink {
    /// `queue_mb`'s default, in bytes.
    pub const DEFAULT_QUEUE_BYTES: u64 = 16 << 20;

    /// A sink that takes every output, with the default queue and delivery settings.
    pub fn all(target: SinkTarget) -> Self {
        Self {
            target,
            filter: SinkFilter::default(),
            queue_bytes: Sink::DEFAULT_QUEUE_BYTES,
            delivery: Delivery::default(),
        }
    }
}

/// An `http` sink's timeouts and retries: a hung endpoint costs at most
/// `(retries + 1) * request_timeout` plus the backoff per output, never forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Time to open the TCP connection.
    pub connect_timeout: Duration,
    /// Time for the whole request, connect included, until the response head.
    pub request_timeout: Duration,
    /// Further attempts after a failed one (connection error, timeout, 5xx, 429).
    pub retries: u32,
    /// Wait before the first retry; doubled each retry, at most `MAX_BACKOFF`.
    pub retry_backoff: Duration,
}

impl Delivery {
    /// The longest wait between two attempts.
    pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

    /// The defaults of `connect_timeout_ms`, `request_timeout_ms`, `retries` and
    /// `retry_backoff_ms`.
    pub const DEFAULT: Delivery = Delivery {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retries: 2,
        retry_backoff: Duration::from_millis(200),
    };
}

impl Default for Delivery {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Where a sink writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkTarget {
    /// One line per output on standard output.
    Stdout,
    /// One JSON object per line, appended to this file (absolute; parents created at start).
    Jsonl { path: PathBuf },
    /// One POST per output, JSON body. Only `http://` URLs for now.
    Http { url: String },
}

/// A sink's filter; every part must match. The default passes every output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkFilter {
    /// Outputs below this severity are skipped.
    pub min_severity: Severity,
    /// Only outputs of these plugins (`None`: all).
    pub plugins: Option<Vec<PluginName>>,
    /// Only outputs whose `kind` is one of these (`None`: all).
    pub kinds: Option<Vec<String>>,
}

impl SinkFilter {
    /// Whether an output passes.
    pub fn matches(&self, plugin: &str, kind: &str, severity: Severity) -> bool {
        severity >= self.min_severity
            && self
                .plugins
                .as_ref()
                .is_none_or(|p| p.iter().any(|n| n.as_str() == plugin))
            && self
                .kinds
                .as_ref()
                .is_none_or(|k| k.iter().any(|x| x == kind))
    }
}

/// Named EVENT_TYPE subscriptions (meetings, webinars, Video SDK).
pub(crate) fn event_names() -> BTreeMap<&'static str, u32> {
    use rtms_proto::codes::event_type as e;
    BTreeMap::from([
        ("active-speaker-change", e::ACTIVE_SPEAKER_CHANGE),
        ("participant-join", e::PARTICIPANT_JOIN),
        ("participant-leave", e::PARTICIPANT_LEAVE),
        ("sharing-start", e::SHARING_START),
        ("sharing-stop", e::SHARING_STOP),
        (
            "media-connection-interrupted",
            e::MEDIA_CONNECTION_INTERRUPTED,
        ),
        ("participant-video-on", e::PARTICIPANT_VIDEO_ON),
        ("participant-video-off", e::PARTICIPANT_VIDEO_OFF),
        ("first-packet-timestamp", e::FIRST_PACKET_TIMESTAMP),
        ("chat-group-create", e::CHAT_GROUP_CREATE),
        ("chat-group-delete", e::CHAT_GROUP_DELETE),
        ("chat-group-members-add", e::CHAT_GROUP_MEMBERS_ADD),
        ("chat-group-members-delete", e::CHAT_GROUP_MEMBERS_DELETE),
        (
            "chat-group-member-status-update",
            e::CHAT_GROUP_MEMBER_STATUS_UPDATE,
        ),
    ])
}
