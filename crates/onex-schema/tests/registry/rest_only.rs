//! What only the REST client has: HTTP details (auth, content type, error answers, encoding).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use onex_core::{ErrorKind, SchemaRegistry, SchemaType, Secret, VersionSpec};
use onex_schema::{ConfluentRegistryClient, SqliteSchemaRegistry};

use crate::support::{code, expect_kind};

/// Requires basic auth `app:s3cret` and the registry content type on requests with a body.
async fn guard(request: Request, next: Next) -> Response {
    let auth = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if auth != Some("Basic YXBwOnMzY3JldA==") {
        return (StatusCode::UNAUTHORIZED, r#"{"error_code": 40101, "message": "Unauthorized"}"#).into_response();
    }
    if matches!(*request.method(), Method::POST | Method::PUT) {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if content_type != Some("application/vnd.schemaregistry.v1+json") {
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("unexpected content type {content_type:?}")).into_response();
        }
    }
    next.run(request).await
}

async fn guarded_server() -> (String, tempfile::TempDir, tokio::task::JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn SchemaRegistry> = Arc::new(SqliteSchemaRegistry::open(dir.path().join("onex.db")).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = onex_schema::rest_api::router(store).layer(from_fn(guard));
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, dir, server)
}

#[tokio::test]
async fn basic_auth_is_sent_never_shown_and_refusal_is_authentication() {
    let (url, _dir, server) = guarded_server().await;
    let anonymous = ConfluentRegistryClient::new(&url).unwrap();
    let err = expect_kind(anonymous.subjects().await, ErrorKind::Authentication);
    assert_eq!(code(&err), Some(40101));

    let wrong = ConfluentRegistryClient::new(&url).unwrap().with_basic_auth("app", Secret::new("wrong-pass"));
    let err = expect_kind(wrong.subjects().await, ErrorKind::Authentication);
    assert!(!format!("{err} {err:?} {wrong:?}").contains("wrong-pass"));

    let with_url_credentials = url.replace("http://", "http://app:s3cret@");
    let client = ConfluentRegistryClient::new(&with_url_credentials).unwrap();
    assert!(!format!("{client:?}").contains("s3cret"));
    // Registering and checking send bodies: the guard also proves the content type.
    let info = client.register("team/orders value", r#"{"type": "string"}"#, SchemaType::Json).await.unwrap();
    assert_eq!(info.subject, "team/orders value", "subjects are percent-encoded in paths");
    assert_eq!(client.get("team/orders value", VersionSpec::Latest).await.unwrap(), info);
    assert!(client.check_compatibility("team/orders value", r#"{"type": "string"}"#, None).await.unwrap().compatible);
    client.set_compatibility(Some("team/orders value"), onex_core::CompatibilityMode::Full).await.unwrap();
    server.abort();
}

/// A server that answers like a failing or rate-limiting registry.
async fn failing_server() -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route(
            "/subjects",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, r#"{"error_code": 50001, "message": "Error in the backend datastore"}"#) }),
        )
        .route("/subjects/{s}/versions", get(|| async { (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>") }))
        .route(
            "/config",
            get(|| async {
                (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")], r#"{"error_code": 42901, "message": "slow down"}"#)
            }),
        )
        .route("/schemas/ids/{id}", get(|| async { (StatusCode::OK, "not json") }))
        .route("/config/{s}", get(|| async { (StatusCode::OK, vec![b' '; 17 * 1024 * 1024]) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (url, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

#[tokio::test]
async fn error_answers_map_to_error_kinds() {
    let (url, server) = failing_server().await;
    let client = ConfluentRegistryClient::new(&url).unwrap();
    let err = expect_kind(client.subjects().await, ErrorKind::Unavailable);
    assert_eq!(code(&err), Some(50001));
    assert!(err.is_retryable());
    let err = expect_kind(client.versions("x").await, ErrorKind::Unavailable);
    assert!(err.to_string().contains("502"), "{err}");
    let err = expect_kind(client.get_compatibility(None).await, ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    expect_kind(client.get_by_id(1).await, ErrorKind::Protocol);
    let err = expect_kind(client.get_compatibility(Some("huge")).await, ErrorKind::TooLarge);
    assert!(err.to_string().contains("limit 16777216"), "{err}");
    server.abort();
}

#[tokio::test]
async fn unknown_endpoints_and_bad_versions_answer_in_confluent_form() {
    let backend = crate::support::embedded().await;
    let (url, server) = crate::support::serve(backend.registry.clone()).await;
    let client = ConfluentRegistryClient::new(&format!("{url}/nothing-here")).unwrap();
    expect_kind(client.subjects().await, ErrorKind::NotFound);
    // `latest` and `-1` are the same version; 0 is invalid (42202).
    let client = ConfluentRegistryClient::new(&url).unwrap();
    client.register("v-value", "{}", SchemaType::Json).await.unwrap();
    let http = raw_get(&format!("{url}/subjects/v-value/versions/-1")).await;
    assert!(http.contains("\"version\":1"), "{http}");
    let http = raw_get(&format!("{url}/subjects/v-value/versions/0")).await;
    assert!(http.contains("42202"), "{http}");
    assert!(http.to_ascii_lowercase().contains("content-type: application/vnd.schemaregistry.v1+json"), "{http}");
    let http = raw_get(&format!("{url}/schemas/types")).await;
    assert!(http.starts_with("HTTP/1.1 200") && http.ends_with(r#"["JSON"]"#), "{http}");
    let http = raw_get(&format!("{url}/")).await;
    assert!(http.starts_with("HTTP/1.1 200") && http.ends_with("{}"), "{http}");
    server.abort();
}

/// A plain HTTP/1.1 GET over a TCP stream, so the test sees the raw answer.
async fn raw_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream.write_all(format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}
