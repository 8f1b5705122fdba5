//! HttpRestHandler against a real local HTTP server: DESIGN §5 classification, limits,
//! propagation, secrets.

mod support;

use std::time::Duration;

use onex_core::{Auth, Body, ConnectionConfig, ErrorKind, OperationConfig, ProtocolHandler, ProtocolRequest, Secret};
use onex_handlers::HttpRestHandler;
use serde_json::json;

async fn handler(base: &str) -> HttpRestHandler {
    let h = HttpRestHandler::new("test-http");
    h.initialize(ConnectionConfig::new(base)).await.unwrap();
    h
}

fn op() -> OperationConfig {
    OperationConfig::default()
}

#[tokio::test]
async fn get_with_path_params_and_query() {
    let srv = support::start().await;
    let h = handler(&srv.base).await;
    let req = ProtocolRequest::new("GET", "/users/{id}").with_params(json!({"id": "4 2", "page": 2}));
    let resp = h.execute(req, &op()).await.unwrap();
    assert_eq!(resp.status_code, Some(200));
    assert_eq!(resp.data["path"], "/users/4%202");
    assert_eq!(resp.data["query"], "page=2");
    assert_eq!(resp.metadata["encoding"], "json");
    assert_eq!(resp.headers["content-type"], "application/json");
}

#[tokio::test]
async fn every_method_and_json_and_byte_bodies() {
    let srv = support::start().await;
    let h = handler(&srv.base).await;
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "post"] {
        let resp = h.execute(ProtocolRequest::new(m, "/m"), &op()).await.unwrap();
        assert_eq!(resp.data["method"], m.to_ascii_uppercase());
    }
    let head = h.execute(ProtocolRequest::new("HEAD", "/m"), &op()).await.unwrap();
    assert_eq!((head.status_code, head.data.clone()), (Some(200), serde_json::Value::Null));
    let resp = h.execute(ProtocolRequest::new("POST", "/echo").with_json(json!({"a": [1, 2]})), &op()).await.unwrap();
    assert_eq!(resp.data["body"], r#"{"a":[1,2]}"#);
    assert_eq!(resp.data["content_type"], "application/json");
    let mut req = ProtocolRequest::new("PUT", "/echo").with_header("Content-Type", "text/plain");
    req.body = Some(Body::Bytes(bytes::Bytes::from_static(b"raw bytes")));
    let resp = h.execute(req, &op()).await.unwrap();
    assert_eq!((resp.data["body"].as_str(), resp.data["content_type"].as_str()), (Some("raw bytes"), Some("text/plain")));
    let e = h.execute(ProtocolRequest::new("GE T", "/"), &op()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
}

#[tokio::test]
async fn correlation_trace_and_idempotency_headers_go_out() {
    let srv = support::start().await;
    let h = handler(&srv.base).await;
    let id = uuid::Uuid::now_v7();
    let mut req = ProtocolRequest::new("POST", "/pay").with_correlation_id(id).with_header("X-Custom", "v");
    req.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    req.idempotency_key = Some("charge-1".into());
    let resp = h.execute(req, &op()).await.unwrap();
    assert_eq!(resp.data["correlation_id"], id.to_string());
    assert_eq!(resp.data["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert_eq!(resp.data["idempotency_key"], "charge-1");
    assert_eq!(srv.seen.headers.lock()["/pay"]["x-custom"], "v");
}

/// DESIGN §5 HTTP table, one row per assertion.
#[tokio::test]
async fn status_classification_table() {
    let srv = support::start().await;
    let h = handler(&srv.base).await;
    let rows: [(u16, ErrorKind, bool, bool); 13] = [
        (400, ErrorKind::Rejected, false, false),
        (401, ErrorKind::Authentication, false, false),
        (403, ErrorKind::Authentication, false, false),
        (404, ErrorKind::NotFound, false, false),
        (409, ErrorKind::Rejected, false, false),
        (422, ErrorKind::Rejected, false, false),
        (408, ErrorKind::Timeout, true, false),
        (429, ErrorKind::RateLimited, true, false),
        (500, ErrorKind::Unavailable, true, true),
        (502, ErrorKind::Unavailable, true, true),
        (503, ErrorKind::Unavailable, true, true),
        (504, ErrorKind::Unavailable, true, true),
        (418, ErrorKind::Rejected, false, false),
    ];
    for (code, kind, retryable, trips) in rows {
        let e = h.execute(ProtocolRequest::new("GET", format!("/status/{code}")), &op()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "status {code}: {e}");
        assert_eq!(e.is_retryable(), retryable, "retryable of {code}");
        assert_eq!(e.trips_breaker(), trips, "trips_breaker of {code}");
        let ctx = e.context().unwrap();
        assert_eq!(ctx["status"], code.to_string());
        assert_eq!(ctx["body"], format!("status {code} body"));
        assert!(!e.nothing_sent(), "a status answer means the request was sent ({code})");
    }
    for code in [200u16, 201, 204] {
        let resp = h.execute(ProtocolRequest::new("GET", format!("/status/{code}")), &op()).await.unwrap();
        assert_eq!(resp.status_code, Some(code));
    }
}

#[tokio::test]
async fn retry_after_seconds_and_http_date_are_parsed() {
    let srv = support::start().await;
    let h = handler(&srv.base).await;
    let e = h.execute(ProtocolRequest::new("GET", "/status/429").with_params(json!({"retry_after": "3"})), &op()).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    let when = chrono::Utc::now() + chrono::Duration::seconds(120);
    let date = when.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let e = h.execute(ProtocolRequest::new("GET", "/status/429").with_params(json!({"retry_after": date})), &op()).await.unwrap_err();
    let ra = e.retry_after().expect("HTTP-date parsed");
    assert!(ra > Duration::from_secs(100) && ra <= Duration::from_secs(120), "{ra:?}");
    let e = h.execute(ProtocolRequest::new("GET", "/status/408").with_params(json!({"retry_after": "2"})), &op()).await.unwrap_err();
    assert_eq!((e.kind(), e.retry_after()), (ErrorKind::RateLimited, Some(Duration::from_secs(2))), "408 with Retry-After waits as asked");
    assert!(!e.trips_breaker());
    let e = h.execute(ProtocolRequest::new("GET", "/status/503").with_params(json!({"retry_after": "5"})), &op()).await.unwrap_err();
    assert_eq!(e.context().unwrap()["retry_after_ms"], "5000");
}

#[tokio::test]
async fn connection_refused_is_connection_and_nothing_sent() {
    let base = support::closed_port().await;
    let h = handler(&base).await;
    let e = h.execute(ProtocolRequest::new("POST", "/x"), &op()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
    assert!(e.nothing_sent() && e.is_retryable() && e.trips_breaker());
}

#[tokio::test]
async fn dns_failure_is_connection() {
    let h = handler("http://onex-no-such-host.invalid:81").await;
    let e = h.execute(ProtocolRequest::new("GET", "/"), &op()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
    assert!(e.nothing_sent());
}

#[tokio::test]
async fn dropped_connection_is_unavailable_and_may_have_been_sent() {
    let base = support::start_dropping().await;
    let h = handler(&base).await;
    let e = h.execute(ProtocolRequest::new("POST", "/charge"), &op()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable() && e.trips_breaker());
    assert!(!e.nothing_sent(), "the request went out: a non-idempotent retry would be unsafe");
}

#[tokio::test]
async fn request_timeout_fires_within_a_margin() {
    let srv = support::start().await;
    let h = handler(&srv.base).await;
    let op = OperationConfig { timeout: Some(Duration::from_millis(200)), ..op() };
    let started = std::time::Instant::now();
    let e = h.execute(ProtocolRequest::new("GET", "/delay/5000"), &op).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_retryable() && e.trips_breaker());
    assert!(took >= Duration::from_millis(190) && took < Duration::from_secs(3), "{took:?}");
    // The connection's request timeout applies when the operation has none.
    let mut cfg = ConnectionConfig::new(&srv.base);
    cfg.timeouts.request = Duration::from_millis(150);
    let h2 = HttpRestHandler::new("t");
    h2.initialize(cfg).await.unwrap();
    let e = h2.execute(ProtocolRequest::new("GET", "/delay/5000"), &OperationConfig { timeout: None, ..op }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn response_limit_by_content_length() {
    let srv = support::start().await;
    let h = handler(&srv.base).await;
    let op = OperationConfig { max_response_bytes: Some(1000), ..op() };
    let e = h.execute(ProtocolRequest::new("GET", "/big/5000"), &op).await.unwrap_err();
    match e {
        onex_core::Error::TooLarge { size, limit, .. } => assert_eq!((size, limit), (5000, 1000)),
        other => panic!("expected TooLarge, got {other}"),
    }
    let ok = h.execute(ProtocolRequest::new("GET", "/big/1000"), &op).await.unwrap();
    assert_eq!(ok.data.as_str().unwrap().len(), 1000);
}

#[tokio::test]
async fn response_limit_stops_reading_a_stream() {
    let srv = support::start().await;
    let h = handler(&srv.base).await;
    // 4 KiB limit against a 2000 KiB chunked body with no Content-Length.
    let op = OperationConfig { max_response_bytes: Some(4096), ..op() };
    let e = h.execute(ProtocolRequest::new("GET", "/stream/2000"), &op).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let produced = srv.seen.hits("/stream/chunks");
    assert!(produced < 1000, "the server produced {produced} of 2000 chunks: reading did not stop");
}

#[tokio::test]
async fn request_limit_is_checked_before_sending() {
    let srv = support::start().await;
    let mut cfg = ConnectionConfig::new(&srv.base);
    cfg.options.insert("max_request_bytes".into(), "10".into());
    let h = HttpRestHandler::new("t");
    h.initialize(cfg).await.unwrap();
    let e = h.execute(ProtocolRequest::new("POST", "/upload").with_json(json!({"too": "large body"})), &op()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert_eq!(srv.seen.hits("/upload"), 0, "nothing may be sent");
    h.execute(ProtocolRequest::new("POST", "/upload").with_json(json!(1)), &op()).await.unwrap();
}

#[tokio::test]
async fn redirects_follow_the_policy() {
    let srv = support::start().await;
    let h = handler(&srv.base).await;
    assert_eq!(h.execute(ProtocolRequest::new("GET", "/redirect/3"), &op()).await.unwrap().data, "arrived");
    let e = h.execute(ProtocolRequest::new("GET", "/redirect/9"), &op()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    let mut cfg = ConnectionConfig::new(&srv.base);
    cfg.options.insert("redirects".into(), "0".into());
    let h0 = HttpRestHandler::new("t");
    h0.initialize(cfg).await.unwrap();
    let resp = h0.execute(ProtocolRequest::new("GET", "/redirect/1"), &op()).await.unwrap();
    assert_eq!(resp.status_code, Some(302));
    assert_eq!(resp.headers["location"], "/redirect/0");
}

#[tokio::test]
async fn non_json_bodies() {
    let srv = support::start().await;
    let h = handler(&srv.base).await;
    let resp = h.execute(ProtocolRequest::new("GET", "/binary"), &op()).await.unwrap();
    assert_eq!((resp.data.as_str(), resp.metadata["encoding"].as_str()), (Some("AJ+Slv8="), Some("base64")));
    let resp = h.execute(ProtocolRequest::new("GET", "/health"), &op()).await.unwrap();
    assert_eq!((resp.data.as_str(), resp.metadata["encoding"].as_str()), (Some("ok"), Some("text")));
    let e = h.execute(ProtocolRequest::new("GET", "/bad-json"), &op()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
}

#[tokio::test]
async fn auth_kinds_are_sent() {
    let srv = support::start().await;
    let cases = [
        (Auth::Basic { username: "u".into(), password: Secret::new("p") }, "authorization", "Basic dTpw"),
        (Auth::Bearer { token: Secret::new("tok") }, "authorization", "Bearer tok"),
        (Auth::ApiKey { header: "X-API-Key".into(), key: Secret::new("k1") }, "api_key", "k1"),
    ];
    for (auth, field, expected) in cases {
        let mut cfg = ConnectionConfig::new(&srv.base);
        cfg.auth = auth;
        let h = HttpRestHandler::new("t");
        h.initialize(cfg).await.unwrap();
        let resp = h.execute(ProtocolRequest::new("GET", "/who"), &op()).await.unwrap();
        assert_eq!(resp.data[field], expected);
    }
}

#[tokio::test]
async fn health_check_and_describe() {
    let srv = support::start().await;
    let h = handler(&srv.base).await;
    let health = h.health_check().await.unwrap();
    assert!(health.healthy && health.latency_ms > 0.0, "{health:?}");
    let mut cfg = ConnectionConfig::new(&srv.base);
    cfg.options.insert("health_path".into(), "status/503".into());
    let h2 = HttpRestHandler::new("t");
    h2.initialize(cfg).await.unwrap();
    let health = h2.health_check().await.unwrap();
    assert!(!health.healthy);
    assert!(health.last_error.unwrap().contains("503"));
    let d = h.describe().unwrap();
    assert_eq!(d.handler_type, "http");
    assert_eq!(d.connection["host"], "127.0.0.1");
    assert!(d.operations.contains(&"PATCH".to_string()));
}

#[tokio::test]
async fn bare_handler_lifecycle_errors() {
    let h = HttpRestHandler::new("t");
    assert_eq!(h.execute(ProtocolRequest::new("GET", "/"), &op()).await.unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(h.describe().unwrap_err().kind(), ErrorKind::InvalidState);
    let srv = support::start().await;
    h.initialize(ConnectionConfig::new(&srv.base)).await.unwrap();
    h.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(h.health_check().await.unwrap_err().kind(), ErrorKind::InvalidState);
}

mod secrets;

#[tokio::test]
async fn connect_timeout_is_a_timeout_with_nothing_sent() {
    // A listener that never accepts, with its accept queue filled: new SYNs are dropped, so
    // connecting hangs until the connect timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let _listener = socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(100), tokio::net::TcpStream::connect(addr)).await {
            fillers.push(s);
        }
    }
    let mut cfg = ConnectionConfig::new(format!("http://{addr}"));
    cfg.timeouts.connect = Duration::from_millis(300);
    let h = HttpRestHandler::new("t");
    h.initialize(cfg).await.unwrap();
    let started = std::time::Instant::now();
    let e = h.execute(ProtocolRequest::new("POST", "/x"), &op()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.nothing_sent(), "a connect timeout sent nothing: {e:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
