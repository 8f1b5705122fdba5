//! The in-process transport: topics with N partitions, retention by count, consumer groups.
//! Same semantics as the durable backends, no durability (`memory://`).

mod group;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use onex_core::{validate_topic, Error, HealthStatus, PartitionInfo, Receipt, Result, StartFrom, TopicAdmin, TopicInfo, TopicSpec};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use self::group::{Change, GroupState, MemberId};
use crate::partitioner::partition_for_key;
use crate::transport::{ConsumedRecord, PollEvent, ProduceRecord, RecordBody, Transport, TransportConsumer, TransportFeatures};

/// Settings of the memory transport (`memory://?retention_records=N&max_message_bytes=B`).
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// Records kept per partition; older ones are dropped (`None` = all).
    pub retention_records: Option<usize>,
    /// Largest record (key + value + headers).
    pub max_message_bytes: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig { retention_records: None, max_message_bytes: 1024 * 1024 }
    }
}

#[derive(Debug)]
struct Stored {
    timestamp: DateTime<Utc>,
    record: Arc<crate::transport::RecordBody>,
}

#[derive(Debug, Default)]
struct PartitionLog {
    base: u64,
    records: VecDeque<Stored>,
}

impl PartitionLog {
    fn end(&self) -> u64 {
        self.base + self.records.len() as u64
    }
}

#[derive(Debug)]
struct Topic {
    name: Arc<str>,
    partitions: Vec<Mutex<PartitionLog>>,
    config: BTreeMap<String, String>,
    retention: Option<usize>,
    notify: Notify,
    round_robin: AtomicU32,
}

/// Group state per (group, topic).
type Groups = HashMap<(String, String), Arc<Mutex<GroupState>>>;

#[derive(Debug, Default)]
struct Inner {
    /// Looked up on every publish: a fast hash.
    topics: RwLock<HashMap<String, Arc<Topic>, foldhash::fast::RandomState>>,
    groups: Mutex<Groups>,
    next_member: AtomicU64,
}

/// The in-process transport. Clones share the same topics.
///
/// ```
/// # tokio_test_block_on(async {
/// use onex_bus::memory::MemoryTransport;
/// use onex_bus::transport::Transport;
/// let t = MemoryTransport::default();
/// t.admin().create_topic(onex_core::TopicSpec::new("orders", 4)).await?;
/// assert_eq!(t.admin().describe_topic("orders").await?.partition_count, 4);
/// # Ok::<(), onex_core::Error>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output { tokio::runtime::Runtime::new().unwrap().block_on(f) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryTransport {
    inner: Arc<Inner>,
    config: Arc<MemoryConfig>,
}

impl MemoryTransport {
    /// A transport with settings.
    pub fn new(config: MemoryConfig) -> Self {
        MemoryTransport { inner: Arc::default(), config: Arc::new(config) }
    }

    /// Builds from `memory://[?retention_records=N&max_message_bytes=B]`.
    pub fn from_url(url: &url::Url) -> Result<Self> {
        let mut config = MemoryConfig::default();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "retention_records" => config.retention_records = Some(parse_num(&k, &v)?),
                "max_message_bytes" => config.max_message_bytes = parse_num(&k, &v)?,
                // Bus-level options are read by the provider.
                "partitions" | "auto_create_topics" => {}
                other => {
                    return Err(Error::config(format!(
                        "unknown memory:// option {other:?}; known: retention_records, max_message_bytes, partitions, auto_create_topics"
                    )))
                }
            }
        }
        Ok(Self::new(config))
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("topic {name:?} does not exist")).with("topic", name))
    }
}

impl MemoryTransport {
    /// Checks and appends one record; `body` is built only once the checks passed.
    fn append_one(
        &self,
        topic: &str,
        size: usize,
        partition: Option<u32>,
        key: Option<&[u8]>,
        body: impl FnOnce() -> RecordBody,
    ) -> Result<Receipt> {
        let t = self.topic(topic)?;
        self.check(&t, size, partition)?;
        let receipt = t.push(t.route(partition, key), body(), Utc::now());
        t.notify.notify_waiters();
        Ok(receipt)
    }

    /// Size and explicit partition of a record about to be appended to `t`.
    fn check(&self, t: &Topic, size: usize, partition: Option<u32>) -> Result<()> {
        if size > self.config.max_message_bytes {
            return Err(Error::too_large(format!("record for topic {:?}", &*t.name), size as u64, self.config.max_message_bytes as u64));
        }
        match partition {
            Some(p) if p >= t.partitions.len() as u32 => {
                Err(Error::rejected(format!("partition {p} does not exist in topic {:?} ({} partitions)", &*t.name, t.partitions.len())))
            }
            _ => Ok(()),
        }
    }
}

impl Topic {
    /// Appends a checked record; waking consumers is the caller's (once per call).
    fn append(&self, r: ProduceRecord, now: DateTime<Utc>) -> Receipt {
        let p = self.route(r.partition, r.key.as_deref());
        self.push(p, r.record, now)
    }

    /// The explicit partition, else murmur2 of the key, else round robin.
    fn route(&self, partition: Option<u32>, key: Option<&[u8]>) -> u32 {
        let n = self.partitions.len() as u32;
        match (partition, key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, n),
            (None, None) => self.round_robin.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    fn push(&self, p: u32, record: RecordBody, now: DateTime<Utc>) -> Receipt {
        let mut log = self.partitions[p as usize].lock();
        let offset = log.end();
        log.records.push_back(Stored { timestamp: now, record: Arc::new(record) });
        if let Some(max) = self.retention {
            while log.records.len() > max {
                log.records.pop_front();
                log.base += 1;
            }
        }
        drop(log);
        // `String::from`, not `to_string`: `Arc<str>` would go through `Display` and a growing buffer.
        Receipt { topic: String::from(&*self.name), partition: p, offset, timestamp: now }
    }
}

fn parse_num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T> {
    v.parse().map_err(|_| Error::config(format!("option {k}={v:?} is not a number")))
}

#[async_trait]
impl TopicAdmin for MemoryTransport {
    async fn create_topic(&self, spec: TopicSpec) -> Result<()> {
        validate_topic(&spec.name)?;
        if spec.partitions == 0 {
            return Err(Error::config(format!("topic {:?} needs at least one partition", spec.name)));
        }
        let retention = match spec.config.get("retention.records") {
            Some(v) => Some(parse_num("retention.records", v)?),
            None => self.config.retention_records,
        };
        let mut topics = self.inner.topics.write();
        if topics.contains_key(&spec.name) {
            return Err(Error::rejected(format!("topic {:?} already exists", spec.name)).with("topic", &spec.name).with("exists", "true"));
        }
        let topic = Topic {
            name: Arc::from(spec.name.as_str()),
            partitions: (0..spec.partitions).map(|_| Mutex::new(PartitionLog::default())).collect(),
            config: spec.config,
            retention,
            notify: Notify::new(),
            round_robin: AtomicU32::new(0),
        };
        topics.insert(spec.name, Arc::new(topic));
        Ok(())
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        let removed = self.inner.topics.write().remove(name);
        match removed {
            Some(t) => {
                t.notify.notify_waiters();
                Ok(())
            }
            None => Err(Error::not_found(format!("topic {name:?} does not exist"))),
        }
    }

    async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let names: Vec<String> = self.inner.topics.read().keys().cloned().collect();
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Ok(info) = self.describe_topic(&n).await {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        let t = self.topic(name)?;
        let partitions = t
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let log = p.lock();
                PartitionInfo { partition: i as u32, low_watermark: log.base, high_watermark: log.end() }
            })
            .collect();
        Ok(TopicInfo { name: name.to_string(), partitions, partition_count: t.partitions.len() as u32, config: t.config.clone() })
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn features(&self) -> TransportFeatures {
        TransportFeatures { persistent: false, multi_process: false }
    }

    async fn produce(&self, topic: &str, records: Vec<ProduceRecord>) -> Result<Vec<Receipt>> {
        let t = self.topic(topic)?;
        for r in &records {
            self.check(&t, r.record.byte_len(), r.partition)?;
        }
        let now = Utc::now();
        let receipts = records.into_iter().map(|r| t.append(r, now)).collect();
        t.notify.notify_waiters();
        Ok(receipts)
    }

    async fn produce_one(&self, topic: &str, record: ProduceRecord) -> Result<Receipt> {
        let ProduceRecord { key, record, partition } = record;
        self.append_one(topic, record.byte_len(), partition, key.as_deref(), || record)
    }

    async fn produce_shared_envelope(&self, topic: &str, env: Arc<onex_core::Envelope>) -> Result<Receipt> {
        // Kept unencoded and shared: consumers in this process take it as it is, without an
        // encode/decode trip or a copy; routed by the partition key as its encoded record's
        // key would be.
        let key = env.partition_key.as_deref().map(str::as_bytes);
        let size = onex_core::envelope::encoded_len(&env);
        self.append_one(topic, size, None, key, || RecordBody::from_envelope(env.clone()))
    }

    async fn consumer(&self, group: &str, topic: &str, start: StartFrom) -> Result<Box<dyn TransportConsumer>> {
        validate_topic(topic)?;
        let t = self.topic(topic)?;
        let state = self.inner.groups.lock().entry((group.to_string(), topic.to_string())).or_default().clone();
        let member = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        state.lock().join(member, t.partitions.len() as u32);
        t.notify.notify_waiters();
        Ok(Box::new(MemoryConsumer {
            topic: t,
            state,
            member,
            start,
            positions: BTreeMap::new(),
            revoking: Vec::new(),
            cursor: 0,
            closed: false,
        }))
    }

    fn admin(&self) -> &dyn TopicAdmin {
        self
    }

    async fn health(&self) -> Result<HealthStatus> {
        let topics = self.inner.topics.read().len();
        Ok(HealthStatus::healthy(Duration::ZERO, serde_json::json!({ "backend": "memory", "topics": topics })))
    }

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        let state = self.inner.groups.lock().get(&(group.to_string(), topic.to_string())).cloned();
        Ok(state.and_then(|s| s.lock().committed.get(&partition).copied()))
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct MemoryConsumer {
    topic: Arc<Topic>,
    state: Arc<Mutex<GroupState>>,
    member: MemberId,
    start: StartFrom,
    positions: BTreeMap<u32, u64>,
    revoking: Vec<u32>,
    cursor: usize,
    closed: bool,
}

impl MemoryConsumer {
    fn read(&mut self, max: usize) -> Vec<ConsumedRecord> {
        let parts: Vec<u32> = self.positions.keys().copied().collect();
        let mut out = Vec::new();
        if parts.is_empty() {
            return out;
        }
        self.cursor = (self.cursor + 1) % parts.len();
        for i in 0..parts.len() {
            if out.len() >= max {
                break;
            }
            let p = parts[(self.cursor + i) % parts.len()];
            let pos = self.positions.get_mut(&p).expect("listed partition");
            let log = self.topic.partitions[p as usize].lock();
            if *pos < log.base {
                *pos = log.base; // retention dropped what this group had not read
            }
            let from = (*pos - log.base) as usize;
            let take = (max - out.len()).min(log.records.len().saturating_sub(from));
            out.reserve(take);
            for (i, s) in log.records.range(from..from + take).enumerate() {
                out.push(ConsumedRecord {
                    topic: self.topic.name.clone(),
                    partition: p,
                    offset: *pos + i as u64,
                    timestamp: s.timestamp,
                    record: s.record.clone(),
                });
            }
            *pos += take as u64;
        }
        out
    }
}

#[async_trait]
impl TransportConsumer for MemoryConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<PollEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let topic = self.topic.clone();
            let notified = topic.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let change = self.state.lock().next_change(self.member);
            match change {
                Change::Revoke(ps) => {
                    let fresh: Vec<u32> = ps.into_iter().filter(|p| !self.revoking.contains(p)).collect();
                    if !fresh.is_empty() {
                        for p in &fresh {
                            self.positions.remove(p);
                        }
                        self.revoking.extend(&fresh);
                        return Ok(PollEvent::Revoked(fresh));
                    }
                }
                Change::Assign(ps) => {
                    let state = self.state.lock();
                    for p in &ps {
                        let log = self.topic.partitions[*p as usize].lock();
                        let pos = match (state.committed.get(p), self.start) {
                            (Some(c), _) => *c,
                            (None, StartFrom::Earliest) => log.base,
                            (None, StartFrom::Latest) => log.end(),
                        };
                        self.positions.insert(*p, pos);
                    }
                    return Ok(PollEvent::Assigned(ps));
                }
                Change::None => {}
            }
            let records = self.read(max);
            if !records.is_empty() {
                return Ok(PollEvent::Records(records));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(PollEvent::Idle);
            }
            let _ = tokio::time::timeout(deadline - now, notified).await;
        }
    }

    async fn commit(&mut self, offsets: &[(u32, u64)]) -> Result<()> {
        let mut state = self.state.lock();
        for (p, _) in offsets {
            if !state.owns(self.member, *p) {
                return Err(Error::invalid_state(format!(
                    "partition {p} of {:?} is not owned by this consumer; commit refused",
                    self.topic.name
                )));
            }
        }
        for (p, o) in offsets {
            state.committed.insert(*p, *o);
        }
        Ok(())
    }

    async fn seek(&mut self, partition: u32, offset: u64) -> Result<()> {
        match self.positions.get_mut(&partition) {
            Some(pos) => {
                *pos = offset;
                Ok(())
            }
            None => Err(Error::invalid_state(format!("cannot seek partition {partition}: not assigned"))),
        }
    }

    fn assignment(&self) -> Vec<u32> {
        self.positions.keys().copied().collect()
    }

    async fn revoke_complete(&mut self, partitions: &[u32]) -> Result<()> {
        self.state.lock().release(self.member, partitions);
        self.revoking.retain(|p| !partitions.contains(p));
        self.topic.notify.notify_waiters();
        Ok(())
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.leave();
        Ok(())
    }
}

impl MemoryConsumer {
    fn leave(&mut self) {
        if !self.closed {
            self.closed = true;
            self.state.lock().leave(self.member, self.topic.partitions.len() as u32);
            self.topic.notify.notify_waiters();
        }
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.leave();
    }
}
