//! The frame path's fast case: a frame for an idle plugin is delivered on the session's own
//! task (no queue, no wake-up of the worker), file writes included, and a plugin that has
//! to wait leaves that task without reordering anything.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::util::*;

fn recorder() -> Plug {
    Plug::new("recorder", "seq_recorder")
}

/// Pushes frames 20 ms apart, as a real-time stream does (the clock is paused: the gap is
/// exact, and the workers start their instances meanwhile).
async fn push_paced(
    s: &rtms_host::dataplane::registry::LiveStream,
    seqs: std::ops::RangeInclusive<u64>,
) {
    for seq in seqs {
        s.push(transcript(seq, "Ann", "hi")).await;
        tokio::time::advance(Duration::from_millis(20)).await;
    }
}

#[ignore = "inline delivery happens on only some runs since the sandbox bounds landed; the cause is still to find (run with --include-ignored)"]
#[tokio::test(start_paused = true)]
async fn an_idle_plugin_takes_frames_inline_and_its_file_writes_stay_on_the_task() {
    let h = harness(&[recorder()]).await;
    let s = session(&h, "inline-stream");
    push_paced(&s, 1..=100).await;
    let st = h.metrics.plugin("recorder");
    let inline = st.inline.load(Ordering::Relaxed);
    let handoffs = st.inline_handoffs.load(Ordering::Relaxed);
    // One frame at a time to an idle worker: nearly every frame goes inline (a call that
    // straddles an epoch tick yields, is handed off, and the next frames queue behind it).
    assert!(inline >= 50, "only {inline} of 100 frames went inline");
    // seq_recorder writes its file on every frame. Were the write run on the blocking
    // pool, every inline call would wait for it and be handed off.
    assert!(
        handoffs * 4 < inline,
        "{handoffs} of {inline} inline calls had to wait: file writes left the task"
    );
    end(&s).await;
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-inline-stream.txt")),
        (1..=100).collect::<Vec<_>>(),
        "every frame once, in order"
    );
    assert_eq!(st.delivered.load(Ordering::Relaxed), 100);
}

/// Frames that come together (a stream catching up, a burst read at once) are not called one
/// by one inline: they queue and the worker takes them as batches.
#[tokio::test(start_paused = true)]
async fn frames_that_come_together_are_batched_not_called_inline_one_by_one() {
    let h = harness(&[recorder()]).await;
    let s = session(&h, "burst-stream");
    push_paced(&s, 1..=3).await;
    for seq in 4..=100 {
        s.push(transcript(seq, "Ann", "hi")).await;
    }
    end(&s).await;
    let st = h.metrics.plugin("recorder");
    let inline = st.inline.load(Ordering::Relaxed);
    let calls = st.calls.load(Ordering::Relaxed);
    assert!(inline <= 4, "{inline} frames of the burst went inline");
    assert!(calls <= 10, "100 frames took {calls} calls");
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-burst-stream.txt")),
        (1..=100).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_plugin_that_batches_by_time_is_never_called_inline() {
    let mut recorder = recorder();
    recorder.batch_max = 8;
    recorder.batch_wait = Duration::from_millis(200);
    let h = harness(&[recorder]).await;
    let s = session(&h, "batched-stream");
    for seq in 1..=8 {
        s.push(transcript(seq, "Ann", "hi")).await;
    }
    end(&s).await;
    let st = h.metrics.plugin("recorder");
    assert_eq!(st.inline.load(Ordering::Relaxed), 0);
    assert_eq!(
        st.calls.load(Ordering::Relaxed),
        1,
        "the eight frames waited for each other"
    );
}

/// A plugin slower than the inline bound (its calls spin into the deadline) is handed off
/// after its first call and then served by its worker, while a quick plugin on the same
/// session keeps taking every frame inline, in order.
#[ignore = "inline delivery happens on only some runs since the sandbox bounds landed; the cause is still to find (run with --include-ignored)"]
#[tokio::test(start_paused = true)]
async fn a_slow_plugin_leaves_the_session_task_and_the_quick_one_stays_inline() {
    let mut spin = Plug::new("spin", "spin");
    spin.call_timeout = Duration::from_millis(30);
    let h = harness(&[spin, recorder()]).await;
    let s = session(&h, "mixed-stream");
    push_paced(&s, 1..=40).await;
    let spin = h.metrics.plugin("spin");
    let quick = h.metrics.plugin("recorder");
    assert!(
        spin.inline.load(Ordering::Relaxed) <= 2,
        "the spinning plugin was called inline {} times",
        spin.inline.load(Ordering::Relaxed)
    );
    assert!(quick.inline.load(Ordering::Relaxed) >= 20);
    end(&s).await;
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-mixed-stream.txt")),
        (1..=40).collect::<Vec<_>>()
    );
}

/// The recorder with `[plugin.batch] max_frames = 32`, `max_wait_ms = wait_ms`.
fn timed(wait_ms: u64) -> Plug {
    let mut r = recorder();
    r.batch_max = 32;
    r.batch_wait = Duration::from_millis(wait_ms);
    r
}

/// Pushes frames `seqs` at once (no pacing).
async fn push_all(
    s: &rtms_host::dataplane::registry::LiveStream,
    seqs: std::ops::RangeInclusive<u64>,
) {
    for seq in seqs {
        s.push(transcript(seq, "Ann", "hi")).await;
    }
}

/// At real-time pace (a frame every 20 ms) with `max_wait_ms = 100`, frames reach the
/// plugin in batches of about five: every frame once, in order.
#[tokio::test(start_paused = true)]
async fn time_batches_keep_every_frame_once_and_in_order() {
    let h = harness(&[timed(100)]).await;
    let s = session(&h, "timed-stream");
    push_paced(&s, 1..=200).await;
    end(&s).await;
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-timed-stream.txt")),
        (1..=200).collect::<Vec<_>>(),
        "every frame once, in order"
    );
    let st = h.metrics.plugin("recorder");
    assert_eq!(st.delivered.load(Ordering::Relaxed), 200);
    assert_eq!(st.inline.load(Ordering::Relaxed), 0);
    let calls = st.calls.load(Ordering::Relaxed);
    assert!(
        (7..=70).contains(&calls),
        "200 frames 20 ms apart in 100 ms windows took {calls} calls"
    );
}

/// A session's end delivers a partial batch still inside its window at once, not when the
/// window closes (a minute here).
#[tokio::test]
async fn a_session_end_delivers_a_waiting_batch_at_once() {
    let h = harness(&[timed(60_000)]).await;
    let s = session(&h, "end-stream");
    push_all(&s, 1..=5).await;
    let t = std::time::Instant::now();
    end(&s).await;
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the end waited {:?} for the window",
        t.elapsed()
    );
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-end-stream.txt")),
        (1..=5).collect::<Vec<_>>()
    );
    assert_eq!(
        h.metrics.plugin("recorder").calls.load(Ordering::Relaxed),
        1
    );
}

/// A session handed off (the host shutting down for a successor, or a cluster peer taking
/// the stream) delivers a waiting partial batch at once too.
#[tokio::test]
async fn a_hand_off_delivers_a_waiting_batch_at_once() {
    let h = harness(&[timed(60_000)]).await;
    let s = session(&h, "handoff-stream");
    push_all(&s, 1..=5).await;
    let t = std::time::Instant::now();
    s.hand_off().await;
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the hand-off waited {:?} for the window",
        t.elapsed()
    );
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-handoff-stream.txt")),
        (1..=5).collect::<Vec<_>>()
    );
}

/// A reload (a new table: the plugin's instance is swapped) delivers the partial batch
/// waiting before the swap at once, to the old instance; the frames after it go to the new
/// one, in order, each once.
#[tokio::test]
async fn a_reload_delivers_a_waiting_batch_before_the_swap() {
    let plugs = [timed(60_000)];
    let h = harness(&plugs).await;
    let s = session(&h, "reload-stream");
    push_all(&s, 1..=5).await;
    let t = std::time::Instant::now();
    let next = table(&h.shared.services.rt, &plugs, &h.out_dir(), 2, &h.metrics).await;
    h.shared.publish(next).await;
    let delivered = || {
        h.metrics
            .plugin("recorder")
            .delivered
            .load(Ordering::Relaxed)
    };
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while delivered() < 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{} of 5 frames delivered {:?} after the reload",
        delivered(),
        t.elapsed()
    );
    push_all(&s, 6..=8).await;
    end(&s).await;
    assert_eq!(
        recorded_seqs(&h.out_dir().join("seqs-reload-stream.txt")),
        (1..=8).collect::<Vec<_>>()
    );
}
