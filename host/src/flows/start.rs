//! Start-and-wait: a stream started, stopped, paused or resumed on purpose through Zoom's
//! REST API ([`super::zoom_rest`]); a start waits for the started webhook that follows it,
//! whichever intake (webhook listener or event WebSocket) brings it.

use std::sync::Arc;

use super::zoom_rest::Target;

/// A started webhook the host took: what a start through the REST API waits for.
#[derive(Clone, Debug)]
pub struct StartedSeen {
    pub product: rtms_proto::Product,
    /// Meeting uuid / webinar uuid / session id / engagement id.
    pub id: String,
    pub stream_id: String,
}

/// Starts, stops, pauses and resumes streams through Zoom's REST API, and waits for the
/// started webhook that follows a start.
pub struct RtmsControl {
    pub(crate) rest: Option<Arc<super::zoom_rest::ZoomRest>>,
    /// Why `rest` is `None`.
    pub(crate) missing: String,
    pub(crate) starts: tokio::sync::broadcast::Sender<StartedSeen>,
    pub(crate) wait: std::time::Duration,
}

impl RtmsControl {
    /// Acts on `meeting` (a uuid, or a meeting number). A start then waits for the
    /// meeting's started webhook up to `rtms.webhook_wait_timeout_ms`; webhooks carry the
    /// uuid only, so a meeting number is first resolved to its uuid through the REST API
    /// (another meeting's started webhook is never taken for it).
    pub async fn act(
        &self,
        meeting: &str,
        action: super::zoom_rest::Action,
    ) -> Result<serde_json::Value, (u16, String)> {
        self.act_on(&Target::Meeting(meeting.to_owned()), action)
            .await
    }

    /// Acts on a meeting or a Contact Center engagement; a start waits for its started
    /// webhook (an engagement's: `contact_center.voice_rtms_started` with that
    /// `engagement_id`).
    pub async fn act_on(
        &self,
        target: &Target,
        action: super::zoom_rest::Action,
    ) -> Result<serde_json::Value, (u16, String)> {
        let Some(rest) = &self.rest else {
            return Err((503, self.missing.clone()));
        };
        let id = target.id();
        let numeric = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
        let uuid = match target {
            Target::Meeting(m) if numeric && action == super::zoom_rest::Action::Start => {
                rest.meeting_uuid(m).await.map_err(|e| (502, e))?
            }
            _ => id.to_owned(),
        };
        let key = match target {
            Target::Meeting(_) => "meeting",
            Target::Engagement(_) => "engagement",
        };
        let mut started = self.starts.subscribe();
        rest.status(target, action).await.map_err(|e| (502, e))?;
        if action != super::zoom_rest::Action::Start {
            return Ok(serde_json::json!({key: id, "action": action.as_str(), "accepted": true}));
        }
        let product = target.product();
        let wait = async {
            loop {
                match started.recv().await {
                    Ok(s) if s.id == uuid && product.is_none_or(|p| p == s.product) => {
                        return Some(s);
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        };
        match tokio::time::timeout(self.wait, wait).await {
            Ok(Some(s)) => Ok(serde_json::json!({
                key: s.id, "action": "start", "accepted": true,
                "stream_id": s.stream_id, "product": s.product.as_str(),
            })),
            Ok(None) => Err((503, "the host is shutting down".into())),
            Err(_) if product.is_some() => Err((
                504,
                format!(
                    "Zoom accepted the start, but no contact_center.voice_rtms_started webhook for {} reached this host within {} s (rtms.webhook_wait_timeout_ms). Likely causes: the engagement is not in progress; RTMS is not enabled for Contact Center or for the app; the app's event subscriptions lack contact_center.voice_rtms_started; or Zoom cannot reach this host's webhook endpoint",
                    target.label(),
                    self.wait.as_secs()
                ),
            )),
            Err(_) => Err((
                504,
                format!(
                    "Zoom accepted the start, but no started webhook for meeting {id:?} reached this host within {} s (rtms.webhook_wait_timeout_ms). Likely causes: the meeting has not started (its host must be in it); RTMS is not enabled for the account or for the app; the app's event subscriptions lack meeting.rtms_started; or Zoom cannot reach this host's webhook endpoint (check the endpoint URL and its validation in the app's settings)",
                    self.wait.as_secs()
                ),
            )),
        }
    }
}
