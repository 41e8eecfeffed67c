//! The commands beside `run`: `demo` (everything in one process), `tap` (live frames and outputs), and `start|stop|pause|resume`
//! (Zoom's REST flows through a running host).

pub mod demo;
pub mod tap;
pub mod zoom;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use rtms_client::{ClientSettings, HttpClient};

/// How long the commands wait for a connection to the admin listener.
pub const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client the commands talk to a running host's admin listener with: the host's one
/// HTTP client, direct (the admin listener is the operator's own host, not behind
/// `rtms.proxy`), trusting the system roots for an `https://` admin URL, connecting within
/// [`ADMIN_CONNECT_TIMEOUT`] and waiting at most `answer_within` for the answer's head
/// (`None`: as long as the host takes, for calls the host bounds itself).
pub(crate) fn admin_client(
    answer_within: Option<Duration>,
) -> anyhow::Result<HttpClient<Empty<Bytes>>> {
    let mut b =
        HttpClient::builder(&ClientSettings::direct()).connect_timeout(ADMIN_CONNECT_TIMEOUT);
    if let Some(d) = answer_within {
        b = b.request_timeout(d);
    }
    Ok(b.build()?)
}
