//! Where frames go: one H.264 elementary stream, or one folder of images, per (kind,
//! participant). Only `std::fs`, so it runs and is tested natively too.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Video or screen share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Track {
    Video,
    Share,
}

impl Track {
    fn name(self) -> &'static str {
        match self {
            Track::Video => "video",
            Track::Share => "share",
        }
    }
}

/// What a payload is, by its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    H264,
    Jpeg,
    Png,
}

impl Format {
    pub fn sniff(payload: &[u8]) -> Option<Format> {
        if payload.starts_with(&[0, 0, 0, 1]) || payload.starts_with(&[0, 0, 1]) {
            Some(Format::H264)
        } else if payload.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else if payload.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::H264 => "h264",
            Format::Jpeg => "jpeg",
            Format::Png => "png",
        }
    }
}

/// One output: an open stream, or a folder of images.
struct Output {
    path: PathBuf,
    format: Format,
    stream: Option<BufWriter<File>>,
    frames: u64,
    bytes: u64,
}

/// One file or folder, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub path: String,
    pub format: &'static str,
    pub frames: u64,
    pub bytes: u64,
}

/// A session's recorder.
pub struct Recorder {
    dir: PathBuf,
    base: String,
    stream_id: String,
    resumed: bool,
    keep_images: bool,
    max_images: u64,
    images: u64,
    skipped: u64,
    outputs: BTreeMap<(Track, String, &'static str), Output>,
}

impl Recorder {
    pub fn new(
        dir: PathBuf,
        base: String,
        stream_id: String,
        resumed: bool,
        keep_images: bool,
        max_images: u64,
    ) -> Self {
        Self {
            dir,
            base,
            stream_id,
            resumed,
            keep_images,
            max_images,
            images: 0,
            skipped: 0,
            outputs: BTreeMap::new(),
        }
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// Frames of no known format, or images past `max_frames`.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Writes one frame. `user` is Zoom's attribution (empty or `-1` for none). Returns a
    /// warning to log the first time something is skipped.
    pub fn write(
        &mut self,
        track: Track,
        user: &str,
        seq: u64,
        payload: &[u8],
    ) -> Result<Option<String>, String> {
        let Some(format) = Format::sniff(payload) else {
            self.skipped += 1;
            return Ok((self.skipped == 1).then(|| {
                format!(
                    "a {} frame is neither H.264, JPEG nor PNG; such frames are skipped",
                    track.name()
                )
            }));
        };
        if format != Format::H264 && self.keep_images && self.images >= self.max_images {
            self.skipped += 1;
            return Ok((self.skipped == 1).then(|| {
                format!(
                    "max_frames ({}) image files written for this session; later images are counted, not written",
                    self.max_images
                )
            }));
        }
        let who = if user.is_empty() || user == "-1" {
            String::new()
        } else {
            format!("_{}", rtms_plugin::file_safe(user))
        };
        let key = (track, who.clone(), format.name());
        if !self.outputs.contains_key(&key) {
            let name = format!("{}_{}{who}", self.base, track.name());
            let out = match format {
                Format::H264 => {
                    let path = self.dir.join(format!("{name}.h264"));
                    let file = OpenOptions::new()
                        .create(true)
                        .write(true)
                        .append(self.resumed)
                        .truncate(!self.resumed)
                        .open(&path)
                        .map_err(|e| {
                            format!(
                                "cannot open {} ({e}); grant its directory to the plugin in pipeline.toml",
                                path.display()
                            )
                        })?;
                    Output {
                        path,
                        format,
                        stream: Some(BufWriter::new(file)),
                        frames: 0,
                        bytes: 0,
                    }
                }
                Format::Jpeg | Format::Png => {
                    let path = self.dir.join(&name);
                    if self.keep_images {
                        std::fs::create_dir_all(&path).map_err(|e| {
                            format!(
                                "cannot create {} ({e}); grant its directory to the plugin in pipeline.toml",
                                path.display()
                            )
                        })?;
                    }
                    Output {
                        path,
                        format,
                        stream: None,
                        frames: 0,
                        bytes: 0,
                    }
                }
            };
            self.outputs.insert(key.clone(), out);
        }
        let out = self.outputs.get_mut(&key).expect("inserted above");
        match &mut out.stream {
            Some(w) => w
                .write_all(payload)
                .map_err(|e| format!("cannot write {}: {e}", out.path.display()))?,
            None if self.keep_images => {
                let ext = if out.format == Format::Jpeg {
                    "jpg"
                } else {
                    "png"
                };
                let file = out.path.join(format!("{seq:010}.{ext}"));
                std::fs::write(&file, payload)
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                self.images += 1;
            }
            None => {}
        }
        out.frames += 1;
        out.bytes += payload.len() as u64;
        Ok(None)
    }

    /// Flushes the streams.
    pub fn finish(&mut self) -> Result<(), String> {
        for out in self.outputs.values_mut() {
            if let Some(w) = &mut out.stream {
                w.flush()
                    .map_err(|e| format!("cannot write {}: {e}", out.path.display()))?;
            }
        }
        Ok(())
    }

    pub fn summary(&self) -> Vec<FileSummary> {
        self.outputs
            .values()
            .map(|o| FileSummary {
                path: o.path.display().to_string(),
                format: o.format.name(),
                frames: o.frames,
                bytes: o.bytes,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H264: &[u8] = &[0, 0, 0, 1, 0x67, 1, 2, 3];
    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 9];

    #[test]
    fn h264_goes_to_one_stream_per_track_and_participant_and_images_to_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::new(
            dir.path().into(),
            "meeting_s1".into(),
            "s1".into(),
            false,
            true,
            10,
        );
        r.write(Track::Video, "-1", 1, H264).unwrap();
        r.write(Track::Video, "-1", 2, H264).unwrap();
        r.write(Track::Video, "16778240", 3, H264).unwrap();
        r.write(Track::Share, "", 4, JPEG).unwrap();
        r.finish().unwrap();
        let mixed = std::fs::read(dir.path().join("meeting_s1_video.h264")).unwrap();
        assert_eq!(mixed, [H264, H264].concat());
        let one = std::fs::read(dir.path().join("meeting_s1_video_16778240.h264")).unwrap();
        assert_eq!(one, H264);
        let img = std::fs::read(dir.path().join("meeting_s1_share/0000000004.jpg")).unwrap();
        assert_eq!(img, JPEG);
        let s = r.summary();
        assert_eq!(s.len(), 3);
        assert_eq!(s.iter().map(|f| f.frames).sum::<u64>(), 4);
    }

    #[test]
    fn a_resumed_session_appends_and_a_fresh_one_truncates() {
        let dir = tempfile::tempdir().unwrap();
        for (resumed, want) in [(false, 1), (true, 2), (false, 1)] {
            let mut r = Recorder::new(dir.path().into(), "m".into(), "s".into(), resumed, true, 10);
            r.write(Track::Video, "", 1, H264).unwrap();
            r.finish().unwrap();
            let len = std::fs::metadata(dir.path().join("m_video.h264"))
                .unwrap()
                .len();
            assert_eq!(len, (H264.len() * want) as u64);
        }
    }

    #[test]
    fn unknown_payloads_and_images_past_the_cap_are_counted_with_one_warning() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::new(dir.path().into(), "m".into(), "s".into(), false, true, 1);
        assert!(r.write(Track::Video, "", 1, b"GIF89a").unwrap().is_some());
        assert!(r.write(Track::Video, "", 2, b"GIF89a").unwrap().is_none());
        r.write(Track::Video, "", 3, JPEG).unwrap();
        let w = r.write(Track::Video, "", 4, JPEG).unwrap();
        assert!(w.is_none(), "one warning in all");
        assert_eq!(r.skipped(), 3);
        assert_eq!(
            std::fs::read_dir(dir.path().join("m_video"))
                .unwrap()
                .count(),
            1
        );
        let e = Recorder::new(
            "/nonexistent/x".into(),
            "m".into(),
            "s".into(),
            false,
            true,
            1,
        )
        .write(Track::Video, "", 1, H264)
        .unwrap_err();
        assert!(e.contains("grant its directory"), "{e}");
    }
}
