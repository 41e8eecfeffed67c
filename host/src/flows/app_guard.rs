//! What the Zoom App's server-side routes check after a context verifies: that it is fresh
//! (`exp` required and honoured, `ts` within [`MAX_AGE`] with [`SKEW`] allowed either way), that
//! it has not been replayed more than [`MAX_USES`] times, that its meeting has not asked for more
//! than [`MEETING_BURST`] actions in [`MEETING_WINDOW`], and that only the meeting's host or a
//! co-host stops, pauses or resumes. Every map here is bounded ([`MAX_TRACKED`]); when one is
//! full of live entries new requests are refused rather than the map grown.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::zoom_rest::Action;

/// Oldest `ts` accepted (ms).
pub const MAX_AGE: u64 = 5 * 60_000;
/// Clock difference allowed between Zoom and the host (ms).
pub const SKEW: u64 = 30_000;
/// Actions one sealed context may carry.
pub const MAX_USES: u32 = 3;
/// Actions per meeting per window.
pub const MEETING_BURST: u32 = 10;
/// The per-meeting window (ms).
pub const MEETING_WINDOW: u64 = 60_000;
/// Contexts and meetings remembered, each.
pub const MAX_TRACKED: usize = 10_000;

/// What the Zoom client says about the user who opened the app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppContext {
    /// `meeting`, `panel`, ...
    pub typ: String,
    /// The user.
    pub uid: String,
    /// The meeting uuid, when opened in a meeting.
    #[serde(default)]
    pub mid: Option<String>,
    /// When the context was made (ms).
    #[serde(default)]
    pub ts: Option<u64>,
    /// When it expires (ms); required by the server-side routes.
    #[serde(default)]
    pub exp: Option<u64>,
    /// The user's role in the meeting (`host`, `cohost`, `attendee`, ...); only a host or
    /// co-host may stop, pause or resume the stream.
    #[serde(default, alias = "role", skip_serializing_if = "Option::is_none")]
    pub attendrole: Option<String>,
}

/// Why a request was refused: the status and the reason the caller reads.
pub type Refusal = (u16, String);

#[derive(Default)]
pub struct Guard {
    /// Context digest -> (uses, forget after).
    seen: Mutex<HashMap<[u8; 32], (u32, u64)>>,
    /// Meeting -> (window start, actions in it).
    meetings: Mutex<HashMap<String, (u64, u32)>>,
}

/// Whether the context's user may take `action` on its meeting.
fn may(ctx: &AppContext, action: Action) -> bool {
    matches!(action, Action::Start)
        || matches!(
            ctx.attendrole
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("host" | "cohost" | "co-host")
        )
}

impl Guard {
    /// Checks a verified context sealed as `header` for `action` at `now` (ms).
    pub fn check(
        &self,
        header: &str,
        ctx: &AppContext,
        meeting: &str,
        action: Action,
        now: u64,
    ) -> Result<(), Refusal> {
        let Some(exp) = ctx.exp else {
            return Err((
                401,
                "the app context carries no exp: call zoomSdk.getAppContext() from the Zoom client"
                    .into(),
            ));
        };
        if exp.saturating_add(SKEW) < now {
            return Err((
                401,
                "the app context has expired: call zoomSdk.getAppContext() again".into(),
            ));
        }
        let Some(ts) = ctx.ts else {
            return Err((
                401,
                "the app context carries no ts: call zoomSdk.getAppContext() from the Zoom client"
                    .into(),
            ));
        };
        let age = if ts > now {
            format!("dated {} s in the future", (ts - now) / 1000)
        } else {
            format!("{} s old", (now - ts) / 1000)
        };
        if ts > now.saturating_add(SKEW) || now.saturating_sub(ts) > MAX_AGE + SKEW {
            let max = MAX_AGE / 1000;
            return Err((
                401,
                format!(
                    "the app context is {age}; at most {max} s old is accepted: call zoomSdk.getAppContext() again"
                ),
            ));
        }
        if !may(ctx, action) {
            return Err((
                403,
                format!(
                    "only the meeting's host or a co-host may {} the stream (this user's role: {})",
                    action.as_str(),
                    ctx.attendrole.as_deref().unwrap_or("none")
                ),
            ));
        }
        self.use_context(header, now)?;
        self.meeting_rate(meeting, now)
    }

    fn use_context(&self, header: &str, now: u64) -> Result<(), Refusal> {
        let digest: [u8; 32] = Sha256::digest(header.trim().as_bytes()).into();
        let mut seen = self.seen.lock();
        if seen.len() >= MAX_TRACKED && !seen.contains_key(&digest) {
            seen.retain(|_, (_, until)| *until >= now);
            if seen.len() >= MAX_TRACKED {
                return Err((
                    429,
                    "too many app requests in the last minutes: try again later".into(),
                ));
            }
        }
        let e = seen
            .entry(digest)
            .or_insert((0, now.saturating_add(MAX_AGE + 2 * SKEW)));
        if e.0 >= MAX_USES {
            return Err((
                409,
                format!(
                    "this app context was already used {MAX_USES} times (a replay?): call zoomSdk.getAppContext() for each action"
                ),
            ));
        }
        e.0 += 1;
        Ok(())
    }

    fn meeting_rate(&self, meeting: &str, now: u64) -> Result<(), Refusal> {
        let mut m = self.meetings.lock();
        if m.len() >= MAX_TRACKED && !m.contains_key(meeting) {
            m.retain(|_, (start, _)| now.saturating_sub(*start) < MEETING_WINDOW);
            if m.len() >= MAX_TRACKED {
                return Err((
                    429,
                    "too many meetings asking at once: try again later".into(),
                ));
            }
        }
        let e = m.entry(meeting.to_owned()).or_insert((now, 0));
        if now.saturating_sub(e.0) >= MEETING_WINDOW {
            *e = (now, 0);
        }
        if e.1 >= MEETING_BURST {
            return Err((
                429,
                format!(
                    "this meeting asked for {MEETING_BURST} stream changes in the last minute: wait and try again"
                ),
            ));
        }
        e.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn ctx(role: &str) -> AppContext {
        AppContext {
            typ: "meeting".into(),
            uid: "u".into(),
            mid: Some("m".into()),
            ts: Some(NOW - 1000),
            exp: Some(NOW + 60_000),
            attendrole: Some(role.into()),
        }
    }

    #[test]
    fn stale_or_undated_contexts_are_refused() {
        let g = Guard::default();
        let mut c = ctx("host");
        c.exp = None;
        assert!(
            g.check("a", &c, "m", Action::Start, NOW)
                .unwrap_err()
                .1
                .contains("no exp")
        );
        let mut c = ctx("host");
        c.exp = Some(NOW - SKEW - 1);
        assert!(
            g.check("b", &c, "m", Action::Start, NOW)
                .unwrap_err()
                .1
                .contains("expired")
        );
        let mut c = ctx("host");
        c.ts = Some(NOW - 365 * 24 * 3600 * 1000);
        assert!(
            g.check("c", &c, "m", Action::Start, NOW)
                .unwrap_err()
                .1
                .contains("at most 300 s old")
        );
        let mut c = ctx("host");
        c.ts = None;
        assert!(
            g.check("d", &c, "m", Action::Start, NOW)
                .unwrap_err()
                .1
                .contains("no ts")
        );
        assert!(g.check("e", &ctx("host"), "m", Action::Start, NOW).is_ok());
    }

    #[test]
    fn replays_are_refused_after_the_allowed_uses() {
        let g = Guard::default();
        let c = ctx("host");
        let mut ok = 0;
        let mut last = None;
        for _ in 0..200 {
            match g.check("same", &c, "m", Action::Start, NOW) {
                Ok(()) => ok += 1,
                Err(e) => last = Some(e),
            }
        }
        assert_eq!(ok, MAX_USES);
        let (status, why) = last.unwrap();
        assert_eq!(status, 409);
        assert!(why.contains("already used"), "{why}");
    }

    #[test]
    fn a_meeting_is_rate_limited_across_contexts() {
        let g = Guard::default();
        let c = ctx("host");
        for i in 0..MEETING_BURST {
            g.check(&format!("ctx{i}"), &c, "m", Action::Start, NOW)
                .unwrap();
        }
        let (status, _) = g.check("another", &c, "m", Action::Start, NOW).unwrap_err();
        assert_eq!(status, 429);
        // Another meeting is not affected, and the window passes.
        assert!(g.check("x", &c, "m2", Action::Start, NOW).is_ok());
        assert!(
            g.check("y", &c, "m", Action::Start, NOW + MEETING_WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn only_the_host_or_a_cohost_stops_pauses_or_resumes() {
        let g = Guard::default();
        for action in [Action::Stop, Action::Pause, Action::Resume] {
            let (status, why) = g
                .check(&format!("p{action:?}"), &ctx("attendee"), "m", action, NOW)
                .unwrap_err();
            assert_eq!(status, 403);
            assert!(why.contains("host or a co-host"), "{why}");
            assert!(
                g.check(&format!("h{action:?}"), &ctx("host"), "m", action, NOW)
                    .is_ok()
            );
            assert!(
                g.check(&format!("c{action:?}"), &ctx("cohost"), "m", action, NOW)
                    .is_ok()
            );
        }
        let mut c = ctx("attendee");
        c.attendrole = None;
        assert_eq!(g.check("n", &c, "m", Action::Stop, NOW).unwrap_err().0, 403);
    }
}
