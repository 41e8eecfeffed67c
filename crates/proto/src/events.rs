//! EVENT_UPDATE events whose fields plugins need, decoded: participant video on / off (event
//! types 8 and 9) and the chat-group events (10 to 14). Plugins of contract 0.3 reach this
//! through `rtms:plugin/events@0.3.0`; every other event type stays JSON.
//!
//! The input is an EVENT_UPDATE's `event` object, which comes from the network: every list
//! is bounded ([`MAX_LIST`]), every name is cut to [`MAX_NAME`] bytes, and every chat-group
//! entry kept as JSON is bounded ([`MAX_ENTRY`]). Input past a bound, or of the wrong shape,
//! is an error naming the field, never a panic.
//!
//! Shapes, from Zoom's public sources (RTMSManager's `signalingSocketMessageHandler.js` and
//! `types/index.d.ts`, read December 2026):
//! - 8 / 9: a `participants` array of `{user_id, user_name}`, or a single `user_id` and
//!   `user_name` on the event itself; `user_id` is a number or a string of digits.
//! - 10 to 14: arrays `chat_groups`, `members_update_list` and `member_status_update_list`,
//!   typed `Array<Record<string, any>>` there: the objects inside are not documented, so
//!   each entry is kept as its JSON text.

use serde::Deserialize;
use serde_json::Value;

use crate::codes::event_type;

/// The most entries a decoded list may have.
pub const MAX_LIST: usize = 1024;
/// The longest `user_name` kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_NAME: usize = 256;
/// The longest chat-group entry kept, in bytes of JSON.
pub const MAX_ENTRY: usize = 16 * 1024;

/// A participant an event names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    /// Zoom's `user_id`.
    pub user_id: i64,
    /// Zoom's `user_name`, when the event carries it.
    pub user_name: Option<String>,
}

/// What a chat-group event says happened (its event type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatGroupAction {
    /// 10 CHAT_GROUP_CREATE.
    Create,
    /// 11 CHAT_GROUP_DELETE.
    Delete,
    /// 12 CHAT_GROUP_MEMBERS_ADD.
    MembersAdd,
    /// 13 CHAT_GROUP_MEMBERS_DELETE.
    MembersDelete,
    /// 14 CHAT_GROUP_MEMBER_STATUS_UPDATE.
    MemberStatusUpdate,
}

impl ChatGroupAction {
    /// The action of a chat-group event type.
    pub fn of(event_type: u32) -> Option<Self> {
        Some(match event_type {
            event_type::CHAT_GROUP_CREATE => Self::Create,
            event_type::CHAT_GROUP_DELETE => Self::Delete,
            event_type::CHAT_GROUP_MEMBERS_ADD => Self::MembersAdd,
            event_type::CHAT_GROUP_MEMBERS_DELETE => Self::MembersDelete,
            event_type::CHAT_GROUP_MEMBER_STATUS_UPDATE => Self::MemberStatusUpdate,
            _ => return None,
        })
    }
}

/// A chat-group event. Each list is empty when the event does not carry it; each entry is
/// the JSON text of one object of Zoom's list, as Zoom sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatGroupChange {
    pub action: ChatGroupAction,
    /// The event's `timestamp`, when it carries one.
    pub timestamp: Option<u64>,
    /// `chat_groups`.
    pub chat_groups: Vec<String>,
    /// `members_update_list`.
    pub members_update_list: Vec<String>,
    /// `member_status_update_list`.
    pub member_status_update_list: Vec<String>,
}

/// A decoded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// 8 PARTICIPANT_VIDEO_ON (`on`) or 9 PARTICIPANT_VIDEO_OFF.
    ParticipantVideo {
        on: bool,
        participants: Vec<Participant>,
        /// The event's `timestamp`, when it carries one.
        timestamp: Option<u64>,
    },
    /// 10 to 14.
    ChatGroup(ChatGroupChange),
}

/// Why an event's JSON could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event type {event_type}: not a JSON object of this type's shape: {reason}")]
    Shape { event_type: u32, reason: String },
    #[error(
        "event type {event_type}: `{field}` has {len} entries, more than the {MAX_LIST} decoded"
    )]
    TooLong {
        event_type: u32,
        field: &'static str,
        len: usize,
    },
    #[error("event type {event_type}: `user_id` {value:?} is not an integer")]
    UserId { event_type: u32, value: String },
    #[error(
        "event type {event_type}: an entry of `{field}` is {len} bytes of JSON, more than the {MAX_ENTRY} kept"
    )]
    EntryTooLong {
        event_type: u32,
        field: &'static str,
        len: usize,
    },
}

/// `user_id` as Zoom sends it: a number, or a string of digits.
#[derive(Deserialize)]
#[serde(untagged)]
enum UserId {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
struct ParticipantWire {
    user_id: UserId,
    #[serde(default)]
    user_name: Option<String>,
}

#[derive(Deserialize)]
struct VideoWire {
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    participants: Option<Vec<ParticipantWire>>,
    #[serde(default)]
    user_id: Option<UserId>,
    #[serde(default)]
    user_name: Option<String>,
}

#[derive(Deserialize)]
struct ChatGroupWire {
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    chat_groups: Option<Vec<Value>>,
    #[serde(default)]
    members_update_list: Option<Vec<Value>>,
    #[serde(default)]
    member_status_update_list: Option<Vec<Value>>,
}

/// Decodes the `event` object of an EVENT_UPDATE of type `event_type`: `Ok(None)` for a
/// type that stays JSON (every type but 8 to 14).
pub fn decode(event_type: u32, json: &str) -> Result<Option<Event>, DecodeError> {
    let shape = |e: serde_json::Error| DecodeError::Shape {
        event_type,
        reason: crate::text::truncated(&e.to_string(), 200).into_owned(),
    };
    if let Some(action) = ChatGroupAction::of(event_type) {
        let w: ChatGroupWire = serde_json::from_str(json).map_err(shape)?;
        let list =
            |field: &'static str, v: Option<Vec<Value>>| -> Result<Vec<String>, DecodeError> {
                let v = v.unwrap_or_default();
                if v.len() > MAX_LIST {
                    return Err(DecodeError::TooLong {
                        event_type,
                        field,
                        len: v.len(),
                    });
                }
                v.iter()
                    .map(|e| {
                        let s = e.to_string();
                        if s.len() > MAX_ENTRY {
                            return Err(DecodeError::EntryTooLong {
                                event_type,
                                field,
                                len: s.len(),
                            });
                        }
                        Ok(s)
                    })
                    .collect()
            };
        return Ok(Some(Event::ChatGroup(ChatGroupChange {
            action,
            timestamp: w.timestamp,
            chat_groups: list("chat_groups", w.chat_groups)?,
            members_update_list: list("members_update_list", w.members_update_list)?,
            member_status_update_list: list(
                "member_status_update_list",
                w.member_status_update_list,
            )?,
        })));
    }
    let on = match event_type {
        event_type::PARTICIPANT_VIDEO_ON => true,
        event_type::PARTICIPANT_VIDEO_OFF => false,
        _ => return Ok(None),
    };
    let w: VideoWire = serde_json::from_str(json).map_err(shape)?;
    let people = match (w.participants, w.user_id) {
        (Some(list), _) => list,
        (None, Some(user_id)) => vec![ParticipantWire {
            user_id,
            user_name: w.user_name,
        }],
        (None, None) => Vec::new(),
    };
    if people.len() > MAX_LIST {
        return Err(DecodeError::TooLong {
            event_type,
            field: "participants",
            len: people.len(),
        });
    }
    let participants = people
        .into_iter()
        .map(|p| participant(event_type, p))
        .collect::<Result<_, _>>()?;
    Ok(Some(Event::ParticipantVideo {
        on,
        participants,
        timestamp: w.timestamp,
    }))
}

/// The participants an event object names, leniently (for the host's own use of events 2 to
/// 9, whose participants share one shape): its `participants` array, or its own `user_id` and
/// `user_name`. An entry whose `user_id` is not an integer is skipped; at most [`MAX_LIST`]
/// are kept, names cut to [`MAX_NAME`].
pub fn named_participants(event: &Value) -> Vec<Participant> {
    let one = |v: &Value| {
        let w = ParticipantWire::deserialize(v).ok()?;
        participant(0, w).ok()
    };
    match event.get("participants").and_then(Value::as_array) {
        Some(list) => list.iter().take(MAX_LIST).filter_map(one).collect(),
        None => one(event).into_iter().collect(),
    }
}

fn participant(event_type: u32, p: ParticipantWire) -> Result<Participant, DecodeError> {
    let user_id = match p.user_id {
        UserId::Number(n) => n,
        UserId::Text(s) => s.trim().parse().map_err(|_| DecodeError::UserId {
            event_type,
            value: crate::text::truncated(&s, 40).into_owned(),
        })?,
    };
    let user_name = p.user_name.map(|mut n| {
        crate::text::truncate(&mut n, MAX_NAME);
        n
    });
    Ok(Participant { user_id, user_name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_on_with_a_participants_array() {
        let e = decode(
            8,
            r#"{"event_type":8,"timestamp":5,"participants":[{"user_id":7,"user_name":"Ann"},{"user_id":"9"}]}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            e,
            Event::ParticipantVideo {
                on: true,
                timestamp: Some(5),
                participants: vec![
                    Participant {
                        user_id: 7,
                        user_name: Some("Ann".into())
                    },
                    Participant {
                        user_id: 9,
                        user_name: None
                    },
                ],
            }
        );
    }

    #[test]
    fn video_off_with_a_single_user() {
        let e = decode(9, r#"{"event_type":9,"user_id":3,"user_name":"Bo"}"#)
            .unwrap()
            .unwrap();
        let Event::ParticipantVideo {
            on, participants, ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert!(!on);
        assert_eq!(participants[0].user_id, 3);
    }

    #[test]
    fn chat_group_lists_are_kept_as_json_entries() {
        let e = decode(
            12,
            r#"{"event_type":12,"members_update_list":[{"a":1},{"b":[2]}]}"#,
        )
        .unwrap()
        .unwrap();
        let Event::ChatGroup(c) = e else {
            panic!("{e:?}")
        };
        assert_eq!(c.action, ChatGroupAction::MembersAdd);
        assert_eq!(c.members_update_list, vec![r#"{"a":1}"#, r#"{"b":[2]}"#]);
        assert!(c.chat_groups.is_empty() && c.member_status_update_list.is_empty());
        assert_eq!(c.timestamp, None);
    }

    #[test]
    fn other_types_stay_json() {
        assert_eq!(decode(2, r#"{"event_type":2,"user_id":1}"#), Ok(None));
        assert_eq!(decode(3, "not json"), Ok(None));
    }

    #[test]
    fn bad_input_is_an_error_naming_the_field() {
        let e = decode(8, r#"{"participants":[{"user_id":"x1"}]}"#).unwrap_err();
        assert!(e.to_string().contains("`user_id` \"x1\""), "{e}");
        let e = decode(10, r#"{"chat_groups":{}}"#).unwrap_err();
        assert!(
            matches!(e, DecodeError::Shape { event_type: 10, .. }),
            "{e}"
        );
        let many = format!(
            r#"{{"chat_groups":[{}]}}"#,
            vec!["1"; MAX_LIST + 1].join(",")
        );
        let e = decode(10, &many).unwrap_err();
        assert!(
            e.to_string().contains("`chat_groups` has 1025 entries"),
            "{e}"
        );
        let big = format!(
            r#"{{"member_status_update_list":["{}"]}}"#,
            "x".repeat(MAX_ENTRY)
        );
        assert!(matches!(
            decode(14, &big),
            Err(DecodeError::EntryTooLong { .. })
        ));
    }

    #[test]
    fn named_participants_skip_what_is_not_a_participant() {
        let ev = serde_json::json!({"participants": [
            {"user_id": 1, "user_name": "A"}, {"user_id": "x"}, {"user_name": "no id"}, {"user_id": "2"}
        ]});
        let ids: Vec<i64> = named_participants(&ev).iter().map(|p| p.user_id).collect();
        assert_eq!(ids, [1, 2]);
        let one = named_participants(&serde_json::json!({"user_id": 5, "user_name": "E"}));
        assert_eq!(one[0].user_name.as_deref(), Some("E"));
        assert!(named_participants(&serde_json::json!({"timestamp": 1})).is_empty());
        let many: Vec<Value> = (0..MAX_LIST as i64 + 5)
            .map(|i| serde_json::json!({"user_id": i}))
            .collect();
        assert_eq!(
            named_participants(&serde_json::json!({"participants": many})).len(),
            MAX_LIST
        );
    }

    #[test]
    fn long_names_are_cut() {
        let json = format!(r#"{{"user_id":1,"user_name":"{}"}}"#, "é".repeat(MAX_NAME));
        let Some(Event::ParticipantVideo { participants, .. }) = decode(8, &json).unwrap() else {
            panic!()
        };
        let name = participants[0].user_name.as_deref().unwrap();
        assert!(name.len() <= MAX_NAME && name.chars().all(|c| c == 'é'));
    }
}
