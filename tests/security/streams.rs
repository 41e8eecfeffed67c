//! A flood of validly signed started webhooks for streams that can never connect (an
//! allowed URL pointing at a closed port): at most `rtms.max_streams` run, the rest get 503
//! with Retry-After, the log stays bounded, and the memory comes back when they end.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hyper::StatusCode;
use hyper::header::RETRY_AFTER;
use rtms_proto::WebhookAction;

use crate::{
    HostProcess, SIM_ALLOW, WEBHOOK_SECRET, client, lifecycle, pipeline, post_with, serial, signed,
    unix_now,
};

const FLOOD: usize = 10_000;
const MAX_STREAMS: usize = 2_000;
/// How far above its baseline the host's RSS may stay once the streams ended.
const RSS_SLACK_KIB: u64 = 16 * 1024;

/// Sends one signed webhook per body, 32 at a time; returns the statuses in order.
async fn send_all(url: &str, bodies: Vec<Vec<u8>>) -> Vec<(StatusCode, bool)> {
    let client = client();
    let mut out: Vec<(usize, StatusCode, bool)> =
        futures_util::stream::iter(bodies.into_iter().enumerate())
            .map(|(i, body)| {
                let client = client.clone();
                async move {
                    let headers = signed(&body, WEBHOOK_SECRET);
                    let (status, h, _) = post_with(&client, url, body, &headers).await;
                    (i, status, h.contains_key(RETRY_AFTER))
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
    out.sort_by_key(|(i, ..)| *i);
    out.into_iter().map(|(_, s, r)| (s, r)).collect()
}

#[tokio::test]
async fn a_flood_of_started_webhooks_is_capped_and_its_memory_comes_back() {
    let _serial = serial().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let host = HostProcess::start(&pipeline(
        "",
        &format!(
            "{SIM_ALLOW}max_streams = {MAX_STREAMS}\nconnection_max_attempts = 1\n\
             connection_timeout_ms = 1000\nwebhook_wait_timeout_ms = 600000\n"
        ),
    ));
    let url = host.webhook_url();
    let sig = format!("ws://{closed}/sig");
    // Baseline after the server and the allocator have seen some traffic.
    let warm: Vec<Vec<u8>> = (0..200)
        .map(|i| lifecycle(WebhookAction::Stopped, &format!("warm{i}"), None, 1))
        .collect();
    assert!(
        send_all(&url, warm)
            .await
            .iter()
            .all(|(s, _)| *s == StatusCode::OK)
    );
    let baseline = host.rss_kib();

    let started = Instant::now();
    let ts = unix_now() * 1000;
    let flood: Vec<Vec<u8>> = (0..FLOOD)
        .map(|i| {
            lifecycle(
                WebhookAction::Started,
                &format!("bogus{i:05}"),
                Some(&sig),
                ts,
            )
        })
        .collect();
    let answers = send_all(&url, flood).await;
    let ok: Vec<usize> = (0..FLOOD)
        .filter(|&i| answers[i].0 == StatusCode::OK)
        .collect();
    let busy = answers
        .iter()
        .filter(|(s, retry)| *s == StatusCode::SERVICE_UNAVAILABLE && *retry)
        .count();
    let peak = host.rss_kib();
    eprintln!(
        "flood: {} accepted, {busy} refused (503) in {:?}; RSS {baseline} KiB -> {peak} KiB",
        ok.len(),
        started.elapsed()
    );
    assert_eq!(ok.len(), MAX_STREAMS, "exactly max_streams streams run");
    assert_eq!(
        busy,
        FLOOD - MAX_STREAMS,
        "the rest get 503 with Retry-After"
    );

    // Zoom stops them all; every stream ends.
    let stops: Vec<Vec<u8>> = ok
        .iter()
        .map(|i| {
            lifecycle(
                WebhookAction::Stopped,
                &format!("bogus{i:05}"),
                None,
                ts + 1,
            )
        })
        .collect();
    assert!(
        send_all(&url, stops)
            .await
            .iter()
            .all(|(s, _)| *s == StatusCode::OK)
    );
    assert!(
        host.wait_for_count(
            "stream stopped by Zoom",
            MAX_STREAMS,
            Duration::from_secs(30)
        ),
        "every stream ends"
    );

    // The memory comes back near the baseline: jemalloc's background thread returns freed
    // pages after about 10 s of disuse (measured: 95 MB at the peak, 29 MB 30 s later, from a
    // 24 MB baseline).
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let after = loop {
        tick.tick().await;
        let rss = host.rss_kib();
        if rss <= baseline + RSS_SLACK_KIB || Instant::now() >= deadline {
            break rss;
        }
    };
    eprintln!(
        "after the streams ended: RSS {after} KiB (baseline {baseline} KiB, peak {peak} KiB)"
    );
    assert!(
        after <= baseline + RSS_SLACK_KIB,
        "RSS {after} KiB stays above baseline {baseline} KiB + {RSS_SLACK_KIB} KiB"
    );

    // Room again: a new stream is accepted.
    let again = lifecycle(WebhookAction::Started, "after", Some(&sig), ts + 2);
    let (status, _, _) = post_with(
        &client(),
        &url,
        again.clone(),
        &signed(&again, WEBHOOK_SECRET),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let logs = host.stop();
    let summary = logs
        .iter()
        .find(|l| l.contains("suppressed") && l.contains("stream-refused-full"))
        .expect("the refusals are summarised");
    eprintln!("{summary}");
    let mut by_message = std::collections::BTreeMap::<String, usize>::new();
    for l in &logs {
        let message = serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .and_then(|v| v["fields"]["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        *by_message.entry(message).or_default() += 1;
    }
    let mut by_message: Vec<_> = by_message.into_iter().collect();
    by_message.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (message, n) in by_message.iter().take(8) {
        eprintln!("{n:>6}  {message}");
    }
    let logs = logs.len();
    eprintln!("log lines: {logs}");
    // A handful of lines per accepted stream; the refusals and the failures are summarised.
    assert!(
        logs < 8 * MAX_STREAMS + 1000,
        "{logs} log lines for {FLOOD} webhooks"
    );
}
