//! The transport seam: what a backend provides under the one consumer engine.
//!
//! A transport moves records and offsets. It never retries handlers, writes DLQ records or
//! decides what to commit: that is the [`crate::engine`]'s job, the same for every backend.
//! A new backend is a [`Transport`] + [`TransportConsumer`] and a line in the conformance
//! suite.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use onex_core::envelope::{encode_record, encoded_len, encodes_losslessly};
use onex_core::{Envelope, HealthStatus, Receipt, Record, Result, StartFrom, TopicAdmin};

/// A record's key, value and headers — or, on a transport whose records never leave the
/// process, the envelope they encode to; or, on a transport that reads stored bytes, the
/// envelope decoded from them and a way back to the exact record. It dereferences to the
/// [`Record`], built on first access (once): a consumer that only needs the envelope never
/// pays for encoding, or for building headers it does not read.
#[derive(Clone, Default)]
pub struct RecordBody {
    // Shared: a memory log hands this very envelope to every group's handlers.
    envelope: Option<Arc<Envelope>>,
    stored: Option<Arc<StoredRecord>>,
    encoded: OnceLock<Record>,
}

/// Rebuilds a record from the bytes a backend read (see [`RecordBody::stored`]). Boxed inside
/// the `Arc` so that `RecordBody` holds a thin pointer: a memory transport's log keeps one body
/// per record, and 8 more bytes would put every body in a larger allocation class.
struct StoredRecord(Box<dyn Fn() -> Record + Send + Sync>);

impl RecordBody {
    /// A body holding `env` unencoded, for consumers to share as it is. An envelope that
    /// would not decode to itself (see [`encodes_losslessly`]) is encoded at once instead, so
    /// every consumer sees what decoding the bytes gives, whichever form the body has.
    pub fn from_envelope(env: Arc<Envelope>) -> Self {
        if encodes_losslessly(&env) {
            RecordBody { envelope: Some(env), stored: None, encoded: OnceLock::new() }
        } else {
            encode_record(&env).into()
        }
    }

    /// A body read from storage: `envelope` as the transport decoded it from the stored bytes
    /// (`None` when it left decoding to the engine), and `record`, which rebuilds the exact
    /// record from those bytes when something needs it (a DLQ record, a retry, a tool).
    ///
    /// ```
    /// use onex_bus::transport::RecordBody;
    /// use onex_core::{envelope::encode_record, Envelope};
    ///
    /// let env = Envelope::new("order_created", &serde_json::json!({"id": 1})).unwrap();
    /// let bytes = encode_record(&env);
    /// let body = RecordBody::stored(Some(env.clone()), move || bytes.clone());
    /// assert_eq!(body.envelope().map(|e| &**e), Some(&env));
    /// assert_eq!(*body, encode_record(&env)); // the bytes are there too
    /// ```
    pub fn stored(envelope: Option<Envelope>, record: impl Fn() -> Record + Send + Sync + 'static) -> Self {
        RecordBody { envelope: envelope.map(Arc::new), stored: Some(Arc::new(StoredRecord(Box::new(record)))), encoded: OnceLock::new() }
    }

    /// The envelope this body was built from, if it was; consumers share it.
    pub fn envelope(&self) -> Option<&Arc<Envelope>> {
        self.envelope.as_ref()
    }

    /// The envelope of a body made by [`RecordBody::from_envelope`], whose record is exactly
    /// `encode_record` of it: a transport may store such an envelope in a form of its own
    /// and rebuild the record from it. `None` for bodies made from records or read from
    /// storage (their envelope may not encode back to their bytes).
    pub fn published_envelope(&self) -> Option<&Arc<Envelope>> {
        self.envelope.as_ref().filter(|_| self.stored.is_none())
    }

    /// Key + value + headers bytes, without encoding an envelope to count them.
    pub fn byte_len(&self) -> usize {
        match (&self.envelope, &self.stored, self.encoded.get()) {
            // A published envelope is measured without encoding it; any other body has its
            // bytes, or rebuilds them from storage.
            (Some(env), None, None) => encoded_len(env),
            _ => (**self).byte_len(),
        }
    }
}

impl std::ops::Deref for RecordBody {
    type Target = Record;

    fn deref(&self) -> &Record {
        self.encoded.get_or_init(|| match (&self.stored, &self.envelope) {
            (Some(stored), _) => (stored.0)(),
            (None, Some(env)) => encode_record(env),
            (None, None) => Record::default(),
        })
    }
}

impl From<Record> for RecordBody {
    fn from(record: Record) -> Self {
        RecordBody { envelope: None, stored: None, encoded: OnceLock::from(record) }
    }
}

impl std::fmt::Debug for RecordBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Record::fmt(self, f)
    }
}

impl PartialEq for RecordBody {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for RecordBody {}

/// A record to append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    /// Key; with no explicit partition, murmur2(key) picks the partition.
    pub key: Option<Bytes>,
    /// Value and headers.
    pub record: RecordBody,
    /// Explicit partition.
    pub partition: Option<u32>,
}

impl ProduceRecord {
    /// A record routed by its key.
    pub fn new(record: Record) -> Self {
        ProduceRecord { key: record.key.clone(), record: record.into(), partition: None }
    }

    /// An envelope routed by its partition key, as its encoded record would be, and kept
    /// unencoded ([`RecordBody::from_envelope`]).
    pub fn from_envelope(env: Arc<Envelope>) -> Self {
        let key = env.partition_key.as_ref().map(|k| Bytes::copy_from_slice(k.as_bytes()));
        ProduceRecord { key, record: RecordBody::from_envelope(env), partition: None }
    }
}

/// A record read from a partition.
#[derive(Debug, Clone)]
pub struct ConsumedRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
    /// Append time.
    pub timestamp: DateTime<Utc>,
    /// Key, value, headers: exactly as produced (shared, never deep-copied by the engine).
    pub record: Arc<RecordBody>,
}

/// What a poll returned.
#[derive(Debug)]
pub enum PollEvent {
    /// Records, in offset order per partition.
    Records(Vec<ConsumedRecord>),
    /// These partitions are now owned; reading starts at the group's committed offset
    /// (or per [`StartFrom`] when there is none).
    Assigned(Vec<u32>),
    /// These partitions are being taken away. The transport delivers no more records of
    /// them and keeps them owned until the engine calls
    /// [`TransportConsumer::revoke_complete`], after committing what it finished.
    Revoked(Vec<u32>),
    /// Nothing within the timeout.
    Idle,
}

/// What a backend can do; the conformance suite checks each flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportFeatures {
    /// Records survive a restart of the process.
    pub persistent: bool,
    /// Several processes can share topics and groups.
    pub multi_process: bool,
}

/// The future of [`Transport::produce_envelope`]: the receipt of one envelope.
///
/// An enum rather than a boxed future because a pipelining publisher keeps thousands of these
/// in flight: a record Kafka has taken waits for its delivery report in place, without an
/// allocation of its own. (With the publisher's own box gone too, a pipelined Kafka publish
/// went ~7 % faster; docs/decisions.md, "Twenty-first session".)
pub enum PendingReceipt<'a> {
    /// Any other send.
    Boxed(futures::future::BoxFuture<'a, Result<Receipt>>),
    /// A record librdkafka has taken, until its delivery report.
    #[cfg(feature = "kafka")]
    Kafka(crate::kafka::PendingDelivery<'a>),
}

impl PendingReceipt<'_> {
    /// A send that failed before anything went out.
    pub fn failed(e: onex_core::Error) -> Self {
        Self::Boxed(Box::pin(std::future::ready(Err(e))))
    }
}

impl std::fmt::Debug for PendingReceipt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Boxed(_) => f.write_str("PendingReceipt::Boxed"),
            #[cfg(feature = "kafka")]
            Self::Kafka(_) => f.write_str("PendingReceipt::Kafka"),
        }
    }
}

impl std::future::Future for PendingReceipt<'_> {
    type Output = Result<Receipt>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<Receipt>> {
        match self.get_mut() {
            Self::Boxed(f) => f.as_mut().poll(cx),
            #[cfg(feature = "kafka")]
            Self::Kafka(d) => std::pin::Pin::new(d).poll(cx),
        }
    }
}

/// A backend: topics with partitions, append, group consumers, admin.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// `memory`, `sqlite`, `kafka`, `redpanda`.
    fn backend(&self) -> &'static str;
    /// Capabilities.
    fn features(&self) -> TransportFeatures;
    /// Appends records to `topic`, returning once they are acknowledged (memory: appended;
    /// sqlite: committed; kafka: `acks=all`). Receipts are in input order. An unknown topic
    /// is [`onex_core::Error::NotFound`], and so is a name that is not a valid topic name
    /// (or it is refused as `Config`): a transport never creates a topic on produce, because
    /// the bus sends envelopes before it checks the topic and creates one only on that
    /// `NotFound`, when `auto_create_topics` allows. An oversize record is
    /// [`onex_core::Error::TooLarge`] and nothing of the batch is written.
    async fn produce(&self, topic: &str, records: Vec<ProduceRecord>) -> Result<Vec<Receipt>>;
    /// Appends one record: [`Transport::produce`] of one, which a transport may do without
    /// the two vectors (every `publish` is one record).
    async fn produce_one(&self, topic: &str, record: ProduceRecord) -> Result<Receipt> {
        let mut receipts = self.produce(topic, vec![record]).await?;
        receipts.pop().ok_or_else(|| onex_core::Error::protocol(format!("backend returned no receipt for a publish to {topic:?}")))
    }
    /// Appends one envelope in CloudEvents binary mode, routed by its partition key. The
    /// default hands a copy to [`Transport::produce_shared_envelope`]; Kafka writes its
    /// headers straight from the borrow, and its future is the delivery report, unboxed.
    fn produce_envelope<'a>(&'a self, topic: &'a str, env: &'a Envelope) -> PendingReceipt<'a> {
        PendingReceipt::Boxed(self.produce_shared_envelope(topic, Arc::new(env.clone())))
    }
    /// [`Transport::produce_envelope`] of an envelope nobody else will change. The default
    /// produces it unencoded ([`ProduceRecord::from_envelope`]): a record is encoded from it
    /// only if the transport asks for the bytes; sqlite stores it field by field, memory
    /// keeps it as it is.
    async fn produce_shared_envelope(&self, topic: &str, env: Arc<Envelope>) -> Result<Receipt> {
        self.produce_one(topic, ProduceRecord::from_envelope(env)).await
    }
    /// Appends a batch of envelopes, each to its topic, in order, with one result per
    /// envelope, in input order: one refused envelope (too large, its topic missing) fails
    /// alone. The default produces each run of consecutive envelopes to one topic in one
    /// [`Transport::produce`] (one transaction on sqlite), unencoded; a run that fails is sent
    /// again an envelope at a time, so that each gets its own result (a failed `produce` wrote
    /// nothing). A run acknowledged with the wrong number of receipts is not sent again: each
    /// of its envelopes gets a `Protocol` error. Kafka hands every envelope to librdkafka
    /// before awaiting any report and wakes the caller once for the batch.
    fn produce_envelopes<'a>(&'a self, batch: &'a [(&'a str, &'a Envelope)]) -> BoxFuture<'a, Vec<Result<Receipt>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(batch.len());
            for run in batch.chunk_by(|a, b| a.0 == b.0) {
                let topic = run[0].0;
                let records = run.iter().map(|(_, env)| ProduceRecord::from_envelope(Arc::new((*env).clone()))).collect();
                match self.produce(topic, records).await {
                    Ok(receipts) if receipts.len() == run.len() => results.extend(receipts.into_iter().map(Ok)),
                    Ok(receipts) => results.extend(run.iter().map(|_| {
                        Err(onex_core::Error::protocol(format!(
                            "the backend acknowledged {} records to topic {topic:?} with {} receipts",
                            run.len(),
                            receipts.len()
                        )))
                    })),
                    Err(_) => {
                        for (topic, env) in run {
                            results.push(self.produce_envelope(topic, env).await);
                        }
                    }
                }
            }
            results
        })
    }
    /// Joins `group` on `topic`. The first poll returns the initial assignment.
    async fn consumer(&self, group: &str, topic: &str, start: StartFrom) -> Result<Box<dyn TransportConsumer>>;
    /// Topic administration.
    fn admin(&self) -> &dyn TopicAdmin;
    /// A cheap round trip to the backend.
    async fn health(&self) -> Result<HealthStatus>;
    /// Committed offset (next offset to read) of `group` on a partition, if any.
    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>>;
    /// Flushes and releases resources.
    async fn close(&self) -> Result<()>;
}

/// One group member on one topic.
#[async_trait]
pub trait TransportConsumer: Send {
    /// Waits up to `timeout` for at most `max` records or an assignment change.
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<PollEvent>;
    /// Commits, per partition, the next offset to read. Partitions no longer owned are
    /// refused with [`onex_core::Error::InvalidState`] (the engine never sends them).
    async fn commit(&mut self, offsets: &[(u32, u64)]) -> Result<()>;
    /// Moves the read position of an owned partition.
    async fn seek(&mut self, partition: u32, offset: u64) -> Result<()>;
    /// Owned partitions.
    fn assignment(&self) -> Vec<u32>;
    /// Acknowledges a [`PollEvent::Revoked`]: the partitions may go to another member.
    async fn revoke_complete(&mut self, partitions: &[u32]) -> Result<()>;
    /// Leaves the group (after the engine committed).
    async fn close(self: Box<Self>) -> Result<()>;
}
