//! Registering the built-in handlers with a [`HandlerRegistry`], so a runtime can build
//! managed handlers from configuration (`type` + [`ConnectionConfig`]).

use std::sync::Arc;

use onex_core::{ConnectionConfig, HandlerRegistry, ManagedHandler, Result};

/// Registers every handler compiled in: `http`, `postgres`, `redis`, `graphql` (by feature).
/// Each factory makes a fresh, uninitialized handler; the registry wraps it in a
/// [`ManagedHandler`] and initializes it.
#[cfg_attr(not(any(feature = "http", feature = "postgres", feature = "redis")), allow(unused_variables))]
pub fn register_all(registry: &mut HandlerRegistry) {
    #[cfg(feature = "http")]
    registry.register("http", || Arc::new(crate::HttpRestHandler::new("http")) as Arc<dyn onex_core::ProtocolHandler>);
    #[cfg(feature = "postgres")]
    registry.register("postgres", || Arc::new(crate::PostgresHandler::new("postgres")) as Arc<dyn onex_core::ProtocolHandler>);
    #[cfg(feature = "redis")]
    registry.register("redis", || Arc::new(crate::RedisHandler::new("redis")) as Arc<dyn onex_core::ProtocolHandler>);
    #[cfg(feature = "graphql")]
    registry.register("graphql", || Arc::new(crate::GraphQlHandler::new("graphql")) as Arc<dyn onex_core::ProtocolHandler>);
}

/// A registry holding every built-in handler.
pub fn registry() -> HandlerRegistry {
    let mut r = HandlerRegistry::new();
    register_all(&mut r);
    r
}

/// Builds an initialized, managed handler of `handler_type` from `config` (retry, breaker,
/// timeouts and health caching applied); per-call settings come with each
/// [`onex_core::OperationConfig`].
///
/// ```no_run
/// # async fn f() -> onex_core::Result<()> {
/// let pg = onex_handlers::build("postgres", onex_core::ConnectionConfig::new("postgres://root@127.0.0.1/test")).await?;
/// # Ok(()) }
/// ```
pub async fn build(handler_type: &str, config: ConnectionConfig) -> Result<Arc<ManagedHandler>> {
    registry().build(handler_type, config).await
}
