//! # onex-core — the onex contract
//!
//! Models, errors, traits and resilience primitives shared by every onex crate. Backend and
//! handler authors depend on this crate alone: it has no I/O clients.
//!
//! - [`Envelope`] and its CloudEvents codec ([`envelope::encode_record`], [`envelope::decode_record`]).
//! - Handler models and [`ProtocolHandler`].
//! - [`EventBus`], [`EventPublisher`], [`DlqHandler`], [`SchemaRegistry`],
//!   [`IdempotencyStore`], [`EventBusProvider`]: object-safe async traits.
//! - [`Error`] with [`Error::is_retryable`] and [`Error::trips_breaker`].
//! - [`resilience`]: retry, timeout, circuit breaker, concurrency limit.
//! - [`lifecycle::ManagedHandler`]: the wrapper every handler goes through (lifecycle, health
//!   cache, breaker → retry → timeout); [`HandlerRegistry`] builds handlers from config.
//!
//! ```
//! use onex_core::{Envelope, envelope::{encode_record, decode_record}};
//! let env = Envelope::new("orders.created.v1", &serde_json::json!({"id": 1}))?;
//! let record = encode_record(&env);
//! assert_eq!(decode_record(&record, "orders")?, env);
//! # Ok::<(), onex_core::Error>(())
//! ```

pub mod bus;
pub mod dlq;
pub mod envelope;
pub mod error;
pub mod handler;
pub mod idempotency;
pub mod lifecycle;
pub mod provider;
pub mod publisher;
pub mod record;
pub mod registry;
pub mod resilience;
pub mod sanitize;
pub mod schema;
pub mod secret;
#[doc(hidden)]
pub mod util;

pub use bus::{
    handler_fn, validate_topic, Delivery, EventBus, EventHandler, EventMessage, PartitionInfo, Receipt, StartFrom, Subscription,
    SubscriptionId, SubscriptionOptions, TopicAdmin, TopicInfo, TopicSpec,
};
pub use dlq::{DlqHandler, DlqRecord};
pub use envelope::{Envelope, Metadata};
pub use error::{Error, ErrorKind, Result, Violation};
pub use handler::{
    Auth, Body, ConnectionConfig, HandlerDescriptor, HealthStatus, OperationConfig, PoolConfig, PoolStats, ProtocolHandler,
    ProtocolRequest, ProtocolResponse, Timeouts, TlsConfig,
};
pub use idempotency::{ClaimOutcome, IdempotencyStore};
pub use lifecycle::{LifecycleState, ManagedHandler};
pub use provider::{EventBusProvider, DEFAULT_BUS_URL};
pub use publisher::{EventPublisher, EventPublisherExt, PublishOptions, PublisherMetrics};
pub use record::{well_known_header, Headers, Record};
pub use registry::HandlerRegistry;
pub use schema::{CompatibilityMode, CompatibilityReport, PayloadValidator, SchemaInfo, SchemaRegistry, SchemaType, VersionSpec};
pub use secret::Secret;

#[cfg(test)]
mod object_safety {
    use super::*;

    #[test]
    #[allow(clippy::too_many_arguments)] // one parameter per trait is the point of the check
    fn traits_are_object_safe() {
        fn takes(
            _: Option<Box<dyn ProtocolHandler>>,
            _: Option<Box<dyn EventBus>>,
            _: Option<Box<dyn EventPublisher>>,
            _: Option<Box<dyn DlqHandler>>,
            _: Option<Box<dyn SchemaRegistry>>,
            _: Option<Box<dyn IdempotencyStore>>,
            _: Option<Box<dyn EventBusProvider>>,
            _: Option<Box<dyn EventHandler>>,
            _: Option<Box<dyn TopicAdmin>>,
        ) {
        }
        takes(None, None, None, None, None, None, None, None, None);
    }
}
