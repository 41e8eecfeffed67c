//! `[rtms.video]` mode and, in individual mode, whom to follow.

use super::*;

/// Zoom's limit on individual video subscriptions per stream.
const MAX_FOLLOWED: u64 = 4;

impl Resolver<'_> {
    /// Sets the video `data_opt` from `mode` and returns the individual-video policy, after
    /// checking that `follow`, `users` and `max` are used only where they mean something.
    pub(super) fn video_mode(
        &self,
        r: &RtmsConfig,
        media: MediaKinds,
        params: &mut MediaParams,
    ) -> Result<Option<VideoFollowing>, ConfigError> {
        if let Some(d) = r.deskshare.as_ref().map(|d| d.get_ref()) {
            self.video_only_keys(d, "deskshare")?;
        }
        let empty = VideoConfig::default();
        let v = r.video.as_ref().map_or(&empty, |v| v.get_ref());
        let mode = v
            .mode
            .as_ref()
            .map_or(VideoModeName::ActiveSpeaker, |m| *m.get_ref());
        if let Some(p) = params
            .video
            .as_mut()
            .filter(|_| media.contains(MediaKind::Video))
        {
            p.data_opt = Some(match mode {
                VideoModeName::ActiveSpeaker => data_opt::VIDEO_SINGLE_ACTIVE_STREAM,
                VideoModeName::Gallery => data_opt::VIDEO_MIXED_GALLERY_VIEW,
                VideoModeName::Individual => data_opt::VIDEO_SINGLE_INDIVIDUAL_STREAM,
            });
        }
        if mode != VideoModeName::Individual {
            let stray = [
                v.follow.as_ref().map(|f| ("follow", f.span())),
                v.users.as_ref().map(|u| ("users", u.span())),
                v.max.as_ref().map(|m| ("max", m.span())),
            ];
            if let Some((key, span)) = stray.into_iter().flatten().next() {
                return Err(self.src.invalid(
                    span,
                    format!(
                        "rtms.video.{key} applies only to individual video: add mode = \"individual\" to [rtms.video], or remove {key}"
                    ),
                ));
            }
            return Ok(None);
        }
        let max = self.num(&v.max, "rtms.video.max", 1, 1, MAX_FOLLOWED)?;
        let follow = match (v.follow.as_ref().map(|f| *f.get_ref()), &v.users) {
            (Some(FollowName::Users), Some(u)) if u.get_ref().is_empty() => {
                return Err(self.src.invalid(
                    u.span(),
                    "rtms.video.users is empty: name at least one user id or display name"
                        .to_owned(),
                ));
            }
            (Some(FollowName::Users), Some(u)) => Following::Users(u.get_ref().clone()),
            (Some(FollowName::Users), None) => {
                let span = v.follow.as_ref().map_or(0..0, |f| f.span());
                return Err(self.src.invalid(
                    span,
                    "rtms.video.follow = \"users\" needs rtms.video.users = [\"<user id or display name>\", ...]".to_owned(),
                ));
            }
            (_, Some(u)) => {
                return Err(self.src.invalid(
                    u.span(),
                    "rtms.video.users applies only with follow = \"users\": add it, or remove users".to_owned(),
                ));
            }
            (None | Some(FollowName::ActiveSpeaker), None) => Following::ActiveSpeaker,
            (Some(FollowName::Sharer), None) => Following::Sharer,
            (Some(FollowName::FirstWithVideo), None) => Following::FirstWithVideo,
        };
        Ok(Some(VideoFollowing {
            follow,
            max: max.n as usize,
        }))
    }

    /// `mode`, `follow`, `users` and `max` belong to `[rtms.video]` alone.
    fn video_only_keys(&self, v: &VideoConfig, section: &str) -> Result<(), ConfigError> {
        let stray = [
            v.mode.as_ref().map(|f| ("mode", f.span())),
            v.follow.as_ref().map(|f| ("follow", f.span())),
            v.users.as_ref().map(|u| ("users", u.span())),
            v.max.as_ref().map(|m| ("max", m.span())),
        ];
        match stray.into_iter().flatten().next() {
            Some((key, span)) => Err(self.src.invalid(
                span,
                format!("rtms.{section}.{key} is a key of [rtms.video] only: move it there, or remove it"),
            )),
            None => Ok(()),
        }
    }
}
