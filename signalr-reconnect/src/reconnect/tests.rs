//! Tests of the [`Reconnect`] machine: explicit instants, no runtime.

use std::sync::Mutex;

use super::*;
use crate::test_util::{TestError, just_before, secs, test_epoch};
use crate::{FixedDelays, FixedInterval, RetryPolicyExt, retry_fn};

fn err(msg: &str) -> Reason {
    Arc::new(std::io::Error::other(msg.to_owned()))
}

/// Every context the policy saw: `(previous_retry_count, elapsed, reason)`.
type Calls = Arc<Mutex<Vec<(u32, Duration, String)>>>;

/// Wraps `policy` so that its calls are recorded.
fn recorded(policy: impl RetryPolicy) -> (impl RetryPolicy, Calls) {
    let calls = Calls::default();
    let log = Arc::clone(&calls);
    let wrapped = retry_fn(move |ctx| {
        log.lock().unwrap().push((
            ctx.previous_retry_count,
            ctx.elapsed,
            ctx.reason.to_string(),
        ));
        policy.next_retry_delay(ctx)
    });
    (wrapped, calls)
}

fn connected(rc: Reconnect) -> Reconnect {
    let mut rc = rc;
    rc.on_connected();
    rc
}

#[test]
fn without_a_policy_a_loss_disconnects() {
    let t0 = test_epoch();
    let mut rc = connected(Reconnect::new());
    assert_eq!(
        rc.on_connection_lost(t0, err("reset")),
        ReconnectDecision::GiveUp
    );
    assert_eq!(rc.state(), ReconnectState::Disconnected);
    assert_eq!(rc.poll_timeout(), None);
    assert_eq!(rc.outage().unwrap().reason.to_string(), "reset");
}

#[test]
fn dotnet_default_walks_0_2_10_30_then_gives_up_after_the_last_delay() {
    let t0 = test_epoch();
    let (policy, calls) = recorded(FixedDelays::dotnet_default());
    let mut rc = connected(Reconnect::new().with_retry_policy(policy));
    assert_eq!(
        rc.on_connection_lost(t0, err("lost")),
        ReconnectDecision::RetryAt(t0)
    );
    assert_eq!(
        rc.state(),
        ReconnectState::Reconnecting {
            attempt: 1,
            since: t0,
            next_attempt_at: Some(t0)
        }
    );
    // Each attempt takes 1 s to fail.
    let mut now = t0;
    for (attempt, delay) in [(1, 2), (2, 10), (3, 30)] {
        assert_eq!(
            rc.handle_timeout(now),
            Some(ReconnectEvent::StartAttempt { attempt })
        );
        assert_eq!(rc.poll_timeout(), None, "no timer while the attempt runs");
        now += secs(1);
        let decision = rc.on_attempt_failed(now, err(&format!("attempt {attempt}")));
        assert_eq!(decision, ReconnectDecision::RetryAt(now + secs(delay)));
        now += secs(delay);
        assert_eq!(rc.poll_timeout(), Some(now));
        assert_eq!(rc.handle_timeout(just_before(now)), None);
    }
    assert_eq!(
        rc.handle_timeout(now),
        Some(ReconnectEvent::StartAttempt { attempt: 4 })
    );
    now += secs(1);
    assert_eq!(
        rc.on_attempt_failed(now, err("attempt 4")),
        ReconnectDecision::GiveUp
    );
    assert_eq!(rc.state(), ReconnectState::Disconnected);
    assert_eq!(rc.handle_timeout(now + secs(100)), None);

    let expected = vec![
        (0, secs(0), "lost".to_owned()),
        (1, secs(1), "attempt 1".to_owned()),
        (2, secs(4), "attempt 2".to_owned()),
        (3, secs(15), "attempt 3".to_owned()),
        (4, secs(46), "attempt 4".to_owned()),
    ];
    assert_eq!(*calls.lock().unwrap(), expected);
    let outage = rc.outage().unwrap();
    assert_eq!((outage.since, outage.previous_retry_count), (t0, 4));
    assert_eq!(
        (outage.reason.to_string(), outage.last_error.to_string()),
        ("lost".into(), "attempt 4".into())
    );
    assert_eq!(outage.elapsed(now), secs(46));
}

#[test]
fn reconnecting_resets_the_count_and_the_clock() {
    let t0 = test_epoch();
    let (policy, calls) = recorded(FixedInterval::new(secs(5)));
    let mut rc = connected(Reconnect::new().with_retry_policy(policy));
    let _ = rc.on_connection_lost(t0, err("lost"));
    assert_eq!(
        rc.handle_timeout(t0 + secs(5)),
        Some(ReconnectEvent::StartAttempt { attempt: 1 })
    );
    let _ = rc.on_attempt_failed(t0 + secs(6), err("refused"));
    assert_eq!(rc.elapsed(t0 + secs(7)), Some(secs(7)));
    assert_eq!(
        rc.handle_timeout(t0 + secs(11)),
        Some(ReconnectEvent::StartAttempt { attempt: 2 })
    );
    rc.on_connected();
    assert_eq!(rc.state(), ReconnectState::Connected);
    assert!(rc.outage().is_none());
    assert_eq!(rc.elapsed(t0 + secs(12)), None);

    let t1 = t0 + secs(100);
    assert_eq!(
        rc.on_connection_lost(t1, err("lost again")),
        ReconnectDecision::RetryAt(t1 + secs(5))
    );
    assert_eq!(
        calls.lock().unwrap().last().unwrap(),
        &(0, Duration::ZERO, "lost again".to_owned())
    );
    assert_eq!(
        rc.state(),
        ReconnectState::Reconnecting {
            attempt: 1,
            since: t1,
            next_attempt_at: Some(t1 + secs(5))
        }
    );
}

#[test]
fn close_without_allow_reconnect_never_consults_the_policy() {
    let t0 = test_epoch();
    let (policy, calls) = recorded(FixedDelays::dotnet_default());
    let mut rc = connected(Reconnect::new().with_retry_policy(policy));
    assert_eq!(
        rc.on_close_message(t0, false, err("server shutting down")),
        ReconnectDecision::GiveUp
    );
    assert_eq!(rc.state(), ReconnectState::Disconnected);
    assert!(calls.lock().unwrap().is_empty());
    assert_eq!(
        rc.outage().unwrap().reason.to_string(),
        "server shutting down"
    );
    // Also during reconnecting: a retry's connection is refused for good.
    rc.on_connected();
    let _ = rc.on_connection_lost(t0, err("lost"));
    assert_eq!(
        rc.handle_timeout(t0),
        Some(ReconnectEvent::StartAttempt { attempt: 1 })
    );
    assert_eq!(
        rc.on_close_message(t0 + secs(1), false, err("go away")),
        ReconnectDecision::GiveUp
    );
    assert_eq!(rc.state(), ReconnectState::Disconnected);
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(rc.outage().unwrap().last_error.to_string(), "go away");
    assert_eq!(
        rc.on_close_message(t0 + secs(2), false, err("late")),
        ReconnectDecision::GiveUp
    );
}

#[test]
fn close_with_allow_reconnect_is_a_loss() {
    let t0 = test_epoch();
    let mut rc = connected(Reconnect::new().with_retry_policy([secs(3)]));
    assert_eq!(
        rc.on_close_message(t0, true, err("restarting")),
        ReconnectDecision::RetryAt(t0 + secs(3))
    );
    assert_eq!(
        rc.state(),
        ReconnectState::Reconnecting {
            attempt: 1,
            since: t0,
            next_attempt_at: Some(t0 + secs(3))
        }
    );
}

#[test]
fn stop_during_a_delay_ends_at_once() {
    let t0 = test_epoch();
    let (policy, calls) = recorded(FixedDelays::dotnet_default());
    let mut rc = connected(Reconnect::new().with_retry_policy(policy));
    let _ = rc.on_connection_lost(t0, err("lost"));
    assert_eq!(
        rc.handle_timeout(t0),
        Some(ReconnectEvent::StartAttempt { attempt: 1 })
    );
    assert_eq!(
        rc.on_attempt_failed(t0, err("refused")),
        ReconnectDecision::RetryAt(t0 + secs(2))
    );
    rc.on_stop_requested(); // at t0 + 1 s, in the middle of the 2 s delay
    assert_eq!(rc.state(), ReconnectState::Disconnected);
    assert_eq!(rc.poll_timeout(), None);
    assert_eq!(rc.handle_timeout(t0 + secs(2)), None);
    assert_eq!(rc.handle_timeout(t0 + secs(1_000)), None);
    // Late reports from an abandoned attempt change nothing.
    assert_eq!(
        rc.on_attempt_failed(t0 + secs(3), err("late")),
        ReconnectDecision::GiveUp
    );
    assert_eq!(
        rc.on_connection_lost(t0 + secs(3), err("late")),
        ReconnectDecision::GiveUp
    );
    assert_eq!(rc.state(), ReconnectState::Disconnected);
    assert_eq!(calls.lock().unwrap().len(), 2);
}

#[test]
fn stop_from_any_state() {
    let t0 = test_epoch();
    let mut rc = connected(Reconnect::new().with_retry_policy(FixedDelays::dotnet_default()));
    rc.on_stop_requested();
    assert_eq!(rc.state(), ReconnectState::Disconnected);
    rc.on_start_requested(t0);
    rc.on_stop_requested();
    assert_eq!(rc.state(), ReconnectState::Disconnected);
    rc.on_stop_requested();
    assert_eq!(rc.state(), ReconnectState::Disconnected);
}

#[test]
fn initial_start_is_not_retried_by_default() {
    let t0 = test_epoch();
    let mut rc = Reconnect::new().with_retry_policy(FixedDelays::dotnet_default());
    assert_eq!(rc.state(), ReconnectState::Disconnected);
    rc.on_start_requested(t0);
    assert_eq!(
        rc.state(),
        ReconnectState::Starting {
            attempt: 0,
            since: t0,
            next_attempt_at: None
        }
    );
    assert_eq!(
        rc.on_start_failed(t0 + secs(1), err("refused")),
        ReconnectDecision::GiveUp
    );
    assert_eq!(rc.state(), ReconnectState::Disconnected);
    assert_eq!(rc.outage().unwrap().reason.to_string(), "refused");
}

#[test]
fn initial_start_retry_has_its_own_policy_and_count() {
    let t0 = test_epoch();
    let (start, start_calls) = recorded(FixedInterval::new(secs(5)).max_attempts(2));
    let (retry, retry_calls) = recorded(FixedDelays::dotnet_default());
    let mut rc = Reconnect::new()
        .with_retry_policy(retry)
        .with_start_policy(start);
    rc.on_start_requested(t0);
    assert_eq!(
        rc.handle_timeout(t0),
        None,
        "the initial attempt needs no timer"
    );
    assert_eq!(
        rc.on_start_failed(t0 + secs(1), err("refused 0")),
        ReconnectDecision::RetryAt(t0 + secs(6))
    );
    assert_eq!(
        rc.state(),
        ReconnectState::Starting {
            attempt: 1,
            since: t0,
            next_attempt_at: Some(t0 + secs(6))
        }
    );
    assert_eq!(
        rc.handle_timeout(t0 + secs(6)),
        Some(ReconnectEvent::StartAttempt { attempt: 1 })
    );
    assert_eq!(
        rc.on_start_failed(t0 + secs(7), err("refused 1")),
        ReconnectDecision::RetryAt(t0 + secs(12))
    );
    assert_eq!(
        rc.handle_timeout(t0 + secs(12)),
        Some(ReconnectEvent::StartAttempt { attempt: 2 })
    );
    rc.on_connected();
    let expected = vec![
        (0, secs(1), "refused 0".to_owned()),
        (1, secs(7), "refused 1".to_owned()),
    ];
    assert_eq!(*start_calls.lock().unwrap(), expected);
    assert!(retry_calls.lock().unwrap().is_empty());

    // Once connected, a loss uses the retry policy from count 0.
    let t1 = t0 + secs(60);
    assert_eq!(
        rc.on_connection_lost(t1, err("lost")),
        ReconnectDecision::RetryAt(t1)
    );
    assert_eq!(
        *retry_calls.lock().unwrap(),
        vec![(0, Duration::ZERO, "lost".to_owned())]
    );
    assert_eq!(start_calls.lock().unwrap().len(), 2);
}

#[test]
fn initial_start_gives_up_when_its_policy_does() {
    let t0 = test_epoch();
    let mut rc = Reconnect::new().with_start_policy([secs(1)]);
    rc.on_start_requested(t0);
    assert_eq!(
        rc.on_start_failed(t0, err("a")),
        ReconnectDecision::RetryAt(t0 + secs(1))
    );
    assert_eq!(
        rc.handle_timeout(t0 + secs(1)),
        Some(ReconnectEvent::StartAttempt { attempt: 1 })
    );
    assert_eq!(
        rc.on_start_failed(t0 + secs(2), err("b")),
        ReconnectDecision::GiveUp
    );
    let outage = rc.outage().unwrap();
    assert_eq!(
        (outage.previous_retry_count, outage.reason.to_string()),
        (1, "a".to_owned())
    );
    // A new start forgets the old outage.
    rc.on_start_requested(t0 + secs(10));
    assert!(rc.outage().is_none());
}

#[test]
fn max_elapsed_is_measured_from_the_loss() {
    let t0 = test_epoch();
    let mut rc = connected(
        Reconnect::new().with_retry_policy(FixedInterval::new(secs(10)).max_elapsed(secs(25))),
    );
    assert_eq!(
        rc.on_connection_lost(t0, err("lost")),
        ReconnectDecision::RetryAt(t0 + secs(10))
    );
    assert_eq!(
        rc.on_attempt_failed(t0 + secs(12), err("x")),
        ReconnectDecision::RetryAt(t0 + secs(22))
    );
    assert_eq!(
        rc.on_attempt_failed(t0 + secs(24), err("x")),
        ReconnectDecision::GiveUp
    );
}

#[test]
fn spurious_and_repeated_timeouts_are_harmless() {
    let t0 = test_epoch();
    let mut rc = connected(Reconnect::new().with_retry_policy([secs(5)]));
    assert_eq!(rc.handle_timeout(t0), None);
    let _ = rc.on_connection_lost(t0, err("lost"));
    assert_eq!(rc.handle_timeout(t0 + secs(4)), None);
    assert_eq!(
        rc.handle_timeout(t0 + secs(6)),
        Some(ReconnectEvent::StartAttempt { attempt: 1 })
    );
    assert_eq!(rc.handle_timeout(t0 + secs(7)), None, "reported once");
    assert_eq!(
        rc.elapsed(just_before(t0)),
        Some(Duration::ZERO),
        "earlier instants saturate"
    );
}

#[test]
fn a_loss_during_an_attempt_counts_as_a_failed_attempt() {
    let t0 = test_epoch();
    let mut rc = connected(Reconnect::new().with_retry_policy(FixedDelays::from_secs(&[1, 2])));
    let _ = rc.on_connection_lost(t0, err("lost"));
    assert_eq!(
        rc.handle_timeout(t0 + secs(1)),
        Some(ReconnectEvent::StartAttempt { attempt: 1 })
    );
    assert_eq!(
        rc.on_connection_lost(t0 + secs(2), err("dropped")),
        ReconnectDecision::RetryAt(t0 + secs(4))
    );
    assert_eq!(rc.outage().unwrap().previous_retry_count, 1);
    // An attempt failure reported while connected is a loss.
    rc.on_connected();
    assert_eq!(
        rc.on_attempt_failed(t0 + secs(9), err("x")),
        ReconnectDecision::RetryAt(t0 + secs(10))
    );
}

#[test]
fn unrepresentable_delays_give_up_and_huge_counts_saturate() {
    let t0 = test_epoch();
    let mut rc = connected(Reconnect::new().with_retry_policy([Duration::MAX]));
    assert_eq!(
        rc.on_connection_lost(t0, err("lost")),
        ReconnectDecision::GiveUp
    );
    assert_eq!(rc.state(), ReconnectState::Disconnected);

    let mut rc = connected(Reconnect::new().with_retry_policy(FixedInterval::new(Duration::ZERO)));
    let _ = rc.on_connection_lost(t0, err("lost"));
    rc.state = ReconnectState::Reconnecting {
        attempt: u32::MAX,
        since: t0,
        next_attempt_at: None,
    };
    assert_eq!(
        rc.on_attempt_failed(t0, err("x")),
        ReconnectDecision::RetryAt(t0)
    );
    assert_eq!(
        rc.state(),
        ReconnectState::Reconnecting {
            attempt: u32::MAX,
            since: t0,
            next_attempt_at: Some(t0)
        }
    );
    assert_eq!(rc.outage().unwrap().previous_retry_count, u32::MAX);
}

#[test]
fn shared_policies_and_reasons_keep_their_type() {
    let t0 = test_epoch();
    let shared: Arc<dyn RetryPolicy> = Arc::new(FixedDelays::dotnet_default());
    let mut rc = connected(Reconnect::default().with_retry_policy(Arc::clone(&shared)));
    let reason: Reason = Arc::new(TestError);
    let _ = rc.on_connection_lost(t0, Arc::clone(&reason));
    assert!(Arc::ptr_eq(&rc.outage().unwrap().reason, &reason));
    assert!(
        rc.outage()
            .unwrap()
            .reason
            .downcast_ref::<TestError>()
            .is_some()
    );
    let copy = rc.clone();
    assert_eq!(copy.state(), rc.state());
}
