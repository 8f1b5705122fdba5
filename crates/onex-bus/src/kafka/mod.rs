//! The Kafka and Redpanda transport on librdkafka (`kafka://`, `redpanda://`; feature `kafka`).
//!
//! - **Produce**: an idempotent producer (`enable.idempotence=true`, `acks=all`) with the
//!   Java-compatible `murmur2_random` partitioner, so a key lands on the same partition
//!   number as on the memory and sqlite backends. [`Transport::produce`] enqueues the whole
//!   batch and returns once every record is acknowledged; many callers may have records in
//!   flight at once. Records over `max_message_bytes` fail with `TooLarge` before anything
//!   is sent. [`Transport::produce_envelope`] sends an envelope from the caller's borrow
//!   (headers written straight into librdkafka's, nothing cloned or encoded on the way).
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
mod delivery;
mod errors;
mod member;
mod produce;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use onex_core::{Error, HealthStatus, Receipt, Result, StartFrom, TopicAdmin};
use parking_lot::Mutex;
use rdkafka::admin::AdminClient;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

pub use self::admin::KafkaAdmin;
pub use self::config::{is_secret_key, KafkaConfig, Profile};
pub use self::consumer::KafkaConsumer;
use self::context::KafkaClientContext;
use self::member::{MemberShared, MemberSpec};
pub use self::produce::PendingDelivery;
use crate::transport::{PendingReceipt, ProduceRecord, Transport, TransportConsumer, TransportFeatures};

/// The librdkafka binding, re-exported for baselines and interop tests that need a plain client.
pub use rdkafka;

/// How long the revoke callback waits for the engine to finish and commit revoked partitions.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a produce waits for room in a full local producer queue.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// The producer records go to, and how many times it has been replaced.
struct CurrentProducer {
    generation: u64,
    /// librdkafka's polling thread serves delivery reports into each record's
    /// [`delivery::DeliverySlot`].
    producer: ThreadedProducer<KafkaClientContext>,
}

/// The Kafka / Redpanda transport. Cheap to share behind an `Arc`.
pub struct KafkaTransport {
    config: KafkaConfig,
    /// Replaced when librdkafka reports a fatal producer error (e.g. fenced after delivery
    /// timeouts), so one bad episode does not leave the transport unable to publish.
    producer: parking_lot::RwLock<CurrentProducer>,
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
        let producer: ThreadedProducer<KafkaClientContext> =
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
            producer: parking_lot::RwLock::new(CurrentProducer { generation: 0, producer }),
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
    /// afresh with a new producer id. `generation` is the producer that reported `error`; a
    /// later one is left alone.
    fn replace_broken_producer(&self, generation: u64, error: &KafkaError) {
        let fenced = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::Fatal
            )
        );
        let fatal = {
            let current = self.producer.read();
            if current.generation != generation {
                return; // already replaced
            }
            current.producer.client().fatal_error()
        };
        let (code, reason) = match fatal {
            Some(fatal) => fatal,
            None if fenced => (error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fatal), error.to_string()),
            None => return,
        };
        let mut current = self.producer.write();
        if current.generation != generation {
            return; // another caller replaced it meanwhile
        }
        match self.config.producer_config().create_with_context::<_, ThreadedProducer<KafkaClientContext>>(KafkaClientContext::default()) {
            Ok(fresh) => {
                tracing::warn!(code = ?code, reason = %onex_core::sanitize::sanitize(&reason), "the Kafka producer hit a fatal error; replaced it with a new one");
                let broken = std::mem::replace(&mut current.producer, fresh);
                current.generation += 1;
                drop(current);
                retire(broken, self.config.request_timeout);
            }
            Err(e) => tracing::error!(error = %e, "the Kafka producer hit a fatal error and a new one could not be created"),
        }
    }
}

/// Lets a replaced producer's records in flight get their reports (dropping it purges what
/// is left, reported as failed), off the async threads: the flush and the polling thread's
/// join block.
fn retire(producer: ThreadedProducer<KafkaClientContext>, timeout: Duration) {
    let finish = move || {
        let _ = producer.flush(timeout);
        drop(producer);
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(finish)),
        Err(_) => finish(),
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    fn backend(&self) -> &'static str {
        self.config.profile.as_str()
    }

    fn features(&self) -> TransportFeatures {
        TransportFeatures { persistent: true, multi_process: true }
    }

    async fn produce(&self, topic: &str, records: Vec<ProduceRecord>) -> Result<Vec<Receipt>> {
        self.produce_records(topic, records).await
    }

    fn produce_envelope<'a>(&'a self, topic: &'a str, env: &'a onex_core::Envelope) -> PendingReceipt<'a> {
        self.envelope_pending(topic, env)
    }

    async fn produce_shared_envelope(&self, topic: &str, env: Arc<onex_core::Envelope>) -> Result<Receipt> {
        self.send_envelope(topic, &env).await
    }

    fn produce_envelopes<'a>(&'a self, batch: &'a [(&'a str, &'a onex_core::Envelope)]) -> BoxFuture<'a, Vec<Result<Receipt>>> {
        Box::pin(self.envelopes_batch(batch))
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
        let producer = self.producer.read().producer.clone();
        let timeout = self.config.request_timeout;
        let brokers = self.config.brokers.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| Error::shutdown(format!("flush task failed: {e}")))?
            .map_err(|e| errors::from_kafka(e, "flushing the Kafka producer on close", &brokers))
    }
}

#[cfg(test)]
mod tests;
