//! The handlers through the lifecycle wrapper (`ManagedHandler`): retries, Retry-After, the
//! circuit breaker and lifecycle errors, against real servers.

#[path = "../http/support.rs"]
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use onex_core::resilience::{BreakerConfig, BreakerState, RetryPolicy};
use onex_core::{ConnectionConfig, ErrorKind, LifecycleState, ManagedHandler, OperationConfig, ProtocolHandler, ProtocolRequest};
use serde_json::{json, Value};

fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy { max_retries, initial_backoff: Duration::from_millis(5), max_backoff: Duration::from_millis(20), ..RetryPolicy::default() }
}

fn op(idempotent: bool, max_retries: u32) -> OperationConfig {
    OperationConfig { retry: fast_retries(max_retries), idempotent, ..OperationConfig::default() }
}

async fn http(base: &str, breaker: BreakerConfig) -> std::sync::Arc<ManagedHandler> {
    let mut cfg = ConnectionConfig::new(base);
    cfg.breaker = breaker;
    onex_handlers::build("http", cfg).await.unwrap()
}

fn key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[tokio::test]
async fn retries_503_503_then_succeeds() {
    let srv = support::start().await;
    let h = http(&srv.base, BreakerConfig::default()).await;
    let k = key();
    let req = ProtocolRequest::new("GET", "/seq/{k}").with_params(json!({"k": k, "codes": "503,503,200"}));
    let resp = h.execute(req, &op(true, 3)).await.unwrap();
    assert_eq!(resp.status_code, Some(200));
    assert_eq!(resp.metadata["attempts"], 3, "two retries");
    assert_eq!(srv.seen.hits(&format!("/seq/{k}")), 3);
}

#[tokio::test]
async fn non_idempotent_post_is_not_retried_once_sent() {
    let srv = support::start().await;
    let h = http(&srv.base, BreakerConfig::default()).await;
    let k = key();
    let req = ProtocolRequest::new("POST", "/seq/{k}").with_params(json!({"k": k, "codes": "503,200"})).with_json(json!({"amount": 5}));
    let e = h.execute(req, &op(false, 3)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(srv.seen.hits(&format!("/seq/{k}")), 1, "a sent POST is never repeated");
    // A dropped connection after sending: not retried either.
    let dropping = support::start_dropping().await;
    let h2 = http(&dropping, BreakerConfig::default()).await;
    let e = h2.execute(ProtocolRequest::new("POST", "/charge"), &op(false, 3)).await.unwrap_err();
    assert_eq!(e.context().unwrap()["attempts"], "1", "{e}");
    // Nothing sent (connection refused): retried even though not idempotent.
    let closed = support::closed_port().await;
    let h3 = http(&closed, BreakerConfig::disabled()).await;
    let e = h3.execute(ProtocolRequest::new("POST", "/charge"), &op(false, 2)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection);
    assert_eq!(e.context().unwrap()["attempts"], "3", "{e}");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let srv = support::start().await;
    let h = http(&srv.base, BreakerConfig::default()).await;
    let k = key();
    let req = ProtocolRequest::new("GET", "/seq/{k}").with_params(json!({"k": k, "codes": "429,200", "retry_after": "1"}));
    let started = Instant::now();
    let resp = h.execute(req, &op(true, 3)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(resp.metadata["attempts"], 2);
    assert!(took >= Duration::from_millis(950), "waited {took:?}, the server asked for 1 s (backoff alone is ≤ 20 ms)");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn breaker_opens_fails_fast_probes_and_closes() {
    let srv = support::start().await;
    // A reset timeout far above the time between the calls below, even on a loaded machine.
    let breaker =
        BreakerConfig { failure_threshold: 3, reset_timeout: Duration::from_millis(1500), half_open_probes: 1, ..BreakerConfig::default() };
    let h = http(&srv.base, breaker).await;
    let k = key();
    let path = format!("/seq/{k}");
    // 503 three times (threshold), then 200 from the 4th hit on.
    let req = || ProtocolRequest::new("GET", "/seq/{k}").with_params(json!({"k": k, "codes": "503,503,503,200"}));
    for _ in 0..3 {
        assert_eq!(h.execute(req(), &op(true, 0)).await.unwrap_err().kind(), ErrorKind::Unavailable);
    }
    assert_eq!(h.breaker().unwrap().state(), BreakerState::Open);
    let e = h.execute(req(), &op(true, 0)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CircuitOpen, "{e}");
    assert_eq!(srv.seen.hits(&path), 3, "fail fast: the open breaker sent nothing");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(h.breaker().unwrap().state(), BreakerState::HalfOpen);
    let resp = h.execute(req(), &op(true, 0)).await.unwrap();
    assert_eq!(resp.status_code, Some(200), "the probe went through");
    assert_eq!(h.breaker().unwrap().state(), BreakerState::Closed, "a successful probe closes it");
    assert_eq!(srv.seen.hits(&path), 4);
}

#[tokio::test]
async fn failed_probe_reopens_and_half_open_admits_only_the_probes() {
    let srv = support::start().await;
    let breaker =
        BreakerConfig { failure_threshold: 2, reset_timeout: Duration::from_millis(800), half_open_probes: 1, ..BreakerConfig::default() };
    let h = std::sync::Arc::new(http(&srv.base, breaker).await);
    for _ in 0..2 {
        h.execute(ProtocolRequest::new("GET", "/status/500"), &op(true, 0)).await.unwrap_err();
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // One slow probe in flight: a second call meanwhile is refused.
    let probe = {
        let h = h.clone();
        tokio::spawn(async move { h.execute(ProtocolRequest::new("GET", "/delay/300"), &op(true, 0)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = h.execute(ProtocolRequest::new("GET", "/health"), &op(true, 0)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CircuitOpen, "only the configured probe passes while half-open: {e}");
    probe.await.unwrap().unwrap();
    assert_eq!(h.breaker().unwrap().state(), BreakerState::Closed);
    // Open it again, and let the probe fail: it reopens.
    for _ in 0..2 {
        h.execute(ProtocolRequest::new("GET", "/status/502"), &op(true, 0)).await.unwrap_err();
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    h.execute(ProtocolRequest::new("GET", "/status/503"), &op(true, 0)).await.unwrap_err();
    assert_eq!(h.breaker().unwrap().state(), BreakerState::Open);
}

#[tokio::test]
async fn client_errors_never_open_the_breaker() {
    let srv = support::start().await;
    let breaker = BreakerConfig { failure_threshold: 2, ..BreakerConfig::default() };
    let h = http(&srv.base, breaker).await;
    for code in [400, 401, 403, 404, 409, 422, 400, 404, 429] {
        let e = h.execute(ProtocolRequest::new("GET", format!("/status/{code}")), &op(true, 0)).await.unwrap_err();
        assert_ne!(e.kind(), ErrorKind::CircuitOpen);
    }
    assert_eq!(h.breaker().unwrap().state(), BreakerState::Closed);
    assert_eq!(srv.seen.hits("/status/404"), 2);
}

#[tokio::test]
async fn per_attempt_timeout_through_the_wrapper() {
    let srv = support::start().await;
    let h = http(&srv.base, BreakerConfig::disabled()).await;
    let op = OperationConfig { timeout: Some(Duration::from_millis(150)), ..op(true, 1) };
    let started = Instant::now();
    let e = h.execute(ProtocolRequest::new("GET", "/delay/5000"), &op).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.context().unwrap()["attempts"], "2");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

#[tokio::test]
async fn lifecycle_errors_for_every_handler() {
    let srv = support::start().await;
    for (ty, url) in [
        ("http", srv.base.as_str()),
        ("postgres", "postgres://root@127.0.0.1:5432/test"),
        ("redis", "redis://127.0.0.1:6379"),
        ("graphql", srv.base.as_str()),
    ] {
        let h = ManagedHandler::new(match ty {
            "http" => std::sync::Arc::new(onex_handlers::HttpRestHandler::new("h")) as std::sync::Arc<dyn ProtocolHandler>,
            "postgres" => std::sync::Arc::new(onex_handlers::PostgresHandler::new("p")),
            "redis" => std::sync::Arc::new(onex_handlers::RedisHandler::new("r")),
            _ => std::sync::Arc::new(onex_handlers::GraphQlHandler::new("g")),
        });
        let e = h.execute(ProtocolRequest::new("x", "y"), &OperationConfig::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidState, "{ty} before initialize");
        assert_eq!(h.describe().unwrap_err().kind(), ErrorKind::InvalidState);
        h.initialize(ConnectionConfig::new(url)).await.unwrap();
        h.initialize(ConnectionConfig::new("http://ignored.invalid")).await.unwrap();
        assert_eq!(h.state(), LifecycleState::Initialized, "initialize twice is a no-op ({ty})");
        assert_eq!(h.describe().unwrap().handler_type, ty);
        h.shutdown(Duration::from_secs(1)).await.unwrap();
        let e = h.execute(ProtocolRequest::new("x", "y"), &OperationConfig::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidState, "{ty} after shutdown");
        assert_eq!(h.health_check().await.unwrap_err().kind(), ErrorKind::InvalidState);
    }
}

#[tokio::test]
async fn postgres_unique_violation_is_not_retried_and_serialization_failure_is() {
    let pg = onex_handlers::build("postgres", ConnectionConfig::new("postgres://root@127.0.0.1:5432/test")).await.unwrap();
    let t = format!("onex_managed_{}", key());
    let run = |sql: String, params: Value| ProtocolRequest::new("db.execute", sql).with_params(params);
    pg.execute(run(format!("create table {t} (id int primary key)"), Value::Null), &op(true, 3)).await.unwrap();
    pg.execute(run(format!("insert into {t} values ($1)"), json!([1])), &op(true, 3)).await.unwrap();
    let e = pg.execute(run(format!("insert into {t} values ($1)"), json!([1])), &op(true, 3)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert_eq!(e.context().unwrap()["attempts"], "1", "a unique violation is not retried");
    let e = pg
        .execute(run("do $$ begin raise exception 'conflict' using errcode = '40001'; end $$".into(), Value::Null), &op(true, 3))
        .await
        .unwrap_err();
    assert_eq!(e.context().unwrap()["attempts"], "4", "serialization failures are retried");
    assert_eq!(pg.breaker().unwrap().state(), BreakerState::Closed, "and do not count towards the breaker");
    pg.execute(run(format!("drop table {t}"), Value::Null), &op(true, 0)).await.unwrap();
}

#[tokio::test]
async fn health_is_cached_by_the_wrapper() {
    let srv = support::start().await;
    let h = http(&srv.base, BreakerConfig::default()).await;
    let a = h.health_check().await.unwrap();
    let b = h.health_check().await.unwrap();
    assert!(a.healthy && b.healthy);
    assert_eq!(a.latency_ms, b.latency_ms, "the second answer came from the cache");
}

#[test]
fn register_all_registers_every_handler() {
    let mut r = onex_core::HandlerRegistry::new();
    onex_handlers::register_all(&mut r);
    assert_eq!(r.types(), ["graphql", "http", "postgres", "redis"]);
}

#[tokio::test]
async fn wrapper_timeout_cancels_the_postgres_statement() {
    let pg = onex_handlers::build("postgres", ConnectionConfig::new("postgres://root@127.0.0.1:5432/test")).await.unwrap();
    let marker = key();
    let op = OperationConfig { timeout: Some(Duration::from_millis(300)), ..op(true, 0) };
    let e = pg.execute(ProtocolRequest::new("db.query", format!("select pg_sleep(20) /* {marker} */")), &op).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    let check = ProtocolRequest::new(
        "db.query",
        "select count(*)::int as n from pg_stat_activity where query like $1 and state = 'active' and pid <> pg_backend_pid()",
    )
    .with_params(json!([format!("%pg_sleep(20) /* {marker}%")]));
    let mut running = 1;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        running = pg.execute(check.clone(), &op).await.unwrap().data[0]["n"].as_i64().unwrap();
        if running == 0 {
            break;
        }
    }
    assert_eq!(running, 0, "the statement was cancelled on the server whichever timeout fired first");
}
