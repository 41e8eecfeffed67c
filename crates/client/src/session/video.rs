//! The session's side of individual video: sending what [`crate::video::Follower`] decides
//! on the signaling socket, and reporting the server's answers.

use rtms_proto::codes::status;
use rtms_proto::msg::VideoSubscriptionResp;

use super::Driver;
use crate::frame::Frame;
use crate::link;
use crate::sink::SinkFactory;
use crate::transport::Connector;
use crate::video::{Answer, Change, Command};

impl<C: Connector, F: SinkFactory> Driver<C, F> {
    /// After a new handshake: asks again for every participant the policy wants. False when
    /// the signaling socket failed.
    pub(super) async fn resubscribe_video(&mut self) -> bool {
        let changes = match self.video.as_mut() {
            Some(f) => f.resubscribe(),
            None => return true,
        };
        self.send_video(changes).await
    }

    /// An event frame: the follower learns from it. False when the signaling socket failed.
    pub(super) async fn follow_video(&mut self, frame: &Frame) -> bool {
        let (Some(f), Some(text)) = (self.video.as_mut(), frame.text.as_deref()) else {
            return true;
        };
        let Ok(event) = serde_json::from_str(text) else {
            return true;
        };
        let changes = f.on_event(&event);
        self.send_video(changes).await
    }

    /// A command from the operator or a plugin. False when the signaling socket failed.
    pub(super) async fn video_command(&mut self, cmd: Command) -> bool {
        let Some(f) = self.video.as_mut() else {
            tracing::warn!(
                ?cmd,
                "video command ignored: this stream's video is not in individual mode \
                 (set [rtms.video] mode = \"individual\")"
            );
            return true;
        };
        let changes = f.command(cmd);
        self.send_video(changes).await
    }

    /// msg 29: counted; a refusal is logged with the code's name.
    pub(super) fn on_video_answer(&mut self, r: &VideoSubscriptionResp) {
        self.observer.video_subscription(r.subscribe, r.status_code);
        let Some(f) = self.video.as_mut() else {
            return;
        };
        match f.on_answer(r.user_id, r.subscribe, r.status_code) {
            Answer::Accepted => tracing::debug!(
                user_id = r.user_id,
                subscribe = r.subscribe,
                "video subscription accepted"
            ),
            Answer::Refused { code } => tracing::warn!(
                user_id = r.user_id,
                subscribe = r.subscribe,
                status = code,
                name = status::name(code),
                reason = r.reason.as_deref().unwrap_or(""),
                "Zoom refused a video subscription; not asked again until the participant's video turns on again"
            ),
        }
    }

    /// Sends msg 28 for each change while the signaling socket is open (without one, the
    /// next handshake asks again).
    async fn send_video(&mut self, changes: Vec<Change>) -> bool {
        if self.signaling.is_none() {
            return true;
        }
        for c in changes {
            tracing::info!(
                user_id = c.user_id,
                subscribe = c.subscribe,
                "video subscription"
            );
            if !self.send_signaling(link::video_subscription(c)).await {
                self.signaling = None;
                return false;
            }
        }
        true
    }
}
