//! [`IdempotencyStore`](onex_core::IdempotencyStore) implementations (DESIGN §3 rule 8).
//!
//! | store | feature | atomic claim |
//! |---|---|---|
//! | [`MemoryIdempotencyStore`] | always | one mutex over a map (one process) |
//! | [`SqliteIdempotencyStore`] | `sqlite` | one `INSERT … ON CONFLICT … DO UPDATE … WHERE expired RETURNING` (SQLite's write lock, several processes) |
//! | [`PostgresIdempotencyStore`] | `postgres` | the same upsert on PostgreSQL |
//! | [`RedisIdempotencyStore`] | `redis` | `SET NX PX`; release and cleanup in Lua |
//!
//! Every store keeps one entry per `(domain, id)`: *claimed until* a lease end, or *done at*
//! a completion time. A claim succeeds when there is no entry or the lease has expired (its
//! holder died); a done entry answers `Duplicate` until `cleanup_expired` removes it.
//!
//! Bad input is refused the same way by every store: an empty domain or id, an id longer than
//! [`MAX_ID_LEN`] bytes, or a zero lease is [`onex_core::Error::Config`] naming the value.

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryIdempotencyStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresIdempotencyStore;
#[cfg(feature = "redis")]
pub use redis::RedisIdempotencyStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteIdempotencyStore;

use std::time::Duration;

use onex_core::{Error, Result};

/// Longest accepted domain or id, in bytes (an envelope id is 36).
pub const MAX_ID_LEN: usize = 512;

/// Checks the arguments every store method takes.
pub(crate) fn check_key(domain: &str, id: &str) -> Result<()> {
    for (what, value) in [("domain", domain), ("id", id)] {
        if value.is_empty() {
            return Err(Error::config(format!("idempotency {what} is empty; pass the consumer group as domain and the envelope id as id")));
        }
        if value.len() > MAX_ID_LEN {
            return Err(Error::config(format!(
                "idempotency {what} is {} bytes, over the limit of {MAX_ID_LEN}; use a shorter key (e.g. a hash of it)",
                value.len()
            ))
            .with(what, &value[..32]));
        }
    }
    Ok(())
}

/// Checks a lease (or a TTL) is positive.
pub(crate) fn check_duration(what: &str, d: Duration) -> Result<()> {
    if d.is_zero() {
        return Err(Error::config(format!("idempotency {what} is 0s; use a positive duration (a lease must outlive the handler)")));
    }
    Ok(())
}

/// Milliseconds of a duration, at least 1 (stores keep milliseconds).
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}
