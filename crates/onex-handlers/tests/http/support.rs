//! A local HTTP test server that can inject delays, status sequences, 429 with Retry-After,
//! oversize bodies and dropped connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use parking_lot::Mutex;
use serde_json::json;

/// What the server saw, for assertions.
#[derive(Default)]
pub(crate) struct Seen {
    /// Hits per path.
    pub(crate) hits: Mutex<HashMap<String, u32>>,
    /// Headers of the last request to each path.
    pub(crate) headers: Mutex<HashMap<String, HeaderMap>>,
}

impl Seen {
    pub(crate) fn hits(&self, path: &str) -> u32 {
        self.hits.lock().get(path).copied().unwrap_or(0)
    }
}

/// A running server.
pub(crate) struct TestServer {
    pub(crate) base: String,
    pub(crate) seen: Arc<Seen>,
}

fn note(seen: &Seen, path: String, headers: &HeaderMap) -> u32 {
    seen.headers.lock().insert(path.clone(), headers.clone());
    let mut hits = seen.hits.lock();
    let n = hits.entry(path).or_default();
    *n += 1;
    *n
}

async fn echo(
    State(seen): State<Arc<Seen>>,
    uri: axum::http::Uri,
    method: axum::http::Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    note(&seen, uri.path().to_string(), &headers);
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(String::from);
    axum::Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "body": String::from_utf8_lossy(&body),
        "content_type": h("content-type"),
        "traceparent": h("traceparent"),
        "correlation_id": h("x-correlation-id"),
        "idempotency_key": h("idempotency-key"),
        "authorization": h("authorization"),
        "api_key": h("x-api-key"),
    }))
    .into_response()
}

async fn status(
    State(seen): State<Arc<Seen>>,
    Path(code): Path<u16>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    note(&seen, format!("/status/{code}"), &headers);
    let mut resp = (StatusCode::from_u16(code).unwrap(), format!("status {code} body")).into_response();
    if let Some(ra) = q.get("retry_after") {
        resp.headers_mut().insert("retry-after", ra.parse().unwrap());
    }
    resp
}

/// `/seq/{key}?codes=503,503,200`: the n-th hit of `key` answers the n-th code (the last repeats).
async fn sequence(
    State(seen): State<Arc<Seen>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let n = note(&seen, format!("/seq/{key}"), &headers) as usize;
    let codes: Vec<u16> = q.get("codes").map(|c| c.split(',').map(|x| x.parse().unwrap()).collect()).unwrap_or_else(|| vec![200]);
    let code = codes[(n - 1).min(codes.len() - 1)];
    let mut resp = (StatusCode::from_u16(code).unwrap(), axum::Json(json!({"hit": n, "code": code}))).into_response();
    if let Some(ra) = q.get("retry_after") {
        resp.headers_mut().insert("retry-after", ra.parse().unwrap());
    }
    resp
}

async fn delay(Path(ms): Path<u64>) -> Response {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    axum::Json(json!({"slept_ms": ms})).into_response()
}

async fn big(Path(n): Path<usize>) -> Response {
    vec![b'x'; n].into_response()
}

/// Streams `n` KiB in 1 KiB chunks without Content-Length; counts chunks actually produced.
async fn stream(State(seen): State<Arc<Seen>>, Path(kib): Path<usize>, headers: HeaderMap) -> Response {
    note(&seen, "/stream".into(), &headers);
    let seen2 = seen.clone();
    let chunks = futures::stream::unfold(0usize, move |i| {
        let seen = seen2.clone();
        async move {
            if i >= kib {
                return None;
            }
            *seen.hits.lock().entry("/stream/chunks".into()).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
            Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'y'; 1024])), i + 1))
        }
    });
    Response::new(Body::from_stream(chunks))
}

async fn redirect(Path(n): Path<u32>) -> Response {
    if n == 0 {
        return "arrived".into_response();
    }
    (StatusCode::FOUND, [("location", format!("/redirect/{}", n - 1))]).into_response()
}

async fn binary() -> Response {
    ([("content-type", "application/octet-stream")], vec![0u8, 159, 146, 150, 255]).into_response()
}

async fn bad_json() -> Response {
    ([("content-type", "application/json")], "{not json").into_response()
}

/// Starts the server on 127.0.0.1:0.
pub(crate) async fn start() -> TestServer {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/status/{code}", any(status))
        .route("/seq/{key}", any(sequence))
        .route("/delay/{ms}", get(delay))
        .route("/big/{n}", get(big))
        .route("/stream/{kib}", get(stream))
        .route("/redirect/{n}", get(redirect))
        .route("/binary", get(binary))
        .route("/bad-json", get(bad_json))
        .fallback(echo)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    TestServer { base: format!("http://{addr}"), seen }
}

/// A server that reads each request and closes the connection without answering.
pub(crate) async fn start_dropping() -> String {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                drop(sock);
            });
        }
    });
    format!("http://{addr}")
}

/// A loopback port with nothing listening.
pub(crate) async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
