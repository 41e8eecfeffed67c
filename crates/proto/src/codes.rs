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

/// `status_code` values (Zoom's GA table). Only [`status::OK`] is success.
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
    pub const MEDIA_DATA_ALL_CONNECTION_EXIST: u32 = 15;
    pub const DUPLICATE_MEDIA_DATA_CONNECTION: u32 = 16;
    pub const INVALID_MEDIA_PARAMS: u32 = 17;
    pub const INVALID_MEDIA_VIDEO_PARAMS: u32 = 25;
    pub const INVALID_MEDIA_VIDEO_DATA_OPT: u32 = 29;
    pub const INVALID_RTMS_SESSION_ID: u32 = 40;
    pub const INVALID_CLIENT_READY_ACK: u32 = 41;

    /// Zoom's name for a status code, for log lines.
    pub fn name(code: u32) -> &'static str {
        match code {
            OK => "OK",
            INVALID_MESSAGE_TYPE => "INVALID_MESSAGE_TYPE",
            INVALID_RTMS_STREAM_ID => "INVALID_RTMS_STREAM_ID",
            INVALID_SIGNATURE => "INVALID_SIGNATURE",
            INVALID_PAYLOAD => "INVALID_PAYLOAD",
            INVALID_EVENTS => "INVALID_EVENTS",
            INVALID_EVENT_TYPE => "INVALID_EVENT_TYPE",
            INVALID_MEDIA_TYPE => "INVALID_MEDIA_TYPE",
            DUPLICATE_SIGNAL_REQUEST => "DUPLICATE_SIGNAL_REQUEST",
            9..=13 => "MEDIA_TYPE_NOT_SUPPORT",
            14 => "MEDIA_TYPE_INVALID_VALUE",
            MEDIA_DATA_ALL_CONNECTION_EXIST => "MEDIA_DATA_ALL_CONNECTION_EXIST",
            DUPLICATE_MEDIA_DATA_CONNECTION => "DUPLICATE_MEDIA_DATA_CONNECTION",
            INVALID_MEDIA_PARAMS..=39 => "INVALID_MEDIA_PARAMS",
            INVALID_RTMS_SESSION_ID => "INVALID_RTMS_SESSION_ID",
            INVALID_CLIENT_READY_ACK => "INVALID_CLIENT_READY_ACK",
            _ => "UNKNOWN",
        }
    }

    /// True when a failed handshake reports a duplicate connection: code 8, or a reason
    /// that says "duplicate" (servers using the beta numbering).
    pub fn is_duplicate(code: u32, reason: &str) -> bool {
        code == DUPLICATE_SIGNAL_REQUEST
            || code == DUPLICATE_MEDIA_DATA_CONNECTION
            || reason.to_ascii_lowercase().contains("duplicate")
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
    /// `member_status_update_list` arrays; passed to plugins as JSON.
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
