//! Tests of the lifecycle wrapper: state rules, idempotent initialize, health cache, describe.
//! The resilience pipeline of `execute` is tested in `execute.rs`.

mod execute;
mod scripted;
mod spans;

use std::sync::Arc;
use std::time::Duration;

use scripted::{Scripted, Step};

use super::*;
use crate::resilience::BreakerConfig;
use crate::ErrorKind;

fn config() -> ConnectionConfig {
    ConnectionConfig::new("scripted://user:hunter2@127.0.0.1:1/x")
}

async fn initialized(inner: Arc<Scripted>) -> ManagedHandler {
    let handler = ManagedHandler::new(inner);
    handler.initialize(config()).await.unwrap();
    handler
}

fn assert_invalid_state(err: Error, needles: &[&str]) {
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    let text = err.to_string();
    for needle in needles {
        assert!(text.contains(needle), "{text:?} should contain {needle:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn calls_before_initialize_are_invalid_state() {
    let inner = Arc::new(Scripted::default());
    let handler = ManagedHandler::new(inner.clone());
    assert_eq!(handler.state(), LifecycleState::Created);
    assert!(handler.breaker().is_none());
    let err = handler.execute(ProtocolRequest::new("GET", "/"), &OperationConfig::default()).await.unwrap_err();
    assert_invalid_state(err, &["execute", "before initialize", "call initialize(config)"]);
    assert_invalid_state(handler.describe().unwrap_err(), &["describe", "call initialize(config)"]);
    assert_invalid_state(handler.health_check().await.unwrap_err(), &["health_check", "call initialize(config)"]);
    assert_eq!(Scripted::count(&inner.execute_calls) + Scripted::count(&inner.health_calls), 0, "the inner handler must not be reached");
}

#[tokio::test(start_paused = true)]
async fn calls_after_shutdown_are_invalid_state_and_shutdown_is_idempotent() {
    let inner = Arc::new(Scripted::default());
    let handler = initialized(inner.clone()).await;
    handler.shutdown(Duration::from_secs(1)).await.unwrap();
    handler.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(Scripted::count(&inner.shutdown_calls), 1, "the inner shutdown runs once");
    assert_eq!(handler.state(), LifecycleState::Closed);
    let err = handler.execute(ProtocolRequest::new("GET", "/"), &OperationConfig::default()).await.unwrap_err();
    assert_invalid_state(err, &["execute", "after shutdown", "build and initialize a new handler"]);
    assert_invalid_state(handler.describe().unwrap_err(), &["after shutdown"]);
    assert_invalid_state(handler.health_check().await.unwrap_err(), &["after shutdown"]);
    let err = handler.initialize(config()).await.unwrap_err();
    assert_invalid_state(err, &["initialize", "after shutdown", "build a new one"]);
    assert_eq!(Scripted::count(&inner.init_calls), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_before_initialize_closes_without_touching_the_inner_handler() {
    let inner = Arc::new(Scripted::default());
    let handler = ManagedHandler::new(inner.clone());
    handler.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(handler.state(), LifecycleState::Closed);
    assert_eq!(Scripted::count(&inner.shutdown_calls), 0);
    assert!(handler.initialize(config()).await.is_err());
    assert_eq!(Scripted::count(&inner.init_calls), 0);
}

#[tokio::test(start_paused = true)]
async fn initialize_is_idempotent_under_concurrent_calls() {
    let inner = Arc::new(Scripted { init_delay: Duration::from_millis(100), ..Default::default() });
    let handler = Arc::new(ManagedHandler::new(inner.clone()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let handler = handler.clone();
            tokio::spawn(async move { handler.initialize(config()).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(Scripted::count(&inner.init_calls), 1, "inner initialize must run exactly once");
    assert_eq!(handler.state(), LifecycleState::Initialized);
    handler.initialize(config()).await.unwrap();
    assert_eq!(Scripted::count(&inner.init_calls), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_initialize_leaves_it_created_and_may_be_retried() {
    let inner = Arc::new(Scripted::default());
    inner.init_failures.lock().push_back(Error::connection("connection refused"));
    let handler = ManagedHandler::new(inner.clone());
    let err = handler.initialize(config()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert_eq!(handler.state(), LifecycleState::Created);
    handler.initialize(config()).await.unwrap();
    assert_eq!(handler.state(), LifecycleState::Initialized);
    assert_eq!(Scripted::count(&inner.init_calls), 2);
}

#[tokio::test(start_paused = true)]
async fn bad_connection_settings_are_config_errors_before_the_inner_initialize() {
    let inner = Arc::new(Scripted::default());
    let handler = ManagedHandler::new(inner.clone());
    let mut bad_breaker = config();
    bad_breaker.breaker = BreakerConfig { failure_threshold: 0, ..Default::default() };
    let err = handler.initialize(bad_breaker).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("failure_threshold = 0"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    let mut zero_timeout = config();
    zero_timeout.timeouts.request = Duration::ZERO;
    let err = handler.initialize(zero_timeout).await.unwrap_err();
    assert!(err.to_string().contains("timeouts.request = 0s"), "{err}");
    assert_eq!(Scripted::count(&inner.init_calls), 0);
    assert_eq!(handler.state(), LifecycleState::Created);
}

#[tokio::test(start_paused = true)]
async fn health_is_cached_for_the_default_ttl() {
    let inner = Arc::new(Scripted::default());
    let handler = initialized(inner.clone()).await;
    assert!(handler.health_check().await.unwrap().healthy);
    tokio::time::advance(Duration::from_millis(4_900)).await;
    assert!(handler.health_check().await.unwrap().healthy);
    assert_eq!(Scripted::count(&inner.health_calls), 1, "within the TTL the cached result is reused");
    tokio::time::advance(Duration::from_millis(100)).await;
    handler.health_check().await.unwrap();
    assert_eq!(Scripted::count(&inner.health_calls), 2, "after the TTL the target is checked again");
}

#[tokio::test(start_paused = true)]
async fn health_ttl_is_configurable_and_concurrent_checks_share_one_call() {
    let inner = Arc::new(Scripted { health_delay: Duration::from_millis(50), ..Default::default() });
    let handler = Arc::new(ManagedHandler::builder(inner.clone()).health_ttl(Duration::from_secs(1)).build());
    handler.initialize(config()).await.unwrap();
    let checks: Vec<_> = (0..5)
        .map(|_| {
            let h = handler.clone();
            tokio::spawn(async move { h.health_check().await })
        })
        .collect();
    for c in checks {
        assert!(c.await.unwrap().unwrap().healthy);
    }
    assert_eq!(Scripted::count(&inner.health_calls), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    handler.health_check().await.unwrap();
    assert_eq!(Scripted::count(&inner.health_calls), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failing_health_check_is_an_unhealthy_sanitized_status() {
    let inner = Arc::new(Scripted::default());
    inner.health_answers.lock().push_back(Err(Error::connection("cannot reach scripted://user:hunter2@127.0.0.1:1")));
    let handler = initialized(inner.clone()).await;
    let status = handler.health_check().await.unwrap();
    assert!(!status.healthy);
    let last = status.last_error.expect("last_error set");
    assert!(last.contains("cannot reach") && !last.contains("hunter2"), "{last}");
    assert!(!handler.health_check().await.unwrap().healthy, "unhealthy answers are cached too");
    assert_eq!(Scripted::count(&inner.health_calls), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_health_check_times_out_as_unhealthy() {
    let inner = Arc::new(Scripted { health_delay: Duration::from_secs(3600), ..Default::default() });
    let handler = ManagedHandler::new(inner.clone());
    let mut cfg = config();
    cfg.timeouts.request = Duration::from_secs(2);
    handler.initialize(cfg).await.unwrap();
    let status = handler.health_check().await.unwrap();
    assert!(!status.healthy);
    assert!(status.last_error.unwrap().contains("timed out"));
    assert_eq!(status.latency_ms, 2000.0);
}

#[tokio::test(start_paused = true)]
async fn describe_adds_breaker_state_and_counters() {
    let inner = Arc::new(Scripted::with_steps([Step::Fail(Error::unavailable("503"))]));
    let handler = initialized(inner).await;
    let op = OperationConfig { retry: crate::resilience::RetryPolicy::none(), ..Default::default() };
    let _ = handler.execute(ProtocolRequest::new("GET", "/"), &op).await;
    let d = handler.describe().unwrap();
    assert_eq!(d.handler_type, "scripted");
    assert_eq!(d.resilience["breaker_state"], "closed");
    let cb = &d.resilience["circuit_breaker"];
    assert_eq!((cb["opens"].as_u64(), cb["consecutive_failures"].as_u64(), cb["failure_threshold"].as_u64()), (Some(0), Some(1), Some(5)));
    assert_eq!(d.resilience["request_timeout_ms"], 30_000);
    assert_eq!(d.resilience["health_ttl_ms"], 5_000);
    assert!(!serde_json::to_string(&d).unwrap().contains("hunter2"));
}

#[tokio::test(start_paused = true)]
async fn is_usable_as_a_trait_object() {
    let managed: Arc<dyn ProtocolHandler> = Arc::new(ManagedHandler::new(Arc::new(Scripted::default())));
    assert_eq!(managed.handler_type(), "scripted");
    managed.initialize(config()).await.unwrap();
    assert_eq!(managed.execute(ProtocolRequest::new("GET", "/"), &OperationConfig::default()).await.unwrap().status_code, Some(200));
    let dbg = format!("{:?}", ManagedHandler::new(Arc::new(Scripted::default())));
    assert!(dbg.contains("scripted") && dbg.contains("Created"), "{dbg}");
}
