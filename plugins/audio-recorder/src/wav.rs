//! The WAV container: the header the recorder writes, reading it back when a session resumes,
//! and the byte patches that keep the RIFF and data sizes right as audio is appended.
//!
//! The recorder writes 16-bit PCM (`WAVE_FORMAT_PCM`) and this layout, 68 bytes before the
//! samples:
//!
//! | offset | bytes | field |
//! |--------|-------|-------|
//! | 0      | 4     | `RIFF` |
//! | 4      | 4     | RIFF size: file length − 8 (patched) |
//! | 8      | 4     | `WAVE` |
//! | 12     | 8     | `fmt ` chunk header, size 16 |
//! | 20     | 16    | format 1 (PCM), channels, sample rate, byte rate, block align, 16 bits |
//! | 36     | 8     | `rtms` chunk header, size 16 |
//! | 44     | 8     | timeline origin: Zoom timestamp (ms) of the first sample |
//! | 52     | 8     | skipped ms: meeting time left out by capped gaps (patched) |
//! | 60     | 8     | `data` chunk header; its size is patched |
//! | 68     | …     | samples, little-endian, channels interleaved |
//!
//! The `rtms` chunk lets an instance that resumes the session map the file back onto the
//! meeting's clock; WAV readers skip chunks they do not know. Sizes are written as 0 at first
//! and patched after every write, so the file is a valid WAV whenever no write is in flight.
//!
//! Nothing here touches files or the host; it is unit tested natively.

use thiserror::Error;

/// Bytes before the samples in a file this module writes.
pub const HEADER_LEN: u64 = 68;
/// Where the RIFF size lives.
pub const RIFF_SIZE_OFFSET: u64 = 4;
/// Where the skipped-ms field of the `rtms` chunk lives in a file this module writes.
pub const SKIPPED_OFFSET: u64 = 52;
/// The chunk id of the recorder's timeline mark.
const MARK_ID: &[u8; 4] = b"rtms";
/// Bits per sample: the recorder writes L16 only.
const BITS: u16 = 16;

/// The sample layout of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmFormat {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u16,
}

impl PcmFormat {
    /// Bytes of one sample frame (every channel once).
    pub fn block_align(self) -> u64 {
        u64::from(self.channels) * u64::from(BITS / 8)
    }

    /// Bytes per second.
    pub fn byte_rate(self) -> u64 {
        u64::from(self.sample_rate) * self.block_align()
    }

    /// Bytes holding `ms` milliseconds of audio, rounded down to whole sample frames.
    pub fn bytes_for_ms(self, ms: u64) -> u64 {
        ms.saturating_mul(u64::from(self.sample_rate)) / 1000 * self.block_align()
    }

    /// Milliseconds `bytes` of audio last, rounded down.
    pub fn ms_for_bytes(self, bytes: u64) -> u64 {
        bytes
            .saturating_mul(1000)
            .checked_div(self.byte_rate())
            .unwrap_or(0)
    }

    /// `bytes` rounded down to whole sample frames.
    pub fn align_down(self, bytes: u64) -> u64 {
        let align = self.block_align().max(1);
        bytes - bytes % align
    }
}

/// Where a recording sits on the meeting's clock, kept in the `rtms` chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// Zoom timestamp (ms) of the first sample in the file.
    pub origin_ms: u64,
    /// Meeting time (ms) that is not in the file because gaps were capped (or not filled).
    pub skipped_ms: u64,
}

/// What [`parse_header`] found in an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub format: PcmFormat,
    /// Offset of the first sample.
    pub data_offset: u64,
    /// The timeline mark, when the file has an `rtms` chunk.
    pub mark: Option<Mark>,
    /// Offset of the mark's skipped-ms field, when there is a mark.
    pub skipped_offset: Option<u64>,
}

impl Parsed {
    /// Where the data chunk's size lives.
    pub fn data_size_offset(&self) -> u64 {
        self.data_offset - 4
    }
}

/// Why an existing file cannot be appended to.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WavError {
    #[error("it is not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    #[error("it ends inside its header")]
    Truncated,
    #[error("its data chunk comes before its fmt chunk")]
    NoFormat,
    #[error(
        "it holds format {tag} with {bits} bits per sample; only 16-bit PCM (format 1) can be \
         appended to"
    )]
    NotPcm16 { tag: u16, bits: u16 },
}

/// The header of a new recording, with the data size `data_len` (0 for a placeholder).
pub fn header(format: PcmFormat, mark: Mark, data_len: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN as usize);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&riff_size(HEADER_LEN, u64::from(data_len)).to_le_bytes());
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(b"fmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&format.channels.to_le_bytes());
    h.extend_from_slice(&format.sample_rate.to_le_bytes());
    h.extend_from_slice(&clamp_u32(format.byte_rate()).to_le_bytes());
    h.extend_from_slice(&(format.block_align() as u16).to_le_bytes());
    h.extend_from_slice(&BITS.to_le_bytes());
    h.extend_from_slice(MARK_ID);
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&mark.origin_ms.to_le_bytes());
    h.extend_from_slice(&mark.skipped_ms.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// The RIFF size field for a file of `data_offset + data_len` bytes, clamped to `u32`.
pub fn riff_size(data_offset: u64, data_len: u64) -> u32 {
    clamp_u32((data_offset + data_len).saturating_sub(8))
}

/// The most sample bytes a WAV file with its data at `data_offset` can hold.
pub fn max_data_len(data_offset: u64, format: PcmFormat) -> u64 {
    format.align_down(u64::from(u32::MAX) - data_offset)
}

fn clamp_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Reads the header of an existing WAV file from its first bytes (at least up to the data
/// chunk's header; 4 KiB is plenty for anything this recorder writes). Sizes in the file are
/// not trusted: the caller takes the data length from the file's length, since a recording
/// interrupted before its sizes were patched holds placeholders.
pub fn parse_header(bytes: &[u8]) -> Result<Parsed, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    let mut pos = 12usize;
    let mut format = None;
    let mut mark = None;
    let mut skipped_offset = None;
    loop {
        let chunk = bytes.get(pos..pos + 8).ok_or(WavError::Truncated)?;
        let id = &chunk[0..4];
        let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]) as usize;
        let body = pos + 8;
        if id == b"data" {
            let format = format.ok_or(WavError::NoFormat)?;
            return Ok(Parsed {
                format,
                data_offset: body as u64,
                mark,
                skipped_offset,
            });
        }
        let content = bytes.get(body..body + size).ok_or(WavError::Truncated)?;
        if id == b"fmt " {
            if content.len() < 16 {
                return Err(WavError::Truncated);
            }
            let tag = u16::from_le_bytes([content[0], content[1]]);
            let channels = u16::from_le_bytes([content[2], content[3]]);
            let sample_rate = u32::from_le_bytes([content[4], content[5], content[6], content[7]]);
            let bits = u16::from_le_bytes([content[14], content[15]]);
            if tag != 1 || bits != BITS {
                return Err(WavError::NotPcm16 { tag, bits });
            }
            format = Some(PcmFormat {
                sample_rate,
                channels,
            });
        } else if id == MARK_ID && content.len() >= 16 {
            let u64_at = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&content[at..at + 8]);
                u64::from_le_bytes(b)
            };
            mark = Some(Mark {
                origin_ms: u64_at(0),
                skipped_ms: u64_at(8),
            });
            skipped_offset = Some(body as u64 + 8);
        }
        // Chunks are padded to an even length.
        pos = body + size + size % 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONO_16K: PcmFormat = PcmFormat {
        sample_rate: 16_000,
        channels: 1,
    };

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    #[test]
    fn header_has_the_documented_layout() {
        let stereo = PcmFormat {
            sample_rate: 48_000,
            channels: 2,
        };
        let mark = Mark {
            origin_ms: 1_700_000_000_123,
            skipped_ms: 7,
        };
        let h = header(stereo, mark, 1000);
        assert_eq!(h.len() as u64, HEADER_LEN);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32_at(&h, 4), 68 + 1000 - 8);
        assert_eq!(&h[8..16], b"WAVEfmt ");
        assert_eq!(u32_at(&h, 16), 16);
        assert_eq!(u16::from_le_bytes([h[20], h[21]]), 1, "PCM");
        assert_eq!(u16::from_le_bytes([h[22], h[23]]), 2, "channels");
        assert_eq!(u32_at(&h, 24), 48_000);
        assert_eq!(u32_at(&h, 28), 48_000 * 4, "byte rate");
        assert_eq!(u16::from_le_bytes([h[32], h[33]]), 4, "block align");
        assert_eq!(u16::from_le_bytes([h[34], h[35]]), 16, "bits");
        assert_eq!(&h[36..40], b"rtms");
        assert_eq!(&h[60..64], b"data");
        assert_eq!(u32_at(&h, 64), 1000);
        let parsed = parse_header(&h).unwrap();
        assert_eq!(parsed.format, stereo);
        assert_eq!(parsed.data_offset, HEADER_LEN);
        assert_eq!(parsed.data_size_offset(), 64);
        assert_eq!(parsed.mark, Some(mark));
        assert_eq!(parsed.skipped_offset, Some(SKIPPED_OFFSET));
    }

    #[test]
    fn a_plain_wav_from_elsewhere_parses_without_a_mark() {
        // 44-byte canonical header plus an odd-sized LIST chunk before data.
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&[1, 0, 1, 0]);
        h.extend_from_slice(&8000u32.to_le_bytes());
        h.extend_from_slice(&16000u32.to_le_bytes());
        h.extend_from_slice(&[2, 0, 16, 0]);
        h.extend_from_slice(b"LIST");
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&[1, 2, 3, 0]);
        h.extend_from_slice(b"data\0\0\0\0");
        let parsed = parse_header(&h).unwrap();
        assert_eq!(parsed.format.sample_rate, 8000);
        assert_eq!(parsed.data_offset, h.len() as u64);
        assert_eq!(parsed.mark, None);
    }

    #[test]
    fn files_that_cannot_be_appended_to_are_named() {
        assert_eq!(parse_header(b"hello world, no wav"), Err(WavError::NotWav));
        let h = header(MONO_16K, Mark::default(), 0);
        assert_eq!(parse_header(&h[..50]), Err(WavError::Truncated));
        let mut alaw = h.clone();
        alaw[20] = 6;
        alaw[34] = 8;
        assert_eq!(
            parse_header(&alaw),
            Err(WavError::NotPcm16 { tag: 6, bits: 8 })
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(MONO_16K.bytes_for_ms(20), 640);
        assert_eq!(MONO_16K.ms_for_bytes(640), 20);
        assert_eq!(MONO_16K.align_down(641), 640);
        let stereo = PcmFormat {
            sample_rate: 44_100,
            channels: 2,
        };
        assert_eq!(stereo.bytes_for_ms(10), 441 * 4);
        assert_eq!(stereo.align_down(7), 4);
        assert_eq!(riff_size(HEADER_LEN, 640), 700);
        assert_eq!(riff_size(HEADER_LEN, u64::MAX / 2), u32::MAX);
        assert_eq!(max_data_len(HEADER_LEN, MONO_16K) % 2, 0);
        assert!(max_data_len(HEADER_LEN, MONO_16K) + HEADER_LEN <= u64::from(u32::MAX));
    }
}
