//! `onex bench postgres`: `ManagedHandler(PostgresHandler)` `db.query` against raw
//! tokio-postgres + deadpool with the same pool size and the same query, on the machine's
//! PostgreSQL (`ONEX_BENCH_POSTGRES_URL`, default `postgres://root@127.0.0.1:5432/test`).
//!
//! The query binds one int parameter and returns one row of four columns (int, text,
//! numeric, timestamptz). Ours returns rows as JSON; the baseline decodes the same columns
//! into Rust values (what a raw client does), so the ratio includes our JSON conversion.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use onex_core::{ConnectionConfig, Error, OperationConfig, ProtocolHandler, ProtocolRequest, Result};
use onex_handlers::deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use onex_handlers::tokio_postgres::{self, NoTls};
use serde_json::json;

use super::http::{alternate, drive};
use super::report::{ScenarioReport, Side};

const QUERY: &str = "select $1::int4 as id, 'item-' || $1::text as name, ($1::int4 * 1.25)::numeric(12,2) as price, timestamptz '2024-05-01 12:00:00+00' as at";

/// The PostgreSQL URL the bench uses.
pub fn url() -> String {
    std::env::var("ONEX_BENCH_POSTGRES_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

/// A text decoder for numeric in the baseline (tokio-postgres has no built-in numeric type):
/// the baseline reads the raw bytes, which is the cheapest a raw client can do.
struct RawBytes;

impl<'a> tokio_postgres::types::FromSql<'a> for RawBytes {
    fn from_sql(_: &tokio_postgres::types::Type, _: &'a [u8]) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawBytes)
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// Runs the scenario at each concurrency, `requests` queries per side. Pool size = concurrency
/// capped at 32 (PostgreSQL's connection limit is shared with everything else on the machine).
pub async fn run(concurrency: &[usize], requests: u64) -> Result<Vec<ScenarioReport>> {
    let url = url();
    let mut reports = Vec::new();
    for &c in concurrency {
        let c = c.max(1);
        let pool_size = c.min(32);
        let mut config = ConnectionConfig::new(&url);
        config.pool.max = pool_size;
        let pg = tokio_postgres::Config::from_str(&url).map_err(|e| Error::config(format!("invalid bench PostgreSQL URL: {e}")))?;
        let raw = Pool::builder(Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast }))
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::config(format!("baseline pool: {e}")))?;
        let ours = onex_handlers::build("postgres", config).await?;
        let op = Arc::new(OperationConfig::default());

        let baseline_call = {
            let raw = raw.clone();
            move |i: u64| {
                let raw = raw.clone();
                async move {
                    let client = raw.get().await.map_err(|e| Error::connection(format!("baseline pool: {e}")))?;
                    let stmt = client.prepare_cached(QUERY).await.map_err(|e| Error::unavailable("baseline prepare").with_source(e))?;
                    let id = (i % 10_000) as i32;
                    let rows = client.query(&stmt, &[&id]).await.map_err(|e| Error::unavailable("baseline query").with_source(e))?;
                    for row in &rows {
                        let _: i32 = row.get(0);
                        let _: String = row.get(1);
                        let _: RawBytes = row.get(2);
                        let _: chrono::DateTime<chrono::Utc> = row.get(3);
                    }
                    Ok(())
                }
            }
        };
        let ours_call = {
            let (ours, op) = (ours.clone(), op.clone());
            move |i: u64| {
                let (ours, op) = (ours.clone(), op.clone());
                async move { ours.execute(ProtocolRequest::new("db.query", QUERY).with_params(json!([i % 10_000])), &op).await.map(|_| ()) }
            }
        };
        let warm = (requests / 10).clamp(100, 2_000);
        drive(c, warm, baseline_call.clone()).await?;
        drive(c, warm, ours_call.clone()).await?;
        let ((o_elapsed, o_lat), (b_elapsed, b_lat)) = alternate(c, requests, baseline_call, ours_call).await?;
        let requests = (requests / 8).max(1) * 8;
        ours.shutdown(Duration::from_secs(5)).await?;
        raw.close();
        reports.push(ScenarioReport::new(
            format!("postgres/c{c}"),
            Side::new("ManagedHandler(PostgresHandler) db.query, rows as JSON", requests, o_elapsed, "req/s", &o_lat),
            Side::new("raw tokio-postgres + deadpool, prepare_cached + typed get", requests, b_elapsed, "req/s", &b_lat),
            0.9,
            json!({"concurrency": c, "pool_size": pool_size, "requests": requests, "query": QUERY}),
        ));
    }
    Ok(reports)
}
