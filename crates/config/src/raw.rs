//! The serde types of pipeline.toml, close to the text (`*File` / `*Config`).
//!
//! Nothing here is validated beyond types and key names: every struct denies unknown keys, and
//! fields that later checks may complain about keep their position as [`Spanned`] so the error
//! can name the line. Defaults and range checks live in [`crate::resolve`]; the runtime never
//! sees these types, only [`crate::Pipeline`].

use serde::Deserialize;
use toml::Spanned;

use crate::model::{MediaKind, Secret, Severity, SinkType, SocketMode};
use rtms_proto::Product;

/// A number as written in the file, with its position.
pub type Num = Option<Spanned<u64>>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Probed before this type is parsed; kept so `deny_unknown_fields` accepts it.
    #[allow(dead_code)]
    pub version: toml::Value,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub zoom: ZoomConfig,
    #[serde(default)]
    pub rtms: RtmsConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    pub cluster: Option<Spanned<ClusterConfig>>,
    #[serde(default)]
    pub plugin: Vec<Spanned<PluginConfig>>,
    #[serde(default)]
    pub sink: Vec<Spanned<SinkConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: Option<Spanned<String>>,
    pub webhook_path: Option<Spanned<String>>,
    pub max_body_bytes: Num,
    pub timestamp_window_secs: Num,
    /// Replaced by the `[admin]` section; kept so its use gets an error naming the new keys.
    pub admin: Option<Spanned<toml::Value>>,
    pub max_connections: Num,
    pub max_connections_per_peer: Num,
    pub header_timeout_ms: Num,
    pub body_timeout_ms: Num,
    pub tls: Option<Spanned<TlsConfig>>,
    pub zoom_app: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub nats_url: Option<Spanned<String>>,
    pub host_id: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub lease_ms: Num,
    pub renew_ms: Num,
    pub ack_wait_ms: Num,
    pub dedup_window_ms: Num,
    pub drain_ms: Num,
    pub placement: Option<crate::model::Placement>,
    pub user_env: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub token_env: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub enabled: Option<bool>,
    pub listen: Option<Spanned<String>>,
    pub token_env: Option<Spanned<String>>,
    pub reload_min_interval_ms: Num,
    pub tls: Option<Spanned<TlsConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoomConfig {
    pub client_id_env: Option<Spanned<String>>,
    pub client_secret_env: Option<Spanned<String>>,
    pub webhook_secret_env: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    /// Read as a [`Secret`] from the start, so not even this type's `Debug` shows it.
    pub client_secret: Option<Spanned<Secret>>,
    pub webhook_secret: Option<Spanned<Secret>>,
    pub allow_plaintext_secrets: Option<bool>,
    pub ca_file: Option<Spanned<String>>,
    pub api_base_url: Option<Spanned<String>>,
    pub oauth_base_url: Option<Spanned<String>>,
    pub account_id_env: Option<Spanned<String>>,
    pub oauth_client_id_env: Option<Spanned<String>>,
    pub oauth_client_secret_env: Option<Spanned<String>>,
    pub event_ws_url: Option<Spanned<String>>,
    pub event_subscription_id: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmsConfig {
    pub connection_timeout_ms: Num,
    pub connection_max_attempts: Num,
    pub connection_retry_delay_ms: Num,
    pub reconnect_max_attempts: Num,
    pub reconnect_base_delay_ms: Num,
    pub reconnect_max_delay_ms: Num,
    pub reconnect_jitter_percent: Num,
    pub reconnect_healthy_after_ms: Num,
    pub reconnect_flap_max: Num,
    pub reconnect_flap_window_ms: Num,
    pub stop_drain_ms: Num,
    pub close_timeout_ms: Num,
    pub keepalive_interval_ms: Num,
    pub keepalive_timeout_ms: Num,
    pub webhook_wait_timeout_ms: Num,
    pub media: Option<Spanned<Vec<Spanned<MediaKind>>>>,
    pub socket_mode: Option<SocketMode>,
    pub buffer_data: Option<bool>,
    pub ws_ping: Option<bool>,
    pub events: Option<Vec<Spanned<EventSpec>>>,
    pub audio: Option<Spanned<AudioConfig>>,
    pub video: Option<Spanned<VideoConfig>>,
    pub deskshare: Option<Spanned<VideoConfig>>,
    pub transcript: Option<Spanned<TranscriptConfig>>,
    pub allowed_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub allow_insecure_ws: Option<bool>,
    pub proxy: Option<Spanned<String>>,
    pub max_streams: Num,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioConfig {
    pub codec: Option<Spanned<AudioCodecName>>,
    pub sample_rate: Num,
    pub channels: Num,
    pub frame_ms: Num,
    pub per_speaker: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioCodecName {
    L16,
    G711,
    G722,
    Opus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoConfig {
    pub codec: Option<Spanned<VideoCodecName>>,
    pub resolution: Option<ResolutionName>,
    pub fps: Num,
    /// `[rtms.video]` only: whose video Zoom sends.
    pub mode: Option<Spanned<VideoModeName>>,
    /// `[rtms.video]` with `mode = "individual"`: whom to follow.
    pub follow: Option<Spanned<FollowName>>,
    /// With `follow = "users"`: user ids or display names, in order of preference.
    pub users: Option<Spanned<Vec<String>>>,
    /// Participants followed at once, 1 to 4.
    pub max: Num,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VideoModeName {
    ActiveSpeaker,
    Gallery,
    Individual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FollowName {
    ActiveSpeaker,
    Sharer,
    FirstWithVideo,
    Users,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodecName {
    H264,
    Jpg,
    Png,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolutionName {
    Sd,
    Hd,
    Fhd,
    Qhd,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptConfig {
    /// Zoom's name (`src_language = "english"`) or TRANSCRIPT_LANGUAGE number.
    pub src_language: Option<Spanned<LanguageSpec>>,
    pub enable_lid: Option<bool>,
    /// Older names of `src_language` (a number only) and `enable_lid`.
    pub language: Option<Spanned<i64>>,
    pub detect_language: Option<bool>,
}

/// A transcript language: Zoom's name or its TRANSCRIPT_LANGUAGE number.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum LanguageSpec {
    Number(i64),
    Name(String),
}

/// An event subscription: a name such as `"participant-join"` or Zoom's EVENT_TYPE number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventSpec {
    Name(String),
    Number(i64),
}

impl<'de> Deserialize<'de> for EventSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EventSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event name (such as \"participant-join\") or an EVENT_TYPE number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EventSpec, E> {
                Ok(EventSpec::Name(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<EventSpec, E> {
                Ok(EventSpec::Number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<EventSpec, E> {
                Ok(EventSpec::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    pub cache_dir: Option<Spanned<String>>,
    pub epoch_tick_ms: Num,
    pub dead_letter_dir: Option<Spanned<String>>,
    pub dead_letter_max_mb: Num,
    pub dead_letter_files: Num,
    pub output_queue_mb: Num,
    pub tap_mb: Num,
    pub plugin_open_files: Num,
    pub pool: Option<Spanned<String>>,
    pub pool_instances: Num,
    pub shutdown_grace_ms: Num,
    pub journal_dir: Option<Spanned<String>>,
    pub journal_grace_ms: Num,
    pub close_streams_on_shutdown: Option<bool>,
    pub threads: Num,
    pub pin_threads: Option<bool>,
    #[serde(default)]
    pub reload: ReloadConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    pub watch: Option<bool>,
    pub debounce_ms: Num,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub name: Spanned<String>,
    pub component: Spanned<String>,
    pub media: Spanned<Vec<Spanned<MediaKind>>>,
    pub enabled: Option<bool>,
    pub products: Option<Spanned<Vec<Product>>>,
    pub meeting_ids: Option<Spanned<Vec<String>>>,
    pub users: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub dir: Vec<Spanned<DirConfig>>,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub restart: RestartConfig,
    /// Environment variables the plugin may read through `secrets.get` (contract 0.2).
    pub secrets: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub net: NetConfig,
    pub config: Option<Spanned<toml::Table>>,
}

/// `[plugin.state]`: the bounds of each of the plugin's state scopes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    pub max_keys: Num,
    pub max_bytes: Num,
}

/// `[plugin.net]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub http: Option<Spanned<Vec<Spanned<String>>>>,
    pub allow_private: Option<bool>,
    pub connect_timeout_ms: Num,
    pub first_byte_timeout_ms: Num,
    pub between_bytes_timeout_ms: Num,
    pub max_response_bytes: Num,
    pub max_concurrent: Num,
    pub requests_per_minute: Num,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirConfig {
    pub host: Spanned<String>,
    pub guest: Spanned<String>,
    pub read_only: Option<bool>,
    pub quota_mb: Num,
    pub symlinks: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub capacity: Num,
    /// `"block"`, `"drop-oldest"`, or a table of kind names to either.
    pub on_full: Option<Spanned<toml::Value>>,
    pub block_timeout_ms: Num,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub max_frames: Num,
    pub max_wait_ms: Num,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub memory_mb: Num,
    pub call_timeout_ms: Num,
    pub log_bytes_per_sec: Num,
    pub emit_bytes_per_sec: Num,
    pub units_per_session: Num,
    pub max_resources: Num,
    pub max_open_files: Num,
    pub max_inodes: Num,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    pub base_delay_ms: Num,
    pub max_delay_ms: Num,
    pub healthy_reset_ms: Num,
    pub max_failures: Num,
    pub window_ms: Num,
    pub rollback_traps: Num,
    pub rollback_window_ms: Num,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    #[serde(rename = "type")]
    pub kind: SinkType,
    pub path: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub min_severity: Option<Severity>,
    pub plugins: Option<Vec<Spanned<String>>>,
    pub kinds: Option<Vec<String>>,
    pub queue_mb: Num,
    pub connect_timeout_ms: Num,
    pub request_timeout_ms: Num,
    pub retries: Num,
    pub retry_backoff_ms: Num,
}
