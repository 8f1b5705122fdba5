//! Delivery reports, one shared slot per record.
//!
//! rdkafka's `FutureProducer` allocates two things per record, a boxed oneshot sender and
//! the oneshot itself, sized for a failed delivery's copy of the whole message; its polling
//! thread fills the oneshot and the publisher reads it back. Here a record's delivery opaque
//! is one `Arc<DeliverySlot>` of a few words: librdkafka's polling thread (the same
//! `ThreadedProducer` underneath) writes the partition and offset into it and wakes the
//! publisher. In `onex bench bus-kafka` that took a publish from ~0.94 to ~0.99 of a raw
//! `FutureProducer`'s throughput (docs/decisions.md, "Twenty-third session").

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
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
///
/// A slot is written by one thread and read by another, thousands of them in flight: its
/// fields fill one cache line, aligned so that no other slot shares it (its `Arc`'s counts
/// take the line before). Slots packed 80 bytes apart made the publisher's thread spend
/// ~7 % more CPU per record in `onex bench bus-kafka` than 160-byte ones did, as lines moved
/// between librdkafka's thread reporting one slot and the publisher's starting the next
/// (docs/decisions.md, "Thirty-second session").
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct DeliverySlot {
    state: AtomicU8,
    partition: AtomicI32,
    offset: AtomicI64,
    /// `i64::MIN` = no timestamp.
    timestamp_ms: AtomicI64,
    /// Why the record failed: rdkafka reports every failed delivery as
    /// `KafkaError::MessageProduction(code)`, so the code is all there is to keep.
    error: OnceLock<RDKafkaErrorCode>,
    waker: AtomicWaker,
    /// The batch this record was sent in: its report wakes the batch's waiter, once the
    /// whole batch has one, instead of this slot's.
    batch: Option<Arc<BatchReports>>,
}

impl DeliverySlot {
    pub(super) fn new() -> Arc<DeliverySlot> {
        Arc::new(DeliverySlot::default())
    }

    /// A slot of a record in `batch`, counted in it until its report lands.
    pub(super) fn in_batch(batch: &Arc<BatchReports>) -> Arc<DeliverySlot> {
        batch.outstanding.fetch_add(1, Ordering::Relaxed);
        Arc::new(DeliverySlot { batch: Some(batch.clone()), ..DeliverySlot::default() })
    }

    /// The report, once there is one; registers the waker otherwise.
    pub(super) fn poll_report(&self, cx: &mut Context<'_>) -> Poll<Report> {
        if let Some(r) = self.report() {
            return Poll::Ready(r);
        }
        self.waker.register(cx.waker());
        // The report may have landed between the first look and the registration.
        match self.report() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// The report, if it is in (a batch reads its slots once all of them are:
    /// [`BatchReports::all_reported`]).
    pub(super) fn report(&self) -> Option<Report> {
        match self.state.load(Ordering::Acquire) {
            PENDING => None,
            DELIVERED => Some(Report::Delivered {
                partition: self.partition.load(Ordering::Relaxed),
                offset: self.offset.load(Ordering::Relaxed),
                timestamp_ms: Some(self.timestamp_ms.load(Ordering::Relaxed)).filter(|t| *t != i64::MIN),
            }),
            _ => Some(Report::Failed(KafkaError::MessageProduction(self.error.get().copied().unwrap_or(RDKafkaErrorCode::Fail)))),
        }
    }

    fn delivered(&self, partition: i32, offset: i64, timestamp_ms: Option<i64>) {
        self.partition.store(partition, Ordering::Relaxed);
        self.offset.store(offset, Ordering::Relaxed);
        self.timestamp_ms.store(timestamp_ms.unwrap_or(i64::MIN), Ordering::Relaxed);
        self.settle(DELIVERED);
    }

    fn failed(&self, code: RDKafkaErrorCode) {
        // Set before the state says FAILED; a slot gets one report.
        let _ = self.error.set(code);
        self.settle(FAILED);
    }

    fn settle(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        match &self.batch {
            Some(batch) => batch.reported(),
            None => self.waker.wake(),
        }
    }
}

/// The reports of a batch of records: one wake-up when the last one lands, where separate
/// publishes take one each (each a cross-thread wake of the publisher's task).
#[derive(Debug)]
pub(super) struct BatchReports {
    /// Records sent without a report yet, plus one while the batch is still being sent, so
    /// that the count cannot reach zero before the last record is in.
    outstanding: AtomicUsize,
    waker: AtomicWaker,
}

impl BatchReports {
    /// A batch about to be sent; call [`Self::all_sent`] after its last record.
    pub(super) fn new() -> Arc<BatchReports> {
        Arc::new(BatchReports { outstanding: AtomicUsize::new(1), waker: AtomicWaker::new() })
    }

    /// Every record of the batch is with librdkafka.
    pub(super) fn all_sent(&self) {
        self.reported();
    }

    /// A record counted in by [`DeliverySlot::in_batch`] that librdkafka did not take.
    pub(super) fn not_sent(&self) {
        self.reported();
    }

    /// Resolves once every record sent in the batch has its report in its slot.
    pub(super) fn all_reported(&self) -> AllReported<'_> {
        AllReported(self)
    }

    fn reported(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waker.wake();
        }
    }
}

/// [`BatchReports::all_reported`].
pub(super) struct AllReported<'a>(&'a BatchReports);

impl Future for AllReported<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.outstanding.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        self.0.waker.register(cx.waker());
        match self.0.outstanding.load(Ordering::Acquire) {
            0 => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }
}

impl ProducerContext for KafkaClientContext {
    type DeliveryOpaque = Arc<DeliverySlot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Arc<DeliverySlot>) {
        match result {
            Ok(m) => slot.delivered(m.partition(), m.offset(), m.timestamp().to_millis()),
            Err((e, _)) => slot.failed(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail)),
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
    fn a_batch_wakes_its_waiter_once_when_the_last_report_lands() {
        let wakes = Arc::new(CountWakes::default());
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let batch = BatchReports::new();
        let slots: Vec<_> = (0..3).map(|_| DeliverySlot::in_batch(&batch)).collect();
        let mut all = batch.all_reported();
        assert!(Pin::new(&mut all).poll(&mut cx).is_pending());
        slots[1].delivered(0, 7, None);
        slots[0].delivered(0, 6, None);
        assert!(Pin::new(&mut all).poll(&mut cx).is_pending(), "the batch is still being sent");
        batch.all_sent();
        assert!(Pin::new(&mut all).poll(&mut cx).is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        slots[2].failed(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut all).poll(&mut cx).is_ready());
        assert!(matches!(slots[0].report(), Some(Report::Delivered { offset: 6, .. })));
        assert!(matches!(slots[2].report(), Some(Report::Failed(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)))));
    }

    #[test]
    fn a_failure_carries_its_error() {
        let slot = DeliverySlot::new();
        slot.failed(RDKafkaErrorCode::MessageTimedOut);
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match slot.poll_report(&mut cx) {
            Poll::Ready(Report::Failed(e)) => assert_eq!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::MessageTimedOut)),
            other => panic!("{other:?}"),
        }
        // Read again (a batch reads each slot once all are in): the same error.
        assert!(matches!(slot.report(), Some(Report::Failed(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)))));
    }

    #[test]
    fn a_slot_is_one_cache_line_of_its_own() {
        assert_eq!(std::mem::size_of::<DeliverySlot>(), 64);
        assert_eq!(std::mem::align_of::<DeliverySlot>(), 64);
    }
}
