//! Media parameters (`media_params` in msg 3 and msg 4) and the project's defaults.
//!
//! Every field is optional on the wire; [`MediaParams::resolved`] fills what is missing with
//! the defaults of `rtms-protocol.md` decision 10: audio L16 16 kHz mono mixed 20 ms,
//! transcript content type 5, video H.264 HD 25 fps, deskshare JPG 1 fps.

use serde::{Deserialize, Serialize};

/// Codec numbers (MEDIA_PAYLOAD_TYPE).
pub mod codec {
    pub const L16: u32 = 1;
    pub const G711: u32 = 2;
    pub const G722: u32 = 3;
    pub const OPUS: u32 = 4;
    pub const JPG: u32 = 5;
    pub const PNG: u32 = 6;
    pub const H264: u32 = 7;
}

/// Content types (MEDIA_CONTENT_TYPE).
pub mod content_type {
    pub const RTP: u32 = 1;
    pub const RAW_AUDIO: u32 = 2;
    pub const RAW_VIDEO: u32 = 3;
    pub const FILE_STREAM: u32 = 4;
    pub const TEXT: u32 = 5;
}

/// Sample-rate numbers (AUDIO_SAMPLE_RATE) and their rates in Hz.
pub mod sample_rate {
    pub const SR_8K: u32 = 0;
    pub const SR_16K: u32 = 1;
    pub const SR_32K: u32 = 2;
    pub const SR_48K: u32 = 3;

    pub fn hz(code: u32) -> Option<u32> {
        [8_000, 16_000, 32_000, 48_000].get(code as usize).copied()
    }
}

/// Data options (MEDIA_DATA_OPTION).
pub mod data_opt {
    pub const AUDIO_MIXED_STREAM: u32 = 1;
    pub const AUDIO_MULTI_STREAMS: u32 = 2;
    pub const VIDEO_SINGLE_ACTIVE_STREAM: u32 = 3;
    pub const VIDEO_SINGLE_INDIVIDUAL_STREAM: u32 = 4;
    pub const VIDEO_MIXED_GALLERY_VIEW: u32 = 5;
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AudioParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_opt: Option<u32>,
    /// Milliseconds of audio per message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_rate: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_opt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<u32>,
    /// TRANSCRIPT_LANGUAGE number; -1 for none / automatic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_language: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_lid: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<u32>,
}

/// `media_params` of msg 3 (requested) and msg 4 (confirmed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deskshare: Option<VideoParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<TranscriptParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatParams>,
}

impl AudioParams {
    /// The project's audio default: L16, 16 kHz, mono, mixed stream, 20 ms frames.
    pub fn default_params() -> Self {
        Self {
            content_type: Some(content_type::RAW_AUDIO),
            sample_rate: Some(sample_rate::SR_16K),
            channel: Some(1),
            codec: Some(codec::L16),
            data_opt: Some(data_opt::AUDIO_MIXED_STREAM),
            send_rate: Some(20),
        }
    }

    /// These parameters with every missing field taken from [`AudioParams::default_params`].
    pub fn resolved(&self) -> Self {
        let d = Self::default_params();
        Self {
            content_type: self.content_type.or(d.content_type),
            sample_rate: self.sample_rate.or(d.sample_rate),
            channel: self.channel.or(d.channel),
            codec: self.codec.or(d.codec),
            data_opt: self.data_opt.or(d.data_opt),
            send_rate: self.send_rate.or(d.send_rate),
        }
    }

    /// Bytes in one frame of uncompressed L16 audio with these (resolved) parameters.
    pub fn l16_frame_bytes(&self) -> usize {
        let p = self.resolved();
        let hz = sample_rate::hz(p.sample_rate.unwrap_or(1)).unwrap_or(16_000) as usize;
        let ms = p.send_rate.unwrap_or(20) as usize;
        let ch = p.channel.unwrap_or(1).max(1) as usize;
        hz * ms / 1000 * 2 * ch
    }
}

impl VideoParams {
    /// The project's video default: H.264, HD, single active speaker, 25 fps.
    pub fn default_video() -> Self {
        Self {
            content_type: Some(content_type::RAW_VIDEO),
            codec: Some(codec::H264),
            resolution: Some(2),
            data_opt: Some(data_opt::VIDEO_SINGLE_ACTIVE_STREAM),
            fps: Some(25),
        }
    }

    /// The project's deskshare default: JPG, HD, 1 fps.
    pub fn default_deskshare() -> Self {
        Self {
            content_type: Some(content_type::RAW_VIDEO),
            codec: Some(codec::JPG),
            resolution: Some(2),
            data_opt: None,
            fps: Some(1),
        }
    }

    fn resolved_with(&self, d: Self) -> Self {
        Self {
            content_type: self.content_type.or(d.content_type),
            codec: self.codec.or(d.codec),
            resolution: self.resolution.or(d.resolution),
            data_opt: self.data_opt.or(d.data_opt),
            fps: self.fps.or(d.fps),
        }
    }
}

impl MediaParams {
    /// Every section filled in, missing fields from the project's defaults. This is what a
    /// faithful server confirms in msg 4.
    pub fn resolved(&self) -> Self {
        let transcript = self.transcript.clone().unwrap_or_default();
        Self {
            audio: Some(self.audio.clone().unwrap_or_default().resolved()),
            video: Some(
                self.video
                    .clone()
                    .unwrap_or_default()
                    .resolved_with(VideoParams::default_video()),
            ),
            deskshare: Some(
                self.deskshare
                    .clone()
                    .unwrap_or_default()
                    .resolved_with(VideoParams::default_deskshare()),
            ),
            transcript: Some(TranscriptParams {
                content_type: transcript.content_type.or(Some(content_type::TEXT)),
                src_language: transcript.src_language.or(Some(-1)),
                enable_lid: transcript.enable_lid.or(Some(true)),
            }),
            chat: Some(ChatParams {
                content_type: self
                    .chat
                    .as_ref()
                    .and_then(|c| c.content_type)
                    .or(Some(content_type::TEXT)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_audio_frame_is_640_bytes() {
        assert_eq!(AudioParams::default().l16_frame_bytes(), 640);
        let p = AudioParams {
            send_rate: Some(100),
            ..Default::default()
        };
        assert_eq!(p.l16_frame_bytes(), 3200);
    }

    #[test]
    fn resolved_params_keep_what_was_asked() {
        let asked = MediaParams {
            audio: Some(AudioParams {
                sample_rate: Some(sample_rate::SR_48K),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = asked.resolved();
        let audio = r.audio.unwrap();
        assert_eq!(audio.sample_rate, Some(sample_rate::SR_48K));
        assert_eq!(audio.codec, Some(codec::L16));
        assert_eq!(r.video.unwrap().fps, Some(25));
        assert_eq!(r.deskshare.unwrap().codec, Some(codec::JPG));
    }
}
