//! Chaos runs: meetings with faults of every kind a stream recovers from, at seeded random
//! times, and the verdict on what a client delivered of them.
//!
//! Shared by the short chaos test (`tests/e2e/chaos.rs`, in CI) and the long run
//! (`rtms-bench chaos`), so both inject the same faults and judge by the same rules:
//!
//! - **recovered**: every stream reaches its scripted end (`stopped(6)`) on one session that
//!   was never resumed from scratch: each fault stays within Zoom's grace, so the client must
//!   win every stream back;
//! - **exactly once**: every transcript line and chat message the ledger says a client read
//!   was delivered once and in order, and every audio frame read was delivered; where the
//!   ledger counts messages written to a socket the client never confirmed reading
//!   ([`crate::Counters::unconfirmed`]), at most that many may be missing, each delivered
//!   one still once and in order; a transcript writer holds what the recorder holds;
//! - **never twice**: the sequence numbers delivered strictly increase;
//! - **one client at a time**: the simulator never saw two clients of one stream at once
//!   ([`Ledger::one_client_at_a_time`]: a duplicate handshake fails it).
//!
//! What a client delivered is read from a [`SeqRecord`]: the `seq-recorder` test plugin's
//! file (`<seq>\t<kind>\t<text>` per frame, `# start resumed=<bool>` and `# end <reason>`
//! lines), and a transcript writer's lines as `(kind, text)` pairs.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rtms_proto::codes::status;
use serde::Serialize;

use crate::{Fault, Ledger, MediaKind, MeetingScript, SocketSel};

/// Milliseconds of one synthetic utterance: 10 audio frames of 20 ms.
pub const LINE_MS: u64 = 200;

/// The end reason of a stream that played its script to the end.
pub const SCRIPTED_END: &str = "stopped(6)";

/// A fault a stream recovers from within Zoom's grace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The signaling socket closed abruptly.
    DropSignaling,
    /// The media socket closed abruptly.
    DropMedia,
    /// Scenario 2: both sockets dropped and `*_rtms_interrupted` sent.
    InterruptSignaling,
    /// Scenario 3: the media socket dropped, announced on signaling.
    InterruptMedia,
    /// Scenario 1: a new started webhook with a new signaling URL.
    Failover,
    /// The last webhook delivered again, as Zoom's retries do.
    DuplicateWebhook,
    /// The next signaling handshake refused with a status, after a drop.
    RejectedHandshake,
    /// The next signaling handshake answered late, after a drop.
    DelayedHandshake,
    /// Every connection refused (HTTP 503) for a moment, after a drop.
    RefusedConnections,
    /// No keep-alive requests for a second.
    KeepaliveLoss,
    /// A pause (msg 9 PAUSED) that ends after its duration.
    TimedPause,
    /// A pause ended by an explicit resume.
    PauseResume,
}

impl FaultKind {
    pub const ALL: [FaultKind; 12] = [
        FaultKind::DropSignaling,
        FaultKind::DropMedia,
        FaultKind::InterruptSignaling,
        FaultKind::InterruptMedia,
        FaultKind::Failover,
        FaultKind::DuplicateWebhook,
        FaultKind::RejectedHandshake,
        FaultKind::DelayedHandshake,
        FaultKind::RefusedConnections,
        FaultKind::KeepaliveLoss,
        FaultKind::TimedPause,
        FaultKind::PauseResume,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::DropSignaling => "drop_signaling",
            FaultKind::DropMedia => "drop_media",
            FaultKind::InterruptSignaling => "interrupt_signaling",
            FaultKind::InterruptMedia => "interrupt_media",
            FaultKind::Failover => "failover",
            FaultKind::DuplicateWebhook => "duplicate_webhook",
            FaultKind::RejectedHandshake => "rejected_handshake",
            FaultKind::DelayedHandshake => "delayed_handshake",
            FaultKind::RefusedConnections => "refused_connections",
            FaultKind::KeepaliveLoss => "keepalive_loss",
            FaultKind::TimedPause => "timed_pause",
            FaultKind::PauseResume => "pause_resume",
        }
    }

    /// The simulator faults of this kind, each at an offset (ms) from the fault's time.
    fn faults(self, rng: &mut StdRng) -> Vec<(u64, Fault)> {
        let short = Duration::from_millis(rng.random_range(100..500));
        let with_drop = |f: Fault| vec![(0, f), (0, Fault::DropSignaling)];
        match self {
            FaultKind::DropSignaling => vec![(0, Fault::DropSignaling)],
            FaultKind::DropMedia => vec![(0, Fault::DropMedia { kind: None })],
            FaultKind::InterruptSignaling => vec![(0, Fault::InterruptSignaling)],
            FaultKind::InterruptMedia => vec![(0, Fault::InterruptMedia)],
            FaultKind::Failover => vec![(0, Fault::Failover)],
            FaultKind::DuplicateWebhook => vec![(0, Fault::DuplicateWebhook)],
            FaultKind::RejectedHandshake => with_drop(Fault::RejectHandshakes {
                socket: SocketSel::Signaling,
                count: 1,
                status: status::INVALID_MEDIA_PARAMS,
                reason: "chaos".into(),
            }),
            FaultKind::DelayedHandshake => with_drop(Fault::DelayHandshake {
                socket: SocketSel::Signaling,
                delay: short,
            }),
            FaultKind::RefusedConnections => {
                with_drop(Fault::RefuseConnections { duration: short })
            }
            FaultKind::KeepaliveLoss => {
                vec![(0, Fault::StopKeepalives), (1_000, Fault::ResumeKeepalives)]
            }
            FaultKind::TimedPause => vec![(
                0,
                Fault::Pause {
                    duration: Some(short),
                },
            )],
            FaultKind::PauseResume => vec![
                (0, Fault::Pause { duration: None }),
                (short.as_millis() as u64, Fault::Resume),
            ],
        }
    }
}

/// Faults planned, by kind name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally(pub BTreeMap<&'static str, u64>);

impl Tally {
    pub fn add(&mut self, kind: FaultKind) {
        *self.0.entry(kind.name()).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Kinds of [`FaultKind::ALL`] with no fault planned.
    pub fn missing(&self) -> Vec<&'static str> {
        FaultKind::ALL
            .iter()
            .map(|k| k.name())
            .filter(|n| !self.0.contains_key(n))
            .collect()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k} {n}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Seeded meeting scripts with faults of every kind: the kinds are dealt in turn (each
/// round of [`FaultKind::ALL`] in a seeded order), so any `faults` ≥ 12 covers every kind;
/// the times are uniform over each meeting.
pub struct Plan {
    rng: StdRng,
    deck: Vec<FaultKind>,
    /// What was planned so far.
    pub tally: Tally,
}

impl Plan {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            deck: Vec::new(),
            tally: Tally::default(),
        }
    }

    fn next_kind(&mut self) -> FaultKind {
        if self.deck.is_empty() {
            self.deck = FaultKind::ALL.to_vec();
            self.deck.shuffle(&mut self.rng);
        }
        self.deck.pop().unwrap_or(FaultKind::DropSignaling)
    }

    /// A meeting of `lines` utterances of [`LINE_MS`] from two speakers and a chat message,
    /// with `faults` faults at random times after its first half second and before its last
    /// 1.5 s.
    pub fn meeting(&mut self, lines: usize, faults: usize) -> anyhow::Result<MeetingScript> {
        let span = lines as u64 * LINE_MS;
        let mut b = MeetingScript::builder()
            .synthetic_speech(2, lines, 10)
            .chat(30, 1001, "hello all");
        for _ in 0..faults {
            let at = self
                .rng
                .random_range(500..span.saturating_sub(1_500).max(600));
            let kind = self.next_kind();
            self.tally.add(kind);
            for (offset, f) in kind.faults(&mut self.rng) {
                b = b.fault_at(at + offset, f);
            }
        }
        Ok(b.build()?)
    }
}

/// What a client delivered of one stream, as the `seq-recorder` test plugin writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqRecord {
    /// `resumed` of each `# start` line.
    pub starts: Vec<bool>,
    /// `(seq, kind, text)` per frame.
    pub frames: Vec<(u64, String, String)>,
    /// The reason of each `# end` line.
    pub ends: Vec<String>,
}

impl SeqRecord {
    /// Parses a record; `Err` names the first line that is not one.
    pub fn parse(text: &str) -> Result<SeqRecord, String> {
        let mut r = SeqRecord::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# start resumed=") {
                r.starts.push(rest == "true");
            } else if let Some(rest) = line.strip_prefix("# end ") {
                r.ends.push(rest.to_owned());
            } else {
                let mut parts = line.splitn(3, '\t');
                let seq = parts.next().and_then(|s| s.parse().ok());
                let (Some(seq), Some(kind)) = (seq, parts.next()) else {
                    return Err(format!("malformed record line {line:?}"));
                };
                r.frames
                    .push((seq, kind.to_owned(), parts.next().unwrap_or("").to_owned()));
            }
        }
        Ok(r)
    }

    /// The texts of the frames of `kind`, in order.
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
}

/// The ledger's transcript texts, in order.
pub fn ledger_transcript(l: &Ledger) -> Vec<String> {
    l.transcript_lines().into_iter().map(|t| t.text).collect()
}

/// The ledger's chat texts, in order.
pub fn ledger_chats(l: &Ledger) -> Vec<String> {
    l.chats.iter().map(|c| c.text.clone()).collect()
}

/// Every transcript line and chat message the ledger counts reached the record exactly
/// once and in order, every audio frame did, sequence numbers strictly increase, and the
/// record has one fresh start and one end. `Err` says what differs.
pub fn exactly_once(ledger: &Ledger, rec: &SeqRecord) -> Result<(), String> {
    delivered(ledger, rec, 0).map(|_| ())
}

/// Like [`exactly_once`], except that up to `slack` messages the ledger counts may be
/// missing (each delivered one still once and in order). Returns how many are missing.
fn delivered(ledger: &Ledger, rec: &SeqRecord, slack: u64) -> Result<u64, String> {
    let sent = ledger_transcript(ledger);
    if sent.is_empty() {
        return Err("the meeting sent no transcript line".into());
    }
    let mut missed = compare("transcript lines", &sent, &rec.texts("transcript"), slack)?;
    missed += compare(
        "chat messages",
        &ledger_chats(ledger),
        &rec.texts("chat"),
        slack,
    )?;
    let (audio, got) = (ledger.count(MediaKind::Audio), rec.count("audio") as u64);
    if got > audio || (slack == 0 && got != audio) {
        return Err(format!(
            "audio frames: {audio} read from the simulator, {got} delivered"
        ));
    }
    missed += audio - got;
    if missed > slack {
        return Err(format!(
            "{missed} messages the client read are missing, more than the {slack} it may not have read"
        ));
    }
    if let Some(w) = rec.frames.windows(2).find(|w| w[0].0 >= w[1].0) {
        return Err(format!(
            "a frame delivered twice or out of order: seq {} then {}",
            w[0].0, w[1].0
        ));
    }
    if rec.starts.first() != Some(&false) {
        return Err(format!("the record does not start fresh: {:?}", rec.starts));
    }
    if rec.ends.len() != 1 {
        return Err(format!("{} session ends: {:?}", rec.ends.len(), rec.ends));
    }
    Ok(missed)
}

/// `got` is `sent` (with `slack` 0), or `sent` with some left out, in order and none twice.
/// Returns how many were left out.
fn compare(what: &str, sent: &[String], got: &[String], slack: u64) -> Result<u64, String> {
    if slack == 0 {
        return if got == sent {
            Ok(0)
        } else {
            Err(differ(what, sent, got))
        };
    }
    let mut rest = sent.iter();
    for (i, g) in got.iter().enumerate() {
        if !rest.by_ref().any(|s| s == g) {
            return Err(format!(
                "{what}: delivered {i} ({g:?}) is not the next of those sent, in order, once"
            ));
        }
    }
    Ok((sent.len() - got.len()) as u64)
}

/// The verdict on a stream that passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Messages the ledger counts that the record lacks: at most [`Verdict::unconfirmed`].
    pub missed: u64,
    /// Messages written to sockets whose client never confirmed reading them (the ledger's
    /// [`crate::Counters::unconfirmed`]): 0 makes the comparison exact.
    pub unconfirmed: u64,
}

/// The chaos verdict on one stream: every message the client read delivered exactly once
/// and in order ([`exactly_once`]; where the ledger has unconfirmed messages, each delivered
/// one still once and in order, and at most that many missing), recovered to its scripted
/// end on one session, one client at a time, and `writer` (a transcript writer's
/// `(kind, text)` lines) holding the same transcript and chat.
pub fn judge(
    ledger: &Ledger,
    rec: &SeqRecord,
    writer: &[(String, String)],
) -> Result<Verdict, String> {
    let unconfirmed = ledger.counters.unconfirmed;
    let missed = delivered(ledger, rec, unconfirmed)?;
    if rec.starts != [false] || rec.ends != [SCRIPTED_END] {
        return Err(format!(
            "not recovered: starts {:?}, ends {:?} (expected one fresh session ending {SCRIPTED_END})",
            rec.starts, rec.ends
        ));
    }
    ledger.one_client_at_a_time()?;
    for (kind, sent) in [
        ("transcript", ledger_transcript(ledger)),
        ("chat", ledger_chats(ledger)),
    ] {
        let from_writer: Vec<String> = writer
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, t)| t.clone())
            .collect();
        if from_writer != rec.texts(kind) {
            let what = format!("the writer's {kind} against the recorder's");
            return Err(differ(&what, &rec.texts(kind), &from_writer));
        }
        compare(
            &format!("the writer's {kind}"),
            &sent,
            &from_writer,
            unconfirmed,
        )?;
    }
    Ok(Verdict {
        missed,
        unconfirmed,
    })
}

/// Where two sequences first differ, shortly.
fn differ(what: &str, sent: &[String], got: &[String]) -> String {
    let at = sent
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(sent.len().min(got.len()));
    format!(
        "{what}: {} sent, {} delivered; first difference at {at}: sent {:?}, delivered {:?}",
        sent.len(),
        got.len(),
        sent.get(at),
        got.get(at)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_reproducible_and_covers_every_kind() {
        let mut a = Plan::new(7);
        let mut b = Plan::new(7);
        for _ in 0..3 {
            assert_eq!(a.meeting(40, 5).unwrap(), b.meeting(40, 5).unwrap());
        }
        assert_eq!(a.tally, b.tally);
        assert_eq!(a.tally.total(), 15);
        assert!(a.tally.missing().is_empty(), "{}", a.tally);
        assert_ne!(
            Plan::new(8).meeting(40, 5).unwrap(),
            a.meeting(40, 5).unwrap()
        );
    }

    #[test]
    fn a_record_parses_and_a_repeat_is_caught() {
        let rec = SeqRecord::parse(
            "# start resumed=false\n1\ttranscript\thi\n1\ttranscript\tho\n# end stopped(6)\n",
        )
        .unwrap();
        assert_eq!(rec.texts("transcript"), ["hi", "ho"]);
        let mut l = Ledger::default();
        for text in ["hi", "ho"] {
            l.transcript.push(crate::TranscriptLine {
                user_id: 1001,
                user_name: "a".into(),
                text: text.into(),
                start_time: 0,
                end_time: 0,
                timestamp: 0,
            });
        }
        let e = exactly_once(&l, &rec).unwrap_err();
        assert!(e.contains("seq 1 then 1"), "{e}");
        // A line left out is allowed only where the ledger says the client may not have
        // read it, and a repeat never.
        let one = SeqRecord::parse("# start resumed=false\n1\ttranscript\tho\n# end stopped(6)\n")
            .unwrap();
        assert!(
            exactly_once(&l, &one)
                .unwrap_err()
                .contains("first difference at 0")
        );
        assert_eq!(delivered(&l, &one, 1), Ok(1));
        let twice = SeqRecord::parse(
            "# start resumed=false\n1\ttranscript\tho\n2\ttranscript\tho\n# end stopped(6)\n",
        )
        .unwrap();
        assert!(delivered(&l, &twice, 5).unwrap_err().contains("once"));
        assert!(SeqRecord::parse("x").unwrap_err().contains("\"x\""));
    }
}
