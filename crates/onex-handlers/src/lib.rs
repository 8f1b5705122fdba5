//! # onex-handlers — request-response handlers
//!
//! [`ProtocolHandler`](onex_core::ProtocolHandler) implementations for the systems an effect
//! node calls and waits on. Each does exactly one attempt per `execute` and classifies its
//! failures (DESIGN §5); retries, the circuit breaker, per-attempt timeouts, lifecycle rules
//! and health caching are applied once by the lifecycle wrapper of `onex-core`.
//!
//! | feature | handler | operations |
//! |---|---|---|
//! | `http` | [`HttpRestHandler`] | `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`, `OPTIONS` |
//! | `postgres` | [`PostgresHandler`] | `db.query`, `db.execute`, `db.transaction` |
//! | `redis` | [`RedisHandler`] | `cache.get`, `cache.set`, `cache.del`, `cache.exists`, `cache.incr`, `cache.expire`, `cache.mget`, `cache.mset` |
//! | `graphql` | [`GraphQlHandler`] | `graphql.query`, `graphql.mutation` |
//!
//! No handler prints a credential: URLs are kept without passwords, auth headers are marked
//! sensitive, and every error goes through `onex_core::sanitize`.
//!
//! ## Example
//!
//! ```no_run
//! use onex_core::{ConnectionConfig, OperationConfig, ProtocolHandler, ProtocolRequest};
//! # async fn f() -> onex_core::Result<()> {
//! // A managed (retry, breaker, timeouts, health cache), initialized handler from config.
//! let api = onex_handlers::build("http", ConnectionConfig::new("http://127.0.0.1:8080")).await?;
//! let user = api.execute(
//!     ProtocolRequest::new("GET", "/users/{id}").with_params(serde_json::json!({"id": 42})),
//!     &OperationConfig::default(),
//! ).await?;
//! let charge = api.execute(
//!     ProtocolRequest::new("POST", "/charges").with_json(serde_json::json!({"amount": 1299})),
//!     &OperationConfig { idempotent: false, ..Default::default() }, // never repeated once sent
//! ).await?;
//! # Ok(()) }
//! ```
//!
//! ## Classification (DESIGN §5)
//!
//! | source | outcome | error | retried | counts for the breaker |
//! |---|---|---|---|---|
//! | HTTP | 2xx, 3xx (redirects not followed) | `Ok` | | |
//! | HTTP | 401, 403 | `Authentication` | no | no |
//! | HTTP | 404, 410 | `NotFound` | no | no |
//! | HTTP | 400, 409, 422, other 4xx | `Rejected` | no | no |
//! | HTTP | 408 | `Timeout` (`trips_breaker=false`); with `Retry-After`: `RateLimited` | yes | no |
//! | HTTP | 429 | `RateLimited` with `Retry-After` | yes, after the wait | no |
//! | HTTP | 5xx | `Unavailable` | yes | yes |
//! | HTTP | connect/DNS failure | `Connection` (nothing sent) | yes, even non-idempotent | yes |
//! | HTTP | timeout / connection lost after sending | `Timeout` / `Unavailable` | idempotent only | yes |
//! | SQL | SQLSTATE 08, 53, 57, 58, XX | `Connection`/`Unavailable`/`Timeout` | yes | yes |
//! | SQL | SQLSTATE 40 | `Rejected` + `retryable=true` | yes | no |
//! | SQL | SQLSTATE 28 / 3D / 22, 23, 42, others | `Authentication` / `NotFound` / `Rejected` | no | no |
//! | GraphQL | `errors` array | `Rejected` (messages, paths, partial data in context) | no | no |
//!
//! ## Layout
//!
//! `http/` (settings, request building, response classification), `postgres/` (params,
//! rows, numeric codec, SQLSTATE errors, transactions), `redis/` (ops, errors), `graphql/`,
//! `registration.rs` ([`register_all`], [`build`]).

#[cfg(any(feature = "http", feature = "postgres", feature = "redis"))]
mod common;

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub use http::HttpRestHandler;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::PostgresHandler;

#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub use self::redis::RedisHandler;

#[cfg(feature = "graphql")]
pub mod graphql;
#[cfg(feature = "graphql")]
pub use graphql::GraphQlHandler;

mod registration;
pub use registration::{build, register_all, registry};

/// The HTTP client crate this handler is built on, for code that must use the very same
/// version (benchmark baselines, custom clients).
#[cfg(feature = "http")]
pub use reqwest;
/// The PostgreSQL client crates the handler is built on (same versions as the handler).
#[cfg(feature = "postgres")]
pub use {deadpool_postgres, tokio_postgres};
