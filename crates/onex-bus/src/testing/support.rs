//! Helpers for conformance tests (and backend tests that want them).

use std::sync::Arc;
use std::time::Duration;

use onex_core::dlq::DlqRecord;
use onex_core::{handler_fn, Delivery, EventBus, Subscription, SubscriptionId, SubscriptionOptions};
use parking_lot::Mutex;

use crate::bus::TransportBus;

/// How long a conformance test waits for an expected delivery before failing.
pub const WAIT: Duration = Duration::from_secs(90);

/// A topic name unique to this test run.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Records every delivery it handles.
#[derive(Debug, Clone, Default)]
pub struct Collector {
    seen: Arc<Mutex<Vec<Delivery>>>,
}

impl Collector {
    /// A new, empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes on `bus` and collects whatever arrives.
    pub async fn subscribe(&self, bus: &TransportBus, topic: &str, group: &str, options: SubscriptionOptions) -> SubscriptionId {
        let seen = self.seen.clone();
        let handler = handler_fn(move |d: Delivery| {
            let seen = seen.clone();
            async move {
                seen.lock().push(d);
                Ok(())
            }
        });
        bus.subscribe(Subscription::new(topic, group, handler).with_options(options)).await.expect("subscribe")
    }

    /// Deliveries so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().clone()
    }

    /// Number of deliveries so far.
    pub fn len(&self) -> usize {
        self.seen.lock().len()
    }

    /// Whether nothing arrived.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least `n` deliveries arrived; panics after [`WAIT`].
    pub async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        wait_until(&format!("{n} deliveries"), || self.len() >= n).await;
        self.deliveries()
    }
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after [`WAIT`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {WAIT:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `n` DLQ records from `dlq_topic` with a fresh group.
pub async fn read_dlq(bus: &TransportBus, dlq_topic: &str, n: usize) -> Vec<(Delivery, DlqRecord)> {
    let c = Collector::new();
    let id = c.subscribe(bus, dlq_topic, &unique_topic("dlq-reader"), SubscriptionOptions::default()).await;
    bus.start().await.expect("start");
    let got = c.wait_for(n).await;
    bus.unsubscribe(id).await.expect("unsubscribe");
    got.into_iter()
        .map(|d| {
            assert_eq!(d.envelope.event_type, onex_core::dlq::DLQ_EVENT_TYPE);
            let rec: DlqRecord = d.envelope.payload_as().expect("DLQ payload is a DlqRecord");
            (d, rec)
        })
        .collect()
}

/// Subscription options with fast retries for tests.
pub fn fast_retries(max_retries: u32) -> SubscriptionOptions {
    let mut o = SubscriptionOptions::default();
    o.retry.max_retries = max_retries;
    o.retry.initial_backoff = Duration::from_millis(1);
    o.retry.max_backoff = Duration::from_millis(5);
    o.retry.jitter = false;
    o.commit_interval = Duration::from_millis(20);
    o
}
