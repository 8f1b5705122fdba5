//! Sending: records and envelopes into librdkafka, delivery reports into receipts.
//!
//! An envelope is written straight from the caller's borrow: its binary-mode headers go into
//! librdkafka's (which copies them anyway) and its payload and partition key are borrowed,
//! so a publish clones, boxes and encodes nothing on the way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use onex_core::envelope::{encoded_len, for_each_header};
use onex_core::{Envelope, Error, Receipt, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::delivery::{BatchReports, DeliverySlot, Report};
use super::{admin, errors, KafkaTransport, ENQUEUE_TIMEOUT};
use crate::transport::{PendingReceipt, ProduceRecord};

/// A record on its way into librdkafka, carrying the slot its delivery report is written to.
type Record<'a> = BaseRecord<'a, [u8], [u8], Arc<DeliverySlot>>;

impl KafkaTransport {
    /// [`crate::transport::Transport::produce`]: enqueues the whole batch, then awaits every
    /// delivery.
    pub(super) async fn produce_records(&self, topic: &str, records: Vec<ProduceRecord>) -> Result<Vec<Receipt>> {
        let partitions = self.admin.partition_count(topic).await?; // also checks the name
        for r in &records {
            self.check(topic, r.record.byte_len(), r.partition, partitions)?;
        }
        let mut deliveries = Vec::with_capacity(records.len());
        for r in &records {
            let slot = DeliverySlot::new();
            let mut rec = BaseRecord::with_opaque_to(topic, slot.clone()).payload(&r.record.value[..]);
            if let Some(k) = &r.key {
                rec = rec.key(&k[..]);
            }
            if let Some(p) = r.partition {
                rec = rec.partition(p as i32);
            }
            if let Some(hs) = record_headers(&r.record.headers) {
                rec = rec.headers(hs);
            }
            let generation = match self.try_send(rec) {
                Ok(generation) => generation,
                Err((e, back)) => self.send_when_room(topic, e, back).await?,
            };
            deliveries.push(PendingDelivery { transport: self, topic, generation, slot });
        }
        // Deliveries complete in order per partition; awaiting them one after another costs
        // no more wall time than joining them, without join_all's allocations.
        let mut receipts = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            receipts.push(delivery.await?);
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
        let slot = DeliverySlot::new();
        match self.try_send(envelope_record(topic, env, slot.clone())) {
            Ok(generation) => PendingReceipt::Kafka(PendingDelivery { transport: self, topic, generation, slot }),
            // Only a refused send (a full queue, or an error) makes a future of its own,
            // boxed, so the usual one stays small.
            Err((e, back)) => PendingReceipt::Boxed(Box::pin(async move {
                let generation = self.send_when_room(topic, e, back).await?;
                PendingDelivery { transport: self, topic, generation, slot }.await
            })),
        }
    }

    /// [`crate::transport::Transport::produce_envelopes`]: every envelope is handed to
    /// librdkafka, in order, before any report is awaited, and the caller is woken once, when
    /// the last report of the batch lands. An envelope refused before it was sent (too large,
    /// a missing topic, a failed enqueue) gets its error and the rest go on.
    pub(super) async fn envelopes_batch(&self, batch: &[(&str, &Envelope)]) -> Vec<Result<Receipt>> {
        let reports = BatchReports::new();
        let mut sent = Vec::with_capacity(batch.len());
        // The partition count of the last topic (`None`: it does not exist), while envelopes
        // go to it: one lookup per run of a topic rather than per envelope, and one metadata
        // round trip, not one per envelope, for a topic that is missing.
        let mut known: Option<(&str, Option<u32>)> = None;
        for &(topic, env) in batch {
            sent.push(self.send_in_batch(&reports, &mut known, topic, env).await);
        }
        reports.all_sent();
        reports.all_reported().await;
        sent.into_iter()
            .zip(batch)
            .map(|(sent, &(topic, _))| {
                let (generation, slot) = sent?;
                // Every slot has its report once the batch has all of them.
                let report = slot.report().unwrap_or(Report::Failed(KafkaError::Canceled));
                self.settled(generation, topic, report)
            })
            .collect()
    }

    /// One envelope of [`Self::envelopes_batch`]: the producer generation that took it and
    /// the slot its report will be in.
    async fn send_in_batch<'t>(
        &self,
        reports: &Arc<BatchReports>,
        known: &mut Option<(&'t str, Option<u32>)>,
        topic: &'t str,
        env: &Envelope,
    ) -> Result<(u64, Arc<DeliverySlot>)> {
        let partitions = match *known {
            Some((t, partitions)) if t == topic => partitions.ok_or_else(|| admin::missing(topic))?,
            _ => {
                let found = match self.admin.cached_partition_count(topic) {
                    Some(partitions) => Ok(partitions),
                    None => self.admin.partition_count(topic).await, // also checks the name
                };
                match found {
                    Ok(partitions) => {
                        *known = Some((topic, Some(partitions)));
                        partitions
                    }
                    Err(e) => {
                        if e.kind() == onex_core::ErrorKind::NotFound {
                            *known = Some((topic, None));
                        }
                        return Err(e);
                    }
                }
            }
        };
        self.check(topic, encoded_len(env), None, partitions)?;
        let slot = DeliverySlot::in_batch(reports);
        let sent = match self.try_send(envelope_record(topic, env, slot.clone())) {
            Ok(generation) => Ok(generation),
            Err((e, back)) => self.send_when_room(topic, e, back).await,
        };
        match sent {
            Ok(generation) => Ok((generation, slot)),
            Err(e) => {
                reports.not_sent(); // no report will come for it
                Err(e)
            }
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

    /// Hands one record to the current producer: the producer's generation, or the refusal
    /// with the record back.
    #[allow(clippy::result_large_err)] // rdkafka's `send`: the refused record comes back to be retried
    fn try_send<'a>(&self, rec: Record<'a>) -> std::result::Result<u64, (KafkaError, Record<'a>)> {
        let current = self.producer.read();
        current.producer.send(rec).map(|()| current.generation)
    }

    /// After [`Self::try_send`] was refused with `refusal`: a full local queue is retried
    /// every 2 ms while in-flight records drain, for at most [`ENQUEUE_TIMEOUT`]; any other
    /// refusal is the error.
    async fn send_when_room(&self, topic: &str, mut refusal: KafkaError, mut rec: Record<'_>) -> Result<u64> {
        let started = Instant::now();
        loop {
            if !matches!(refusal, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) || started.elapsed() >= ENQUEUE_TIMEOUT {
                return Err(self.produce_error(refusal, topic));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            match self.try_send(rec) {
                Ok(generation) => return Ok(generation),
                Err((e, back)) => (refusal, rec) = (e, back),
            }
        }
    }

    /// A failed publish to `topic`, explained (one wording for enqueueing and delivery).
    fn produce_error(&self, e: KafkaError, topic: &str) -> Error {
        errors::from_kafka(e, &format!("publishing to {topic:?}"), &self.config.brokers).with("topic", topic)
    }

    /// The receipt, or the error, of a delivery report from the producer of `generation`.
    fn settled(&self, generation: u64, topic: &str, report: Report) -> Result<Receipt> {
        match report {
            Report::Delivered { partition, offset, timestamp_ms } => Ok(receipt(topic, partition, offset, timestamp_ms)),
            Report::Failed(e) => {
                self.replace_broken_producer(generation, &e);
                let err = self.produce_error(e, topic);
                if err.kind() == onex_core::ErrorKind::NotFound {
                    self.admin.forget(topic);
                }
                Err(err)
            }
        }
    }
}

/// A record librdkafka has taken ([`PendingReceipt::Kafka`]): resolves with its delivery report.
pub struct PendingDelivery<'a> {
    transport: &'a KafkaTransport,
    topic: &'a str,
    /// Which producer took the record, so a fatal report replaces that one and no later one.
    generation: u64,
    slot: Arc<DeliverySlot>,
}

impl std::fmt::Debug for PendingDelivery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDelivery").field("topic", &self.topic).finish()
    }
}

impl Future for PendingDelivery<'_> {
    type Output = Result<Receipt>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Receipt>> {
        let report = ready!(self.slot.poll_report(cx));
        Poll::Ready(self.transport.settled(self.generation, self.topic, report))
    }
}

/// `env` as a record to `topic` whose delivery report goes to `slot`: its headers written,
/// its payload and partition key borrowed.
fn envelope_record<'a>(topic: &'a str, env: &'a Envelope, slot: Arc<DeliverySlot>) -> Record<'a> {
    let rec = BaseRecord::with_opaque_to(topic, slot).payload(&env.payload[..]).headers(envelope_headers(env));
    match &env.partition_key {
        Some(k) => rec.key(k.as_bytes()),
        None => rec,
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

fn receipt(topic: &str, partition: i32, offset: i64, timestamp_ms: Option<i64>) -> Receipt {
    let timestamp = timestamp_ms.and_then(DateTime::<Utc>::from_timestamp_millis).unwrap_or_else(Utc::now);
    Receipt { topic: topic.to_string(), partition: partition.max(0) as u32, offset: offset.max(0) as u64, timestamp }
}
