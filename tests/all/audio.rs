//! The audio-recorder plugin in the real runtime: a session's L16 frames become a valid WAV
//! file with silence where Zoom sent none, a resumed session appends to the same file on the
//! same timeline, and a codec it cannot record is refused at session start.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rtms_host::dataplane::registry::{LiveStream, SessionDesc};
use rtms_host::sandbox::bindings::{AudioCodec, AudioFormat, Frame, MediaKind};

use crate::util::*;

/// Bytes of one 20 ms frame of 16 kHz mono L16.
const FRAME: usize = 640;

fn l16_16k() -> AudioFormat {
    AudioFormat {
        codec: AudioCodec::L16,
        sample_rate: 16_000,
        channels: 1,
        frame_ms: 20,
        per_speaker: false,
    }
}

fn audio_session(h: &Harness, stream: &str, resumed: bool, format: AudioFormat) -> Arc<LiveStream> {
    h.shared.open_session(SessionDesc {
        product: rtms_proto::Product::Meeting,
        meeting_id: format!("meeting-{stream}"),
        stream_id: stream.into(),
        operator_id: None,
        started_at_ms: 1_700_000_000_000,
        resumed,
        audio: Some(format),
        details: Default::default(),
        fence: Default::default(),
    })
}

/// Audio frame `seq` stamped `shift_ms` later than `util::audio` would, with a payload of
/// non-zero samples (so inserted silence is told apart).
fn voiced(seq: u64, shift_ms: u64) -> Frame {
    let mut f = audio(seq);
    f.timestamp_ms += shift_ms;
    f.payload = (0..FRAME).map(|i| (i % 200) as u8 + 1).collect();
    f
}

fn recorder() -> Plug {
    let mut p = Plug::new("rec", "audio_recorder");
    p.kinds = vec![MediaKind::Audio];
    p
}

/// Checks the RIFF header and the sizes against the file; returns (sample rate, channels,
/// bits, samples).
fn read_wav(path: &Path) -> (u32, u16, u16, Vec<u8>) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(&b[8..12], b"WAVE");
    assert_eq!(
        u32_at(4) as usize,
        b.len() - 8,
        "RIFF size matches the file"
    );
    let mut pos = 12;
    let mut fmt = None;
    loop {
        let id = &b[pos..pos + 4];
        let size = u32_at(pos + 4) as usize;
        if id == b"data" {
            assert_eq!(size, b.len() - pos - 8, "data size matches the file");
            let (rate, channels, bits) = fmt.expect("fmt before data");
            return (rate, channels, bits, b[pos + 8..].to_vec());
        }
        if id == b"fmt " {
            assert_eq!(u16_at(pos + 8), 1, "PCM");
            fmt = Some((u32_at(pos + 12), u16_at(pos + 10), u16_at(pos + 22)));
        }
        pos += 8 + size + size % 2;
    }
}

#[tokio::test]
async fn a_session_becomes_a_valid_wav_with_its_silences_filled() {
    let h = harness(&[recorder()]).await;
    let s = audio_session(&h, "rec-stream", false, l16_16k());
    // One second of audio, a 2 s silence, one more second.
    for seq in 1..=50 {
        s.push(voiced(seq, 0)).await;
    }
    for seq in 51..=100 {
        s.push(voiced(seq, 2000)).await;
    }
    end(&s).await;
    let file = h.out_dir().join("meeting_rec-stream.wav");
    let (rate, channels, bits, data) = read_wav(&file);
    assert_eq!((rate, channels, bits), (16_000, 1, 16));
    assert_eq!(
        data.len(),
        (50 + 100 + 50) * FRAME,
        "4 s: audio, silence, audio"
    );
    assert_eq!(data.len() / 2, 64_000, "samples");
    assert!(data[..50 * FRAME].iter().all(|b| *b != 0));
    assert!(
        data[50 * FRAME..150 * FRAME].iter().all(|b| *b == 0),
        "the gap is silence"
    );
    assert!(data[150 * FRAME..].iter().all(|b| *b != 0));
    drop(s);
    let (outputs, _dir) = h.finish().await;
    let summary = outputs
        .iter()
        .find(|o| o["plugin"] == "rec" && o["kind"] == "summary")
        .expect("a summary output");
    assert_eq!(summary["data"]["seconds"], 4.0, "{summary}");
    assert_eq!(summary["data"]["frames"], 100);
    assert_eq!(summary["data"]["silence_ms"], 2000);
    assert_eq!(
        summary["data"]["bytes"].as_u64(),
        Some(std::fs::metadata(&file).unwrap().len())
    );
}

#[tokio::test]
async fn a_resumed_session_appends_on_the_same_timeline() {
    let h = harness(&[recorder()]).await;
    let s = audio_session(&h, "resume-stream", false, l16_16k());
    for seq in 1..=25 {
        s.push(voiced(seq, 0)).await;
    }
    s.end(rtms_host::sandbox::bindings::EndReason::Reload).await;
    let file = h.out_dir().join("meeting_resume-stream.wav");
    assert_eq!(
        read_wav(&file).3.len(),
        25 * FRAME,
        "valid after the first instance"
    );
    // The next instance picks up 500 ms of meeting time later.
    let s = audio_session(&h, "resume-stream", true, l16_16k());
    for seq in 26..=50 {
        s.push(voiced(seq, 500)).await;
    }
    end(&s).await;
    let data = read_wav(&file).3;
    assert_eq!(data.len(), (25 + 25 + 25) * FRAME);
    assert!(data[25 * FRAME..50 * FRAME].iter().all(|b| *b == 0));
    assert!(data[50 * FRAME..].iter().all(|b| *b != 0));
}

#[tokio::test]
async fn codecs_other_than_l16_are_refused_at_session_start() {
    let h = harness(&[recorder()]).await;
    let s = audio_session(
        &h,
        "opus-stream",
        false,
        AudioFormat {
            codec: AudioCodec::Opus,
            ..l16_16k()
        },
    );
    for seq in 1..=3 {
        s.push(voiced(seq, 0)).await;
    }
    end(&s).await;
    // The instance never starts, so no frame is delivered: they go to the dead-letter file.
    let stats = h.metrics.plugin("rec");
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 0);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 3);
    assert!(!h.out_dir().join("meeting_opus-stream.wav").exists());
}
