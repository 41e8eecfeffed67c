//! One recording on disk: creating a WAV file for a fresh session, reopening it for a resumed
//! one, appending a batch of frames (with the silence [`crate::timeline`] asks for) in one
//! write, and patching the header's sizes and timeline mark after every batch.
//!
//! This uses only `std::fs`, so it runs (and is tested) natively as well as in the component.
//! After [`Recording::append`] or [`Recording::finish`] returns, the file is a valid WAV.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::timeline::{GapPolicy, Timeline};
use crate::wav::{self, Mark, PcmFormat, WavError};

/// How much of an existing file is read to find its header.
const HEADER_PROBE: u64 = 4096;

/// Why a recording cannot be opened or written.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error(
        "cannot open {path} ({source}); grant its directory to the plugin in pipeline.toml and \
         use the guest path it is granted at"
    )]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot resume the recording in {path}: {source}; move the file away to start a new one"
    )]
    Foreign { path: String, source: WavError },
    #[error(
        "cannot resume the recording in {path}: it holds {file_rate} Hz x {file_channels} \
         channel(s) but the session sends {rate} Hz x {channels}; move the file away to start a \
         new one"
    )]
    FormatChanged {
        path: String,
        file_rate: u32,
        file_channels: u16,
        rate: u32,
        channels: u16,
    },
}

/// What one [`Recording::append`] call wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    pub audio_bytes: u64,
    pub silence_bytes: u64,
    pub silence_ms: u64,
    /// Frames cut short because the file reached the WAV size limit.
    pub truncated: u64,
}

/// An open WAV recording.
pub struct Recording {
    path: PathBuf,
    file: File,
    data_offset: u64,
    data_size_offset: u64,
    /// Offset of the `rtms` chunk's origin field; `None` for a file without one.
    mark_offset: Option<u64>,
    timeline: Timeline,
    /// Whether the file held audio from an earlier instance when this one opened it.
    appended_to: bool,
    /// The file's bytes before the samples, as last written: a patch rewrites the span of
    /// them that holds the patched fields in one write.
    head: Vec<u8>,
}

impl Recording {
    /// Opens the recording at `path`: a new file with a placeholder header when `resume` is
    /// false or there is no file yet; otherwise the existing file, positioned after its last
    /// whole sample (a partial sample an interrupted write left is cut off).
    pub fn open(
        path: &Path,
        format: PcmFormat,
        policy: GapPolicy,
        frame_ms: u32,
        resume: bool,
    ) -> Result<Self, RecordError> {
        let shown = path.display().to_string();
        let open_err = |source| RecordError::Open {
            path: shown.clone(),
            source,
        };
        let existing = if resume {
            match std::fs::metadata(path) {
                Ok(m) if m.len() > 0 => Some(m.len()),
                Ok(_) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(open_err(e)),
            }
        } else {
            None
        };
        let Some(len) = existing else {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(open_err)?;
            let head = wav::header(format, Mark::default(), 0);
            file.write_all(&head)
                .map_err(|source| io("write the header of", &shown, source))?;
            return Ok(Self {
                path: path.to_owned(),
                file,
                data_offset: wav::HEADER_LEN,
                data_size_offset: wav::HEADER_LEN - 4,
                mark_offset: Some(wav::SKIPPED_OFFSET - 8),
                timeline: Timeline::new(
                    format,
                    policy,
                    frame_ms,
                    None,
                    0,
                    wav::max_data_len(wav::HEADER_LEN, format),
                ),
                appended_to: false,
                head,
            });
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(open_err)?;
        let mut head = Vec::new();
        (&mut file)
            .take(HEADER_PROBE)
            .read_to_end(&mut head)
            .map_err(|source| io("read", &shown, source))?;
        let parsed = wav::parse_header(&head).map_err(|source| RecordError::Foreign {
            path: shown.clone(),
            source,
        })?;
        if parsed.format != format {
            return Err(RecordError::FormatChanged {
                path: shown,
                file_rate: parsed.format.sample_rate,
                file_channels: parsed.format.channels,
                rate: format.sample_rate,
                channels: format.channels,
            });
        }
        let limit = wav::max_data_len(parsed.data_offset, format);
        let data_len = format
            .align_down(len.saturating_sub(parsed.data_offset))
            .min(limit);
        if parsed.data_offset + data_len != len {
            file.set_len(parsed.data_offset + data_len)
                .map_err(|source| io("cut the partial sample off", &shown, source))?;
        }
        let mut recording = Self {
            path: path.to_owned(),
            file,
            data_offset: parsed.data_offset,
            data_size_offset: parsed.data_size_offset(),
            mark_offset: parsed.skipped_offset.map(|o| o - 8),
            // Origin 0 is the placeholder of a file no frame reached yet.
            timeline: Timeline::new(
                format,
                policy,
                frame_ms,
                parsed.mark.filter(|m| m.origin_ms != 0),
                data_len,
                limit,
            ),
            appended_to: data_len > 0,
            head: head[..parsed.data_offset as usize].to_vec(),
        };
        // Sizes may be placeholders if the last instance was interrupted: fix them now.
        recording.patch()?;
        Ok(recording)
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file held audio from an earlier instance when it was opened.
    pub fn appended_to(&self) -> bool {
        self.appended_to
    }

    /// The recording's length in ms.
    pub fn duration_ms(&self) -> u64 {
        self.timeline.duration_ms()
    }

    /// The file's length in bytes.
    pub fn file_len(&self) -> u64 {
        self.data_offset + self.timeline.data_len()
    }

    /// Sample bytes in the file.
    pub fn data_len(&self) -> u64 {
        self.timeline.data_len()
    }

    /// Appends frames, given as (Zoom timestamp in ms, payload), with silence for the gaps
    /// before them; one write for the whole batch, then the header is patched.
    pub fn append<'a>(
        &mut self,
        frames: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<Appended, RecordError> {
        let start = self.file_len();
        let mut buf = Vec::new();
        let mut done = Appended::default();
        for (ts, payload) in frames {
            let p = self.timeline.place(ts, payload.len() as u64);
            buf.resize(buf.len() + p.silence as usize, 0);
            buf.extend_from_slice(&payload[..p.audio as usize]);
            done.audio_bytes += p.audio;
            done.silence_bytes += p.silence;
            done.silence_ms += p.silence_ms;
            done.truncated += u64::from(p.truncated);
        }
        if buf.is_empty() {
            return Ok(done);
        }
        let shown = self.path.display().to_string();
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.write_all(&buf))
            .map_err(|source| io("write audio to", &shown, source))?;
        self.patch()?;
        Ok(done)
    }

    /// Patches the sizes and the mark, and flushes: the file is complete.
    pub fn finish(&mut self) -> Result<(), RecordError> {
        self.patch()
    }

    /// Writes the RIFF size, the data size and the timeline mark into the header: the
    /// fields are set in the copy of the header, and the span of it from the first to the
    /// last field is written in one go (one write per batch instead of one per field).
    fn patch(&mut self) -> Result<(), RecordError> {
        let data_len = self.timeline.data_len();
        let riff = wav::riff_size(self.data_offset, data_len);
        let data = u32::try_from(data_len).unwrap_or(u32::MAX);
        let mut span = (u64::MAX, 0u64);
        let mut set = |head: &mut Vec<u8>, at: u64, bytes: &[u8]| {
            let (from, to) = (at as usize, at as usize + bytes.len());
            head[from..to].copy_from_slice(bytes);
            span = (span.0.min(at), span.1.max(to as u64));
        };
        set(&mut self.head, wav::RIFF_SIZE_OFFSET, &riff.to_le_bytes());
        set(&mut self.head, self.data_size_offset, &data.to_le_bytes());
        if let (Some(at), Some(mark)) = (self.mark_offset, self.timeline.mark()) {
            set(&mut self.head, at, &mark.origin_ms.to_le_bytes());
            set(&mut self.head, at + 8, &mark.skipped_ms.to_le_bytes());
        }
        let shown = self.path.display().to_string();
        let (from, to) = span;
        self.file
            .seek(SeekFrom::Start(from))
            .and_then(|_| self.file.write_all(&self.head[from as usize..to as usize]))
            .and_then(|_| self.file.flush())
            .map_err(|source| io("update the header of", &shown, source))
    }
}

fn io(action: &'static str, path: &str, source: std::io::Error) -> RecordError {
    RecordError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONO_16K: PcmFormat = PcmFormat {
        sample_rate: 16_000,
        channels: 1,
    };
    const FILL: GapPolicy = GapPolicy {
        fill: true,
        max_gap_ms: 10_000,
    };
    const T0: u64 = 1_700_000_000_000;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// Checks the sizes in the header against the file's length; returns the sample bytes.
    fn valid_wav(path: &Path) -> Vec<u8> {
        let bytes = std::fs::read(path).unwrap();
        let parsed = wav::parse_header(&bytes).unwrap();
        let off = parsed.data_offset as usize;
        assert_eq!(u32_at(&bytes, 4) as usize, bytes.len() - 8, "RIFF size");
        assert_eq!(
            u32_at(&bytes, off - 4) as usize,
            bytes.len() - off,
            "data size"
        );
        bytes[off..].to_vec()
    }

    fn tone(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 | 1).collect()
    }

    #[test]
    fn a_fresh_recording_is_valid_after_each_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let mut r = Recording::open(&path, MONO_16K, FILL, 20, false).unwrap();
        assert_eq!(
            valid_wav(&path).len(),
            0,
            "header alone is a valid empty WAV"
        );
        let frame = tone(640);
        let batch: Vec<(u64, &[u8])> = (0..5).map(|i| (T0 + i * 20, &frame[..])).collect();
        let done = r.append(batch).unwrap();
        assert_eq!(done.audio_bytes, 3200);
        assert_eq!(valid_wav(&path).len(), 3200);
        // A 1 s gap (the next frame was due at T0+100).
        let done = r.append([(T0 + 1100, &frame[..])]).unwrap();
        assert_eq!(done.silence_ms, 1000);
        r.finish().unwrap();
        let data = valid_wav(&path);
        assert_eq!(data.len(), 3200 + 32_000 + 640);
        assert!(data[3200..35_200].iter().all(|b| *b == 0), "silence");
        assert_eq!(&data[35_200..], &frame[..]);
        assert_eq!(r.duration_ms(), 1120);
        let mark = wav::parse_header(&std::fs::read(&path).unwrap())
            .unwrap()
            .mark;
        assert_eq!(
            mark,
            Some(Mark {
                origin_ms: T0,
                skipped_ms: 0
            })
        );
    }

    #[test]
    fn a_resumed_recording_appends_and_keeps_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let frame = tone(640);
        {
            let mut r = Recording::open(&path, MONO_16K, FILL, 20, false).unwrap();
            r.append([(T0, &frame[..]), (T0 + 20, &frame[..])]).unwrap();
            r.finish().unwrap();
        }
        let mut r = Recording::open(&path, MONO_16K, FILL, 20, true).unwrap();
        assert!(r.appended_to());
        assert_eq!(r.duration_ms(), 40);
        // The meeting went on: the next frame is 500 ms after the recording's end.
        let done = r.append([(T0 + 540, &frame[..])]).unwrap();
        assert_eq!(done.silence_ms, 500);
        r.finish().unwrap();
        let data = valid_wav(&path);
        assert_eq!(data.len(), 640 * 3 + 16_000);
        assert_eq!(&data[..640], &frame[..]);
    }

    #[test]
    fn an_interrupted_recording_is_repaired_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        // Placeholder sizes, origin never patched, 1000 bytes and half a sample of data.
        let mut bytes = wav::header(MONO_16K, Mark::default(), 0);
        bytes.extend_from_slice(&tone(1001));
        std::fs::write(&path, &bytes).unwrap();
        let mut r = Recording::open(&path, MONO_16K, FILL, 20, true).unwrap();
        assert_eq!(
            valid_wav(&path).len(),
            1000,
            "the partial sample is cut off"
        );
        r.append([(T0, &tone(640)[..])]).unwrap();
        assert_eq!(valid_wav(&path).len(), 1640);
    }

    #[test]
    fn resuming_with_no_file_starts_one_and_a_fresh_session_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let mut r = Recording::open(&path, MONO_16K, FILL, 20, true).unwrap();
        assert!(!r.appended_to());
        r.append([(T0, &tone(640)[..])]).unwrap();
        drop(r);
        let r = Recording::open(&path, MONO_16K, FILL, 20, false).unwrap();
        assert_eq!(r.data_len(), 0);
        assert_eq!(valid_wav(&path).len(), 0);
    }

    #[test]
    fn resuming_refuses_other_files_and_formats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        std::fs::write(&path, b"not a wav at all").unwrap();
        let err = Recording::open(&path, MONO_16K, FILL, 20, true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("not a WAV") && err.contains("move the file away"),
            "{err}"
        );
        std::fs::write(&path, wav::header(MONO_16K, Mark::default(), 0)).unwrap();
        let stereo = PcmFormat {
            sample_rate: 48_000,
            channels: 2,
        };
        let err = Recording::open(&path, stereo, FILL, 20, true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("16000 Hz x 1") && err.contains("48000 Hz x 2"),
            "{err}"
        );
        let err = Recording::open(
            &dir.path().join("no/such/dir.wav"),
            MONO_16K,
            FILL,
            20,
            false,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("grant its directory"), "{err}");
    }
}
