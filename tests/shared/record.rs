//! What the seq-recorder fixture wrote for one stream, read from its file: `# start resumed=…`
//! lines, one `<seq>\t<kind>\t<text>` line per frame, `# end <reason>` lines
//! ([`rtms_sim::chaos::SeqRecord`], the one parser of that format).

#![allow(dead_code)]

use std::path::Path;

use rtms_sim::chaos::SeqRecord;

/// What the seq-recorder wrote for one stream.
#[derive(Debug, Default)]
pub struct Record(pub SeqRecord);

impl std::ops::Deref for Record {
    type Target = SeqRecord;

    fn deref(&self) -> &SeqRecord {
        &self.0
    }
}

impl Record {
    pub fn read(path: &Path) -> Record {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Record(SeqRecord::parse(&text).unwrap_or_else(|e| panic!("{e} in {}", path.display())))
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
