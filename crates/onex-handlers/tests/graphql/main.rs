//! GraphQlHandler against a small GraphQL endpoint written here (there is no GraphQL server
//! on the machine): it checks the request shape and answers data, errors with partial data,
//! or HTTP failures.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use onex_core::{ConnectionConfig, ErrorKind, OperationConfig, ProtocolHandler, ProtocolRequest};
use onex_handlers::GraphQlHandler;
use parking_lot::Mutex;
use serde_json::{json, Value};

type Seen = Arc<Mutex<Vec<(Value, Option<String>)>>>;

async fn endpoint(seen: Seen, headers: HeaderMap, Json(body): Json<Value>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let corr = headers.get("x-correlation-id").and_then(|v| v.to_str().ok()).map(String::from);
    seen.lock().push((body.clone(), corr));
    let query = body["query"].as_str().unwrap_or_default().to_string();
    if query.contains("__typename") {
        return Json(json!({"data": {"__typename": "Query"}})).into_response();
    }
    if query.contains("partial") {
        return Json(json!({
            "data": {"user": {"name": "Ada"}, "orders": null},
            "errors": [{"message": "orders service down", "path": ["orders"], "locations": [{"line": 1, "column": 20}]}]
        }))
        .into_response();
    }
    if query.contains("broken") {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    if query.starts_with("mutation") {
        return Json(
            json!({"data": {"charge": {"amount": body["variables"]["amount"], "op": body["operationName"]}}, "extensions": {"cost": 3}}),
        )
        .into_response();
    }
    Json(json!({"data": {"user": {"id": body["variables"]["id"], "name": "Ada"}}})).into_response()
}

async fn start() -> (GraphQlHandler, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = Router::new().route("/graphql", post(move |h: HeaderMap, b: Json<Value>| endpoint(s.clone(), h, b)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let h = GraphQlHandler::new("gql");
    h.initialize(ConnectionConfig::new(format!("http://{addr}/graphql"))).await.unwrap();
    (h, seen)
}

#[tokio::test]
async fn query_with_variables_and_operation_name() {
    let (h, seen) = start().await;
    let id = uuid::Uuid::now_v7();
    let req = ProtocolRequest::new("graphql.query", "query User($id: ID!) { user(id: $id) { id name } }")
        .with_params(json!({"variables": {"id": "u1"}, "operationName": "User"}))
        .with_correlation_id(id);
    let resp = h.execute(req, &OperationConfig::default()).await.unwrap();
    assert_eq!(resp.data, json!({"user": {"id": "u1", "name": "Ada"}}));
    assert_eq!(resp.status_code, Some(200));
    let (body, corr) = seen.lock()[0].clone();
    assert_eq!(
        body,
        json!({"query": "query User($id: ID!) { user(id: $id) { id name } }", "variables": {"id": "u1"}, "operationName": "User"})
    );
    assert_eq!(corr, Some(id.to_string()));
}

#[tokio::test]
async fn mutation_and_extensions() {
    let (h, _) = start().await;
    let req = ProtocolRequest::new("graphql.mutation", "mutation Charge($amount: Int!) { charge(amount: $amount) { amount } }")
        .with_params(json!({"variables": {"amount": 42}, "operationName": "Charge"}));
    let resp = h.execute(req, &OperationConfig { idempotent: false, ..Default::default() }).await.unwrap();
    assert_eq!(resp.data, json!({"charge": {"amount": 42, "op": "Charge"}}));
    assert_eq!(resp.metadata["extensions"], json!({"cost": 3}));
    let e = h.execute(ProtocolRequest::new("graphql.query", "mutation { x }"), &OperationConfig::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
}

#[tokio::test]
async fn errors_array_is_rejected_with_messages_paths_and_partial_data() {
    let (h, _) = start().await;
    let e = h
        .execute(ProtocolRequest::new("graphql.query", "{ partial { user { name } orders { id } } }"), &OperationConfig::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("orders service down"), "{e}");
    let ctx = e.context().unwrap();
    assert_eq!(serde_json::from_str::<Value>(&ctx["errors"]).unwrap(), json!([{"message": "orders service down", "path": ["orders"]}]));
    assert_eq!(serde_json::from_str::<Value>(&ctx["data"]).unwrap(), json!({"user": {"name": "Ada"}, "orders": null}));
}

#[tokio::test]
async fn http_failures_keep_http_classification_and_health() {
    let (h, _) = start().await;
    let e = h.execute(ProtocolRequest::new("graphql.query", "{ broken }"), &OperationConfig::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.is_retryable() && e.trips_breaker());
    let health = h.health_check().await.unwrap();
    assert!(health.healthy, "{health:?}");
    let d = h.describe().unwrap();
    assert_eq!((d.handler_type.as_str(), d.operations.len()), ("graphql", 2));
    let e = h.execute(ProtocolRequest::new("graphql.subscribe", "{ a }"), &OperationConfig::default()).await.unwrap_err();
    assert!(e.to_string().contains("graphql.query"), "{e}");
}
