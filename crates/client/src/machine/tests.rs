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

/// The backoff's delay, or a panic naming the state.
fn delay_of(m: &Machine) -> Duration {
    match m.state() {
        State::Backoff { delay, .. } => delay,
        other => panic!("expected a backoff, got {other:?}"),
    }
}

#[test]
fn a_reconnection_whose_frames_flow_restores_the_budget_and_the_base_delay() {
    // 0.5 s outages every 5 s: the reconnection (2-2.4 s) leaves under 5 s of streaming
    // before the next loss, so only the frames can end each outage.
    let t0 = Instant::now();
    let mut m = streaming(t0);
    let mut now = t0;
    for outage in 0..12 {
        now += secs(5);
        m.handle(Input::SignalingLost, now, 0.999);
        let delay = delay_of(&m);
        assert!(
            delay <= Duration::from_millis(2_400),
            "outage {outage} starts from the base delay: {delay:?}"
        );
        assert_eq!(elapse(&mut m), State::Connecting { attempt: 1 });
        let up = now + delay;
        m.handle(Input::Connected, up, 0.5);
        assert!(!m.handle(Input::Flowing, up, 0.5), "no state change");
    }
    assert_eq!(m.gave_up(), None);
}

#[test]
fn a_reconnection_lost_before_frames_flow_is_a_failed_attempt_so_accept_and_drop_gives_up() {
    let t0 = Instant::now();
    let mut m = streaming(t0);
    let mut now = t0 + secs(10);
    m.handle(Input::SignalingLost, now, 0.0);
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        delays.push(delay_of(&m));
        assert_eq!(elapse(&mut m), State::Connecting { attempt });
        now += secs(20);
        m.handle(Input::Connected, now, 0.0);
        // Dropped right after the handshakes, before any frame.
        m.handle(Input::SignalingLost, now + Duration::from_millis(100), 0.0);
    }
    assert_eq!(delays, [secs(2), secs(4), secs(8)]);
    assert!(matches!(m.state(), State::AwaitingWebhook { .. }));
    assert_eq!(m.gave_up(), Some(GiveUp::Reconnect));
    assert_eq!(elapse(&mut m), State::Ended(EndReason::ConnectionLost));
    assert_eq!(m.gave_up(), Some(GiveUp::Reconnect), "kept for the end");
}

#[test]
fn a_reconnection_that_stays_up_for_the_healthy_time_is_confirmed_without_frames() {
    let t0 = Instant::now();
    let mut m = streaming(t0);
    let mut now = t0;
    for _ in 0..3 {
        now += secs(10);
        m.handle(Input::SignalingLost, now, 0.0);
        assert_eq!(delay_of(&m), secs(2), "each idle outage starts afresh");
        elapse(&mut m);
        m.handle(Input::Connected, now + secs(2), 0.0);
    }
}

#[test]
fn flapping_past_the_limit_gives_up_with_its_own_reason() {
    let cfg = Resilience {
        reconnect_flap_max: 3,
        reconnect_flap_window: secs(60),
        ..cfg()
    };
    let t0 = Instant::now();
    let mut m = Machine::new(cfg, "wss://a/sig".into());
    m.handle(Input::Connected, t0, 0.0);
    let mut now = t0;
    for _ in 0..3 {
        now += secs(5);
        m.handle(Input::SignalingLost, now, 0.0);
        assert_eq!(delay_of(&m), secs(2));
        elapse(&mut m);
        now += secs(2);
        m.handle(Input::Connected, now, 0.0);
        m.handle(Input::Flowing, now, 0.0);
    }
    // Three reconnections within 60 s: the next loss gives up without an attempt.
    now += secs(5);
    m.handle(Input::MediaLost, now, 0.0);
    assert_eq!(
        m.state(),
        State::AwaitingWebhook {
            until: now + secs(300)
        }
    );
    assert_eq!(m.gave_up(), Some(GiveUp::Flapping));
    // A new started webhook revives the stream and clears the reason.
    m.handle(
        Input::Started {
            url: "wss://b/sig".into(),
        },
        now,
        0.0,
    );
    assert_eq!(m.state(), State::Connecting { attempt: 1 });
    assert_eq!(m.gave_up(), None);
}

#[test]
fn the_flap_window_slides_so_reconnections_spread_out_go_on_for_ever() {
    let cfg = Resilience {
        reconnect_flap_max: 3,
        reconnect_flap_window: secs(60),
        ..cfg()
    };
    let t0 = Instant::now();
    let mut m = Machine::new(cfg, "wss://a/sig".into());
    m.handle(Input::Connected, t0, 0.0);
    let mut now = t0;
    // One loss every 21 s: never three reconnections within 60 s.
    for loss in 0..20 {
        now += secs(21);
        m.handle(Input::SignalingLost, now, 0.0);
        assert_eq!(delay_of(&m), secs(2), "loss {loss}");
        elapse(&mut m);
        m.handle(Input::Connected, now + secs(2), 0.0);
        m.handle(Input::Flowing, now + secs(2), 0.0);
    }
    assert_eq!(m.gave_up(), None);
}

#[test]
fn a_loss_is_retried_at_least_once_even_with_a_budget_of_zero() {
    let cfg = Resilience {
        reconnect_max_attempts: 0,
        ..cfg()
    };
    let t0 = Instant::now();
    let mut m = Machine::new(cfg, "wss://a/sig".into());
    m.handle(Input::Connected, t0, 0.0);
    m.handle(Input::SignalingLost, t0 + secs(1), 0.0);
    assert_eq!(delay_of(&m), secs(2));
    assert_eq!(elapse(&mut m), State::Connecting { attempt: 1 });
    m.handle(Input::ConnectFailed { duplicate: false }, t0 + secs(4), 0.0);
    assert_eq!(m.gave_up(), Some(GiveUp::Reconnect));
}
