//! `rtms-plugin`: the guest side of the rtms-host plugin contract (`wit/plugin.wit`) for Rust.
//!
//! What lives here:
//!
//! - [`bindings`]: the code `wit_bindgen` generates for the `plugin` world, made once for every
//!   plugin in this workspace. The WIT types are re-exported at the crate root ([`Frame`],
//!   [`SessionInfo`], [`Output`], ...).
//! - [`Plugin`] and [`export_plugin!`]: implement the trait on a type that holds the state of one
//!   session, and the macro exports it as the component's `handler`. The macro keeps the one
//!   value per instance in a global, so plugin code never touches globals itself.
//! - [`Config`] (in [`config`]): typed access to the `[plugin.config]` table given to `init`, with
//!   errors that name the key and the fix.
//! - Host calls: [`log`], [`emit`], [`now_ms`], and the [`info!`]-style logging macros.
//! - Contract 0.2's capabilities ([`caps`]): host-held state that outlives reloads and
//!   restarts ([`session_state`], [`plugin_state`]), granted [`secret`]s, and the units
//!   budget ([`charge`]); outgoing HTTP as blocking calls with retries ([`http`]); outgoing
//!   WebSockets ([`websocket`]).
//! - Names for the WIT enums ([`media_kind_name`], [`product_name`], [`parse_severity`]) so
//!   outputs and files spell them the way `plugin.wit` does, and small helpers
//!   ([`speaker_name`], [`chat_text`], [`file_safe`], [`open_session_file`]).
//!
//! What does not: plugin logic. Each plugin crate keeps its logic in plain modules that never
//! call the host, so they can be unit tested natively (`cargo test --target <host triple>`).
//! On targets other than wasm32 the host calls are stubs that panic; tests must not reach them.

pub mod caps;
pub mod config;
pub mod http;

#[doc(hidden)]
pub mod glue;

/// Bindings generated from `wit/plugin.wit` (world `plugin`), vendored in this crate so it
/// builds wherever it is.
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        pub_export_macro: true,
        default_bindings_module: "rtms_plugin::bindings",
    });
}

pub use bindings::exports::rtms::plugin::handler::Guest;
pub use bindings::rtms::plugin::types::{
    AudioCodec, AudioFormat, EndReason, Frame, Level, MediaKind, Output, Product, SessionInfo,
    Severity, TranscriptInfo,
};
/// Outbound WebSockets (`[plugin.net]` lists the `ws://` / `wss://` URLs): [`websocket::open`]
/// returns a [`websocket::Connection`] at once; what arrives comes to
/// [`Plugin::on_ws_message`] and [`Plugin::on_ws_event`].
pub mod websocket {
    pub use crate::bindings::rtms::plugin::websocket::{
        Connection, Finished, OnFull, OpenOptions, WsError, WsEvent, WsMessage, open,
    };
}
pub use caps::{Bucket, charge, plugin_state, secret, session_state, units_used};
pub use config::{Config, ConfigError};
#[doc(hidden)]
pub use serde_json;

/// A plugin: the state of one instance, which serves exactly one session.
///
/// The host calls, in this order and never at the same time:
///
/// 1. [`Plugin::init`] once, with the `[plugin.config]` table. Returning `Err` refuses the
///    configuration (during a reload the old version keeps running).
/// 2. [`Plugin::on_session_start`] once. `info.resumed` is true when an earlier instance
///    served this session (a reload, a restart after a trap, a reconnection).
/// 3. [`Plugin::on_frames`] any number of times, frames in `seq` order, none twice.
/// 4. [`Plugin::on_session_end`] once; the instance is dropped afterwards.
///
/// An `Err` from any method is logged and counted by the host and the instance is kept. A
/// panic is a trap: the host drops the instance and starts a fresh one for the next batch.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from its configuration.
    fn init(config: Config) -> Result<Self, String>;

    /// The session this instance serves has started or resumed.
    fn on_session_start(&mut self, info: SessionInfo) -> Result<(), String>;

    /// A batch of frames of the kinds this plugin subscribes to. Never empty.
    fn on_frames(&mut self, session: u64, frames: Vec<Frame>) -> Result<(), String>;

    /// The session has ended for this instance: flush and close what is open.
    fn on_session_end(&mut self, _session: u64, _reason: EndReason) -> Result<(), String> {
        Ok(())
    }

    /// A message arrived on the WebSocket `conn` ([`websocket::Connection::id`]), between
    /// batches of frames. Messages of a connection arrive in order.
    fn on_ws_message(&mut self, _conn: u64, _message: websocket::WsMessage) -> Result<(), String> {
        Ok(())
    }

    /// The WebSocket `conn` opened, closed or failed.
    fn on_ws_event(&mut self, _conn: u64, _event: websocket::WsEvent) -> Result<(), String> {
        Ok(())
    }
}

/// Exports a [`Plugin`] type as the component's `handler` interface.
///
/// Use it once, in the `cdylib` crate that becomes the component. On targets other than
/// wasm32 it expands to nothing, so the crate's unit tests build natively.
///
/// ```ignore
/// struct Counter { frames: u64 }
/// impl rtms_plugin::Plugin for Counter { /* ... */ }
/// rtms_plugin::export_plugin!(Counter);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // Native builds (unit tests) get no exports: the component ABI's symbol names are not
        // valid in native linker version scripts.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static INSTANCE: $crate::glue::Slot<$plugin> = const { $crate::glue::Slot::new() };
            }

            struct Handler;

            impl $crate::Guest for Handler {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::glue::init(&INSTANCE, config)
                }

                fn on_session_start(
                    info: $crate::SessionInfo,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::glue::with(&INSTANCE, |p: &mut $plugin| p.on_session_start(info))
                }

                fn on_frames(
                    session: u64,
                    frames: ::std::vec::Vec<$crate::Frame>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::glue::with(&INSTANCE, |p: &mut $plugin| p.on_frames(session, frames))
                }

                fn on_session_end(
                    session: u64,
                    reason: $crate::EndReason,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::glue::with(&INSTANCE, |p: &mut $plugin| {
                        p.on_session_end(session, reason)
                    })
                }

                fn on_ws_message(
                    conn: u64,
                    message: $crate::websocket::WsMessage,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::glue::with(&INSTANCE, |p: &mut $plugin| p.on_ws_message(conn, message))
                }

                fn on_ws_event(
                    conn: u64,
                    event: $crate::websocket::WsEvent,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::glue::with(&INSTANCE, |p: &mut $plugin| p.on_ws_event(conn, event))
                }
            }

    $crate::bindings::export!(Handler with_types_in $crate::bindings);
        };
    };
}

/// Writes a line to the host's log; the host labels it with the plugin and the session.
pub fn log(level: Level, message: &str) {
    bindings::rtms::plugin::host::log(level, message);
}

/// Sends an output to the sinks the pipeline configures. The host adds the plugin name, the
/// session and the time.
pub fn emit(output: &Output) {
    bindings::rtms::plugin::host::emit(output);
}

/// Wall-clock time in Unix milliseconds, from the host. Plugins whose output must be
/// reproducible should use frame timestamps instead.
pub fn now_ms() -> u64 {
    bindings::rtms::plugin::host::now_ms()
}

/// Logs at `trace` level with `format!` arguments.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log($crate::Level::Trace, &::std::format!($($arg)*)) };
}

/// Logs at `debug` level with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log($crate::Level::Debug, &::std::format!($($arg)*)) };
}

/// Logs at `info` level with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log($crate::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs at `warn` level with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log($crate::Level::Warn, &::std::format!($($arg)*)) };
}

/// Logs at `error` level with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log($crate::Level::Error, &::std::format!($($arg)*)) };
}

/// One of the four `handler` calls, by its WIT name. Test fixtures use it to choose where to
/// misbehave; plugins can use it in log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Init,
    SessionStart,
    Frames,
    SessionEnd,
}

impl Call {
    /// The accepted names, in call order.
    pub const NAMES: [&'static str; 4] =
        ["init", "on-session-start", "on-frames", "on-session-end"];

    /// Parses one of [`Call::NAMES`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "init" => Some(Self::Init),
            "on-session-start" => Some(Self::SessionStart),
            "on-frames" => Some(Self::Frames),
            "on-session-end" => Some(Self::SessionEnd),
            _ => None,
        }
    }

    /// Reads a call name from config key `key`, `default` when absent.
    pub fn from_config(config: &Config, key: &str, default: Self) -> Result<Self, ConfigError> {
        let default_name = Self::NAMES[default as usize];
        let name = config.choice_or(key, &Self::NAMES, default_name)?;
        Ok(Self::from_name(name).unwrap_or(default))
    }
}

/// The WIT name of a media kind: `audio`, `video`, `share`, `transcript`, `chat` or `event`.
pub fn media_kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::Share => "share",
        MediaKind::Transcript => "transcript",
        MediaKind::Chat => "chat",
        MediaKind::Event => "event",
    }
}

/// The WIT name of a product: `meeting`, `webinar`, `video-sdk` or `contact-center`.
pub fn product_name(product: Product) -> &'static str {
    match product {
        Product::Meeting => "meeting",
        Product::Webinar => "webinar",
        Product::VideoSdk => "video-sdk",
        Product::ContactCenter => "contact-center",
    }
}

/// The WIT name of a severity: `info`, `notice`, `warning` or `critical`.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Notice => "notice",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// Parses a severity by its WIT name, ignoring ASCII case.
pub fn parse_severity(name: &str) -> Option<Severity> {
    [
        Severity::Info,
        Severity::Notice,
        Severity::Warning,
        Severity::Critical,
    ]
    .into_iter()
    .find(|s| severity_name(*s).eq_ignore_ascii_case(name.trim()))
}

/// A short description of why a session ended, for logs and summaries: `stopped(6)`,
/// `connection-lost`, `reload`, `removed` or `shutdown`.
pub fn end_reason_name(reason: &EndReason) -> String {
    match reason {
        EndReason::Stopped(code) => format!("stopped({code})"),
        EndReason::ConnectionLost => "connection-lost".to_owned(),
        EndReason::Reload => "reload".to_owned(),
        EndReason::Removed => "removed".to_owned(),
        EndReason::Shutdown => "shutdown".to_owned(),
    }
}

/// The name to show for a frame's sender: the user's name, else `user <id>`, else `unknown`
/// (mixed audio carries the id `-1` and no name).
pub fn speaker_name(user_name: &str, user_id: &str) -> String {
    let name = user_name.trim();
    let id = user_id.trim();
    if !name.is_empty() {
        name.to_owned()
    } else if !id.is_empty() && id != "-1" {
        format!("user {id}")
    } else {
        "unknown".to_owned()
    }
}

/// The message of a chat frame's text. Newer Zoom servers send a JSON document; its message is
/// taken from the first of `content`, `message`, `text` or `msg` that is a string. Anything else
/// (plain text, or JSON without those keys) is returned as it is.
pub fn chat_text(raw: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if !raw.trim_start().starts_with('{') {
        return Cow::Borrowed(raw);
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(map)) => ["content", "message", "text", "msg"]
            .iter()
            .find_map(|k| map.get(*k).and_then(serde_json::Value::as_str))
            .map_or(Cow::Borrowed(raw), |s| Cow::Owned(s.to_owned())),
        _ => Cow::Borrowed(raw),
    }
}

/// A string safe to use in a file name: ASCII letters, digits, `-` and `.` kept, everything
/// else (stream and meeting ids may hold `/`, `+`, `=`) replaced by `_`. An empty or all-dot
/// result becomes `unknown`.
pub fn file_safe(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.chars().all(|c| c == '.') {
        "unknown".to_owned()
    } else {
        safe
    }
}

/// Opens a per-session output file the way every plugin should: a fresh session truncates
/// it, a resumed one (`resumed = true`) appends to what earlier instances wrote. The error
/// names the path and the usual fix.
pub fn open_session_file(path: &std::path::Path, resumed: bool) -> Result<std::fs::File, String> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    if resumed {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    options.open(path).map_err(|e| {
        format!(
            "cannot open {} for writing: {e}; grant its directory to the plugin in pipeline.toml \
             and use the guest path it is granted at",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_names_round_trip_and_ignore_case() {
        for s in [
            Severity::Info,
            Severity::Notice,
            Severity::Warning,
            Severity::Critical,
        ] {
            assert_eq!(parse_severity(severity_name(s)), Some(s));
        }
        assert_eq!(parse_severity(" WARNING "), Some(Severity::Warning));
        assert_eq!(parse_severity("urgent"), None);
    }

    #[test]
    fn names_match_the_wit_spelling() {
        assert_eq!(media_kind_name(MediaKind::Transcript), "transcript");
        assert_eq!(product_name(Product::VideoSdk), "video-sdk");
        assert_eq!(end_reason_name(&EndReason::Stopped(6)), "stopped(6)");
    }

    #[test]
    fn calls_parse_from_config_by_wit_name() {
        let config = Config::new(vec![("in".into(), "on-session-start".into())]);
        assert_eq!(
            Call::from_config(&config, "in", Call::Frames),
            Ok(Call::SessionStart)
        );
        assert_eq!(
            Call::from_config(&config, "at", Call::Frames),
            Ok(Call::Frames)
        );
        let config = Config::new(vec![("in".into(), "frames".into())]);
        assert!(Call::from_config(&config, "in", Call::Init).is_err());
    }

    #[test]
    fn file_safe_replaces_path_characters() {
        assert_eq!(file_safe("a/b+c=="), "a_b_c__");
        assert_eq!(file_safe("x-1.2"), "x-1.2");
        assert_eq!(file_safe(".."), "unknown");
        assert_eq!(file_safe(""), "unknown");
    }

    #[test]
    fn session_files_are_truncated_when_fresh_and_appended_when_resumed() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot make a temp dir: {e}"),
        };
        let dir = dir.path();
        let path = dir.join("f.txt");
        let write = |resumed: bool, text: &str| {
            use std::io::Write;
            let mut f = match open_session_file(&path, resumed) {
                Ok(f) => f,
                Err(e) => panic!("{e}"),
            };
            assert!(f.write_all(text.as_bytes()).is_ok());
        };
        write(false, "one\n");
        write(true, "two\n");
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("one\ntwo\n")
        );
        write(false, "three\n");
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("three\n")
        );
        let err = open_session_file(&dir.join("missing/f.txt"), false).unwrap_err();
        assert!(
            err.contains("missing/f.txt") && err.contains("grant"),
            "{err}"
        );
    }

    #[test]
    fn speakers_fall_back_to_the_id_then_unknown() {
        assert_eq!(speaker_name(" Ann ", "7"), "Ann");
        assert_eq!(speaker_name("", "16778240"), "user 16778240");
        assert_eq!(speaker_name("", "-1"), "unknown");
        assert_eq!(speaker_name("  ", ""), "unknown");
    }

    #[test]
    fn chat_json_gives_its_message_and_anything_else_is_kept_verbatim() {
        assert_eq!(
            chat_text(r#"{"content":"hi","sender":{"user_id":"1"}}"#),
            "hi"
        );
        assert_eq!(chat_text(r#"{"message":"hey"}"#), "hey");
        assert_eq!(
            chat_text(r#"{"operation_type":2}"#),
            r#"{"operation_type":2}"#
        );
        assert_eq!(chat_text("{not json"), "{not json");
        assert_eq!(chat_text("plain words"), "plain words");
    }
}
