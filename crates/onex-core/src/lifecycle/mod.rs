//! The lifecycle wrapper every handler goes through (DESIGN §2.3, §5).
//!
//! [`ManagedHandler`] wraps an `Arc<dyn ProtocolHandler>` and is itself a [`ProtocolHandler`],
//! so registries and applications hold `Arc<dyn ProtocolHandler>` either way. It enforces the
//! lifecycle `Created → Initialized → Closed` once, for every handler:
//!
//! | call | Created | Initialized | Closed |
//! |---|---|---|---|
//! | `initialize` | runs the inner `initialize` once (concurrent callers wait for it) | no-op | `InvalidState` |
//! | `execute`, `describe`, `health_check` | `InvalidState` | run | `InvalidState` |
//! | `shutdown` | → Closed (inner never started) | → Closed, inner `shutdown` | no-op |
//!
//! A failed inner `initialize` leaves the handler `Created`, so it may be tried again. `shutdown`
//! marks the handler `Closed` first (new calls fail fast) and then lets the inner handler drain;
//! it stays `Closed` even when the inner `shutdown` reports an error.
//!
//! `execute` applies, in order: the handler's circuit breaker (one per instance, from
//! [`ConnectionConfig::breaker`]) → retry per [`OperationConfig::retry`] → a timeout per attempt
//! ([`OperationConfig::timeout`], else [`crate::Timeouts::request`]) → the inner `execute`.
//! A failed attempt is retried only when [`Error::is_retryable`] and the operation is
//! idempotent or [`Error::nothing_sent`]. On success `response.metadata["attempts"]` holds the
//! attempt count and `response.duration` the time of all attempts.
//!
//! Health results are cached for a TTL (default 5 s, [`ManagedHandlerBuilder::health_ttl`]).

mod builder;
mod execute;
mod health;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

pub use builder::{ManagedHandlerBuilder, DEFAULT_HEALTH_TTL};
use execute::Active;
use health::HealthCache;

use crate::resilience::CircuitBreaker;
use crate::{
    ConnectionConfig, Error, HandlerDescriptor, HealthStatus, OperationConfig, ProtocolHandler, ProtocolRequest, ProtocolResponse, Result,
};

/// Where a [`ManagedHandler`] is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleState {
    /// Built, not initialized: only `initialize` and `shutdown` may be called.
    Created,
    /// Ready for calls.
    Initialized,
    /// Shut down for good: build a new handler to reconnect.
    Closed,
}

enum Phase {
    Created,
    Initialized(Arc<Active>),
    Closed,
}

/// A [`ProtocolHandler`] with lifecycle rules, health caching and resilience applied.
///
/// ```
/// # use std::sync::Arc;
/// # use onex_core::{lifecycle::{LifecycleState, ManagedHandler}, ConnectionConfig, ProtocolHandler};
/// # async fn demo(inner: Arc<dyn ProtocolHandler>) -> onex_core::Result<()> {
/// let handler = ManagedHandler::new(inner);
/// handler.initialize(ConnectionConfig::new("http://127.0.0.1:8080")).await?;
/// assert_eq!(handler.state(), LifecycleState::Initialized);
/// let as_trait_object: Arc<dyn ProtocolHandler> = Arc::new(handler);
/// # Ok(()) }
/// ```
pub struct ManagedHandler {
    inner: Arc<dyn ProtocolHandler>,
    /// Serialises `initialize` and `shutdown`, so the inner ones run at most once each, in order.
    transition: tokio::sync::Mutex<()>,
    phase: RwLock<Phase>,
    health: HealthCache,
}

impl std::fmt::Debug for ManagedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedHandler")
            .field("handler_type", &self.inner.handler_type())
            .field("state", &self.state())
            .field("health_ttl", &self.health.ttl())
            .finish_non_exhaustive()
    }
}

impl ManagedHandler {
    /// Wraps `inner` with default settings; the result is `Created`.
    pub fn new(inner: Arc<dyn ProtocolHandler>) -> Self {
        Self::builder(inner).build()
    }

    /// A builder for non-default settings.
    pub fn builder(inner: Arc<dyn ProtocolHandler>) -> ManagedHandlerBuilder {
        ManagedHandlerBuilder::new(inner)
    }

    fn from_builder(b: ManagedHandlerBuilder) -> Self {
        ManagedHandler {
            inner: b.inner,
            transition: tokio::sync::Mutex::new(()),
            phase: RwLock::new(Phase::Created),
            health: HealthCache::new(b.health_ttl),
        }
    }

    /// The lifecycle state now.
    pub fn state(&self) -> LifecycleState {
        match &*self.phase.read() {
            Phase::Created => LifecycleState::Created,
            Phase::Initialized(_) => LifecycleState::Initialized,
            Phase::Closed => LifecycleState::Closed,
        }
    }

    /// The circuit breaker of this handler (a clone sharing its state); `None` until initialized.
    pub fn breaker(&self) -> Option<CircuitBreaker> {
        match &*self.phase.read() {
            Phase::Initialized(active) => Some(active.breaker.clone()),
            _ => None,
        }
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &Arc<dyn ProtocolHandler> {
        &self.inner
    }

    /// The running state, or `InvalidState` saying what to call.
    fn active(&self, call: &str) -> Result<Arc<Active>> {
        let kind = self.inner.handler_type();
        match &*self.phase.read() {
            Phase::Initialized(active) => Ok(Arc::clone(active)),
            Phase::Created => Err(Error::invalid_state(format!(
                "{call} on the {kind} handler before initialize: call initialize(config) first (HandlerRegistry::build does it for you)"
            ))
            .with("handler_type", kind)
            .with("state", "created")),
            Phase::Closed => {
                Err(Error::invalid_state(format!("{call} on the {kind} handler after shutdown: build and initialize a new handler"))
                    .with("handler_type", kind)
                    .with("state", "closed"))
            }
        }
    }
}

#[async_trait]
impl ProtocolHandler for ManagedHandler {
    fn handler_type(&self) -> &str {
        self.inner.handler_type()
    }

    async fn initialize(&self, config: ConnectionConfig) -> Result<()> {
        let _transition = self.transition.lock().await;
        let kind = self.inner.handler_type();
        match self.state() {
            LifecycleState::Initialized => {
                tracing::debug!(handler_type = kind, "initialize called again: already initialized, ignoring");
                return Ok(());
            }
            LifecycleState::Closed => {
                return Err(Error::invalid_state(format!(
                    "initialize on the {kind} handler after shutdown: a closed handler cannot be reopened; build a new one"
                ))
                .with("handler_type", kind)
                .with("state", "closed"));
            }
            LifecycleState::Created => {}
        }
        if config.timeouts.request.is_zero() {
            return Err(Error::config(format!(
                "{kind} handler: timeouts.request = 0s is invalid; set a positive request timeout (default 30000 ms)"
            )));
        }
        let target = format!("{kind} {}", crate::sanitize::sanitize(&config.url));
        let breaker = CircuitBreaker::new(target, config.breaker.clone())?;
        let request_timeout = config.timeouts.request;
        self.inner.initialize(config).await?;
        *self.phase.write() = Phase::Initialized(Arc::new(Active { breaker, request_timeout }));
        tracing::debug!(handler_type = kind, "handler initialized");
        Ok(())
    }

    async fn shutdown(&self, timeout: Duration) -> Result<()> {
        let _transition = self.transition.lock().await;
        // Closed first, so new calls fail fast while the inner shutdown drains calls in flight.
        let previous = std::mem::replace(&mut *self.phase.write(), Phase::Closed);
        match previous {
            Phase::Initialized(_) => self.inner.shutdown(timeout).await,
            Phase::Created | Phase::Closed => Ok(()),
        }
    }

    async fn execute(&self, req: ProtocolRequest, op: &OperationConfig) -> Result<ProtocolResponse> {
        let active = self.active("execute")?;
        execute::execute(self.inner.as_ref(), &active, req, op).await
    }

    fn describe(&self) -> Result<HandlerDescriptor> {
        let active = self.active("describe")?;
        let mut descriptor = self.inner.describe()?;
        let breaker = &active.breaker;
        let counters = breaker.counters();
        let config = breaker.config();
        let r = &mut descriptor.resilience;
        r.insert("breaker_state".into(), counters.state.as_str().into());
        r.insert(
            "circuit_breaker".into(),
            serde_json::json!({
                "enabled": config.enabled,
                "state": counters.state.as_str(),
                "opens": counters.opens,
                "closes": counters.closes,
                "consecutive_failures": counters.consecutive_failures,
                "rejected": counters.rejected,
                "window_calls": counters.window_calls,
                "window_failures": counters.window_failures,
                "failure_threshold": config.failure_threshold,
                "failure_rate": config.failure_rate,
                "reset_timeout_ms": config.reset_timeout.as_millis() as u64,
                "half_open_probes": config.half_open_probes,
            }),
        );
        r.insert("request_timeout_ms".into(), (active.request_timeout.as_millis() as u64).into());
        r.insert("health_ttl_ms".into(), (self.health.ttl().as_millis() as u64).into());
        Ok(descriptor)
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        let active = self.active("health_check")?;
        Ok(self.health.get_or_check(active.request_timeout, self.inner.health_check()).await)
    }
}
