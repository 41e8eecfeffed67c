//! Chat groups in a meeting script: groups created and deleted, members added and removed,
//! a member's status changed, each played as an EVENT_UPDATE of type 10 to 14 to clients
//! that subscribed to that type.
//!
//! Zoom's public sources name the lists these events carry (`chat_groups`,
//! `members_update_list`, `member_status_update_list`) and the enumerations around them
//! (chat-group type 0 PRIVATE_CHAT_GROUP; member status 0 IN_CHAT_GROUP to 4 LEFT_MEETING),
//! but not the fields of the objects inside the lists. The objects the simulator puts there
//! are its own, documented in `examples/meetings/README.md`:
//! - `chat_groups`: `{"chat_group_id", "chat_group_type": 0}`;
//! - `members_update_list`: `{"chat_group_id", "user_id", "user_name"}` per member;
//! - `member_status_update_list`: the same with `"status"`.

use serde::Deserialize;
use serde_json::{Value, json};

pub use rtms_proto::events::ChatGroupAction;

/// Zoom's chat-group member statuses (RTMSManager's `chatGroupMemberStatuses`), by the
/// names a meeting file uses.
pub const MEMBER_STATUSES: [(&str, u32); 5] = [
    ("in_chat_group", 0),
    ("in_breakout_room", 1),
    ("in_waiting_room", 2),
    ("in_backstage", 3),
    ("left_meeting", 4),
];

/// Zoom's chat-group type PRIVATE_CHAT_GROUP, the only one its sources name.
pub const PRIVATE_CHAT_GROUP: u32 = 0;

/// One chat-group change on the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatGroupEvent {
    pub at_ms: u64,
    pub action: ChatGroupAction,
    /// The group's id, as the meeting file names it.
    pub group: String,
    /// The members added, removed or whose status changed (none for create and delete).
    pub members: Vec<i64>,
    /// The members' new status (member status update only).
    pub status: Option<u32>,
}

impl ChatGroupEvent {
    /// The EVENT_TYPE number.
    pub fn event_type(&self) -> u32 {
        use rtms_proto::codes::event_type::*;
        match self.action {
            ChatGroupAction::Create => CHAT_GROUP_CREATE,
            ChatGroupAction::Delete => CHAT_GROUP_DELETE,
            ChatGroupAction::MembersAdd => CHAT_GROUP_MEMBERS_ADD,
            ChatGroupAction::MembersDelete => CHAT_GROUP_MEMBERS_DELETE,
            ChatGroupAction::MemberStatusUpdate => CHAT_GROUP_MEMBER_STATUS_UPDATE,
        }
    }

    /// The EVENT_UPDATE's `event` object; `name` gives a participant's name.
    pub fn to_json(&self, ts: u64, name: impl Fn(i64) -> String) -> Value {
        let member = |u: i64| {
            let mut m = json!({"chat_group_id": self.group, "user_id": u, "user_name": name(u)});
            if let Some(s) = self.status {
                m["status"] = json!(s);
            }
            m
        };
        let members: Vec<Value> = self.members.iter().map(|u| member(*u)).collect();
        let mut ev = json!({"event_type": self.event_type(), "timestamp": ts});
        match self.action {
            ChatGroupAction::Create => {
                ev["chat_groups"] =
                    json!([{"chat_group_id": self.group, "chat_group_type": PRIVATE_CHAT_GROUP}]);
            }
            ChatGroupAction::Delete => {
                ev["chat_groups"] = json!([{"chat_group_id": self.group}]);
            }
            ChatGroupAction::MembersAdd | ChatGroupAction::MembersDelete => {
                ev["members_update_list"] = Value::Array(members);
            }
            ChatGroupAction::MemberStatusUpdate => {
                ev["member_status_update_list"] = Value::Array(members);
            }
        }
        ev
    }
}

/// `[[chat_group]]` in a meeting file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChatGroupFile {
    pub at: f64,
    pub action: String,
    pub group: String,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// The action a meeting file names.
pub(crate) fn action(name: &str) -> Result<ChatGroupAction, String> {
    Ok(match name {
        "create" => ChatGroupAction::Create,
        "delete" => ChatGroupAction::Delete,
        "members_add" => ChatGroupAction::MembersAdd,
        "members_delete" => ChatGroupAction::MembersDelete,
        "member_status_update" => ChatGroupAction::MemberStatusUpdate,
        other => {
            return Err(format!(
                "action {other:?} is not one of create, delete, members_add, members_delete, member_status_update"
            ));
        }
    })
}

/// The status a meeting file names.
pub(crate) fn status(name: &str) -> Result<u32, String> {
    MEMBER_STATUSES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            let names: Vec<&str> = MEMBER_STATUSES.iter().map(|(n, _)| *n).collect();
            format!("status {name:?} is not one of {}", names.join(", "))
        })
}

/// Checks a script's chat-group changes, in time order: members only where they belong,
/// a status exactly on status updates, and every change but a create on a group that exists.
pub(crate) fn check(events: &[ChatGroupEvent]) -> Result<(), (usize, String)> {
    let mut live: Vec<&str> = Vec::new();
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|i| events[*i].at_ms);
    for i in order {
        let e = &events[i];
        let with_members = matches!(
            e.action,
            ChatGroupAction::MembersAdd
                | ChatGroupAction::MembersDelete
                | ChatGroupAction::MemberStatusUpdate
        );
        if with_members == e.members.is_empty() {
            let need = if with_members {
                "needs `members` (a list of participant names)"
            } else {
                "takes no `members`; add them with a members_add change"
            };
            return Err((i, need.into()));
        }
        if (e.action == ChatGroupAction::MemberStatusUpdate) != e.status.is_some() {
            return Err((
                i,
                "`status` is set on member_status_update changes, and only there".into(),
            ));
        }
        let exists = live.contains(&e.group.as_str());
        match e.action {
            ChatGroupAction::Create if exists => {
                return Err((i, format!("group {:?} already exists", e.group)));
            }
            ChatGroupAction::Create => live.push(&e.group),
            _ if !exists => {
                return Err((
                    i,
                    format!(
                        "group {:?} does not exist at this time; create it earlier",
                        e.group
                    ),
                ));
            }
            ChatGroupAction::Delete => live.retain(|g| *g != e.group),
            _ => {}
        }
    }
    Ok(())
}
