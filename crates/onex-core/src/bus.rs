//! The [`EventBus`] trait and the types around it (DESIGN §2.4, §3).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::Headers;
use crate::resilience::RetryPolicy;
use crate::{Envelope, Error, HealthStatus, Result};

/// The bytes a topic name may hold: `[A-Za-z0-9._-]`.
const TOPIC_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-';
        b += 1;
    }
    table
};

/// Checks a topic name: `[A-Za-z0-9._-]{1,249}`, not `.` or `..`.
///
/// ```
/// assert!(onex_core::validate_topic("orders.v1").is_ok());
/// assert!(onex_core::validate_topic("orders/v1").is_err());
/// ```
pub fn validate_topic(topic: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::config(format!("invalid topic name {topic:?}: {why}; use 1 to 249 characters of [A-Za-z0-9._-]")).with("topic", topic))
    };
    if topic.is_empty() {
        return bad("it is empty");
    }
    if topic.len() > 249 {
        return bad("it is longer than 249 characters");
    }
    if topic == "." || topic == ".." {
        return bad("'.' and '..' are reserved");
    }
    // Byte test first, one table lookup per byte (every publish checks its topic); the slow
    // search only names the culprit.
    if !topic.bytes().all(|b| TOPIC_BYTES[usize::from(b)]) {
        if let Some(c) = topic.chars().find(|c| !c.is_ascii() || !TOPIC_BYTES[*c as usize]) {
            return bad(&format!("character {c:?} is not allowed"));
        }
    }
    Ok(())
}

/// A raw record to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMessage {
    /// Topic.
    pub topic: String,
    /// Partition key (murmur2 → partition when `partition` is `None`).
    pub key: Option<Bytes>,
    /// Value bytes.
    pub value: Bytes,
    /// Headers.
    pub headers: Headers,
    /// Explicit partition.
    pub partition: Option<u32>,
}

/// Where a published record landed. Returned only once the backend acknowledged it
/// (memory: appended; sqlite: transaction committed; kafka: `acks=all`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
    /// Append time.
    pub timestamp: DateTime<Utc>,
}

/// A record handed to a subscriber.
///
/// The envelope is shared, not copied: on the memory backend it is the very envelope the log
/// keeps for every group, so handing it over costs a reference count instead of a copy of its
/// strings per group. Read it through the `Arc` (`d.envelope.event_type`,
/// `d.envelope.payload_as::<T>()`, `Envelope::caused_by(&d.envelope)`); take an owned one with
/// `Arc::unwrap_or_clone(d.envelope)`, which copies only when the envelope is still shared.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The decoded envelope (`retry_count` = attempts before this one).
    pub envelope: Arc<Envelope>,
    /// Source topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
    /// Attempt number, starting at 1.
    pub attempt: u32,
}

/// A subscriber. Return `Ok` to acknowledge; a retryable `Err` is retried in place, any other
/// `Err`, a decode failure or a panic sends the record to the DLQ (DESIGN §3).
/// [`crate::Error::Shutdown`] is the exception: the record stays uncommitted (it will be
/// redelivered) and the partition stops until the subscription is restarted — for handlers
/// that are being shut down.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Handles one delivery.
    async fn handle(&self, delivery: Delivery) -> Result<()>;
}

/// An [`EventHandler`] from an async closure.
pub struct HandlerFn<F>(F);

impl<F> fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerFn")
    }
}

// Written out rather than with `#[async_trait]`: the closure's own future is boxed as it is,
// instead of inside a wrapper future that first holds the delivery (one copy of it less).
impl<F, Fut> EventHandler for HandlerFn<F>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    fn handle<'s, 'f>(&'s self, delivery: Delivery) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + 'f>>
    where
        's: 'f,
        Self: 'f,
    {
        Box::pin((self.0)(delivery))
    }
}

/// Wraps an async closure as a handler.
///
/// ```
/// let h = onex_core::handler_fn(|d: onex_core::Delivery| async move {
///     println!("{}", d.envelope.event_type);
///     Ok(())
/// });
/// # let _: std::sync::Arc<dyn onex_core::EventHandler> = std::sync::Arc::new(h);
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    HandlerFn(f)
}

/// Where a group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The oldest retained record (the library default: nothing published before the
    /// subscriber started is missed).
    #[default]
    Earliest,
    /// Only records published after the group joined.
    Latest,
}

/// Options of one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscriptionOptions {
    /// Retries in place of a retryable failure (default 3) and their backoff.
    pub retry: RetryPolicy,
    /// DLQ topic; `None` = `{topic}.dlq`.
    pub dlq_topic: Option<String>,
    /// Where a new group starts.
    pub start_from: StartFrom,
    /// Partitions handled in parallel (0 = all assigned partitions).
    pub concurrency: usize,
    /// Claim `envelope_id` in the idempotency store before handling (DESIGN §3 rule 8).
    pub idempotent: bool,
    /// Validate each payload against the bus's [`crate::PayloadValidator`] (schema registry)
    /// before the handler; an invalid record goes to the DLQ with the violations as the reason.
    pub validate_payloads: bool,
    /// Records fetched per poll.
    pub max_poll_records: usize,
    /// Time limit of one handler call (`None` = none); over it the attempt fails with a
    /// retryable `Timeout`.
    #[serde(with = "crate::util::opt_duration_ms")]
    pub handler_timeout: Option<Duration>,
    /// How often completed offsets are committed.
    #[serde(with = "crate::util::duration_ms")]
    pub commit_interval: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        SubscriptionOptions {
            retry: RetryPolicy::default(),
            dlq_topic: None,
            start_from: StartFrom::Earliest,
            concurrency: 0,
            idempotent: false,
            validate_payloads: false,
            max_poll_records: 1000,
            handler_timeout: None,
            commit_interval: Duration::from_millis(100),
        }
    }
}

/// A subscription: a topic, a consumer group, a handler and options.
#[derive(Clone)]
pub struct Subscription {
    /// Topic.
    pub topic: String,
    /// Consumer group. Groups each get every record; members of a group split partitions.
    pub group: String,
    /// The handler.
    pub handler: Arc<dyn EventHandler>,
    /// Options.
    pub options: SubscriptionOptions,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").field("topic", &self.topic).field("group", &self.group).field("options", &self.options).finish()
    }
}

impl Subscription {
    /// A subscription with default options.
    pub fn new(topic: impl Into<String>, group: impl Into<String>, handler: impl EventHandler) -> Self {
        Subscription { topic: topic.into(), group: group.into(), handler: Arc::new(handler), options: SubscriptionOptions::default() }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: SubscriptionOptions) -> Self {
        self.options = options;
        self
    }

    /// The DLQ topic of this subscription.
    pub fn dlq_topic(&self) -> String {
        self.options.dlq_topic.clone().unwrap_or_else(|| format!("{}.dlq", self.topic))
    }
}

/// Identifies a subscription on a bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubscriptionId(pub u64);

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: u32,
    /// Backend settings (`retention.ms`, `retention.records`, …).
    pub config: std::collections::BTreeMap<String, String>,
}

impl TopicSpec {
    /// A topic with `partitions` partitions.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        TopicSpec { name: name.into(), partitions, config: Default::default() }
    }
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// Oldest retained offset.
    pub low_watermark: u64,
    /// Next offset to be written.
    pub high_watermark: u64,
}

/// A topic as the backend knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Partitions with their watermarks (may be empty in a plain listing).
    pub partitions: Vec<PartitionInfo>,
    /// Partition count.
    pub partition_count: u32,
    /// Backend settings.
    pub config: std::collections::BTreeMap<String, String>,
}

impl TopicInfo {
    /// Records retained (sum of high − low).
    pub fn retained(&self) -> u64 {
        self.partitions.iter().map(|p| p.high_watermark - p.low_watermark).sum()
    }
}

/// Topic administration.
#[async_trait]
pub trait TopicAdmin: Send + Sync {
    /// Creates a topic; an existing topic is an error ([`Error::Rejected`]).
    async fn create_topic(&self, spec: TopicSpec) -> Result<()>;
    /// Deletes a topic.
    async fn delete_topic(&self, name: &str) -> Result<()>;
    /// Lists topics.
    async fn list_topics(&self) -> Result<Vec<TopicInfo>>;
    /// Describes one topic with watermarks; [`Error::NotFound`] when missing.
    async fn describe_topic(&self, name: &str) -> Result<TopicInfo>;
}

/// A publish-subscribe event bus.
///
/// Semantics, the same on every backend (DESIGN §3): `publish` returns once the backend
/// acknowledged the record; delivery is at least once; one partition is handled in order;
/// groups fan out and members of a group split partitions; failures are retried in place
/// and then dead-lettered; `stop_consuming` drains and commits.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes a raw record.
    async fn publish(&self, msg: EventMessage) -> Result<Receipt>;
    /// Encodes an envelope (CloudEvents binary mode) and publishes it; the partition key
    /// picks the partition.
    async fn publish_envelope(&self, env: &Envelope, topic: &str) -> Result<Receipt>;
    /// [`EventBus::publish_envelope`] of an envelope the caller gives up: a bus that keeps
    /// envelopes as they are (memory) stores this one instead of a copy. The default borrows
    /// it, for buses that encode it anyway.
    async fn publish_envelope_owned(&self, env: Envelope, topic: &str) -> Result<Receipt> {
        self.publish_envelope(&env, topic).await
    }
    /// Registers a subscription. Subscriptions start receiving when `start_consuming` runs
    /// (or at once if it already runs).
    async fn subscribe(&self, sub: Subscription) -> Result<SubscriptionId>;
    /// Stops one subscription, draining and committing it.
    async fn unsubscribe(&self, id: SubscriptionId) -> Result<()>;
    /// Starts every subscription. With `None`, returns when `stop_consuming` is called; with
    /// a timeout, consumes for that long, then stops as `stop_consuming` does and returns.
    async fn start_consuming(&self, timeout: Option<Duration>) -> Result<()>;
    /// Stops polling, lets in-flight handlers finish within `timeout`, commits, leaves groups.
    async fn stop_consuming(&self, timeout: Duration) -> Result<()>;
    /// Checks the backend.
    async fn health_check(&self) -> Result<HealthStatus>;
    /// Topic administration of this bus.
    fn admin(&self) -> &dyn TopicAdmin;
    /// The backend name (`memory`, `sqlite`, `kafka`, `redpanda`).
    fn backend(&self) -> &str;
    /// The bus itself, for a caller that can use its concrete type: the publisher over
    /// `onex_bus::TransportBus` publishes through it without boxing each publish. `None`
    /// (the default) keeps every caller on the methods above.
    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        None
    }
}

#[cfg(test)]
mod topic_name_tests {
    use super::validate_topic;

    #[test]
    fn every_character_is_judged_by_the_documented_rule() {
        for c in (0u32..0x250).filter_map(char::from_u32) {
            let allowed = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            let name = format!("a{c}b");
            assert_eq!(validate_topic(&name).is_ok(), allowed, "{c:?}");
            if !allowed {
                let e = validate_topic(&name).unwrap_err().to_string();
                assert!(e.contains(&format!("{c:?}")), "the error names the character: {e}");
            }
        }
    }

    #[test]
    fn length_and_reserved_names() {
        assert!(validate_topic("").is_err());
        assert!(validate_topic(".").is_err() && validate_topic("..").is_err());
        assert!(validate_topic("...").is_ok());
        assert!(validate_topic(&"x".repeat(249)).is_ok());
        assert!(validate_topic(&"x".repeat(250)).is_err());
    }
}
