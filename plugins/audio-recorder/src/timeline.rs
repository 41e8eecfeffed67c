//! Placing audio frames on the meeting's clock: how much silence goes before each frame so the
//! recording's timeline matches the meeting's, and how a resumed instance finds its place.
//!
//! Zoom sends no audio while nobody speaks, so consecutive frames can be seconds apart. The
//! recording keeps a mapping from file position to Zoom time:
//!
//! ```text
//! meeting ms of the next sample = origin_ms + skipped_ms + duration of the data written
//! ```
//!
//! `origin_ms` is the timestamp of the first frame recorded; `skipped_ms` is meeting time left
//! out of the file (a gap longer than `max_gap_ms` keeps only `max_gap_ms` of silence, and
//! with `fill_gaps = false` every gap is left out). A frame whose timestamp lies more than one
//! frame past the next sample's time is a gap; with gap filling on, silence fills it, capped.
//! Frames at or before that time are appended as they are: the recording never goes backwards.
//!
//! Both numbers live in the file (see [`crate::wav`]), so an instance that resumes the
//! session continues the same clock. Nothing here touches files or the host.

use crate::wav::{Mark, PcmFormat};

/// How gaps between frames are treated, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapPolicy {
    /// Insert silence for gaps (`fill_gaps`).
    pub fill: bool,
    /// Most silence inserted for one gap, in ms (`max_gap_ms`).
    pub max_gap_ms: u64,
}

/// What to write for one frame: `silence` zero bytes, then the first `audio` bytes of its
/// payload. Both are whole sample frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    pub silence: u64,
    pub audio: u64,
    /// Milliseconds of silence in `silence`.
    pub silence_ms: u64,
    /// True when the file is full (WAV sizes are 32-bit) and some of the frame was dropped.
    pub truncated: bool,
}

/// The recording's position on the meeting's clock.
#[derive(Debug, Clone)]
pub struct Timeline {
    format: PcmFormat,
    policy: GapPolicy,
    /// Unknown until the first frame of a fresh recording (or of a resumed file without one).
    mark: Option<Mark>,
    data_len: u64,
    /// Most data bytes the file may hold.
    limit: u64,
    /// Tolerance before a difference counts as a gap: one frame.
    frame_ms: u64,
}

impl Timeline {
    /// A timeline for a recording that holds `data_len` bytes already (0 for a new file),
    /// with the mark read from the file if it had one.
    pub fn new(
        format: PcmFormat,
        policy: GapPolicy,
        frame_ms: u32,
        mark: Option<Mark>,
        data_len: u64,
        limit: u64,
    ) -> Self {
        Self {
            format,
            policy,
            mark,
            data_len,
            limit,
            frame_ms: u64::from(frame_ms.max(1)),
        }
    }

    /// The mark to store in the file; `None` before the first frame.
    pub fn mark(&self) -> Option<Mark> {
        self.mark
    }

    /// Sample bytes in the recording.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Length of the recording in ms.
    pub fn duration_ms(&self) -> u64 {
        self.format.ms_for_bytes(self.data_len)
    }

    /// Meeting time (Zoom ms) of the next sample, once known.
    pub fn next_ms(&self) -> Option<u64> {
        self.mark
            .map(|m| m.origin_ms + m.skipped_ms + self.duration_ms())
    }

    /// Places a frame stamped `timestamp_ms` carrying `payload_len` bytes, and advances.
    pub fn place(&mut self, timestamp_ms: u64, payload_len: u64) -> Placement {
        let duration = self.duration_ms();
        let mark = self.mark.get_or_insert(Mark {
            origin_ms: timestamp_ms.saturating_sub(duration),
            skipped_ms: 0,
        });
        let expected = mark.origin_ms + mark.skipped_ms + duration;
        let gap = timestamp_ms.saturating_sub(expected);
        let mut placement = Placement::default();
        if gap > self.frame_ms {
            let filled = if self.policy.fill {
                gap.min(self.policy.max_gap_ms)
            } else {
                0
            };
            placement.silence = self.format.bytes_for_ms(filled);
            placement.silence_ms = filled;
            mark.skipped_ms += gap - filled;
        }
        placement.audio = self.format.align_down(payload_len);
        let room = self.limit.saturating_sub(self.data_len);
        if placement.silence + placement.audio > room {
            placement.truncated = true;
            placement.silence = placement.silence.min(room);
            placement.silence_ms = self.format.ms_for_bytes(placement.silence);
            placement.audio = self.format.align_down(room - placement.silence);
        }
        self.data_len += placement.silence + placement.audio;
        placement
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

    fn fresh(policy: GapPolicy) -> Timeline {
        Timeline::new(MONO_16K, policy, 20, None, 0, u64::MAX)
    }

    #[test]
    fn contiguous_frames_get_no_silence() {
        let mut t = fresh(FILL);
        for i in 0..50 {
            let p = t.place(T0 + i * 20, 640);
            assert_eq!((p.silence, p.audio), (0, 640), "frame {i}");
        }
        assert_eq!(t.duration_ms(), 1000);
        assert_eq!(
            t.mark(),
            Some(Mark {
                origin_ms: T0,
                skipped_ms: 0
            })
        );
        assert_eq!(t.next_ms(), Some(T0 + 1000));
    }

    #[test]
    fn jitter_up_to_one_frame_is_not_a_gap() {
        let mut t = fresh(FILL);
        t.place(T0, 640);
        assert_eq!(
            t.place(T0 + 40, 640).silence,
            0,
            "20 ms late: within a frame"
        );
        assert_eq!(
            t.place(T0 + 30, 640).silence,
            0,
            "early frames are appended"
        );
        assert_eq!(t.duration_ms(), 60);
    }

    #[test]
    fn a_gap_is_filled_with_its_length_of_silence() {
        let mut t = fresh(FILL);
        t.place(T0, 640);
        // Next sample due at T0+20; this frame comes 1.5 s later.
        let p = t.place(T0 + 1520, 640);
        assert_eq!(p.silence, MONO_16K.bytes_for_ms(1500));
        assert_eq!(p.silence_ms, 1500);
        assert_eq!(p.audio, 640);
        assert_eq!(t.next_ms(), Some(T0 + 1540));
        assert_eq!(
            t.duration_ms(),
            1540,
            "the file's timeline is the meeting's"
        );
    }

    #[test]
    fn long_gaps_are_capped_and_the_rest_is_counted_as_skipped() {
        let mut t = fresh(GapPolicy {
            fill: true,
            max_gap_ms: 2000,
        });
        t.place(T0, 640);
        let p = t.place(T0 + 20 + 60_000, 640);
        assert_eq!(p.silence_ms, 2000);
        assert_eq!(t.mark().unwrap().skipped_ms, 58_000);
        // The clock still matches: the next frame right after is contiguous.
        assert_eq!(t.next_ms(), Some(T0 + 20 + 60_000 + 20));
        assert_eq!(t.place(T0 + 60_040, 640).silence, 0);
    }

    #[test]
    fn without_filling_gaps_are_skipped() {
        let mut t = fresh(GapPolicy {
            fill: false,
            max_gap_ms: 10_000,
        });
        t.place(T0, 640);
        let p = t.place(T0 + 5020, 640);
        assert_eq!(p.silence, 0);
        assert_eq!(t.duration_ms(), 40);
        assert_eq!(t.mark().unwrap().skipped_ms, 5000);
    }

    #[test]
    fn a_resumed_recording_continues_the_clock() {
        // An earlier instance wrote 3 s starting at T0 and skipped 1 s.
        let mark = Mark {
            origin_ms: T0,
            skipped_ms: 1000,
        };
        let mut t = Timeline::new(
            MONO_16K,
            FILL,
            20,
            Some(mark),
            MONO_16K.bytes_for_ms(3000),
            u64::MAX,
        );
        assert_eq!(t.next_ms(), Some(T0 + 4000));
        // The new instance's first frame arrives at T0 + 4.5 s: 500 ms of silence first.
        let p = t.place(T0 + 4500, 640);
        assert_eq!(p.silence_ms, 500);
        assert_eq!(t.duration_ms(), 3520);
    }

    #[test]
    fn a_resumed_file_without_a_mark_continues_where_the_first_frame_lands() {
        let data = MONO_16K.bytes_for_ms(1000);
        let mut t = Timeline::new(MONO_16K, FILL, 20, None, data, u64::MAX);
        let p = t.place(T0 + 9000, 640);
        assert_eq!(p.silence, 0);
        assert_eq!(t.mark().unwrap().origin_ms, T0 + 8000);
    }

    #[test]
    fn odd_payloads_keep_whole_samples_and_a_full_file_truncates() {
        let stereo = PcmFormat {
            sample_rate: 16_000,
            channels: 2,
        };
        let mut t = Timeline::new(stereo, FILL, 20, None, 0, 2000);
        assert_eq!(t.place(T0, 1283).audio, 1280);
        let p = t.place(T0 + 20, 1280);
        assert!(p.truncated);
        assert_eq!(p.audio, 720, "what fits of the second frame");
        let mut t = Timeline::new(MONO_16K, FILL, 20, None, 0, 1000);
        t.place(T0, 640);
        let p = t.place(T0 + 20, 640);
        assert!(p.truncated);
        assert_eq!(p.audio, 360);
        assert_eq!(t.data_len(), 1000);
    }
}
