//! The default of every pipeline.toml key: one named `const fn default_*()` each (or a plain
//! `fn` where the value is computed), shared by the resolver, `impl Default`s and the docs.

use super::*;

pub const fn default_listen() -> &'static str {
    "127.0.0.1:8080"
}
pub const fn default_webhook_path() -> &'static str {
    "/webhook"
}
pub const fn default_max_body_bytes() -> u64 {
    1024 * 1024
}
pub const fn default_timestamp_window_secs() -> u64 {
    300
}
pub const fn default_max_connections() -> u64 {
    1024
}
pub const fn default_max_connections_per_peer() -> u64 {
    256
}
pub const fn default_header_timeout_ms() -> u64 {
    5_000
}
pub const fn default_body_timeout_ms() -> u64 {
    10_000
}
pub const fn default_max_streams() -> u64 {
    2000
}
pub const fn default_allowed_hosts() -> [&'static str; 2] {
    ["*.zoom.us", "*.zoomgov.com"]
}
pub const fn default_admin_enabled() -> bool {
    true
}
pub const fn default_admin_listen() -> &'static str {
    "127.0.0.1:9464"
}
pub const fn default_admin_token_env() -> &'static str {
    "RTMS_ADMIN_TOKEN"
}
pub const fn default_reload_min_interval_ms() -> u64 {
    1_000
}
/// Shorter admin tokens are refused: they can be guessed.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;
/// Admin tokens with fewer distinct characters are refused: a long token of one or two
/// repeated characters (`aaaa...`, `1212...`) is as guessable as a short one.
pub const MIN_ADMIN_TOKEN_DISTINCT: usize = 8;
pub const fn default_client_id_env() -> &'static str {
    "ZM_RTMS_CLIENT"
}
pub const fn default_client_secret_env() -> &'static str {
    "ZM_RTMS_SECRET"
}
pub const fn default_webhook_secret_env() -> &'static str {
    "ZOOM_SECRET_TOKEN"
}
pub const fn default_connection_timeout_ms() -> u64 {
    10_000
}
pub const fn default_connection_max_attempts() -> u64 {
    5
}
pub const fn default_connection_retry_delay_ms() -> u64 {
    5_000
}
pub const fn default_reconnect_max_attempts() -> u64 {
    3
}
pub const fn default_reconnect_base_delay_ms() -> u64 {
    2_000
}
pub const fn default_reconnect_max_delay_ms() -> u64 {
    30_000
}
pub const fn default_reconnect_jitter_percent() -> u64 {
    20
}
pub const fn default_reconnect_healthy_after_ms() -> u64 {
    5_000
}
pub const fn default_reconnect_flap_max() -> u64 {
    20
}
pub const fn default_reconnect_flap_window_ms() -> u64 {
    600_000
}
pub const fn default_stop_drain_ms() -> u64 {
    2_000
}
pub const fn default_close_timeout_ms() -> u64 {
    5_000
}
pub const fn default_keepalive_interval_ms() -> u64 {
    5_000
}
/// Zoom's servers send keep-alives every few seconds; checking more often than this only adds
/// noise.
pub const MIN_KEEPALIVE_INTERVAL_MS: u64 = 3_000;
pub const fn default_keepalive_timeout_ms() -> u64 {
    15_000
}
pub const fn default_webhook_wait_timeout_ms() -> u64 {
    300_000
}
pub const fn default_socket_mode() -> SocketMode {
    SocketMode::Unified
}
/// Zoom's own default: deliver the audio buffered before the host connected.
pub const fn default_buffer_data() -> bool {
    true
}
pub const fn default_cache_dir() -> &'static str {
    ".cache/rtms-host"
}
pub const fn default_dead_letter_dir() -> &'static str {
    "dead-letter"
}
pub const fn default_epoch_tick_ms() -> u64 {
    5
}
pub const fn default_shutdown_grace_ms() -> u64 {
    10_000
}
/// Zoom keeps a stream's media slot about 30 s (signaling about 60 s).
pub const fn default_journal_grace_ms() -> u64 {
    30_000
}
pub const fn default_reload_watch() -> bool {
    true
}
pub const fn default_debounce_ms() -> u64 {
    200
}
pub const fn default_enabled() -> bool {
    true
}
pub const fn default_queue_capacity() -> u64 {
    1024
}
pub const fn default_batch_max_frames() -> u64 {
    32
}
/// 0: a batch takes what is queued, and a frame for an idle plugin goes straight to it (see
/// the host's frame path). Under load batches still fill on their own, from the frames that
/// queue while the plugin works.
pub const fn default_batch_max_wait_ms() -> u64 {
    0
}
pub const fn default_block_timeout_ms() -> u64 {
    1_000
}
pub const fn default_log_bytes_per_sec() -> u64 {
    64 * 1024
}
pub const fn default_emit_bytes_per_sec() -> u64 {
    1024 * 1024
}
pub const fn default_net_connect_timeout_ms() -> u64 {
    5_000
}
pub const fn default_net_first_byte_timeout_ms() -> u64 {
    10_000
}
pub const fn default_net_between_bytes_timeout_ms() -> u64 {
    10_000
}
pub const fn default_net_max_response_bytes() -> u64 {
    1024 * 1024
}
pub const fn default_net_max_concurrent() -> u64 {
    4
}
pub const fn default_net_requests_per_minute() -> u64 {
    60
}
pub const fn default_dir_quota_mb() -> u64 {
    1024
}
pub const fn default_dead_letter_max_mb() -> u64 {
    64
}
pub const fn default_dead_letter_files() -> u64 {
    3
}
pub const fn default_state_max_keys() -> u64 {
    1024
}
pub const fn default_state_max_bytes() -> u64 {
    1024 * 1024
}
pub const fn default_memory_mb() -> u64 {
    64
}
pub const fn default_max_resources() -> u64 {
    4096
}
pub const fn default_max_open_files() -> u64 {
    64
}
pub const fn default_max_inodes() -> u64 {
    100_000
}
pub const fn default_call_timeout_ms() -> u64 {
    1_000
}
pub const fn default_restart_base_delay_ms() -> u64 {
    1_000
}
pub const fn default_restart_max_delay_ms() -> u64 {
    30_000
}
pub const fn default_healthy_reset_ms() -> u64 {
    10_000
}
pub const fn default_max_failures() -> u64 {
    5
}
pub const fn default_failure_window_ms() -> u64 {
    60_000
}
pub const fn default_rollback_traps() -> u64 {
    2
}
pub const fn default_rollback_window_ms() -> u64 {
    10_000
}
pub const fn default_min_severity() -> Severity {
    Severity::Info
}
/// Per kind: `drop-oldest` for real-time media (audio, video, share), `block` for
/// transcript, chat and events, which are never dropped to make room for media.
pub fn default_on_full(media: MediaKinds) -> QueuePolicy {
    QueuePolicy::default_for(media)
}
/// The events subscribed to when a plugin takes `event` frames and `rtms.events` is unset.
pub fn default_events() -> Vec<u32> {
    use rtms_proto::codes::event_type as e;
    vec![
        e::ACTIVE_SPEAKER_CHANGE,
        e::PARTICIPANT_JOIN,
        e::PARTICIPANT_LEAVE,
        e::SHARING_START,
        e::SHARING_STOP,
    ]
}

/// A `component` that starts with this names a component the binary carries
/// (`builtin:transcript_writer`) rather than a file.
pub const BUILTIN_PREFIX: &str = "builtin:";

/// Replaces `rtms.allowed_hosts` (a comma-separated list), so one pipeline file serves
/// production and a local trial against the simulator.
pub const ALLOWED_HOSTS_ENV: &str = "RTMS_ALLOWED_HOSTS";
/// Replaces `rtms.allow_insecure_ws` (`true` or `false`).
pub const ALLOW_INSECURE_WS_ENV: &str = "RTMS_ALLOW_INSECURE_WS";

/// The environment variables that override `[rtms]` numbers.
pub const ENV_OVERRIDES: [(&str, &str); 8] = [
    ("RTMS_CONNECTION_TIMEOUT_MS", "connection_timeout_ms"),
    ("RTMS_CONNECTION_MAX_ATTEMPTS", "connection_max_attempts"),
    (
        "RTMS_CONNECTION_RETRY_DELAY_MS",
        "connection_retry_delay_ms",
    ),
    ("RTMS_RECONNECT_MAX_ATTEMPTS", "reconnect_max_attempts"),
    ("RTMS_RECONNECT_BASE_DELAY_MS", "reconnect_base_delay_ms"),
    ("RTMS_KEEPALIVE_INTERVAL_MS", "keepalive_interval_ms"),
    ("RTMS_KEEPALIVE_TIMEOUT_MS", "keepalive_timeout_ms"),
    ("RTMS_WEBHOOK_WAIT_TIMEOUT_MS", "webhook_wait_timeout_ms"),
];
/// Outputs waiting for the dispatcher, in all: about four seconds of the default emit budget
/// (1 MiB/s) from sixteen plugins.
pub const fn default_output_queue_mb() -> u64 {
    64
}
/// Outputs the live tap holds for slow subscribers.
pub const fn default_tap_mb() -> u64 {
    16
}
/// Outputs waiting for one sink.
pub const fn default_sink_queue_mb() -> u64 {
    Sink::DEFAULT_QUEUE_BYTES >> 20
}
pub const fn default_sink_connect_timeout_ms() -> u64 {
    Delivery::DEFAULT.connect_timeout.as_millis() as u64
}
pub const fn default_sink_request_timeout_ms() -> u64 {
    Delivery::DEFAULT.request_timeout.as_millis() as u64
}
pub const fn default_sink_retries() -> u64 {
    Delivery::DEFAULT.retries as u64
}
pub const fn default_sink_retry_backoff_ms() -> u64 {
    Delivery::DEFAULT.retry_backoff.as_millis() as u64
}

/// `[cluster]`: names in the engine start with this.
pub const fn default_cluster_prefix() -> &'static str {
    "rtms"
}
/// A lease a third of Zoom's 30 s media grace: detection, claim and reconnection fit in it.
pub const fn default_lease_ms() -> u64 {
    10_000
}
pub const fn default_ack_wait_ms() -> u64 {
    10_000
}
/// Two hours: Zoom's retries of a webhook span about 90 minutes.
pub const fn default_dedup_window_ms() -> u64 {
    7_200_000
}
pub const fn default_drain_ms() -> u64 {
    30_000
}
