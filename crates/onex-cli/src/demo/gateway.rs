//! The payment gateway the demo charges: a real HTTP server on a loopback port that fails the
//! first charge of one order with a 503, so the handler's retry has something to absorb.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use onex_core::{Error, Result};
use parking_lot::Mutex;

#[derive(Clone)]
struct Gateway {
    flaky_order: String,
    failed_once: Arc<Mutex<HashSet<String>>>,
    charges: Arc<Mutex<Vec<serde_json::Value>>>,
}

async fn charge(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> (StatusCode, Json<serde_json::Value>) {
    let order = body["order_id"].as_str().unwrap_or_default().to_string();
    if order == gw.flaky_order && gw.failed_once.lock().insert(order.clone()) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"error": "acquirer timeout, try again"})));
    }
    let charge = serde_json::json!({
        "charge_id": format!("ch_{}", uuid::Uuid::now_v7().simple()),
        "order_id": order,
        "amount_cents": body["amount_cents"],
        "status": "captured",
        "correlation_id": headers.get("x-correlation-id").and_then(|v| v.to_str().ok()),
    });
    gw.charges.lock().push(charge.clone());
    (StatusCode::CREATED, Json(charge))
}

/// Starts the gateway on 127.0.0.1 (a free port); returns its base URL and the shutdown handle.
pub(crate) async fn start(flaky_order: &str) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let gw = Gateway { flaky_order: flaky_order.to_string(), failed_once: Arc::default(), charges: Arc::default() };
    let app = Router::new().route("/charges", post(charge)).route("/health", axum::routing::get(|| async { "ok" })).with_state(gw);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::initialization("cannot bind the demo payment gateway").with_source(e))?;
    let addr = listener.local_addr().map_err(|e| Error::initialization("no local address").with_source(e))?;
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), handle))
}
