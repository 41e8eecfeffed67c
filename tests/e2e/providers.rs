//! The example plugins that call providers, end to end: a real `rtms-host run` process, a
//! simulated meeting, and fakes on 127.0.0.1 that speak the providers' public protocols
//! (`rtms-fakes`): `speech-to-text` streams the meeting's audio to a Deepgram-style live
//! WebSocket and writes what comes back; `meeting-summary` posts the transcript to an
//! OpenAI-compatible chat completions API at the end (through two rate-limit refusals) and
//! the summary to a Slack-style webhook. Secrets come from the host's environment and are
//! found nowhere the run wrote.

use std::path::Path;
use std::time::Duration;

use rtms_fakes::{ChatFake, LlmFake, SttFake};
use rtms_proto::Product;
use rtms_sim::{MeetingOptions, MeetingScript, Pace};

use crate::harness::{ledger_transcript, within};
use crate::host_process::{HostProcess, every_file};
use crate::util;

const STT_KEY: &str = "dg-test-5e1f0c9a7b3d2e48";
const LLM_KEY: &str = "sk-test-9c2e7a1f3b5d4068";

fn script(lines: usize) -> MeetingScript {
    MeetingScript::builder()
        .synthetic_speech(2, lines, 10)
        .build()
        .expect("script")
}

fn pipeline(stt: &SttFake, llm: &LlmFake, chat: &ChatFake, per_speaker: bool) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
[admin]
enabled = false
[rtms]
media = ["audio", "transcript"]
allowed_hosts = ["127.0.0.1", "localhost"]
allow_insecure_ws = true
[rtms.audio]
per_speaker = {per_speaker}
[runtime]
cache_dir = {cache:?}
dead_letter_dir = "dead"
[runtime.reload]
watch = false

[[plugin]]
name = "stt"
component = {stt_wasm:?}
media = ["audio"]
secrets = ["DEEPGRAM_API_KEY"]
[[plugin.dir]]
host = "out"
guest = "/out"
[plugin.queue]
capacity = 4096
on_full = "block"
[plugin.net]
http = [{stt_url:?}]
[plugin.config]
url = {stt_listen:?}

[[plugin]]
name = "summary"
component = {summary_wasm:?}
media = ["transcript"]
secrets = ["OPENAI_API_KEY", "SLACK_WEBHOOK_URL"]
[[plugin.dir]]
host = "out"
guest = "/out"
[plugin.net]
http = [{llm_url:?}, {chat_url:?}]
[plugin.config]
llm_url = "{llm_url}/v1/chat/completions"
model = "gpt-4o-mini"
chat_webhook_secret = "SLACK_WEBHOOK_URL"

[[sink]]
type = "jsonl"
path = "outputs.jsonl"
"#,
        cache = util::cache_dir().display().to_string(),
        stt_wasm = util::component("speech_to_text").display().to_string(),
        summary_wasm = util::component("meeting_summary").display().to_string(),
        stt_url = stt.url().replace("/v1/listen", ""),
        stt_listen = stt.url(),
        llm_url = llm.base_url(),
        chat_url = chat.base_url(),
    )
}

/// Waits for `path` to exist and be non-empty.
async fn written(path: &Path) -> String {
    within("the file to be written", async {
        loop {
            if let Ok(t) = std::fs::read_to_string(path)
                && !t.is_empty()
            {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

struct Run {
    host: HostProcess,
    stream: String,
    ledger: rtms_sim::Ledger,
    script: MeetingScript,
}

async fn run(
    stt: &SttFake,
    llm: &LlmFake,
    chat: &ChatFake,
    script: MeetingScript,
    per_speaker: bool,
) -> Run {
    let sim = crate::harness::process_simulator().await;
    let text = pipeline(stt, llm, chat, per_speaker);
    let hook = chat.webhook_url();
    let host = tokio::task::spawn_blocking(move || {
        HostProcess::start_with_env(
            &text,
            &[
                ("DEEPGRAM_API_KEY", STT_KEY),
                ("OPENAI_API_KEY", LLM_KEY),
                ("SLACK_WEBHOOK_URL", &hook),
                ("RUST_LOG", "info,rtms_host=debug"),
            ],
        )
    })
    .await
    .unwrap();
    let m = sim
        .start_meeting(
            script.clone(),
            MeetingOptions {
                product: Product::Meeting,
                pace: Pace::Fast,
                webhook_url: Some(host.webhook_url()),
                ..Default::default()
            },
        )
        .unwrap();
    let stream = m.stream_id().to_owned();
    let ledger = within("the meeting to finish", m.finished()).await;
    Run {
        host,
        stream,
        ledger,
        script,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_is_transcribed_by_the_provider_and_the_meeting_summarised_and_posted() {
    let script = script(12);
    let stt = SttFake::start(rtms_host::cli::demo::spoken(&script), STT_KEY)
        .await
        .unwrap();
    let llm = LlmFake::start(LLM_KEY).await.unwrap();
    let chat = ChatFake::start().await.unwrap();
    // The model's API refuses twice for its rate limit before it answers.
    llm.fail_next(429, 2, Some(0));
    let r = run(&stt, &llm, &chat, script, false).await;
    let out = r.host.dir.path().join("out");
    let summary = written(&out.join(format!("meeting_{}.summary.md", r.stream))).await;

    // Speech to text: every utterance, in order, from the provider, over one connection.
    let stt_file =
        std::fs::read_to_string(out.join(format!("meeting_{}.stt.txt", r.stream))).unwrap();
    let expected: Vec<String> = r
        .script
        .utterances
        .iter()
        .map(|u| format!("mixed: {}", u.text))
        .collect();
    assert_eq!(stt_file.lines().collect::<Vec<_>>(), expected);
    assert_eq!(stt.connections(), 1);
    assert_eq!(stt.heard().len(), r.script.utterances.len());

    // The summary: one completion after two 429s, of the whole transcript Zoom sent.
    assert_eq!(llm.requests(), 3, "two refusals retried, then answered");
    let done = llm.completions();
    assert_eq!(done.len(), 1);
    for line in ledger_transcript(&r.ledger) {
        assert!(done[0].prompt.contains(&line), "the prompt holds {line:?}");
    }
    assert!(summary.contains(&done[0].summary), "{summary}");
    assert!(done[0].summary.starts_with(&format!(
        "Summary of {} lines from 2 speakers",
        r.script.utterances.len()
    )));
    let posted = chat.texts();
    assert_eq!(posted.len(), 1);
    assert!(posted[0].contains(&done[0].summary));

    // Both plugins' outputs reached the sink.
    let outputs =
        std::fs::read_to_string(r.host.dir.path().join("outputs.jsonl")).unwrap_or_default();
    let count = |kind: &str| {
        outputs
            .lines()
            .filter(|l| l.contains(&format!("\"kind\":\"{kind}\"")))
            .count()
    };
    assert_eq!(count("transcript"), r.script.utterances.len());
    assert!(count("summary") >= 2, "both plugins summarise: {outputs}");

    // No secret anywhere the run wrote.
    let hook = chat.webhook_url();
    let token = hook.rsplit('/').next().unwrap().to_owned();
    let (logs, dir) = tokio::task::spawn_blocking(move || r.host.stop_keeping_dir())
        .await
        .unwrap();
    for secret in [STT_KEY, LLM_KEY, token.as_str()] {
        for l in &logs {
            assert!(!l.contains(secret), "a secret in the log: {l}");
        }
        for (path, bytes) in every_file(dir.path()) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "a secret in {}",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_speaker_audio_gets_one_provider_connection_per_speaker_finished_at_the_end() {
    let script = script(8);
    let stt = SttFake::start(rtms_host::cli::demo::spoken(&script), STT_KEY)
        .await
        .unwrap();
    let llm = LlmFake::start(LLM_KEY).await.unwrap();
    let chat = ChatFake::start().await.unwrap();
    // Results come only once the plugin closes each stream at the session's end.
    stt.hold_results();
    let r = run(&stt, &llm, &chat, script, true).await;
    let out = r.host.dir.path().join("out");
    written(&out.join(format!("meeting_{}.summary.md", r.stream))).await;
    let stt_file =
        std::fs::read_to_string(out.join(format!("meeting_{}.stt.txt", r.stream))).unwrap();
    assert_eq!(stt.connections(), 2, "one connection per speaker");
    let mut got: Vec<&str> = stt_file.lines().collect();
    got.sort_unstable();
    let names: std::collections::HashMap<i64, String> = r
        .script
        .participants
        .iter()
        .map(|p| (p.user_id, p.name.clone()))
        .collect();
    let mut expected: Vec<String> = r
        .script
        .utterances
        .iter()
        .map(|u| format!("{}: {}", names[&u.user_id], u.text))
        .collect();
    expected.sort_unstable();
    assert_eq!(
        got, expected,
        "each line by its speaker, from that speaker's connection"
    );
    for h in stt.heard() {
        let tag = h
            .tag
            .as_deref()
            .expect("a per-speaker connection names its speaker");
        assert!(h.transcript.ends_with(&format!("from {tag}")), "{h:?}");
    }
}

/// A WebSocket peer on 127.0.0.1 that floods: binary messages of 8 KiB as fast as it can,
/// reading nothing, until the client goes. Returns its port and the count it sent.
async fn flooding_peer() -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use futures_util::SinkExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let n = sent.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = n.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let chunk = vec![7u8; 8 * 1024];
                while ws
                    .send(tokio_tungstenite::tungstenite::Message::binary(
                        chunk.clone(),
                    ))
                    .await
                    .is_ok()
                {
                    n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    (port, sent)
}

/// A WebSocket peer that accepts and then neither reads nor writes.
async fn stalled_peer() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                held.push(ws);
            }
        }
    });
    port
}

fn ws_plugin(name: &str, port: u16) -> String {
    format!(
        r#"
[[plugin]]
name = "{name}"
component = {wasm:?}
media = ["transcript"]
[plugin.net]
http = ["ws://127.0.0.1:{port}"]
[plugin.config]
url = "ws://127.0.0.1:{port}/"
buffer_bytes = "65536"
"#,
        wasm = util::component("ws_echo").display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_and_a_stalled_websocket_peer_never_stall_the_stream_or_another_plugin() {
    use crate::harness::{Setup, assert_exactly_once, finish, start, start_host};
    let sim = rtms_sim::Simulator::start(crate::harness::sim_config(false))
        .await
        .unwrap();
    let (flood_port, flooded) = flooding_peer().await;
    let stalled = stalled_peer().await;
    let host = start_host(
        &sim,
        Setup {
            extra: ws_plugin("flooded", flood_port) + &ws_plugin("stalled", stalled),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let m = start(
        &sim,
        &host,
        crate::harness::script(60, vec![]),
        Product::Meeting,
        Pace::Realtime,
    );
    let stream = m.stream_id().to_owned();
    let ledger = finish(&host, &m).await;
    // The seq-recorder beside them took every frame exactly once, and the stream ended as
    // Zoom ended it.
    let rec = host.record(&stream);
    assert_exactly_once(&ledger, &rec);
    assert_eq!(rec.end(), "stopped(6)");
    // Every keep-alive the simulator asked for was answered in time, over the whole meeting.
    let c = &ledger.counters;
    assert!(c.keepalive_requests > 0);
    assert_eq!(c.keepalive_timeouts, 0);
    assert_eq!(c.keepalive_answers, c.keepalive_requests, "{c:?}");
    // The flood really happened while the meeting ran (its overflow is dropped by the
    // host, see `all ws::a_flood_drops_the_oldest_messages_and_counts_them`).
    let sent = flooded.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent > 100, "the peer flooded: {sent} messages");
}
