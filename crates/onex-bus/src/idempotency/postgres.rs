//! The PostgreSQL idempotency store (deadpool pool, one upsert per claim).

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Pool, Runtime};
use onex_core::{ClaimOutcome, Error, IdempotencyStore, Result};
use tokio_postgres::NoTls;

use super::{check_duration, check_key};

/// Idempotency in a PostgreSQL table (default `onex_idempotency`, created IF NOT EXISTS).
/// Leases and completion times use the server's clock, so every client agrees on expiry.
#[derive(Clone)]
pub struct PostgresIdempotencyStore {
    pool: Pool,
    table: String,
    claim_sql: String,
}

impl std::fmt::Debug for PostgresIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresIdempotencyStore").field("table", &self.table).field("pool", &self.pool.status()).finish()
    }
}

/// Maps a driver error: lost connections and server-side unavailability (SQLSTATE classes
/// 08, 53, 57, 58) are retryable; anything else is a rejection.
fn pg_err(what: &str, e: tokio_postgres::Error) -> Error {
    let class = e.code().map(|c| c.code()[..2].to_string());
    let err = match class.as_deref() {
        None => Error::connection(format!("idempotency {what}: connection to PostgreSQL failed")),
        Some("08" | "53" | "57" | "58") => Error::unavailable(format!("idempotency {what}: PostgreSQL is unavailable")),
        Some(_) => Error::rejected(format!("idempotency {what}: PostgreSQL refused the statement")),
    };
    let err = match e.code() {
        Some(code) => err.with("sqlstate", code.code()),
        None => err,
    };
    err.with_source(e)
}

fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    Error::connection("idempotency store: no PostgreSQL connection from the pool").with_source(e)
}

impl PostgresIdempotencyStore {
    /// Connects to `url` (`postgres://user@host:port/db`; credentials are never shown) and
    /// creates the table `onex_idempotency` when missing.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_table(url, "onex_idempotency").await
    }

    /// Like [`PostgresIdempotencyStore::connect`] with a table name of `[a-z_][a-z0-9_]*`.
    pub async fn connect_with_table(url: &str, table: &str) -> Result<Self> {
        let valid = table.len() <= 63
            && table.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && table.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(Error::config(format!(
                "idempotency table name {table:?} is invalid; use up to 63 characters of [a-z0-9_], not starting with a digit"
            )));
        }
        let cfg = deadpool_postgres::Config { url: Some(url.to_string()), ..Default::default() };
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| Error::config(format!("invalid PostgreSQL URL for the idempotency store: {e}")).with("url", url))?;
        let client = pool.get().await.map_err(|e| pool_err(e).with("url", url))?;
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    domain TEXT NOT NULL,
                    id TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('claimed', 'done')),
                    lease_until TIMESTAMPTZ NOT NULL,
                    updated_at TIMESTAMPTZ NOT NULL,
                    PRIMARY KEY (domain, id))"
            ))
            .await
            .or_else(|e| {
                // Two stores creating the table at once race on the catalog: the loser sees 23505.
                if e.code().is_some_and(|c| c.code() == "23505" || c.code() == "42P07") {
                    Ok(())
                } else {
                    Err(pg_err("creating the table", e))
                }
            })?;
        let claim_sql = format!(
            "INSERT INTO {table} AS t (domain, id, state, lease_until, updated_at)
             VALUES ($1, $2, 'claimed', clock_timestamp() + $3::float8 * interval '1 millisecond', clock_timestamp())
             ON CONFLICT (domain, id) DO UPDATE SET state = 'claimed', lease_until = EXCLUDED.lease_until, updated_at = EXCLUDED.updated_at
             WHERE t.state = 'claimed' AND t.lease_until <= clock_timestamp()
             RETURNING 1"
        );
        Ok(PostgresIdempotencyStore { pool, table: table.to_string(), claim_sql })
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }
}

#[async_trait]
impl IdempotencyStore for PostgresIdempotencyStore {
    async fn claim(&self, domain: &str, id: &str, lease: Duration) -> Result<ClaimOutcome> {
        check_key(domain, id)?;
        check_duration("lease", lease)?;
        let client = self.pool.get().await.map_err(pool_err)?;
        let lease_ms = lease.as_secs_f64() * 1000.0;
        // A refused upsert is followed by a read; if the entry vanished in between (released),
        // claim again. Two rounds are enough unless the id is being churned by others.
        for _ in 0..3 {
            let rows = client.query(&self.claim_sql, &[&domain, &id, &lease_ms]).await.map_err(|e| pg_err("claim", e))?;
            if !rows.is_empty() {
                return Ok(ClaimOutcome::Claimed);
            }
            let row = client
                .query_opt(&format!("SELECT state FROM {} WHERE domain = $1 AND id = $2", self.table), &[&domain, &id])
                .await
                .map_err(|e| pg_err("claim", e))?;
            match row.map(|r| r.get::<_, String>(0)).as_deref() {
                Some("done") => return Ok(ClaimOutcome::Duplicate),
                Some(_) => return Ok(ClaimOutcome::InProgress),
                None => continue,
            }
        }
        Ok(ClaimOutcome::InProgress)
    }

    async fn complete(&self, domain: &str, id: &str) -> Result<()> {
        check_key(domain, id)?;
        let client = self.pool.get().await.map_err(pool_err)?;
        client
            .execute(
                &format!(
                    "INSERT INTO {} (domain, id, state, lease_until, updated_at) VALUES ($1, $2, 'done', clock_timestamp(), clock_timestamp())
                     ON CONFLICT (domain, id) DO UPDATE SET state = 'done', updated_at = EXCLUDED.updated_at",
                    self.table
                ),
                &[&domain, &id],
            )
            .await
            .map_err(|e| pg_err("complete", e))?;
        Ok(())
    }

    async fn release(&self, domain: &str, id: &str) -> Result<()> {
        check_key(domain, id)?;
        let client = self.pool.get().await.map_err(pool_err)?;
        client
            .execute(&format!("DELETE FROM {} WHERE domain = $1 AND id = $2 AND state = 'claimed'", self.table), &[&domain, &id])
            .await
            .map_err(|e| pg_err("release", e))?;
        Ok(())
    }

    async fn cleanup_expired(&self, ttl: Duration) -> Result<u64> {
        check_duration("ttl", ttl)?;
        let client = self.pool.get().await.map_err(pool_err)?;
        let ttl_ms = ttl.as_secs_f64() * 1000.0;
        client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE (state = 'done' AND updated_at < clock_timestamp() - $1::float8 * interval '1 millisecond')
                     OR (state = 'claimed' AND lease_until <= clock_timestamp())",
                    self.table
                ),
                &[&ttl_ms],
            )
            .await
            .map_err(|e| pg_err("cleanup", e))
    }
}
