//! [`PostgresHandler`]: SQL over a deadpool-postgres pool of tokio-postgres connections.
//!
//! | operation | target | params | data |
//! |---|---|---|---|
//! | `db.query` | one SQL statement | JSON array for `$1…` | array of row objects ([`rows`]), at most `max_response_bytes` of values |
//! | `db.execute` | one SQL statement | JSON array | `{"affected": n}` |
//! | `db.transaction` | ignored | statements ([`transaction`]) | one result per statement |
//!
//! Statements are prepared once per connection and cached; parameters are bound by the
//! prepared types ([`params`]), never interpolated. One statement per call: text with several
//! statements is rejected. Failures are classified by SQLSTATE ([`errors`]). A call that
//! outlives its timeout is cancelled on the server and its connection leaves the pool.

pub mod errors;
pub mod numeric;
pub mod params;
pub mod rows;
mod settings;
pub mod transaction;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use futures::TryStreamExt as _;
use onex_core::{
    ConnectionConfig, Error, HandlerDescriptor, HealthStatus, OperationConfig, PoolStats, ProtocolHandler, ProtocolRequest,
    ProtocolResponse, Result,
};
use parking_lot::RwLock;
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;
use tracing::Instrument as _;

use crate::common::{millis, not_initialized, unknown_operation, InFlight};
use settings::PgEndpoint;

/// Operations of the PostgreSQL handler.
pub const POSTGRES_OPERATIONS: [&str; 3] = ["db.query", "db.execute", "db.transaction"];

#[derive(Debug)]
struct PgState {
    pool: Pool,
    endpoint: PgEndpoint,
}

/// The PostgreSQL handler. One attempt per `execute`.
///
/// ```no_run
/// use onex_core::{ConnectionConfig, OperationConfig, ProtocolHandler, ProtocolRequest};
/// # async fn f() -> onex_core::Result<()> {
/// let pg = onex_handlers::PostgresHandler::new("orders-db");
/// pg.initialize(ConnectionConfig::new("postgres://root@127.0.0.1/test")).await?;
/// let req = ProtocolRequest::new("db.query", "select $1::int as n").with_params(serde_json::json!([1]));
/// assert_eq!(pg.execute(req, &OperationConfig::default()).await?.data[0]["n"], 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PostgresHandler {
    name: String,
    state: RwLock<Option<Arc<PgState>>>,
    in_flight: Arc<InFlight>,
}

impl Default for PostgresHandler {
    fn default() -> Self {
        PostgresHandler::new("postgres")
    }
}

fn refs(params: &[params::SqlParam]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

fn check_sql(sql: &str, what: &str) -> Result<()> {
    if sql.trim().is_empty() {
        return Err(Error::rejected(format!("{what} needs SQL text in the target")));
    }
    Ok(())
}

impl PostgresHandler {
    /// A handler named `name`, not yet initialized.
    pub fn new(name: impl Into<String>) -> Self {
        PostgresHandler { name: name.into(), state: RwLock::new(None), in_flight: Arc::new(InFlight::default()) }
    }

    /// Checks a connection config without connecting.
    pub fn validate(config: &ConnectionConfig) -> Result<()> {
        settings::build_pool(config).map(|_| ())
    }

    fn state(&self) -> Result<Arc<PgState>> {
        self.state.read().clone().ok_or_else(|| not_initialized("postgres"))
    }

    async fn dispatch(client: &mut Object, req: &ProtocolRequest, max_bytes: Option<u64>) -> Result<(Value, BTreeMap<String, Value>)> {
        let mut meta = BTreeMap::new();
        match req.operation.as_str() {
            "db.query" => {
                check_sql(&req.target, "db.query")?;
                let stmt = client.prepare_cached(&req.target).await.map_err(|e| errors::classify(e, "db.query", &req.target))?;
                let bound = params::bind_all(&req.params, stmt.params())?;
                let classify = |e| errors::classify(e, "db.query", &req.target);
                let stream = client.query_raw(&stmt, refs(&bound)).await.map_err(classify)?;
                futures::pin_mut!(stream);
                // Rows are counted as they arrive: past the limit we stop reading (the caller
                // then cancels the statement and retires the connection).
                let (mut data, mut bytes) = (Vec::new(), 0u64);
                while let Some(row) = stream.try_next().await.map_err(classify)? {
                    let (value, size) = rows::row_to_json_sized(&row)?;
                    bytes += size as u64;
                    if let Some(limit) = max_bytes.filter(|limit| bytes > *limit) {
                        return Err(Error::too_large(
                            format!(
                                "db.query result after {} rows (raise max_response_bytes, or select fewer rows/columns)",
                                data.len() + 1
                            ),
                            bytes,
                            limit,
                        ));
                    }
                    data.push(value);
                }
                meta.insert("row_count".into(), json!(data.len()));
                meta.insert("bytes".into(), json!(bytes));
                Ok((Value::Array(data), meta))
            }
            "db.execute" => {
                check_sql(&req.target, "db.execute")?;
                let stmt = client.prepare_cached(&req.target).await.map_err(|e| errors::classify(e, "db.execute", &req.target))?;
                let bound = params::bind_all(&req.params, stmt.params())?;
                let n = client.execute(&stmt, &refs(&bound)).await.map_err(|e| errors::classify(e, "db.execute", &req.target))?;
                meta.insert("affected_rows".into(), json!(n));
                Ok((json!({ "affected": n }), meta))
            }
            "db.transaction" => {
                let spec = transaction::TxSpec::parse(&req.params)?;
                let mut builder = client.build_transaction().read_only(spec.read_only);
                if let Some(level) = spec.isolation()? {
                    builder = builder.isolation_level(level);
                }
                let tx = builder.start().await.map_err(|e| errors::classify(e, "db.transaction (BEGIN)", ""))?;
                let mut results = Vec::with_capacity(spec.statements.len());
                for (i, s) in spec.statements.iter().enumerate() {
                    let outcome: Result<Value> = async {
                        check_sql(&s.sql, "each db.transaction statement")?;
                        let stmt = tx.prepare_cached(&s.sql).await.map_err(|e| errors::classify(e, "db.transaction", &s.sql))?;
                        let bound = params::bind_all(&s.params, stmt.params())?;
                        if stmt.columns().is_empty() {
                            let n = tx.execute(&stmt, &refs(&bound)).await.map_err(|e| errors::classify(e, "db.transaction", &s.sql))?;
                            Ok(json!({ "affected": n }))
                        } else {
                            let rows = tx.query(&stmt, &refs(&bound)).await.map_err(|e| errors::classify(e, "db.transaction", &s.sql))?;
                            Ok(json!({ "rows": rows.iter().map(rows::row_to_json).collect::<Result<Vec<_>>>()? }))
                        }
                    }
                    .await;
                    match outcome {
                        Ok(v) => results.push(v),
                        Err(e) => {
                            // All or nothing: nothing of this transaction stays.
                            let _ = tx.rollback().await;
                            return Err(e.with("statement_index", i).with("rolled_back", "true"));
                        }
                    }
                }
                tx.commit().await.map_err(|e| errors::classify(e, "db.transaction (COMMIT)", ""))?;
                meta.insert("statements".into(), json!(results.len()));
                Ok((Value::Array(results), meta))
            }
            other => Err(unknown_operation("postgres", other, &POSTGRES_OPERATIONS)),
        }
    }

    async fn call(&self, state: &PgState, req: ProtocolRequest, op: &OperationConfig) -> Result<ProtocolResponse> {
        let started = Instant::now();
        if !POSTGRES_OPERATIONS.contains(&req.operation.as_str()) {
            return Err(unknown_operation("postgres", &req.operation, &POSTGRES_OPERATIONS));
        }
        let timeout = op.timeout.unwrap_or(state.endpoint.request_timeout);
        // One timer for the whole call (pool wait included); `connected` tells a timeout that
        // struck while waiting for a connection (nothing sent) from one during the statement.
        let connected = AtomicBool::new(false);
        let attempt = async {
            let client =
                state.pool.get().await.map_err(|e| errors::classify_pool(e, &state.endpoint.label(), state.endpoint.connect_timeout))?;
            connected.store(true, Ordering::Relaxed);
            let mut call = CallGuard { client: Some(client), finished: false };
            let result = Self::dispatch(call.client.as_mut().expect("set above"), &req, op.max_response_bytes).await;
            // A result cut short by the size limit is still streaming: let the guard cancel it.
            call.finished = !matches!(result, Err(Error::TooLarge { .. }));
            result
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => {
                let (data, metadata) = result?;
                Ok(ProtocolResponse { status_code: None, data, headers: BTreeMap::new(), duration: started.elapsed(), metadata })
            }
            Err(_) if !connected.load(Ordering::Relaxed) => Err(Error::timeout(
                format!(
                    "no PostgreSQL connection to {} within the call's time limit; raise pool.max or the timeout",
                    state.endpoint.label()
                ),
                timeout,
            )
            .with("sent", "false")),
            // The guard's drop cancelled the statement on the server.
            Err(_) => {
                Err(Error::timeout(format!("{} on {} did not finish; it was cancelled", req.operation, state.endpoint.label()), timeout)
                    .with("operation", &req.operation))
            }
        }
    }
}

/// A pooled connection in use by one call. If the call does not finish (its own timeout, or
/// the lifecycle wrapper's timeout dropping the future), the statement is cancelled on the
/// server and the connection leaves the pool, so no later caller waits behind it or is hit by
/// the cancel.
struct CallGuard {
    client: Option<Object>,
    finished: bool,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(client) = self.client.take() else { return };
        let token = client.cancel_token();
        drop(Object::take(client));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = token.cancel_query(NoTls).await;
            });
        }
    }
}

#[async_trait]
impl ProtocolHandler for PostgresHandler {
    fn handler_type(&self) -> &str {
        "postgres"
    }

    async fn initialize(&self, config: ConnectionConfig) -> Result<()> {
        let (pool, endpoint) = settings::build_pool(&config)?;
        let label = endpoint.label();
        // Open `pool.min` connections (at least one, which also proves the URL and credentials).
        let mut opened = Vec::new();
        for _ in 0..config.pool.min.max(1) {
            match pool.get().await {
                Ok(c) => opened.push(c),
                Err(e) => {
                    let cause = errors::classify_pool(e, &label, endpoint.connect_timeout);
                    return Err(
                        Error::initialization(format!("cannot open the PostgreSQL pool to {label}: {cause}")).with("kind", cause.kind())
                    );
                }
            }
        }
        drop(opened);
        tracing::debug!(handler = %self.name, endpoint = %label, "postgres handler initialized");
        *self.state.write() = Some(Arc::new(PgState { pool, endpoint }));
        Ok(())
    }

    async fn shutdown(&self, timeout: Duration) -> Result<()> {
        let state = self.state.write().take();
        if let Some(state) = state {
            if !self.in_flight.drain(timeout).await {
                tracing::warn!(handler = %self.name, ?timeout, "postgres handler shut down with calls still in flight");
            }
            state.pool.close();
        }
        Ok(())
    }

    async fn execute(&self, req: ProtocolRequest, op: &OperationConfig) -> Result<ProtocolResponse> {
        let state = self.state()?;
        let _guard = self.in_flight.enter();
        let span = tracing::debug_span!("postgres.call", handler = %self.name, operation = %req.operation,
            correlation_id = req.correlation_id.map(|c| c.to_string()).unwrap_or_default());
        async {
            let result = self.call(&state, req, op).await;
            match &result {
                Ok(r) => tracing::debug!(duration_ms = millis(r.duration), "postgres call ok"),
                Err(e) => tracing::debug!(error = %e.report(), kind = %e.kind(), "postgres call failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    fn describe(&self) -> Result<HandlerDescriptor> {
        let state = self.state()?;
        let status = state.pool.status();
        let mut connection = BTreeMap::new();
        connection.insert("host".to_string(), state.endpoint.host.clone());
        connection.insert("port".to_string(), state.endpoint.port.to_string());
        connection.insert("database".to_string(), state.endpoint.database.clone());
        Ok(HandlerDescriptor {
            handler_type: "postgres".into(),
            name: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: ["pooling", "transactions", "statement_cache", "typed_parameters", "cancel_on_timeout"]
                .map(String::from)
                .to_vec(),
            operations: POSTGRES_OPERATIONS.map(String::from).to_vec(),
            connection,
            pool: Some(PoolStats { max_size: status.max_size, size: status.size, available: status.available, waiting: status.waiting }),
            resilience: Default::default(),
        })
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        let state = self.state()?;
        let started = Instant::now();
        let label = state.endpoint.label();
        let outcome = async {
            let client = state.pool.get().await.map_err(|e| errors::classify_pool(e, &label, state.endpoint.connect_timeout))?;
            client.simple_query("SELECT 1").await.map_err(|e| errors::classify(e, "health check", "SELECT 1"))?;
            Ok::<_, Error>(())
        };
        let outcome = match tokio::time::timeout(state.endpoint.request_timeout, outcome).await {
            Ok(r) => r,
            Err(_) => Err(Error::timeout(format!("health check of {label}"), state.endpoint.request_timeout)),
        };
        let latency = started.elapsed();
        let s = state.pool.status();
        let details =
            json!({"endpoint": label, "pool": {"max_size": s.max_size, "size": s.size, "available": s.available, "waiting": s.waiting}});
        Ok(match outcome {
            Ok(()) => HealthStatus::healthy(latency, details),
            Err(e) => {
                let mut h = HealthStatus::unhealthy(latency, &e);
                h.details = details;
                h
            }
        })
    }
}
