//! [`RedisHandler`]: a JSON cache over Redis (operations in [`ops`]).
//!
//! Connections are redis `ConnectionManager`s: multiplexed (many calls share one socket) and
//! reconnecting in the background after a failure. Option `connections` (default 1) opens
//! that many and spreads calls over them; option `key_prefix` namespaces every key.
//! `auth: basic` supplies a username/password when the URL has none.

mod errors;
pub mod ops;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use onex_core::{
    Auth, ConnectionConfig, Error, HandlerDescriptor, HealthStatus, OperationConfig, ProtocolHandler, ProtocolRequest, ProtocolResponse,
    Result,
};
use parking_lot::RwLock;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::IntoConnectionInfo as _;
use serde_json::json;
use tracing::Instrument as _;

use crate::common::{millis, not_initialized, InFlight};
pub use ops::REDIS_OPERATIONS;

struct RedisState {
    conns: Vec<ConnectionManager>,
    next: AtomicUsize,
    host: String,
    port: u16,
    db: i64,
    prefix: String,
    request_timeout: Duration,
}

// Hand-written: redis' own Debug of its connection info prints the password.
impl fmt::Debug for RedisState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisState")
            .field("connections", &self.conns.len())
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .finish()
    }
}

impl RedisState {
    fn endpoint(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.db)
    }

    fn conn(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }
}

/// The Redis cache handler. One attempt per `execute`.
///
/// ```no_run
/// use onex_core::{ConnectionConfig, OperationConfig, ProtocolHandler, ProtocolRequest};
/// # async fn f() -> onex_core::Result<()> {
/// let cache = onex_handlers::RedisHandler::new("sessions");
/// cache.initialize(ConnectionConfig::new("redis://127.0.0.1:6379")).await?;
/// let set = ProtocolRequest::new("cache.set", "user:1").with_json(serde_json::json!({"name": "Ada"}));
/// cache.execute(set.with_params(serde_json::json!({"ttl_secs": 60})), &OperationConfig::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisHandler {
    name: String,
    state: RwLock<Option<Arc<RedisState>>>,
    in_flight: Arc<InFlight>,
}

impl Default for RedisHandler {
    fn default() -> Self {
        RedisHandler::new("redis")
    }
}

impl RedisHandler {
    /// A handler named `name`, not yet initialized.
    pub fn new(name: impl Into<String>) -> Self {
        RedisHandler { name: name.into(), state: RwLock::new(None), in_flight: Arc::new(InFlight::default()) }
    }

    fn state(&self) -> Result<Arc<RedisState>> {
        self.state.read().clone().ok_or_else(|| not_initialized("redis"))
    }

    async fn call(&self, state: &RedisState, req: ProtocolRequest, op: &OperationConfig) -> Result<ProtocolResponse> {
        let started = Instant::now();
        let command = ops::parse(&req, &state.prefix)?;
        let what = format!("{} {}", req.operation, req.target);
        let timeout = op.timeout.unwrap_or(state.request_timeout);
        let mut conn = state.conn();
        let (data, hit) = match tokio::time::timeout(timeout, ops::run(&mut conn, command)).await {
            Ok(r) => r.map_err(|e| errors::classify(e, &what))?,
            Err(_) => return Err(Error::timeout(format!("{what}: Redis at {} did not answer in time", state.endpoint()), timeout)),
        };
        let mut metadata = BTreeMap::new();
        if let Some(hit) = hit {
            metadata.insert("hit".to_string(), json!(hit));
        }
        Ok(ProtocolResponse { status_code: None, data, headers: BTreeMap::new(), duration: started.elapsed(), metadata })
    }
}

#[async_trait]
impl ProtocolHandler for RedisHandler {
    fn handler_type(&self) -> &str {
        "redis"
    }

    async fn initialize(&self, config: ConnectionConfig) -> Result<()> {
        let url = config.resolved_url()?;
        let shown = onex_core::sanitize::sanitize(&url);
        if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://") || url.starts_with("redis+unix://"))
        {
            return Err(Error::config(format!("the redis handler needs a redis:// URL, e.g. redis://127.0.0.1:6379/0; got {shown:?}")));
        }
        let mut info = url.as_str().into_connection_info().map_err(|e| Error::config(format!("invalid Redis URL {shown:?}: {}", e)))?;
        if let Auth::Basic { username, password } = &config.auth {
            if info.redis.password.is_none() {
                info.redis.username = Some(username.clone()).filter(|u| !u.is_empty());
                info.redis.password = Some(password.expose().to_string());
            }
        }
        let (host, port) = match &info.addr {
            redis::ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
            redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
            redis::ConnectionAddr::Unix(path) => (path.display().to_string(), 0),
        };
        let db = info.redis.db;
        let count: usize = config.option("connections", 1)?;
        if count == 0 {
            return Err(Error::config("option connections must be at least 1"));
        }
        let client =
            redis::Client::open(info).map_err(|e| Error::config(format!("invalid Redis configuration for {host}:{port}: {}", e)))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(config.timeouts.connect)
            .set_response_timeout(config.timeouts.request)
            // The backoff builder starts at 1 s and multiplies by `factor`: keep reconnects
            // quick (≤ 1 s apart) and let the lifecycle wrapper own real retries.
            .set_factor(2)
            .set_max_delay(1000)
            .set_number_of_retries(1);
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count {
            let conn = ConnectionManager::new_with_config(client.clone(), manager_config.clone()).await.map_err(|e| {
                let cause = errors::classify(e, &format!("connecting to {host}:{port}"));
                Error::initialization(format!("cannot connect to Redis at {host}:{port}/{db}: {cause}")).with("kind", cause.kind())
            })?;
            conns.push(conn);
        }
        let prefix = config.options.get("key_prefix").cloned().unwrap_or_default();
        tracing::debug!(handler = %self.name, endpoint = %format!("{host}:{port}/{db}"), "redis handler initialized");
        *self.state.write() = Some(Arc::new(RedisState {
            conns,
            next: AtomicUsize::new(0),
            host,
            port,
            db,
            prefix,
            request_timeout: config.timeouts.request,
        }));
        Ok(())
    }

    async fn shutdown(&self, timeout: Duration) -> Result<()> {
        let state = self.state.write().take();
        if state.is_some() && !self.in_flight.drain(timeout).await {
            tracing::warn!(handler = %self.name, ?timeout, "redis handler shut down with calls still in flight");
        }
        Ok(())
    }

    async fn execute(&self, req: ProtocolRequest, op: &OperationConfig) -> Result<ProtocolResponse> {
        let state = self.state()?;
        let _guard = self.in_flight.enter();
        let span = tracing::debug_span!("redis.call", handler = %self.name, operation = %req.operation,
            correlation_id = req.correlation_id.map(|c| c.to_string()).unwrap_or_default());
        async {
            let result = self.call(&state, req, op).await;
            match &result {
                Ok(r) => tracing::debug!(duration_ms = millis(r.duration), "redis call ok"),
                Err(e) => tracing::debug!(error = %e.report(), kind = %e.kind(), "redis call failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    fn describe(&self) -> Result<HandlerDescriptor> {
        let state = self.state()?;
        let mut connection = BTreeMap::new();
        connection.insert("host".to_string(), state.host.clone());
        connection.insert("port".to_string(), state.port.to_string());
        connection.insert("db".to_string(), state.db.to_string());
        Ok(HandlerDescriptor {
            handler_type: "redis".into(),
            name: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: ["multiplexed", "reconnecting", "ttl", "json_values"].map(String::from).to_vec(),
            operations: REDIS_OPERATIONS.map(String::from).to_vec(),
            connection,
            pool: Some(onex_core::PoolStats {
                max_size: state.conns.len(),
                size: state.conns.len(),
                available: state.conns.len(),
                waiting: 0,
            }),
            resilience: Default::default(),
        })
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        let state = self.state()?;
        let started = Instant::now();
        let mut conn = state.conn();
        let ping = tokio::time::timeout(state.request_timeout, redis::cmd("PING").query_async::<String>(&mut conn)).await;
        let latency = started.elapsed();
        let details = json!({"endpoint": state.endpoint()});
        Ok(match ping {
            Ok(Ok(pong)) if pong == "PONG" => HealthStatus::healthy(latency, details),
            Ok(Ok(other)) => {
                let mut h = HealthStatus::unhealthy(latency, &Error::protocol(format!("PING answered {other:?}")));
                h.details = details;
                h
            }
            Ok(Err(e)) => {
                let mut h = HealthStatus::unhealthy(latency, &errors::classify(e, "PING"));
                h.details = details;
                h
            }
            Err(_) => {
                let mut h = HealthStatus::unhealthy(latency, &Error::timeout("PING", state.request_timeout));
                h.details = details;
                h
            }
        })
    }
}
