use std::sync::Arc;
use std::time::Duration;

use super::ManagedHandler;
use crate::ProtocolHandler;

/// Default time a health result is reused (DESIGN §2.3).
pub const DEFAULT_HEALTH_TTL: Duration = Duration::from_secs(5);

/// Builds a [`ManagedHandler`] with non-default settings.
///
/// ```
/// # use std::{sync::Arc, time::Duration};
/// # use onex_core::{lifecycle::ManagedHandler, ProtocolHandler};
/// # fn wrap(inner: Arc<dyn ProtocolHandler>) -> ManagedHandler {
/// ManagedHandler::builder(inner).health_ttl(Duration::from_secs(1)).build()
/// # }
/// ```
#[derive(Clone)]
pub struct ManagedHandlerBuilder {
    pub(super) inner: Arc<dyn ProtocolHandler>,
    pub(super) health_ttl: Duration,
}

impl std::fmt::Debug for ManagedHandlerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedHandlerBuilder")
            .field("handler_type", &self.inner.handler_type())
            .field("health_ttl", &self.health_ttl)
            .finish()
    }
}

impl ManagedHandlerBuilder {
    pub(super) fn new(inner: Arc<dyn ProtocolHandler>) -> Self {
        ManagedHandlerBuilder { inner, health_ttl: DEFAULT_HEALTH_TTL }
    }

    /// How long a health result is reused. Zero checks every time (still one check at a
    /// time: concurrent callers share it).
    pub fn health_ttl(mut self, ttl: Duration) -> Self {
        self.health_ttl = ttl;
        self
    }

    /// The wrapper, in state `Created`.
    pub fn build(self) -> ManagedHandler {
        ManagedHandler::from_builder(self)
    }
}
