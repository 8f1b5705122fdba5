//! Request-response handler models and the [`ProtocolHandler`] trait (DESIGN §2.2, §2.3).

mod config;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Result;

pub use config::{Auth, ConnectionConfig, OperationConfig, PoolConfig, Timeouts, TlsConfig};

/// A request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// A JSON document.
    Json(serde_json::Value),
    /// Raw bytes.
    Bytes(#[serde(with = "crate::util::base64_bytes")] Bytes),
}

/// One call to an external system.
///
/// ```
/// use onex_core::ProtocolRequest;
/// let req = ProtocolRequest::new("GET", "/users/{id}").with_params(serde_json::json!({"id": 42}));
/// assert_eq!(req.operation, "GET");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProtocolRequest {
    /// Handler-specific operation: `GET`…`PATCH`, `db.query`, `cache.get`, `graphql.query`, …
    pub operation: String,
    /// What the operation acts on: a path, SQL text, a cache key, a GraphQL document.
    pub target: String,
    /// Parameters: path/query parameters, SQL parameters, values.
    #[serde(default)]
    pub params: serde_json::Value,
    /// Request headers (HTTP), passed through.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default)]
    pub body: Option<Body>,
    /// Correlation id, propagated as `X-Correlation-ID` where the protocol has headers.
    #[serde(default)]
    pub correlation_id: Option<Uuid>,
    /// W3C `traceparent` to propagate.
    #[serde(default)]
    pub traceparent: Option<String>,
    /// Idempotency key, sent where the protocol supports one (`Idempotency-Key`).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl ProtocolRequest {
    /// A request for `operation` on `target`.
    pub fn new(operation: impl Into<String>, target: impl Into<String>) -> Self {
        ProtocolRequest { operation: operation.into(), target: target.into(), params: serde_json::Value::Null, ..Default::default() }
    }

    /// Sets `params`.
    pub fn with_params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }

    /// Sets a JSON body.
    pub fn with_json(mut self, body: serde_json::Value) -> Self {
        self.body = Some(Body::Json(body));
        self
    }

    /// Sets a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }
}

/// A successful answer. A failed call is an `Err`, never an `Ok` with a failure flag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProtocolResponse {
    /// Protocol status (HTTP status), when the protocol has one.
    pub status_code: Option<u16>,
    /// The answer as JSON (rows, body, value).
    pub data: serde_json::Value,
    /// Response headers.
    pub headers: BTreeMap<String, String>,
    /// How long the call took (all attempts).
    #[serde(with = "crate::util::duration_ms")]
    pub duration: Duration,
    /// Handler-specific extras (affected rows, attempts, …).
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Connection pool numbers for `describe`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Configured maximum.
    pub max_size: usize,
    /// Open connections.
    pub size: usize,
    /// Idle connections.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

/// What a handler is and where it points (never credentials).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HandlerDescriptor {
    /// `http`, `postgres`, `redis`, `graphql`, …
    pub handler_type: String,
    /// Instance name.
    pub name: String,
    /// Implementation version.
    pub version: String,
    /// Capabilities (`pooling`, `transactions`, `ttl`, …).
    pub capabilities: Vec<String>,
    /// Supported operations.
    pub operations: Vec<String>,
    /// Host, port, database: never user names or passwords.
    pub connection: BTreeMap<String, String>,
    /// Pool statistics, when pooled.
    pub pool: Option<PoolStats>,
    /// Breaker state and other resilience facts, filled in by the lifecycle wrapper.
    pub resilience: BTreeMap<String, serde_json::Value>,
}

/// Result of a health check. `last_error` is sanitized.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthStatus {
    /// Whether the target answered as expected.
    pub healthy: bool,
    /// Round-trip latency of the check.
    pub latency_ms: f64,
    /// Handler- or backend-specific details (lag, pool, profile, …).
    pub details: serde_json::Value,
    /// The last error, sanitized.
    pub last_error: Option<String>,
}

impl HealthStatus {
    /// A healthy status.
    pub fn healthy(latency: Duration, details: serde_json::Value) -> Self {
        HealthStatus { healthy: true, latency_ms: latency.as_secs_f64() * 1000.0, details, last_error: None }
    }

    /// An unhealthy status with a (sanitized) error.
    pub fn unhealthy(latency: Duration, error: &crate::Error) -> Self {
        HealthStatus {
            healthy: false,
            latency_ms: latency.as_secs_f64() * 1000.0,
            details: serde_json::Value::Null,
            last_error: Some(error.report()),
        }
    }
}

/// A request-response handler for one external system.
///
/// Implementations do the protocol work only. Lifecycle rules (no calls before
/// `initialize` or after `shutdown`, idempotent `initialize`), health caching, timeouts,
/// retries and the circuit breaker are applied once by [`crate::lifecycle::ManagedHandler`],
/// which every handler is wrapped in; implementations never loop on their own.
#[async_trait]
pub trait ProtocolHandler: Send + Sync {
    /// `http`, `postgres`, `redis`, `graphql`, …
    fn handler_type(&self) -> &str;
    /// Opens pools and checks the configuration. Called once by the wrapper.
    async fn initialize(&self, config: ConnectionConfig) -> Result<()>;
    /// Closes pools, waiting up to `timeout` for calls in flight.
    async fn shutdown(&self, timeout: Duration) -> Result<()>;
    /// Performs one call (one attempt; the wrapper retries).
    async fn execute(&self, req: ProtocolRequest, op: &OperationConfig) -> Result<ProtocolResponse>;
    /// Describes the handler (no credentials).
    fn describe(&self) -> Result<HandlerDescriptor>;
    /// Checks the target with a cheap round trip.
    async fn health_check(&self) -> Result<HealthStatus>;
}
