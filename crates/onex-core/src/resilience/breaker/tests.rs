use std::time::Duration;

use super::*;
use crate::ErrorKind;

fn config(threshold: u32, probes: u32) -> BreakerConfig {
    BreakerConfig { failure_threshold: threshold, half_open_probes: probes, reset_timeout: Duration::from_secs(30), ..Default::default() }
}

fn fail(b: &CircuitBreaker) {
    b.acquire().expect("admitted").failure(&Error::unavailable("503"));
}

fn succeed(b: &CircuitBreaker) {
    b.acquire().expect("admitted").success();
}

fn open_error(b: &CircuitBreaker) -> Error {
    b.acquire().map(|_| ()).expect_err("breaker should refuse the call")
}

#[test]
fn new_validates_the_config() {
    let cases = [
        (BreakerConfig { failure_threshold: 0, ..Default::default() }, "failure_threshold = 0"),
        (BreakerConfig { half_open_probes: 0, ..Default::default() }, "half_open_probes = 0"),
        (BreakerConfig { reset_timeout: Duration::ZERO, ..Default::default() }, "reset_timeout = 0s"),
        (BreakerConfig { failure_rate: Some(1.5), ..Default::default() }, "failure_rate = 1.5"),
        (BreakerConfig { failure_rate: Some(0.0), ..Default::default() }, "failure_rate = 0"),
        (BreakerConfig { failure_rate: Some(f64::NAN), ..Default::default() }, "failure_rate = NaN"),
        (BreakerConfig { failure_rate: Some(0.5), rate_window: Duration::ZERO, ..Default::default() }, "rate_window = 0s"),
        (BreakerConfig { failure_rate: Some(0.5), rate_min_calls: 0, ..Default::default() }, "rate_min_calls = 0"),
    ];
    for (cfg, needle) in cases {
        let err = CircuitBreaker::new("db", cfg).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let text = err.to_string();
        assert!(text.contains(needle) && text.contains("; "), "{text:?} should name {needle:?} and the fix");
        assert_eq!(err.context().and_then(|c| c.get("target")).map(String::as_str), Some("db"));
    }
    CircuitBreaker::new("db", BreakerConfig { failure_threshold: 0, ..BreakerConfig::disabled() })
        .expect("disabled configs are not checked");
}

#[test]
fn target_name_is_sanitized() {
    let b = CircuitBreaker::new("postgres://app:hunter2@db/x", BreakerConfig::default()).unwrap();
    assert!(!b.target().contains("hunter2"), "{}", b.target());
}

#[test]
fn a_closed_breaker_with_nothing_to_count_admits_and_records_without_its_lock() {
    let b = CircuitBreaker::new("api", config(3, 1)).unwrap();
    let held = b.shared.machine.lock();
    let (tx, rx) = std::sync::mpsc::channel();
    let other = b.clone();
    std::thread::spawn(move || {
        succeed(&other);
        let _ = tx.send(());
    });
    let done = rx.recv_timeout(Duration::from_secs(10));
    drop(held);
    assert!(done.is_ok(), "a call through a clean closed breaker waited for the breaker's lock");
    // A failure streak ends the fast path: the next success goes through the machine.
    fail(&b);
    assert_eq!(b.counters().consecutive_failures, 1);
    succeed(&b);
    assert_eq!(b.counters().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn opens_after_consecutive_counted_failures() {
    let b = CircuitBreaker::new("api", config(3, 1)).unwrap();
    fail(&b);
    fail(&b);
    succeed(&b); // resets the streak
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.counters().consecutive_failures, 2);
    fail(&b);
    assert_eq!(b.state(), BreakerState::Open);
    let err = open_error(&b);
    match &err {
        Error::CircuitOpen { target, remaining } => {
            assert_eq!(target, "api");
            assert_eq!(*remaining, Duration::from_secs(30));
        }
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
    assert!(!err.is_retryable() && !err.trips_breaker() && err.nothing_sent());
    let c = b.counters();
    assert_eq!((c.opens, c.closes, c.rejected, c.consecutive_failures), (1, 0, 1, 3));
}

#[tokio::test(start_paused = true)]
async fn non_counting_errors_never_open_it() {
    let b = CircuitBreaker::new("api", config(2, 1)).unwrap();
    for _ in 0..50 {
        for err in [
            Error::rejected("422"),
            Error::authentication("401"),
            Error::not_found("404"),
            Error::rate_limited("429", None),
            Error::unavailable("deadlock").with("trips_breaker", "false"),
        ] {
            let result: Result<()> = Err(err);
            b.acquire().unwrap().record(&result);
        }
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.counters().opens, 0);
    // And they reset a streak of counted failures, like a success.
    fail(&b);
    b.acquire().unwrap().failure(&Error::rejected("400"));
    fail(&b);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn opens_on_failure_rate_over_the_window() {
    let cfg = BreakerConfig {
        failure_threshold: 100,
        failure_rate: Some(0.5),
        rate_window: Duration::from_secs(10),
        rate_min_calls: 10,
        ..config(100, 1)
    };
    let b = CircuitBreaker::new("api", cfg).unwrap();
    // Alternate: never two failures in a row, so only the rate can trip it.
    for _ in 0..4 {
        succeed(&b);
        fail(&b);
    }
    assert_eq!(b.state(), BreakerState::Closed, "8 calls < rate_min_calls");
    succeed(&b);
    assert_eq!(b.state(), BreakerState::Closed, "4/9 failed");
    fail(&b); // 5/10 = 50 %
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.counters().opens, 1);
}

#[tokio::test(start_paused = true)]
async fn rate_window_forgets_old_calls() {
    let cfg = BreakerConfig { failure_rate: Some(0.5), rate_window: Duration::from_secs(10), rate_min_calls: 4, ..config(100, 1) };
    let b = CircuitBreaker::new("api", cfg).unwrap();
    fail(&b);
    succeed(&b);
    fail(&b);
    tokio::time::advance(Duration::from_secs(11)).await;
    succeed(&b); // the three earlier calls left the window: 0/1 failed
    fail(&b);
    succeed(&b);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!((b.counters().window_calls, b.counters().window_failures), (3, 1));
    fail(&b); // 2/4
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn half_open_after_reset_timeout_then_closes_when_probes_succeed() {
    let b = CircuitBreaker::new("api", config(1, 1)).unwrap();
    fail(&b);
    tokio::time::advance(Duration::from_secs(29)).await;
    match open_error(&b) {
        Error::CircuitOpen { remaining, .. } => assert_eq!(remaining, Duration::from_secs(1)),
        other => panic!("{other:?}"),
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let probe = b.acquire().unwrap();
    assert!(probe.is_probe());
    probe.success();
    assert_eq!(b.state(), BreakerState::Closed);
    let c = b.counters();
    assert_eq!((c.opens, c.closes, c.consecutive_failures), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_exactly_k_probes_through_concurrently() {
    let b = CircuitBreaker::new("api", config(1, 3)).unwrap();
    fail(&b);
    tokio::time::advance(Duration::from_secs(30)).await;
    let probes: Vec<_> = (0..3).map(|_| b.acquire().expect("probe slot")).collect();
    let err = open_error(&b);
    assert!(matches!(err, Error::CircuitOpen { remaining, .. } if remaining == Duration::ZERO), "{err:?}");
    let mut probes = probes.into_iter();
    probes.next().unwrap().success();
    probes.next().unwrap().success();
    assert_eq!(b.state(), BreakerState::HalfOpen, "closes only when all K succeed");
    assert!(b.acquire().is_err(), "finished probes do not free slots: K probes per half-open period");
    probes.next().unwrap().success();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_it() {
    let b = CircuitBreaker::new("api", config(1, 2)).unwrap();
    fail(&b);
    tokio::time::advance(Duration::from_secs(30)).await;
    let first = b.acquire().unwrap();
    let second = b.acquire().unwrap();
    first.failure(&Error::timeout("probe", Duration::from_secs(1)));
    assert_eq!(b.state(), BreakerState::Open);
    second.success(); // stale: from the half-open period that ended
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.counters().opens, 2);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(b.state(), BreakerState::HalfOpen, "a new reset timeout started at the reopen");
}

#[tokio::test(start_paused = true)]
async fn a_non_counting_probe_error_is_a_success() {
    let b = CircuitBreaker::new("api", config(1, 1)).unwrap();
    fail(&b);
    tokio::time::advance(Duration::from_secs(30)).await;
    b.acquire().unwrap().failure(&Error::not_found("404"));
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_slot_back() {
    let b = CircuitBreaker::new("api", config(1, 1)).unwrap();
    fail(&b);
    tokio::time::advance(Duration::from_secs(30)).await;
    let probe = b.acquire().unwrap();
    assert!(b.acquire().is_err());
    drop(probe);
    b.acquire().expect("slot released").success();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn late_results_from_before_the_open_are_ignored() {
    let b = CircuitBreaker::new("api", config(2, 1)).unwrap();
    let slow = b.acquire().unwrap();
    fail(&b);
    fail(&b);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(b.state(), BreakerState::HalfOpen);
    slow.success();
    assert_eq!(b.state(), BreakerState::HalfOpen, "a call admitted while closed is not a probe");
}

#[tokio::test(start_paused = true)]
async fn clones_share_state() {
    let a = CircuitBreaker::new("api", config(2, 1)).unwrap();
    let b = a.clone();
    assert!(a.same_as(&b));
    fail(&a);
    fail(&b);
    assert_eq!(a.state(), BreakerState::Open);
    assert!(b.acquire().is_err());
    let other = CircuitBreaker::new("api", config(2, 1)).unwrap();
    assert!(!other.same_as(&a));
    assert_eq!(other.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn disabled_passes_everything() {
    let b = CircuitBreaker::new("api", BreakerConfig::disabled()).unwrap();
    for _ in 0..100 {
        fail(&b);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.counters().opens, 0);
}

#[tokio::test(start_paused = true)]
async fn call_records_the_outcome_and_fails_fast_when_open() {
    let b = CircuitBreaker::new("api", config(2, 1)).unwrap();
    assert_eq!(b.call(async { Ok(7) }).await.unwrap(), 7);
    for _ in 0..2 {
        let err = b.call(async { Err::<(), _>(Error::connection("refused")) }).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
    }
    let mut ran = false;
    let err = b
        .call(async {
            ran = true;
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert!(!ran, "the guarded future must not run while open");
}

#[tokio::test(start_paused = true)]
async fn concurrent_probes_across_tasks() {
    let b = CircuitBreaker::new("api", config(1, 2)).unwrap();
    fail(&b);
    tokio::time::advance(Duration::from_secs(30)).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = futures::FutureExt::shared(async { rx.await.ok() });
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (b, rx) = (b.clone(), rx.clone());
            tokio::spawn(async move {
                b.call(async {
                    rx.await;
                    Ok(())
                })
                .await
                .map_err(|e| e.kind())
            })
        })
        .collect();
    tokio::task::yield_now().await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tx.send(()).unwrap();
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(ErrorKind::CircuitOpen) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((ok, refused), (2, 3));
    assert_eq!(b.state(), BreakerState::Closed);
}
