//! [`TransportBus`]: the [`EventBus`] every backend gets, a transport under the one engine.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onex_core::{
    validate_topic, Envelope, Error, EventBus, EventMessage, HealthStatus, IdempotencyStore, PayloadValidator, Receipt, Result,
    Subscription, SubscriptionId, TopicAdmin, TopicSpec,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::engine::{RunningSubscription, SubscriptionStats};
use crate::transport::{PendingReceipt, ProduceRecord, Transport};

/// Bus settings shared by every backend.
#[derive(Clone)]
pub struct BusConfig {
    /// Create a missing topic on first publish or subscribe (default on).
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics (default 4).
    pub default_partitions: u32,
    /// Store for idempotent subscriptions (DESIGN §3 rule 8).
    pub idempotency: Option<Arc<dyn IdempotencyStore>>,
    /// Validator for subscriptions with `validate_payloads` (the schema registry).
    pub validator: Option<Arc<dyn PayloadValidator>>,
}

impl std::fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusConfig")
            .field("auto_create_topics", &self.auto_create_topics)
            .field("default_partitions", &self.default_partitions)
            .field("idempotency", &self.idempotency.is_some())
            .field("validator", &self.validator.is_some())
            .finish()
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig { auto_create_topics: true, default_partitions: 4, idempotency: None, validator: None }
    }
}

/// What the engine shares with the bus: the transport and topic bookkeeping.
#[derive(Debug)]
pub(crate) struct BusCore {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) config: BusConfig,
    /// Looked up before every record publish: a fast hash (topic names are not
    /// attacker-chosen keys here).
    known_topics: RwLock<HashSet<String, foldhash::fast::RandomState>>,
}

impl std::fmt::Debug for dyn Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transport({})", self.backend())
    }
}

impl BusCore {
    /// Makes sure `topic` exists, creating it when allowed. Cached after the first success.
    pub(crate) async fn ensure_topic(&self, topic: &str) -> Result<()> {
        if self.known_topics.read().contains(topic) {
            return Ok(());
        }
        // Boxed: every publish future holds this one, and the rare path's state would make
        // each of them several hundred bytes larger to build and move.
        Box::pin(self.find_or_create(topic)).await
    }

    async fn find_or_create(&self, topic: &str) -> Result<()> {
        validate_topic(topic)?;
        match self.transport.admin().describe_topic(topic).await {
            Ok(_) => {}
            Err(e) if e.kind() == onex_core::ErrorKind::NotFound => {
                if !self.config.auto_create_topics {
                    return Err(Error::not_found(format!(
                        "topic {topic:?} does not exist and auto_create_topics is off; create it first (onex topics create {topic} --partitions N)"
                    ))
                    .with("topic", topic));
                }
                match self.transport.admin().create_topic(TopicSpec::new(topic, self.config.default_partitions)).await {
                    Ok(()) => tracing::info!(topic, partitions = self.config.default_partitions, "created topic"),
                    // Another publisher or process created it first.
                    Err(e) if e.context().is_some_and(|c| c.get("exists").is_some_and(|v| v == "true")) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        self.known_topics.write().insert(topic.to_string());
        Ok(())
    }

    /// Sends to `topic` through the transport once the topic is known to exist (created when
    /// allowed), and forgets a topic the transport reports missing. For a send that hands
    /// over what it sends (a record publish), so it cannot be made again: `send` runs only
    /// after the check, and what it captures is not built for a publish that fails it.
    pub(crate) async fn produce_with<'a, F>(&'a self, topic: &'a str, send: impl FnOnce(&'a dyn Transport) -> F) -> Result<Receipt>
    where
        F: std::future::Future<Output = Result<Receipt>>,
    {
        self.ensure_topic(topic).await?;
        let result = send(&*self.transport).await;
        self.forget_if_missing(topic, result)
    }

    /// [`Self::produce_with`] for a send that can be made twice (a borrowed or shared
    /// envelope, a record the caller keeps): the transport is asked first, and only a
    /// `NotFound` from it sends the topic through [`Self::ensure_topic`] (created when
    /// allowed) before `send` runs again. A publish to a topic that exists then makes no
    /// lookup here; the transport keeps its own.
    pub(crate) async fn produce_repeatable<'a, F>(&'a self, topic: &'a str, send: impl Fn(&'a dyn Transport) -> F + 'a) -> Result<Receipt>
    where
        F: std::future::Future<Output = Result<Receipt>>,
    {
        {
            let result = send(&*self.transport).await;
            if !is_missing_topic(&result) {
                return result;
            }
        }
        // The first result is dropped before the resend: every publish future holds this one.
        self.resend_to_missing(topic, send).await
    }

    /// The rest of [`Self::produce_repeatable`] after the transport said `topic` is missing
    /// (never created, or deleted behind our back): look again, then send again. Boxed: the
    /// rare path's state would make every publish future that holds this one larger.
    pub(crate) fn resend_to_missing<'a, F>(
        &'a self,
        topic: &'a str,
        send: impl Fn(&'a dyn Transport) -> F + 'a,
    ) -> std::pin::Pin<Box<impl std::future::Future<Output = Result<Receipt>> + 'a>>
    where
        F: std::future::Future<Output = Result<Receipt>>,
    {
        Box::pin(async move {
            self.forget(topic);
            self.ensure_topic(topic).await?;
            send(&*self.transport).await
        })
    }

    /// A topic the transport says is missing was deleted behind our back: drop it from the
    /// cache so that the next publish looks again (and creates it, when allowed).
    fn forget_if_missing(&self, topic: &str, result: Result<Receipt>) -> Result<Receipt> {
        if is_missing_topic(&result) {
            self.forget(topic);
        }
        result
    }

    /// Drops `topic` from the known-topic cache, so that [`Self::ensure_topic`] looks again.
    fn forget(&self, topic: &str) {
        self.known_topics.write().remove(topic);
    }
}

/// A transport's answer that the topic does not exist.
pub(crate) fn is_missing_topic(result: &Result<Receipt>) -> bool {
    result.as_ref().is_err_and(|e| e.kind() == onex_core::ErrorKind::NotFound)
}

struct Registered {
    sub: Subscription,
    stats: Arc<SubscriptionStats>,
    running: Option<RunningSubscription>,
}

/// The event bus over any [`Transport`]: publishing, subscriptions and the consumer engine.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use onex_bus::{memory::MemoryTransport, TransportBus};
/// use onex_core::{handler_fn, Envelope, EventBus, Subscription};
///
/// let bus = TransportBus::new(Arc::new(MemoryTransport::default()));
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// bus.subscribe(Subscription::new("orders", "billing", handler_fn(move |d| {
///     let tx = tx.clone();
///     async move { tx.send(d.envelope.event_type.clone()).ok(); Ok(()) }
/// }))).await?;
/// bus.start().await?;
/// bus.publish_envelope(&Envelope::new("orders.created.v1", &serde_json::json!({"id": 1}))?, "orders").await?;
/// assert_eq!(rx.recv().await.as_deref(), Some("orders.created.v1"));
/// bus.stop_consuming(std::time::Duration::from_secs(5)).await?;
/// # Ok::<(), onex_core::Error>(()) }).unwrap();
/// ```
pub struct TransportBus {
    core: Arc<BusCore>,
    subs: Mutex<BTreeMap<SubscriptionId, Registered>>,
    next_id: AtomicU64,
    consuming: AtomicBool,
    stopped: Notify,
}

impl std::fmt::Debug for TransportBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportBus").field("backend", &self.core.transport.backend()).field("config", &self.core.config).finish()
    }
}

impl TransportBus {
    /// A bus over `transport` with default settings.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self::with_config(transport, BusConfig::default())
    }

    /// A bus over `transport` with `config`.
    pub fn with_config(transport: Arc<dyn Transport>, config: BusConfig) -> Self {
        TransportBus {
            core: Arc::new(BusCore { transport, config, known_topics: RwLock::new(HashSet::default()) }),
            subs: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            consuming: AtomicBool::new(false),
            stopped: Notify::new(),
        }
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.core.transport
    }

    /// The settings.
    pub fn config(&self) -> &BusConfig {
        &self.core.config
    }

    /// Starts every registered subscription and returns at once (later subscriptions start
    /// when they are made).
    pub async fn start(&self) -> Result<()> {
        self.consuming.store(true, Ordering::SeqCst);
        let mut subs = self.subs.lock();
        for (id, reg) in subs.iter_mut() {
            if reg.running.as_ref().is_none_or(|r| r.is_finished()) {
                reg.running = Some(RunningSubscription::spawn(self.core.clone(), reg.sub.clone(), *id, reg.stats.clone()));
            }
        }
        Ok(())
    }

    /// Counters of a subscription.
    pub fn stats(&self, id: SubscriptionId) -> Option<Arc<SubscriptionStats>> {
        self.subs.lock().get(&id).map(|r| r.stats.clone())
    }

    /// Publishes a batch of raw records to one topic in one call to the transport.
    pub async fn publish_batch(&self, topic: &str, records: Vec<ProduceRecord>) -> Result<Vec<Receipt>> {
        self.core.ensure_topic(topic).await?;
        self.core.transport.produce(topic, records).await
    }

    /// Creates the topic if it is missing (when auto-create is on).
    pub async fn ensure_topic(&self, topic: &str) -> Result<()> {
        self.core.ensure_topic(topic).await
    }

    /// The first try of [`EventBus::publish_envelope`], unboxed: the transport's pending
    /// receipt, which the publisher holds in place. A `NotFound` from it goes to
    /// [`Self::resend_envelope`].
    pub(crate) fn try_envelope<'a>(&'a self, env: &'a Envelope, topic: &'a str) -> PendingReceipt<'a> {
        self.core.transport.produce_envelope(topic, env)
    }

    /// [`EventBus::publish_envelope`] after its first try found the topic missing.
    pub(crate) fn resend_envelope<'a>(
        &'a self,
        env: &'a Envelope,
        topic: &'a str,
    ) -> impl std::future::Future<Output = Result<Receipt>> + 'a {
        self.core.resend_to_missing(topic, move |t| t.produce_envelope(topic, env))
    }

    /// [`EventBus::publish_envelope`] of a batch, in one call to the transport
    /// ([`Transport::produce_envelopes`]): a result per envelope, in order. As for one
    /// envelope, a topic the transport says is missing is looked up again (created when
    /// allowed); here once per topic, and its envelopes go again in one more call. While the
    /// topic stays missing, each of its envelopes gets the lookup's error.
    pub(crate) async fn publish_envelopes(&self, batch: &[(&str, &Envelope)]) -> Vec<Result<Receipt>> {
        let mut results = self.core.transport.produce_envelopes(batch).await;
        let missing: Vec<usize> = (0..results.len()).filter(|&i| is_missing_topic(&results[i])).collect();
        let (mut forgotten, mut found, mut again) = (Vec::new(), Vec::new(), Vec::new());
        for i in missing {
            let topic = batch[i].0;
            if !found.contains(&topic) {
                if !forgotten.contains(&topic) {
                    self.core.forget(topic);
                    forgotten.push(topic);
                }
                // Not cached when it fails: each envelope of a topic still missing asks again
                // and gets an error of its own.
                if let Err(e) = self.core.ensure_topic(topic).await {
                    results[i] = Err(e);
                    continue;
                }
                found.push(topic);
            }
            again.push(i);
        }
        if !again.is_empty() {
            let resend: Vec<(&str, &Envelope)> = again.iter().map(|&i| batch[i]).collect();
            for (i, result) in again.into_iter().zip(self.core.transport.produce_envelopes(&resend).await) {
                results[i] = self.core.forget_if_missing(batch[i].0, result);
            }
        }
        results
    }
}

#[async_trait]
impl EventBus for TransportBus {
    async fn publish(&self, msg: EventMessage) -> Result<Receipt> {
        let rec = ProduceRecord {
            key: msg.key.clone(),
            record: onex_core::Record { key: msg.key, value: msg.value, headers: msg.headers }.into(),
            partition: msg.partition,
        };
        self.core.produce_with(&msg.topic, |t| t.produce_one(&msg.topic, rec)).await
    }

    async fn publish_envelope(&self, env: &Envelope, topic: &str) -> Result<Receipt> {
        self.core.produce_repeatable(topic, |t| t.produce_envelope(topic, env)).await
    }

    // Written out rather than as an `async fn`: the envelope goes into its `Arc` at once,
    // instead of being moved (~400 bytes at a time) into the boxed future and out again.
    fn publish_envelope_owned<'s, 't, 'f>(
        &'s self,
        env: Envelope,
        topic: &'t str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Receipt>> + Send + 'f>>
    where
        's: 'f,
        't: 'f,
        Self: 'f,
    {
        let env = Arc::new(env);
        Box::pin(self.core.produce_repeatable(topic, move |t| t.produce_shared_envelope(topic, env.clone())))
    }

    async fn subscribe(&self, sub: Subscription) -> Result<SubscriptionId> {
        validate_topic(&sub.topic)?;
        validate_topic(&sub.dlq_topic())?;
        if sub.group.is_empty() {
            return Err(Error::config("a subscription needs a consumer group name"));
        }
        if sub.options.idempotent && self.core.config.idempotency.is_none() {
            return Err(Error::config("idempotent subscription needs an idempotency store: set BusConfig.idempotency"));
        }
        if sub.options.validate_payloads && self.core.config.validator.is_none() {
            return Err(Error::config(
                "a subscription with validate_payloads needs a validator: set BusConfig.validator (the schema registry)",
            ));
        }
        self.core.ensure_topic(&sub.topic).await?;
        let id = SubscriptionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let stats = Arc::new(SubscriptionStats::default());
        let running =
            self.consuming.load(Ordering::SeqCst).then(|| RunningSubscription::spawn(self.core.clone(), sub.clone(), id, stats.clone()));
        self.subs.lock().insert(id, Registered { sub, stats, running });
        Ok(id)
    }

    async fn unsubscribe(&self, id: SubscriptionId) -> Result<()> {
        let reg = self.subs.lock().remove(&id).ok_or_else(|| Error::not_found(format!("no subscription {}", id.0)))?;
        match reg.running {
            Some(r) => r.stop(Duration::from_secs(30)).await,
            None => Ok(()),
        }
    }

    async fn start_consuming(&self, timeout: Option<Duration>) -> Result<()> {
        self.start().await?;
        match timeout {
            None => {
                let stopped = self.stopped.notified();
                tokio::pin!(stopped);
                stopped.as_mut().enable();
                if self.consuming.load(Ordering::SeqCst) {
                    stopped.await;
                }
                Ok(())
            }
            Some(t) => {
                tokio::time::sleep(t).await;
                self.stop_consuming(Duration::from_secs(30)).await
            }
        }
    }

    async fn stop_consuming(&self, timeout: Duration) -> Result<()> {
        self.consuming.store(false, Ordering::SeqCst);
        let running: Vec<RunningSubscription> = self.subs.lock().values_mut().filter_map(|r| r.running.take()).collect();
        let results = futures::future::join_all(running.into_iter().map(|r| r.stop(timeout))).await;
        self.stopped.notify_waiters();
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        self.core.transport.health().await
    }

    fn admin(&self) -> &dyn TopicAdmin {
        self.core.transport.admin()
    }

    fn backend(&self) -> &str {
        self.core.transport.backend()
    }

    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        Some(self)
    }
}
