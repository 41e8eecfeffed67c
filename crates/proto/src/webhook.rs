//! Webhook envelopes: event names per product, the flat payloads, parsing and building.
//!
//! Envelope: `{"event": name, "event_ts": ms, "payload": {...}}` with FLAT payload fields.
//! The id key depends on the product: `meeting_uuid`, `webinar_uuid` (or `meeting_uuid`),
//! `session_id`, `engagement_id`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The event Zoom sends to check that a webhook endpoint belongs to the app.
pub const URL_VALIDATION: &str = "endpoint.url_validation";

/// The longest id a webhook may carry (meeting / webinar uuid, session id, engagement id,
/// `rtms_stream_id`, `operator_id`), in bytes. Zoom's ids are well under 100.
pub const MAX_ID_BYTES: usize = 256;

/// The longest URL a webhook may carry (`server_urls`), in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// The longest event name, in bytes.
pub const MAX_EVENT_BYTES: usize = 128;

/// The Zoom product a stream belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Product {
    Meeting,
    Webinar,
    VideoSdk,
    ContactCenter,
}

impl Product {
    pub const ALL: [Product; 4] = [
        Product::Meeting,
        Product::Webinar,
        Product::VideoSdk,
        Product::ContactCenter,
    ];

    /// The event-name prefix, up to and including `rtms_`.
    pub fn event_prefix(self) -> &'static str {
        match self {
            Product::Meeting => "meeting.rtms_",
            Product::Webinar => "webinar.rtms_",
            Product::VideoSdk => "session.rtms_",
            Product::ContactCenter => "contact_center.voice_rtms_",
        }
    }

    /// The payload key that holds the product's id (and names it in handshakes).
    pub fn id_key(self) -> &'static str {
        match self {
            Product::Meeting => "meeting_uuid",
            Product::Webinar => "webinar_uuid",
            Product::VideoSdk => "session_id",
            Product::ContactCenter => "engagement_id",
        }
    }

    /// The event name for an action of this product.
    pub fn event_name(self, action: WebhookAction) -> String {
        format!("{}{}", self.event_prefix(), action.suffix())
    }

    /// A short name for logs and configuration (`meeting`, `webinar`, `video-sdk`,
    /// `contact-center`).
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Meeting => "meeting",
            Product::Webinar => "webinar",
            Product::VideoSdk => "video-sdk",
            Product::ContactCenter => "contact-center",
        }
    }
}

impl std::str::FromStr for Product {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Product::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown product {s:?}: use meeting, webinar, video-sdk or contact-center")
            })
    }
}

/// What happened to the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookAction {
    Started,
    Stopped,
    Interrupted,
}

impl WebhookAction {
    fn suffix(self) -> &'static str {
        match self {
            WebhookAction::Started => "started",
            WebhookAction::Stopped => "stopped",
            WebhookAction::Interrupted => "interrupted",
        }
    }
}

/// Maps an event name to the product and action, or `None` for events that are not RTMS
/// lifecycle events.
pub fn classify(event: &str) -> Option<(Product, WebhookAction)> {
    Product::ALL.into_iter().find_map(|p| {
        let rest = event.strip_prefix(p.event_prefix())?;
        let action = match rest {
            "started" => WebhookAction::Started,
            "stopped" => WebhookAction::Stopped,
            "interrupted" => WebhookAction::Interrupted,
            _ => return None,
        };
        Some((p, action))
    })
}

/// A parsed RTMS lifecycle webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    pub product: Product,
    pub action: WebhookAction,
    /// The event name exactly as received.
    pub event: String,
    pub event_ts: i64,
    /// The meeting uuid / webinar uuid / session id / engagement id, raw.
    pub id: String,
    pub stream_id: String,
    /// The signaling URL (`server_urls`), on started events and sometimes on interrupted.
    pub server_url: Option<String>,
    pub operator_id: Option<String>,
    pub stop_reason: Option<u32>,
    /// The started webhook's fields of April 2026 (default on other events).
    pub details: StartedDetails,
}

/// What Zoom's started webhooks carry since April 2026 besides the stream's ids: each
/// `None` when the webhook lacks it (Video SDK and Contact Center webhooks, older ones).
///
/// Serialized (the stream journal, cluster leases) with absent fields left out, and read
/// back with missing fields absent, so a record written before these fields existed loads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedDetails {
    /// `account_id`: the account the meeting belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// `is_original_host`: the user who started the stream is the meeting's original host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_original_host: Option<bool>,
    /// `meeting_id`: the meeting's number (its uuid is the event's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_id: Option<String>,
    /// `webinar_id`: the webinar's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webinar_id: Option<String>,
}

impl StartedDetails {
    /// No field is present.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Zoom's concurrency notices (2026): a meeting near or at the account's limit of concurrent
/// streams, or a stream that failed to start. Webhooks `meeting.rtms_concurrency_limited`,
/// `meeting.rtms_concurrency_near_limit`; on the event WebSocket `rtms.concurrency_limited`,
/// `rtms.concurrency_near_limit`, `rtms.start_failed`. Their payloads' fields are not
/// documented: the meeting is read from the usual id keys when present, and the payload is
/// passed on as it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    ConcurrencyLimited,
    ConcurrencyNearLimit,
    StartFailed,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 3] = [
        NoticeKind::ConcurrencyLimited,
        NoticeKind::ConcurrencyNearLimit,
        NoticeKind::StartFailed,
    ];

    /// A short name for logs, metric labels and outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::ConcurrencyLimited => "concurrency_limited",
            NoticeKind::ConcurrencyNearLimit => "concurrency_near_limit",
            NoticeKind::StartFailed => "start_failed",
        }
    }

    /// The kind an event name carries: `<product>.rtms_<kind>` or `rtms.<kind>`.
    pub fn of(event: &str) -> Option<Self> {
        let (_, rest) = event.split_once('.')?;
        let rest = rest.strip_prefix("rtms_").unwrap_or(rest);
        NoticeKind::ALL.into_iter().find(|k| k.as_str() == rest)
    }
}

/// A concurrency notice, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub kind: NoticeKind,
    /// The event name exactly as received.
    pub event: String,
    pub event_ts: i64,
    /// The meeting (or webinar, session, engagement) the notice names, when it names one.
    pub meeting: Option<String>,
    /// The payload as received.
    pub payload: Map<String, Value>,
}

/// Why a webhook body is not a usable event. Messages name the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookParseError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body has no string field \"event\"")]
    NoEvent,
    #[error("body has no object field \"payload\"")]
    NoPayload,
    #[error("payload of {event} lacks string field \"{field}\"")]
    MissingField { event: String, field: &'static str },
    #[error("field \"{field}\" is {len} bytes long; the limit is {limit} bytes")]
    TooLong {
        field: &'static str,
        len: usize,
        limit: usize,
    },
}

/// The parts of an envelope every caller needs before deciding what to do.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub event: String,
    pub event_ts: i64,
    pub payload: Map<String, Value>,
}

impl Envelope {
    pub fn parse(body: &[u8]) -> Result<Self, WebhookParseError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| WebhookParseError::NotJson(e.to_string()))?;
        let event = v
            .get("event")
            .and_then(Value::as_str)
            .ok_or(WebhookParseError::NoEvent)?
            .to_owned();
        limit("event", &event, MAX_EVENT_BYTES)?;
        let event_ts = v.get("event_ts").and_then(Value::as_i64).unwrap_or(0);
        let payload = match v.get("payload") {
            Some(Value::Object(m)) => m.clone(),
            _ => return Err(WebhookParseError::NoPayload),
        };
        Ok(Self {
            event,
            event_ts,
            payload,
        })
    }

    fn str_field(&self, key: &str) -> Option<String> {
        match self.payload.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A string field no longer than `max` bytes.
    fn bounded(&self, key: &'static str, max: usize) -> Result<Option<String>, WebhookParseError> {
        let v = self.str_field(key);
        if let Some(s) = &v {
            limit(key, s, max)?;
        }
        Ok(v)
    }

    /// The concurrency notice this envelope carries, if it is one. An id longer than
    /// [`MAX_ID_BYTES`] is dropped (the notice is kept).
    pub fn notice(&self) -> Option<Notice> {
        let kind = NoticeKind::of(&self.event)?;
        let meeting = [
            "meeting_uuid",
            "webinar_uuid",
            "session_id",
            "engagement_id",
            "meeting_id",
        ]
        .into_iter()
        .find_map(|k| self.str_field(k).filter(|s| !s.is_empty()))
        .filter(|s| s.len() <= MAX_ID_BYTES);
        Some(Notice {
            kind,
            event: self.event.clone(),
            event_ts: self.event_ts,
            meeting,
            payload: self.payload.clone(),
        })
    }

    /// The RTMS lifecycle event this envelope carries, or `Ok(None)` when the event is
    /// something else (url validation, other Zoom events).
    pub fn rtms_event(&self) -> Result<Option<WebhookEvent>, WebhookParseError> {
        let Some((product, action)) = classify(&self.event) else {
            return Ok(None);
        };
        let missing = |field| WebhookParseError::MissingField {
            event: self.event.clone(),
            field,
        };
        // Webinars: Zoom's sources disagree between webinar_uuid and meeting_uuid; take either.
        let id = match product {
            Product::Webinar => self
                .bounded("webinar_uuid", MAX_ID_BYTES)?
                .or(self.bounded("meeting_uuid", MAX_ID_BYTES)?),
            Product::VideoSdk => self
                .bounded("session_id", MAX_ID_BYTES)?
                .or(self.bounded("meeting_uuid", MAX_ID_BYTES)?),
            p => self.bounded(p.id_key(), MAX_ID_BYTES)?,
        }
        .ok_or_else(|| missing(product.id_key()))?;
        let stream_id = self
            .bounded("rtms_stream_id", MAX_ID_BYTES)?
            .ok_or_else(|| missing("rtms_stream_id"))?;
        let server_url = self.bounded("server_urls", MAX_URL_BYTES)?;
        let operator_id = self.bounded("operator_id", MAX_ID_BYTES)?;
        if action == WebhookAction::Started && server_url.is_none() {
            return Err(missing("server_urls"));
        }
        Ok(Some(WebhookEvent {
            product,
            action,
            event: self.event.clone(),
            event_ts: self.event_ts,
            id,
            stream_id,
            server_url,
            operator_id,
            stop_reason: self
                .payload
                .get("stop_reason")
                .and_then(Value::as_u64)
                // A number past u32 is no known reason: dropped, not truncated into one.
                .and_then(|r| u32::try_from(r).ok()),
            details: if action == WebhookAction::Started {
                self.started_details()?
            } else {
                StartedDetails::default()
            },
        }))
    }

    /// The started webhook's fields of April 2026, each bounded like an id.
    fn started_details(&self) -> Result<StartedDetails, WebhookParseError> {
        Ok(StartedDetails {
            account_id: self.bounded("account_id", MAX_ID_BYTES)?,
            is_original_host: self
                .payload
                .get("is_original_host")
                .and_then(Value::as_bool),
            meeting_id: self.bounded("meeting_id", MAX_ID_BYTES)?,
            webinar_id: self.bounded("webinar_id", MAX_ID_BYTES)?,
        })
    }
}

fn limit(field: &'static str, s: &str, limit: usize) -> Result<(), WebhookParseError> {
    if s.len() > limit {
        return Err(WebhookParseError::TooLong {
            field,
            len: s.len(),
            limit,
        });
    }
    Ok(())
}

impl WebhookEvent {
    /// The compact JSON body Zoom would send for this event.
    pub fn to_body(&self) -> Vec<u8> {
        let mut p = Map::new();
        p.insert(self.product.id_key().into(), Value::String(self.id.clone()));
        p.insert(
            "rtms_stream_id".into(),
            Value::String(self.stream_id.clone()),
        );
        if let Some(u) = &self.server_url {
            p.insert("server_urls".into(), Value::String(u.clone()));
        }
        if let Some(o) = &self.operator_id {
            p.insert("operator_id".into(), Value::String(o.clone()));
        }
        if let Some(r) = self.stop_reason {
            p.insert("stop_reason".into(), Value::from(r));
        }
        let d = &self.details;
        for (k, v) in [
            ("account_id", &d.account_id),
            ("meeting_id", &d.meeting_id),
            ("webinar_id", &d.webinar_id),
        ] {
            if let Some(v) = v {
                p.insert(k.into(), Value::String(v.clone()));
            }
        }
        if let Some(h) = d.is_original_host {
            p.insert("is_original_host".into(), Value::Bool(h));
        }
        let mut env = Map::new();
        env.insert("event".into(), Value::String(self.event.clone()));
        env.insert("event_ts".into(), Value::from(self.event_ts));
        env.insert("payload".into(), Value::Object(p));
        serde_json::to_vec(&Value::Object(env)).expect("a JSON map always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_notices_are_recognised_by_name_on_both_intakes() {
        for (event, kind) in [
            (
                "meeting.rtms_concurrency_limited",
                NoticeKind::ConcurrencyLimited,
            ),
            (
                "meeting.rtms_concurrency_near_limit",
                NoticeKind::ConcurrencyNearLimit,
            ),
            ("rtms.concurrency_limited", NoticeKind::ConcurrencyLimited),
            ("rtms.start_failed", NoticeKind::StartFailed),
        ] {
            assert_eq!(NoticeKind::of(event), Some(kind), "{event}");
        }
        for other in ["meeting.rtms_started", "rtms.other", "concurrency_limited"] {
            assert_eq!(NoticeKind::of(other), None, "{other}");
        }
        let body = br#"{"event":"meeting.rtms_concurrency_limited","event_ts":5,"payload":{"meeting_uuid":"m==","limit":10}}"#;
        let env = Envelope::parse(body).unwrap();
        assert_eq!(env.rtms_event(), Ok(None), "not a lifecycle event");
        let n = env.notice().unwrap();
        assert_eq!(n.meeting.as_deref(), Some("m=="));
        assert_eq!(n.payload["limit"], 10);
        let long = format!(
            r#"{{"event":"rtms.start_failed","payload":{{"meeting_uuid":"{}"}}}}"#,
            "x".repeat(MAX_ID_BYTES + 1)
        );
        let n = Envelope::parse(long.as_bytes()).unwrap().notice().unwrap();
        assert_eq!(n.meeting, None, "an oversized id is dropped");
    }

    #[test]
    fn every_product_round_trips() {
        for product in Product::ALL {
            for action in [
                WebhookAction::Started,
                WebhookAction::Stopped,
                WebhookAction::Interrupted,
            ] {
                let ev = WebhookEvent {
                    details: Default::default(),
                    product,
                    action,
                    event: product.event_name(action),
                    event_ts: 1_700_000_000_000,
                    id: "4lo+kM3nQ/ut1P2xQ9Zy2w==".into(),
                    stream_id: "s1".into(),
                    server_url: Some("wss://localhost:1/sig".into()),
                    operator_id: None,
                    stop_reason: (action == WebhookAction::Stopped).then_some(6),
                };
                let body = ev.to_body();
                let parsed = Envelope::parse(&body)
                    .unwrap()
                    .rtms_event()
                    .unwrap()
                    .unwrap();
                assert_eq!(parsed, ev);
            }
        }
    }

    #[test]
    fn webinar_accepts_meeting_uuid() {
        let body = br#"{"event":"webinar.rtms_stopped","event_ts":1,"payload":{"meeting_uuid":"u","rtms_stream_id":"s"}}"#;
        let ev = Envelope::parse(body)
            .unwrap()
            .rtms_event()
            .unwrap()
            .unwrap();
        assert_eq!(ev.id, "u");
        assert_eq!(ev.product, Product::Webinar);
    }

    #[test]
    fn missing_fields_are_named() {
        let body = br#"{"event":"meeting.rtms_started","payload":{"meeting_uuid":"u","rtms_stream_id":"s"}}"#;
        let err = Envelope::parse(body).unwrap().rtms_event().unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload of meeting.rtms_started lacks string field \"server_urls\""
        );
        assert_eq!(
            Envelope::parse(b"{")
                .unwrap_err()
                .to_string()
                .split(':')
                .next(),
            Some("body is not JSON")
        );
        assert_eq!(
            Envelope::parse(br#"{"payload":{}}"#).unwrap_err(),
            WebhookParseError::NoEvent
        );
    }

    #[test]
    fn overlong_ids_and_urls_are_refused_naming_the_field_and_the_limit() {
        let long = "x".repeat(MAX_ID_BYTES + 1);
        for field in ["meeting_uuid", "rtms_stream_id", "operator_id"] {
            let mut p = serde_json::json!({
                "meeting_uuid": "u", "rtms_stream_id": "s", "server_urls": "wss://a.zoom.us/x"
            });
            p[field] = Value::String(long.clone());
            let body = serde_json::json!({"event": "meeting.rtms_started", "payload": p});
            let err = Envelope::parse(body.to_string().as_bytes())
                .unwrap()
                .rtms_event()
                .unwrap_err();
            assert_eq!(
                err,
                WebhookParseError::TooLong {
                    field,
                    len: MAX_ID_BYTES + 1,
                    limit: MAX_ID_BYTES
                }
            );
            assert!(err.to_string().contains(field), "{err}");
            assert!(err.to_string().contains("256"), "{err}");
        }
        let url = format!("wss://a.zoom.us/{}", "x".repeat(MAX_URL_BYTES));
        let body = serde_json::json!({"event": "meeting.rtms_started",
            "payload": {"meeting_uuid": "u", "rtms_stream_id": "s", "server_urls": url}});
        let err = Envelope::parse(body.to_string().as_bytes())
            .unwrap()
            .rtms_event()
            .unwrap_err();
        assert!(err.to_string().contains("server_urls"), "{err}");
        let body = serde_json::json!({"event": "x".repeat(200), "payload": {}});
        assert!(matches!(
            Envelope::parse(body.to_string().as_bytes()),
            Err(WebhookParseError::TooLong { field: "event", .. })
        ));
    }

    #[test]
    fn other_events_are_not_rtms() {
        assert_eq!(classify("meeting.started"), None);
        assert_eq!(
            classify("contact_center.voice_rtms_interrupted"),
            Some((Product::ContactCenter, WebhookAction::Interrupted))
        );
    }
}
