//! Starting, stopping, pausing and resuming RTMS on purpose through Zoom's REST API.
//!
//! A Server-to-Server OAuth token (account credentials grant, cached until a minute before it
//! expires) authorises `PATCH {api}/v2/live_meetings/{meetingId}/rtms_app/status` with
//! `{"action": ..., "settings": {"client_id": <the RTMS app's client id>}}`. Zoom's answers
//! are turned into errors that say what to check; a 429 is retried after its `Retry-After`
//! (at most [`MAX_RATE_LIMIT_RETRIES`] times). Waiting for the `*_rtms_started` webhook
//! that follows a start is the caller's part (`crate::service`).
//!
//! Every call (OAuth token, REST API, and so the event WebSocket's token) goes through the
//! host's one HTTP client ([`rtms_client::HttpClient`]): through the proxy `rtms.proxy`
//! names, over the same CONNECT tunnel as the Zoom WebSockets, connecting within and
//! answering within [`CALL_TIMEOUT`], with an answer of at most [`MAX_ANSWER`] bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use parking_lot::Mutex;
use rtms_client::{ClientSettings, HttpClient};
use serde_json::{Value, json};

/// 429 answers retried before giving up.
pub const MAX_RATE_LIMIT_RETRIES: u32 = 3;
/// The longest `Retry-After` honoured; a longer one is reported instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long connecting, and then the answer's head and its body, may each take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read from Zoom.
pub const MAX_ANSWER: usize = 1 << 20;

/// What to do to a meeting's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Pause,
    Resume,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Pause => "pause",
            Action::Resume => "resume",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        [Action::Start, Action::Stop, Action::Pause, Action::Resume]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// What a status call acts on: a live meeting (its uuid or number), or a Zoom Contact Center
/// engagement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Meeting(String),
    Engagement(String),
}

impl Target {
    /// The id as given.
    pub fn id(&self) -> &str {
        match self {
            Target::Meeting(id) | Target::Engagement(id) => id,
        }
    }

    /// `meeting ID` / `engagement ID`, for messages.
    pub fn label(&self) -> String {
        match self {
            Target::Meeting(id) => format!("meeting {id:?}"),
            Target::Engagement(id) => format!("engagement {id:?}"),
        }
    }

    /// The product whose started webhook a start of this target waits for, when it is known
    /// (a meeting id may also be a webinar's).
    pub fn product(&self) -> Option<rtms_proto::Product> {
        match self {
            Target::Meeting(_) => None,
            Target::Engagement(_) => Some(rtms_proto::Product::ContactCenter),
        }
    }

    /// The method and URL of its RTMS app status endpoint: `PATCH
    /// {api}/v2/live_meetings/{meetingId}/rtms_app/status` or `PUT
    /// {api}/v2/contact_center/{engagementId}/rtms_app/status`.
    fn endpoint(&self, api: &str) -> (Method, String) {
        match self {
            Target::Meeting(id) => (
                Method::PATCH,
                format!(
                    "{api}/v2/live_meetings/{}/rtms_app/status",
                    meeting_segment(id)
                ),
            ),
            Target::Engagement(id) => (
                Method::PUT,
                format!(
                    "{api}/v2/contact_center/{}/rtms_app/status",
                    crate::urlenc::encode(id)
                ),
            ),
        }
    }

    /// The scope Zoom wants for its status endpoint.
    fn scope(&self) -> &'static str {
        match self {
            Target::Meeting(_) => {
                "the scope to update a meeting's RTMS app status (meeting:update:meeting_rtms_app_status)"
            }
            Target::Engagement(_) => {
                "the scope to update an engagement's RTMS app status (contact_center:update:engagement_rtms_app_status, or contact_center_rtms:write:admin)"
            }
        }
    }
}

/// The REST client's settings. Its `Debug` hides the OAuth client secret.
#[derive(Clone)]
pub struct RestConfig {
    pub api_base_url: String,
    pub oauth_base_url: String,
    pub account_id: String,
    pub oauth_client_id: String,
    pub oauth_client_secret: String,
    /// The RTMS app's client id (`settings.client_id`).
    pub rtms_client_id: String,
}

impl std::fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestConfig")
            .field("api_base_url", &self.api_base_url)
            .field("oauth_base_url", &self.oauth_base_url)
            .field("account_id", &self.account_id)
            .field("oauth_client_id", &self.oauth_client_id)
            .field("oauth_client_secret", &"***")
            .field("rtms_client_id", &self.rtms_client_id)
            .finish()
    }
}

/// Calls Zoom's REST API with a cached token.
pub struct ZoomRest {
    cfg: RestConfig,
    client: HttpClient<Full<Bytes>>,
    token: Mutex<Option<(String, Instant)>>,
}

/// The path segment of a meeting id. Zoom wants a uuid that starts with `/` or holds `//`
/// encoded twice.
pub fn meeting_segment(id: &str) -> String {
    let once = crate::urlenc::encode(id);
    if id.starts_with('/') || id.contains("//") {
        crate::urlenc::encode(&once)
    } else {
        once
    }
}

impl ZoomRest {
    /// A client trusting `tls`, reaching Zoom as `proxy` says (`rtms.proxy`).
    pub fn new(
        cfg: RestConfig,
        tls: Arc<rustls::ClientConfig>,
        proxy: &rtms_client::ProxySetting,
    ) -> Self {
        let settings = ClientSettings {
            extra_ca_file: None,
            proxy: proxy.clone(),
        };
        let client = HttpClient::builder(&settings)
            .connect_timeout(CALL_TIMEOUT)
            .request_timeout(CALL_TIMEOUT)
            .build_with_tls(tls);
        Self {
            cfg,
            client,
            token: Mutex::new(None),
        }
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Value), String> {
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = self
            .client
            .body(resp, MAX_ANSWER)
            .await
            .map_err(|e| e.to_string())?;
        let v = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        Ok((status, headers, v))
    }

    /// A valid access token, fetched when none is cached or it expires within a minute.
    pub async fn token(&self) -> Result<String, String> {
        if let Some((t, until)) = &*self.token.lock()
            && *until > Instant::now() + Duration::from_secs(60)
        {
            return Ok(t.clone());
        }
        let c = &self.cfg;
        let url = format!(
            "{}/oauth/token?grant_type=account_credentials&account_id={}",
            c.oauth_base_url,
            crate::urlenc::encode(&c.account_id)
        );
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.oauth_client_id, c.oauth_client_secret));
        let req = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("bad OAuth URL {url:?}: {e} (check zoom.oauth_base_url)"))?;
        let (status, _, v) = self.send(req).await?;
        if !status.is_success() {
            let why = v["reason"]
                .as_str()
                .or(v["error"].as_str())
                .unwrap_or("no reason given");
            return Err(format!(
                "Zoom's OAuth server refused the account credentials ({status}: {why}): check the Server-to-Server OAuth app's account id, client id and client secret (ZOOM_ACCOUNT_ID, ZOOM_OAUTH_CLIENT_ID, ZOOM_OAUTH_CLIENT_SECRET or the variables zoom.*_env name) and that the app is activated"
            ));
        }
        let token = v["access_token"]
            .as_str()
            .ok_or("Zoom's OAuth answer holds no access_token")?
            .to_owned();
        let ttl = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(3600));
        *self.token.lock() = Some((token.clone(), Instant::now() + ttl));
        Ok(token)
    }

    /// The uuid of the meeting numbered `number` (`GET {api}/v2/meetings/{number}`): started
    /// webhooks carry the uuid only, so a start by number waits for that uuid.
    pub async fn meeting_uuid(&self, number: &str) -> Result<String, String> {
        let url = format!(
            "{}/v2/meetings/{}",
            self.cfg.api_base_url,
            meeting_segment(number)
        );
        let mut retried_auth = false;
        loop {
            let token = self.token().await?;
            let req = Request::builder()
                .method(Method::GET)
                .uri(&url)
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))
                .map_err(|e| format!("bad API URL {url:?}: {e} (check zoom.api_base_url)"))?;
            let (status, _, v) = self.send(req).await?;
            if status.is_success() {
                return v["uuid"]
                    .as_str()
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("Zoom's answer for meeting {number} holds no uuid: give the meeting uuid instead of its number"));
            }
            if status == StatusCode::UNAUTHORIZED && !retried_auth {
                retried_auth = true;
                *self.token.lock() = None;
                continue;
            }
            let message = v["message"].as_str().unwrap_or("");
            return Err(format!(
                "cannot tell which meeting {number} is ({status}: {message}): started webhooks name meetings by uuid only, so a start by number looks the uuid up first; give the meeting uuid instead, or grant the Server-to-Server OAuth app the scope to read meetings (meeting:read:meeting)"
            ));
        }
    }

    /// Asks Zoom to start, stop, pause or resume the meeting's RTMS app.
    pub async fn rtms_status(&self, meeting: &str, action: Action) -> Result<(), String> {
        self.status(&Target::Meeting(meeting.to_owned()), action)
            .await
    }

    /// Asks Zoom to start, stop, pause or resume the RTMS app of a meeting or a Contact
    /// Center engagement.
    pub async fn status(&self, target: &Target, action: Action) -> Result<(), String> {
        let (method, url) = target.endpoint(&self.cfg.api_base_url);
        let body =
            json!({"action": action.as_str(), "settings": {"client_id": self.cfg.rtms_client_id}});
        let mut retried_auth = false;
        let mut rate_limited = 0;
        loop {
            let token = self.token().await?;
            let req = Request::builder()
                .method(method.clone())
                .uri(&url)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| format!("bad API URL {url:?}: {e} (check zoom.api_base_url)"))?;
            let (status, headers, v) = self.send(req).await?;
            if status.is_success() {
                return Ok(());
            }
            let code = v["code"].as_u64();
            let message = v["message"].as_str().unwrap_or("").to_owned();
            let zoom = match code {
                Some(c) => format!("{status}, Zoom code {c}: {message}"),
                None => format!("{status}: {message}"),
            };
            if status == StatusCode::UNAUTHORIZED && !retried_auth {
                // The cached token may have been revoked: fetch a new one once.
                retried_auth = true;
                *self.token.lock() = None;
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs);
                if rate_limited >= MAX_RATE_LIMIT_RETRIES || wait > MAX_RETRY_AFTER {
                    return Err(format!(
                        "Zoom's rate limit ({zoom}): retry after {} s",
                        wait.as_secs()
                    ));
                }
                rate_limited += 1;
                tracing::warn!(
                    target = %target.label(),
                    action = action.as_str(),
                    retry_after_s = wait.as_secs(),
                    "Zoom rate-limited the RTMS status call; retrying"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(self.refusal(target, action, status, &zoom));
        }
    }

    /// What a refused status call says to check.
    fn refusal(&self, target: &Target, action: Action, status: StatusCode, zoom: &str) -> String {
        let what = target.label();
        match (status, target) {
            (StatusCode::UNAUTHORIZED, _) => format!(
                "Zoom refused the access token ({zoom}): the Server-to-Server OAuth app needs {} and must belong to the {}'s account",
                target.scope(),
                if target.product().is_some() {
                    "engagement"
                } else {
                    "meeting"
                }
            ),
            (StatusCode::NOT_FOUND, Target::Meeting(_)) => format!(
                "Zoom knows no live {what} ({zoom}): the meeting must be in progress; give its number or its uuid"
            ),
            (StatusCode::NOT_FOUND, Target::Engagement(_)) => format!(
                "Zoom knows no {what} ({zoom}): the engagement must be in progress in Zoom Contact Center; give its engagement_id"
            ),
            (StatusCode::BAD_REQUEST, _) => format!(
                "Zoom refused to {} RTMS for {what} ({zoom}): check that RTMS is enabled for the account and the app, that settings.client_id ({}) is the RTMS app's client id, and that the stream is in a state that allows it",
                action.as_str(),
                self.cfg.rtms_client_id
            ),
            _ => format!("Zoom's RTMS status call failed ({zoom})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_config_debug_hides_the_oauth_secret() {
        let cfg = RestConfig {
            api_base_url: "https://api.zoom.us".into(),
            oauth_base_url: "https://zoom.us".into(),
            account_id: "acct".into(),
            oauth_client_id: "oauth-id".into(),
            oauth_client_secret: "s3cr3t-oauth-value".into(),
            rtms_client_id: "rtms-id".into(),
        };
        for shown in [format!("{cfg:?}"), format!("{cfg:#?}")] {
            assert!(!shown.contains("s3cr3t-oauth-value"), "{shown}");
            assert!(
                shown.contains("oauth-id") && shown.contains("***"),
                "{shown}"
            );
        }
    }

    #[test]
    fn uuids_that_start_with_a_slash_or_hold_two_are_encoded_twice() {
        assert_eq!(meeting_segment("85746065432"), "85746065432");
        assert_eq!(meeting_segment("abc+d=="), "abc%2Bd%3D%3D");
        assert_eq!(meeting_segment("/ab"), "%252Fab");
        assert_eq!(meeting_segment("a//b"), "a%252F%252Fb");
    }
}
