//! Transition tests of the pure state machine.

use super::*;

fn cfg() -> Resilience {
    Resilience::default()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Runs the machine up to Streaming at `t0`.
fn streaming(t0: Instant) -> Machine {
    let mut m = Machine::new(cfg(), "wss://a/sig".into());
    assert!(m.handle(Input::Connected, t0, 0.5));
    assert_eq!(m.state(), State::Streaming { since: t0 });
    m
}

/// Lets the backoff run out and returns the next state.
fn elapse(m: &mut Machine) -> State {
    match m.state() {
        State::Backoff { until, .. } | State::AwaitingWebhook { until } => {
            m.handle(Input::TimerElapsed, until, 0.5);
        }
        other => panic!("no timer in {other:?}"),
    }
    m.state()
}

#[test]
fn first_connection_retries_at_a_constant_delay_then_awaits_a_webhook_then_gives_up() {
    let t0 = Instant::now();
    let mut m = Machine::new(cfg(), "wss://a/sig".into());
    for attempt in 2..=5 {
        m.handle(Input::ConnectFailed { duplicate: false }, t0, 0.9);
        let State::Backoff { delay, reopen, .. } = m.state() else {
            panic!("{:?}", m.state())
        };
        assert_eq!((delay, reopen), (secs(5), Reopen::Full));
        assert_eq!(elapse(&mut m), State::Connecting { attempt });
    }
    m.handle(Input::ConnectFailed { duplicate: false }, t0, 0.9);
    assert_eq!(
        m.state(),
        State::AwaitingWebhook {
            until: t0 + secs(300)
        }
    );
    // The timer has not run out yet: nothing changes.
    assert!(!m.handle(Input::TimerElapsed, t0 + secs(299), 0.5));
    assert_eq!(elapse(&mut m), State::Ended(EndReason::ConnectionLost));
}

#[test]
fn reconnection_delays_double_from_the_base_with_bounded_jitter_and_three_attempts() {
    let t0 = Instant::now();
    for unit in [0.0, 0.5, 0.999] {
        let mut m = streaming(t0);
        m.handle(Input::SignalingLost, t0 + secs(1), unit);
        let mut delays = Vec::new();
        for attempt in 1..=3 {
            let State::Backoff { delay, reopen, .. } = m.state() else {
                panic!("{:?}", m.state())
            };
            assert_eq!(reopen, Reopen::Full);
            delays.push(delay);
            assert_eq!(elapse(&mut m), State::Connecting { attempt });
            m.handle(
                Input::ConnectFailed { duplicate: false },
                t0 + secs(2),
                unit,
            );
        }
        for (n, d) in delays.iter().enumerate() {
            let floor = secs(2) * (1 << n);
            assert!(
                *d >= floor && *d <= floor.mul_f64(1.2),
                "attempt {n}: {d:?} outside [{floor:?}, {:?}]",
                floor.mul_f64(1.2)
            );
        }
        assert!(matches!(m.state(), State::AwaitingWebhook { .. }));
    }
}

#[test]
fn a_new_started_webhook_while_awaiting_restarts_with_a_fresh_budget() {
    let t0 = Instant::now();
    let mut m = Machine::new(cfg(), "wss://a/sig".into());
    for _ in 0..5 {
        m.handle(Input::ConnectFailed { duplicate: false }, t0, 0.5);
        if let State::Backoff { .. } = m.state() {
            elapse(&mut m);
        }
    }
    assert!(matches!(m.state(), State::AwaitingWebhook { .. }));
    // Even the same URL restarts: nothing is live to duplicate.
    m.handle(
        Input::Started {
            url: "wss://a/sig".into(),
        },
        t0,
        0.5,
    );
    assert_eq!(m.state(), State::Connecting { attempt: 1 });
}

#[test]
fn each_outage_gets_the_whole_budget_once_the_stream_was_healthy_again() {
    let t0 = Instant::now();
    let mut m = streaming(t0);
    let mut now = t0;
    // Five outages, each needing two attempts: 10 attempts in a minute, on a budget of 3.
    for outage in 0..5 {
        now += secs(5);
        m.handle(Input::SignalingLost, now, 0.5);
        let State::Backoff { delay, .. } = m.state() else {
            panic!("outage {outage}: {:?}", m.state())
        };
        assert!(
            delay < secs(3),
            "outage {outage} starts from the base: {delay:?}"
        );
        assert_eq!(elapse(&mut m), State::Connecting { attempt: 1 });
        m.handle(
            Input::ConnectFailed { duplicate: false },
            now + secs(3),
            0.5,
        );
        assert_eq!(elapse(&mut m), State::Connecting { attempt: 2 });
        now += secs(7);
        m.handle(Input::Connected, now, 0.5);
        assert_eq!(m.state(), State::Streaming { since: now });
    }
}

#[test]
fn losses_closer_than_the_healthy_time_share_one_budget() {
    let t0 = Instant::now();
    let mut m = streaming(t0);
    let mut now = t0 + secs(10);
    // Lose and regain twice in quick succession: two attempts of one outage.
    for attempt in 1..=2 {
        m.handle(Input::SignalingLost, now, 0.0);
        assert_eq!(elapse(&mut m), State::Connecting { attempt });
        now += secs(1);
        m.handle(Input::Connected, now, 0.0);
        now += secs(1);
    }
    m.handle(Input::SignalingLost, now, 0.0);
    let State::Backoff { delay, .. } = m.state() else {
        panic!()
    };
    assert_eq!(delay, secs(8), "third attempt of the same outage");
    elapse(&mut m);
    m.handle(Input::ConnectFailed { duplicate: false }, now, 0.0);
    assert!(matches!(m.state(), State::AwaitingWebhook { .. }));
}

#[test]
fn scenario_1_started_with_a_new_url_restarts_and_the_same_url_is_a_duplicate() {
    let t0 = Instant::now();
    let mut m = streaming(t0);
    assert!(!m.handle(
        Input::Started {
            url: "wss://a/sig".into()
        },
        t0,
        0.5
    ));
    assert_eq!(m.state(), State::Streaming { since: t0 });
    assert!(m.handle(
        Input::Started {
            url: "wss://b/sig".into()
        },
        t0,
        0.5
    ));
    assert_eq!(m.state(), State::Connecting { attempt: 1 });
    assert_eq!(m.url(), "wss://b/sig");
    assert_eq!(m.state().keeps(), (false, false));
}

#[test]
fn scenario_2_interrupted_reconnects_both_sockets() {
    let t0 = Instant::now();
    let mut m = streaming(t0);
    m.handle(Input::Interrupted { url: None }, t0, 0.5);
    let State::Backoff { reopen, .. } = m.state() else {
        panic!()
    };
    assert_eq!(reopen, Reopen::Full);
    assert_eq!(m.state().keeps(), (false, false));
    // An interrupted webhook with a new URL is a failover.
    let mut m = streaming(t0);
    m.handle(
        Input::Interrupted {
            url: Some("wss://c/sig".into()),
        },
        t0,
        0.5,
    );
    assert_eq!(
        (m.state(), m.url()),
        (State::Connecting { attempt: 1 }, "wss://c/sig")
    );
}

#[test]
fn scenario_3_media_interruption_keeps_signaling() {
    let t0 = Instant::now();
    let mut m = streaming(t0);
    m.handle(Input::MediaInterrupted, t0, 0.5);
    let State::Backoff { reopen, .. } = m.state() else {
        panic!()
    };
    assert_eq!(reopen, Reopen::Media);
    assert_eq!(m.state().keeps(), (true, true));
    assert_eq!(elapse(&mut m), State::ConnectingMedia { attempt: 1 });
    assert_eq!(m.state().keeps(), (true, false));
    m.handle(Input::MediaConnected, t0 + secs(1), 0.5);
    assert_eq!(
        m.state(),
        State::Streaming {
            since: t0 + secs(1)
        }
    );
    // Signaling dying during a media-only reconnection turns it into a full one.
    m.handle(Input::MediaLost, t0 + secs(2), 0.5);
    m.handle(Input::SignalingLost, t0 + secs(2), 0.5);
    let State::Backoff { reopen, .. } = m.state() else {
        panic!()
    };
    assert_eq!(reopen, Reopen::Full);
}

#[test]
fn scenario_4_stop_ends_for_good_and_nothing_reopens() {
    let t0 = Instant::now();
    let mut m = streaming(t0);
    m.handle(Input::Stopped(6), t0, 0.5);
    assert_eq!(m.state(), State::Ended(EndReason::Stopped(6)));
    for input in [
        Input::SignalingLost,
        Input::Interrupted { url: None },
        Input::Started {
            url: "wss://z/sig".into(),
        },
        Input::Connected,
        Input::TimerElapsed,
        Input::Shutdown,
    ] {
        assert!(!m.handle(input, t0, 0.5));
    }
    assert_eq!(m.state(), State::Ended(EndReason::Stopped(6)));
}

#[test]
fn duplicate_refusals_are_retried_on_their_own_budget() {
    let t0 = Instant::now();
    let mut m = Machine::new(cfg(), "wss://a/sig".into());
    for _ in 0..3 {
        m.handle(Input::ConnectFailed { duplicate: true }, t0, 0.0);
        let State::Backoff { delay, .. } = m.state() else {
            panic!()
        };
        assert!(
            delay >= secs(1),
            "duplicates wait at least half the bound: {delay:?}"
        );
        assert_eq!(elapse(&mut m), State::Connecting { attempt: 1 });
    }
    // The fourth duplicate spends a regular attempt.
    m.handle(Input::ConnectFailed { duplicate: true }, t0, 0.0);
    assert_eq!(elapse(&mut m), State::Connecting { attempt: 2 });
}

#[test]
fn shutdown_ends_any_state() {
    let t0 = Instant::now();
    let mut m = Machine::new(cfg(), "wss://a/sig".into());
    m.handle(Input::ConnectFailed { duplicate: false }, t0, 0.5);
    m.handle(Input::Shutdown, t0, 0.5);
    assert_eq!(m.state(), State::Ended(EndReason::Shutdown));
}
