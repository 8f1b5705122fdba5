//! [`BusPublisher`]: the [`EventPublisher`] over any [`EventBus`] (DESIGN §2.4).
//!
//! A publish routes the event type to a topic (an explicit topic wins), builds the envelope
//! (correlation id generated when absent; causation id, metadata, partition key and source
//! carried), runs the pre-publish validation hook, then sends through the onex-core
//! [`Retry`] executor and [`CircuitBreaker`]: retryable failures are retried with backoff,
//! an open breaker fails fast with [`Error::CircuitOpen`]. Counters are relaxed atomics; the
//! only lock on the path is the breaker's short state-machine mutex.
//!
//! A publish that fails is returned to the caller, never dead-lettered by the publisher, so
//! `events_sent_to_dlq` stays 0 (the consumer engine dead-letters; see [`crate::dlq`]). A
//! publish refused because the publisher is closed, or because its event type, topic or
//! payload is invalid, counts in `events_failed`.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use onex_bus::publisher::BusPublisher;
//! use onex_core::{EventPublisher, EventPublisherExt, PublishOptions};
//!
//! let bus = onex_bus::connect("memory://").await?;
//! let publisher = BusPublisher::builder(bus).source("orders-service").build()?;
//! let receipt = publisher.publish_json("orders.created.v1", &serde_json::json!({"id": 1}), PublishOptions::default()).await?;
//! assert_eq!(receipt.topic, "orders.created.v1");
//! publisher.close(Duration::from_secs(5)).await?;
//! assert_eq!(publisher.metrics().events_published, 1);
//! # Ok::<(), onex_core::Error>(()) }).unwrap();
//! ```

mod batch;
mod envelope;
mod metrics;
mod pending;
mod pipeline;
mod router;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use onex_core::resilience::{BreakerConfig, CircuitBreaker, Retry, RetryPolicy};
use onex_core::{Envelope, Error, EventBus, EventPublisher, PayloadValidator, PublishOptions, PublisherMetrics, Receipt, Result};
use tokio::sync::Notify;
use tokio::time::Instant;

use self::metrics::Counters;
pub use self::pending::PendingPublish;
pub use self::pipeline::PublishPipeline;
pub use self::router::TopicRouter;

/// Builds a [`BusPublisher`]; every setting has a default.
pub struct BusPublisherBuilder {
    bus: Arc<dyn EventBus>,
    source: String,
    router: TopicRouter,
    retry: RetryPolicy,
    breaker: BreakerConfig,
    validator: Option<Arc<dyn PayloadValidator>>,
    breaker_name: Option<String>,
}

impl std::fmt::Debug for BusPublisherBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusPublisherBuilder")
            .field("backend", &self.bus.backend())
            .field("source", &self.source)
            .field("router", &self.router)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("validator", &self.validator.is_some())
            .finish()
    }
}

impl BusPublisherBuilder {
    /// The envelope `source` when a publish gives none (default `onex`).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Event type → topic when a publish names no topic (default: topic = event type).
    pub fn router(mut self, router: TopicRouter) -> Self {
        self.router = router;
        self
    }

    /// Retries of retryable failures (default: 3 retries, 100 ms, ×2, 10 s cap, jitter).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The circuit breaker (default: open after 5 counted failures, 30 s reset, 1 probe).
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// The name the breaker reports in [`Error::CircuitOpen`] (default `publisher:{backend}`).
    pub fn breaker_name(mut self, name: impl Into<String>) -> Self {
        self.breaker_name = Some(name.into());
        self
    }

    /// The pre-publish validation hook (the schema registry), called with the topic and the
    /// payload bytes; an `Err` fails the publish and nothing is sent.
    pub fn validator(mut self, validator: Arc<dyn PayloadValidator>) -> Self {
        self.validator = Some(validator);
        self
    }

    /// Validates the settings (retry policy, breaker, source) and builds the publisher.
    pub fn build(self) -> Result<BusPublisher> {
        if self.source.is_empty() {
            return Err(Error::config("publisher source is empty; name the producing service, e.g. \"orders-service\""));
        }
        let retry = Retry::new(self.retry)?;
        let name = self.breaker_name.unwrap_or_else(|| format!("publisher:{}", self.bus.backend()));
        let breaker = CircuitBreaker::new(name, self.breaker)?;
        Ok(BusPublisher {
            inner: Arc::new(Inner {
                bus: self.bus,
                source: self.source,
                router: self.router,
                retry,
                breaker,
                validator: self.validator,
                counters: Counters::default(),
                in_flight: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                drained: Notify::new(),
            }),
        })
    }
}

/// The [`EventPublisher`] over an [`EventBus`]. Clones share the bus, breaker, counters and
/// closed state.
#[derive(Clone)]
pub struct BusPublisher {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Arc<dyn EventBus>,
    source: String,
    router: TopicRouter,
    retry: Retry,
    breaker: CircuitBreaker,
    validator: Option<Arc<dyn PayloadValidator>>,
    counters: Counters,
    in_flight: AtomicU64,
    closed: AtomicBool,
    drained: Notify,
}

impl std::fmt::Debug for BusPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusPublisher")
            .field("backend", &self.inner.bus.backend())
            .field("source", &self.inner.source)
            .field("breaker", &self.inner.breaker.state())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// Counts a publish in flight; the last one out after `close` wakes the closer.
struct InFlight<'a>(&'a Inner);

impl<'a> InFlight<'a> {
    /// Counts a publish in, or refuses it (counted as failed) when the publisher is closed.
    fn enter(inner: &'a Inner) -> Result<Self> {
        Self::enter_many(inner, 1)
    }

    /// [`Self::enter`] for a batch of `publishes`, counted in flight as one.
    fn enter_many(inner: &'a Inner, publishes: usize) -> Result<Self> {
        // Count first, then check: `close` sets `closed` before it reads the count, so either
        // it sees this publish or this publish sees `closed`.
        inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(inner);
        if inner.closed.load(Ordering::SeqCst) {
            for _ in 0..publishes {
                inner.counters.record(false, 0, Duration::ZERO);
            }
            return Err(closed_error());
        }
        Ok(guard)
    }
}

/// What a publish to a closed publisher gets.
fn closed_error() -> Error {
    Error::shutdown("the publisher is closed; create a new one to publish again")
}

impl Inner {
    /// `topic` when the caller named one, else the routed topic of `event_type`.
    fn topic_for<'a>(&'a self, topic: Option<&'a str>, event_type: &'a str) -> std::borrow::Cow<'a, str> {
        match topic {
            Some(t) => std::borrow::Cow::Borrowed(t),
            None => self.router.route(event_type),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && self.0.closed.load(Ordering::SeqCst) {
            self.0.drained.notify_waiters();
        }
    }
}

impl BusPublisher {
    /// A builder over `bus` (an `Arc<TransportBus>` or any `Arc<dyn EventBus>`).
    pub fn builder(bus: Arc<dyn EventBus>) -> BusPublisherBuilder {
        BusPublisherBuilder {
            bus,
            source: "onex".to_string(),
            router: TopicRouter::new(),
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            validator: None,
            breaker_name: None,
        }
    }

    /// A publisher with every default.
    pub fn new(bus: Arc<dyn EventBus>) -> Result<Self> {
        Self::builder(bus).build()
    }

    /// The circuit breaker (shared by clones).
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.inner.breaker
    }

    /// Publishes an envelope the caller built, to `topic` (or the routed topic of its event
    /// type), with the same validation, retries, breaker and metrics as [`EventPublisher::publish`].
    pub fn publish_envelope<'a>(&'a self, env: &'a Envelope, topic: Option<&'a str>) -> PendingPublish<'a> {
        PendingPublish::start(&self.inner, env, topic)
    }
}

#[async_trait]
impl EventPublisher for BusPublisher {
    async fn publish(&self, event_type: &str, payload: Bytes, opts: PublishOptions) -> Result<Receipt> {
        let inner = &*self.inner;
        let guard = InFlight::enter(inner)?;
        let started = Instant::now();
        let PublishOptions { correlation_id, causation_id, metadata, topic, partition_key, source } = opts;
        let parts = envelope::EnvelopeParts {
            correlation_id,
            causation_id,
            metadata,
            partition_key,
            source: source.unwrap_or_else(|| inner.source.clone()),
        };
        let env = match envelope::build(event_type, payload, parts) {
            Ok(env) => env,
            Err(e) => {
                inner.counters.record(false, 0, started.elapsed());
                return Err(e);
            }
        };
        PendingPublish::new(guard, &env, inner.topic_for(topic.as_deref(), event_type), started).await
    }

    async fn close(&self, timeout: Duration) -> Result<()> {
        let inner = &*self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        let drained = async {
            loop {
                let notified = inner.drained.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if inner.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, drained).await.map_err(|_| {
            Error::timeout(
                format!(
                    "publisher close: {} publishes still in flight after {timeout:?}; they may still complete; give close a longer timeout",
                    inner.in_flight.load(Ordering::SeqCst)
                ),
                timeout,
            )
        })
    }

    fn metrics(&self) -> PublisherMetrics {
        self.inner.counters.snapshot(&self.inner.breaker.counters())
    }
}
