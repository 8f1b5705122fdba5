//! The registry's tables in the bus's sqlite file, and opening that file safely.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension};

use onex_core::{Error, Result};

/// The version of the tables below, stored under [`VERSION_KEY`] in `onex_meta`.
pub(crate) const TABLES_VERSION: u32 = 1;
/// The `onex_meta` key of the registry's table version (the bus uses `bus_schema_version`).
pub(crate) const VERSION_KEY: &str = "schema_registry_version";
/// How long a writer waits for another process's lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every table is `schema_`-prefixed and created only when missing: the bus's sqlite transport
/// shares the file and owns the other tables. Ids are AUTOINCREMENT so a deleted id is never
/// handed out again (clients cache schemas by id).
const CREATE: &str = "
CREATE TABLE IF NOT EXISTS onex_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schema_schemas (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    schema_type TEXT NOT NULL,
    canonical   TEXT NOT NULL,
    schema      TEXT NOT NULL,
    UNIQUE (schema_type, canonical)
);
CREATE TABLE IF NOT EXISTS schema_versions (
    subject       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    schema_id     INTEGER NOT NULL REFERENCES schema_schemas(id),
    deleted       INTEGER NOT NULL DEFAULT 0,
    registered_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS schema_versions_by_schema ON schema_versions (schema_id);
CREATE TABLE IF NOT EXISTS schema_config (subject TEXT PRIMARY KEY, compatibility TEXT NOT NULL);
";

/// Opens (or creates) the sqlite file at `path` and makes sure the registry's tables exist.
/// A file that is not an SQLite database is reported without being changed.
pub(crate) fn open(path: &Path) -> Result<Connection> {
    let shown = path.display().to_string();
    let conn = Connection::open(path).map_err(|e| {
        Error::initialization(format!("cannot open schema registry file {shown}: {e}; check the path and its permissions"))
            .with("path", &shown)
            .with_source(e)
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| sql_error("setting busy_timeout", e))?;
    // Reading the header first: on a file that is not a database this fails before anything is written.
    conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0)).map_err(|e| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            Error::initialization(format!("{shown} is not an SQLite database; point the registry at the bus's sqlite file (or a new path)"))
                .with("path", &shown)
        }
        _ => sql_error("reading the database header", e).with("path", &shown),
    })?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(|e| sql_error("enabling WAL", e))?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(path = %shown, journal_mode = %mode, "sqlite did not switch to WAL mode");
    }
    conn.execute_batch(CREATE).map_err(|e| sql_error("creating the schema registry tables", e))?;
    let stored: Option<String> = conn
        .query_row("SELECT value FROM onex_meta WHERE key = ?1", [VERSION_KEY], |r| r.get(0))
        .optional()
        .map_err(|e| sql_error("reading onex_meta", e))?;
    match stored.as_deref().map(str::parse::<u32>) {
        None => {
            conn.execute(
                "INSERT OR IGNORE INTO onex_meta (key, value) VALUES (?1, ?2)",
                rusqlite::params![VERSION_KEY, TABLES_VERSION.to_string()],
            )
            .map_err(|e| sql_error("writing onex_meta", e))?;
        }
        Some(Ok(v)) if v <= TABLES_VERSION => {}
        Some(Ok(v)) => {
            return Err(Error::initialization(format!(
                "{shown} holds schema registry tables version {v}, newer than this onex understands ({TABLES_VERSION}); upgrade onex"
            )))
        }
        Some(Err(_)) => {
            return Err(Error::initialization(format!(
                "{shown}: onex_meta.{VERSION_KEY} is not a number ({stored:?}); the file was changed by hand"
            )))
        }
    }
    Ok(conn)
}

/// An sqlite failure as an onex error: busy/locked is retryable contention, the rest is unavailable storage.
pub(crate) fn sql_error(doing: &str, e: rusqlite::Error) -> Error {
    let busy = matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked));
    let err = Error::unavailable(format!("schema registry storage failed while {doing}: {e}"));
    let err = if busy { err.with("trips_breaker", "false") } else { err };
    err.with("error_code", "50001").with_source(e)
}
