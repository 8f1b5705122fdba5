//! Sending: records and envelopes into librdkafka, delivery reports into receipts.
//!
//! An envelope is written straight from the caller's borrow: its binary-mode headers go into
//! librdkafka's (which copies them anyway) and its payload and partition key are borrowed,
//! so a publish clones, boxes and encodes nothing on the way.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::channel::oneshot::Canceled;
use futures::future::{BoxFuture, Either};
use onex_core::envelope::{encoded_len, for_each_header};
use onex_core::{Envelope, Error, Receipt, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::context::KafkaClientContext;
use super::{errors, KafkaTransport, ENQUEUE_TIMEOUT};
use crate::transport::{PendingReceipt, ProduceRecord};

type Producer = FutureProducer<KafkaClientContext>;

impl KafkaTransport {
    /// [`crate::transport::Transport::produce`]: enqueues the whole batch, then awaits every
    /// delivery.
    pub(super) async fn produce_records(&self, topic: &str, records: Vec<ProduceRecord>) -> Result<Vec<Receipt>> {
        let partitions = self.admin.partition_count(topic).await?; // also checks the name
        for r in &records {
            self.check(topic, r.record.byte_len(), r.partition, partitions)?;
        }
        let producer = self.producer.read().clone();
        let mut deliveries = Vec::with_capacity(records.len());
        for r in &records {
            let mut rec = FutureRecord::to(topic).payload(&r.record.value[..]);
            if let Some(k) = &r.key {
                rec = rec.key(&k[..]);
            }
            if let Some(p) = r.partition {
                rec = rec.partition(p as i32);
            }
            if let Some(hs) = record_headers(&r.record.headers) {
                rec = rec.headers(hs);
            }
            deliveries.push(self.enqueue(&producer, topic, rec).await?);
        }
        // Deliveries complete in order per partition; awaiting them one after another costs
        // no more wall time than joining them, without join_all's allocations.
        let mut receipts = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            receipts.push(self.settle(&producer, topic, delivery).await?);
        }
        Ok(receipts)
    }

    /// [`crate::transport::Transport::produce_envelope`]: one envelope, from the borrow. When
    /// the topic's partition count is known and librdkafka takes the record at once (the
    /// usual case), what is left to wait for is its delivery report, kept unboxed.
    pub(super) fn envelope_pending<'a>(&'a self, topic: &'a str, env: &'a Envelope) -> PendingReceipt<'a> {
        let Some(partitions) = self.admin.cached_partition_count(topic) else {
            return PendingReceipt::Boxed(Box::pin(self.send_envelope(topic, env)));
        };
        if let Err(e) = self.check(topic, encoded_len(env), None, partitions) {
            return PendingReceipt::failed(e);
        }
        let producer = self.producer.read().clone();
        let mut rec = FutureRecord::to(topic).payload(&env.payload[..]).headers(envelope_headers(env));
        if let Some(k) = &env.partition_key {
            rec = rec.key(k.as_bytes());
        }
        match self.enqueue(&producer, topic, rec) {
            Either::Left(sent) => match sent.into_inner() {
                Ok(delivery) => PendingReceipt::Kafka(PendingDelivery { transport: self, topic, producer, delivery }),
                Err(e) => PendingReceipt::failed(e),
            },
            Either::Right(when_room) => PendingReceipt::Boxed(Box::pin(async move {
                let delivery = when_room.await?;
                self.settle(&producer, topic, delivery).await
            })),
        }
    }

    /// [`Self::envelope_pending`] of a topic whose partition count is not cached yet.
    pub(super) async fn send_envelope(&self, topic: &str, env: &Envelope) -> Result<Receipt> {
        self.admin.partition_count(topic).await?; // also checks the name
        self.envelope_pending(topic, env).await
    }

    /// Size and explicit partition of a record about to be sent; nothing is sent on failure.
    fn check(&self, topic: &str, size: usize, partition: Option<u32>, partitions: u32) -> Result<()> {
        if size > self.config.max_message_bytes {
            return Err(Error::too_large(
                format!("record for topic {topic:?} is over max_message_bytes (raise it in the URL and the topic's max.message.bytes, or send smaller records)"),
                size as u64,
                self.config.max_message_bytes as u64,
            ));
        }
        match partition {
            Some(p) if p >= partitions => {
                Err(Error::rejected(format!("partition {p} does not exist in topic {topic:?} ({partitions} partitions)"))
                    .with("topic", topic))
            }
            _ => Ok(()),
        }
    }

    /// Hands one record to librdkafka, waiting (at most [`ENQUEUE_TIMEOUT`]) while its local
    /// queue is full.
    ///
    /// Not an `async fn`: the record goes to librdkafka at once, and only a full queue makes
    /// a future (boxed). Every produce future holds what this returns until its delivery
    /// report, so the record and the wait's timer would otherwise make each of them ~300
    /// bytes larger, and ten thousand of them in flight are that much more memory to touch.
    /// The wait holds a producer of its own (an `Arc` clone, made only then), so the caller
    /// may move its producer on while the wait runs.
    fn enqueue<'a>(
        &'a self,
        producer: &Producer,
        topic: &'a str,
        rec: FutureRecord<'a, [u8], [u8]>,
    ) -> Either<std::future::Ready<Result<DeliveryFuture>>, BoxFuture<'a, Result<DeliveryFuture>>> {
        match producer.send_result(rec) {
            Ok(delivery) => Either::Left(std::future::ready(Ok(delivery))),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                Either::Right(Box::pin(self.enqueue_when_room(producer.clone(), topic, back)))
            }
            Err((e, _)) => Either::Left(std::future::ready(Err(self.produce_error(e, topic)))),
        }
    }

    /// The slow path of [`Self::enqueue`]: retries every 2 ms while in-flight records drain.
    async fn enqueue_when_room(&self, producer: Producer, topic: &str, mut rec: FutureRecord<'_, [u8], [u8]>) -> Result<DeliveryFuture> {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(2)).await;
            match producer.send_result(rec) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) if started.elapsed() < ENQUEUE_TIMEOUT => {
                    rec = back;
                }
                Err((e, _)) => return Err(self.produce_error(e, topic)),
            }
        }
    }

    /// A failed publish to `topic`, explained (one wording for enqueueing and delivery).
    fn produce_error(&self, e: KafkaError, topic: &str) -> Error {
        errors::from_kafka(e, &format!("publishing to {topic:?}"), &self.config.brokers).with("topic", topic)
    }

    /// Waits for the broker's acknowledgement of one record.
    async fn settle(&self, producer: &Producer, topic: &str, delivery: DeliveryFuture) -> Result<Receipt> {
        self.settled(producer, topic, delivery.await)
    }

    /// The receipt, or the error, of a delivery report.
    fn settled(&self, producer: &Producer, topic: &str, report: std::result::Result<OwnedDeliveryResult, Canceled>) -> Result<Receipt> {
        match report {
            Ok(Ok(d)) => Ok(receipt(topic, d.partition, d.offset, d.timestamp)),
            Ok(Err((e, _))) => {
                self.replace_broken_producer(producer, &e);
                let err = self.produce_error(e, topic);
                if err.kind() == onex_core::ErrorKind::NotFound {
                    self.admin.forget(topic);
                }
                Err(err)
            }
            Err(_) => Err(Error::shutdown(format!("publishing to {topic:?}: the producer was closed before the broker answered"))),
        }
    }
}

/// A record librdkafka has taken ([`PendingReceipt::Kafka`]): resolves with its delivery report.
pub struct PendingDelivery<'a> {
    transport: &'a KafkaTransport,
    topic: &'a str,
    producer: Producer,
    delivery: DeliveryFuture,
}

impl std::fmt::Debug for PendingDelivery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDelivery").field("topic", &self.topic).finish()
    }
}

impl Future for PendingDelivery<'_> {
    type Output = Result<Receipt>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Receipt>> {
        let this = &mut *self;
        let report = ready!(Pin::new(&mut this.delivery).poll(cx));
        Poll::Ready(this.transport.settled(&this.producer, this.topic, report))
    }
}

/// The binary-mode headers of `env`, as `encode_record` would write them (one definition:
/// [`for_each_header`]).
fn envelope_headers(env: &onex_core::Envelope) -> OwnedHeaders {
    let hs = std::cell::Cell::new(Some(OwnedHeaders::new_with_capacity(10 + env.metadata.headers.len())));
    let add = |key: &str, value: &[u8]| hs.set(hs.take().map(|h| h.insert(Header { key, value: Some(value) })));
    for_each_header(env, add, |k, v| add(k, v.as_bytes()));
    hs.take().unwrap_or_default()
}

fn record_headers(headers: &onex_core::Headers) -> Option<OwnedHeaders> {
    if headers.is_empty() {
        return None;
    }
    let mut hs = OwnedHeaders::new_with_capacity(headers.len());
    for (name, value) in headers.iter() {
        hs = hs.insert(Header { key: name, value: Some(&value[..]) });
    }
    Some(hs)
}

fn receipt(topic: &str, partition: i32, offset: i64, ts: rdkafka::Timestamp) -> Receipt {
    let timestamp = ts.to_millis().and_then(DateTime::<Utc>::from_timestamp_millis).unwrap_or_else(Utc::now);
    Receipt { topic: topic.to_string(), partition: partition.max(0) as u32, offset: offset.max(0) as u64, timestamp }
}
