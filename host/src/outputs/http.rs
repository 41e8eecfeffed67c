//! The HTTP sink: one POST per output, JSON body.
//!
//! An endpoint is an outsider to the host's memory: each attempt has a connect timeout and a
//! request timeout (until the response head, then the same again for at most
//! [`MAX_RESPONSE`] bytes of body), a failed attempt (connection error, timeout, 5xx, 429)
//! is retried `retries` times with doubling backoff capped at [`Delivery::MAX_BACKOFF`],
//! and then the output is dropped, counted and logged at a bounded rate. While it waits, its
//! queue holds at most `queue_mb`; past that, new outputs for it are dropped (counted), and
//! the other sinks go on.
//!
//! Its client is the host's one HTTP client ([`rtms_client::HttpClient`]): it reaches the
//! endpoint as `rtms.proxy` says, like every other outgoing connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use rtms_client::{ClientSettings, HttpClient, HttpError, TlsError};
use tokio::sync::mpsc;

use crate::outputs::stats::{DropReason, OutputStats, SinkStats};
use crate::outputs::{Delivery, Queued};

/// Response body bytes read (and discarded) so the connection can be reused.
const MAX_RESPONSE: usize = 64 * 1024;

/// The client of one HTTP sink: its connect and request timeouts, `settings`' trust and
/// proxy.
pub(crate) fn client(d: &Delivery, settings: &ClientSettings) -> Result<Sender, TlsError> {
    HttpClient::builder(settings)
        .connect_timeout(d.connect_timeout)
        .request_timeout(d.request_timeout)
        .build()
}

pub(crate) type Sender = HttpClient<Full<Bytes>>;

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    error: String,
    retry: bool,
}

pub(crate) async fn run(
    mut rx: mpsc::Receiver<Queued>,
    client: Sender,
    url: String,
    d: Delivery,
    stats: Arc<OutputStats>,
    sink: Arc<SinkStats>,
) {
    while let Some(q) = rx.recv().await {
        let body = Bytes::from(serde_json::to_vec(&*q.rec).unwrap_or_default());
        match deliver(&client, &url, body, &d, &sink).await {
            Ok(()) => stats.delivered(&sink),
            Err(e) => {
                stats.drop_sink(&sink, &q.rec, DropReason::Failed);
                if rtms_client::ratelog::admit("http-sink-failed") {
                    tracing::warn!(sink = %sink.label, url = %url, error = %e, plugin = %q.rec.plugin, attempts = d.retries + 1, failed = sink.drops.get(DropReason::Failed), "HTTP sink could not deliver an output; dropped");
                }
            }
        }
        // `q` drops here: its bytes go back to the sink's budget.
    }
}

/// Posts `body`, retrying what may succeed later; the last error when every attempt failed.
async fn deliver(
    client: &Sender,
    url: &str,
    body: Bytes,
    d: &Delivery,
    sink: &SinkStats,
) -> Result<(), String> {
    let mut attempt = 0;
    loop {
        let f = match attempt_once(client, url, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        if !f.retry || attempt >= d.retries {
            return Err(f.error);
        }
        tokio::time::sleep(backoff(d.retry_backoff, attempt)).await;
        attempt += 1;
        sink.retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The wait before retry `n` (from 0): `base * 2^n`, at most [`Delivery::MAX_BACKOFF`].
fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1 << n.min(16))
        .min(Delivery::MAX_BACKOFF)
}

async fn attempt_once(client: &Sender, url: &str, body: Bytes) -> Result<(), Failure> {
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .map_err(|e| Failure {
            error: e.to_string(),
            retry: false,
        })?;
    // A connection error or no answer within the request timeout may pass.
    let resp = client.request(req).await.map_err(|e| failure(e, true))?;
    let status = resp.status();
    // Read what little body there is so the connection is reused; a sink that sends more,
    // or sends it slowly, loses the connection, not the output.
    let _ = client.body(resp, MAX_RESPONSE).await;
    if status.is_success() {
        return Ok(());
    }
    let retry = status.is_server_error() || status == hyper::StatusCode::TOO_MANY_REQUESTS;
    Err(Failure {
        error: format!("HTTP {status}"),
        retry,
    })
}

fn failure(e: HttpError, retry: bool) -> Failure {
    Failure {
        error: e.to_string(),
        retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_millis(200);
        assert_eq!(backoff(b, 0), Duration::from_millis(200));
        assert_eq!(backoff(b, 2), Duration::from_millis(800));
        assert_eq!(backoff(b, 40), Delivery::MAX_BACKOFF);
    }
}
