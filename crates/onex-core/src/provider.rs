//! The [`EventBusProvider`] trait.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{EventBus, Result};

/// Default bus URL when none is configured: the embedded durable log.
pub const DEFAULT_BUS_URL: &str = "sqlite://.onex/onex.db";

/// Builds buses from URLs (`memory://`, `sqlite://PATH`, `kafka://HOST:PORT[,…]`,
/// `redpanda://…`) and caches them per (environment, group), so every part of a service
/// that asks for the same bus shares one.
#[async_trait]
pub trait EventBusProvider: Send + Sync {
    /// The bus for `url` (`None` = the provider's default), shared per (environment, group).
    async fn bus(&self, url: Option<&str>, environment: &str, group: &str) -> Result<Arc<dyn EventBus>>;
}
