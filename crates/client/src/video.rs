//! Individual video: whose video a stream subscribes to when its video socket asks for one
//! participant at a time (`data_opt` 4, VIDEO_SINGLE_INDIVIDUAL_STREAM).
//!
//! [`Follower`] is the decision alone, with no I/O: it learns who has video from EVENT_UPDATE
//! 8 / 9 (participant video on / off), who speaks (2), who shares (5 / 6) and who leaves (4);
//! it takes commands (an operator or a plugin pinning or dropping a participant) and the
//! server's answers (msg 29); and it returns the VIDEO_SUBSCRIPTION_REQ (msg 28) changes that
//! bring the server to what the policy wants. The session sends them on the signaling socket,
//! and again after every new handshake ([`Follower::resubscribe`]), since a new connection
//! starts with no subscription.
//!
//! The cap ([`VideoFollow::max`]) bounds the subscriptions asked for at once; changes are
//! ordered unsubscriptions first, so the server never sees more than the cap. A refused
//! subscription is not asked again until that participant's video turns on again or a
//! command names them.

use std::collections::{BTreeMap, BTreeSet};

use rtms_proto::codes::event_type;
use serde_json::Value;

/// Zoom's limit on individual video subscriptions per stream (protocol V2's default; V1
/// servers allow one, the newest replacing the previous).
pub const ZOOM_MAX_INDIVIDUAL_VIDEO: usize = 4;

/// Whom to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Follow {
    /// The active speaker (EVENT_UPDATE 2), when their video is on.
    ActiveSpeaker,
    /// Whoever shares their screen (5 / 6), when their video is on.
    Sharer,
    /// The first participants to turn their video on, in that order.
    FirstWithVideo,
    /// Named participants, by user id or display name, in this order.
    Users(Vec<String>),
}

/// The policy of a stream in individual-video mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoFollow {
    pub follow: Follow,
    /// The most participants subscribed at once (1 to [`ZOOM_MAX_INDIVIDUAL_VIDEO`]).
    pub max: usize,
}

impl VideoFollow {
    /// The event types the follower needs to be subscribed to (msg 5).
    pub fn events(&self) -> Vec<u32> {
        let mut e = vec![
            event_type::PARTICIPANT_LEAVE,
            event_type::PARTICIPANT_VIDEO_ON,
            event_type::PARTICIPANT_VIDEO_OFF,
        ];
        match self.follow {
            Follow::ActiveSpeaker => e.push(event_type::ACTIVE_SPEAKER_CHANGE),
            Follow::Sharer => e.extend([event_type::SHARING_START, event_type::SHARING_STOP]),
            Follow::FirstWithVideo | Follow::Users(_) => {}
        }
        e
    }
}

/// One change to send as msg 28.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub user_id: i64,
    pub subscribe: bool,
}

/// A command from outside the session: pin a participant's video (subscribe while their
/// video is on, ahead of the policy) or drop it (never subscribe, whatever the policy says);
/// `Release` returns them to the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Pin(i64),
    Drop(i64),
    Release(i64),
}

/// What the follower made of a msg 29.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// The server refused; the participant is not asked again until their video turns on
    /// again or a command names them.
    Refused {
        code: u32,
    },
}

/// The decision state of one stream.
#[derive(Debug)]
pub struct Follower {
    policy: VideoFollow,
    /// Participants whose video is on, in the order it turned on, with their names.
    with_video: Vec<(i64, String)>,
    speaker: Option<i64>,
    sharer: Option<i64>,
    /// Commands in force: true pinned, false dropped.
    overrides: BTreeMap<i64, bool>,
    /// Refused subscriptions, not asked again for now.
    refused: BTreeSet<i64>,
    /// What the server was asked to stream, in the order asked.
    subscribed: Vec<i64>,
}

impl Follower {
    pub fn new(policy: VideoFollow) -> Self {
        Self {
            policy,
            with_video: Vec::new(),
            speaker: None,
            sharer: None,
            overrides: BTreeMap::new(),
            refused: BTreeSet::new(),
            subscribed: Vec::new(),
        }
    }

    /// Participants subscribed now.
    pub fn subscribed(&self) -> &[i64] {
        &self.subscribed
    }

    /// Participants whose video is on, with their names.
    pub fn with_video(&self) -> &[(i64, String)] {
        &self.with_video
    }

    /// An EVENT_UPDATE's `event` object; returns the changes it calls for.
    pub fn on_event(&mut self, event: &Value) -> Vec<Change> {
        let Some(ty) = event.get("event_type").and_then(Value::as_u64) else {
            return Vec::new();
        };
        let people = participants(event);
        match ty as u32 {
            event_type::PARTICIPANT_VIDEO_ON => {
                for (id, name) in people {
                    self.refused.remove(&id);
                    match self.with_video.iter_mut().find(|(u, _)| *u == id) {
                        Some(entry) => entry.1 = name,
                        None => self.with_video.push((id, name)),
                    }
                }
            }
            event_type::PARTICIPANT_VIDEO_OFF | event_type::PARTICIPANT_LEAVE => {
                for (id, _) in &people {
                    self.with_video.retain(|(u, _)| u != id);
                    if ty as u32 == event_type::PARTICIPANT_LEAVE {
                        self.speaker = self.speaker.filter(|s| s != id);
                        self.sharer = self.sharer.filter(|s| s != id);
                    }
                }
            }
            event_type::ACTIVE_SPEAKER_CHANGE => self.speaker = people.first().map(|p| p.0),
            event_type::SHARING_START => self.sharer = people.first().map(|p| p.0),
            event_type::SHARING_STOP => self.sharer = None,
            _ => return Vec::new(),
        }
        self.changes()
    }

    /// A command; returns the changes it calls for.
    pub fn command(&mut self, cmd: Command) -> Vec<Change> {
        match cmd {
            Command::Pin(u) => {
                self.refused.remove(&u);
                self.overrides.insert(u, true);
            }
            Command::Drop(u) => {
                self.overrides.insert(u, false);
            }
            Command::Release(u) => {
                self.refused.remove(&u);
                self.overrides.remove(&u);
            }
        }
        self.changes()
    }

    /// The server's answer to a msg 28.
    pub fn on_answer(&mut self, user_id: i64, subscribe: bool, status: u32) -> Answer {
        if status == rtms_proto::codes::status::OK {
            return Answer::Accepted;
        }
        if subscribe {
            self.subscribed.retain(|u| *u != user_id);
            self.refused.insert(user_id);
        }
        Answer::Refused { code: status }
    }

    /// After a new handshake: the server streams nobody, so every wanted participant is
    /// asked again.
    pub fn resubscribe(&mut self) -> Vec<Change> {
        self.subscribed.clear();
        self.changes()
    }

    /// The participants the policy wants now, best first, at most the cap.
    pub fn wanted(&self) -> Vec<i64> {
        let has_video = |u: i64| self.with_video.iter().any(|(v, _)| *v == u);
        let allowed = |u: i64| {
            has_video(u) && !self.refused.contains(&u) && self.overrides.get(&u) != Some(&false)
        };
        let mut out: Vec<i64> = Vec::new();
        let take = |u: i64, out: &mut Vec<i64>| {
            if allowed(u) && !out.contains(&u) && out.len() < self.policy.max {
                out.push(u);
            }
        };
        for (&u, &pinned) in &self.overrides {
            if pinned {
                take(u, &mut out);
            }
        }
        match &self.policy.follow {
            Follow::ActiveSpeaker => self.speaker.into_iter().for_each(|u| take(u, &mut out)),
            Follow::Sharer => self.sharer.into_iter().for_each(|u| take(u, &mut out)),
            Follow::FirstWithVideo => self.with_video.iter().for_each(|(u, _)| take(*u, &mut out)),
            Follow::Users(names) => {
                for n in names {
                    for (u, name) in &self.with_video {
                        if name == n || u.to_string() == *n {
                            take(*u, &mut out);
                        }
                    }
                }
            }
        }
        out
    }

    /// The changes from what was asked to what is wanted: unsubscriptions first.
    fn changes(&mut self) -> Vec<Change> {
        let wanted = self.wanted();
        let mut out: Vec<Change> = self
            .subscribed
            .iter()
            .filter(|u| !wanted.contains(u))
            .map(|&user_id| Change {
                user_id,
                subscribe: false,
            })
            .collect();
        self.subscribed.retain(|u| wanted.contains(u));
        for u in wanted {
            if !self.subscribed.contains(&u) {
                self.subscribed.push(u);
                out.push(Change {
                    user_id: u,
                    subscribe: true,
                });
            }
        }
        out
    }
}

/// The participants an event names (`rtms_proto::events::named_participants`: its
/// `participants` array, or its own `user_id` and `user_name`; ids that are not integers are
/// skipped, as msg 28 takes a number).
fn participants(event: &Value) -> Vec<(i64, String)> {
    rtms_proto::events::named_participants(event)
        .into_iter()
        .map(|p| (p.user_id, p.user_name.unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn on(id: i64, name: &str) -> Value {
        json!({"event_type": 8, "participants": [{"user_id": id, "user_name": name}]})
    }
    fn off(id: i64) -> Value {
        json!({"event_type": 9, "participants": [{"user_id": id, "user_name": ""}]})
    }
    fn sub(user_id: i64) -> Change {
        Change {
            user_id,
            subscribe: true,
        }
    }
    fn unsub(user_id: i64) -> Change {
        Change {
            user_id,
            subscribe: false,
        }
    }
    fn follower(follow: Follow, max: usize) -> Follower {
        Follower::new(VideoFollow { follow, max })
    }

    #[test]
    fn first_with_video_follows_video_on_and_off_up_to_the_cap() {
        let mut f = follower(Follow::FirstWithVideo, 2);
        assert_eq!(f.on_event(&on(1, "Ann")), vec![sub(1)]);
        assert_eq!(f.on_event(&on(2, "Bo")), vec![sub(2)]);
        assert_eq!(f.on_event(&on(3, "Cy")), vec![], "the cap is 2");
        assert_eq!(f.on_event(&off(1)), vec![unsub(1), sub(3)]);
        assert_eq!(
            f.on_event(&on(1, "Ann")),
            vec![],
            "back on, but two already follow"
        );
        assert_eq!(f.subscribed(), &[2, 3]);
    }

    #[test]
    fn the_active_speaker_is_followed_only_while_their_video_is_on() {
        let mut f = follower(Follow::ActiveSpeaker, 1);
        f.on_event(&on(1, "Ann"));
        let speaker = |id: i64| json!({"event_type": 2, "user_id": id, "user_name": "x"});
        assert_eq!(f.on_event(&speaker(1)), vec![sub(1)]);
        assert_eq!(f.on_event(&speaker(2)), vec![unsub(1)], "2 has no video");
        assert_eq!(f.on_event(&on(2, "Bo")), vec![sub(2)]);
    }

    #[test]
    fn named_users_match_by_name_or_id_in_the_listed_order() {
        let mut f = follower(Follow::Users(vec!["Cy".into(), "1".into()]), 4);
        f.on_event(&on(1, "Ann"));
        f.on_event(&on(2, "Bo"));
        assert_eq!(f.on_event(&on(3, "Cy")), vec![sub(3)]);
        assert_eq!(f.wanted(), vec![3, 1]);
        assert_eq!(f.subscribed(), &[1, 3]);
    }

    #[test]
    fn commands_pin_and_drop_ahead_of_the_policy() {
        let mut f = follower(Follow::FirstWithVideo, 1);
        f.on_event(&on(1, "Ann"));
        f.on_event(&on(2, "Bo"));
        assert_eq!(f.command(Command::Pin(2)), vec![unsub(1), sub(2)]);
        assert_eq!(f.command(Command::Drop(2)), vec![unsub(2), sub(1)]);
        assert_eq!(f.command(Command::Release(2)), vec![]);
        assert_eq!(f.subscribed(), &[1]);
    }

    #[test]
    fn a_refusal_is_not_asked_again_until_video_turns_on_again() {
        let mut f = follower(Follow::FirstWithVideo, 2);
        f.on_event(&on(1, "Ann"));
        assert_eq!(f.on_answer(1, true, 25), Answer::Refused { code: 25 });
        assert!(f.subscribed().is_empty());
        assert_eq!(
            f.on_event(&on(2, "Bo")),
            vec![sub(2)],
            "1 is not asked again"
        );
        f.on_event(&off(1));
        assert_eq!(f.on_event(&on(1, "Ann")), vec![sub(1)]);
    }

    #[test]
    fn after_a_new_handshake_everyone_wanted_is_asked_again() {
        let mut f = follower(Follow::FirstWithVideo, 4);
        f.on_event(&on(1, "Ann"));
        f.on_event(&on(2, "Bo"));
        assert_eq!(f.resubscribe(), vec![sub(1), sub(2)]);
    }

    #[test]
    fn a_participant_who_leaves_is_unsubscribed() {
        let mut f = follower(Follow::Sharer, 1);
        f.on_event(&on(7, "Di"));
        assert_eq!(
            f.on_event(&json!({"event_type": 5, "user_id": 7, "user_name": "Di"})),
            vec![sub(7)]
        );
        assert_eq!(
            f.on_event(&json!({"event_type": 4, "participants": [{"user_id": 7}]})),
            vec![unsub(7)]
        );
    }
}
