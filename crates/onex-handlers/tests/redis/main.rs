//! RedisHandler against the machine's Redis (127.0.0.1:6379). Each test uses its own key prefix.

mod proxy;

use std::time::Duration;

use onex_core::{Auth, ConnectionConfig, ErrorKind, OperationConfig, ProtocolHandler, ProtocolRequest, Secret};
use onex_handlers::RedisHandler;
use serde_json::{json, Value};

const URL: &str = "redis://127.0.0.1:6379";

fn prefix() -> String {
    format!("onex-test:{}:", uuid::Uuid::new_v4().simple())
}

async fn handler_with(url: &str, prefix: &str) -> RedisHandler {
    let mut cfg = ConnectionConfig::new(url);
    cfg.options.insert("key_prefix".into(), prefix.into());
    let h = RedisHandler::new("test-redis");
    h.initialize(cfg).await.expect("Redis at 127.0.0.1:6379");
    h
}

async fn call(h: &RedisHandler, op: &str, target: &str, params: Value) -> onex_core::Result<onex_core::ProtocolResponse> {
    h.execute(ProtocolRequest::new(op, target).with_params(params), &OperationConfig::default()).await
}

async fn data(h: &RedisHandler, op: &str, target: &str, params: Value) -> Value {
    call(h, op, target, params).await.unwrap().data
}

async fn raw_conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open(URL).unwrap().get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test]
async fn set_get_json_values() {
    let p = prefix();
    let h = handler_with(URL, &p).await;
    for (k, v) in [("obj", json!({"a": [1, "x"], "b": null})), ("str", json!("hello")), ("num", json!(1.5)), ("bool", json!(false))] {
        assert_eq!(data(&h, "cache.set", k, json!({"value": v})).await, json!({"set": true}));
        let resp = call(&h, "cache.get", k, Value::Null).await.unwrap();
        assert_eq!((resp.data, resp.metadata["hit"].clone()), (v, json!(true)));
    }
    let body = h.execute(ProtocolRequest::new("cache.set", "body").with_json(json!([1, 2])), &OperationConfig::default()).await.unwrap();
    assert_eq!(body.data, json!({"set": true}));
    assert_eq!(data(&h, "cache.get", "body", Value::Null).await, json!([1, 2]));
    let miss = call(&h, "cache.get", "missing", Value::Null).await.unwrap();
    assert_eq!((miss.data, miss.metadata["hit"].clone()), (Value::Null, json!(false)));
    // Stored as JSON text under the prefixed key.
    let mut raw = raw_conn().await;
    let stored: String = redis::cmd("GET").arg(format!("{p}str")).query_async(&mut raw).await.unwrap();
    assert_eq!(stored, "\"hello\"");
}

#[tokio::test]
async fn ttl_and_nx() {
    let h = handler_with(URL, &prefix()).await;
    assert_eq!(data(&h, "cache.set", "k", json!({"value": 1, "nx": true})).await, json!({"set": true}));
    assert_eq!(data(&h, "cache.set", "k", json!({"value": 2, "nx": true})).await, json!({"set": false}));
    assert_eq!(data(&h, "cache.get", "k", Value::Null).await, json!(1));
    data(&h, "cache.set", "short", json!({"value": "x", "ttl_ms": 100})).await;
    data(&h, "cache.set", "long", json!({"value": "x", "ttl_secs": 60})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(data(&h, "cache.get", "short", Value::Null).await, Value::Null, "expired");
    assert_eq!(data(&h, "cache.get", "long", Value::Null).await, json!("x"));
    assert_eq!(data(&h, "cache.expire", "long", json!({"ttl_ms": 100})).await, json!(true));
    assert_eq!(data(&h, "cache.expire", "nothing", json!({"ttl_secs": 5})).await, json!(false));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(data(&h, "cache.exists", "long", Value::Null).await, json!(false));
}

#[tokio::test]
async fn del_exists_incr_mget_mset() {
    let h = handler_with(URL, &prefix()).await;
    assert_eq!(data(&h, "cache.mset", "", json!({"entries": {"a": 1, "b": {"x": true}, "c": "s"}})).await, json!({"set": 3}));
    assert_eq!(data(&h, "cache.mget", "", json!({"keys": ["a", "zz", "b", "c"]})).await, json!([1, null, {"x": true}, "s"]));
    assert_eq!(data(&h, "cache.exists", "", json!({"keys": ["a", "b", "zz"]})).await, json!(2));
    assert_eq!(data(&h, "cache.exists", "a", Value::Null).await, json!(true));
    assert_eq!(data(&h, "cache.incr", "a", Value::Null).await, json!(2));
    assert_eq!(data(&h, "cache.incr", "a", json!({"by": -5})).await, json!(-3));
    assert_eq!(data(&h, "cache.incr", "fresh", json!({"by": 10})).await, json!(10));
    assert_eq!(data(&h, "cache.get", "fresh", Value::Null).await, json!(10));
    assert_eq!(data(&h, "cache.del", "", json!({"keys": ["a", "b", "zz"]})).await, json!({"deleted": 2}));
    assert_eq!(data(&h, "cache.del", "c", Value::Null).await, json!({"deleted": 1}));
    let e = call(&h, "cache.incr", "nope", json!({"by": "x"})).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
}

#[tokio::test]
async fn command_errors_are_rejected_not_retried() {
    let p = prefix();
    let h = handler_with(URL, &p).await;
    data(&h, "cache.set", "text", json!({"value": "not a number"})).await;
    let e = call(&h, "cache.incr", "text", Value::Null).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    assert!(!e.is_retryable() && !e.trips_breaker());
    let mut raw = raw_conn().await;
    let _: i64 = redis::cmd("LPUSH").arg(format!("{p}list")).arg("x").query_async(&mut raw).await.unwrap();
    let e = call(&h, "cache.get", "list", Value::Null).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    assert_eq!(e.context().unwrap()["redis_error"], "WRONGTYPE");
    // A value written by another client that is not JSON comes back as a string.
    let () = redis::cmd("SET").arg(format!("{p}foreign")).arg("plain").query_async(&mut raw).await.unwrap();
    assert_eq!(data(&h, "cache.get", "foreign", Value::Null).await, json!("plain"));
}

#[tokio::test]
async fn health_describe_and_lifecycle() {
    let h = handler_with(URL, &prefix()).await;
    let health = h.health_check().await.unwrap();
    assert!(health.healthy && health.latency_ms > 0.0, "{health:?}");
    let d = h.describe().unwrap();
    assert_eq!((d.connection["host"].as_str(), d.connection["port"].as_str(), d.connection["db"].as_str()), ("127.0.0.1", "6379", "0"));
    h.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(call(&h, "cache.get", "k", Value::Null).await.unwrap_err().kind(), ErrorKind::InvalidState);
}

#[tokio::test]
async fn refused_connection_fails_initialize_clearly() {
    let h = RedisHandler::new("t");
    let e = h.initialize(ConnectionConfig::new("redis://127.0.0.1:1")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Initialization);
    assert_eq!(e.context().unwrap()["kind"], "connection", "{e}");
    let e = h.initialize(ConnectionConfig::new("http://127.0.0.1:6379")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("redis://"), "{e}");
    for bad in ["0", "many"] {
        let mut cfg = ConnectionConfig::new(URL);
        cfg.options.insert("connections".into(), bad.into());
        let e = h.initialize(cfg).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("connections"), "{e}");
    }
}

#[tokio::test]
async fn stalled_server_times_out_and_dropped_connection_reconnects() {
    let proxy = proxy::Proxy::start("127.0.0.1:6379").await;
    let h = handler_with(&format!("redis://{}", proxy.addr), &prefix()).await;
    data(&h, "cache.set", "k", json!({"value": 7})).await;
    proxy.stall(true);
    let op = OperationConfig { timeout: Some(Duration::from_millis(200)), ..Default::default() };
    let started = std::time::Instant::now();
    let e = h.execute(ProtocolRequest::new("cache.get", "k"), &op).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
    proxy.stall(false);
    proxy.kill_connections();
    // The broken connection surfaces as a retryable error, then the manager reconnects.
    let mut recovered = false;
    for _ in 0..50 {
        match call(&h, "cache.get", "k", Value::Null).await {
            Ok(r) => {
                assert_eq!(r.data, json!(7));
                recovered = true;
                break;
            }
            Err(e) => assert!(e.is_retryable(), "connection loss must be retryable: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the handler reconnected");
}

#[tokio::test]
async fn password_never_prints() {
    let mut outputs = Vec::new();
    for (url, auth) in [
        ("redis://:hunter2redis@127.0.0.1:6379", Auth::None),
        ("redis://127.0.0.1:6379", Auth::Basic { username: "default".into(), password: Secret::new("hunter2redis") }),
        ("redis://:hunter2redis@127.0.0.1:1", Auth::None),
    ] {
        let mut cfg = ConnectionConfig::new(url);
        cfg.auth = auth;
        outputs.push(format!("{cfg:?}"));
        let h = RedisHandler::new("t");
        match h.initialize(cfg).await {
            Err(e) => outputs.push(format!("{e} | {e:?} | {}", e.report())),
            Ok(()) => {
                outputs.push(format!("{h:?} {:?}", h.describe().unwrap()));
                outputs.push(format!("{:?}", h.health_check().await.unwrap()));
            }
        }
    }
    let all = outputs.join("\n");
    assert!(all.contains("127.0.0.1"), "{all}");
    assert!(!all.contains("hunter2redis"), "password leaked:\n{all}");
}

#[tokio::test]
async fn several_connections_share_the_calls() {
    let p = prefix();
    let mut cfg = ConnectionConfig::new(URL);
    cfg.options.insert("key_prefix".into(), p.clone());
    cfg.options.insert("connections".into(), "3".into());
    let h = std::sync::Arc::new(RedisHandler::new("pooled"));
    h.initialize(cfg).await.unwrap();
    assert_eq!(h.describe().unwrap().pool.unwrap().max_size, 3);
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { call(&h, "cache.incr", "counter", Value::Null).await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(data(&h, "cache.get", "counter", Value::Null).await, json!(30));
}
