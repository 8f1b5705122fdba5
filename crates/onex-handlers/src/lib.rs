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
