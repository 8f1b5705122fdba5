//! [`PublishPipeline`]: many single publishes in flight, their results in the order sent.
//!
//! A caller that keeps thousands of [`BusPublisher::publish_envelope`] futures in a
//! `FuturesUnordered` pays, per record, for that set's task allocation and for a
//! cross-thread wake of its task when the record's report lands. A pipeline hands results
//! back in push order instead, so only the oldest publish needs a waker: a Kafka record
//! waiting for its delivery report sits in place and is woken by nobody until it is the
//! oldest. Measured in `onex bench bus-kafka` that cut the CPU per record from ~1.3–1.5 to
//! ~1.1–1.25 times a raw `ThreadedProducer`'s (docs/decisions.md, "Twenty-eighth session").
//! A publish that needs driving before its report (validation, a missing topic, a backend
//! without in-place receipts: memory, sqlite) runs in a `FuturesUnordered` of its own.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::stream::{FuturesUnordered, StreamExt};
use onex_core::{Envelope, Receipt, Result};

use super::pending::{Now, PendingPublish};
use super::BusPublisher;

/// Single publishes with up to `max_in_flight` of them in flight, each with the validation,
/// breaker, retries and metrics of [`BusPublisher::publish_envelope`], their results handed
/// back in the order of the pushes. Made by [`BusPublisher::pipeline`].
///
/// Each publish is sent when pushed. [`Self::push`] waits only when the pipeline is full,
/// and then returns the oldest publish's result; [`Self::next`] returns the rest. A result
/// is taken once, in push order, so the n-th result is the n-th push's. The oldest publish
/// holds back the results of later ones until it is done (its retries too), as the oldest
/// record in flight holds back a raw producer's window. A Kafka publish waiting in place
/// is recorded in the publisher's metrics when its result is taken, and counts in flight
/// for [`onex_core::EventPublisher::close`] until then.
///
/// Over Kafka, a publish to a topic whose partition count the transport knows goes to
/// librdkafka when pushed, so records with one partition key land in push order. A publish
/// that is validated first, goes to a topic not looked up yet, or is retried goes out when
/// it gets its turn, and may land after later ones, as concurrent publishes may.
///
/// Dropping a pipeline drops its publishes as dropping their futures would: records a
/// broker already took may still land, and their results are lost.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use onex_bus::publisher::BusPublisher;
/// use onex_core::Envelope;
///
/// let publisher = BusPublisher::new(onex_bus::connect("memory://").await?)?;
/// let envs = (0..100)
///     .map(|i| Ok(Envelope::new("orders.updated.v1", &serde_json::json!({ "step": i }))?.with_partition_key("order-7")))
///     .collect::<Result<Vec<_>, onex_core::Error>>()?;
/// let mut pipeline = publisher.pipeline(16);
/// let mut offsets = Vec::new();
/// for env in &envs {
///     if let Some(oldest) = pipeline.push(env, None).await {
///         offsets.push(oldest?.offset);
///     }
/// }
/// while let Some(result) = pipeline.next().await {
///     offsets.push(result?.offset);
/// }
/// assert_eq!(offsets, (0..100).collect::<Vec<u64>>()); // one key, one partition, in order
/// # Ok::<(), onex_core::Error>(()) }).unwrap();
/// ```
pub struct PublishPipeline<'a> {
    publisher: &'a BusPublisher,
    max_in_flight: usize,
    /// Every publish not yet handed back, oldest first.
    window: VecDeque<Entry<'a>>,
    /// The publishes that make progress only when polled.
    driven: FuturesUnordered<Numbered<'a>>,
    /// Results of driven publishes that finished before they were the oldest.
    finished: HashMap<u64, Result<Receipt>>,
    next_number: u64,
}

enum Entry<'a> {
    /// Waits for its report where it is, polled only once it is the oldest.
    InPlace(PendingPublish<'a>),
    /// In `driven`, under this number.
    Driven(u64),
}

impl std::fmt::Debug for PublishPipeline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishPipeline")
            .field("max_in_flight", &self.max_in_flight)
            .field("in_flight", &self.window.len())
            .field("driven", &self.driven.len())
            .finish()
    }
}

impl BusPublisher {
    /// A [`PublishPipeline`] that keeps up to `max_in_flight` publishes in flight (at least one).
    pub fn pipeline(&self, max_in_flight: usize) -> PublishPipeline<'_> {
        PublishPipeline {
            publisher: self,
            max_in_flight: max_in_flight.max(1),
            window: VecDeque::with_capacity(max_in_flight.clamp(1, 65_536)),
            driven: FuturesUnordered::new(),
            finished: HashMap::new(),
            next_number: 0,
        }
    }
}

impl<'a> PublishPipeline<'a> {
    /// Sends `env` to `topic` (or the routed topic of its event type). When the pipeline was
    /// full, first waits for the oldest publish and returns its result. If this future is
    /// dropped before it finishes, `env` was not sent and no result was taken.
    pub async fn push(&mut self, env: &'a Envelope, topic: Option<&'a str>) -> Option<Result<Receipt>> {
        // The oldest's end and this publish's start share one clock reading.
        let mut now = Now::default();
        let oldest = match self.window.len() >= self.max_in_flight {
            true => std::future::poll_fn(|cx| self.poll_oldest(cx, &mut now)).await,
            false => None,
        };
        let publish = self.publisher.publish_envelope(env, topic).begin_at(&mut now);
        let entry = match publish.waits_in_place() {
            true => Entry::InPlace(publish),
            false => {
                let number = self.next_number;
                self.next_number += 1;
                self.driven.push(Numbered { number, publish });
                Entry::Driven(number)
            }
        };
        self.window.push_back(entry);
        // A driven publish starts on its first poll, as any future does: give it one now, and
        // the others a turn, so that a publish is on its way when `push` returns.
        std::future::poll_fn(|cx| {
            self.drive(cx);
            Poll::Ready(())
        })
        .await;
        oldest
    }

    /// The oldest publish's result, once it is done; `None` when nothing is in flight.
    pub async fn next(&mut self) -> Option<Result<Receipt>> {
        std::future::poll_fn(|cx| self.poll_oldest(cx, &mut Now::default())).await
    }

    /// Publishes sent whose results were not taken yet.
    pub fn len(&self) -> usize {
        self.window.len()
    }

    /// Nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// Polls the driven publishes, keeping the results of those that finish.
    fn drive(&mut self, cx: &mut Context<'_>) {
        // Over Kafka this is the usual case; an empty set would still take the waker.
        if self.driven.is_empty() {
            return;
        }
        while let Poll::Ready(Some((number, result))) = self.driven.poll_next_unpin(cx) {
            self.finished.insert(number, result);
        }
    }

    /// The oldest publish's result once it is done; a result taken reads the clock through `now`.
    fn poll_oldest(&mut self, cx: &mut Context<'_>, now: &mut Now) -> Poll<Option<Result<Receipt>>> {
        // Driven publishes move on whenever the caller waits, whichever one is the oldest.
        self.drive(cx);
        let result = match self.window.front_mut() {
            None => return Poll::Ready(None),
            Some(Entry::InPlace(publish)) => ready!(publish.poll_at(cx, now)),
            Some(Entry::Driven(number)) => match self.finished.remove(number) {
                Some(result) => result,
                None => return Poll::Pending,
            },
        };
        self.window.pop_front();
        Poll::Ready(Some(result))
    }
}

/// A driven publish and its number in the pipeline.
struct Numbered<'a> {
    number: u64,
    publish: PendingPublish<'a>,
}

impl Future for Numbered<'_> {
    type Output = (u64, Result<Receipt>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = ready!(Pin::new(&mut this.publish).poll(cx));
        Poll::Ready((this.number, result))
    }
}
