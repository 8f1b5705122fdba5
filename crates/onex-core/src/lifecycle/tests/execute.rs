//! The resilience pipeline through the wrapper: retry rules, per-attempt timeout, breaker.

use std::sync::Arc;
use std::time::Duration;

use super::scripted::{Scripted, Step};
use super::{config, initialized};
use crate::lifecycle::ManagedHandler;
use crate::resilience::{BreakerConfig, BreakerState, RetryPolicy};
use crate::{ConnectionConfig, Error, ErrorKind, OperationConfig, ProtocolHandler, ProtocolRequest};

fn op(idempotent: bool, max_retries: u32) -> OperationConfig {
    OperationConfig { idempotent, retry: RetryPolicy { max_retries, jitter: false, ..Default::default() }, ..Default::default() }
}

fn get() -> ProtocolRequest {
    ProtocolRequest::new("GET", "/users/1")
}

async fn with_breaker(inner: Arc<Scripted>, breaker: BreakerConfig) -> ManagedHandler {
    let handler = ManagedHandler::new(inner);
    handler.initialize(ConnectionConfig { breaker, ..config() }).await.unwrap();
    handler
}

#[tokio::test(start_paused = true)]
async fn idempotent_calls_are_retried_and_report_attempts_and_duration() {
    let inner = Arc::new(Scripted::with_steps([Step::Fail(Error::unavailable("503")), Step::Fail(Error::unavailable("503")), Step::Ok]));
    let handler = initialized(inner.clone()).await;
    let response = handler.execute(get(), &op(true, 3)).await.unwrap();
    assert_eq!(response.metadata["attempts"], 3);
    assert_eq!(response.duration, Duration::from_millis(100 + 200), "paused clock: exactly the two backoffs");
    assert_eq!(response.data["attempt"], 3);
    assert_eq!(Scripted::count(&inner.execute_calls), 3);
    assert_eq!(inner.last_request.lock().as_ref().unwrap().target, "/users/1", "every attempt gets the full request");
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_max_retries_and_the_error_says_how_many_attempts() {
    let inner = Arc::new(Scripted::with_steps((0..10).map(|_| Step::Fail(Error::unavailable("503")))));
    let handler = initialized(inner.clone()).await;
    let err = handler.execute(get(), &op(true, 2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(err.context().unwrap()["attempts"], "3");
    assert_eq!(Scripted::count(&inner.execute_calls), 3);
}

#[tokio::test(start_paused = true)]
async fn a_non_idempotent_call_is_not_retried_once_it_may_have_been_sent() {
    let inner = Arc::new(Scripted::with_steps([Step::Fail(Error::unavailable("503 after the POST body was sent")), Step::Ok]));
    let handler = initialized(inner.clone()).await;
    let err = handler.execute(ProtocolRequest::new("POST", "/orders"), &op(false, 3)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(Scripted::count(&inner.execute_calls), 1, "a POST that may have reached the server must not be repeated");
}

#[tokio::test(start_paused = true)]
async fn a_non_idempotent_call_is_retried_when_nothing_was_sent() {
    let inner = Arc::new(Scripted::with_steps([
        Step::Fail(Error::connection("connection refused")),
        Step::Fail(Error::unavailable("pool exhausted before sending").with("sent", "false")),
        Step::Ok,
    ]));
    let handler = initialized(inner.clone()).await;
    let response = handler.execute(ProtocolRequest::new("POST", "/orders"), &op(false, 3)).await.unwrap();
    assert_eq!(response.metadata["attempts"], 3);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_non_idempotent_call_is_not_retried() {
    let inner = Arc::new(Scripted::with_steps([Step::Hang, Step::Ok]));
    let handler = initialized(inner.clone()).await;
    let op = OperationConfig { timeout: Some(Duration::from_secs(1)), ..op(false, 3) };
    let err = handler.execute(ProtocolRequest::new("POST", "/orders"), &op).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(Scripted::count(&inner.execute_calls), 1);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_are_returned_at_once() {
    let inner = Arc::new(Scripted::with_steps([Step::Fail(Error::rejected("422 invalid email")), Step::Ok]));
    let handler = initialized(inner.clone()).await;
    let err = handler.execute(get(), &op(true, 3)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(Scripted::count(&inner.execute_calls), 1);
}

#[tokio::test(start_paused = true)]
async fn the_timeout_applies_per_attempt() {
    let inner = Arc::new(Scripted::with_steps([Step::Hang, Step::Hang, Step::Ok]));
    let handler = initialized(inner.clone()).await;
    let op = OperationConfig { timeout: Some(Duration::from_secs(2)), ..op(true, 3) };
    let response = handler.execute(get(), &op).await.unwrap();
    assert_eq!(response.metadata["attempts"], 3);
    assert_eq!(response.duration, Duration::from_millis(2_000 + 100 + 2_000 + 200));
}

#[tokio::test(start_paused = true)]
async fn without_an_operation_timeout_the_connection_request_timeout_applies() {
    let inner = Arc::new(Scripted::with_steps([Step::Hang]));
    let handler = ManagedHandler::new(inner);
    let mut cfg = config();
    cfg.timeouts.request = Duration::from_millis(750);
    handler.initialize(cfg).await.unwrap();
    let started = tokio::time::Instant::now();
    let err = handler.execute(get(), &op(true, 0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.to_string().contains("scripted GET did not finish within 750ms"), "{err}");
    assert_eq!(started.elapsed(), Duration::from_millis(750));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_through_the_wrapper() {
    let inner = Arc::new(Scripted::with_steps([Step::Fail(Error::rate_limited("429", Some(Duration::from_secs(3)))), Step::Ok]));
    let handler = initialized(inner).await;
    let response = handler.execute(get(), &op(true, 3)).await.unwrap();
    assert_eq!(response.duration, Duration::from_secs(3), "Retry-After replaces the 100 ms backoff");
}

#[tokio::test(start_paused = true)]
async fn invalid_operation_settings_are_config_errors() {
    let handler = initialized(Arc::new(Scripted::default())).await;
    let bad_retry = OperationConfig { retry: RetryPolicy { multiplier: 0.1, ..Default::default() }, ..Default::default() };
    let err = handler.execute(get(), &bad_retry).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("multiplier = 0.1"), "{err}");
    let zero_timeout = OperationConfig { timeout: Some(Duration::ZERO), ..Default::default() };
    let err = handler.execute(get(), &zero_timeout).await.unwrap_err();
    assert!(err.to_string().contains("timeout of 0s"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_through_the_wrapper_and_fails_fast() {
    let inner = Arc::new(Scripted::with_steps((0..2).map(|_| Step::Fail(Error::unavailable("503")))));
    let cfg = BreakerConfig { failure_threshold: 2, reset_timeout: Duration::from_secs(10), ..Default::default() };
    let handler = with_breaker(inner.clone(), cfg).await;
    for _ in 0..2 {
        assert_eq!(handler.execute(get(), &op(true, 0)).await.unwrap_err().kind(), ErrorKind::Unavailable);
    }
    let breaker = handler.breaker().expect("initialized");
    assert_eq!(breaker.state(), BreakerState::Open);
    let err = handler.execute(get(), &op(true, 0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert!(err.to_string().contains("scripted scripted://user:***@127.0.0.1:1/x"), "target names the handler, masked: {err}");
    assert_eq!(Scripted::count(&inner.execute_calls), 2, "an open breaker does not reach the target");
    // Half-open after the reset timeout: one probe succeeds and closes it.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(handler.execute(get(), &op(true, 0)).await.unwrap().status_code, Some(200));
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!((breaker.counters().opens, breaker.counters().closes), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_stops_the_retries() {
    let inner = Arc::new(Scripted::with_steps((0..10).map(|_| Step::Fail(Error::unavailable("503")))));
    let handler = with_breaker(inner.clone(), BreakerConfig { failure_threshold: 2, ..Default::default() }).await;
    let err = handler.execute(get(), &op(true, 5)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert_eq!(Scripted::count(&inner.execute_calls), 2);
}

#[tokio::test(start_paused = true)]
async fn client_errors_through_the_wrapper_do_not_open_the_breaker() {
    let steps = (0..20).map(|i| Step::Fail(if i % 2 == 0 { Error::rejected("400") } else { Error::authentication("401") }));
    let inner = Arc::new(Scripted::with_steps(steps));
    let handler = with_breaker(inner.clone(), BreakerConfig { failure_threshold: 2, ..Default::default() }).await;
    for _ in 0..20 {
        let err = handler.execute(get(), &op(true, 3)).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Rejected | ErrorKind::Authentication), "{err}");
    }
    assert_eq!(handler.breaker().unwrap().state(), BreakerState::Closed);
    assert_eq!(Scripted::count(&inner.execute_calls), 20);
}

#[tokio::test(start_paused = true)]
async fn each_handler_instance_has_its_own_breaker() {
    let cfg = BreakerConfig { failure_threshold: 1, ..Default::default() };
    let a = with_breaker(Arc::new(Scripted::with_steps([Step::Fail(Error::unavailable("503"))])), cfg.clone()).await;
    let b = with_breaker(Arc::new(Scripted::default()), cfg).await;
    let _ = a.execute(get(), &op(true, 0)).await;
    assert_eq!(a.breaker().unwrap().state(), BreakerState::Open);
    assert_eq!(b.breaker().unwrap().state(), BreakerState::Closed);
    b.execute(get(), &op(true, 0)).await.unwrap();
    assert!(a.breaker().unwrap().same_as(&a.breaker().unwrap()), "breaker() hands out clones of one breaker");
}
