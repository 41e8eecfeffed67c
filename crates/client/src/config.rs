//! The client's settings as plain data with `Duration`s: credentials, which media to request
//! and how, and the resilience numbers ([`Resilience`]).
//!
//! Parsing them from `pipeline.toml` or the `RTMS_*` environment happens in the host's
//! configuration crate; this module only holds the values and their defaults (the seed's).

use std::time::Duration;

use rtms_proto::MediaParams;
use rtms_proto::codes::media_type;

use crate::allow::AllowList;

/// How media sockets are opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MediaMode {
    /// One socket to `server_urls.all` carrying every requested type (one socket per type
    /// for a connection whose msg 2 names no `all` URL).
    #[default]
    Unified,
    /// One socket per requested type, to `server_urls.<type>` (falling back to `all`).
    Split,
}

/// Timeouts, retry budgets and delays. Field names follow the seed's `RTMS_*` variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resilience {
    /// One connection attempt: TCP, TLS, WebSocket upgrade and the handshake response.
    pub connection_timeout: Duration,
    /// Attempts of the first connection (and after a failover) before giving up.
    pub connection_max_attempts: u32,
    /// Constant delay between first-connection attempts.
    pub connection_retry_delay: Duration,
    /// Reconnection attempts per outage after a stream was up, before giving up. A
    /// reconnection whose frames flow restores the whole budget; a loss always gets at least
    /// one attempt, even with 0 here.
    pub reconnect_max_attempts: u32,
    /// First reconnection delay; doubles per attempt (see [`crate::backoff`]).
    pub reconnect_base_delay: Duration,
    /// Cap of every reconnection delay, jitter included.
    pub reconnect_max_delay: Duration,
    /// Random extra delay on top of each reconnection delay, at most this percentage of it
    /// (0 turns jitter off).
    pub reconnect_jitter_percent: u32,
    /// WebSocket ping period when [`Resilience::ws_ping`] is on.
    pub keepalive_interval: Duration,
    /// A socket that received nothing (data, keep-alive or pong) for this long is dead.
    pub keepalive_timeout: Duration,
    /// After giving up, how long to wait for a new `*_rtms_started` (Zoom's scenario 1)
    /// before ending the stream with `ConnectionLost`.
    pub webhook_wait_timeout: Duration,
    /// A reconnected stream that stayed up this long ends its outage even if no frame came
    /// (an idle meeting): the next loss starts a fresh reconnection budget. A reconnection
    /// that drops sooner, before any frame, was a failed attempt of the same outage.
    pub reconnect_healthy_after: Duration,
    /// The most successful reconnections within [`Resilience::reconnect_flap_window`]: a loss
    /// past it gives up ([`crate::GiveUp::Flapping`]) instead of reconnecting again. It bounds
    /// a network that fails for good every few seconds, which the per-outage budget cannot
    /// see because every reconnection succeeds.
    pub reconnect_flap_max: u32,
    /// The sliding window of [`Resilience::reconnect_flap_max`].
    pub reconnect_flap_window: Duration,
    /// After Zoom stops a stream, how long the host may keep reading what the sockets still
    /// hold (answering keep-alives) before it closes them.
    pub stop_drain: Duration,
    /// Retries of a handshake refused as a duplicate connection (the old connection may
    /// not be gone yet on Zoom's side).
    pub duplicate_max_retries: u32,
    /// Send WebSocket pings every `keepalive_interval` (answers count as liveness).
    pub ws_ping: bool,
}

impl Default for Resilience {
    fn default() -> Self {
        Self {
            connection_timeout: Duration::from_millis(10_000),
            connection_max_attempts: 5,
            connection_retry_delay: Duration::from_millis(5_000),
            reconnect_max_attempts: 3,
            reconnect_base_delay: Duration::from_millis(2_000),
            reconnect_max_delay: Duration::from_millis(30_000),
            reconnect_jitter_percent: 20,
            keepalive_interval: Duration::from_millis(5_000),
            keepalive_timeout: Duration::from_millis(15_000),
            webhook_wait_timeout: Duration::from_millis(300_000),
            reconnect_healthy_after: Duration::from_secs(5),
            reconnect_flap_max: DEFAULT_RECONNECT_FLAP_MAX,
            reconnect_flap_window: DEFAULT_RECONNECT_FLAP_WINDOW,
            stop_drain: Duration::from_secs(2),
            duplicate_max_retries: 3,
            ws_ping: false,
        }
    }
}

/// The default of [`Resilience::reconnect_flap_max`]: a reconnection every 30 s for ten
/// minutes is still served; a network that fails more often than that is given up on.
pub const DEFAULT_RECONNECT_FLAP_MAX: u32 = 20;

/// The default of [`Resilience::reconnect_flap_window`].
pub const DEFAULT_RECONNECT_FLAP_WINDOW: Duration = Duration::from_secs(600);

/// Everything a session needs besides the webhook.
#[derive(Clone)]
pub struct ClientConfig {
    /// OAuth client id of the app (`ZM_RTMS_CLIENT`).
    pub client_id: String,
    /// OAuth client secret (`ZM_RTMS_SECRET`); keys the handshake signature. Never logged.
    pub client_secret: String,
    /// `media_type` bits wanted (see `rtms_proto::codes::media_type`).
    pub media_types: u32,
    /// Requested `media_params`; missing fields get the server's defaults.
    pub media_params: MediaParams,
    pub mode: MediaMode,
    /// Event types to subscribe to with msg 5 after the signaling handshake; none sends no
    /// msg 5 (the server's default set).
    pub events: Vec<u32>,
    /// `buffer_data` of msg 1: ask Zoom to deliver audio buffered before we connected.
    pub buffer_data: bool,
    pub resilience: Resilience,
    /// The servers the host may connect to: the webhook's `server_urls` and the media URLs
    /// of msg 2 are checked against it. Default: `wss://` on Zoom's hosts only.
    pub allow: AllowList,
    /// The most streams run at once; a started webhook past it is refused (503).
    pub max_streams: usize,
    /// Whose video to subscribe to when the video socket asks for one participant at a time
    /// (`data_opt` 4); `None` otherwise.
    pub video: Option<crate::video::VideoFollow>,
    /// How long a stream waits for Zoom's answer (msg 22) to its STREAM_CLOSE_REQ before it
    /// ends its own side only.
    pub close_timeout: Duration,
    /// At shutdown, ask Zoom to close every stream (STREAM_CLOSE_REQ) rather than only
    /// dropping the sockets (Zoom then waits for a reconnection that never comes).
    pub close_on_shutdown: bool,
}

/// The default of [`ClientConfig::close_timeout`].
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default of [`ClientConfig::max_streams`].
pub const DEFAULT_MAX_STREAMS: usize = 2000;

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret: String::new(),
            media_types: media_type::EVERY_TYPE,
            media_params: MediaParams::default(),
            mode: MediaMode::Unified,
            events: Vec::new(),
            buffer_data: false,
            resilience: Resilience::default(),
            allow: AllowList::zoom(),
            max_streams: DEFAULT_MAX_STREAMS,
            video: None,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            close_on_shutdown: false,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("media_types", &self.media_types)
            .field("media_params", &self.media_params)
            .field("mode", &self.mode)
            .field("events", &self.events)
            .field("buffer_data", &self.buffer_data)
            .field("resilience", &self.resilience)
            .field("allow", &self.allow)
            .field("max_streams", &self.max_streams)
            .field("video", &self.video)
            .field("close_timeout", &self.close_timeout)
            .field("close_on_shutdown", &self.close_on_shutdown)
            .finish()
    }
}

impl ClientConfig {
    /// The event types msg 5 subscribes to: the configured ones and those individual video
    /// needs to follow participants.
    pub fn subscribed_events(&self) -> Vec<u32> {
        let mut events = self.events.clone();
        for e in self.video.iter().flat_map(|v| v.events()) {
            if !events.contains(&e) {
                events.push(e);
            }
        }
        events
    }

    /// The `media_type` mask of each media socket to open (its URL is the mask's key in
    /// msg 2, falling back to `all`). Unified mode asks for everything on `all` (mask 32 when every type is wanted);
    /// split mode opens one socket per wanted type.
    pub fn media_sockets(&self) -> Vec<u32> {
        let wanted = if self.media_types & media_type::ALL != 0 {
            media_type::EVERY_TYPE
        } else {
            self.media_types & media_type::EVERY_TYPE
        };
        match self.mode {
            MediaMode::Unified if wanted == media_type::EVERY_TYPE => vec![media_type::ALL],
            MediaMode::Unified if wanted != 0 => vec![wanted],
            MediaMode::Unified => Vec::new(),
            MediaMode::Split => media_type::bits(wanted).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_sockets_follow_the_mode() {
        let mut c = ClientConfig::default();
        assert_eq!(c.media_sockets(), [media_type::ALL]);
        c.media_types = media_type::AUDIO | media_type::TRANSCRIPT;
        assert_eq!(c.media_sockets(), [9]);
        c.mode = MediaMode::Split;
        assert_eq!(
            c.media_sockets(),
            [media_type::AUDIO, media_type::TRANSCRIPT]
        );
        c.media_types = media_type::ALL;
        assert_eq!(c.media_sockets().len(), 5);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = ClientConfig {
            client_secret: "s3cr3t".into(),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
