//! The [`EventPublisher`] trait: the one API application code publishes with.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::Metadata;
use crate::{Receipt, Result};

/// Options of one publish.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishOptions {
    /// Correlation id; generated when absent.
    pub correlation_id: Option<Uuid>,
    /// Envelope id of the direct cause.
    pub causation_id: Option<Uuid>,
    /// Headers, tags, trace context.
    pub metadata: Metadata,
    /// Explicit topic; wins over the router.
    pub topic: Option<String>,
    /// Partition key.
    pub partition_key: Option<String>,
    /// Source; the publisher's default when absent.
    pub source: Option<String>,
}

/// Publisher metrics (the SPI names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublisherMetrics {
    /// Publishes acknowledged.
    pub events_published: u64,
    /// Publishes that failed after retries (or failed fast).
    pub events_failed: u64,
    /// Records sent to a DLQ through this publisher.
    pub events_sent_to_dlq: u64,
    /// Retries made.
    pub retries_attempted: u64,
    /// Times the breaker opened.
    pub circuit_breaker_opens: u64,
    /// Times the breaker closed again.
    pub circuit_breaker_closes: u64,
    /// `closed`, `open` or `half_open`.
    pub circuit_breaker_status: String,
    /// Consecutive counted failures now.
    pub current_failures: u64,
    /// Sum of publish times.
    pub total_publish_time_ms: f64,
    /// Mean publish time.
    pub avg_publish_time_ms: f64,
}

/// Publishes events: routes the event type to a topic, builds the envelope, validates the
/// payload against the schema registry, retries retryable failures with backoff behind a
/// circuit breaker, and keeps metrics.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes a payload that is already JSON bytes. Returns once acknowledged.
    async fn publish(&self, event_type: &str, payload: Bytes, opts: PublishOptions) -> Result<Receipt>;
    /// Waits for publishes in flight up to `timeout`, then refuses new ones.
    async fn close(&self, timeout: Duration) -> Result<()>;
    /// A snapshot of the metrics.
    fn metrics(&self) -> PublisherMetrics;
}

/// Typed publishing on top of [`EventPublisher`].
#[async_trait]
pub trait EventPublisherExt: EventPublisher {
    /// Serializes `payload` to JSON once and publishes it.
    async fn publish_json<T: Serialize + Sync + ?Sized>(&self, event_type: &str, payload: &T, opts: PublishOptions) -> Result<Receipt> {
        let bytes = serde_json::to_vec(payload)
            .map_err(|e| crate::Error::rejected(format!("payload of {event_type} cannot be serialized: {e}")))?;
        self.publish(event_type, Bytes::from(bytes), opts).await
    }
}

impl<P: EventPublisher + ?Sized> EventPublisherExt for P {}
