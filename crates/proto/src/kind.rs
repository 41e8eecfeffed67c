//! The one media vocabulary: [`MediaKind`] (what a frame carries) and [`MediaKinds`] (a set of
//! them), with their names and their numbers on the wire.
//!
//! The names (`audio`, `video`, `share`, `transcript`, `chat`, `event`) are the ones of
//! pipeline.toml, the plugin contract's `media-kind`, logs, metrics and files. The wire has
//! its own spellings for the five media kinds (the `deskshare` key of
//! `media_server.server_urls`, the `media_type` bits, the media `msg_type`s 14-18); `event`
//! has none, since events travel on the signaling socket (msg 6).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::codes::{media_type, msg_type};

/// What a frame carries. Ordered as the plugin contract's `media-kind`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// Audio bytes (codec as confirmed in the data handshake; L16 by default).
    Audio,
    /// Video bytes (H.264 Annex-B, or JPG/PNG).
    Video,
    /// Screen-share bytes (JPG/PNG/H.264); `deskshare` on the wire.
    Share,
    /// A transcript segment.
    Transcript,
    /// A chat message.
    Chat,
    /// A signaling event (msg 6).
    #[default]
    Event,
}

impl MediaKind {
    /// Every kind, in contract order.
    pub const ALL: [MediaKind; 6] = [
        MediaKind::Audio,
        MediaKind::Video,
        MediaKind::Share,
        MediaKind::Transcript,
        MediaKind::Chat,
        MediaKind::Event,
    ];

    /// The five kinds that travel on media sockets (every kind but [`MediaKind::Event`]).
    pub const MEDIA: [MediaKind; 5] = [
        MediaKind::Audio,
        MediaKind::Video,
        MediaKind::Share,
        MediaKind::Transcript,
        MediaKind::Chat,
    ];

    /// Audio, video and screen share: media that arrives in real time, many frames a
    /// second, and that a plugin falling behind would rather skip than lag on.
    pub fn is_realtime_media(self) -> bool {
        matches!(self, MediaKind::Audio | MediaKind::Video | MediaKind::Share)
    }

    /// The name used in pipeline.toml, the plugin contract, logs and files.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Share => "share",
            MediaKind::Transcript => "transcript",
            MediaKind::Chat => "chat",
            MediaKind::Event => "event",
        }
    }

    /// The `media_type` bit of the data handshake; 0 for [`MediaKind::Event`].
    pub fn media_type_bit(self) -> u32 {
        match self {
            MediaKind::Audio => media_type::AUDIO,
            MediaKind::Video => media_type::VIDEO,
            MediaKind::Share => media_type::DESKSHARE,
            MediaKind::Transcript => media_type::TRANSCRIPT,
            MediaKind::Chat => media_type::CHAT,
            MediaKind::Event => 0,
        }
    }

    /// The key of `media_server.server_urls` (and of the simulator's media paths) that serves
    /// this kind alone; `None` for [`MediaKind::Event`].
    pub fn url_key(self) -> Option<&'static str> {
        media_type::url_key(self.media_type_bit())
    }

    /// The kind a single-kind `server_urls` key serves (`deskshare` for share).
    pub fn from_url_key(key: &str) -> Option<MediaKind> {
        MediaKind::MEDIA
            .into_iter()
            .find(|k| k.url_key() == Some(key))
    }

    /// The media message type (14-18); `None` for [`MediaKind::Event`].
    pub fn media_msg_type(self) -> Option<u32> {
        Some(match self {
            MediaKind::Audio => msg_type::MEDIA_DATA_AUDIO,
            MediaKind::Video => msg_type::MEDIA_DATA_VIDEO,
            MediaKind::Share => msg_type::MEDIA_DATA_SHARE,
            MediaKind::Transcript => msg_type::MEDIA_DATA_TRANSCRIPT,
            MediaKind::Chat => msg_type::MEDIA_DATA_CHAT,
            MediaKind::Event => return None,
        })
    }

    /// The kind a media message type (14-18) carries.
    pub fn from_media_msg_type(t: u32) -> Option<MediaKind> {
        MediaKind::MEDIA
            .into_iter()
            .find(|k| k.media_msg_type() == Some(t))
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MediaKind {
    type Err = String;

    /// A kind by its name (`share`), or a media kind by its wire key (`deskshare`).
    fn from_str(s: &str) -> Result<Self, String> {
        MediaKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .or_else(|| MediaKind::from_url_key(s))
            .ok_or_else(|| {
                format!(
                    "unknown media kind {s:?}: use audio, video, share, transcript, chat or event"
                )
            })
    }
}

/// A set of [`MediaKind`]s.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MediaKinds(u8);

impl MediaKinds {
    /// No kind.
    pub const EMPTY: MediaKinds = MediaKinds(0);

    /// The set of `kinds`.
    pub fn of(kinds: impl IntoIterator<Item = MediaKind>) -> MediaKinds {
        kinds.into_iter().collect()
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: MediaKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Adds `kind`.
    pub fn insert(&mut self, kind: MediaKind) {
        self.0 |= kind.bit();
    }

    /// Removes `kind`.
    pub fn remove(&mut self, kind: MediaKind) {
        self.0 &= !kind.bit();
    }

    /// Both sets together.
    pub fn union(self, other: MediaKinds) -> MediaKinds {
        MediaKinds(self.0 | other.0)
    }

    /// True when no kind is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every kind of `self` is in `other`.
    pub fn is_subset(self, other: MediaKinds) -> bool {
        self.0 & !other.0 == 0
    }

    /// The kinds, in contract order.
    pub fn iter(self) -> impl Iterator<Item = MediaKind> {
        MediaKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }

    /// The data handshake's `media_type` mask for these kinds (events add nothing).
    pub fn media_type_mask(self) -> u32 {
        self.iter().fold(0, |mask, k| mask | k.media_type_bit())
    }
}

impl FromIterator<MediaKind> for MediaKinds {
    fn from_iter<I: IntoIterator<Item = MediaKind>>(iter: I) -> Self {
        let mut set = MediaKinds::EMPTY;
        for k in iter {
            set.insert(k);
        }
        set
    }
}

impl fmt::Debug for MediaKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for MediaKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(MediaKind::as_str).collect();
        write!(f, "[{}]", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name_and_media_kinds_from_their_wire_numbers() {
        for k in MediaKind::ALL {
            assert_eq!(k.as_str().parse::<MediaKind>(), Ok(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        for k in MediaKind::MEDIA {
            assert_eq!(MediaKind::from_url_key(k.url_key().unwrap()), Some(k));
            assert_eq!(
                MediaKind::from_media_msg_type(k.media_msg_type().unwrap()),
                Some(k)
            );
        }
        assert_eq!(MediaKind::Share.url_key(), Some("deskshare"));
        assert_eq!("deskshare".parse::<MediaKind>(), Ok(MediaKind::Share));
        assert_eq!(MediaKind::from_url_key("share"), None);
        assert_eq!(MediaKind::from_url_key("event"), None);
        assert_eq!(MediaKind::Event.media_type_bit(), 0);
        assert!(
            "transcripts"
                .parse::<MediaKind>()
                .unwrap_err()
                .contains("transcript")
        );
    }

    #[test]
    fn kind_sets_hold_what_was_put_in() {
        let s = MediaKinds::of([MediaKind::Transcript, MediaKind::Chat, MediaKind::Event]);
        assert!(s.contains(MediaKind::Transcript) && s.contains(MediaKind::Chat));
        assert!(!s.contains(MediaKind::Audio));
        assert_eq!(
            s.media_type_mask(),
            media_type::TRANSCRIPT | media_type::CHAT
        );
        assert_eq!(s.to_string(), "[transcript, chat, event]");
        assert!(MediaKinds::default().is_empty());
    }
}
