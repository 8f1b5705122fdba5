//! The Kafka and Redpanda transport on librdkafka (`kafka://`, `redpanda://`; feature `kafka`).
//!
//! - **Produce**: an idempotent producer (`enable.idempotence=true`, `acks=all`) with the
//!   Java-compatible `murmur2_random` partitioner, so a key lands on the same partition
//!   number as on the memory and sqlite backends. [`Transport::produce`] enqueues the whole
//!   batch and returns once every record is acknowledged; many callers may have records in
//!   flight at once. Records over `max_message_bytes` fail with `TooLarge` before anything
//!   is sent.
//! - **Consume**: one librdkafka consumer per subscription, on its own thread, with
//!   `enable.auto.commit=false`: the engine commits. Revocations follow the engine's
//!   handshake (the member thread blocks in librdkafka's revoke callback until the engine acknowledges); a partition no longer owned is never committed.
//! - **Admin**: create (partitions, replication factor, config), delete, list, describe with
//!   watermarks. "Already exists" carries context `exists=true`; a missing topic is
//!   `NotFound`.
//! - **Health**: a metadata round trip with its latency, the profile, the effective producer
//!   settings (secrets masked) and the lag per partition of this transport's consumers.
//!
//! URL: `kafka://[user:password@]HOST:PORT[,HOST:PORT][?setting=value&…]`. Query settings
//! are librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`, `client.id`,
//! `linger.ms`, `batch.size`, `compression.type`, `session.timeout.ms`, …; an unknown one
//! is a `Config` error naming it) plus our own options: `max_message_bytes`,
//! `replication_factor` (default `-1`, the broker's), `connect_timeout_ms`,
//! `request_timeout_ms`, and the bus-level `partitions` and `auto_create_topics`.
//! Several brokers are also accepted as `?bootstrap.servers=a:9092,b:9092`. See
//! [`Profile`] for the `kafka` and `redpanda` producer defaults.

mod admin;
mod config;
mod consumer;
mod context;
mod errors;
mod member;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use onex_core::envelope::for_each_header;
use onex_core::{Error, HealthStatus, Receipt, Result, StartFrom, TopicAdmin};
use parking_lot::Mutex;
use rdkafka::admin::AdminClient;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

pub use self::admin::KafkaAdmin;
pub use self::config::{is_secret_key, KafkaConfig, Profile};
pub use self::consumer::KafkaConsumer;
use self::context::KafkaClientContext;
use self::member::{MemberShared, MemberSpec};
use crate::transport::{ProduceRecord, Transport, TransportConsumer, TransportFeatures};

/// The librdkafka binding, re-exported for baselines and interop tests that need a plain client.
pub use rdkafka;

/// How long the revoke callback waits for the engine to finish and commit revoked partitions.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a produce waits for room in a full local producer queue.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// The Kafka / Redpanda transport. Cheap to share behind an `Arc`.
pub struct KafkaTransport {
    config: KafkaConfig,
    /// Replaced when librdkafka reports a fatal producer error (e.g. fenced after delivery
    /// timeouts), so one bad episode does not leave the transport unable to publish.
    producer: parking_lot::RwLock<FutureProducer<KafkaClientContext>>,
    admin: KafkaAdmin,
    offset_readers: Mutex<HashMap<String, Arc<BaseConsumer<KafkaClientContext>>>>,
    members: Mutex<Vec<Weak<MemberShared>>>,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport").field("config", &self.config).finish()
    }
}

impl KafkaTransport {
    /// Opens from a parsed URL (one broker; use [`KafkaTransport::from_url_str`] or
    /// `?bootstrap.servers=` for several).
    pub async fn from_url(url: &url::Url) -> Result<Arc<Self>> {
        Self::from_url_str(url.as_str()).await
    }

    /// Opens from `kafka://HOST:PORT[,HOST:PORT][?…]` or `redpanda://…`.
    pub async fn from_url_str(raw: &str) -> Result<Arc<Self>> {
        Self::connect(KafkaConfig::parse(raw)?).await
    }

    /// Creates the clients and checks that the brokers answer a metadata request within
    /// `connect_timeout`, so a wrong host or port fails here with a clear error.
    pub async fn connect(config: KafkaConfig) -> Result<Arc<Self>> {
        let ctx = KafkaClientContext::default();
        let what = format!("creating the Kafka producer for {}", config.brokers);
        let producer: FutureProducer<KafkaClientContext> =
            config.producer_config().create_with_context(ctx.clone()).map_err(|e| errors::from_kafka(e, &what, &config.brokers))?;
        let admin_client: AdminClient<KafkaClientContext> =
            config.producer_config().create_with_context(ctx.clone()).map_err(|e| errors::from_kafka(e, &what, &config.brokers))?;
        let admin = KafkaAdmin {
            client: Arc::new(admin_client),
            brokers: config.brokers.clone(),
            replication_factor: config.replication_factor,
            timeout: config.connect_timeout,
            describes: Default::default(),
            partition_counts: Default::default(),
        };
        if let Err(e) = admin.metadata(None).await {
            let why = ctx.last_error.get().unwrap_or_else(|| e.to_string());
            return Err(match e.kind() {
                onex_core::ErrorKind::Timeout | onex_core::ErrorKind::Connection | onex_core::ErrorKind::Unavailable => Error::connection(format!(
                    "cannot reach the Kafka brokers {} within {:?}: {why}; check the host and port in the URL and that the broker is running",
                    config.brokers, config.connect_timeout
                ))
                .with("brokers", &config.brokers),
                _ => e,
            });
        }
        let admin = KafkaAdmin { timeout: config.request_timeout, ..admin };
        Ok(Arc::new(KafkaTransport {
            config,
            producer: parking_lot::RwLock::new(producer),
            admin,
            offset_readers: Mutex::new(HashMap::new()),
            members: Mutex::new(Vec::new()),
        }))
    }

    /// The settings.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// The topic admin.
    pub fn kafka_admin(&self) -> &KafkaAdmin {
        &self.admin
    }

    fn offset_reader(&self, group: &str) -> Result<Arc<BaseConsumer<KafkaClientContext>>> {
        if let Some(c) = self.offset_readers.lock().get(group) {
            return Ok(c.clone());
        }
        let consumer: BaseConsumer<KafkaClientContext> = self
            .config
            .consumer_config(group, "earliest")
            .create_with_context(KafkaClientContext::default())
            .map_err(|e| errors::from_kafka(e, &format!("creating a reader of group {group:?} offsets"), &self.config.brokers))?;
        let consumer = Arc::new(consumer);
        self.offset_readers.lock().insert(group.to_string(), consumer.clone());
        Ok(consumer)
    }

    /// Committed offsets of `group` for `partitions` of `topic` (`None` = nothing committed).
    pub async fn committed_offsets(&self, group: &str, topic: &str, partitions: &[u32]) -> Result<Vec<(u32, Option<u64>)>> {
        let reader = self.offset_reader(group)?;
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for p in partitions {
            tpl.add_partition(topic, *p as i32);
        }
        let timeout = self.config.request_timeout;
        let what = format!("reading committed offsets of group {group:?} on {topic:?}");
        let brokers = self.config.brokers.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let tpl = reader.committed_offsets(tpl, timeout).map_err(|e| errors::from_kafka(e, &what, &brokers))?;
            Ok(tpl
                .elements_for_topic(&topic)
                .iter()
                .map(|e| {
                    (
                        e.partition() as u32,
                        match e.offset() {
                            Offset::Offset(o) if o >= 0 => Some(o as u64),
                            _ => None,
                        },
                    )
                })
                .collect())
        })
        .await
        .map_err(|e| Error::shutdown(format!("offset task failed: {e}")))?
    }

    async fn lag_details(&self) -> Vec<serde_json::Value> {
        let members: Vec<Arc<MemberShared>> = {
            let mut list = self.members.lock();
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let mut out = Vec::new();
        for m in members {
            let owned: Vec<u32> = m.owned.lock().iter().copied().collect();
            let committed = self.committed_offsets(&m.group, &m.topic, &owned).await.unwrap_or_default();
            let marks = self.admin.watermarks(&m.topic, owned.clone()).await.unwrap_or_default();
            let partitions: Vec<serde_json::Value> = owned
                .iter()
                .map(|p| {
                    let c = committed.iter().find(|(q, _)| q == p).and_then(|(_, o)| *o);
                    let high = marks.iter().find(|i| i.partition == *p).map(|i| i.high_watermark);
                    let lag = high.map(|h| h.saturating_sub(c.unwrap_or(0)));
                    serde_json::json!({ "partition": p, "committed": c, "high_watermark": high, "lag": lag })
                })
                .collect();
            out.push(serde_json::json!({ "group": m.group, "topic": &*m.topic, "buffered": m.buffered.load(std::sync::atomic::Ordering::Relaxed), "partitions": partitions }));
        }
        out
    }

    /// After a fatal error, or when the broker fenced the idempotent producer's session (as
    /// tansu does after delivery timeouts), the producer refuses every further record: start
    /// afresh with a new producer id.
    fn replace_broken_producer(&self, failed: &FutureProducer<KafkaClientContext>, error: &KafkaError) {
        use rdkafka::producer::Producer;
        let fenced = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::Fatal
            )
        );
        let (code, reason) = match failed.client().fatal_error() {
            Some(fatal) => fatal,
            None if fenced => (error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fatal), error.to_string()),
            None => return,
        };
        let mut current = self.producer.write();
        if !std::ptr::eq(current.client().native_ptr(), failed.client().native_ptr()) {
            return; // another caller already replaced it
        }
        match self.config.producer_config().create_with_context::<_, FutureProducer<KafkaClientContext>>(KafkaClientContext::default()) {
            Ok(fresh) => {
                tracing::warn!(code = ?code, reason = %onex_core::sanitize::sanitize(&reason), "the Kafka producer hit a fatal error; replaced it with a new one");
                *current = fresh;
            }
            Err(e) => tracing::error!(error = %e, "the Kafka producer hit a fatal error and a new one could not be created"),
        }
    }

    fn check_sizes(&self, topic: &str, records: &[ProduceRecord], partitions: u32) -> Result<()> {
        for r in records {
            let size = r.record.byte_len();
            if size > self.config.max_message_bytes {
                return Err(Error::too_large(
                    format!("record for topic {topic:?} is over max_message_bytes (raise it in the URL and the topic's max.message.bytes, or send smaller records)"),
                    size as u64,
                    self.config.max_message_bytes as u64,
                ));
            }
            if let Some(p) = r.partition {
                if p >= partitions {
                    return Err(Error::rejected(format!("partition {p} does not exist in topic {topic:?} ({partitions} partitions)"))
                        .with("topic", topic));
                }
            }
        }
        Ok(())
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

#[async_trait]
impl Transport for KafkaTransport {
    fn backend(&self) -> &'static str {
        self.config.profile.as_str()
    }

    fn features(&self) -> TransportFeatures {
        TransportFeatures { persistent: true, multi_process: true, takes_envelopes: true }
    }

    async fn produce(&self, topic: &str, records: Vec<ProduceRecord>) -> Result<Vec<Receipt>> {
        onex_core::validate_topic(topic)?;
        let partitions = self.admin.partition_count(topic).await?;
        self.check_sizes(topic, &records, partitions)?;
        let brokers = &self.config.brokers;
        let what = || format!("publishing to {topic:?}");
        let producer = self.producer.read().clone();
        let mut deliveries = Vec::with_capacity(records.len());
        for r in &records {
            // An envelope's headers go straight into librdkafka's (which copies them anyway),
            // without an encoded `Record` in between.
            let (payload, headers) = match r.record.envelope() {
                Some(env) => (&env.payload, Some(envelope_headers(env))),
                None => (&r.record.value, record_headers(&r.record.headers)),
            };
            let mut rec = FutureRecord::to(topic).payload(&payload[..]);
            if let Some(k) = &r.key {
                rec = rec.key(&k[..]);
            }
            if let Some(p) = r.partition {
                rec = rec.partition(p as i32);
            }
            if let Some(hs) = headers {
                rec = rec.headers(hs);
            }
            // The clock is read only once the local queue is full (the rare, slow case).
            let mut started = None;
            loop {
                match producer.send_result(rec) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if started.get_or_insert_with(Instant::now).elapsed() < ENQUEUE_TIMEOUT =>
                    {
                        rec = back; // the local queue is full: let in-flight records drain
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => return Err(errors::from_kafka(e, &what(), brokers).with("topic", topic)),
                }
            }
        }
        // Deliveries complete in order per partition; awaiting them one after another costs
        // no more wall time than joining them, without join_all's allocations.
        let mut receipts = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(d)) => receipts.push(receipt(topic, d.partition, d.offset, d.timestamp)),
                Ok(Err((e, _))) => {
                    self.replace_broken_producer(&producer, &e);
                    let err = errors::from_kafka(e, &what(), brokers).with("topic", topic);
                    if err.kind() == onex_core::ErrorKind::NotFound {
                        self.admin.forget(topic);
                    }
                    return Err(err);
                }
                Err(_) => return Err(Error::shutdown(format!("{}: the producer was closed before the broker answered", what()))),
            }
        }
        Ok(receipts)
    }

    async fn consumer(&self, group: &str, topic: &str, start: StartFrom) -> Result<Box<dyn TransportConsumer>> {
        onex_core::validate_topic(topic)?;
        let reset = match start {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        let spec = MemberSpec {
            topic: topic.to_string(),
            group: group.to_string(),
            brokers: self.config.brokers.clone(),
            revoke_timeout: REVOKE_TIMEOUT,
            request_timeout: self.config.request_timeout,
        };
        let handle = member::spawn(self.config.consumer_config(group, reset), spec)?;
        let consumer = KafkaConsumer::new(handle, (self.config.request_timeout * 3).max(Duration::from_secs(30)));
        self.members.lock().push(Arc::downgrade(consumer.shared()));
        Ok(Box::new(consumer))
    }

    fn admin(&self) -> &dyn TopicAdmin {
        &self.admin
    }

    async fn health(&self) -> Result<HealthStatus> {
        let started = Instant::now();
        let md = match self.admin.metadata(None).await {
            Ok(md) => md,
            Err(e) => return Ok(HealthStatus::unhealthy(started.elapsed(), &e)),
        };
        let latency = started.elapsed();
        let brokers: Vec<String> = md.brokers().iter().map(|b| format!("{}:{}", b.host(), b.port())).collect();
        let topics = md.topics().iter().filter(|t| !t.name().starts_with("__")).count();
        let consumers = self.lag_details().await;
        Ok(HealthStatus::healthy(
            latency,
            serde_json::json!({
                "backend": self.backend(),
                "profile": self.config.profile.as_str(),
                "bootstrap": self.config.brokers,
                "brokers": brokers,
                "topics": topics,
                "producer": self.config.effective_producer_settings(),
                "max_message_bytes": self.config.max_message_bytes,
                "consumers": consumers,
            }),
        ))
    }

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        let offsets = self.committed_offsets(group, topic, &[partition]).await?;
        Ok(offsets.into_iter().find(|(p, _)| *p == partition).and_then(|(_, o)| o))
    }

    async fn close(&self) -> Result<()> {
        let producer = self.producer.read().clone();
        let timeout = self.config.request_timeout;
        let brokers = self.config.brokers.clone();
        tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, timeout))
            .await
            .map_err(|e| Error::shutdown(format!("flush task failed: {e}")))?
            .map_err(|e| errors::from_kafka(e, "flushing the Kafka producer on close", &brokers))
    }
}

#[cfg(test)]
mod tests;
