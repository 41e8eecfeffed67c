//! From [`PipelineFile`] to [`Pipeline`]: defaults, environment overrides, range checks,
//! path resolution and cross-checks (names unique, plugins' media requested, sinks' plugins
//! defined).
//!
//! Each default is a named `const fn default_*()`; each check returns a [`ConfigError`] that
//! points at the value and says the allowed range or the fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rtms_proto::MediaParams;
use rtms_proto::params::{
    AudioParams, ChatParams, TranscriptParams, VideoParams, codec, content_type, data_opt,
    sample_rate,
};
use toml::Spanned;

use crate::LoadOptions;
use crate::env::Env;
use crate::error::{ConfigError, Source, suggest};
use crate::flatten::flatten_config;
use crate::model::*;
use crate::raw::*;

// === defaults ===

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
pub const fn default_stop_drain_ms() -> u64 {
    2_000
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
pub const fn default_batch_max_wait_ms() -> u64 {
    10
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
pub const fn default_dir_quota_mb() -> u64 {
    1024
}
pub const fn default_dead_letter_max_mb() -> u64 {
    64
}
pub const fn default_dead_letter_files() -> u64 {
    3
}
pub const fn default_memory_mb() -> u64 {
    64
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
/// `block` (lossless) when a plugin takes only text kinds, `drop-oldest` when it takes media
/// that arrives in real time and must not stall the stream.
pub fn default_on_full(media: MediaKinds) -> OnFull {
    let text: MediaKinds = [MediaKind::Transcript, MediaKind::Chat, MediaKind::Event]
        .into_iter()
        .collect();
    if media.is_subset(text) {
        OnFull::Block
    } else {
        OnFull::DropOldest
    }
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

/// The environment variables that override `[rtms]` keys.
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

const MAX_MS: u64 = 86_400_000;

/// Where a number came from, so an error can point at it.
#[derive(Clone, Debug)]
enum Origin {
    File(Range<usize>),
    Env { var: &'static str, value: String },
    Default,
}

/// A number and its origin.
#[derive(Clone, Debug)]
struct Value {
    n: u64,
    origin: Origin,
}

pub(crate) struct Resolver<'a> {
    pub src: Source<'a>,
    pub env: &'a dyn Env,
    /// The pipeline file's folder, absolute.
    pub dir: PathBuf,
    pub opts: LoadOptions,
    pub warnings: Vec<String>,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Removes `.` and resolves `..` lexically, so messages show clean paths.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn range_message(n: u64, min: u64, max: u64) -> Option<String> {
    if n < min {
        Some(format!(
            "is below the minimum {min} (allowed: {min} to {max})"
        ))
    } else if n > max {
        Some(format!(
            "is above the maximum {max} (allowed: {min} to {max})"
        ))
    } else {
        None
    }
}

impl Resolver<'_> {
    /// An error about a value, at its origin.
    fn fail(&self, key: &str, v: &Value, message: &str) -> ConfigError {
        match &v.origin {
            Origin::File(span) => self
                .src
                .invalid(span.clone(), format!("{key} = {} {message}", v.n)),
            Origin::Env { var, value } => ConfigError::EnvOverride {
                file: self.src.name.clone(),
                var: (*var).to_owned(),
                value: value.clone(),
                key: key.to_owned(),
                message: message.to_owned(),
            },
            Origin::Default => self
                .src
                .invalid(0..0, format!("{key} (default {}) {message}", v.n)),
        }
    }

    /// A number from the file or its default, range-checked.
    fn num(
        &self,
        raw: &Num,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<Value, ConfigError> {
        let v = match raw {
            Some(s) => Value {
                n: *s.get_ref(),
                origin: Origin::File(s.span()),
            },
            None => Value {
                n: default,
                origin: Origin::Default,
            },
        };
        self.check(key, v, min, max)
    }

    fn check(&self, key: &str, v: Value, min: u64, max: u64) -> Result<Value, ConfigError> {
        match range_message(v.n, min, max) {
            Some(m) => Err(self.fail(key, &v, &m)),
            None => Ok(v),
        }
    }

    /// An `[rtms]` number: the environment variable wins over the file.
    fn rtms_num(
        &self,
        raw: &Num,
        name: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<Value, ConfigError> {
        let key = format!("rtms.{name}");
        let var = ENV_OVERRIDES
            .iter()
            .find(|(_, k)| *k == name)
            .map(|(v, _)| *v);
        if let Some(var) = var
            && let Some(value) = self.env.var(var)
        {
            let n = value
                .trim()
                .parse::<u64>()
                .map_err(|_| ConfigError::EnvOverride {
                    file: self.src.name.clone(),
                    var: var.to_owned(),
                    value: value.clone(),
                    key: key.clone(),
                    message: "not a non-negative whole number".to_owned(),
                })?;
            let v = Value {
                n,
                origin: Origin::Env { var, value },
            };
            return self.check(&key, v, min, max);
        }
        self.num(raw, &key, default, min, max)
    }

    /// A path from the file, resolved against the pipeline's folder.
    fn path(&self, s: &str) -> PathBuf {
        normalize(&self.dir.join(s))
    }

    pub fn resolve(mut self, file: PipelineFile, path: PathBuf) -> Result<Pipeline, ConfigError> {
        let server = self.server(&file.server)?;
        let admin = self.admin(&file.admin)?;
        let zoom = self.zoom(&file.zoom)?;
        let runtime = self.runtime(&file.runtime)?;
        let plugins = self.plugins(&file.plugin)?;
        let rtms = self.rtms(&file.rtms, &file.plugin, &plugins)?;
        let sinks = self.sinks(&file.sink, &plugins)?;
        Ok(Pipeline {
            path,
            server,
            admin,
            zoom,
            rtms,
            runtime,
            plugins,
            sinks,
            warnings: self.warnings,
        })
    }

    fn server(&self, s: &ServerConfig) -> Result<Server, ConfigError> {
        if let Some(old) = &s.admin {
            return Err(self.src.invalid_at(
                old,
                "server.admin was replaced by the [admin] section: the admin routes now have their own listener. Remove server.admin and write `[admin]` with `enabled = true` or `false` (admin.listen defaults to \"127.0.0.1:9464\"; admin.token_env names the bearer token's variable, RTMS_ADMIN_TOKEN by default)".to_owned(),
            ));
        }
        let listen: SocketAddr = match &s.listen {
            Some(l) => l.get_ref().trim().parse().map_err(|_| {
                self.src.invalid_at(
                    l,
                    format!(
                        "server.listen = {:?} is not a socket address: write an IP and a port such as \"127.0.0.1:8080\" (host names are not resolved)",
                        l.get_ref()
                    ),
                )
            })?,
            None => default_listen()
                .parse()
                .map_err(|_| self.src.invalid(0..0, "internal: bad default listen address"))?,
        };
        let webhook_path = match &s.webhook_path {
            Some(p) => {
                let v = p.get_ref();
                if !v.starts_with('/') {
                    return Err(self.src.invalid_at(
                        p,
                        format!("server.webhook_path = {v:?} must start with '/': write \"/{v}\""),
                    ));
                }
                if v.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
                    return Err(self.src.invalid_at(
                        p,
                        format!("server.webhook_path = {v:?} may not contain spaces, '?' or '#': give the plain path Zoom posts to"),
                    ));
                }
                v.clone()
            }
            None => default_webhook_path().to_owned(),
        };
        let max_body = self.num(
            &s.max_body_bytes,
            "server.max_body_bytes",
            default_max_body_bytes(),
            1024,
            64 * 1024 * 1024,
        )?;
        let window = self.num(
            &s.timestamp_window_secs,
            "server.timestamp_window_secs",
            default_timestamp_window_secs(),
            1,
            3600,
        )?;
        let (max_connections, header_timeout, body_timeout, tls) = self.server_limits(s)?;
        Ok(Server {
            listen,
            webhook_path,
            max_body_bytes: to_usize(max_body.n),
            timestamp_window: Duration::from_secs(window.n),
            max_connections,
            header_timeout,
            body_timeout,
            tls,
        })
    }

    /// `[server]` connection limits and `[server.tls]`.
    fn server_limits(
        &self,
        s: &ServerConfig,
    ) -> Result<(usize, Duration, Duration, Option<ServerTls>), ConfigError> {
        let conns = self.num(
            &s.max_connections,
            "server.max_connections",
            default_max_connections(),
            1,
            1_000_000,
        )?;
        let header = self.num(
            &s.header_timeout_ms,
            "server.header_timeout_ms",
            default_header_timeout_ms(),
            100,
            600_000,
        )?;
        let body = self.num(
            &s.body_timeout_ms,
            "server.body_timeout_ms",
            default_body_timeout_ms(),
            100,
            600_000,
        )?;
        let tls = match &s.tls {
            Some(t) => {
                let t = t.get_ref();
                let file = |f: &Spanned<String>, key: &str| {
                    let p = self.path(f.get_ref());
                    if p.is_file() {
                        Ok(p)
                    } else {
                        Err(self.src.invalid_at(
                            f,
                            format!("server.tls.{key}: {} does not exist or is not a file: give a PEM file (relative paths are resolved against the pipeline file's folder)", p.display()),
                        ))
                    }
                };
                Some(ServerTls {
                    cert: file(&t.cert, "cert")?,
                    key: file(&t.key, "key")?,
                })
            }
            None => None,
        };
        Ok((to_usize(conns.n), ms(header.n), ms(body.n), tls))
    }

    /// `[rtms]` allowed_hosts, allow_insecure_ws and max_streams.
    fn rtms_intake(&self, r: &RtmsConfig) -> Result<(Vec<String>, bool, usize), ConfigError> {
        let hosts = match &r.allowed_hosts {
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(self.src.invalid_at(
                        list,
                        "rtms.allowed_hosts is empty: no stream could ever connect; list hosts such as \"*.zoom.us\"",
                    ));
                }
                let mut out = Vec::new();
                for h in list.get_ref() {
                    let v = h.get_ref().trim().to_ascii_lowercase();
                    let domain = v.strip_prefix("*.");
                    let ok = match domain {
                        Some(d) => d.contains('.') && !d.contains(['*', '/', ':', '@', ' ']),
                        None => {
                            !v.is_empty()
                                && (v.starts_with('[') || !v.contains(['*', '/', ':', '@', ' ']))
                        }
                    };
                    if !ok {
                        return Err(self.src.invalid_at(
                            h,
                            format!("rtms.allowed_hosts: {v:?} is not a host pattern: write a host name or IP (\"127.0.0.1\"), or *.<domain> for its subdomains (\"*.zoom.us\")"),
                        ));
                    }
                    out.push(v);
                }
                out
            }
            None => default_allowed_hosts().map(str::to_owned).to_vec(),
        };
        let max = self.num(
            &r.max_streams,
            "rtms.max_streams",
            default_max_streams(),
            1,
            1_000_000,
        )?;
        Ok((hosts, r.allow_insecure_ws.unwrap_or(false), to_usize(max.n)))
    }

    /// `[admin]`, and the refusal of the `[server] admin` key it replaced. An enabled listener
    /// bound beyond loopback needs a token, even when validating without secrets.
    fn admin(&self, a: &AdminConfig) -> Result<Admin, ConfigError> {
        let listen: SocketAddr = match &a.listen {
            Some(l) => l.get_ref().trim().parse().map_err(|_| {
                self.src.invalid_at(
                    l,
                    format!(
                        "admin.listen = {:?} is not a socket address: write an IP and a port such as \"{}\" (host names are not resolved)",
                        l.get_ref(),
                        default_admin_listen()
                    ),
                )
            })?,
            None => default_admin_listen()
                .parse()
                .map_err(|_| self.src.invalid(0..0, "internal: bad default admin address"))?,
        };
        let token_env = match &a.token_env {
            Some(n) => {
                let v = n.get_ref();
                if v.is_empty() || v.contains(['=', '\0']) || v.contains(char::is_whitespace) {
                    return Err(self.src.invalid_at(
                        n,
                        format!("admin.token_env = {v:?} is not an environment variable name: give the name of the variable that holds the token, such as {:?}", default_admin_token_env()),
                    ));
                }
                v.clone()
            }
            None => default_admin_token_env().to_owned(),
        };
        let interval = self.num(
            &a.reload_min_interval_ms,
            "admin.reload_min_interval_ms",
            default_reload_min_interval_ms(),
            0,
            MAX_MS,
        )?;
        let token = self.env.var(&token_env).filter(|t| !t.is_empty());
        let admin = Admin {
            enabled: a.enabled.unwrap_or(default_admin_enabled()),
            listen,
            token: token.clone().map(Secret::new),
            token_env,
            reload_min_interval: ms(interval.n),
        };
        let at = a.listen.as_ref().map_or(0..0, Spanned::span);
        if let Some(t) = &token
            && t.chars().count() < MIN_ADMIN_TOKEN_LEN
        {
            return Err(self.src.invalid(
                at,
                format!(
                    "the admin token in environment variable {} (named by admin.token_env) is shorter than {MIN_ADMIN_TOKEN_LEN} characters: set it to a long random value, such as 32 random hex digits",
                    admin.token_env
                ),
            ));
        }
        if admin.enabled && admin.exposed() && token.is_none() {
            return Err(self.src.invalid(
                at,
                format!(
                    "admin.listen = \"{listen}\" is reachable beyond this machine but no admin token is set: export {}=<a long random value> (named by admin.token_env), or bind admin.listen to a loopback address such as \"{}\", or set admin.enabled = false",
                    admin.token_env,
                    default_admin_listen()
                ),
            ));
        }
        Ok(admin)
    }

    fn env_name(
        &self,
        raw: &Option<Spanned<String>>,
        key: &str,
        default: &str,
    ) -> Result<String, ConfigError> {
        match raw {
            Some(n) => {
                let v = n.get_ref();
                if v.is_empty() || v.contains(['=', '\0']) || v.contains(char::is_whitespace) {
                    return Err(self.src.invalid_at(
                        n,
                        format!("zoom.{key} = {v:?} is not an environment variable name: give the name of the variable that holds the value, such as {default:?}"),
                    ));
                }
                Ok(v.clone())
            }
            None => Ok(default.to_owned()),
        }
    }

    /// Reads a credential: the file's plaintext value if allowed, else the environment.
    fn credential(
        &mut self,
        var: &str,
        env_key: &'static str,
        what: &'static str,
        plain: Option<&Spanned<String>>,
    ) -> Result<Option<String>, ConfigError> {
        if let Some(p) = plain {
            return Ok(Some(p.get_ref().clone()));
        }
        match self.env.var(var).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Some(v)),
            None if self.opts.require_secrets => Err(ConfigError::MissingSecret {
                file: self.src.name.clone(),
                var: var.to_owned(),
                key: env_key,
                what,
            }),
            None => {
                self.warnings.push(format!(
                    "{what} is missing: environment variable {var} is not set (named by zoom.{env_key}); export it before running the host"
                ));
                Ok(None)
            }
        }
    }

    fn zoom(&mut self, z: &ZoomConfig) -> Result<Zoom, ConfigError> {
        let client_id_env =
            self.env_name(&z.client_id_env, "client_id_env", default_client_id_env())?;
        let client_secret_env = self.env_name(
            &z.client_secret_env,
            "client_secret_env",
            default_client_secret_env(),
        )?;
        let webhook_secret_env = self.env_name(
            &z.webhook_secret_env,
            "webhook_secret_env",
            default_webhook_secret_env(),
        )?;
        let allow = z.allow_plaintext_secrets.unwrap_or(false);
        for (raw, key, env_key, var) in [
            (
                &z.client_secret,
                "client_secret",
                "client_secret_env",
                &client_secret_env,
            ),
            (
                &z.webhook_secret,
                "webhook_secret",
                "webhook_secret_env",
                &webhook_secret_env,
            ),
        ] {
            if let Some(s) = raw
                && !allow
            {
                return Err(self.src.invalid_at(
                    s,
                    format!("zoom.{key} holds a secret in plain text: remove it and export {var}=... instead (zoom.{env_key} names the variable), or set zoom.allow_plaintext_secrets = true if you must keep it in the file"),
                ));
            }
        }
        let client_id = self.credential(
            &client_id_env,
            "client_id_env",
            "the Zoom app's client id",
            z.client_id.as_ref(),
        )?;
        let client_secret = self.credential(
            &client_secret_env,
            "client_secret_env",
            "the Zoom app's client secret",
            z.client_secret.as_ref(),
        )?;
        let webhook_secret = self.credential(
            &webhook_secret_env,
            "webhook_secret_env",
            "the webhook secret token",
            z.webhook_secret.as_ref(),
        )?;
        let ca_file = match &z.ca_file {
            Some(c) => {
                let p = self.path(c.get_ref());
                if !p.is_file() {
                    return Err(self.src.invalid_at(
                        c,
                        format!("zoom.ca_file: {} does not exist or is not a file: give a PEM certificate (relative paths are resolved against the pipeline file's folder)", p.display()),
                    ));
                }
                Some(p)
            }
            None => None,
        };
        Ok(Zoom {
            client_id_env,
            client_secret_env,
            webhook_secret_env,
            client_id,
            client_secret: client_secret.map(Secret::new),
            webhook_secret: webhook_secret.map(Secret::new),
            ca_file,
        })
    }

    fn rtms(
        &mut self,
        r: &RtmsConfig,
        raw_plugins: &[Spanned<PluginConfig>],
        plugins: &[Plugin],
    ) -> Result<Rtms, ConfigError> {
        let connection_timeout = self.rtms_num(
            &r.connection_timeout_ms,
            "connection_timeout_ms",
            default_connection_timeout_ms(),
            100,
            MAX_MS,
        )?;
        let connection_max_attempts = self.rtms_num(
            &r.connection_max_attempts,
            "connection_max_attempts",
            default_connection_max_attempts(),
            1,
            1000,
        )?;
        let connection_retry_delay = self.rtms_num(
            &r.connection_retry_delay_ms,
            "connection_retry_delay_ms",
            default_connection_retry_delay_ms(),
            0,
            MAX_MS,
        )?;
        let reconnect_max_attempts = self.rtms_num(
            &r.reconnect_max_attempts,
            "reconnect_max_attempts",
            default_reconnect_max_attempts(),
            0,
            1000,
        )?;
        let reconnect_base_delay = self.rtms_num(
            &r.reconnect_base_delay_ms,
            "reconnect_base_delay_ms",
            default_reconnect_base_delay_ms(),
            0,
            MAX_MS,
        )?;
        let reconnect_max_delay = self.rtms_num(
            &r.reconnect_max_delay_ms,
            "reconnect_max_delay_ms",
            default_reconnect_max_delay_ms(),
            0,
            MAX_MS,
        )?;
        if reconnect_max_delay.n < reconnect_base_delay.n {
            let (key, v, other) = match reconnect_max_delay.origin {
                Origin::Default => (
                    "rtms.reconnect_base_delay_ms",
                    &reconnect_base_delay,
                    format!("reconnect_max_delay_ms ({})", reconnect_max_delay.n),
                ),
                _ => (
                    "rtms.reconnect_max_delay_ms",
                    &reconnect_max_delay,
                    format!("reconnect_base_delay_ms ({})", reconnect_base_delay.n),
                ),
            };
            let msg = if key.ends_with("max_delay_ms") {
                format!("is below {other}: the maximum delay must be at least the base delay")
            } else {
                format!("is above {other}: the base delay must not exceed the maximum delay")
            };
            return Err(self.fail(key, v, &msg));
        }
        let keepalive_interval = self.rtms_num(
            &r.keepalive_interval_ms,
            "keepalive_interval_ms",
            default_keepalive_interval_ms(),
            MIN_KEEPALIVE_INTERVAL_MS,
            MAX_MS,
        )?;
        let keepalive_timeout = self.rtms_num(
            &r.keepalive_timeout_ms,
            "keepalive_timeout_ms",
            default_keepalive_timeout_ms(),
            1,
            MAX_MS,
        )?;
        if keepalive_timeout.n <= keepalive_interval.n {
            let err = match keepalive_timeout.origin {
                Origin::Default => self.fail(
                    "rtms.keepalive_interval_ms",
                    &keepalive_interval,
                    &format!("is not below keepalive_timeout_ms ({}, the default): set keepalive_timeout_ms above the interval, e.g. to {}", keepalive_timeout.n, keepalive_interval.n.saturating_mul(3)),
                ),
                _ => self.fail(
                    "rtms.keepalive_timeout_ms",
                    &keepalive_timeout,
                    &format!("must be greater than keepalive_interval_ms ({}): raise it, e.g. to {} (three intervals)", keepalive_interval.n, keepalive_interval.n.saturating_mul(3)),
                ),
            };
            return Err(err);
        }
        let webhook_wait = self.rtms_num(
            &r.webhook_wait_timeout_ms,
            "webhook_wait_timeout_ms",
            default_webhook_wait_timeout_ms(),
            1000,
            MAX_MS,
        )?;

        // What to request: the explicit list, or what enabled plugins subscribe to.
        let mut wanted = MediaKinds::EMPTY;
        for p in plugins.iter().filter(|p| p.enabled) {
            wanted = wanted.union(p.media);
        }
        let media = match &r.media {
            Some(list) => {
                let mut set = MediaKinds::EMPTY;
                for k in list.get_ref() {
                    if *k.get_ref() == MediaKind::Event {
                        return Err(self.src.invalid_at(
                            k,
                            "rtms.media: \"event\" is not a media stream (events arrive on the signaling socket): remove it and list event subscriptions in rtms.events",
                        ));
                    }
                    set.insert(*k.get_ref());
                }
                for (raw, p) in raw_plugins.iter().zip(plugins) {
                    let mut needs = p.media;
                    needs.remove(MediaKind::Event);
                    if p.enabled && !needs.is_subset(set) {
                        let missing: MediaKinds =
                            needs.iter().filter(|k| !set.contains(*k)).collect();
                        return Err(self.src.invalid_at(
                            &raw.get_ref().media,
                            format!("plugin {:?} subscribes to {missing} but rtms.media {} does not request it: add it to rtms.media, or remove rtms.media to request what plugins subscribe to", p.name.as_str(), set),
                        ));
                    }
                }
                set
            }
            None => {
                let mut w = wanted;
                w.remove(MediaKind::Event);
                w
            }
        };
        let events = match &r.events {
            Some(list) => {
                let names = event_names();
                let mut out = Vec::new();
                for e in list {
                    let n = match e.get_ref() {
                        EventSpec::Name(name) => match names.get(name.as_str()) {
                            Some(n) => *n,
                            None => {
                                let hint = suggest(name, names.keys().copied())
                                    .map(|s| format!("did you mean {s:?}? "))
                                    .unwrap_or_default();
                                let all: Vec<&str> = names.keys().copied().collect();
                                return Err(self.src.invalid_at(
                                    e,
                                    format!("rtms.events: unknown event {name:?}: {hint}use one of {} or an EVENT_TYPE number", all.join(", ")),
                                ));
                            }
                        },
                        EventSpec::Number(n) => match u32::try_from(*n) {
                            Ok(n @ 1..=255) => n,
                            _ => {
                                return Err(self.src.invalid_at(
                                    e,
                                    format!("rtms.events: {n} is not an EVENT_TYPE number (allowed: 1 to 255)"),
                                ));
                            }
                        },
                    };
                    if !out.contains(&n) {
                        out.push(n);
                    }
                }
                out
            }
            None if wanted.contains(MediaKind::Event) => default_events(),
            None => Vec::new(),
        };
        let media_params = self.media_params(r, media)?;
        let (reconnect_jitter_percent, reconnect_healthy_after, stop_drain) = self.outage(r)?;
        let (allowed_hosts, allow_insecure_ws, max_streams) = self.rtms_intake(r)?;
        Ok(Rtms {
            connection_timeout: ms(connection_timeout.n),
            connection_max_attempts: to_u32(connection_max_attempts.n),
            connection_retry_delay: ms(connection_retry_delay.n),
            reconnect_max_attempts: to_u32(reconnect_max_attempts.n),
            reconnect_base_delay: ms(reconnect_base_delay.n),
            reconnect_max_delay: ms(reconnect_max_delay.n),
            reconnect_jitter_percent,
            reconnect_healthy_after,
            stop_drain,
            keepalive_interval: ms(keepalive_interval.n),
            keepalive_timeout: ms(keepalive_timeout.n),
            webhook_wait_timeout: ms(webhook_wait.n),
            media,
            socket_mode: r.socket_mode.unwrap_or(default_socket_mode()),
            buffer_data: r.buffer_data.unwrap_or(default_buffer_data()),
            events,
            media_params,
            allowed_hosts,
            allow_insecure_ws,
            max_streams,
        })
    }

    /// `[rtms]` keys of one outage and of the end: reconnection jitter, the healthy time that
    /// ends an outage, and the drain after a stop.
    fn outage(&self, r: &RtmsConfig) -> Result<(u32, Duration, Duration), ConfigError> {
        let jitter = self.rtms_num(
            &r.reconnect_jitter_percent,
            "reconnect_jitter_percent",
            default_reconnect_jitter_percent(),
            0,
            100,
        )?;
        let healthy = self.rtms_num(
            &r.reconnect_healthy_after_ms,
            "reconnect_healthy_after_ms",
            default_reconnect_healthy_after_ms(),
            100,
            MAX_MS,
        )?;
        let drain = self.rtms_num(
            &r.stop_drain_ms,
            "stop_drain_ms",
            default_stop_drain_ms(),
            0,
            60_000,
        )?;
        Ok((to_u32(jitter.n), ms(healthy.n), ms(drain.n)))
    }

    fn unused_section<T>(
        &mut self,
        section: &Option<Spanned<T>>,
        name: &str,
        kind: MediaKind,
        media: MediaKinds,
    ) {
        if let Some(s) = section
            && !media.contains(kind)
        {
            let at = self.src.at(s.span().start);
            self.warnings.push(format!(
                "{at}: [rtms.{name}] has no effect: {kind} is not requested (add it to rtms.media or subscribe a plugin to it)"
            ));
        }
    }

    fn media_params(
        &mut self,
        r: &RtmsConfig,
        media: MediaKinds,
    ) -> Result<MediaParams, ConfigError> {
        self.unused_section(&r.audio, "audio", MediaKind::Audio, media);
        self.unused_section(&r.video, "video", MediaKind::Video, media);
        self.unused_section(&r.deskshare, "deskshare", MediaKind::Share, media);
        self.unused_section(&r.transcript, "transcript", MediaKind::Transcript, media);
        let mut params = MediaParams::default();
        if media.contains(MediaKind::Audio) {
            let empty = AudioConfig::default();
            let a = r.audio.as_ref().map_or(&empty, |a| a.get_ref());
            let codec_name = a
                .codec
                .as_ref()
                .map_or(AudioCodecName::L16, |c| *c.get_ref());
            let rate = self.num(
                &a.sample_rate,
                "rtms.audio.sample_rate",
                16_000,
                0,
                u64::MAX,
            )?;
            let rate_code = match rate.n {
                8_000 => sample_rate::SR_8K,
                16_000 => sample_rate::SR_16K,
                32_000 => sample_rate::SR_32K,
                48_000 => sample_rate::SR_48K,
                _ => {
                    return Err(self.fail(
                        "rtms.audio.sample_rate",
                        &rate,
                        "is not supported: use 8000, 16000, 32000 or 48000",
                    ));
                }
            };
            let channels = self.num(&a.channels, "rtms.audio.channels", 1, 1, 2)?;
            if channels.n == 2 && codec_name != AudioCodecName::Opus {
                return Err(self.fail("rtms.audio.channels", &channels, "needs codec = \"opus\": Zoom sends stereo only as Opus; use channels = 1 or codec = \"opus\""));
            }
            let frame_ms = self.num(&a.frame_ms, "rtms.audio.frame_ms", 20, 10, 1000)?;
            params.audio = Some(AudioParams {
                content_type: Some(content_type::RAW_AUDIO),
                sample_rate: Some(rate_code),
                channel: Some(to_u32(channels.n)),
                codec: Some(match codec_name {
                    AudioCodecName::L16 => codec::L16,
                    AudioCodecName::G711 => codec::G711,
                    AudioCodecName::G722 => codec::G722,
                    AudioCodecName::Opus => codec::OPUS,
                }),
                data_opt: Some(if a.per_speaker.unwrap_or(false) {
                    data_opt::AUDIO_MULTI_STREAMS
                } else {
                    data_opt::AUDIO_MIXED_STREAM
                }),
                send_rate: Some(to_u32(frame_ms.n)),
            });
        }
        if media.contains(MediaKind::Video) {
            params.video = Some(self.video(&r.video, "video", VideoCodecName::H264)?);
        }
        if media.contains(MediaKind::Share) {
            params.deskshare = Some(self.video(&r.deskshare, "deskshare", VideoCodecName::Jpg)?);
        }
        if media.contains(MediaKind::Transcript) {
            let empty = TranscriptConfig::default();
            let t = r.transcript.as_ref().map_or(&empty, |t| t.get_ref());
            let language = match &t.language {
                Some(l) if !(-1..=36).contains(l.get_ref()) => {
                    return Err(self.src.invalid_at(
                        l,
                        format!("rtms.transcript.language = {} is not a TRANSCRIPT_LANGUAGE number (allowed: -1 for automatic, 0 to 36; 9 is English)", l.get_ref()),
                    ));
                }
                Some(l) => i32::try_from(*l.get_ref()).unwrap_or(-1),
                None => -1,
            };
            params.transcript = Some(TranscriptParams {
                content_type: Some(content_type::TEXT),
                src_language: Some(language),
                enable_lid: Some(t.detect_language.unwrap_or(true)),
            });
        }
        if media.contains(MediaKind::Chat) {
            params.chat = Some(ChatParams {
                content_type: Some(content_type::TEXT),
            });
        }
        Ok(params)
    }

    fn video(
        &self,
        raw: &Option<Spanned<VideoConfig>>,
        name: &str,
        default_codec: VideoCodecName,
    ) -> Result<VideoParams, ConfigError> {
        let empty = VideoConfig::default();
        let v = raw.as_ref().map_or(&empty, |v| v.get_ref());
        let c = v.codec.as_ref().map_or(default_codec, |c| *c.get_ref());
        let (max_fps, default_fps) = match (c, name) {
            (VideoCodecName::H264, _) => (30, 25),
            (_, "deskshare") => (5, 1),
            _ => (5, 5),
        };
        let key = format!("rtms.{name}.fps");
        let fps = match &v.fps {
            Some(f) => Value {
                n: *f.get_ref(),
                origin: Origin::File(f.span()),
            },
            None => Value {
                n: default_fps,
                origin: Origin::Default,
            },
        };
        if fps.n < 1 || fps.n > max_fps {
            let codec_name = match c {
                VideoCodecName::H264 => "h264",
                VideoCodecName::Jpg => "jpg",
                VideoCodecName::Png => "png",
            };
            return Err(self.fail(
                &key,
                &fps,
                &format!("is out of range for codec {codec_name:?}: JPG and PNG allow 1 to 5 frames per second, H.264 allows 1 to 30"),
            ));
        }
        Ok(VideoParams {
            content_type: Some(content_type::RAW_VIDEO),
            codec: Some(match c {
                VideoCodecName::H264 => codec::H264,
                VideoCodecName::Jpg => codec::JPG,
                VideoCodecName::Png => codec::PNG,
            }),
            resolution: Some(match v.resolution.unwrap_or(ResolutionName::Hd) {
                ResolutionName::Sd => 1,
                ResolutionName::Hd => 2,
                ResolutionName::Fhd => 3,
                ResolutionName::Qhd => 4,
            }),
            data_opt: (name == "video").then_some(data_opt::VIDEO_SINGLE_ACTIVE_STREAM),
            fps: Some(to_u32(fps.n)),
        })
    }

    fn runtime(&self, r: &RuntimeConfig) -> Result<Runtime, ConfigError> {
        let cache_dir = self.path(
            r.cache_dir
                .as_ref()
                .map_or(default_cache_dir(), |c| c.get_ref()),
        );
        let dead_letter_dir = self.path(
            r.dead_letter_dir
                .as_ref()
                .map_or(default_dead_letter_dir(), |c| c.get_ref()),
        );
        let tick = self.num(
            &r.epoch_tick_ms,
            "runtime.epoch_tick_ms",
            default_epoch_tick_ms(),
            1,
            1000,
        )?;
        let grace = self.num(
            &r.shutdown_grace_ms,
            "runtime.shutdown_grace_ms",
            default_shutdown_grace_ms(),
            0,
            600_000,
        )?;
        let debounce = self.num(
            &r.reload.debounce_ms,
            "runtime.reload.debounce_ms",
            default_debounce_ms(),
            0,
            60_000,
        )?;
        let (dead_letter_max_bytes, dead_letter_files) = self.dead_letter_caps(r)?;
        Ok(Runtime {
            cache_dir,
            epoch_tick: ms(tick.n),
            dead_letter_dir,
            dead_letter_max_bytes,
            dead_letter_files,
            shutdown_grace: ms(grace.n),
            reload: Reload {
                watch: r.reload.watch.unwrap_or(default_reload_watch()),
                debounce: ms(debounce.n),
            },
        })
    }

    /// `[runtime] dead_letter_max_mb` (in bytes) and `dead_letter_files`.
    fn dead_letter_caps(&self, r: &RuntimeConfig) -> Result<(u64, u32), ConfigError> {
        let max = self.num(
            &r.dead_letter_max_mb,
            "runtime.dead_letter_max_mb",
            default_dead_letter_max_mb(),
            1,
            1 << 20,
        )?;
        let files = self.num(
            &r.dead_letter_files,
            "runtime.dead_letter_files",
            default_dead_letter_files(),
            0,
            1000,
        )?;
        Ok((max.n << 20, to_u32(files.n)))
    }

    /// `[plugin.queue] block_timeout_ms` and `[plugin.limits]` log and emit rates.
    fn plugin_isolation(&self, p: &PluginConfig) -> Result<(Duration, u64, u64), ConfigError> {
        let block = self.num(
            &p.queue.block_timeout_ms,
            "plugin.queue.block_timeout_ms",
            default_block_timeout_ms(),
            1,
            600_000,
        )?;
        let log = self.num(
            &p.limits.log_bytes_per_sec,
            "plugin.limits.log_bytes_per_sec",
            default_log_bytes_per_sec(),
            1024,
            1 << 30,
        )?;
        let emit = self.num(
            &p.limits.emit_bytes_per_sec,
            "plugin.limits.emit_bytes_per_sec",
            default_emit_bytes_per_sec(),
            1024,
            1 << 30,
        )?;
        Ok((ms(block.n), log.n, emit.n))
    }

    /// `[[plugin.dir]] quota_mb`: `None` for a read-only grant.
    fn dir_quota(&self, d: &DirConfig, read_only: bool) -> Result<Option<u64>, ConfigError> {
        let q = self.num(
            &d.quota_mb,
            "plugin.dir.quota_mb",
            default_dir_quota_mb(),
            1,
            1 << 30,
        )?;
        Ok((!read_only).then_some(q.n))
    }

    fn plugins(&self, raw: &[Spanned<PluginConfig>]) -> Result<Vec<Plugin>, ConfigError> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for p in raw {
            let plugin = self.plugin(p.get_ref())?;
            let name = plugin.name.as_str().to_owned();
            if let Some(first) = seen.get(&name) {
                return Err(self.src.invalid_at(
                    &p.get_ref().name,
                    format!("plugin name {name:?} is already used by the plugin at line {first}: plugin names must be unique"),
                ));
            }
            seen.insert(name, self.src.at(p.get_ref().name.span().start).line);
            out.push(plugin);
        }
        Ok(out)
    }

    fn nonempty_list<T: Clone>(
        &self,
        raw: &Option<Spanned<Vec<T>>>,
        key: &str,
        name: &str,
        what: &str,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        match raw {
            Some(l) if l.get_ref().is_empty() => Err(self.src.invalid_at(
                l,
                format!("plugin {name:?}: {key} = [] matches nothing: list at least one, or remove the key to serve every {what}"),
            )),
            Some(l) => Ok(Some(l.get_ref().clone())),
            None => Ok(None),
        }
    }

    fn plugin(&self, p: &PluginConfig) -> Result<Plugin, ConfigError> {
        let name = PluginName::try_new(p.name.get_ref())
            .map_err(|m| self.src.invalid_at(&p.name, format!("plugin.name: {m}")))?;
        let n = name.as_str();
        let enabled = p.enabled.unwrap_or(default_enabled());
        let component = self.path(p.component.get_ref());
        if self.opts.check_components && enabled && !component.is_file() {
            return Err(self.src.invalid_at(
                &p.component,
                format!(
                    "plugin {n:?}: component {} does not exist; it may need building (cargo build --release --target wasm32-wasip2 in its workspace), or fix the path (relative paths are resolved against the pipeline file's folder)",
                    component.display()
                ),
            ));
        }
        if p.media.get_ref().is_empty() {
            return Err(self.src.invalid_at(
                &p.media,
                format!("plugin {n:?}: media = [] subscribes to nothing: list at least one of audio, video, share, transcript, chat, event"),
            ));
        }
        let media: MediaKinds = p.media.get_ref().iter().map(|k| *k.get_ref()).collect();
        let filter = PluginFilter {
            products: self.nonempty_list(&p.products, "products", n, "product")?,
            meeting_ids: self.nonempty_list(&p.meeting_ids, "meeting_ids", n, "meeting")?,
            users: self.nonempty_list(&p.users, "users", n, "user")?,
        };
        let mut dirs: Vec<DirGrant> = Vec::new();
        for d in &p.dir {
            let d_ref = d.get_ref();
            let guest = d_ref.guest.get_ref();
            if !guest.starts_with('/') {
                return Err(self.src.invalid_at(
                    &d_ref.guest,
                    format!("plugin {n:?}: dir guest = {guest:?} is not an absolute guest path: write it as \"/{guest}\""),
                ));
            }
            if guest.split('/').any(|c| c == "..") {
                return Err(self.src.invalid_at(
                    &d_ref.guest,
                    format!("plugin {n:?}: dir guest = {guest:?} may not contain \"..\": name the directory directly, such as \"/out\""),
                ));
            }
            if dirs.iter().any(|g| g.guest == *guest) {
                return Err(self.src.invalid_at(
                    &d_ref.guest,
                    format!("plugin {n:?}: dir guest = {guest:?} is granted twice: give each [[plugin.dir]] its own guest path"),
                ));
            }
            let host = self.path(d_ref.host.get_ref());
            if host.exists() && !host.is_dir() {
                return Err(self.src.invalid_at(
                    &d_ref.host,
                    format!("plugin {n:?}: dir host {} exists and is not a directory: point it at a directory", host.display()),
                ));
            }
            if let Some(parent) = host.parent()
                && !host.exists()
                && !parent.is_dir()
            {
                return Err(self.src.invalid_at(
                    &d_ref.host,
                    format!("plugin {n:?}: dir host {}: its parent {} does not exist; the host creates the directory itself at start, but not its parents: create {} or fix the path", host.display(), parent.display(), parent.display()),
                ));
            }
            let read_only = d_ref.read_only.unwrap_or(false);
            dirs.push(DirGrant {
                host,
                guest: guest.clone(),
                read_only,
                quota_mb: self.dir_quota(d_ref, read_only)?,
            });
        }
        let capacity = self.num(
            &p.queue.capacity,
            "plugin.queue.capacity",
            default_queue_capacity(),
            1,
            1 << 20,
        )?;
        let max_frames = self.num(
            &p.batch.max_frames,
            "plugin.batch.max_frames",
            default_batch_max_frames(),
            1,
            4096,
        )?;
        let max_wait = self.num(
            &p.batch.max_wait_ms,
            "plugin.batch.max_wait_ms",
            default_batch_max_wait_ms(),
            0,
            60_000,
        )?;
        let memory = self.num(
            &p.limits.memory_mb,
            "plugin.limits.memory_mb",
            default_memory_mb(),
            1,
            4096,
        )?;
        let call_timeout = self.num(
            &p.limits.call_timeout_ms,
            "plugin.limits.call_timeout_ms",
            default_call_timeout_ms(),
            1,
            600_000,
        )?;
        let r = &p.restart;
        let base = self.num(
            &r.base_delay_ms,
            "plugin.restart.base_delay_ms",
            default_restart_base_delay_ms(),
            0,
            MAX_MS,
        )?;
        let max = self.num(
            &r.max_delay_ms,
            "plugin.restart.max_delay_ms",
            default_restart_max_delay_ms(),
            0,
            MAX_MS,
        )?;
        if max.n < base.n {
            let (key, v) = match max.origin {
                Origin::Default => ("plugin.restart.base_delay_ms", &base),
                _ => ("plugin.restart.max_delay_ms", &max),
            };
            return Err(self.fail(key, v, &format!("leaves max_delay_ms ({}) below base_delay_ms ({}): the maximum delay must be at least the base delay", max.n, base.n)));
        }
        let healthy = self.num(
            &r.healthy_reset_ms,
            "plugin.restart.healthy_reset_ms",
            default_healthy_reset_ms(),
            0,
            MAX_MS,
        )?;
        let failures = self.num(
            &r.max_failures,
            "plugin.restart.max_failures",
            default_max_failures(),
            1,
            10_000,
        )?;
        let window = self.num(
            &r.window_ms,
            "plugin.restart.window_ms",
            default_failure_window_ms(),
            1,
            MAX_MS,
        )?;
        let rollback_traps = self.num(
            &r.rollback_traps,
            "plugin.restart.rollback_traps",
            default_rollback_traps(),
            1,
            10_000,
        )?;
        let rollback_window = self.num(
            &r.rollback_window_ms,
            "plugin.restart.rollback_window_ms",
            default_rollback_window_ms(),
            0,
            MAX_MS,
        )?;
        let (block_timeout, log_rate, emit_rate) = self.plugin_isolation(p)?;
        let config = match &p.config {
            Some(c) => flatten_config(c.get_ref()).map_err(|m| {
                self.src
                    .invalid_at(c, format!("plugin {n:?}: [plugin.config] {m}"))
            })?,
            None => Vec::new(),
        };
        Ok(Plugin {
            name,
            component,
            enabled,
            media,
            filter,
            dirs,
            queue: Queue {
                capacity: to_usize(capacity.n),
                on_full: p.queue.on_full.unwrap_or_else(|| default_on_full(media)),
                block_timeout,
            },
            batch: Batch {
                max_frames: to_usize(max_frames.n.min(capacity.n)),
                max_wait: ms(max_wait.n),
            },
            limits: Limits {
                memory_mb: to_u32(memory.n),
                call_timeout: ms(call_timeout.n),
                log_bytes_per_sec: log_rate,
                emit_bytes_per_sec: emit_rate,
            },
            restart: Restart {
                base_delay: ms(base.n),
                max_delay: ms(max.n),
                healthy_reset: ms(healthy.n),
                max_failures: to_u32(failures.n),
                window: ms(window.n),
                rollback_traps: to_u32(rollback_traps.n),
                rollback_window: ms(rollback_window.n),
            },
            config,
        })
    }

    fn sinks(
        &self,
        raw: &[Spanned<SinkConfig>],
        plugins: &[Plugin],
    ) -> Result<Vec<Sink>, ConfigError> {
        if raw.is_empty() {
            return Ok(vec![Sink {
                target: SinkTarget::Stdout,
                filter: SinkFilter {
                    min_severity: default_min_severity(),
                    plugins: None,
                    kinds: None,
                },
            }]);
        }
        raw.iter().map(|s| self.sink(s, plugins)).collect()
    }

    fn sink(&self, s: &Spanned<SinkConfig>, plugins: &[Plugin]) -> Result<Sink, ConfigError> {
        let c = s.get_ref();
        let target = match c.kind {
            SinkType::Stdout => {
                if let Some(extra) = c.path.as_ref().or(c.url.as_ref()) {
                    return Err(self.src.invalid_at(extra, "a sink of type \"stdout\" takes no path or url: remove it, or set type = \"jsonl\" / \"http\""));
                }
                SinkTarget::Stdout
            }
            SinkType::Jsonl => {
                if let Some(u) = &c.url {
                    return Err(self.src.invalid_at(u, "a sink of type \"jsonl\" takes a path, not a url: remove url, or set type = \"http\""));
                }
                let Some(p) = &c.path else {
                    return Err(self.src.invalid_at(
                        s,
                        "a sink of type \"jsonl\" needs a file: add path = \"out/outputs.jsonl\"",
                    ));
                };
                SinkTarget::Jsonl {
                    path: self.path(p.get_ref()),
                }
            }
            SinkType::Http => {
                if let Some(p) = &c.path {
                    return Err(self.src.invalid_at(p, "a sink of type \"http\" takes a url, not a path: remove path, or set type = \"jsonl\""));
                }
                let Some(u) = &c.url else {
                    return Err(self.src.invalid_at(s, "a sink of type \"http\" needs an endpoint: add url = \"http://127.0.0.1:9000/alerts\""));
                };
                let url = u.get_ref();
                let rest = url.strip_prefix("http://");
                if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                    return Err(self.src.invalid_at(
                        u,
                        format!("sink.url = {url:?} is not an http:// URL: only plain http:// endpoints are supported for now (for https, put a TLS proxy on loopback in front of it)"),
                    ));
                }
                SinkTarget::Http { url: url.clone() }
            }
        };
        let sink_plugins = match &c.plugins {
            Some(list) => {
                let mut names = Vec::new();
                for p in list {
                    let name = p.get_ref();
                    match plugins.iter().find(|q| q.name.as_str() == name) {
                        Some(q) => names.push(q.name.clone()),
                        None => {
                            let hint = suggest(name, plugins.iter().map(|q| q.name.as_str()))
                                .map(|s| format!("; did you mean {s:?}?"))
                                .unwrap_or_default();
                            return Err(self.src.invalid_at(
                                p,
                                format!("sink.plugins: no plugin is named {name:?}{hint}"),
                            ));
                        }
                    }
                }
                Some(names)
            }
            None => None,
        };
        Ok(Sink {
            target,
            filter: SinkFilter {
                min_severity: c.min_severity.unwrap_or(default_min_severity()),
                plugins: sink_plugins,
                kinds: c.kinds.clone(),
            },
        })
    }
}
