//! PostgreSQL failures classified by SQLSTATE class (DESIGN §5).
//!
//! | class | meaning | kind | retry | breaker |
//! |---|---|---|---|---|
//! | 08 | connection exception | `Connection` (08001, 08004: never connected) / `Unavailable` | yes | counts |
//! | 53 | insufficient resources | `Unavailable` | yes | counts |
//! | 57 | operator intervention (57014 cancel/statement timeout → `Timeout`) | `Unavailable` | yes | counts |
//! | 58 | system error | `Unavailable` | yes | counts |
//! | 40 | serialization failure, deadlock | `Rejected` + `retryable=true` | yes | no |
//! | 28 | invalid authorization | `Authentication` | no | no |
//! | 22, 23, 42, others | data, constraint, syntax/access | `Rejected` | no | no |
//!
//! The SQLSTATE, constraint, table, column, detail and hint go into the error context.

use onex_core::Error;
use tokio_postgres::error::DbError;

/// Classifies an error of `what` (`db.query`, …), keeping the SQL (truncated) for context.
pub(crate) fn classify(e: tokio_postgres::Error, what: &str, sql: &str) -> Error {
    let err = match e.as_db_error() {
        Some(db) => classify_db(db, what),
        None if e.is_closed() => Error::unavailable(format!("{what}: the connection to PostgreSQL closed during the call")),
        None => Error::unavailable(format!("{what}: communication with PostgreSQL failed")),
    };
    let err = if sql.is_empty() { err } else { err.with("sql", truncate(sql, 200)) };
    err.with_source(e)
}

/// Classifies a server error.
pub(crate) fn classify_db(db: &DbError, what: &str) -> Error {
    let code = db.code().code();
    let class = &code[..2];
    let msg = format!("{what}: {} (SQLSTATE {code})", db.message());
    let err = match class {
        "08" if code == "08001" || code == "08004" => Error::connection(msg),
        "08" | "53" | "58" => Error::unavailable(msg),
        "57" if code == "57014" => Error::timeout(msg, std::time::Duration::ZERO),
        "57" => Error::unavailable(msg),
        "40" => Error::rejected(msg).with("retryable", "true"),
        "28" => Error::authentication(msg),
        "42" if code == "42601" && db.message().contains("multiple commands") => Error::rejected(format!(
            "{what} runs exactly one SQL statement per call; split the text into separate calls, or use db.transaction with a list of statements"
        )),
        "3D" => Error::not_found(msg),
        "XX" => Error::unavailable(msg),
        _ => Error::rejected(msg),
    };
    let mut err = err.with("sqlstate", code);
    for (k, v) in
        [("constraint", db.constraint()), ("table", db.table()), ("column", db.column()), ("detail", db.detail()), ("hint", db.hint())]
    {
        if let Some(v) = v {
            err = err.with(k, v);
        }
    }
    err
}

/// Maps a pool checkout failure: the statement was never sent.
pub(crate) fn classify_pool(e: deadpool_postgres::PoolError, endpoint: &str, wait: std::time::Duration) -> Error {
    use deadpool_postgres::PoolError;
    let err = match e {
        PoolError::Timeout(kind) => Error::timeout(
            format!("no PostgreSQL connection to {endpoint} within {wait:?} ({kind:?}); raise pool.max or timeouts.connect"),
            wait,
        ),
        PoolError::Backend(e) => match e.as_db_error() {
            Some(db) => classify_db(db, &format!("connecting to {endpoint}")).with_source(e),
            None => {
                Error::connection(format!("cannot connect to PostgreSQL at {endpoint}; is it running and the URL right?")).with_source(e)
            }
        },
        PoolError::Closed => Error::shutdown("the PostgreSQL pool is closed"),
        other => Error::connection(format!("cannot get a PostgreSQL connection to {endpoint}: {other}")),
    };
    err.with("sent", "false").with("endpoint", endpoint)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
