//! Unit tests of `delivery.rs`.

use super::*;

fn policy() -> RetryPolicy {
    RetryPolicy {
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(60),
        ..RetryPolicy::default()
    }
}

#[test]
fn backoff_doubles_within_jitter_and_its_cap() {
    let p = policy();
    for (attempts, full) in [(1, 100), (2, 200), (3, 400), (12, 60_000), (40, 60_000)] {
        let d = p.backoff(attempts, None).as_millis() as u64;
        assert!(
            (full / 2..=full).contains(&d),
            "attempt {attempts}: {d} ms, not in [{}, {full}]",
            full / 2
        );
    }
}

#[test]
fn retry_after_is_honoured_up_to_the_longest_backoff() {
    let p = policy();
    assert!(p.backoff(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    // A week asked for: held to the cap.
    assert_eq!(
        p.backoff(1, Some(Duration::from_secs(7 * 86_400))),
        Duration::from_secs(60)
    );
}

#[test]
fn an_attempt_count_out_of_range_is_held_to_the_first_and_the_twenty_first_doubling() {
    let p = RetryPolicy {
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_secs(1_000_000),
        ..RetryPolicy::default()
    };
    // (attempts, the delay before jitter, in ms)
    for (attempts, full) in [
        (i64::MIN, 1),
        (-1, 1),
        (0, 1),
        (1, 1),
        (2, 2),
        (11, 1_024),
        (21, 1 << 20),
        (22, 1 << 20),
        (30, 1 << 20),
        (i64::MAX, 1 << 20),
    ] {
        let d = p.backoff(attempts, None).as_secs_f64() * 1_000.0;
        let full = full as f64;
        assert!(
            (full / 2.0..=full).contains(&d),
            "attempt {attempts}: {d} ms, not in [{}, {full}]",
            full / 2.0
        );
    }
}

#[test]
fn a_retry_after_beyond_the_backoff_is_the_delay_exactly() {
    let p = policy();
    // (attempts, Retry-After, delay) with 100 ms doubling up to 60 s
    for (attempts, retry_after, delay) in [
        (1, 5_000, 5_000),
        (3, 401, 401),
        (1, 60_000, 60_000),
        (1, 60_001, 60_000),
        (12, 60_000, 60_000),
        (40, u64::MAX, 60_000),
    ] {
        assert_eq!(
            p.backoff(attempts, Some(Duration::from_millis(retry_after))),
            Duration::from_millis(delay),
            "attempt {attempts}, Retry-After {retry_after} ms"
        );
    }
    // One shorter than the jitter leaves the backoff as it is.
    for retry_after in [Duration::ZERO, Duration::from_millis(49)] {
        let d = p.backoff(1, Some(retry_after)).as_millis();
        assert!((50..=100).contains(&d), "{retry_after:?}: {d} ms");
    }
}

#[test]
fn a_zero_backoff_retries_at_once() {
    let p = RetryPolicy {
        base_backoff: Duration::ZERO,
        ..RetryPolicy::default()
    };
    for attempts in [1, 5, 30] {
        assert_eq!(p.backoff(attempts, None), Duration::ZERO);
    }
    let capped = RetryPolicy {
        max_backoff: Duration::ZERO,
        ..RetryPolicy::default()
    };
    assert_eq!(
        capped.backoff(3, Some(Duration::from_secs(30))),
        Duration::ZERO
    );
}

#[test]
fn circuits_are_named_for_operators() {
    for (circuit, name) in [
        (Circuit::Closed { failures: 0 }, "closed"),
        (Circuit::Closed { failures: 4 }, "closed"),
        (Circuit::Open { until: Utc::now() }, "open"),
        (Circuit::HalfOpen { probe: None }, "half_open"),
        (Circuit::HalfOpen { probe: Some(7) }, "half_open"),
    ] {
        assert_eq!(circuit.name(), name);
    }
}

fn at(secs: i64) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

#[test]
fn consecutive_provider_failures_open_the_circuit_and_only_the_probe_decides() {
    use Verdict::{Failing, Healthy, Neutral};
    let cooldown = Duration::from_secs(30);
    let closed = |failures| Circuit::Closed { failures };
    let open = |secs| Circuit::Open { until: at(secs) };
    let half = |probe| Circuit::HalfOpen { probe };
    // (circuit, delivery, verdict, threshold, circuit after, at time 0)
    for (before, id, verdict, threshold, after) in [
        (closed(0), 1, Failing, 3, closed(1)),
        (closed(1), 1, Failing, 3, closed(2)),
        (closed(2), 1, Failing, 3, open(30)),
        (closed(2), 1, Healthy, 3, closed(0)),
        (closed(0), 1, Healthy, 3, closed(0)),
        // A refused address says nothing about the provider: the count stays.
        (closed(2), 1, Neutral, 3, closed(2)),
        // A threshold of one (or none) opens on the first failure.
        (closed(0), 1, Failing, 1, open(30)),
        (closed(0), 1, Failing, 0, open(30)),
        (closed(u32::MAX - 1), 1, Failing, u32::MAX, open(30)),
        (closed(u32::MAX), 1, Failing, u32::MAX, open(30)),
        (closed(5), 1, Failing, u32::MAX, closed(6)),
        // The probe's outcome decides: any answer closes, a failure reopens.
        (half(Some(7)), 7, Healthy, 3, closed(0)),
        (half(Some(7)), 7, Neutral, 3, closed(0)),
        (half(Some(7)), 7, Failing, 3, open(30)),
        // Late outcomes of sends from before the circuit opened decide nothing.
        (half(Some(7)), 4, Healthy, 3, half(Some(7))),
        (half(Some(7)), 4, Failing, 3, half(Some(7))),
        (half(None), 4, Failing, 3, half(None)),
        (half(None), 4, Healthy, 3, half(None)),
        // An open circuit keeps its cooldown whatever late outcomes arrive.
        (open(12), 1, Failing, 3, open(12)),
        (open(12), 1, Healthy, 3, open(12)),
    ] {
        assert_eq!(
            before.after(id, verdict, threshold, cooldown, at(0)),
            after,
            "{before:?}, delivery {id}: {verdict:?}, threshold {threshold}"
        );
    }
}

#[test]
fn the_threshold_counts_failures_in_a_row() {
    use Verdict::{Failing, Healthy, Neutral};
    let mut circuit = Circuit::Closed { failures: 0 };
    let cooldown = Duration::from_secs(30);
    for verdict in [Failing, Failing, Healthy, Failing, Neutral, Failing] {
        circuit = circuit.after(1, verdict, 3, cooldown, at(0));
    }
    assert_eq!(circuit, Circuit::Closed { failures: 2 });
    circuit = circuit.after(1, Failing, 3, cooldown, at(0));
    assert_eq!(circuit, Circuit::Open { until: at(30) });
}

fn channel_state() -> ChannelState {
    ChannelState {
        circuit: Circuit::Closed { failures: 0 },
        in_flight: HashSet::new(),
        ticker: None,
        sent: 0,
        failed: 0,
        retried: 0,
        suppressed: 0,
        wakes: 0,
        panic_next_send: false,
    }
}

#[test]
fn each_outcome_is_counted_and_only_provider_trouble_counts_against_it() {
    // (outcome, what it says of the provider, (sent, failed, retried))
    for (outcome, against, counts) in [
        (Outcome::Sent, Verdict::Healthy, (1, 0, 0)),
        (
            Outcome::Failed { retryable: false },
            Verdict::Neutral,
            (0, 1, 0),
        ),
        (
            Outcome::Failed { retryable: true },
            Verdict::Failing,
            (0, 1, 0),
        ),
        (Outcome::Retried, Verdict::Failing, (0, 0, 1)),
    ] {
        let mut state = channel_state();
        assert_eq!(state.count(&outcome), against, "{outcome:?}");
        assert_eq!(
            (state.sent, state.failed, state.retried),
            counts,
            "{outcome:?}"
        );
    }
}

#[test]
fn a_channel_claims_its_free_slots_in_batches_of_a_quarter() {
    let closed = Circuit::Closed { failures: 2 };
    // (in flight, concurrency, claimed)
    for (in_flight, concurrency, claimed) in [
        (0, 8, 8),
        (5, 8, 3),
        (6, 8, 2),
        // Fewer free than a quarter: wait for more to finish.
        (7, 8, 0),
        (8, 8, 0),
        (12, 8, 0),
        (0, 1, 1),
        (1, 1, 0),
        (2, 3, 1),
        (0, 0, 0),
    ] {
        let mut circuit = closed;
        assert_eq!(
            claim_slots(&mut circuit, in_flight, concurrency, at(0)),
            claimed,
            "{in_flight} in flight of {concurrency}"
        );
        assert_eq!(circuit, closed);
    }
}

#[test]
fn an_open_circuit_claims_nothing_until_its_cooldown_passes_then_one_probe() {
    // (circuit, claimed at time 0, circuit after)
    for (before, claimed, after) in [
        (
            Circuit::Open { until: at(1) },
            0,
            Circuit::Open { until: at(1) },
        ),
        (
            Circuit::Open { until: at(0) },
            1,
            Circuit::HalfOpen { probe: None },
        ),
        (
            Circuit::Open { until: at(-60) },
            1,
            Circuit::HalfOpen { probe: None },
        ),
        (
            Circuit::HalfOpen { probe: None },
            1,
            Circuit::HalfOpen { probe: None },
        ),
        (
            Circuit::HalfOpen { probe: Some(3) },
            0,
            Circuit::HalfOpen { probe: Some(3) },
        ),
    ] {
        let mut circuit = before;
        assert_eq!(
            claim_slots(&mut circuit, 0, 8, at(0)),
            claimed,
            "{before:?}"
        );
        assert_eq!(circuit, after, "{before:?}");
    }
}

#[test]
fn a_probe_waits_for_a_free_slot() {
    // The circuit opened while every slot was busy: the probe waits for one to free up.
    let mut circuit = Circuit::Open { until: at(0) };
    assert_eq!(claim_slots(&mut circuit, 8, 8, at(0)), 0);
    assert_eq!(circuit, Circuit::HalfOpen { probe: None });
    assert_eq!(claim_slots(&mut circuit, 7, 8, at(0)), 1);
}

fn retryable(
    message: &str,
    retry_after: Option<Duration>,
) -> Result<Option<String>, TransportError> {
    Err(TransportError::Retryable {
        message: message.into(),
        retry_after,
    })
}

#[test]
fn a_sent_or_permanently_refused_delivery_is_final() {
    let p = policy();
    for attempts in [1, 8, 100] {
        match decide(&p, attempts, Ok(Some("msg-1".into())), at(0)) {
            (Outcome::Sent, Write::Sent(Some(id))) => assert_eq!(id, "msg-1"),
            _ => panic!("attempt {attempts}: not sent"),
        }
        assert!(matches!(
            decide(&p, attempts, Ok(None), at(0)),
            (Outcome::Sent, Write::Sent(None))
        ));
        match decide(
            &p,
            attempts,
            Err(TransportError::Permanent("550 no such user".into())),
            at(0),
        ) {
            (Outcome::Failed { retryable: false }, Write::Failed(e)) => {
                assert_eq!(e, "550 no such user")
            }
            _ => panic!("attempt {attempts}: not failed"),
        }
        // An unreachable address fails at once too, and says that it is marked; like any
        // refusal, it says nothing of the provider's health.
        match decide(
            &p,
            attempts,
            Err(TransportError::Unreachable(
                "21211 not a valid phone number".into(),
            )),
            at(0),
        ) {
            (Outcome::Failed { retryable: false }, Write::Failed(e)) => {
                assert!(e.starts_with("21211 not a valid phone number; "), "{e}");
                assert!(e.contains("marked invalid"), "{e}");
            }
            _ => panic!("attempt {attempts}: not failed"),
        }
    }
}

#[test]
fn a_retryable_error_is_retried_until_the_last_attempt_allowed() {
    let p = RetryPolicy {
        max_attempts: 3,
        ..policy()
    };
    for attempts in [1, 2] {
        match decide(
            &p,
            attempts,
            retryable("421 busy", Some(Duration::from_secs(30))),
            at(0),
        ) {
            (Outcome::Retried, Write::Retry(next, message)) => {
                assert_eq!(next, at(30), "attempt {attempts}");
                assert_eq!(message, "421 busy");
            }
            _ => panic!("attempt {attempts}: not retried"),
        }
    }
    for attempts in [3, 4, i64::MAX] {
        match decide(&p, attempts, retryable("421 busy", None), at(0)) {
            (Outcome::Failed { retryable: true }, Write::Failed(e)) => {
                assert_eq!(e, format!("gave up after {attempts} attempts: 421 busy"))
            }
            _ => panic!("attempt {attempts}: not given up"),
        }
    }
    // Without a Retry-After, the next attempt is the backoff away.
    match decide(&p, 2, retryable("timeout", None), at(0)) {
        (Outcome::Retried, Write::Retry(next, _)) => {
            let wait = (next - at(0)).num_milliseconds();
            assert!((100..=200).contains(&wait), "{wait} ms");
        }
        _ => panic!("not retried"),
    }
}

#[test]
fn a_policy_of_one_attempt_or_none_never_retries() {
    for max_attempts in [i64::MIN, 0, 1] {
        let p = RetryPolicy {
            max_attempts,
            ..policy()
        };
        assert!(
            matches!(
                decide(&p, 1, retryable("503", None), at(0)),
                (Outcome::Failed { retryable: true }, Write::Failed(_))
            ),
            "{max_attempts}"
        );
    }
}
