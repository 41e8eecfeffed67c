//! The per-stream state machine, pure: no sockets, no clock reads, no randomness of its own.
//! [`crate::session`] drives it with I/O; tests drive it with inputs.
//!
//! ```text
//!                 Connected                    socket lost / media interrupted (sc. 3)
//!  Connecting ───────────────▶ Streaming ─────────────────────────────▶ Backoff{Full|Media}
//!   ▲   │ failed                  ▲  ▲                                     │   │ timer
//!   │   ▼                         │  │ MediaConnected                      │   ▼
//!   │  Backoff{Full} ◀── failed ──┼──┴──────────── ConnectingMedia ◀───────┘ (Media)
//!   │   │ timer                   │
//!   └───┘                         │ out of attempts (any Connecting*), or flap limit
//!                      AwaitingWebhook ──timer──▶ Ended(ConnectionLost)
//! ```
//!
//! - Retries: the first connection (and the one after a failover) makes up to
//!   `connection_max_attempts` attempts `connection_retry_delay` apart; after the stream was
//!   up, `reconnect_max_attempts` attempts per outage with exponential delays and bounded
//!   jitter ([`crate::backoff`]).
//! - A reconnection succeeds once its handshakes are done and a frame came
//!   ([`Input::Flowing`]), or once it stayed up for `reconnect_healthy_after` (an idle
//!   stream): the outage is over, the budget is whole again and the next loss starts from the
//!   base delay. A reconnection lost before that was a failed attempt of the same outage, so
//!   a server that accepts and then drops every connection is given up on after
//!   `reconnect_max_attempts` attempts ([`GiveUp::Reconnect`]). A loss of a stream whose
//!   frames flowed always gets at least one attempt.
//! - Flapping is bounded on its own: a loss after `reconnect_flap_max` successful
//!   reconnections within `reconnect_flap_window` gives up ([`GiveUp::Flapping`]).
//! - Duplicate-connection refusals are retried `duplicate_max_retries` times on their own
//!   budget first.
//! - Giving up ([`Machine::gave_up`] says why): [`State::AwaitingWebhook`] for
//!   `webhook_wait_timeout`, then [`State::Ended`] with [`EndReason::ConnectionLost`].
//! - Zoom's failover scenarios (rtms-protocol.md §6.1), from any live state:
//!   1. `Started` with a new URL: restart everything on it with a fresh first-connection
//!      budget (same URL while live: a duplicate webhook, ignored; while awaiting a webhook:
//!      restart).
//!   2. `Interrupted`: reconnect both sockets with a fresh reconnection budget.
//!   3. `MediaInterrupted` (event 7, or msg 8 state 2 reason 14): reconnect media only.
//!   4. `Stopped`: end for good, never reconnect.
//! - `Shutdown` ends the stream from any state. [`State::Ended`] absorbs every input.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::{RetryKind, retry_delay};
use crate::config::Resilience;
use crate::sink::{EndReason, GiveUp};

/// What the next connection attempt reopens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reopen {
    /// Signaling and media.
    Full,
    /// Media only; signaling stays up.
    Media,
}

/// Where a stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Opening signaling, then media, with their handshakes (attempt counts from 1 within
    /// the current budget).
    Connecting { attempt: u32 },
    /// Reopening media sockets while signaling stays up.
    ConnectingMedia { attempt: u32 },
    /// Every socket is up; frames flow.
    Streaming { since: Instant },
    /// Waiting until `until` before reopening.
    Backoff {
        until: Instant,
        delay: Duration,
        reopen: Reopen,
    },
    /// Gave up reconnecting ([`Machine::gave_up`] says why); waiting for a new
    /// `*_rtms_started` until `until`.
    AwaitingWebhook { until: Instant },
    /// Final.
    Ended(EndReason),
}

impl State {
    /// Which sockets the driver keeps open in this state: `(signaling, media)`. While a
    /// media-only reconnection waits, the media sockets still alive stay open (in split
    /// mode they carry other kinds, and what they hold is delivered); they are replaced
    /// when the attempt starts.
    pub fn keeps(&self) -> (bool, bool) {
        match self {
            State::Streaming { .. }
            | State::Backoff {
                reopen: Reopen::Media,
                ..
            } => (true, true),
            State::ConnectingMedia { .. } => (true, false),
            _ => (false, false),
        }
    }

    /// Whether the state opens sockets (a connection attempt starts in it).
    pub fn connects(&self) -> bool {
        matches!(
            self,
            State::Connecting { .. } | State::ConnectingMedia { .. }
        )
    }

    /// A short name for logs and snapshots.
    pub fn name(&self) -> &'static str {
        match self {
            State::Connecting { .. } => "connecting",
            State::ConnectingMedia { .. } => "connecting-media",
            State::Streaming { .. } => "streaming",
            State::Backoff { .. } => "backoff",
            State::AwaitingWebhook { .. } => "awaiting-webhook",
            State::Ended(_) => "ended",
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Signaling and media handshakes succeeded.
    Connected,
    /// The media handshakes succeeded (media-only reconnection).
    MediaConnected,
    /// The first frame since the last `Connected` / `MediaConnected` arrived: the
    /// connection serves the stream. The driver sends it once per connection.
    Flowing,
    /// A connection attempt failed; `duplicate` when the server refused it as a duplicate.
    ConnectFailed { duplicate: bool },
    /// The signaling socket died (closed, errored or silent too long).
    SignalingLost,
    /// A media socket died.
    MediaLost,
    /// Zoom reported the media connection interrupted (scenario 3).
    MediaInterrupted,
    /// A `*_rtms_started` webhook for this stream (scenario 1 when the URL is new).
    Started { url: String },
    /// A `*_rtms_interrupted` webhook (scenario 2), with a URL when it carried one.
    Interrupted { url: Option<String> },
    /// Zoom ended the stream (scenario 4) with a STOP_REASON.
    Stopped(u32),
    /// The host is shutting down.
    Shutdown,
    /// An operator asks for the stream to end at Zoom too: the driver sends STREAM_CLOSE_REQ
    /// and ends the stream on the answer; the machine itself does not move.
    Close,
    /// End the stream here only: it goes on at another host.
    HandOff,
    /// End the stream here only, at once: this host lost its lease.
    Fenced,
    /// The backoff or webhook-wait deadline passed.
    TimerElapsed,
    /// Pin, drop or release a participant's individual video. The session acts on it; the
    /// connection state does not change.
    Video(crate::video::Command),
}

/// Which retry budget is being spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Budget {
    Initial,
    Reconnect,
}

/// The state plus the counters the transitions need.
#[derive(Clone, Debug)]
pub struct Machine {
    cfg: Resilience,
    state: State,
    url: String,
    budget: Budget,
    /// Attempts started within the current budget.
    attempts: u32,
    /// Duplicate refusals retried since the last success.
    duplicates: u32,
    ever_connected: bool,
    /// The connection now streaming is a reconnection not yet confirmed by a frame or by
    /// `reconnect_healthy_after` of streaming: losing it fails an attempt of the outage.
    unconfirmed: bool,
    /// When each confirmed reconnection within `reconnect_flap_window` came up, oldest
    /// first (at most `reconnect_flap_max` are kept).
    reconnections: VecDeque<Instant>,
    /// Why the machine gave up, while awaiting a webhook and once ended by it.
    gave_up: Option<GiveUp>,
    /// Failover restarts so far (a restart from Connecting leaves the state equal).
    restarts: u32,
}

impl Machine {
    /// A machine about to make its first connection attempt to `url`.
    pub fn new(cfg: Resilience, url: String) -> Self {
        Self {
            cfg,
            state: State::Connecting { attempt: 1 },
            url,
            budget: Budget::Initial,
            attempts: 1,
            duplicates: 0,
            ever_connected: false,
            unconfirmed: false,
            reconnections: VecDeque::new(),
            gave_up: None,
            restarts: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The signaling URL in use.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Attempts started within the current retry budget.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Why the machine stopped reconnecting, once it did.
    pub fn gave_up(&self) -> Option<GiveUp> {
        self.gave_up
    }

    /// True once the stream was up at least once.
    pub fn ever_connected(&self) -> bool {
        self.ever_connected
    }

    /// Applies an input at `now`; `unit` is a random number in `[0, 1)` for jitter.
    /// Returns true when the state (or the URL) changed: the driver then drops any pending
    /// attempt and reconciles its sockets.
    pub fn handle(&mut self, input: Input, now: Instant, unit: f64) -> bool {
        let before = self.state;
        let restarts = self.restarts;
        if let State::Ended(_) = self.state {
            return false;
        }
        match input {
            Input::Shutdown => self.state = State::Ended(EndReason::Shutdown),
            Input::Close => {}
            Input::HandOff => self.state = State::Ended(EndReason::HandedOff),
            Input::Fenced => self.state = State::Ended(EndReason::Fenced),
            Input::Stopped(reason) => self.state = State::Ended(EndReason::Stopped(reason)),
            Input::Started { url } => self.on_started(url),
            Input::Interrupted { url } => self.on_interrupted(url, now, unit),
            Input::Connected => self.on_connected(now),
            Input::MediaConnected => self.on_media_connected(now),
            Input::Flowing => self.on_flowing(),
            Input::ConnectFailed { duplicate } => self.on_connect_failed(duplicate, now, unit),
            Input::SignalingLost => self.on_signaling_lost(now, unit),
            Input::MediaLost | Input::MediaInterrupted => self.on_media_lost(now, unit),
            Input::TimerElapsed => self.on_timer(now),
            Input::Video(_) => {}
        }
        self.state != before || self.restarts != restarts
    }

    fn on_connected(&mut self, now: Instant) {
        if let State::Connecting { .. } = self.state {
            if self.budget == Budget::Initial || !self.ever_connected {
                self.budget = Budget::Reconnect;
                self.attempts = 0;
                self.unconfirmed = false;
            } else {
                self.unconfirmed = true;
            }
            self.ever_connected = true;
            self.duplicates = 0;
            self.state = State::Streaming { since: now };
        }
    }

    fn on_media_connected(&mut self, now: Instant) {
        if let State::ConnectingMedia { .. } = self.state {
            self.duplicates = 0;
            self.unconfirmed = true;
            self.state = State::Streaming { since: now };
        }
    }

    fn on_flowing(&mut self) {
        if let State::Streaming { since } = self.state {
            self.confirm(since);
        }
    }

    /// An attempt failed: a duplicate refusal is retried on its own budget, anything else
    /// on the attempt budget.
    fn on_connect_failed(&mut self, duplicate: bool, now: Instant, unit: f64) {
        let reopen = match self.state {
            State::Connecting { .. } => Reopen::Full,
            State::ConnectingMedia { .. } => Reopen::Media,
            _ => return,
        };
        if duplicate && self.duplicates < self.cfg.duplicate_max_retries {
            let delay = retry_delay(&self.cfg, RetryKind::Duplicate, self.duplicates, unit);
            self.duplicates += 1;
            self.state = State::Backoff {
                until: now + delay,
                delay,
                reopen,
            };
        } else {
            self.retry(reopen, now, unit);
        }
    }

    fn on_signaling_lost(&mut self, now: Instant, unit: f64) {
        match self.state {
            State::Streaming { since } => self.on_loss(since, Reopen::Full, now, unit),
            State::ConnectingMedia { .. } => self.retry(Reopen::Full, now, unit),
            State::Backoff { until, delay, .. } => {
                self.state = State::Backoff {
                    until,
                    delay,
                    reopen: Reopen::Full,
                }
            }
            _ => {}
        }
    }

    fn on_media_lost(&mut self, now: Instant, unit: f64) {
        if let State::Streaming { since } = self.state {
            self.on_loss(since, Reopen::Media, now, unit);
        }
    }

    /// A backoff or the wait for a webhook is over.
    fn on_timer(&mut self, now: Instant) {
        match self.state {
            State::Backoff { until, reopen, .. } if now >= until => {
                self.state = match reopen {
                    Reopen::Full => State::Connecting {
                        attempt: self.attempts,
                    },
                    Reopen::Media => State::ConnectingMedia {
                        attempt: self.attempts,
                    },
                }
            }
            State::AwaitingWebhook { until } if now >= until => {
                self.state = State::Ended(EndReason::ConnectionLost)
            }
            _ => {}
        }
    }

    fn on_started(&mut self, url: String) {
        let live = !matches!(self.state, State::AwaitingWebhook { .. });
        if live && url == self.url {
            return; // a retried webhook for the stream we are serving
        }
        self.url = url;
        self.restarts += 1;
        self.gave_up = None;
        self.unconfirmed = false;
        self.budget = Budget::Initial;
        self.attempts = 1;
        self.duplicates = 0;
        self.state = State::Connecting { attempt: 1 };
    }

    fn on_interrupted(&mut self, url: Option<String>, now: Instant, unit: f64) {
        if let Some(url) = url
            && url != self.url
        {
            return self.on_started(url);
        }
        match self.state {
            State::Connecting { .. } => {}
            State::Backoff { until, delay, .. } => {
                self.state = State::Backoff {
                    until,
                    delay,
                    reopen: Reopen::Full,
                }
            }
            _ => {
                self.budget = if self.ever_connected {
                    Budget::Reconnect
                } else {
                    Budget::Initial
                };
                self.attempts = 0;
                self.duplicates = 0;
                self.unconfirmed = false;
                self.gave_up = None;
                self.retry(Reopen::Full, now, unit);
            }
        }
    }

    /// The connection streaming since `since` serves the stream: a reconnection among them
    /// ends its outage (whole budget, base delay again) and counts towards the flap limit.
    fn confirm(&mut self, since: Instant) {
        if !self.unconfirmed {
            return;
        }
        self.unconfirmed = false;
        self.attempts = 0;
        self.reconnections.push_back(since);
        let keep = self.cfg.reconnect_flap_max.max(1) as usize;
        while self.reconnections.len() > keep {
            self.reconnections.pop_front();
        }
    }

    /// A socket of the connection streaming since `since` was lost.
    ///
    /// - A reconnection lost before it was confirmed failed: the outage goes on with the
    ///   next attempt of its budget (or gives up when it is spent).
    /// - Otherwise this loss starts an outage with the whole budget, so at least one attempt
    ///   is made, unless the stream already reconnected `reconnect_flap_max` times within
    ///   `reconnect_flap_window`: then it gives up for flapping.
    fn on_loss(&mut self, since: Instant, reopen: Reopen, now: Instant, unit: f64) {
        if now.saturating_duration_since(since) >= self.cfg.reconnect_healthy_after {
            self.confirm(since);
        }
        if !self.unconfirmed {
            let window = self.cfg.reconnect_flap_window;
            while self
                .reconnections
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= window)
            {
                self.reconnections.pop_front();
            }
            if self.reconnections.len() >= self.cfg.reconnect_flap_max as usize {
                return self.give_up(GiveUp::Flapping, now);
            }
        }
        self.retry(reopen, now, unit);
    }

    fn give_up(&mut self, why: GiveUp, now: Instant) {
        self.gave_up = Some(why);
        self.state = State::AwaitingWebhook {
            until: now + self.cfg.webhook_wait_timeout,
        };
    }

    /// Schedules the next attempt of the current budget, or gives up.
    fn retry(&mut self, reopen: Reopen, now: Instant, unit: f64) {
        // A budget of 0 still makes one attempt: a loss never gives up untried.
        let (max, kind, why) = match self.budget {
            Budget::Initial => (
                self.cfg.connection_max_attempts,
                RetryKind::Initial,
                GiveUp::Connect,
            ),
            Budget::Reconnect => (
                self.cfg.reconnect_max_attempts,
                RetryKind::Reconnect,
                GiveUp::Reconnect,
            ),
        };
        if self.attempts >= max.max(1) {
            return self.give_up(why, now);
        }
        let delay = retry_delay(&self.cfg, kind, self.attempts, unit);
        self.attempts += 1;
        self.state = State::Backoff {
            until: now + delay,
            delay,
            reopen,
        };
    }
}

#[cfg(test)]
mod tests;
