//! Zoom's RTMS enumerations as named constants (source: Zoom's SDK `rtms.h`, GA status table).

/// `msg_type` values.
pub mod msg_type {
    pub const SIGNALING_HAND_SHAKE_REQ: u32 = 1;
    pub const SIGNALING_HAND_SHAKE_RESP: u32 = 2;
    pub const DATA_HAND_SHAKE_REQ: u32 = 3;
    pub const DATA_HAND_SHAKE_RESP: u32 = 4;
    pub const EVENT_SUBSCRIPTION: u32 = 5;
    pub const EVENT_UPDATE: u32 = 6;
    pub const CLIENT_READY_ACK: u32 = 7;
    pub const STREAM_STATE_UPDATE: u32 = 8;
    pub const SESSION_STATE_UPDATE: u32 = 9;
    pub const SESSION_STATE_REQ: u32 = 10;
    pub const SESSION_STATE_RESP: u32 = 11;
    pub const KEEP_ALIVE_REQ: u32 = 12;
    pub const KEEP_ALIVE_RESP: u32 = 13;
    pub const MEDIA_DATA_AUDIO: u32 = 14;
    pub const MEDIA_DATA_VIDEO: u32 = 15;
    pub const MEDIA_DATA_SHARE: u32 = 16;
    pub const MEDIA_DATA_TRANSCRIPT: u32 = 17;
    pub const MEDIA_DATA_CHAT: u32 = 18;
    pub const STREAM_STATE_REQ: u32 = 19;
    pub const STREAM_STATE_RESP: u32 = 20;
    pub const STREAM_CLOSE_REQ: u32 = 21;
    pub const STREAM_CLOSE_RESP: u32 = 22;
    pub const VIDEO_SUBSCRIPTION_REQ: u32 = 28;
    pub const VIDEO_SUBSCRIPTION_RESP: u32 = 29;
}

/// Bits of the `media_type` mask in DATA_HAND_SHAKE_REQ.
pub mod media_type {
    pub const AUDIO: u32 = 1;
    pub const VIDEO: u32 = 2;
    pub const DESKSHARE: u32 = 4;
    pub const TRANSCRIPT: u32 = 8;
    pub const CHAT: u32 = 16;
    /// Everything, on one socket (the `all` URL).
    pub const ALL: u32 = 32;
    /// The five single-type bits together.
    pub const EVERY_TYPE: u32 = AUDIO | VIDEO | DESKSHARE | TRANSCRIPT | CHAT;

    /// The key of `media_server.server_urls` that serves one single-type bit.
    pub fn url_key(bit: u32) -> Option<&'static str> {
        Some(match bit {
            AUDIO => "audio",
            VIDEO => "video",
            DESKSHARE => "deskshare",
            TRANSCRIPT => "transcript",
            CHAT => "chat",
            ALL => "all",
            _ => return None,
        })
    }

    /// Expands a mask (32 meaning every type) into its single-type bits.
    pub fn bits(mask: u32) -> impl Iterator<Item = u32> {
        let mask = if mask & ALL != 0 { EVERY_TYPE } else { mask };
        [AUDIO, VIDEO, DESKSHARE, TRANSCRIPT, CHAT]
            .into_iter()
            .filter(move |b| mask & b != 0)
    }
}

/// `status_code` values: Zoom's GA table (`rtms.h`, RTMSManager's Python library; 46 and 47
/// from the June 2026 protocol definitions). Only [`status::OK`] is success. The beta table of
/// Zoom's old mock numbers the same refusals differently; servers that still speak it are told
/// apart by their `reason` text only ([`status::is_duplicate`]).
pub mod status {
    pub const OK: u32 = 0;
    pub const INVALID_MESSAGE_TYPE: u32 = 1;
    pub const INVALID_RTMS_STREAM_ID: u32 = 2;
    pub const INVALID_SIGNATURE: u32 = 3;
    pub const INVALID_PAYLOAD: u32 = 4;
    pub const INVALID_EVENTS: u32 = 5;
    pub const INVALID_EVENT_TYPE: u32 = 6;
    pub const INVALID_MEDIA_TYPE: u32 = 7;
    pub const DUPLICATE_SIGNAL_REQUEST: u32 = 8;
    pub const MEDIA_TYPE_AUDIO_NOT_SUPPORT: u32 = 9;
    pub const MEDIA_TYPE_VIDEO_NOT_SUPPORT: u32 = 10;
    pub const MEDIA_TYPE_DESKSHARE_NOT_SUPPORT: u32 = 11;
    pub const MEDIA_TYPE_TRANSCRIPT_NOT_SUPPORT: u32 = 12;
    pub const MEDIA_TYPE_CHAT_NOT_SUPPORT: u32 = 13;
    pub const MEDIA_TYPE_INVALID_VALUE: u32 = 14;
    pub const MEDIA_DATA_ALL_CONNECTION_EXIST: u32 = 15;
    pub const DUPLICATE_MEDIA_DATA_CONNECTION: u32 = 16;
    pub const INVALID_MEDIA_PARAMS: u32 = 17;
    pub const INVALID_MEDIA_AUDIO_PARAMS: u32 = 18;
    pub const INVALID_MEDIA_AUDIO_CONTENT_TYPE: u32 = 19;
    pub const INVALID_MEDIA_AUDIO_SAMPLE_RATE: u32 = 20;
    pub const INVALID_MEDIA_AUDIO_CHANNEL: u32 = 21;
    pub const INVALID_MEDIA_AUDIO_CODEC: u32 = 22;
    pub const INVALID_MEDIA_AUDIO_DATA_OPT: u32 = 23;
    pub const INVALID_MEDIA_AUDIO_SEND_RATE: u32 = 24;
    pub const INVALID_MEDIA_VIDEO_PARAMS: u32 = 25;
    pub const INVALID_MEDIA_VIDEO_CONTENT_TYPE: u32 = 26;
    pub const INVALID_MEDIA_VIDEO_CODEC: u32 = 27;
    pub const INVALID_MEDIA_VIDEO_RESOLUTION: u32 = 28;
    pub const INVALID_MEDIA_VIDEO_DATA_OPT: u32 = 29;
    pub const INVALID_MEDIA_VIDEO_FPS: u32 = 30;
    pub const INVALID_MEDIA_DESKSHARE_PARAMS: u32 = 31;
    pub const INVALID_MEDIA_DESKSHARE_CONTENT_TYPE: u32 = 32;
    pub const INVALID_MEDIA_DESKSHARE_CODEC: u32 = 33;
    pub const INVALID_MEDIA_DESKSHARE_RESOLUTION: u32 = 34;
    pub const INVALID_MEDIA_DESKSHARE_FPS: u32 = 35;
    pub const INVALID_MEDIA_TRANSCRIPT_PARAMS: u32 = 36;
    pub const INVALID_MEDIA_TRANSCRIPT_CONTENT_TYPE: u32 = 37;
    pub const INVALID_MEDIA_CHAT_PARAMS: u32 = 38;
    pub const INVALID_MEDIA_CHAT_CONTENT_TYPE: u32 = 39;
    pub const INVALID_RTMS_SESSION_ID: u32 = 40;
    pub const INVALID_CLIENT_READY_ACK: u32 = 41;
    pub const INVALID_EVENT_SUBSCRIBE: u32 = 42;
    pub const INVALID_MEDIA_TRANSCRIPT_SROUCE_LANGUAGE: u32 = 43;
    pub const INVALID_MEDIA_TRANSCRIPT_TARGET_LANGUAGE: u32 = 46;
    pub const CHAT_SESSION_KEY_NOT_AVAILABLE: u32 = 47;

    /// Every code of the GA table with its name, in order (44 and 45 are unassigned).
    pub const TABLE: [(u32, &str); 46] = [
        (OK, "OK"),
        (INVALID_MESSAGE_TYPE, "INVALID_MESSAGE_TYPE"),
        (INVALID_RTMS_STREAM_ID, "INVALID_RTMS_STREAM_ID"),
        (INVALID_SIGNATURE, "INVALID_SIGNATURE"),
        (INVALID_PAYLOAD, "INVALID_PAYLOAD"),
        (INVALID_EVENTS, "INVALID_EVENTS"),
        (INVALID_EVENT_TYPE, "INVALID_EVENT_TYPE"),
        (INVALID_MEDIA_TYPE, "INVALID_MEDIA_TYPE"),
        (DUPLICATE_SIGNAL_REQUEST, "DUPLICATE_SIGNAL_REQUEST"),
        (MEDIA_TYPE_AUDIO_NOT_SUPPORT, "MEDIA_TYPE_AUDIO_NOT_SUPPORT"),
        (MEDIA_TYPE_VIDEO_NOT_SUPPORT, "MEDIA_TYPE_VIDEO_NOT_SUPPORT"),
        (
            MEDIA_TYPE_DESKSHARE_NOT_SUPPORT,
            "MEDIA_TYPE_DESKSHARE_NOT_SUPPORT",
        ),
        (
            MEDIA_TYPE_TRANSCRIPT_NOT_SUPPORT,
            "MEDIA_TYPE_TRANSCRIPT_NOT_SUPPORT",
        ),
        (MEDIA_TYPE_CHAT_NOT_SUPPORT, "MEDIA_TYPE_CHAT_NOT_SUPPORT"),
        (MEDIA_TYPE_INVALID_VALUE, "MEDIA_TYPE_INVALID_VALUE"),
        (
            MEDIA_DATA_ALL_CONNECTION_EXIST,
            "MEDIA_DATA_ALL_CONNECTION_EXIST",
        ),
        (
            DUPLICATE_MEDIA_DATA_CONNECTION,
            "DUPLICATE_MEDIA_DATA_CONNECTION",
        ),
        (INVALID_MEDIA_PARAMS, "INVALID_MEDIA_PARAMS"),
        (INVALID_MEDIA_AUDIO_PARAMS, "INVALID_MEDIA_AUDIO_PARAMS"),
        (
            INVALID_MEDIA_AUDIO_CONTENT_TYPE,
            "INVALID_MEDIA_AUDIO_CONTENT_TYPE",
        ),
        (
            INVALID_MEDIA_AUDIO_SAMPLE_RATE,
            "INVALID_MEDIA_AUDIO_SAMPLE_RATE",
        ),
        (INVALID_MEDIA_AUDIO_CHANNEL, "INVALID_MEDIA_AUDIO_CHANNEL"),
        (INVALID_MEDIA_AUDIO_CODEC, "INVALID_MEDIA_AUDIO_CODEC"),
        (INVALID_MEDIA_AUDIO_DATA_OPT, "INVALID_MEDIA_AUDIO_DATA_OPT"),
        (
            INVALID_MEDIA_AUDIO_SEND_RATE,
            "INVALID_MEDIA_AUDIO_SEND_RATE",
        ),
        (INVALID_MEDIA_VIDEO_PARAMS, "INVALID_MEDIA_VIDEO_PARAMS"),
        (
            INVALID_MEDIA_VIDEO_CONTENT_TYPE,
            "INVALID_MEDIA_VIDEO_CONTENT_TYPE",
        ),
        (INVALID_MEDIA_VIDEO_CODEC, "INVALID_MEDIA_VIDEO_CODEC"),
        (
            INVALID_MEDIA_VIDEO_RESOLUTION,
            "INVALID_MEDIA_VIDEO_RESOLUTION",
        ),
        (INVALID_MEDIA_VIDEO_DATA_OPT, "INVALID_MEDIA_VIDEO_DATA_OPT"),
        (INVALID_MEDIA_VIDEO_FPS, "INVALID_MEDIA_VIDEO_FPS"),
        (
            INVALID_MEDIA_DESKSHARE_PARAMS,
            "INVALID_MEDIA_DESKSHARE_PARAMS",
        ),
        (
            INVALID_MEDIA_DESKSHARE_CONTENT_TYPE,
            "INVALID_MEDIA_DESKSHARE_CONTENT_TYPE",
        ),
        (
            INVALID_MEDIA_DESKSHARE_CODEC,
            "INVALID_MEDIA_DESKSHARE_CODEC",
        ),
        (
            INVALID_MEDIA_DESKSHARE_RESOLUTION,
            "INVALID_MEDIA_DESKSHARE_RESOLUTION",
        ),
        (INVALID_MEDIA_DESKSHARE_FPS, "INVALID_MEDIA_DESKSHARE_FPS"),
        (
            INVALID_MEDIA_TRANSCRIPT_PARAMS,
            "INVALID_MEDIA_TRANSCRIPT_PARAMS",
        ),
        (
            INVALID_MEDIA_TRANSCRIPT_CONTENT_TYPE,
            "INVALID_MEDIA_TRANSCRIPT_CONTENT_TYPE",
        ),
        (INVALID_MEDIA_CHAT_PARAMS, "INVALID_MEDIA_CHAT_PARAMS"),
        (
            INVALID_MEDIA_CHAT_CONTENT_TYPE,
            "INVALID_MEDIA_CHAT_CONTENT_TYPE",
        ),
        (INVALID_RTMS_SESSION_ID, "INVALID_RTMS_SESSION_ID"),
        (INVALID_CLIENT_READY_ACK, "INVALID_CLIENT_READY_ACK"),
        (INVALID_EVENT_SUBSCRIBE, "INVALID_EVENT_SUBSCRIBE"),
        (
            INVALID_MEDIA_TRANSCRIPT_SROUCE_LANGUAGE,
            "INVALID_MEDIA_TRANSCRIPT_SROUCE_LANGUAGE",
        ),
        (
            INVALID_MEDIA_TRANSCRIPT_TARGET_LANGUAGE,
            "INVALID_MEDIA_TRANSCRIPT_TARGET_LANGUAGE",
        ),
        (
            CHAT_SESSION_KEY_NOT_AVAILABLE,
            "CHAT_SESSION_KEY_NOT_AVAILABLE",
        ),
    ];

    /// Zoom's name for a status code (log lines, metric labels): one of [`TABLE`]'s, or
    /// `UNKNOWN` for a number the GA table does not assign (a fixed set, so a server cannot
    /// grow a metric's labels).
    pub fn name(code: u32) -> &'static str {
        TABLE
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("UNKNOWN", |(_, n)| n)
    }

    /// True when a failed handshake reports a duplicate connection: code 8 or 16, or a reason
    /// that says "duplicate" (servers using the beta numbering).
    pub fn is_duplicate(code: u32, reason: &str) -> bool {
        code == DUPLICATE_SIGNAL_REQUEST
            || code == DUPLICATE_MEDIA_DATA_CONNECTION
            || reason.to_ascii_lowercase().contains("duplicate")
    }
}

/// TRANSCRIPT_LANGUAGE values (`src_language` of the transcript's media parameters), as Zoom's
/// SDK 1.1 numbers them (`rtms.TranscriptLanguage`). -1 (`NONE`) leaves the language to Zoom's
/// automatic detection.
pub mod transcript_language {
    /// Every language with its number, in order.
    pub const TABLE: [(i32, &str); 38] = [
        (-1, "NONE"),
        (0, "ARABIC"),
        (1, "BENGALI"),
        (2, "CANTONESE"),
        (3, "CATALAN"),
        (4, "CHINESE_SIMPLIFIED"),
        (5, "CHINESE_TRADITIONAL"),
        (6, "CZECH"),
        (7, "DANISH"),
        (8, "DUTCH"),
        (9, "ENGLISH"),
        (10, "ESTONIAN"),
        (11, "FINNISH"),
        (12, "FRENCH_CANADA"),
        (13, "FRENCH_FRANCE"),
        (14, "GERMAN"),
        (15, "HEBREW"),
        (16, "HINDI"),
        (17, "HUNGARIAN"),
        (18, "INDONESIAN"),
        (19, "ITALIAN"),
        (20, "JAPANESE"),
        (21, "KOREAN"),
        (22, "MALAY"),
        (23, "PERSIAN"),
        (24, "POLISH"),
        (25, "PORTUGUESE"),
        (26, "ROMANIAN"),
        (27, "RUSSIAN"),
        (28, "SPANISH"),
        (29, "SWEDISH"),
        (30, "TAGALOG"),
        (31, "TAMIL"),
        (32, "TELUGU"),
        (33, "THAI"),
        (34, "TURKISH"),
        (35, "UKRAINIAN"),
        (36, "VIETNAMESE"),
    ];

    /// Zoom's name for a language number.
    pub fn name(n: i32) -> Option<&'static str> {
        TABLE.iter().find(|(c, _)| *c == n).map(|(_, name)| *name)
    }

    /// The number of a language named as Zoom does (`ENGLISH`, `FRENCH_CANADA`), in any case,
    /// with `-` or `_`; `auto` is -1.
    pub fn parse(name: &str) -> Option<i32> {
        let wanted = name.trim().to_ascii_uppercase().replace('-', "_");
        if wanted == "AUTO" {
            return Some(-1);
        }
        TABLE.iter().find(|(_, n)| *n == wanted).map(|(c, _)| *c)
    }

    /// The valid values, for messages: `auto (-1), arabic (0), ...`.
    pub fn listing() -> String {
        TABLE
            .iter()
            .map(|(c, n)| match c {
                -1 => "auto (-1)".to_owned(),
                c => format!("{} ({c})", n.to_ascii_lowercase()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// STREAM_STATE values (msg 8 `state`).
pub mod stream_state {
    pub const INACTIVE: u32 = 0;
    pub const ACTIVE: u32 = 1;
    pub const INTERRUPTED: u32 = 2;
    pub const TERMINATING: u32 = 3;
    pub const TERMINATED: u32 = 4;
    pub const PAUSED: u32 = 5;
    pub const RESUMED: u32 = 6;
}

/// SESSION_STATE values (msg 9 `state`).
pub mod session_state {
    pub const INACTIVE: u32 = 0;
    pub const INITIALIZE: u32 = 1;
    pub const STARTED: u32 = 2;
    pub const PAUSED: u32 = 3;
    pub const RESUMED: u32 = 4;
    pub const STOPPED: u32 = 5;
}

/// EVENT_TYPE values for meetings, webinars and Video SDK sessions (msg 5 / msg 6).
pub mod event_type {
    pub const FIRST_PACKET_TIMESTAMP: u32 = 1;
    pub const ACTIVE_SPEAKER_CHANGE: u32 = 2;
    pub const PARTICIPANT_JOIN: u32 = 3;
    pub const PARTICIPANT_LEAVE: u32 = 4;
    pub const SHARING_START: u32 = 5;
    pub const SHARING_STOP: u32 = 6;
    pub const MEDIA_CONNECTION_INTERRUPTED: u32 = 7;
    pub const PARTICIPANT_VIDEO_ON: u32 = 8;
    pub const PARTICIPANT_VIDEO_OFF: u32 = 9;
    /// Chat-group events (June 2026): `chat_groups`, `members_update_list` and
    /// `member_status_update_list` arrays; decoded for plugins by [`crate::events`].
    pub const CHAT_GROUP_CREATE: u32 = 10;
    pub const CHAT_GROUP_DELETE: u32 = 11;
    pub const CHAT_GROUP_MEMBERS_ADD: u32 = 12;
    pub const CHAT_GROUP_MEMBERS_DELETE: u32 = 13;
    pub const CHAT_GROUP_MEMBER_STATUS_UPDATE: u32 = 14;
}

/// STOP_REASON values (msg 8 `reason`, msg 9 `stop_reason`, `*_rtms_stopped` `stop_reason`).
pub mod stop_reason {
    pub const UNDEFINED: u32 = 0;
    pub const HOST_TRIGGERED: u32 = 1;
    pub const USER_TRIGGERED: u32 = 2;
    pub const USER_LEFT: u32 = 3;
    pub const USER_EJECTED: u32 = 4;
    pub const HOST_DISABLED_APP: u32 = 5;
    pub const MEETING_ENDED: u32 = 6;
    pub const STREAM_CANCELED: u32 = 7;
    pub const STREAM_REVOKED: u32 = 8;
    pub const ALL_APPS_DISABLED: u32 = 9;
    pub const INTERNAL_EXCEPTION: u32 = 10;
    pub const CONNECTION_TIMEOUT: u32 = 11;
    pub const INSTANCE_CONNECTION_INTERRUPTED: u32 = 12;
    pub const SIGNAL_CONNECTION_INTERRUPTED: u32 = 13;
    pub const DATA_CONNECTION_INTERRUPTED: u32 = 14;
    pub const SIGNAL_CONNECTION_CLOSED_ABNORMALLY: u32 = 15;
    pub const DATA_CONNECTION_CLOSED_ABNORMALLY: u32 = 16;
    pub const EXIT_SIGNAL: u32 = 17;
    pub const AUTHENTICATION_FAILURE: u32 = 18;
    pub const AWAIT_RECONNECTION_TIMEOUT: u32 = 19;
    pub const RECEIVER_REQUEST_CLOSE: u32 = 20;
    pub const KEEP_ALIVE_TIMEOUT: u32 = 24;

    /// Zoom's name for a stop reason, for log lines.
    pub fn name(code: u32) -> &'static str {
        const NAMES: [&str; 27] = [
            "UNDEFINED",
            "HOST_TRIGGERED",
            "USER_TRIGGERED",
            "USER_LEFT",
            "USER_EJECTED",
            "HOST_DISABLED_APP",
            "MEETING_ENDED",
            "STREAM_CANCELED",
            "STREAM_REVOKED",
            "ALL_APPS_DISABLED",
            "INTERNAL_EXCEPTION",
            "CONNECTION_TIMEOUT",
            "INSTANCE_CONNECTION_INTERRUPTED",
            "SIGNAL_CONNECTION_INTERRUPTED",
            "DATA_CONNECTION_INTERRUPTED",
            "SIGNAL_CONNECTION_CLOSED_ABNORMALLY",
            "DATA_CONNECTION_CLOSED_ABNORMALLY",
            "EXIT_SIGNAL",
            "AUTHENTICATION_FAILURE",
            "AWAIT_RECONNECTION_TIMEOUT",
            "RECEIVER_REQUEST_CLOSE",
            "CUSTOMER_DISCONNECTED",
            "AGENT_DISCONNECTED",
            "ADMIN_DISABLED_APP",
            "KEEP_ALIVE_TIMEOUT",
            "MANUAL_API_TRIGGERED",
            "STREAMING_NOT_SUPPORTED",
        ];
        NAMES.get(code as usize).copied().unwrap_or("UNKNOWN")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ga_status_table_names_every_code_once() {
        let mut names: Vec<&str> = status::TABLE.iter().map(|(_, n)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), status::TABLE.len(), "names are unique");
        assert_eq!(status::name(8), "DUPLICATE_SIGNAL_REQUEST");
        assert_eq!(status::name(12), "MEDIA_TYPE_TRANSCRIPT_NOT_SUPPORT");
        assert_eq!(status::name(43), "INVALID_MEDIA_TRANSCRIPT_SROUCE_LANGUAGE");
        assert_eq!(status::name(47), "CHAT_SESSION_KEY_NOT_AVAILABLE");
        for unassigned in [44, 45, 48, 75, u32::MAX] {
            assert_eq!(status::name(unassigned), "UNKNOWN");
        }
    }

    #[test]
    fn transcript_languages_parse_by_name_in_any_case() {
        assert_eq!(transcript_language::parse("english"), Some(9));
        assert_eq!(transcript_language::parse("French-Canada"), Some(12));
        assert_eq!(transcript_language::parse("auto"), Some(-1));
        assert_eq!(transcript_language::parse("klingon"), None);
        assert_eq!(transcript_language::name(36), Some("VIETNAMESE"));
        assert_eq!(transcript_language::name(37), None);
        let l = transcript_language::listing();
        assert!(l.starts_with("auto (-1), arabic (0),"), "{l}");
        assert!(l.ends_with("vietnamese (36)"), "{l}");
    }
}
