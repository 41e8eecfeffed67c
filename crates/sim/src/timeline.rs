//! The timeline task of one meeting: waits for the client to be ready (the first
//! CLIENT_READY_ACK), then plays the script in time order (audio while someone speaks,
//! video and share frames at the requested fps, transcripts at each utterance's end, chat,
//! events, scheduled faults) and ends the stream when the script is over.
//!
//! Continuous kinds (audio, video, share) are scheduled from the moment a ready media socket
//! first carries them, with the params that socket confirmed. Items are produced lazily from
//! a heap, so a long meeting costs little memory.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rtms_proto::codes::{event_type, media_type, msg_type, stop_reason};
use rtms_proto::msg::{MediaContent, MediaMessage, UserId};
use rtms_proto::params::data_opt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::MediaKind;
use crate::faults::Trigger;
use crate::ledger::ChatLine;
use crate::media_gen::{AudioSynth, image_for_codec};
use crate::meeting::{Control, Meeting, Note, Out, Pace};
use crate::script::{EventKind, MeetingScript};

/// The user id Zoom gives mixed audio, with an empty user name.
pub const MIXED_AUDIO_USER_ID: i64 = -1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    FirstPacket,
    Event(usize),
    ChatGroup(usize),
    Fault(usize),
    Audio { utt: usize, frame: u64 },
    Video,
    Share { interval: usize },
    Transcript(usize),
    Chat(usize),
    End,
}

impl Item {
    fn order(self) -> u8 {
        match self {
            Item::FirstPacket => 0,
            Item::Event(_) | Item::ChatGroup(_) => 1,
            Item::Fault(_) => 2,
            Item::Audio { .. } => 3,
            Item::Video => 4,
            Item::Share { .. } => 5,
            Item::Transcript(_) => 6,
            Item::Chat(_) => 7,
            Item::End => 8,
        }
    }
}

/// Why waiting stopped early.
enum Interrupt {
    Stop(u32),
    Shutdown,
}

struct Runner {
    m: Arc<Meeting>,
    control: mpsc::UnboundedReceiver<Control>,
    cancel: CancellationToken,
    heap: BinaryHeap<Reverse<(u64, u8, u64, Item)>>,
    tiebreak: u64,
    /// Kinds a ready socket has carried at some point (fast pace holds for them).
    requested: u32,
    audio: Option<AudioSynth>,
    video_step: u64,
    share_step: u64,
    shares: Vec<(u64, u64, i64)>,
    seq: [u64; MediaKind::ALL.len()],
    frames_sent: u64,
    fired: Vec<bool>,
    active_speaker: Option<i64>,
    t0: u64,
    /// Pre-encoded audio rings by speaker ([`crate::SimConfig::preencoded_audio`]).
    rings: HashMap<(i64, bool), Arc<Ring>>,
    /// Whether consecutive pre-encoded audio frames may leave as one burst: fast pace and
    /// no fault counts frames (a burst must not step over a fault's frame).
    bursts: bool,
}

/// Most frames in one burst.
const MAX_BURST: usize = 256;

/// One speaker's pre-encoded audio: msg 14 texts split around the timestamp value, and
/// the payload size each carries.
struct Ring {
    texts: Vec<(String, String)>,
    bytes: usize,
}

/// Serialised in place of the timestamp, then cut out.
const TS_SENTINEL: u64 = u64::MAX;

/// The other utterances speaking at `slot` (ms), besides `utt`.
fn overlapping(script: &MeetingScript, utt: usize, slot: u64) -> impl Iterator<Item = usize> + '_ {
    script
        .utterances
        .iter()
        .enumerate()
        .filter(move |(j, o)| *j != utt && o.start_ms <= slot && slot < o.start_ms + o.duration_ms)
        .map(|(j, _)| j)
}

/// Whether another utterance speaks at `slot` (ms) besides `utt`.
fn overlapped(script: &MeetingScript, utt: usize, slot: u64) -> bool {
    overlapping(script, utt, slot).next().is_some()
}

/// The slot of a kind's sequence counter (events have one but the timeline never uses it).
fn kind_index(k: MediaKind) -> usize {
    k as usize
}

/// Runs the meeting to its end. Returns when the stream is over (or the simulator stops).
pub(crate) async fn run(
    m: Arc<Meeting>,
    control: mpsc::UnboundedReceiver<Control>,
    cancel: CancellationToken,
) {
    let script = m.script.clone();
    let m_bursts = m.sim.config.preencoded_audio
        && m.pace == Pace::Fast
        && !script
            .faults
            .iter()
            .any(|f| matches!(f.trigger, Trigger::AfterFrames(_)));
    let mut shares = Vec::new();
    for (i, e) in script.events.iter().enumerate() {
        if e.kind == EventKind::SharingStart {
            let end = script.events[i + 1..]
                .iter()
                .find(|x| x.kind == EventKind::SharingStop)
                .map_or(script.duration_ms, |x| x.at_ms);
            shares.push((e.at_ms, end, e.user_id));
        }
    }
    let mut r = Runner {
        m,
        control,
        cancel,
        heap: BinaryHeap::new(),
        tiebreak: 0,
        requested: 0,
        audio: None,
        video_step: 40,
        share_step: 1000,
        shares,
        seq: [0; MediaKind::ALL.len()],
        frames_sent: 0,
        fired: vec![false; script.faults.len()],
        active_speaker: None,
        t0: 0,
        rings: HashMap::new(),
        bursts: m_bursts,
    };
    match r.play().await {
        Ok(()) => {
            // Let the client read the end of the meeting before the stop closes its sockets.
            r.m.drain_clients(Duration::from_secs(2)).await;
            r.m.finish(stop_reason::MEETING_ENDED).await
        }
        Err(Interrupt::Stop(reason)) => {
            r.m.drain_clients(Duration::from_secs(2)).await;
            r.m.finish(reason).await
        }
        Err(Interrupt::Shutdown) => {}
    }
}

impl Runner {
    fn push(&mut self, t: u64, item: Item) {
        self.tiebreak += 1;
        self.heap
            .push(Reverse((t, item.order(), self.tiebreak, item)));
    }

    /// Waits for `fut`, or stops on a terminate command or simulator shutdown.
    async fn wait<F: Future<Output = ()>>(&mut self, fut: F) -> Result<(), Interrupt> {
        tokio::select! {
            _ = fut => Ok(()),
            c = self.control.recv() => match c {
                Some(Control::Terminate { reason }) => Err(Interrupt::Stop(reason)),
                None => Err(Interrupt::Shutdown),
            },
            _ = self.cancel.cancelled() => Err(Interrupt::Shutdown),
        }
    }

    /// Waits until `cond` holds on the meeting (re-checked on every state change).
    async fn wait_until(&mut self, cond: impl Fn(&Meeting) -> bool) -> Result<(), Interrupt> {
        let m = self.m.clone();
        let mut rx = m.changed.subscribe();
        self.wait(async move {
            while !cond(&m) {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
    }

    async fn play(&mut self) -> Result<(), Interrupt> {
        self.await_ready().await?;
        self.t0 = self.m.clock_origin_ms.unwrap_or_else(rtms_proto::unix_ms);
        let start = Instant::now();
        let mut paused_total = Duration::ZERO;
        self.schedule_script();
        let mut now_t = 0;
        loop {
            self.schedule_new_kinds(now_t);
            let Some(Reverse((t, _, _, item))) = self.heap.pop() else {
                return Ok(());
            };
            now_t = t;
            if self.m.pace == Pace::Realtime {
                let deadline =
                    tokio::time::Instant::from_std(start + paused_total) + Duration::from_millis(t);
                self.wait(tokio::time::sleep_until(deadline)).await?;
            }
            if self.m.state().paused && !matches!(item, Item::Fault(_)) {
                let since = Instant::now();
                self.hold_while_paused(start + paused_total).await?;
                paused_total += since.elapsed();
            }
            if item == Item::End {
                return Ok(());
            }
            self.dispatch(t, item).await?;
            self.fire_frame_faults();
        }
    }

    /// Waits for the client to be ready (within the connect timeout), then until no new
    /// media handshake came for a settle period.
    async fn await_ready(&mut self) -> Result<(), Interrupt> {
        let timeout = self.m.sim.config.connect_timeout;
        let ready = self.wait_until(|m| m.state().ready_once);
        match tokio::time::timeout(timeout, ready).await {
            Ok(r) => r?,
            Err(_) => return Err(Interrupt::Stop(stop_reason::CONNECTION_TIMEOUT)),
        }
        let settle = self.m.sim.config.ready_settle;
        loop {
            let before = self.m.ledger_mut().counters.media_handshakes_ok;
            self.wait(tokio::time::sleep(settle)).await?;
            if self.m.ledger_mut().counters.media_handshakes_ok == before {
                return Ok(());
            }
        }
    }

    /// Puts everything the script schedules on the timeline.
    fn schedule_script(&mut self) {
        let script = self.m.script.clone();
        self.push(0, Item::FirstPacket);
        for i in 0..script.events.len() {
            self.push(script.events[i].at_ms, Item::Event(i));
        }
        for (i, g) in script.chat_groups.iter().enumerate() {
            self.push(g.at_ms, Item::ChatGroup(i));
        }
        for (i, f) in script.faults.iter().enumerate() {
            if let Trigger::AtMs(t) = f.trigger {
                self.push(t, Item::Fault(i));
            }
        }
        for (i, u) in script.utterances.iter().enumerate() {
            self.push(u.start_ms + u.duration_ms, Item::Transcript(i));
        }
        for (i, c) in script.chats.iter().enumerate() {
            self.push(c.at_ms, Item::Chat(i));
        }
        self.push(script.duration_ms, Item::End);
    }

    /// The timeline holds while paused, but a scheduled fault (a resume, say) still fires at
    /// its time (counted from `origin`): it is what may end the pause.
    async fn hold_while_paused(&mut self, origin: Instant) -> Result<(), Interrupt> {
        loop {
            let next_fault = self
                .heap
                .iter()
                .filter(|Reverse((_, _, _, i))| matches!(i, Item::Fault(_)))
                .map(|Reverse((ft, _, _, _))| *ft)
                .min();
            let due = match (next_fault, self.m.pace) {
                (None, _) => None,
                (Some(_), Pace::Fast) => Some(tokio::time::Instant::now()),
                (Some(ft), Pace::Realtime) => {
                    Some(tokio::time::Instant::from_std(origin) + Duration::from_millis(ft))
                }
            };
            let m = self.m.clone();
            let mut rx = m.changed.subscribe();
            let resumed = async move {
                while m.state().paused {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            let fault_due = async move {
                match due {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let fired = std::sync::atomic::AtomicBool::new(false);
            self.wait(async {
                tokio::select! {
                    () = resumed => {}
                    () = fault_due => fired.store(true, std::sync::atomic::Ordering::Relaxed),
                }
            })
            .await?;
            if !fired.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(());
            }
            let (ft, fault) = self.take_earliest_fault();
            self.dispatch(ft, fault).await?;
            if !self.m.state().paused {
                return Ok(());
            }
        }
    }

    /// Takes the earliest fault out of the timeline (one is due).
    fn take_earliest_fault(&mut self) -> (u64, Item) {
        let mut items = std::mem::take(&mut self.heap).into_vec();
        let i = items
            .iter()
            .enumerate()
            .filter(|(_, Reverse((_, _, _, it)))| matches!(it, Item::Fault(_)))
            .min_by_key(|(_, Reverse((ft, p, q, _)))| (*ft, *p, *q))
            .map(|(i, _)| i)
            .expect("a fault was due");
        let Reverse((ft, _, _, fault)) = items.swap_remove(i);
        self.heap = items.into();
        (ft, fault)
    }

    /// Starts audio / video / share for kinds that a ready socket carries for the first time.
    fn schedule_new_kinds(&mut self, now_t: u64) {
        let (ready_bits, audio_p, video_p, share_p) = {
            let st = self.m.state();
            let mut bits = 0;
            let (mut a, mut v, mut s) = (None, None, None);
            for c in st.media.iter().filter(|c| c.ready) {
                bits |= c.bits;
                if c.bits & media_type::AUDIO != 0 {
                    a = c.params.audio.clone();
                }
                if c.bits & media_type::VIDEO != 0 {
                    v = c.params.video.clone();
                }
                if c.bits & media_type::DESKSHARE != 0 {
                    s = c.params.deskshare.clone();
                }
            }
            (bits, a, v, s)
        };
        let new = ready_bits & !self.requested;
        if new == 0 {
            return;
        }
        self.requested |= new;
        let script = self.m.script.clone();
        if new & media_type::AUDIO != 0 {
            let synth = AudioSynth::new(&audio_p.unwrap_or_default()).with_gains(script.gains());
            let step = synth.frame_ms().max(1) as u64;
            for (i, u) in script.utterances.iter().enumerate() {
                let end = u.start_ms + u.duration_ms;
                if end <= now_t {
                    continue;
                }
                let first = now_t.saturating_sub(u.start_ms).div_ceil(step);
                let total = u.duration_ms.div_ceil(step);
                if first < total {
                    let t = (u.start_ms + (first + 1) * step).min(end);
                    self.push(
                        t,
                        Item::Audio {
                            utt: i,
                            frame: first,
                        },
                    );
                }
            }
            self.audio = Some(synth);
        }
        if new & media_type::VIDEO != 0 {
            let fps = video_p.and_then(|v| v.fps).unwrap_or(25).clamp(1, 60) as u64;
            self.video_step = (1000 / fps).max(1);
            self.push(now_t, Item::Video);
        }
        if new & media_type::DESKSHARE != 0 {
            let fps = share_p.and_then(|v| v.fps).unwrap_or(1).clamp(1, 60) as u64;
            self.share_step = (1000 / fps).max(1);
            for i in 0..self.shares.len() {
                let (s, e, _) = self.shares[i];
                if e > now_t {
                    self.push(s.max(now_t), Item::Share { interval: i });
                }
            }
        }
    }

    fn next_seq(&mut self, k: MediaKind) -> u64 {
        let s = &mut self.seq[kind_index(k)];
        let v = *s;
        *s += 1;
        v
    }

    /// The ready socket carrying `kind`; in fast pace, waits for one while the kind was
    /// requested before (a reconnection is under way).
    async fn sender_for(
        &mut self,
        kind: MediaKind,
    ) -> Result<Option<mpsc::Sender<Out>>, Interrupt> {
        let bit = kind.media_type_bit();
        let find = |m: &Meeting| {
            m.state()
                .media
                .iter()
                .find(|c| c.ready && c.bits & bit != 0)
                .map(|c| (c.tx.clone(), c.params.clone()))
        };
        if self.m.pace == Pace::Fast && self.requested & bit != 0 {
            self.wait_until(move |m| find(m).is_some() || m.state().ended)
                .await?;
        }
        Ok(find(&self.m).map(|x| x.0))
    }

    async fn send_media(
        &mut self,
        kind: MediaKind,
        msg: MediaMessage,
        note: Note,
    ) -> Result<(), Interrupt> {
        let Some(tx) = self.sender_for(kind).await? else {
            return Ok(());
        };
        for (text, note) in self.m.take_requeued(kind) {
            if let Err(e) = tx.send(Out::Msg { text, note }).await {
                self.keep_unsent(e.0);
                break;
            }
        }
        let text = serde_json::to_string(&msg).unwrap_or_default();
        match tx.send(Out::Msg { text, note }).await {
            Ok(()) => self.frames_sent += 1,
            Err(e) => self.keep_unsent(e.0),
        }
        Ok(())
    }

    /// A message whose socket was cut off before taking it: in fast pace it goes out first
    /// on the next socket (as what the socket had queued does), so no `seq` is skipped.
    fn keep_unsent(&self, out: Out) {
        if self.m.pace != Pace::Fast {
            return;
        }
        match out {
            Out::Msg { text, note } => self.m.requeue(text, note),
            Out::Burst(msgs) => {
                for (text, note) in msgs {
                    self.m.requeue(text, note);
                }
            }
            _ => {}
        }
    }

    /// Sends pre-encoded audio: one message, or a burst written with one flush.
    async fn send_burst(&mut self, mut burst: Vec<(String, Note)>) -> Result<(), Interrupt> {
        let Some(tx) = self.sender_for(MediaKind::Audio).await? else {
            return Ok(());
        };
        let n = burst.len() as u64;
        let out = if burst.len() == 1 {
            let (text, note) = burst.pop().expect("one message");
            Out::Msg { text, note }
        } else {
            Out::Burst(burst)
        };
        match tx.send(out).await {
            Ok(()) => self.frames_sent += n,
            Err(e) => self.keep_unsent(e.0),
        }
        Ok(())
    }

    /// Audio frame `seq` of `user_id` from the speaker's pre-encoded ring, stamped `ts`.
    /// The ring is built on the speaker's first frame: [`crate::PREENCODED_RING`] distinct
    /// frames, each a msg 14 serialised like any other with a sentinel timestamp that is
    /// then cut out.
    fn preencoded(
        &mut self,
        synth: &AudioSynth,
        user_id: i64,
        mixed: bool,
        seq: u64,
        ts: u64,
    ) -> (String, usize) {
        let ring = match self.rings.get(&(user_id, mixed)) {
            Some(r) => r.clone(),
            None => {
                let b64 = base64::engine::general_purpose::STANDARD;
                let digits = TS_SENTINEL.to_string();
                let sentinel = format!("\"timestamp\":{digits}");
                let mut bytes = 0;
                let texts = (0..crate::PREENCODED_RING as u64)
                    .map(|i| {
                        let data = synth.frame(self.m.script.seed, user_id, u64::MAX, i);
                        bytes = data.len();
                        let mut c = self.content(user_id, b64.encode(&data), TS_SENTINEL);
                        c.length = Some(data.len());
                        if mixed {
                            c.user_id = UserId::Num(MIXED_AUDIO_USER_ID);
                            c.user_name = String::new();
                        }
                        let msg = MediaMessage {
                            msg_type: msg_type::MEDIA_DATA_AUDIO,
                            content: c,
                        };
                        let text = serde_json::to_string(&msg).unwrap_or_default();
                        let cut = text
                            .rfind(&sentinel)
                            .map_or(text.len(), |p| p + sentinel.len() - digits.len());
                        let (head, rest) = text.split_at(cut);
                        let tail = rest.strip_prefix(digits.as_str()).unwrap_or(rest);
                        (head.to_owned(), tail.to_owned())
                    })
                    .collect();
                let r = Arc::new(Ring { texts, bytes });
                self.rings.insert((user_id, mixed), r.clone());
                r
            }
        };
        let (head, tail) = &ring.texts[(seq % ring.texts.len() as u64) as usize];
        let mut text = String::with_capacity(head.len() + 20 + tail.len());
        text.push_str(head);
        let _ = write!(text, "{ts}");
        text.push_str(tail);
        (text, ring.bytes)
    }

    fn content(&self, user_id: i64, data: String, ts: u64) -> MediaContent {
        MediaContent {
            user_id: UserId::Num(user_id),
            user_name: self.m.script.name_of(user_id).to_owned(),
            data,
            timestamp: ts,
            ..Default::default()
        }
    }

    /// The content of an audio, video or share message: the data in base64 with its byte
    /// `length` (Zoom adds it since April 2026).
    fn binary_content(&self, user_id: i64, data: &[u8], ts: u64) -> MediaContent {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut c = self.content(user_id, b64.encode(data), ts);
        c.length = Some(data.len());
        c
    }

    fn current_params(&self, bit: u32) -> Option<rtms_proto::MediaParams> {
        self.m
            .state()
            .media
            .iter()
            .find(|c| c.bits & bit != 0)
            .map(|c| c.params.clone())
    }

    /// Plays one item of the timeline, due at `t` (ms from its start).
    async fn dispatch(&mut self, t: u64, item: Item) -> Result<(), Interrupt> {
        let ts = self.t0 + t;
        match item {
            Item::FirstPacket => self.first_packet(ts).await,
            Item::Event(i) => self.script_event(i, ts).await,
            Item::ChatGroup(i) => {
                let script = self.m.script.clone();
                let name = |u| script.name_of(u).to_owned();
                self.event(script.chat_groups[i].to_json(ts, name)).await
            }
            Item::Fault(i) => {
                if let Some(f) = self.m.script.faults.get(i) {
                    self.m.apply_fault(f.fault.clone());
                }
                Ok(())
            }
            Item::Audio { utt, frame } => self.audio(utt, frame, ts).await,
            Item::Video => self.video(t, ts).await,
            Item::Share { interval } => self.share(t, interval, ts).await,
            Item::Transcript(i) => self.transcript(i, ts).await,
            Item::Chat(i) => self.chat(i, ts).await,
            Item::End => Ok(()),
        }
    }

    /// EVENT_UPDATE 1 FIRST_PACKET_TIMESTAMP.
    async fn first_packet(&mut self, ts: u64) -> Result<(), Interrupt> {
        self.event(json!({"event_type": event_type::FIRST_PACKET_TIMESTAMP, "timestamp": ts}))
            .await
    }

    /// A scripted event (joins, leaves, active speaker, sharing, video on and off).
    async fn script_event(&mut self, i: usize, ts: u64) -> Result<(), Interrupt> {
        let script = self.m.script.clone();
        let e = &script.events[i];
        let name = script.name_of(e.user_id);
        let ev = match e.kind {
            EventKind::ParticipantJoin
            | EventKind::ParticipantLeave
            | EventKind::VideoOn
            | EventKind::VideoOff => {
                let mut st = self.m.state();
                match e.kind {
                    EventKind::VideoOn => {
                        st.video_on.insert(e.user_id);
                    }
                    EventKind::VideoOff | EventKind::ParticipantLeave => {
                        st.video_on.remove(&e.user_id);
                    }
                    _ => {}
                }
                drop(st);
                json!({"event_type": e.kind.event_type(), "timestamp": ts,
                "participants": [{"user_id": e.user_id, "user_name": name}]})
            }
            EventKind::ActiveSpeaker => {
                self.active_speaker = Some(e.user_id);
                json!({"event_type": e.kind.event_type(), "timestamp": ts,
                    "user_id": e.user_id, "user_name": name})
            }
            EventKind::SharingStart | EventKind::SharingStop => {
                json!({"event_type": e.kind.event_type(), "timestamp": ts,
                    "user_id": e.user_id, "user_name": name})
            }
        };
        self.event(ev).await
    }

    /// Whether the audio socket asked for one stream per speaker (AUDIO_MULTI_STREAMS)
    /// rather than mixed audio (the default).
    fn per_speaker_audio(&self) -> bool {
        self.current_params(media_type::AUDIO)
            .and_then(|p| p.audio)
            .map(|a| a.resolved().data_opt)
            == Some(Some(data_opt::AUDIO_MULTI_STREAMS))
    }

    /// Audio frame `frame` of utterance `utt`, and the scheduling of the next one.
    async fn audio(&mut self, utt: usize, frame: u64, ts: u64) -> Result<(), Interrupt> {
        let script = self.m.script.clone();
        let u = &script.utterances[utt];
        let Some(synth) = self.audio.clone() else {
            return Ok(());
        };
        let step = synth.frame_ms().max(1) as u64;
        let per_speaker = self.per_speaker_audio();
        // Mixed audio of overlapping speakers is mixed frame by frame below; a voice alone in
        // its slot is the same frame either way, tagged as mixed.
        let alone = per_speaker || !overlapped(&script, utt, u.start_ms + frame * step);
        if self.m.sim.config.preencoded_audio && alone {
            return self.preencoded_audio(&synth, utt, frame, per_speaker).await;
        }
        let total = u.duration_ms.div_ceil(step);
        if frame + 1 < total {
            let next = (u.start_ms + (frame + 2) * step).min(u.start_ms + u.duration_ms);
            self.push(
                next,
                Item::Audio {
                    utt,
                    frame: frame + 1,
                },
            );
        }
        // Zoom tags mixed audio (AUDIO_MIXED_STREAM, the default) with user id -1 and an
        // empty name, one frame per slot with every speaker in it; only per-speaker streams
        // (AUDIO_MULTI_STREAMS) say whose, one frame each.
        let data = if per_speaker {
            synth.frame(script.seed, u.user_id, utt as u64, frame)
        } else {
            let slot = u.start_ms + frame * step;
            let others: Vec<usize> = overlapping(&script, utt, slot).collect();
            if others.iter().any(|&j| j < utt) {
                // An earlier utterance's frame carries this slot, this voice mixed in.
                return Ok(());
            }
            let mut voices = vec![(u.user_id, utt as u64, frame)];
            for j in others {
                let o = &script.utterances[j];
                voices.push((o.user_id, j as u64, (slot - o.start_ms) / step));
            }
            synth.mixed_frame(script.seed, &voices)
        };
        let seq = self.next_seq(MediaKind::Audio);
        let bytes = data.len();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut c = self.content(u.user_id, b64.encode(&data), ts);
        c.length = Some(bytes);
        if !per_speaker {
            c.user_id = UserId::Num(MIXED_AUDIO_USER_ID);
            c.user_name = String::new();
        }
        let msg = MediaMessage {
            msg_type: msg_type::MEDIA_DATA_AUDIO,
            content: c,
        };
        let kind = MediaKind::Audio;
        self.send_media(kind, msg, Note::Media { kind, seq, bytes })
            .await
    }

    /// Pre-encoded audio from `frame` on: one frame, or in fast pace a burst of this
    /// speaker's next frames while nothing else is due between them.
    async fn preencoded_audio(
        &mut self,
        synth: &AudioSynth,
        utt: usize,
        frame: u64,
        per_speaker: bool,
    ) -> Result<(), Interrupt> {
        let script = self.m.script.clone();
        let u = &script.utterances[utt];
        let step = synth.frame_ms().max(1) as u64;
        let total = u.duration_ms.div_ceil(step);
        let alone = |k: u64| per_speaker || !overlapped(&script, utt, u.start_ms + k * step);
        let mixed = !per_speaker;
        let end = u.start_ms + u.duration_ms;
        let at = |k: u64| (u.start_ms + (k + 1) * step).min(end);
        let mut burst = Vec::new();
        let mut k = frame;
        loop {
            let seq = self.next_seq(MediaKind::Audio);
            let (text, bytes) = self.preencoded(synth, u.user_id, mixed, seq, self.t0 + at(k));
            let kind = MediaKind::Audio;
            burst.push((text, Note::Media { kind, seq, bytes }));
            k += 1;
            if k >= total {
                break;
            }
            let next = Item::Audio { utt, frame: k };
            // Only while this speaker's next frame is strictly the next item due.
            let due_next = self
                .heap
                .peek()
                .is_none_or(|Reverse((t, o, _, _))| (at(k), next.order()) < (*t, *o));
            if !self.bursts || burst.len() >= MAX_BURST || !due_next || !alone(k) {
                self.push(at(k), next);
                break;
            }
        }
        self.send_burst(burst).await
    }

    /// One video frame (attributed to the active speaker), and the next one's scheduling.
    async fn video(&mut self, t: u64, ts: u64) -> Result<(), Interrupt> {
        if t + self.video_step < self.m.script.duration_ms {
            self.push(t + self.video_step, Item::Video);
        }
        let codec = self
            .current_params(media_type::VIDEO)
            .and_then(|p| p.video)
            .and_then(|v| v.codec)
            .unwrap_or(7);
        let img = image_for_codec(codec);
        if let Some(users) = self.m.individual_video() {
            return self.individual_video(users, img, ts).await;
        }
        let seq = self.next_seq(MediaKind::Video);
        let script = &self.m.script;
        let user = self
            .active_speaker
            .or_else(|| script.participants.first().map(|p| p.user_id))
            .unwrap_or(0);
        let msg = MediaMessage {
            msg_type: msg_type::MEDIA_DATA_VIDEO,
            content: self.binary_content(user, img, ts),
        };
        let (kind, bytes) = (MediaKind::Video, img.len());
        self.send_media(kind, msg, Note::Media { kind, seq, bytes })
            .await
    }

    /// One frame per subscribed participant whose video is on, each tagged with its user
    /// (individual video, `data_opt` 4); nothing when nobody is.
    async fn individual_video(
        &mut self,
        users: Vec<i64>,
        img: &[u8],
        ts: u64,
    ) -> Result<(), Interrupt> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let kind = MediaKind::Video;
        for user in users {
            let seq = self.next_seq(kind);
            let msg = MediaMessage {
                msg_type: msg_type::MEDIA_DATA_VIDEO,
                content: self.content(user, b64.encode(img), ts),
            };
            let note = Note::Media {
                kind,
                seq,
                bytes: img.len(),
            };
            self.send_media(kind, msg, note).await?;
            *self.m.ledger_mut().video_by_user.entry(user).or_default() += 1;
        }
        Ok(())
    }

    /// One screen-share frame of sharing interval `interval`, and the next one's scheduling.
    async fn share(&mut self, t: u64, interval: usize, ts: u64) -> Result<(), Interrupt> {
        let (_, end, user) = self.shares[interval];
        if t + self.share_step < end {
            self.push(t + self.share_step, Item::Share { interval });
        }
        let seq = self.next_seq(MediaKind::Share);
        let codec = self
            .current_params(media_type::DESKSHARE)
            .and_then(|p| p.deskshare)
            .and_then(|v| v.codec)
            .unwrap_or(5);
        let img = image_for_codec(codec);
        let msg = MediaMessage {
            msg_type: msg_type::MEDIA_DATA_SHARE,
            content: self.binary_content(user, img, ts),
        };
        let (kind, bytes) = (MediaKind::Share, img.len());
        self.send_media(kind, msg, Note::Media { kind, seq, bytes })
            .await
    }

    /// The transcript line of utterance `i`, at its end.
    async fn transcript(&mut self, i: usize, ts: u64) -> Result<(), Interrupt> {
        let seq = self.next_seq(MediaKind::Transcript);
        let Some(line) = self.m.transcript_line(i, ts, self.t0) else {
            return Ok(());
        };
        let mut c = self.content(line.user_id, line.text.clone(), ts);
        c.start_time = Some(line.start_time);
        c.end_time = Some(line.end_time);
        c.language = Some(self.m.script.language);
        let msg = MediaMessage {
            msg_type: msg_type::MEDIA_DATA_TRANSCRIPT,
            content: c,
        };
        self.send_media(MediaKind::Transcript, msg, Note::Transcript { seq, line })
            .await
    }

    /// Chat message `i`.
    async fn chat(&mut self, i: usize, ts: u64) -> Result<(), Interrupt> {
        let seq = self.next_seq(MediaKind::Chat);
        let script = self.m.script.clone();
        let ch = &script.chats[i];
        let line = ChatLine {
            user_id: ch.user_id,
            user_name: script.name_of(ch.user_id).to_owned(),
            text: ch.text.clone(),
            timestamp: ts,
        };
        let msg = MediaMessage {
            msg_type: msg_type::MEDIA_DATA_CHAT,
            content: self.content(ch.user_id, ch.text.clone(), ts),
        };
        self.send_media(MediaKind::Chat, msg, Note::Chat { seq, line })
            .await
    }

    /// Sends an EVENT_UPDATE if the client subscribes to its type; in fast pace, waits for
    /// a signaling socket first.
    async fn event(&mut self, ev: serde_json::Value) -> Result<(), Interrupt> {
        let t = ev.get("event_type").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        if !self.m.subscribed(t) {
            return Ok(());
        }
        if self.m.pace == Pace::Fast {
            self.wait_until(|m| {
                let st = m.state();
                st.ended || st.signaling.is_some()
            })
            .await?;
        }
        let st = self.m.state();
        self.m.send_event(&st, ev);
        Ok(())
    }

    fn fire_frame_faults(&mut self) {
        let script = self.m.script.clone();
        for (i, f) in script.faults.iter().enumerate() {
            if let Trigger::AfterFrames(n) = f.trigger
                && !self.fired[i]
                && self.frames_sent >= n
            {
                self.fired[i] = true;
                self.m.apply_fault(f.fault.clone());
            }
        }
    }
}
