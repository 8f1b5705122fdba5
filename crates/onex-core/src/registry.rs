//! [`HandlerRegistry`]: handler type names → factories; builds managed, initialized handlers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::{ManagedHandler, DEFAULT_HEALTH_TTL};
use crate::{ConnectionConfig, Error, ProtocolHandler, Result};

/// Makes a fresh, uninitialized handler.
pub type HandlerFactory = Arc<dyn Fn() -> Arc<dyn ProtocolHandler> + Send + Sync>;

/// Maps handler type names (`http`, `postgres`, …) to factories and builds handlers from
/// configuration, each wrapped in a [`ManagedHandler`] and initialized.
///
/// ```
/// # use std::sync::Arc;
/// # use onex_core::{registry::HandlerRegistry, ConnectionConfig, ProtocolHandler};
/// # async fn demo(make_http: fn() -> Arc<dyn ProtocolHandler>) -> onex_core::Result<()> {
/// let mut registry = HandlerRegistry::new();
/// registry.register("http", make_http);
/// let handler = registry.build("http", ConnectionConfig::new("http://127.0.0.1:8080")).await?;
/// let err = registry.build("ftp", ConnectionConfig::default()).await.unwrap_err();
/// assert!(err.to_string().contains("known types: http"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HandlerRegistry {
    factories: BTreeMap<String, HandlerFactory>,
    health_ttl: Duration,
}

impl std::fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerRegistry").field("types", &self.types()).field("health_ttl", &self.health_ttl).finish()
    }
}

impl Default for HandlerRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl HandlerRegistry {
    /// An empty registry; built handlers cache health for [`DEFAULT_HEALTH_TTL`].
    pub fn new() -> Self {
        HandlerRegistry { factories: BTreeMap::new(), health_ttl: DEFAULT_HEALTH_TTL }
    }

    /// Sets the health-cache TTL of handlers built from now on.
    pub fn with_health_ttl(mut self, ttl: Duration) -> Self {
        self.health_ttl = ttl;
        self
    }

    /// Registers `factory` under `type_name`. Registering a name again replaces the earlier
    /// factory (so an application can override a built-in handler).
    pub fn register<F>(&mut self, type_name: impl Into<String>, factory: F) -> &mut Self
    where
        F: Fn() -> Arc<dyn ProtocolHandler> + Send + Sync + 'static,
    {
        let type_name = type_name.into();
        if self.factories.insert(type_name.clone(), Arc::new(factory)).is_some() {
            tracing::debug!(type_name, "handler factory replaced");
        }
        self
    }

    /// Whether `type_name` is registered.
    pub fn contains(&self, type_name: &str) -> bool {
        self.factories.contains_key(type_name)
    }

    /// The registered type names, sorted.
    pub fn types(&self) -> Vec<String> {
        self.factories.keys().cloned().collect()
    }

    /// Creates a `type_name` handler, wraps it in a [`ManagedHandler`] and initializes it with
    /// `config`. An unknown type is an [`Error::Config`] listing the known types.
    pub async fn build(&self, type_name: &str, config: ConnectionConfig) -> Result<Arc<ManagedHandler>> {
        let factory = self.factories.get(type_name).ok_or_else(|| {
            let known = if self.factories.is_empty() { "none registered".to_string() } else { self.types().join(", ") };
            Error::config(format!("unknown handler type {type_name:?}; known types: {known}")).with("handler_type", type_name)
        })?;
        let handler = ManagedHandler::builder(factory()).health_ttl(self.health_ttl).build();
        handler.initialize(config).await?;
        Ok(Arc::new(handler))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::lifecycle::LifecycleState;
    use crate::{ErrorKind, HandlerDescriptor, HealthStatus, OperationConfig, ProtocolRequest, ProtocolResponse};

    /// The smallest inner handler: echoes its type and the URL it was initialized with.
    #[derive(Debug)]
    struct Echo {
        kind: &'static str,
        url: parking_lot::Mutex<Option<String>>,
    }

    #[async_trait]
    impl ProtocolHandler for Echo {
        fn handler_type(&self) -> &str {
            self.kind
        }
        async fn initialize(&self, config: ConnectionConfig) -> Result<()> {
            if config.url.is_empty() {
                return Err(Error::config("url is empty; set ConnectionConfig.url"));
            }
            *self.url.lock() = Some(config.url);
            Ok(())
        }
        async fn shutdown(&self, _timeout: Duration) -> Result<()> {
            Ok(())
        }
        async fn execute(&self, _req: ProtocolRequest, _op: &OperationConfig) -> Result<ProtocolResponse> {
            Ok(ProtocolResponse { data: serde_json::json!({ "type": self.kind, "url": *self.url.lock() }), ..Default::default() })
        }
        fn describe(&self) -> Result<HandlerDescriptor> {
            Ok(HandlerDescriptor { handler_type: self.kind.into(), ..Default::default() })
        }
        async fn health_check(&self) -> Result<HealthStatus> {
            Ok(HealthStatus::healthy(Duration::ZERO, serde_json::Value::Null))
        }
    }

    fn echo(kind: &'static str) -> impl Fn() -> Arc<dyn ProtocolHandler> + Send + Sync + 'static {
        move || Arc::new(Echo { kind, url: Default::default() }) as Arc<dyn ProtocolHandler>
    }

    #[tokio::test]
    async fn builds_initialized_managed_handlers() {
        let mut registry = HandlerRegistry::new();
        registry.register("redis", echo("redis")).register("http", echo("http"));
        assert_eq!(registry.types(), ["http", "redis"]);
        assert!(registry.contains("http") && !registry.contains("kafka"));
        let handler = registry.build("http", ConnectionConfig::new("http://127.0.0.1:1")).await.unwrap();
        assert_eq!(handler.state(), LifecycleState::Initialized);
        let response = handler.execute(ProtocolRequest::new("GET", "/"), &OperationConfig::default()).await.unwrap();
        assert_eq!(response.data, serde_json::json!({ "type": "http", "url": "http://127.0.0.1:1" }));
        assert!(handler.describe().unwrap().resilience.contains_key("circuit_breaker"));
        let as_dyn: Arc<dyn ProtocolHandler> = handler;
        assert_eq!(as_dyn.handler_type(), "http");
    }

    #[tokio::test]
    async fn every_build_makes_a_new_instance() {
        let made = Arc::new(AtomicU32::new(0));
        let mut registry = HandlerRegistry::new();
        let counter = made.clone();
        registry.register("http", move || {
            counter.fetch_add(1, Ordering::SeqCst);
            // No `as Arc<dyn ProtocolHandler>` needed: the bound gives the closure its return type.
            Arc::new(Echo { kind: "http", url: Default::default() })
        });
        let a = registry.build("http", ConnectionConfig::new("http://a")).await.unwrap();
        let b = registry.build("http", ConnectionConfig::new("http://b")).await.unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 2);
        assert!(!a.breaker().unwrap().same_as(&b.breaker().unwrap()), "one breaker per handler instance");
    }

    #[tokio::test]
    async fn unknown_types_list_the_known_ones() {
        let mut registry = HandlerRegistry::new();
        let err = registry.build("http", ConnectionConfig::default()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("unknown handler type \"http\"; known types: none registered"), "{err}");
        registry.register("postgres", echo("postgres")).register("http", echo("http"));
        let err = registry.build("ftp", ConnectionConfig::default()).await.unwrap_err();
        assert!(err.to_string().contains("unknown handler type \"ftp\"; known types: http, postgres"), "{err}");
    }

    #[tokio::test]
    async fn initialize_errors_are_returned() {
        let mut registry = HandlerRegistry::new();
        registry.register("http", echo("http"));
        let err = registry.build("http", ConnectionConfig::default()).await.unwrap_err();
        assert!(err.to_string().contains("url is empty"), "{err}");
    }

    #[tokio::test]
    async fn re_registering_replaces_and_health_ttl_is_passed_on() {
        let mut registry = HandlerRegistry::new().with_health_ttl(Duration::from_secs(9));
        registry.register("http", echo("first"));
        registry.register("http", echo("second"));
        assert_eq!(registry.types(), ["http"]);
        let handler = registry.build("http", ConnectionConfig::new("http://x")).await.unwrap();
        assert_eq!(handler.handler_type(), "second");
        assert_eq!(handler.describe().unwrap().resilience["health_ttl_ms"], 9_000);
        assert!(format!("{registry:?}").contains("http"));
    }
}
