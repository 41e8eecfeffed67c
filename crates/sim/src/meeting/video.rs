//! Individual video (msg 28 VIDEO_SUBSCRIPTION_REQ → msg 29 VIDEO_SUBSCRIPTION_RESP).
//!
//! A subscription needs a video socket that asked for `data_opt` 4
//! (VIDEO_SINGLE_INDIVIDUAL_STREAM), else it is refused with 29
//! (INVALID_MEDIA_VIDEO_DATA_OPT); it must name a participant of the meeting, else 4
//! (INVALID_PAYLOAD). Past [`crate::SimConfig::individual_video_limit`] it is refused with
//! 25 (INVALID_MEDIA_VIDEO_PARAMS), except with a limit of 1, where the newest replaces the
//! previous as on a V1 server. While subscribed, each participant whose video is on gets
//! their own video frames, tagged with their user id and name; subscriptions end with the
//! signaling connection that made them (a new handshake starts with none).

use rtms_proto::codes::{media_type, msg_type, status};
use rtms_proto::msg::VideoSubscriptionReq;
use rtms_proto::params::data_opt;
use serde_json::json;

use super::{Meeting, Note, State};
use crate::ledger::VideoSubscription;

impl Meeting {
    /// Answers a msg 28 on the signaling socket.
    pub(crate) fn video_subscription(&self, bytes: &[u8]) {
        let (user_id, subscribe, code) = match serde_json::from_slice::<VideoSubscriptionReq>(bytes)
        {
            Ok(req) => {
                let mut st = self.state();
                let code = self.decide(&mut st, req.user_id, req.subscribe);
                (req.user_id, req.subscribe, code)
            }
            Err(_) => (0, false, status::INVALID_PAYLOAD),
        };
        self.ledger_mut()
            .video_subscriptions
            .push(VideoSubscription {
                user_id,
                subscribe,
                status: code,
            });
        let reason = if code == status::OK {
            ""
        } else {
            status::name(code)
        };
        let st = self.state();
        self.send_signaling(
            &st,
            json!({"msg_type": msg_type::VIDEO_SUBSCRIPTION_RESP, "rtms_stream_id": self.stream_id,
                "status_code": code, "user_id": user_id, "subscribe": subscribe,
                "reason": reason, "timestamp": rtms_proto::unix_ms()}),
            Note::None,
        );
    }

    fn decide(&self, st: &mut State, user_id: i64, subscribe: bool) -> u32 {
        if !subscribe {
            st.individual.retain(|u| *u != user_id);
            return status::OK;
        }
        let individual_socket = st.media.iter().any(|c| {
            c.bits & media_type::VIDEO != 0
                && c.params.video.as_ref().and_then(|v| v.data_opt)
                    == Some(data_opt::VIDEO_SINGLE_INDIVIDUAL_STREAM)
        });
        if !individual_socket {
            return status::INVALID_MEDIA_VIDEO_DATA_OPT;
        }
        if !self
            .script
            .participants
            .iter()
            .any(|p| p.user_id == user_id)
        {
            return status::INVALID_PAYLOAD;
        }
        if st.individual.contains(&user_id) {
            return status::OK;
        }
        let limit = self.sim.config.individual_video_limit.max(1);
        if limit == 1 {
            st.individual.clear();
        } else if st.individual.len() >= limit {
            return status::INVALID_MEDIA_VIDEO_PARAMS;
        }
        st.individual.push(user_id);
        status::OK
    }

    /// The participants to send individual video frames for now: subscribed, video on, and
    /// only when the video socket asked for individual streams (`None` otherwise).
    pub(crate) fn individual_video(&self) -> Option<Vec<i64>> {
        let st = self.state();
        let individual = st.media.iter().any(|c| {
            c.bits & media_type::VIDEO != 0
                && c.params.video.as_ref().and_then(|v| v.data_opt)
                    == Some(data_opt::VIDEO_SINGLE_INDIVIDUAL_STREAM)
        });
        individual.then(|| {
            st.individual
                .iter()
                .copied()
                .filter(|u| st.video_on.contains(u))
                .collect()
        })
    }
}
