//! Shared by the publisher tests: the real memory transport wrapped to fail or stall on
//! demand, and small helpers.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use onex_bus::memory::MemoryTransport;
use onex_bus::transport::{ProduceRecord, Transport, TransportConsumer, TransportFeatures};
use onex_bus::TransportBus;
use onex_core::resilience::RetryPolicy;
use onex_core::{Envelope, Error, EventBus, HealthStatus, PayloadValidator, Receipt, Result, StartFrom, TopicAdmin};
use tokio::sync::Semaphore;

/// The memory transport, with produce failing the next N calls, failing always ("dead"),
/// waiting for a permit (to hold publishes in flight), or writing every record and leaving
/// the last receipt out (a broken backend).
#[derive(Debug)]
pub struct Faulty {
    pub inner: MemoryTransport,
    pub fail_next: AtomicU32,
    pub dead: AtomicBool,
    pub gated: AtomicBool,
    pub gate: Semaphore,
    pub produce_calls: AtomicU32,
    pub short_receipts: AtomicBool,
}

#[async_trait]
impl Transport for Faulty {
    fn backend(&self) -> &'static str {
        "memory"
    }
    fn features(&self) -> TransportFeatures {
        self.inner.features()
    }
    async fn produce(&self, topic: &str, records: Vec<ProduceRecord>) -> Result<Vec<Receipt>> {
        self.produce_calls.fetch_add(1, Ordering::SeqCst);
        if self.gated.load(Ordering::SeqCst) {
            self.gate.acquire().await.expect("gate open").forget();
        }
        if self.dead.load(Ordering::SeqCst) {
            return Err(Error::unavailable("broker is down").with("topic", topic));
        }
        if self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(Error::timeout("broker did not acknowledge", Duration::from_secs(1)));
        }
        let mut receipts = self.inner.produce(topic, records).await?;
        if self.short_receipts.load(Ordering::SeqCst) {
            receipts.pop();
        }
        Ok(receipts)
    }
    async fn consumer(&self, group: &str, topic: &str, start: StartFrom) -> Result<Box<dyn TransportConsumer>> {
        self.inner.consumer(group, topic, start).await
    }
    fn admin(&self) -> &dyn TopicAdmin {
        self.inner.admin()
    }
    async fn health(&self) -> Result<HealthStatus> {
        self.inner.health().await
    }
    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        self.inner.committed(group, topic, partition).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

pub fn setup() -> (Arc<Faulty>, Arc<TransportBus>) {
    let t = Arc::new(Faulty {
        inner: MemoryTransport::default(),
        fail_next: AtomicU32::new(0),
        dead: AtomicBool::new(false),
        gated: AtomicBool::new(false),
        gate: Semaphore::new(0),
        produce_calls: AtomicU32::new(0),
        short_receipts: AtomicBool::new(false),
    });
    let bus = Arc::new(TransportBus::new(t.clone()));
    (t, bus)
}

pub fn quick_retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        jitter: false,
        ..Default::default()
    }
}

pub fn payload(i: u64) -> Bytes {
    Bytes::from(serde_json::to_vec(&serde_json::json!({ "i": i })).unwrap())
}

/// A bus the publisher knows only through the trait (another crate's `EventBus`, say):
/// every call goes to the `TransportBus` inside, and envelope publishes are counted.
pub struct ThroughTheTrait {
    pub inner: Arc<TransportBus>,
    pub envelopes: AtomicU32,
}

impl ThroughTheTrait {
    pub fn new(inner: Arc<TransportBus>) -> Self {
        ThroughTheTrait { inner, envelopes: AtomicU32::new(0) }
    }
}

#[async_trait]
impl EventBus for ThroughTheTrait {
    async fn publish(&self, msg: onex_core::EventMessage) -> Result<Receipt> {
        self.inner.publish(msg).await
    }
    async fn publish_envelope(&self, env: &Envelope, topic: &str) -> Result<Receipt> {
        self.envelopes.fetch_add(1, Ordering::SeqCst);
        self.inner.publish_envelope(env, topic).await
    }
    async fn subscribe(&self, sub: onex_core::Subscription) -> Result<onex_core::SubscriptionId> {
        self.inner.subscribe(sub).await
    }
    async fn unsubscribe(&self, id: onex_core::SubscriptionId) -> Result<()> {
        self.inner.unsubscribe(id).await
    }
    async fn start_consuming(&self, timeout: Option<Duration>) -> Result<()> {
        self.inner.start_consuming(timeout).await
    }
    async fn stop_consuming(&self, timeout: Duration) -> Result<()> {
        self.inner.stop_consuming(timeout).await
    }
    async fn health_check(&self) -> Result<HealthStatus> {
        self.inner.health_check().await
    }
    fn admin(&self) -> &dyn TopicAdmin {
        self.inner.admin()
    }
    fn backend(&self) -> &str {
        self.inner.backend()
    }
}

/// Refuses payloads that carry `"bad"`.
#[derive(Debug)]
pub struct RefuseBad;

#[async_trait]
impl PayloadValidator for RefuseBad {
    async fn validate_payload(&self, _topic: &str, payload: &[u8]) -> Result<()> {
        if payload.windows(5).any(|w| w == b"\"bad\"") {
            return Err(Error::rejected("payload says \"bad\""));
        }
        Ok(())
    }
}
