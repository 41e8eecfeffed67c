//! Meeting scripts: the TOML meeting file (`MeetingFile`, close to the text) and the
//! resolved [`MeetingScript`] the simulator plays, plus [`MeetingBuilder`] for tests and
//! benchmarks that build synthetic meetings in code.
//!
//! Every key of the file is documented in `examples/meetings/README.md`. Times in the file
//! are seconds (floats); the resolved script uses milliseconds. Unknown keys are errors.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::MediaKind;
use crate::chat_group::{self, ChatGroupAction, ChatGroupEvent};
use crate::faults::{Fault, ScheduledFault, SocketSel, Trigger};

/// Why a meeting script is unusable. Messages name the entry and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read meeting file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("meeting file is not valid TOML for a meeting: {0}")]
    Toml(#[from] toml::de::Error),
    #[error(
        "{what} names speaker {name:?}, who is not a [[participant]]; add the participant or fix the name"
    )]
    UnknownSpeaker { what: String, name: String },
    #[error("{what}: {problem}")]
    Invalid { what: String, problem: String },
}

/// The quietest and loudest `level` a participant may have, in dB.
pub const LEVEL_RANGE_DB: (f64, f64) = (-60.0, 12.0);

/// Checks a participant's `level` (dB relative to the usual level).
fn level(what: &str, db: f64) -> Result<f64, ScriptError> {
    if !(LEVEL_RANGE_DB.0..=LEVEL_RANGE_DB.1).contains(&db) {
        return Err(ScriptError::Invalid {
            what: what.to_owned(),
            problem: format!(
                "level = {db}: give dB relative to the usual level, from {} (nearly silent) to {} (loud; louder clips)",
                LEVEL_RANGE_DB.0, LEVEL_RANGE_DB.1
            ),
        });
    }
    Ok(db)
}

/// A participant of the meeting.
#[derive(Clone, Debug, PartialEq)]
pub struct Participant {
    pub user_id: i64,
    pub name: String,
    pub join_ms: u64,
    pub leave_ms: Option<u64>,
    /// How loud this participant's voice is, in dB relative to the simulator's usual
    /// level (peaks near -12 dBFS): `-20.0` is a quiet speaker far from the microphone,
    /// `6.0` a loud one. 0 by default.
    pub level_db: f64,
}

/// One stretch of speech: audio frames while it lasts, a transcript message at its end.
#[derive(Clone, Debug, PartialEq)]
pub struct Utterance {
    pub user_id: i64,
    pub start_ms: u64,
    pub duration_ms: u64,
    pub text: String,
}

/// One in-meeting chat message.
#[derive(Clone, Debug, PartialEq)]
pub struct Chat {
    pub at_ms: u64,
    pub user_id: i64,
    pub text: String,
}

/// Events a script can place on the timeline (EVENT_UPDATE msg 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ParticipantJoin,
    ParticipantLeave,
    ActiveSpeaker,
    SharingStart,
    SharingStop,
    VideoOn,
    VideoOff,
}

impl EventKind {
    /// The EVENT_TYPE number.
    pub fn event_type(self) -> u32 {
        use rtms_proto::codes::event_type::*;
        match self {
            EventKind::ParticipantJoin => PARTICIPANT_JOIN,
            EventKind::ParticipantLeave => PARTICIPANT_LEAVE,
            EventKind::ActiveSpeaker => ACTIVE_SPEAKER_CHANGE,
            EventKind::SharingStart => SHARING_START,
            EventKind::SharingStop => SHARING_STOP,
            EventKind::VideoOn => PARTICIPANT_VIDEO_ON,
            EventKind::VideoOff => PARTICIPANT_VIDEO_OFF,
        }
    }
}

/// One event on the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptEvent {
    pub at_ms: u64,
    pub kind: EventKind,
    pub user_id: i64,
}

/// A resolved meeting: what the simulator plays once the client is ready.
#[derive(Clone, Debug, PartialEq)]
pub struct MeetingScript {
    pub title: String,
    /// Seeds the audio synthesis; the same seed gives the same bytes.
    pub seed: u64,
    /// TRANSCRIPT_LANGUAGE number written into transcript messages (9 = English).
    pub language: i32,
    /// Length of the timeline; the stream ends (reason 6 MEETING_ENDED) when it is over.
    pub duration_ms: u64,
    pub participants: Vec<Participant>,
    /// Sorted by start.
    pub utterances: Vec<Utterance>,
    /// Sorted by time.
    pub chats: Vec<Chat>,
    /// Explicit and derived events (joins, leaves, speaker changes), sorted by time.
    pub events: Vec<ScriptEvent>,
    /// Chat-group changes (EVENT_TYPE 10 to 14), sorted by time.
    pub chat_groups: Vec<ChatGroupEvent>,
    pub faults: Vec<ScheduledFault>,
}

// === file format ===

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MeetingSection {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    language: Option<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantFile {
    #[serde(default)]
    user_id: Option<i64>,
    name: String,
    #[serde(default)]
    join: f64,
    #[serde(default)]
    leave: Option<f64>,
    #[serde(default)]
    level: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UtteranceFile {
    speaker: String,
    start: f64,
    duration: f64,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatFile {
    at: f64,
    from: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFile {
    at: f64,
    kind: EventKind,
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultFile {
    kind: String,
    #[serde(default)]
    at: Option<f64>,
    #[serde(default)]
    after_frames: Option<u64>,
    #[serde(default)]
    socket: Option<String>,
    /// A `server_urls` key (`deskshare`, not `share`).
    #[serde(default)]
    media: Option<String>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    status: Option<u32>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    delay: Option<f64>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    stop_reason: Option<u32>,
}

/// The meeting file, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeetingFile {
    #[serde(default)]
    meeting: MeetingSection,
    #[serde(default)]
    participant: Vec<ParticipantFile>,
    #[serde(default)]
    utterance: Vec<UtteranceFile>,
    #[serde(default)]
    chat: Vec<ChatFile>,
    #[serde(default)]
    event: Vec<EventFile>,
    #[serde(default)]
    chat_group: Vec<chat_group::ChatGroupFile>,
    /// Spanned, so an error can name the entry's line.
    #[serde(default)]
    fault: Vec<toml::Spanned<FaultFile>>,
}

fn secs(what: &str, v: f64) -> Result<u64, ScriptError> {
    if !v.is_finite() || v < 0.0 {
        return Err(ScriptError::Invalid {
            what: what.into(),
            problem: format!("time {v} must be a non-negative number of seconds"),
        });
    }
    Ok((v * 1000.0).round() as u64)
}

fn media_kind(what: &str, s: Option<&str>) -> Result<Option<MediaKind>, ScriptError> {
    s.map(|key| {
        MediaKind::from_url_key(key).ok_or_else(|| ScriptError::Invalid {
            what: what.to_owned(),
            problem: format!(
                "unknown media kind {key:?}: use audio, video, deskshare, transcript or chat"
            ),
        })
    })
    .transpose()
}

fn socket_sel(what: &str, s: Option<&str>) -> Result<SocketSel, ScriptError> {
    Ok(match s.unwrap_or("any") {
        "any" => SocketSel::Any,
        "signaling" => SocketSel::Signaling,
        "media" => SocketSel::Media,
        other => {
            return Err(ScriptError::Invalid {
                what: what.into(),
                problem: format!("socket {other:?} is not one of signaling, media, any"),
            });
        }
    })
}

/// The 1-based line of a byte offset of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

/// Finds a pause that would never end: one without a `duration` and no `resume` scheduled
/// at a later time to end it. Such a pause would hold the timeline, and with it the scripted
/// end of the meeting, forever. A pause triggered by `after_frames` needs a `duration`: its
/// time is not known in advance, and no frame is sent while paused.
///
/// Meeting files are checked when loaded. A script built in code may hold its stream on
/// purpose (a benchmark that keeps a stream open until it stops it): [`MeetingBuilder`]
/// accepts such a pause, and the stream then ends only when stopped.
fn check_pauses(faults: &[ScheduledFault]) -> Result<(), usize> {
    for (i, f) in faults.iter().enumerate() {
        if f.fault != (Fault::Pause { duration: None }) {
            continue;
        }
        let resumed = match f.trigger {
            Trigger::AtMs(t) => faults.iter().any(|r| {
                r.fault == Fault::Resume && matches!(r.trigger, Trigger::AtMs(rt) if rt > t)
            }),
            Trigger::AfterFrames(_) => false,
        };
        if !resumed {
            return Err(i);
        }
    }
    Ok(())
}

fn endless_pause(what: String) -> ScriptError {
    ScriptError::Invalid {
        what,
        problem: "this pause never ends: it has no `duration` and no `resume` fault with a \
                  later `at` follows it, so the meeting would never reach its scripted end; \
                  add `duration = <seconds>` to it, or a [[fault]] with kind = \"resume\" \
                  and a later `at`"
            .into(),
    }
}

impl FaultFile {
    fn resolve(self, idx: usize) -> Result<ScheduledFault, ScriptError> {
        let what = format!("[[fault]] #{} ({})", idx + 1, self.kind);
        let trigger = match (self.at, self.after_frames) {
            (Some(at), None) => Trigger::AtMs(secs(&what, at)?),
            (None, Some(n)) => Trigger::AfterFrames(n),
            _ => {
                return Err(ScriptError::Invalid {
                    what,
                    problem: "set exactly one of `at` (seconds) or `after_frames`".into(),
                });
            }
        };
        let dur = |v: Option<f64>, key: &str| -> Result<Duration, ScriptError> {
            let v = v.ok_or_else(|| ScriptError::Invalid {
                what: what.clone(),
                problem: format!("needs `{key}` (seconds)"),
            })?;
            Ok(Duration::from_millis(secs(&what, v)?))
        };
        let fault = match self.kind.as_str() {
            "drop_signaling" => Fault::DropSignaling,
            "drop_media" => Fault::DropMedia {
                kind: media_kind(&what, self.media.as_deref())?,
            },
            "stop_keepalives" => Fault::StopKeepalives,
            "resume_keepalives" => Fault::ResumeKeepalives,
            "ignore_keepalive_answers" => Fault::IgnoreKeepaliveAnswers {
                socket: socket_sel(&what, self.socket.as_deref())?,
            },
            "reject_handshakes" => Fault::RejectHandshakes {
                socket: socket_sel(&what, self.socket.as_deref())?,
                count: self.count.unwrap_or(1),
                status: self
                    .status
                    .unwrap_or(rtms_proto::codes::status::INVALID_SIGNATURE),
                reason: self
                    .reason
                    .unwrap_or_else(|| "rejected by fault injection".into()),
            },
            "delay_handshake" => Fault::DelayHandshake {
                socket: socket_sel(&what, self.socket.as_deref())?,
                delay: dur(self.delay, "delay")?,
            },
            "refuse_connections" => Fault::RefuseConnections {
                duration: dur(self.duration, "duration")?,
            },
            "failover" => Fault::Failover,
            "interrupt_signaling" => Fault::InterruptSignaling,
            "interrupt_media" => Fault::InterruptMedia,
            "duplicate_webhook" => Fault::DuplicateWebhook,
            "pause" => Fault::Pause {
                duration: match self.duration {
                    Some(d) => Some(Duration::from_millis(secs(&what, d)?)),
                    None => None,
                },
            },
            "resume" => Fault::Resume,
            "terminate" => Fault::Terminate {
                reason: self
                    .stop_reason
                    .unwrap_or(rtms_proto::codes::stop_reason::MEETING_ENDED),
            },
            other => {
                return Err(ScriptError::Invalid {
                    what,
                    problem: format!(
                        "unknown fault kind {other:?}; see examples/meetings/README.md for the list"
                    ),
                });
            }
        };
        Ok(ScheduledFault { trigger, fault })
    }
}

/// One `[[chat_group]]` entry (the `i`th), resolved; `who` gives a participant's id.
fn chat_group_change(
    i: usize,
    g: chat_group::ChatGroupFile,
    who: &impl Fn(String, &str) -> Result<i64, ScriptError>,
) -> Result<ChatGroupEvent, ScriptError> {
    let what = format!("[[chat_group]] #{}", i + 1);
    let invalid = |problem| ScriptError::Invalid {
        what: what.clone(),
        problem,
    };
    let action = chat_group::action(&g.action).map_err(invalid)?;
    let status = g
        .status
        .as_deref()
        .map(chat_group::status)
        .transpose()
        .map_err(invalid)?;
    let members = g
        .members
        .iter()
        .map(|n| who(what.clone(), n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ChatGroupEvent {
        at_ms: secs(&what, g.at)?,
        action,
        group: g.group,
        members,
        status,
    })
}

impl MeetingScript {
    /// Parses and resolves a meeting file's text.
    pub fn from_toml_str(text: &str) -> Result<Self, ScriptError> {
        let file: MeetingFile = toml::from_str(text)?;
        let mut b = MeetingBuilder::default();
        if let Some(t) = file.meeting.title {
            b.title = t;
        }
        if let Some(s) = file.meeting.seed {
            b.seed = s;
        }
        if let Some(l) = file.meeting.language {
            b.language = l;
        }
        if let Some(d) = file.meeting.duration {
            b.duration_ms = Some(secs("[meeting] duration", d)?);
        }
        let mut ids: HashMap<String, i64> = HashMap::new();
        for (i, p) in file.participant.into_iter().enumerate() {
            let what = format!("[[participant]] {:?}", p.name);
            let id = p.user_id.unwrap_or(16_778_240 + i as i64 * 1024);
            if ids.insert(p.name.clone(), id).is_some() {
                return Err(ScriptError::Invalid {
                    what,
                    problem: "two participants have this name; names must be unique".into(),
                });
            }
            b.participants.push(Participant {
                user_id: id,
                name: p.name,
                join_ms: secs(&what, p.join)?,
                leave_ms: p.leave.map(|l| secs(&what, l)).transpose()?,
                level_db: level(&what, p.level)?,
            });
        }
        let who = |what: String, name: &str| -> Result<i64, ScriptError> {
            ids.get(name).copied().ok_or(ScriptError::UnknownSpeaker {
                what,
                name: name.to_owned(),
            })
        };
        for (i, u) in file.utterance.into_iter().enumerate() {
            let what = format!("[[utterance]] #{}", i + 1);
            let id = who(what.clone(), &u.speaker)?;
            b = b.utterance(id, secs(&what, u.start)?, secs(&what, u.duration)?, &u.text);
        }
        for (i, c) in file.chat.into_iter().enumerate() {
            let what = format!("[[chat]] #{}", i + 1);
            let id = who(what.clone(), &c.from)?;
            b = b.chat(secs(&what, c.at)?, id, &c.text);
        }
        for (i, e) in file.event.into_iter().enumerate() {
            let what = format!("[[event]] #{}", i + 1);
            let id = who(what.clone(), &e.user)?;
            b = b.event(secs(&what, e.at)?, e.kind, id);
        }
        for (i, g) in file.chat_group.into_iter().enumerate() {
            b.chat_groups.push(chat_group_change(i, g, &who)?);
        }
        let mut lines = Vec::new();
        for (i, f) in file.fault.into_iter().enumerate() {
            lines.push(line_of(text, f.span().start));
            b.faults.push(f.into_inner().resolve(i)?);
        }
        if let Err(i) = check_pauses(&b.faults) {
            let what = format!("[[fault]] #{} (pause) at line {}", i + 1, lines[i]);
            return Err(endless_pause(what));
        }
        b.build()
    }

    /// Reads and resolves a meeting file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ScriptError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Starts a meeting built in code.
    pub fn builder() -> MeetingBuilder {
        MeetingBuilder::default()
    }

    /// The participant with this id.
    /// Each participant's voice gain (linear), for those not at the usual level.
    pub fn gains(&self) -> Vec<(i64, f64)> {
        self.participants
            .iter()
            .filter(|p| p.level_db != 0.0)
            .map(|p| (p.user_id, 10f64.powf(p.level_db / 20.0)))
            .collect()
    }

    pub fn participant(&self, user_id: i64) -> Option<&Participant> {
        self.participants.iter().find(|p| p.user_id == user_id)
    }

    /// The participant's name, or an empty string for an unknown id.
    pub fn name_of(&self, user_id: i64) -> &str {
        self.participant(user_id).map_or("", |p| p.name.as_str())
    }

    /// The media kinds this script produces content for (video always, share when a
    /// sharing event exists).
    pub fn kinds(&self) -> Vec<MediaKind> {
        let mut k = vec![MediaKind::Video];
        if !self.utterances.is_empty() {
            k.push(MediaKind::Audio);
            k.push(MediaKind::Transcript);
        }
        if self
            .events
            .iter()
            .any(|e| e.kind == EventKind::SharingStart)
        {
            k.push(MediaKind::Share);
        }
        if !self.chats.is_empty() {
            k.push(MediaKind::Chat);
        }
        k
    }
}

/// Builds a [`MeetingScript`] in code. Times are milliseconds from the timeline start.
#[derive(Clone, Debug)]
pub struct MeetingBuilder {
    title: String,
    seed: u64,
    language: i32,
    duration_ms: Option<u64>,
    participants: Vec<Participant>,
    utterances: Vec<Utterance>,
    chats: Vec<Chat>,
    events: Vec<ScriptEvent>,
    chat_groups: Vec<ChatGroupEvent>,
    faults: Vec<ScheduledFault>,
}

impl Default for MeetingBuilder {
    fn default() -> Self {
        Self {
            title: "Simulated meeting".into(),
            seed: 1,
            language: 9,
            duration_ms: None,
            participants: Vec::new(),
            utterances: Vec::new(),
            chats: Vec::new(),
            events: Vec::new(),
            chat_groups: Vec::new(),
            faults: Vec::new(),
        }
    }
}

impl MeetingBuilder {
    pub fn title(mut self, title: &str) -> Self {
        self.title = title.into();
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    pub fn language(mut self, language: i32) -> Self {
        self.language = language;
        self
    }
    /// Fixes the timeline length (default: 500 ms after the last scripted item).
    pub fn duration_ms(mut self, ms: u64) -> Self {
        self.duration_ms = Some(ms);
        self
    }
    /// Adds a participant present from the start.
    pub fn participant(mut self, user_id: i64, name: &str) -> Self {
        self.participants.push(Participant {
            user_id,
            name: name.into(),
            join_ms: 0,
            leave_ms: None,
            level_db: 0.0,
        });
        self
    }
    /// Sets how loud `user_id` speaks, in dB relative to the usual level.
    pub fn level(mut self, user_id: i64, level_db: f64) -> Self {
        for p in self
            .participants
            .iter_mut()
            .filter(|p| p.user_id == user_id)
        {
            p.level_db = level_db;
        }
        self
    }
    /// Adds a participant who joins and (optionally) leaves during the meeting.
    pub fn participant_between(
        mut self,
        user_id: i64,
        name: &str,
        join_ms: u64,
        leave_ms: Option<u64>,
    ) -> Self {
        self.participants.push(Participant {
            user_id,
            name: name.into(),
            join_ms,
            leave_ms,
            level_db: 0.0,
        });
        self
    }
    pub fn utterance(mut self, user_id: i64, start_ms: u64, duration_ms: u64, text: &str) -> Self {
        self.utterances.push(Utterance {
            user_id,
            start_ms,
            duration_ms,
            text: text.into(),
        });
        self
    }
    pub fn chat(mut self, at_ms: u64, user_id: i64, text: &str) -> Self {
        self.chats.push(Chat {
            at_ms,
            user_id,
            text: text.into(),
        });
        self
    }
    pub fn event(mut self, at_ms: u64, kind: EventKind, user_id: i64) -> Self {
        self.events.push(ScriptEvent {
            at_ms,
            kind,
            user_id,
        });
        self
    }
    /// Adds a chat-group change: `members` for members_add, members_delete and
    /// member_status_update, `status` (0 IN_CHAT_GROUP .. 4 LEFT_MEETING) for the last.
    pub fn chat_group(
        mut self,
        at_ms: u64,
        action: ChatGroupAction,
        group: &str,
        members: &[i64],
        status: Option<u32>,
    ) -> Self {
        self.chat_groups.push(ChatGroupEvent {
            at_ms,
            action,
            group: group.into(),
            members: members.to_vec(),
            status,
        });
        self
    }
    pub fn fault_at(mut self, at_ms: u64, fault: Fault) -> Self {
        self.faults.push(ScheduledFault {
            trigger: Trigger::AtMs(at_ms),
            fault,
        });
        self
    }
    pub fn fault_after_frames(mut self, frames: u64, fault: Fault) -> Self {
        self.faults.push(ScheduledFault {
            trigger: Trigger::AfterFrames(frames),
            fault,
        });
        self
    }
    /// Adds `speakers` participants (ids 1001.., names "Speaker 1"..) when none exist yet,
    /// and `utterances` back-to-back utterances of `frames_per_utterance` 20 ms frames each,
    /// taking turns. With default audio params the meeting sends exactly
    /// `utterances * frames_per_utterance` audio frames and `utterances` transcript lines.
    pub fn synthetic_speech(
        mut self,
        speakers: usize,
        utterances: usize,
        frames_per_utterance: u64,
    ) -> Self {
        let speakers = speakers.max(1);
        if self.participants.is_empty() {
            for i in 0..speakers {
                self = self.participant(1001 + i as i64, &format!("Speaker {}", i + 1));
            }
        }
        let ids: Vec<i64> = self.participants.iter().map(|p| p.user_id).collect();
        let start = self
            .utterances
            .iter()
            .map(|u| u.start_ms + u.duration_ms)
            .max()
            .unwrap_or(0);
        let dur = frames_per_utterance * 20;
        for i in 0..utterances {
            let id = ids[i % ids.len()];
            self = self.utterance(
                id,
                start + i as u64 * dur,
                dur,
                &format!("synthetic line {} from {}", i + 1, id),
            );
        }
        self
    }

    /// Checks that utterances and chats name known participants, and utterances last.
    fn check_utterances_and_chats(&self) -> Result<(), ScriptError> {
        let known = |id: i64| self.participants.iter().any(|p| p.user_id == id);
        for (i, u) in self.utterances.iter().enumerate() {
            let what = format!("utterance #{}", i + 1);
            if !known(u.user_id) {
                return Err(ScriptError::UnknownSpeaker {
                    what,
                    name: u.user_id.to_string(),
                });
            }
            if u.duration_ms == 0 {
                return Err(ScriptError::Invalid {
                    what,
                    problem: "duration must be greater than zero".into(),
                });
            }
        }
        for (i, c) in self.chats.iter().enumerate() {
            if !known(c.user_id) {
                return Err(ScriptError::UnknownSpeaker {
                    what: format!("chat #{}", i + 1),
                    name: c.user_id.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Checks the chat-group changes: known members, and [`chat_group::check`].
    fn check_chat_groups(&self) -> Result<(), ScriptError> {
        let known = |id: i64| self.participants.iter().any(|p| p.user_id == id);
        for (i, g) in self.chat_groups.iter().enumerate() {
            if let Some(u) = g.members.iter().find(|u| !known(**u)) {
                return Err(ScriptError::UnknownSpeaker {
                    what: format!("chat group change #{}", i + 1),
                    name: u.to_string(),
                });
            }
        }
        chat_group::check(&self.chat_groups).map_err(|(i, problem)| ScriptError::Invalid {
            what: format!(
                "chat group change #{} ({:?} at {} ms)",
                i + 1,
                self.chat_groups[i].group,
                self.chat_groups[i].at_ms
            ),
            problem,
        })
    }

    /// Validates and resolves the meeting, deriving join/leave and active-speaker events.
    pub fn build(self) -> Result<MeetingScript, ScriptError> {
        self.check_utterances_and_chats()?;
        self.check_chat_groups()?;
        let mut chat_groups = self.chat_groups;
        chat_groups.sort_by_key(|g| g.at_ms);
        let mut utterances = self.utterances;
        utterances.sort_by_key(|u| u.start_ms);
        let mut chats = self.chats;
        chats.sort_by_key(|c| c.at_ms);
        let mut events = self.events;
        for p in &self.participants {
            events.push(ScriptEvent {
                at_ms: p.join_ms,
                kind: EventKind::ParticipantJoin,
                user_id: p.user_id,
            });
            if let Some(l) = p.leave_ms {
                events.push(ScriptEvent {
                    at_ms: l,
                    kind: EventKind::ParticipantLeave,
                    user_id: p.user_id,
                });
            }
        }
        let mut last_speaker = None;
        for u in &utterances {
            if last_speaker != Some(u.user_id) {
                events.push(ScriptEvent {
                    at_ms: u.start_ms,
                    kind: EventKind::ActiveSpeaker,
                    user_id: u.user_id,
                });
                last_speaker = Some(u.user_id);
            }
        }
        events.sort_by_key(|e| e.at_ms);
        let last = utterances
            .iter()
            .map(|u| u.start_ms + u.duration_ms)
            .chain(chats.iter().map(|c| c.at_ms))
            .chain(events.iter().map(|e| e.at_ms))
            .chain(chat_groups.iter().map(|g| g.at_ms))
            .max()
            .unwrap_or(0);
        let duration_ms = self.duration_ms.unwrap_or(last + 500);
        Ok(MeetingScript {
            title: self.title,
            seed: self.seed,
            language: self.language,
            duration_ms,
            participants: self.participants,
            utterances,
            chats,
            events,
            chat_groups,
            faults: self.faults,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
[meeting]
title = "t"
seed = 3
[[participant]]
user_id = 7
name = "Ann"
[[participant]]
name = "Bo"
join = 1.5
leave = 4.0
[[utterance]]
speaker = "Ann"
start = 0.5
duration = 1.0
text = "hello budget"
[[chat]]
at = 2.0
from = "Bo"
text = "hi"
[[event]]
at = 2.5
kind = "sharing_start"
user = "Ann"
[[fault]]
after_frames = 10
kind = "drop_media"
media = "audio"
"#;

    #[test]
    fn parses_a_small_file_and_derives_events() {
        let s = MeetingScript::from_toml_str(SMALL).unwrap();
        assert_eq!(s.seed, 3);
        assert_eq!(s.utterances[0].start_ms, 500);
        assert_eq!(s.participants[1].leave_ms, Some(4000));
        let kinds: Vec<_> = s.events.iter().map(|e| (e.at_ms, e.kind)).collect();
        assert!(kinds.contains(&(0, EventKind::ParticipantJoin)));
        assert!(kinds.contains(&(1500, EventKind::ParticipantJoin)));
        assert!(kinds.contains(&(4000, EventKind::ParticipantLeave)));
        assert!(kinds.contains(&(500, EventKind::ActiveSpeaker)));
        assert_eq!(s.duration_ms, 4500);
        assert_eq!(
            s.faults[0].fault,
            Fault::DropMedia {
                kind: Some(MediaKind::Audio)
            }
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let bad = SMALL.replace("from = \"Bo\"", "from = \"Cy\"");
        let e = MeetingScript::from_toml_str(&bad).unwrap_err().to_string();
        assert!(e.contains("\"Cy\"") && e.contains("[[chat]] #1"), "{e}");
        let bad = SMALL.replace("title = \"t\"", "titel = \"t\"");
        let e = MeetingScript::from_toml_str(&bad).unwrap_err().to_string();
        assert!(e.contains("titel"), "{e}");
        let bad = SMALL.replace("after_frames = 10", "");
        let e = MeetingScript::from_toml_str(&bad).unwrap_err().to_string();
        assert!(e.contains("exactly one of"), "{e}");
    }

    #[test]
    fn a_pause_that_never_ends_is_refused_with_its_line() {
        let endless = format!("{SMALL}[[fault]]\nat = 1.0\nkind = \"pause\"\n");
        let e = MeetingScript::from_toml_str(&endless)
            .unwrap_err()
            .to_string();
        let line = SMALL.lines().count() + 1;
        assert!(
            e.contains(&format!("[[fault]] #2 (pause) at line {line}")),
            "{e}"
        );
        assert!(
            e.contains("never ends") && e.contains("duration = <seconds>"),
            "{e}"
        );
        // A resume before the pause does not end it; one after it does, as does a duration.
        let early = format!("{endless}[[fault]]\nat = 0.5\nkind = \"resume\"\n");
        assert!(MeetingScript::from_toml_str(&early).is_err());
        let later = format!("{endless}[[fault]]\nat = 2.0\nkind = \"resume\"\n");
        assert!(MeetingScript::from_toml_str(&later).is_ok());
        let timed = endless.replace("kind = \"pause\"", "kind = \"pause\"\nduration = 1.0");
        assert!(MeetingScript::from_toml_str(&timed).is_ok());
        // A pause after N frames cannot be resumed at a known time: it needs a duration.
        let by_frames = format!(
            "{SMALL}[[fault]]\nafter_frames = 3\nkind = \"pause\"\n\
             [[fault]]\nat = 5.0\nkind = \"resume\"\n"
        );
        let e = MeetingScript::from_toml_str(&by_frames)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[[fault]] #2 (pause)"), "{e}");
        // Built in code, an endless pause is a deliberate hold.
        let hold = MeetingScript::builder()
            .synthetic_speech(1, 1, 10)
            .fault_at(300, Fault::Pause { duration: None })
            .build();
        assert!(hold.is_ok());
    }

    #[test]
    fn synthetic_speech_has_the_asked_shape() {
        let s = MeetingScript::builder()
            .synthetic_speech(3, 5, 10)
            .build()
            .unwrap();
        assert_eq!(s.participants.len(), 3);
        assert_eq!(s.utterances.len(), 5);
        assert_eq!(s.utterances[4].start_ms, 800);
        assert_eq!(s.duration_ms, 1000 + 500);
    }

    /// The sample review meeting parses and carries what common plugins need: speakers at
    /// several levels, links and questions in chat, screen sharing, cameras, a late joiner.
    #[test]
    fn the_review_meeting_exercises_common_plugins() {
        let s =
            MeetingScript::from_toml_str(include_str!("../../../examples/meetings/review.toml"))
                .unwrap();
        let levels: std::collections::BTreeSet<i64> =
            s.participants.iter().map(|p| p.level_db as i64).collect();
        assert!(levels.len() >= 3, "{levels:?}");
        assert!(s.chats.iter().any(|c| c.text.contains("https://")));
        assert!(s.chats.iter().any(|c| c.text.ends_with('?')));
        assert!(s.utterances.iter().any(|u| u.text.contains('?')));
        for kind in [
            EventKind::SharingStart,
            EventKind::VideoOn,
            EventKind::ParticipantLeave,
        ] {
            assert!(s.events.iter().any(|e| e.kind == kind), "{kind:?}");
        }
    }

    const GROUPS: &str = r#"
[[participant]]
user_id = 1
name = "Ann"
[[participant]]
user_id = 2
name = "Bo"
[[chat_group]]
at = 0.5
action = "create"
group = "g"
[[chat_group]]
at = 1.0
action = "members_add"
group = "g"
members = ["Ann", "Bo"]
[[chat_group]]
at = 1.5
action = "member_status_update"
group = "g"
members = ["Bo"]
status = "in_waiting_room"
"#;

    #[test]
    fn chat_group_changes_parse_and_play_as_zoom_shapes() {
        let s = MeetingScript::from_toml_str(GROUPS).unwrap();
        assert_eq!(s.chat_groups.len(), 3);
        let st = &s.chat_groups[2];
        assert_eq!((st.event_type(), st.status), (14, Some(2)));
        let ev = st.to_json(7, |u| s.name_of(u).to_owned());
        assert_eq!(
            ev,
            serde_json::json!({"event_type": 14, "timestamp": 7, "member_status_update_list":
                [{"chat_group_id": "g", "user_id": 2, "user_name": "Bo", "status": 2}]})
        );
        let add = s.chat_groups[1].to_json(1, |u| s.name_of(u).to_owned());
        assert_eq!(add["members_update_list"][0]["user_name"], "Ann");
        // What the host decodes of it: the same entries, as JSON text.
        let Some(rtms_proto::events::Event::ChatGroup(c)) =
            rtms_proto::events::decode(12, &add.to_string()).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.members_update_list.len(), 2);
    }

    #[test]
    fn chat_group_mistakes_name_the_entry_and_the_fix() {
        let err = |extra: &str| {
            MeetingScript::from_toml_str(&format!("{GROUPS}{extra}"))
                .unwrap_err()
                .to_string()
        };
        let e = err(
            "[[chat_group]]\nat = 2.0\naction = \"members_add\"\ngroup = \"other\"\nmembers = [\"Ann\"]\n",
        );
        assert!(
            e.contains("\"other\" does not exist") && e.contains("create it earlier"),
            "{e}"
        );
        let e = err("[[chat_group]]\nat = 2.0\naction = \"rename\"\ngroup = \"g\"\n");
        assert!(
            e.contains("[[chat_group]] #4") && e.contains("members_add"),
            "{e}"
        );
        let e = err(
            "[[chat_group]]\nat = 2.0\naction = \"member_status_update\"\ngroup = \"g\"\nmembers = [\"Ann\"]\nstatus = \"away\"\n",
        );
        assert!(e.contains("left_meeting"), "{e}");
        let e = err("[[chat_group]]\nat = 2.0\naction = \"members_delete\"\ngroup = \"g\"\n");
        assert!(e.contains("needs `members`"), "{e}");
        let e = err(
            "[[chat_group]]\nat = 2.0\naction = \"members_add\"\ngroup = \"g\"\nmembers = [\"Zed\"]\n",
        );
        assert!(e.contains("\"Zed\""), "{e}");
        let e = err("[[chat_group]]\nat = 2.0\naction = \"create\"\ngroup = \"g\"\n");
        assert!(e.contains("already exists"), "{e}");
    }
}
