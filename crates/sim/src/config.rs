//! [`SimConfig`]: credentials, TLS, advertised host and every timing knob of the simulator.
//!
//! One configuration serves every meeting the [`crate::Simulator`] runs. The defaults match
//! Zoom where Zoom's behaviour is known (10 s keep-alive, 3 misses, 60 s / 30 s grace) and
//! carry the test credentials of `rtms-protocol.md` decision 3, so tests only shorten timers.

use std::path::PathBuf;
use std::time::Duration;

/// How the simulator behaves. Build with `SimConfig { ..Default::default() }`.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// OAuth client id the handshake signatures are computed with (`ZM_RTMS_CLIENT`).
    pub client_id: String,
    /// OAuth client secret, the HMAC key of handshake signatures (`ZM_RTMS_SECRET`).
    pub client_secret: String,
    /// The app's webhook Secret Token: signs `x-zm-signature` and url validation.
    pub webhook_secret: String,
    /// `account_id` written into started webhooks (meetings, webinars, Video SDK).
    pub account_id: String,
    /// Serve `wss://` with a freshly generated self-signed CA (see [`crate::Simulator::ca_pem`]).
    pub tls: bool,
    /// With `tls`: keep the CA in this directory (`ca.pem`, and `ca.key` with mode 0600),
    /// created on the first run and reused after, so a client can trust it before the
    /// simulator starts. `None`: a new CA every run.
    pub ca_dir: Option<PathBuf>,
    /// Host written into every URL the simulator hands out. `127.0.0.1` by default; use
    /// `localhost` for Zoom's SDK, which checks only DNS-type SANs. Servers always bind
    /// 127.0.0.1.
    pub advertise_host: String,
    /// A socket on which nothing was sent for this long gets a keep-alive request (msg 12).
    pub keepalive_interval: Duration,
    /// Unanswered keep-alive requests after which the server ends the socket (Zoom: 3).
    pub missed_keepalive_limit: u32,
    /// How long a stream whose signaling dropped waits for a new signaling handshake
    /// (Zoom's scenario 2: ~60 s) before it stops with reason 19.
    pub signaling_grace: Duration,
    /// How long a stream whose media dropped waits for a new media handshake (Zoom's
    /// scenario 3: ~30 s) before it stops with reason 19.
    pub media_grace: Duration,
    /// How long a started stream waits for the first CLIENT_READY_ACK before it stops with
    /// reason 11 CONNECTION_TIMEOUT.
    pub connect_timeout: Duration,
    /// How long a new socket may stay silent before its handshake arrives.
    pub handshake_timeout: Duration,
    /// Delay before a webhook that was not answered with 2xx is sent again (Zoom: minutes).
    pub webhook_retry_delay: Duration,
    /// Attempts per webhook, the first included.
    pub webhook_max_attempts: u32,
    /// How long one webhook POST may take before it counts as failed (Zoom: ~3 s).
    pub webhook_timeout: Duration,
    /// After the first CLIENT_READY_ACK the timeline starts once no new media handshake
    /// happened for this long, so clients that open one socket per kind and acknowledge
    /// each one (Zoom's RTMSManager) get every kind from the first item.
    pub ready_settle: Duration,
    /// Send server messages in binary frames instead of text frames (both are legal).
    pub binary_frames: bool,
    /// Leave `all` out of msg 2's `media_server.server_urls`, naming only the per-type URLs
    /// (a reply some Zoom media servers give). The `all` path keeps being served.
    pub omit_all_media_url: bool,
    /// Pre-encode audio: each speaker's msg 14 is serialised once for a ring of
    /// [`crate::PREENCODED_RING`] distinct frames, and a frame sent is a copy with its
    /// timestamp written in. In `Pace::Fast`, consecutive frames of one speaker that
    /// nothing else is due between go to the socket as one burst (one wake-up, one flush,
    /// one ledger update). Same messages, same ledger, a fraction of the sender's CPU: for
    /// benchmarks, where the sender must not be the limit. Samples repeat every ring.
    pub preencoded_audio: bool,
    /// Individual video subscriptions (msg 28) a stream may hold at once. Past it, a
    /// subscription is refused with status 25 (INVALID_MEDIA_VIDEO_PARAMS), as protocol V2
    /// allows several up to a limit (four by default); 1 models a V1 server, where the newest
    /// subscription replaces the previous one instead.
    pub individual_video_limit: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            client_id: "test_client_id".into(),
            client_secret: "test_client_secret".into(),
            webhook_secret: "test_webhook_secret".into(),
            account_id: "simAccount0000000000000".into(),
            tls: false,
            ca_dir: None,
            advertise_host: "127.0.0.1".into(),
            keepalive_interval: Duration::from_secs(10),
            missed_keepalive_limit: 3,
            signaling_grace: Duration::from_secs(60),
            media_grace: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
            webhook_retry_delay: Duration::from_secs(300),
            webhook_max_attempts: 3,
            webhook_timeout: Duration::from_secs(3),
            ready_settle: Duration::from_millis(50),
            binary_frames: false,
            omit_all_media_url: false,
            preencoded_audio: false,
            individual_video_limit: 4,
        }
    }
}
