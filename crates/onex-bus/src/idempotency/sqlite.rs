//! The SQLite idempotency store: table `bus_idem_entries` in a given file (the bus's own
//! file or a separate one), WAL mode, a busy timeout, so several processes share it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onex_core::{ClaimOutcome, Error, IdempotencyStore, Result};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{check_duration, check_key, millis};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS bus_idem_entries (
    domain TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('claimed', 'done')),
    lease_until_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (domain, id)
) WITHOUT ROWID";

/// Taken when there is no entry or the lease has expired; one statement, so it is atomic
/// under SQLite's write lock across connections and processes.
const CLAIM: &str = "INSERT INTO bus_idem_entries (domain, id, state, lease_until_ms, updated_ms)
VALUES (?1, ?2, 'claimed', ?3 + ?4, ?3)
ON CONFLICT (domain, id) DO UPDATE SET state = 'claimed', lease_until_ms = excluded.lease_until_ms, updated_ms = excluded.updated_ms
WHERE bus_idem_entries.state = 'claimed' AND bus_idem_entries.lease_until_ms <= ?3
RETURNING 1";

/// Idempotency in a SQLite file. Leases and completion times use the wall clock in
/// milliseconds, because processes share the file and have no common monotonic clock.
#[derive(Debug, Clone)]
pub struct SqliteIdempotencyStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn sqlite_err(what: &str, path: &Path, e: rusqlite::Error) -> Error {
    let busy = matches!(&e, rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked));
    let err = if busy { Error::unavailable(format!("{what}: database is busy")) } else { Error::unavailable(format!("{what} failed")) };
    err.with("path", path.display()).with_source(e)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl SqliteIdempotencyStore {
    /// Opens (creating when missing) `path` and the `bus_idem_entries` table in it.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::config(format!("cannot create directory {} for the idempotency store: {e}", dir.display()))
                        .with("path", p.display())
                })?;
            }
            let conn = Connection::open(&p).map_err(|e| {
                Error::config(format!(
                    "cannot open SQLite file {} for the idempotency store: {e}; check the path and its permissions",
                    p.display()
                ))
            })?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| sqlite_err("setting busy_timeout", &p, e))?;
            conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| sqlite_err("enabling WAL", &p, e))?;
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| sqlite_err("setting synchronous", &p, e))?;
            conn.execute_batch(SCHEMA).map_err(|e| sqlite_err("creating bus_idem_entries", &p, e))?;
            Ok(conn)
        })
        .await
        .map_err(|e| Error::initialization(format!("opening the idempotency store panicked: {e}")))??;
        Ok(SqliteIdempotencyStore { conn: Arc::new(Mutex::new(conn)), path })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock();
            f(&mut guard).map_err(|e| sqlite_err(what, &path, e))
        })
        .await
        .map_err(|e| Error::unavailable(format!("idempotency {what} panicked: {e}")))?
    }
}

#[async_trait]
impl IdempotencyStore for SqliteIdempotencyStore {
    async fn claim(&self, domain: &str, id: &str, lease: Duration) -> Result<ClaimOutcome> {
        check_key(domain, id)?;
        check_duration("lease", lease)?;
        let (domain, id, lease_ms) = (domain.to_string(), id.to_string(), millis(lease));
        self.with_conn("claim", move |conn| {
            // IMMEDIATE: the claim and the read of a refused claim see one state.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let claimed = tx.query_row(CLAIM, params![domain, id, now_ms(), lease_ms], |_| Ok(())).optional()?.is_some();
            let outcome = if claimed {
                ClaimOutcome::Claimed
            } else {
                let state: String =
                    tx.query_row("SELECT state FROM bus_idem_entries WHERE domain = ?1 AND id = ?2", params![domain, id], |r| r.get(0))?;
                if state == "done" {
                    ClaimOutcome::Duplicate
                } else {
                    ClaimOutcome::InProgress
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn complete(&self, domain: &str, id: &str) -> Result<()> {
        check_key(domain, id)?;
        let (domain, id) = (domain.to_string(), id.to_string());
        self.with_conn("complete", move |conn| {
            let now = now_ms();
            conn.execute(
                "INSERT INTO bus_idem_entries (domain, id, state, lease_until_ms, updated_ms) VALUES (?1, ?2, 'done', ?3, ?3)
                 ON CONFLICT (domain, id) DO UPDATE SET state = 'done', updated_ms = excluded.updated_ms",
                params![domain, id, now],
            )
            .map(|_| ())
        })
        .await
    }

    async fn release(&self, domain: &str, id: &str) -> Result<()> {
        check_key(domain, id)?;
        let (domain, id) = (domain.to_string(), id.to_string());
        self.with_conn("release", move |conn| {
            conn.execute("DELETE FROM bus_idem_entries WHERE domain = ?1 AND id = ?2 AND state = 'claimed'", params![domain, id])
                .map(|_| ())
        })
        .await
    }

    async fn cleanup_expired(&self, ttl: Duration) -> Result<u64> {
        check_duration("ttl", ttl)?;
        let ttl_ms = millis(ttl);
        self.with_conn("cleanup", move |conn| {
            let now = now_ms();
            conn.execute(
                "DELETE FROM bus_idem_entries WHERE (state = 'done' AND updated_ms < ?1 - ?2) OR (state = 'claimed' AND lease_until_ms <= ?1)",
                params![now, ttl_ms],
            )
            .map(|n| n as u64)
        })
        .await
    }
}
