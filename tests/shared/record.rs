//! What the seq-recorder fixture wrote for one stream: `# start resumed=…` lines, one
//! `<seq>\t<kind>\t<text>` line per frame, `# end <reason>` lines.

#![allow(dead_code)]

use std::path::Path;

/// What the seq-recorder wrote for one stream.
#[derive(Debug, Default)]
pub struct Record {
    /// `resumed` of each `# start` line.
    pub starts: Vec<bool>,
    /// `(seq, kind, text)` per frame.
    pub frames: Vec<(u64, String, String)>,
    /// The reason of each `# end` line.
    pub ends: Vec<String>,
}

impl Record {
    pub fn read(path: &Path) -> Record {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut r = Record::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# start resumed=") {
                r.starts.push(rest == "true");
            } else if let Some(rest) = line.strip_prefix("# end ") {
                r.ends.push(rest.to_owned());
            } else {
                let mut parts = line.splitn(3, '\t');
                let seq = parts.next().and_then(|s| s.parse().ok());
                let (Some(seq), Some(kind)) = (seq, parts.next()) else {
                    panic!("malformed record line {line:?} in {}", path.display());
                };
                r.frames
                    .push((seq, kind.to_owned(), parts.next().unwrap_or("").to_owned()));
            }
        }
        r
    }

    pub fn texts(&self, kind: &str) -> Vec<String> {
        self.frames
            .iter()
            .filter(|(_, k, _)| k == kind)
            .map(|(_, _, t)| t.clone())
            .collect()
    }

    pub fn count(&self, kind: &str) -> usize {
        self.frames.iter().filter(|(_, k, _)| k == kind).count()
    }

    /// The single end reason (panics unless there is exactly one `# end` line, last).
    pub fn end(&self) -> &str {
        assert_eq!(
            self.ends.len(),
            1,
            "exactly one session end: {:?}",
            self.ends
        );
        &self.ends[0]
    }
}
