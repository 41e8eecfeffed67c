//! Media payloads: speech-like audio synthesised per speaker from a seed, and the small
//! embedded JPEG / PNG / H.264 samples sent as video and share frames.
//!
//! Audio is a voiced tone (a speaker-specific pitch with harmonics) shaped by a syllable
//! envelope, with a little noise: it looks like speech to level meters and voice-activity
//! detectors, and it is exactly reproducible from (seed, utterance, frame). Each voice is
//! synthesised once into a two-second loop (the sines are what is expensive); frames are
//! slices of the loop plus fresh noise, so the simulator can send tens of thousands of
//! frames a second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rtms_proto::params::{AudioParams, codec, sample_rate};

/// A 64x36 JPEG (ffmpeg test pattern).
pub const SAMPLE_JPEG: &[u8] = include_bytes!("../assets/frame.jpg");
/// A 64x36 PNG (ffmpeg test pattern).
pub const SAMPLE_PNG: &[u8] = include_bytes!("../assets/frame.png");
/// One H.264 Annex-B access unit (SPS, PPS, SEI, IDR slice) of a 64x48 picture.
pub const SAMPLE_H264_KEYFRAME: &[u8] = include_bytes!("../assets/keyframe.h264");

/// The audio format the simulator actually produces for requested params: L16 or G.711
/// A-law; codecs it cannot encode (Opus, G.722) are confirmed as L16 in msg 4.
pub fn producible_audio(asked: &AudioParams) -> AudioParams {
    let mut p = asked.resolved();
    if p.codec != Some(codec::L16) && p.codec != Some(codec::G711) {
        p.codec = Some(codec::L16);
    }
    if sample_rate::hz(p.sample_rate.unwrap_or(1)).is_none() {
        p.sample_rate = Some(sample_rate::SR_16K);
    }
    let ch = p.channel.unwrap_or(1);
    if !(1..=2).contains(&ch) {
        p.channel = Some(1);
    }
    if p.send_rate.unwrap_or(20) == 0 {
        p.send_rate = Some(20);
    }
    p
}

/// Seconds of voiced signal synthesised per voice; frames loop over it.
const VOICE_LOOP_SECS: usize = 2;

/// Voice loops by (sample rate, pitch step, syllable-rate step): shared by every meeting of
/// the process. There are 14 pitch and 6 syllable-rate steps per sample rate, so the set
/// stays small; it is cleared if it ever grows past [`MAX_VOICES`] loops.
type VoiceKey = (u32, u64, u64);
static VOICES: OnceLock<Mutex<HashMap<VoiceKey, Arc<[f32]>>>> = OnceLock::new();
const MAX_VOICES: usize = 512;

/// Synthesises audio frames for one format.
#[derive(Clone, Debug)]
pub struct AudioSynth {
    hz: u32,
    channels: usize,
    frame_ms: u32,
    alaw: bool,
    /// Linear gains of the voices not at the usual level, by user id.
    gains: Vec<(i64, f64)>,
}

impl AudioSynth {
    /// `params` should come from [`producible_audio`].
    pub fn new(params: &AudioParams) -> Self {
        let p = producible_audio(params);
        Self {
            hz: sample_rate::hz(p.sample_rate.unwrap_or(1)).unwrap_or(16_000),
            channels: p.channel.unwrap_or(1) as usize,
            frame_ms: p.send_rate.unwrap_or(20),
            alaw: p.codec == Some(codec::G711),
            gains: Vec::new(),
        }
    }

    /// The synthesiser with each voice's gain (linear, by user id; see
    /// [`crate::MeetingScript::gains`]).
    pub fn with_gains(mut self, gains: Vec<(i64, f64)>) -> Self {
        self.gains = gains;
        self
    }

    /// The voiced signal of one voice, `VOICE_LOOP_SECS` long, made on first use. Pitch is
    /// quantised to 10 Hz steps and the syllable rate to 0.5 Hz steps, so a process never
    /// makes more than a few hundred loops however many speakers its meetings have.
    fn voice(&self, voice: u64) -> Arc<[f32]> {
        let key = (self.hz, (voice % 140) / 10 * 10, (voice >> 8) % 30 / 5 * 5);
        let cache = VOICES.get_or_init(Mutex::default);
        if let Some(v) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return v.clone();
        }
        // Made outside the lock: other meetings keep sending meanwhile.
        let f0 = 95.0 + key.1 as f64;
        let syllable_hz = 3.0 + key.2 as f64 / 10.0;
        let len = self.hz as usize * VOICE_LOOP_SECS;
        let table: Arc<[f32]> = (0..len)
            .map(|i| {
                let t = i as f64 / self.hz as f64;
                let env = (std::f64::consts::PI * syllable_hz * t)
                    .sin()
                    .abs()
                    .powf(0.6);
                let mut s = 0.0;
                for h in 1..=5 {
                    s += (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin() / h as f64;
                }
                (s * 0.45 * env) as f32
            })
            .collect();
        let mut voices = cache.lock().unwrap_or_else(|p| p.into_inner());
        if voices.len() >= MAX_VOICES {
            voices.clear();
        }
        voices.entry(key).or_insert(table).clone()
    }

    /// Milliseconds of audio per message (`send_rate`).
    pub fn frame_ms(&self) -> u32 {
        self.frame_ms
    }

    /// Bytes of one frame.
    pub fn frame_bytes(&self) -> usize {
        let samples = (self.hz as usize * self.frame_ms as usize / 1000) * self.channels;
        if self.alaw { samples } else { samples * 2 }
    }

    /// Frame `frame` of an utterance by `user_id`, deterministic from `seed`.
    pub fn frame(&self, seed: u64, user_id: i64, utterance: u64, frame: u64) -> Vec<u8> {
        self.encode(&self.samples(seed, user_id, utterance, frame))
    }

    /// One frame of mixed audio: the frames of every voice given (`(user_id, utterance,
    /// frame)`) summed sample by sample, as Zoom mixes overlapping speakers into one stream.
    pub fn mixed_frame(&self, seed: u64, voices: &[(i64, u64, u64)]) -> Vec<u8> {
        let mut sum: Vec<i32> = Vec::new();
        for &(user_id, utterance, frame) in voices {
            let s = self.samples(seed, user_id, utterance, frame);
            sum.resize(sum.len().max(s.len()), 0);
            for (acc, v) in sum.iter_mut().zip(s) {
                *acc += i32::from(v);
            }
        }
        let mixed: Vec<i16> = sum
            .into_iter()
            .map(|v| v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
            .collect();
        self.encode(&mixed)
    }

    /// The mono samples of one frame of an utterance.
    fn samples(&self, seed: u64, user_id: i64, utterance: u64, frame: u64) -> Vec<i16> {
        let n = self.hz as usize * self.frame_ms as usize / 1000;
        let mut out = Vec::with_capacity(n);
        let voice = mix(seed ^ (user_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let table = self.voice(voice);
        let mut noise = mix(seed ^ utterance.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ frame);
        let first = frame as usize * n;
        let gain = self
            .gains
            .iter()
            .find(|(u, _)| *u == user_id)
            .map_or(1.0, |(_, g)| *g);
        for i in 0..n {
            let voiced = table[(first + i) % table.len()] as f64;
            noise = mix(noise);
            let n01 = (noise >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            let v = (voiced + n01 * 0.04) * 12_000.0 * gain;
            out.push(v.clamp(i16::MIN as f64, i16::MAX as f64) as i16);
        }
        out
    }

    /// Samples in the session's encoding, each repeated for every channel.
    fn encode(&self, samples: &[i16]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.frame_bytes());
        for &sample in samples {
            for _ in 0..self.channels {
                if self.alaw {
                    out.push(linear_to_alaw(sample));
                } else {
                    out.extend_from_slice(&sample.to_le_bytes());
                }
            }
        }
        out
    }
}

/// splitmix64: a small, good-enough deterministic mixer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// G.711 A-law encoding of one 16-bit sample.
fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 3; // 13-bit
    let mask = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let pcm = pcm.min(0xFFF);
    let seg = (0..8).find(|s| pcm < (0x20 << s)).unwrap_or(7);
    let aval = if seg < 2 {
        (pcm >> 1) as u8
    } else {
        ((seg as u8) << 4) | ((pcm >> seg) & 0x0F) as u8
    };
    aval ^ mask
}

/// The sample frame for a video or deskshare codec number (JPG 5, PNG 6, H.264 7).
pub fn image_for_codec(codec_no: u32) -> &'static [u8] {
    match codec_no {
        codec::JPG => SAMPLE_JPEG,
        codec::PNG => SAMPLE_PNG,
        _ => SAMPLE_H264_KEYFRAME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_frames_are_640_bytes_and_deterministic() {
        let s = AudioSynth::new(&AudioParams::default());
        let a = s.frame(1, 7, 0, 3);
        assert_eq!(a.len(), 640);
        assert_eq!(a, s.frame(1, 7, 0, 3));
        assert_ne!(a, s.frame(2, 7, 0, 3));
        let peak = a
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]).unsigned_abs())
            .max()
            .unwrap();
        assert!(peak > 500, "audio should not be silent, peak {peak}");
    }

    #[test]
    fn a_mixed_frame_is_the_sum_of_its_voices() {
        let s = AudioSynth::new(&AudioParams::default());
        assert_eq!(
            s.mixed_frame(1, &[(7, 0, 3)]),
            s.frame(1, 7, 0, 3),
            "one voice"
        );
        let pcm = |b: &[u8]| -> Vec<i32> {
            b.chunks(2)
                .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])))
                .collect()
        };
        let (a, b) = (pcm(&s.frame(1, 7, 0, 3)), pcm(&s.frame(1, 9, 1, 0)));
        let mixed = pcm(&s.mixed_frame(1, &[(7, 0, 3), (9, 1, 0)]));
        for ((m, x), y) in mixed.iter().zip(&a).zip(&b) {
            assert_eq!(*m, (x + y).clamp(i16::MIN.into(), i16::MAX.into()));
        }
    }

    #[test]
    fn requested_params_change_the_frame_size() {
        let p = AudioParams {
            sample_rate: Some(sample_rate::SR_48K),
            channel: Some(2),
            send_rate: Some(100),
            codec: Some(codec::OPUS),
            ..Default::default()
        };
        assert_eq!(producible_audio(&p).codec, Some(codec::L16));
        assert_eq!(
            AudioSynth::new(&p).frame(1, 1, 0, 0).len(),
            48_000 / 10 * 2 * 2
        );
        let g = AudioParams {
            codec: Some(codec::G711),
            sample_rate: Some(sample_rate::SR_8K),
            ..Default::default()
        };
        assert_eq!(AudioSynth::new(&g).frame(1, 1, 0, 0).len(), 160);
    }

    #[test]
    fn samples_are_what_they_claim() {
        assert_eq!(&SAMPLE_JPEG[..3], &[0xFF, 0xD8, 0xFF]);
        assert_eq!(&SAMPLE_PNG[..4], b"\x89PNG");
        assert_eq!(&SAMPLE_H264_KEYFRAME[..5], &[0, 0, 0, 1, 0x67]);
        assert_eq!(linear_to_alaw(0), 0xD5);
    }

    /// A participant's `level` scales their voice: -20 dB is a tenth of the amplitude.
    #[test]
    fn a_participants_level_scales_their_voice() {
        let script = crate::MeetingScript::from_toml_str(
            "[[participant]]\nname = \"A\"\n[[participant]]\nname = \"B\"\nlevel = -20.0\n\
             [[utterance]]\nspeaker = \"A\"\nstart = 0\nduration = 1\ntext = \"a\"\n",
        )
        .unwrap();
        let (a, b) = (
            script.participants[0].user_id,
            script.participants[1].user_id,
        );
        let synth = AudioSynth::new(&AudioParams::default()).with_gains(script.gains());
        let rms = |user: i64| {
            let bytes = synth.frame(7, user, 0, 3);
            let sum: f64 = bytes
                .chunks(2)
                .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]])).powi(2))
                .sum();
            (sum / (bytes.len() / 2) as f64).sqrt()
        };
        // B's voice with its gain and without.
        let plain = AudioSynth::new(&AudioParams::default());
        let rms_plain = {
            let bytes = plain.frame(7, b, 0, 3);
            let sum: f64 = bytes
                .chunks(2)
                .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]])).powi(2))
                .sum();
            (sum / (bytes.len() / 2) as f64).sqrt()
        };
        let ratio = rms(b) / rms_plain;
        assert!((ratio - 0.1).abs() < 0.01, "{ratio}");
        assert!(rms(a) > 0.0);
        let e =
            crate::MeetingScript::from_toml_str("[[participant]]\nname = \"A\"\nlevel = 30.0\n")
                .unwrap_err();
        assert!(e.to_string().contains("level = 30"), "{e}");
    }
}
