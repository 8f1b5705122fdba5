//! Topic administration over the Kafka admin API: create (partitions, replication, config),
//! delete, list, describe with watermarks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use onex_core::{validate_topic, Error, PartitionInfo, Result, TopicAdmin, TopicInfo, TopicSpec};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaRespErr;

use super::context::KafkaClientContext;
use super::errors;

/// The last describe of a topic (when its round trip started, and its answer), behind a
/// fair (FIFO) lock.
type DescribeSlot = Arc<tokio::sync::Mutex<Option<(Instant, TopicInfo)>>>;

/// Topic admin of a [`super::KafkaTransport`].
#[derive(Clone)]
pub struct KafkaAdmin {
    pub(crate) client: Arc<AdminClient<KafkaClientContext>>,
    pub(crate) brokers: String,
    pub(crate) replication_factor: i32,
    pub(crate) timeout: Duration,
    /// Per topic: callers of `describe_topic` queue here in call order. Without it, many
    /// concurrent first publishes to a topic (each describing it) would finish their round
    /// trips in random order and send their records out of the order they were issued in.
    pub(crate) describes: Arc<parking_lot::Mutex<HashMap<String, DescribeSlot>>>,
    /// Partition counts learnt from metadata (shared with the producer path).
    /// Looked up on every produce call: a fast hash.
    pub(crate) partition_counts: Arc<parking_lot::RwLock<HashMap<String, u32, foldhash::fast::RandomState>>>,
}

impl std::fmt::Debug for KafkaAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAdmin").field("brokers", &self.brokers).field("replication_factor", &self.replication_factor).finish()
    }
}

impl KafkaAdmin {
    fn options(&self) -> AdminOptions {
        AdminOptions::new().request_timeout(Some(self.timeout)).operation_timeout(Some(self.timeout))
    }

    /// Cluster metadata (all topics, or one), fetched off the async threads.
    pub(crate) async fn metadata(&self, topic: Option<&str>) -> Result<Arc<Metadata>> {
        let client = self.client.clone();
        let topic = topic.map(str::to_string);
        let timeout = self.timeout;
        let what = match &topic {
            Some(t) => format!("reading metadata of topic {t:?}"),
            None => "reading cluster metadata".to_string(),
        };
        let brokers = self.brokers.clone();
        let last = client.inner().context().last_error.clone();
        tokio::task::spawn_blocking(move || client.inner().fetch_metadata(topic.as_deref(), timeout).map(Arc::new))
            .await
            .map_err(|e| Error::shutdown(format!("{what}: metadata task failed: {e}")))?
            .map_err(|e| {
                let err = errors::from_kafka(e, &what, &brokers);
                match last.get() {
                    Some(why) => err.with("last_client_error", why),
                    None => err,
                }
            })
    }

    /// Partition count of `topic` (cached), or `NotFound`; an invalid name is refused before
    /// the broker is asked. Only valid names enter the cache, so a hit needs no check: every
    /// produce call asks this first.
    pub(crate) async fn partition_count(&self, topic: &str) -> Result<u32> {
        match self.cached_partition_count(topic) {
            Some(n) => Ok(n),
            // Boxed: every produce future holds this one, and the metadata round-trip's state
            // would make each of them hundreds of bytes larger.
            None => Box::pin(self.look_up_partition_count(topic)).await,
        }
    }

    pub(crate) fn cached_partition_count(&self, topic: &str) -> Option<u32> {
        self.partition_counts.read().get(topic).copied()
    }

    async fn look_up_partition_count(&self, topic: &str) -> Result<u32> {
        onex_core::validate_topic(topic)?;
        let n = self.fetch_partition_count(topic).await?;
        self.partition_counts.write().insert(topic.to_string(), n);
        Ok(n)
    }

    /// Drops what is cached about `topic` (deleted, or reported missing by the broker).
    pub(crate) fn forget(&self, topic: &str) {
        self.partition_counts.write().remove(topic);
        self.describes.lock().remove(topic);
    }

    async fn fetch_partition_count(&self, topic: &str) -> Result<u32> {
        let md = self.metadata(Some(topic)).await?;
        let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| missing(topic))?;
        if let Some(err) = t.error() {
            return Err(topic_error(err, topic, &self.brokers));
        }
        if t.partitions().is_empty() {
            return Err(missing(topic));
        }
        Ok(t.partitions().len() as u32)
    }

    /// Low and high watermarks of partitions of `topic`.
    pub(crate) async fn watermarks(&self, topic: &str, partitions: Vec<u32>) -> Result<Vec<PartitionInfo>> {
        let client = self.client.clone();
        let t = topic.to_string();
        let timeout = self.timeout;
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || {
            partitions
                .into_iter()
                .map(|p| {
                    let (low, high) = client
                        .inner()
                        .fetch_watermarks(&t, p as i32, timeout)
                        .map_err(|e| errors::from_kafka(e, &format!("reading watermarks of {t:?} partition {p}"), &brokers))?;
                    Ok(PartitionInfo { partition: p, low_watermark: low.max(0) as u64, high_watermark: high.max(0) as u64 })
                })
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| Error::shutdown(format!("watermark task failed: {e}")))?
    }

    /// Non-default topic settings; empty when the broker does not answer DescribeConfigs.
    async fn topic_config(&self, topic: &str) -> BTreeMap<String, String> {
        let spec = [ResourceSpecifier::Topic(topic)];
        match self.client.describe_configs(&spec, &self.options()).await {
            Ok(results) => results
                .into_iter()
                .flatten()
                .flat_map(|r| r.entries)
                .filter(|e| !e.is_default && !e.is_sensitive)
                .filter_map(|e| e.value.map(|v| (e.name, v)))
                .collect(),
            Err(e) => {
                tracing::debug!(topic, error = %e, "DescribeConfigs failed; describing the topic without its settings");
                BTreeMap::new()
            }
        }
    }
}

/// The error of a topic the cluster does not have.
pub(super) fn missing(topic: &str) -> Error {
    Error::not_found(format!("topic {topic:?} does not exist on the Kafka cluster")).with("topic", topic)
}

fn topic_error(err: RDKafkaRespErr, topic: &str, brokers: &str) -> Error {
    let code = RDKafkaErrorCode::from(err);
    match code {
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => missing(topic),
        other => errors::from_code(other, &format!("reading metadata of topic {topic:?}"), brokers).with("topic", topic),
    }
}

fn first_result(results: Vec<rdkafka::admin::TopicResult>, what: &str, brokers: &str, topic: &str) -> Result<()> {
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, RDKafkaErrorCode::UnknownTopicOrPartition))) => Err(missing(topic)),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
            Err(Error::rejected(format!("topic {topic:?} already exists")).with("topic", topic).with("exists", "true"))
        }
        Some(Err((_, code))) => Err(errors::from_code(code, what, brokers).with("topic", topic)),
        None => Err(Error::protocol(format!("{what}: the broker returned no result"))),
    }
}

#[async_trait]
impl TopicAdmin for KafkaAdmin {
    async fn create_topic(&self, spec: TopicSpec) -> Result<()> {
        validate_topic(&spec.name)?;
        if spec.partitions == 0 || spec.partitions > i32::MAX as u32 {
            return Err(Error::config(format!("topic {:?} needs at least one partition (got {})", spec.name, spec.partitions)));
        }
        let mut topic = NewTopic::new(&spec.name, spec.partitions as i32, TopicReplication::Fixed(self.replication_factor));
        for (k, v) in &spec.config {
            topic = topic.set(k, v);
        }
        let what = format!("creating topic {:?} with {} partitions", spec.name, spec.partitions);
        let results =
            self.client.create_topics([&topic], &self.options()).await.map_err(|e| errors::from_kafka(e, &what, &self.brokers))?;
        first_result(results, &what, &self.brokers, &spec.name)
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        validate_topic(name)?;
        let what = format!("deleting topic {name:?}");
        let results = self.client.delete_topics(&[name], &self.options()).await.map_err(|e| errors::from_kafka(e, &what, &self.brokers))?;
        self.forget(name);
        first_result(results, &what, &self.brokers, name)
    }

    async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let md = self.metadata(None).await?;
        let mut out: Vec<TopicInfo> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
            .map(|t| TopicInfo {
                name: t.name().to_string(),
                partitions: Vec::new(),
                partition_count: t.partitions().len() as u32,
                config: BTreeMap::new(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        validate_topic(name)?;
        let arrived = Instant::now();
        let slot = self.describes.lock().entry(name.to_string()).or_default().clone();
        let mut last = slot.lock().await;
        if let Some((started, info)) = last.as_ref() {
            // A round trip that started after this call arrived answers it as well as a new one.
            if *started >= arrived {
                return Ok(info.clone());
            }
        }
        let started = Instant::now();
        let count = match self.fetch_partition_count(name).await {
            Ok(n) => n,
            Err(e) => {
                drop(last);
                self.forget(name);
                return Err(e);
            }
        };
        self.partition_counts.write().insert(name.to_string(), count);
        let partitions = self.watermarks(name, (0..count).collect()).await?;
        let config = self.topic_config(name).await;
        let info = TopicInfo { name: name.to_string(), partitions, partition_count: count, config };
        *last = Some((started, info.clone()));
        Ok(info)
    }
}
