//! [`HttpRestHandler`]: HTTP/REST calls over a pooled reqwest client.
//!
//! - `operation` is the method (`GET`, `POST`, … any valid token); `target` is a path
//!   relative to the base URL with `{name}` placeholders (see [`request`] for the parameter rule).
//! - Options (`ConnectionConfig::options`): `health_path` (default `/health`), `redirects`
//!   (default 5, 0 = do not follow), `max_request_bytes` (checked before sending).
//! - `pool.max` is the idle connections kept per host, `pool.idle_timeout` closes idle ones.
//! - Response: 2xx and 3xx (a 3xx arrives only when redirects are not followed) are `Ok`; JSON
//!   bodies are parsed into `data`, other bodies are a string, or base64 when not UTF-8
//!   (`metadata.encoding` says which). Failures follow DESIGN §5 (see [`response`]).

pub mod request;
pub mod response;
mod settings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use onex_core::{
    ConnectionConfig, Error, HandlerDescriptor, HealthStatus, OperationConfig, ProtocolHandler, ProtocolRequest, ProtocolResponse, Result,
};
use parking_lot::RwLock;
use serde_json::json;
use tracing::Instrument as _;

use crate::common::{millis, not_initialized, InFlight};
use settings::HttpSettings;
pub use settings::{DEFAULT_HEALTH_PATH, DEFAULT_REDIRECTS};

/// Methods listed in `describe` (any valid method token is accepted).
pub const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

#[derive(Debug)]
struct HttpState {
    client: reqwest::Client,
    settings: HttpSettings,
}

/// The HTTP/REST handler. One attempt per `execute`; wrap it in the lifecycle wrapper for
/// retries, breaker and health caching.
///
/// ```no_run
/// use onex_core::{ConnectionConfig, OperationConfig, ProtocolHandler, ProtocolRequest};
/// # async fn f() -> onex_core::Result<()> {
/// let http = onex_handlers::HttpRestHandler::new("users-api");
/// http.initialize(ConnectionConfig::new("http://127.0.0.1:8080")).await?;
/// let req = ProtocolRequest::new("GET", "/users/{id}").with_params(serde_json::json!({"id": 42}));
/// let resp = http.execute(req, &OperationConfig::default()).await?;
/// println!("{}", resp.data);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HttpRestHandler {
    name: String,
    state: RwLock<Option<Arc<HttpState>>>,
    in_flight: Arc<InFlight>,
}

impl Default for HttpRestHandler {
    fn default() -> Self {
        HttpRestHandler::new("http")
    }
}

impl HttpRestHandler {
    /// A handler named `name` (shown in `describe` and logs), not yet initialized.
    pub fn new(name: impl Into<String>) -> Self {
        HttpRestHandler { name: name.into(), state: RwLock::new(None), in_flight: Arc::new(InFlight::default()) }
    }

    /// Checks a connection config without connecting: what `initialize` would reject.
    pub fn validate(config: &ConnectionConfig) -> Result<()> {
        let settings = HttpSettings::from_config(config)?;
        settings.client(&config.tls).map(|_| ())
    }

    fn state(&self) -> Result<Arc<HttpState>> {
        self.state.read().clone().ok_or_else(|| not_initialized("http"))
    }

    async fn call(&self, state: &HttpState, req: ProtocolRequest, op: &OperationConfig) -> Result<ProtocolResponse> {
        let started = Instant::now();
        let settings = &state.settings;
        let method_name = req.operation.to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method_name.as_bytes()).map_err(|_| {
            Error::rejected(format!("{:?} is not an HTTP method; use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS", req.operation))
        })?;
        let url = request::build_url(&settings.base, &req)?;
        let mut headers = request::build_headers(&req)?;
        if let Some((name, value)) = &settings.auth_header {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        let body = request::build_body(&req.body)?;
        let timeout = op.timeout.unwrap_or(settings.request_timeout);
        let mut builder = state.client.request(method.clone(), &url).timeout(timeout);
        if let Some((bytes, content_type)) = body {
            if let Some(limit) = settings.max_request_bytes {
                if bytes.len() as u64 > limit {
                    return Err(Error::too_large(
                        format!("request body of {method_name} {url} (raise option max_request_bytes if expected)"),
                        bytes.len() as u64,
                        limit,
                    ));
                }
            }
            if !headers.contains_key(reqwest::header::CONTENT_TYPE) {
                headers.insert(reqwest::header::CONTENT_TYPE, reqwest::header::HeaderValue::from_static(content_type));
            }
            builder = builder.body(bytes);
        }
        let resp = builder.headers(headers).send().await.map_err(|e| request_failed(e, &method_name, &url, timeout))?;
        let status = resp.status();
        let resp_headers = response::header_map(resp.headers());
        if !(status.is_success() || status.is_redirection()) {
            let header_copy = resp.headers().clone();
            let prefix = read_prefix(resp).await;
            return Err(response::classify_status(status, &header_copy, &method_name, &url, &response::snippet(&prefix)));
        }
        let content_type = resp_headers.get("content-type").cloned();
        let body = if method == reqwest::Method::HEAD {
            bytes::Bytes::new()
        } else {
            response::read_limited(resp, op.max_response_bytes, &method_name, &url, timeout).await?
        };
        let (data, encoding) = response::body_to_json(&body, content_type.as_deref(), &url)?;
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("encoding".to_string(), json!(encoding));
        metadata.insert("bytes".to_string(), json!(body.len()));
        Ok(ProtocolResponse { status_code: Some(status.as_u16()), data, headers: resp_headers, duration: started.elapsed(), metadata })
    }
}

fn request_failed(e: reqwest::Error, method: &str, url: &str, timeout: Duration) -> Error {
    response::classify_transport(e, method, url, timeout)
}

/// Reads the start of an error body for the error context, then drops the connection's rest.
async fn read_prefix(mut resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < 1024 {
        match resp.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c),
            _ => break,
        }
    }
    out
}

#[async_trait]
impl ProtocolHandler for HttpRestHandler {
    fn handler_type(&self) -> &str {
        "http"
    }

    async fn initialize(&self, config: ConnectionConfig) -> Result<()> {
        let settings = HttpSettings::from_config(&config)?;
        let client = settings.client(&config.tls)?;
        tracing::debug!(handler = %self.name, base = %settings.base, auth = settings.auth_kind, "http handler initialized");
        *self.state.write() = Some(Arc::new(HttpState { client, settings }));
        Ok(())
    }

    async fn shutdown(&self, timeout: Duration) -> Result<()> {
        let state = self.state.write().take();
        if state.is_some() && !self.in_flight.drain(timeout).await {
            tracing::warn!(handler = %self.name, ?timeout, "http handler shut down with calls still in flight");
        }
        Ok(())
    }

    async fn execute(&self, req: ProtocolRequest, op: &OperationConfig) -> Result<ProtocolResponse> {
        let state = self.state()?;
        let _guard = self.in_flight.enter();
        let span = tracing::debug_span!("http.call", handler = %self.name, method = %req.operation, target = %req.target,
            correlation_id = req.correlation_id.map(|c| c.to_string()).unwrap_or_default());
        async {
            let result = self.call(&state, req, op).await;
            match &result {
                Ok(r) => tracing::debug!(status = r.status_code, duration_ms = millis(r.duration), "http call ok"),
                Err(e) => tracing::debug!(error = %e.report(), kind = %e.kind(), "http call failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    fn describe(&self) -> Result<HandlerDescriptor> {
        let state = self.state()?;
        let s = &state.settings;
        let mut connection = std::collections::BTreeMap::new();
        connection.insert("host".to_string(), s.host.clone());
        connection.insert("port".to_string(), s.port.to_string());
        connection.insert("base_url".to_string(), s.base.clone());
        connection.insert("auth".to_string(), s.auth_kind.to_string());
        connection.insert("pool_max_idle_per_host".to_string(), s.pool_max_idle.to_string());
        connection.insert("redirects".to_string(), s.redirects.to_string());
        Ok(HandlerDescriptor {
            handler_type: "http".into(),
            name: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: ["pooling", "timeouts", "redirects", "size_limits", "auth", "trace_propagation"].map(String::from).to_vec(),
            operations: HTTP_METHODS.map(String::from).to_vec(),
            connection,
            pool: None,
            resilience: Default::default(),
        })
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        let state = self.state()?;
        let s = &state.settings;
        let url = format!("{}{}", s.base, s.health_path);
        let started = Instant::now();
        let mut builder = state.client.get(&url).timeout(s.request_timeout);
        if let Some((name, value)) = &s.auth_header {
            builder = builder.header(name.clone(), value.clone());
        }
        let outcome = match builder.send().await {
            Ok(resp) if resp.status().is_success() => Ok(resp.status().as_u16()),
            Ok(resp) => Err(response::classify_status(resp.status(), resp.headers(), "GET", &url, "")),
            Err(e) => Err(request_failed(e, "GET", &url, s.request_timeout)),
        };
        let latency = started.elapsed();
        Ok(match outcome {
            Ok(status) => HealthStatus::healthy(latency, json!({"url": url, "status": status})),
            Err(e) => {
                let mut h = HealthStatus::unhealthy(latency, &e);
                h.details = json!({"url": url});
                h
            }
        })
    }
}
