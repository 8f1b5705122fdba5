//! Delivery reports, one shared slot per record.
//!
//! rdkafka's `FutureProducer` allocates two things per record, a boxed oneshot sender and
//! the oneshot itself, sized for a failed delivery's copy of the whole message; its polling
//! thread fills the oneshot and the publisher reads it back. Here a record's delivery opaque
//! is one `Arc<DeliverySlot>` of a few words: librdkafka's polling thread (the same
//! `ThreadedProducer` underneath) writes the partition and offset into it and wakes the
//! publisher. In `onex bench bus-kafka` that took a publish from ~0.94 to ~0.99 of a raw
//! `FutureProducer`'s throughput (docs/decisions.md, "Twenty-third session").

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use parking_lot::Mutex;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;

use super::context::KafkaClientContext;

const PENDING: u8 = 0;
const DELIVERED: u8 = 1;
const FAILED: u8 = 2;

/// What the broker said about one record.
#[derive(Debug)]
pub(super) enum Report {
    /// Acknowledged: partition, offset, timestamp in ms (`None` if the broker gave none).
    Delivered { partition: i32, offset: i64, timestamp_ms: Option<i64> },
    /// Refused, or given up on (timeouts, purged when its producer was closed).
    Failed(KafkaError),
}

/// Where librdkafka's polling thread leaves a record's report for its publisher. The record
/// carries one `Arc` of it as its delivery opaque, the publisher the other.
#[derive(Debug, Default)]
pub(crate) struct DeliverySlot {
    state: AtomicU8,
    partition: AtomicI32,
    offset: AtomicI64,
    /// `i64::MIN` = no timestamp.
    timestamp_ms: AtomicI64,
    error: Mutex<Option<KafkaError>>,
    waker: AtomicWaker,
}

impl DeliverySlot {
    pub(super) fn new() -> Arc<DeliverySlot> {
        Arc::new(DeliverySlot::default())
    }

    /// The report, once there is one; registers the waker otherwise.
    pub(super) fn poll_report(&self, cx: &mut Context<'_>) -> Poll<Report> {
        if let Some(r) = self.take() {
            return Poll::Ready(r);
        }
        self.waker.register(cx.waker());
        // The report may have landed between the first look and the registration.
        match self.take() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    fn take(&self) -> Option<Report> {
        match self.state.load(Ordering::Acquire) {
            PENDING => None,
            DELIVERED => Some(Report::Delivered {
                partition: self.partition.load(Ordering::Relaxed),
                offset: self.offset.load(Ordering::Relaxed),
                timestamp_ms: Some(self.timestamp_ms.load(Ordering::Relaxed)).filter(|t| *t != i64::MIN),
            }),
            // Taken once: a report is read by the one poll that completes its future.
            _ => Some(Report::Failed(self.error.lock().take().unwrap_or(KafkaError::Canceled))),
        }
    }

    fn delivered(&self, partition: i32, offset: i64, timestamp_ms: Option<i64>) {
        self.partition.store(partition, Ordering::Relaxed);
        self.offset.store(offset, Ordering::Relaxed);
        self.timestamp_ms.store(timestamp_ms.unwrap_or(i64::MIN), Ordering::Relaxed);
        self.settle(DELIVERED);
    }

    fn failed(&self, error: KafkaError) {
        *self.error.lock() = Some(error);
        self.settle(FAILED);
    }

    fn settle(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.waker.wake();
    }
}

impl ProducerContext for KafkaClientContext {
    type DeliveryOpaque = Arc<DeliverySlot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Arc<DeliverySlot>) {
        match result {
            Ok(m) => slot.delivered(m.partition(), m.offset(), m.timestamp().to_millis()),
            Err((e, _)) => slot.failed(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_report_wakes_the_waiter_and_is_read_back() {
        let wakes = Arc::new(CountWakes::default());
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let slot = DeliverySlot::new();
        assert!(slot.poll_report(&mut cx).is_pending());
        slot.delivered(3, 41, None);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        match slot.poll_report(&mut cx) {
            Poll::Ready(Report::Delivered { partition: 3, offset: 41, timestamp_ms: None }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failure_carries_its_error() {
        let slot = DeliverySlot::new();
        slot.failed(KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::MessageTimedOut));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match slot.poll_report(&mut cx) {
            Poll::Ready(Report::Failed(e)) => assert_eq!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::MessageTimedOut)),
            other => panic!("{other:?}"),
        }
    }
}
