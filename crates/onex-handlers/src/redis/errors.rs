//! Redis failures classified like DESIGN §5: connection trouble retries and counts, command
//! errors (wrong type, not an integer) are the caller's and do not.

use onex_core::Error;
use redis::{ErrorKind, RedisError};

/// Classifies an error of `what` (`cache.get key`, …).
pub(crate) fn classify(e: RedisError, what: &str) -> Error {
    let err = if e.is_timeout() {
        Error::timeout(format!("{what}: Redis did not answer in time"), std::time::Duration::ZERO)
    } else if e.is_connection_refusal() {
        Error::connection(format!("{what}: cannot connect to Redis; is it running and the URL right?"))
    } else if e.is_connection_dropped() || e.is_io_error() {
        Error::unavailable(format!("{what}: the Redis connection broke during the call"))
    } else {
        match e.kind() {
            ErrorKind::AuthenticationFailed => Error::authentication(format!("{what}: Redis refused the credentials")),
            ErrorKind::BusyLoadingError | ErrorKind::TryAgain | ErrorKind::ClusterDown | ErrorKind::MasterDown | ErrorKind::ReadOnly => {
                Error::unavailable(format!("{what}: Redis is not ready ({})", e.code().unwrap_or("unavailable")))
            }
            ErrorKind::TypeError => Error::protocol(format!("{what}: unexpected Redis reply")),
            ErrorKind::InvalidClientConfig => Error::config(format!("{what}: invalid Redis client configuration")),
            _ => Error::rejected(format!("{what}: Redis refused the command")),
        }
    };
    let err = match e.code() {
        Some(code) => err.with("redis_error", code),
        None => err,
    };
    err.with_source(e)
}
