//! Opening the database file: refusing foreign or newer files before writing anything, then
//! WAL mode and the versioned `bus_` migrations.
//!
//! The file is shared with the schema registry: both use `onex_meta(key, value)`, the bus
//! under key `bus_schema_version` and tables prefixed `bus_`.

use std::path::Path;
use std::time::Duration;

use onex_core::{Error, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::codec::SqlContext;
use super::config::{is_default_path, SqliteConfig};

/// The bus schema version this build writes.
pub(crate) const BUS_SCHEMA_VERSION: i64 = 3;

/// Key of the bus schema version in `onex_meta`.
pub(crate) const VERSION_KEY: &str = "bus_schema_version";

/// How long a statement waits for another connection's lock before failing as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Migrations in order; each brings the schema from `version - 1` to `version`.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS onex_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE bus_topics(
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         name TEXT NOT NULL UNIQUE,
         partitions INTEGER NOT NULL,
         config TEXT NOT NULL,
         retention_ms INTEGER,
         retention_records INTEGER,
         retention_bytes INTEGER,
         created_at INTEGER NOT NULL);
     CREATE TABLE bus_partitions(
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         topic_id INTEGER NOT NULL,
         part INTEGER NOT NULL,
         next_offset INTEGER NOT NULL DEFAULT 0,
         bytes INTEGER NOT NULL DEFAULT 0,
         UNIQUE(topic_id, part));
     CREATE TABLE bus_records(
         id INTEGER PRIMARY KEY,
         ts INTEGER NOT NULL,
         key BLOB,
         value BLOB NOT NULL,
         headers BLOB);
     CREATE TABLE bus_offsets(
         group_name TEXT NOT NULL,
         topic_id INTEGER NOT NULL,
         part INTEGER NOT NULL,
         next_offset INTEGER NOT NULL,
         updated_at INTEGER NOT NULL,
         PRIMARY KEY(group_name, topic_id, part)) WITHOUT ROWID;
     CREATE TABLE bus_groups(
         group_name TEXT NOT NULL,
         topic_id INTEGER NOT NULL,
         generation INTEGER NOT NULL,
         PRIMARY KEY(group_name, topic_id)) WITHOUT ROWID;
     CREATE TABLE bus_members(
         group_name TEXT NOT NULL,
         topic_id INTEGER NOT NULL,
         member_id TEXT NOT NULL,
         joined_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         PRIMARY KEY(group_name, topic_id, member_id)) WITHOUT ROWID;
     CREATE TABLE bus_leases(
         group_name TEXT NOT NULL,
         topic_id INTEGER NOT NULL,
         part INTEGER NOT NULL,
         owner TEXT NOT NULL,
         expires_at INTEGER NOT NULL,
         PRIMARY KEY(group_name, topic_id, part)) WITHOUT ROWID;",
    ),
    // Version 2 changes no table: `bus_records.headers` may now hold a published envelope
    // field by field (see `stored_envelope`), which a version-1 build would not read. The
    // version number is what keeps such a build off the file; the statement is a no-op.
    (2, "CREATE TABLE IF NOT EXISTS onex_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"),
    // Version 3 changes no table either: a partition's end is now its newest record
    // (`bus_partitions.next_offset` is a floor that only retention writes). A version-2
    // writer would take the stale column for the end and fail its inserts, so the version
    // keeps it off the file; a version-2 file is already valid as version 3.
    (3, "CREATE TABLE IF NOT EXISTS onex_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"),
];

/// Opens (creating when missing) the writer connection: checks, WAL, migrations.
pub(crate) fn open_writer(path: &Path, config: &SqliteConfig) -> Result<Connection> {
    check_directory(path)?;
    let shown = path.display().to_string();
    let existed = path.exists();
    if existed && path.is_dir() {
        return Err(Error::config(format!("sqlite bus path {shown:?} is a directory; name a file, e.g. {shown}/onex.db")));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| cannot_open(&shown, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).sql("setting the busy timeout")?;
    // Everything up to here only read the file: a foreign or newer file is refused unchanged.
    let found = inspect(&conn, &shown)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)).sql("switching to WAL mode")?;
    conn.pragma_update(None, "synchronous", config.sync.pragma()).sql("setting synchronous")?;
    conn.pragma_update(None, "cache_size", -16384).sql("setting the cache size")?;
    conn.set_prepared_statement_cache_capacity(64);
    if found < BUS_SCHEMA_VERSION {
        migrate(&conn, &shown)?;
    }
    Ok(conn)
}

/// How much of the file a reader connection maps (SQLite reads the rest as usual).
const READER_MMAP_BYTES: i64 = 1 << 30;

/// Opens a reader connection on an existing database (no creation, no schema changes).
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let shown = path.display().to_string();
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| cannot_open(&shown, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).sql("setting the busy timeout")?;
    conn.pragma_update(None, "cache_size", -8192).sql("setting the cache size")?;
    // Readers map the file: a read transaction after any commit starts with an empty page
    // cache, and reading the pages through the mapping instead of one `pread` each made
    // `bench bus-sqlite` consume ~1.5x faster (decisions.md, tenth session).
    conn.pragma_update(None, "mmap_size", READER_MMAP_BYTES).sql("setting the mmap size")?;
    // Cached statements keep their plans whatever is bound to them (the query planner
    // stability guarantee). Without it the bundled SQLite (built with STAT4) plans a read
    // again whenever the value bound to its `LIMIT ?` changes, which a read of several
    // partitions does on almost every query: ~2.5 % of a read-ahead lane's time in `bench
    // bus-sqlite` consume (decisions.md, sixteenth session).
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).sql("keeping query plans stable")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn check_directory(path: &Path) -> Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(()); // a bare file name: the working directory
    };
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        return Err(Error::config(format!("sqlite bus path {:?}: {:?} is not a directory", path.display(), dir.display())));
    }
    if is_default_path(path) {
        return std::fs::create_dir_all(dir).map_err(|e| {
            Error::config(format!(
                "cannot create the default bus directory {:?}: {e}; create it or pass --bus sqlite://PATH",
                dir.display()
            ))
        });
    }
    Err(Error::config(format!(
        "directory {:?} of sqlite bus file {:?} does not exist; create it first (mkdir -p {}) or choose another path",
        dir.display(),
        path.display(),
        dir.display()
    ))
    .with("path", path.display()))
}

fn cannot_open(shown: &str, e: rusqlite::Error) -> Error {
    Error::config(format!(
        "cannot open or create sqlite bus file {shown:?}: {e}; check that its directory exists and is writable by this user"
    ))
    .with("path", shown)
}

/// Reads what the file holds and returns its bus schema version (0 when the bus tables are
/// not there yet). Fails, without writing, on a non-SQLite file, another application's
/// database or a newer schema.
fn inspect(conn: &Connection, shown: &str) -> Result<i64> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => Error::config(format!(
                "{shown:?} is not an onex database: it is not a SQLite file; choose another path (the file was not changed)"
            ))
            .with("path", shown),
            _ => super::codec::sql_error(&format!("reading the tables of {shown:?}"), e),
        })?;
    if tables.is_empty() {
        return Ok(0);
    }
    // Other onex components (the idempotency store) may have created their `bus_`/`schema_`
    // tables first without writing `onex_meta`: such a file is ours. Any other table makes
    // it another application's database.
    let onex_owned = |t: &String| t.starts_with("bus_") || t.starts_with("schema_") || t.starts_with("onex_");
    if !tables.iter().any(|t| t == "onex_meta") && !tables.iter().all(onex_owned) {
        let listed: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
        return Err(Error::config(format!(
            "{shown:?} is not an onex database: it is a SQLite database of another application (tables {}{}; no onex_meta table); choose another path (the file was not changed)",
            listed.join(", "),
            if tables.len() > 5 { ", …" } else { "" }
        ))
        .with("path", shown));
    }
    if !tables.iter().any(|t| t == "onex_meta") {
        return Ok(0);
    }
    let version = read_version(conn)?;
    if version > BUS_SCHEMA_VERSION {
        return Err(Error::config(format!(
            "{shown:?} holds bus schema version {version}, written by a newer onex; this build knows versions up to {BUS_SCHEMA_VERSION}; upgrade onex (the file was not changed)"
        ))
        .with("path", shown));
    }
    Ok(version)
}

fn read_version(conn: &Connection) -> Result<i64> {
    let raw: Option<String> = conn
        .query_row("SELECT value FROM onex_meta WHERE key = ?1", [VERSION_KEY], |r| r.get(0))
        .optional()
        .sql("reading the bus schema version")?;
    match raw {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| Error::config(format!("onex_meta.{VERSION_KEY} is {v:?}, not a number: the database is damaged"))),
    }
}

/// Applies the missing migrations in one transaction. Another process may be migrating the
/// same file at the same moment: the version is read again under the write lock.
fn migrate(conn: &Connection, shown: &str) -> Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate).sql("starting the migration")?;
    let current = match tx.query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'onex_meta'", [], |_| Ok(())).optional() {
        Ok(Some(())) => read_version(&tx)?,
        Ok(None) => 0,
        Err(e) => return Err(super::codec::sql_error("reading the schema", e)),
    };
    if current > BUS_SCHEMA_VERSION {
        return Err(Error::config(format!(
            "{shown:?} was upgraded to bus schema version {current} by a newer onex meanwhile; upgrade onex"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql).sql(&format!("applying bus schema migration {version}"))?;
        tx.execute("INSERT OR REPLACE INTO onex_meta(key, value) VALUES (?1, ?2)", rusqlite::params![VERSION_KEY, version.to_string()])
            .sql("recording the bus schema version")?;
        tracing::info!(path = shown, version, "applied bus schema migration");
    }
    tx.commit().sql("committing the migration")
}
