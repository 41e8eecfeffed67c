//! Start-and-wait: a stream started, stopped, paused or resumed on purpose through Zoom's
//! REST API ([`super::zoom_rest`]); a start waits for the started webhook that follows it,
//! whichever intake (webhook listener or event WebSocket) brings it.

use std::sync::Arc;

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
        let Some(rest) = &self.rest else {
            return Err((503, self.missing.clone()));
        };
        let numeric = !meeting.is_empty() && meeting.bytes().all(|b| b.is_ascii_digit());
        let uuid = if numeric && action == super::zoom_rest::Action::Start {
            rest.meeting_uuid(meeting).await.map_err(|e| (502, e))?
        } else {
            meeting.to_owned()
        };
        let mut started = self.starts.subscribe();
        rest.rtms_status(meeting, action)
            .await
            .map_err(|e| (502, e))?;
        if action != super::zoom_rest::Action::Start {
            return Ok(
                serde_json::json!({"meeting": meeting, "action": action.as_str(), "accepted": true}),
            );
        }
        let wait = async {
            loop {
                match started.recv().await {
                    Ok(s) if s.id == uuid => return Some(s),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        };
        match tokio::time::timeout(self.wait, wait).await {
            Ok(Some(s)) => Ok(serde_json::json!({
                "meeting": s.id, "action": "start", "accepted": true,
                "stream_id": s.stream_id, "product": s.product.as_str(),
            })),
            Ok(None) => Err((503, "the host is shutting down".into())),
            Err(_) => Err((
                504,
                format!(
                    "Zoom accepted the start, but no started webhook for meeting {meeting:?} reached this host within {} s (rtms.webhook_wait_timeout_ms). Likely causes: the meeting has not started (its host must be in it); RTMS is not enabled for the account or for the app; the app's event subscriptions lack meeting.rtms_started; or Zoom cannot reach this host's webhook endpoint (check the endpoint URL and its validation in the app's settings)",
                    self.wait.as_secs()
                ),
            )),
        }
    }
}
