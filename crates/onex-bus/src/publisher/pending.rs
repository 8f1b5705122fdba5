//! A publish in flight, written out as a state machine.
//!
//! A pipelining caller keeps thousands of publishes in flight until the broker answers, and
//! each one's state is memory the CPU walks through again when its answer comes: padding a
//! raw rdkafka pipeline's futures by 512 bytes made it ~9 % slower (docs/benchmarks.md).
//! Nested `async fn`s keep every level's arguments and sub-futures (448 bytes for a Kafka
//! publish); written out, a first attempt waiting for its receipt holds only what it needs.
//! Everything rarer runs boxed: validation, a topic the router builds, a missing topic,
//! retries.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::future::BoxFuture;
use onex_core::resilience::BreakerPermit;
use onex_core::{Envelope, Error, Receipt, Result};
use tokio::time::Instant;

use super::{InFlight, Inner};
use crate::bus::is_missing_topic;
use crate::transport::PendingReceipt;
use crate::TransportBus;

/// A publish in flight: what [`super::BusPublisher::publish_envelope`] returns. Resolves
/// with the receipt, or with the error after the retries the policy allows.
#[must_use = "a publish does nothing unless awaited"]
pub struct PendingPublish<'a> {
    state: State<'a>,
}

enum State<'a> {
    /// Not polled yet: nothing has happened, as with any future.
    Start {
        inner: &'a Inner,
        env: &'a Envelope,
        topic: Option<&'a str>,
    },
    /// The first attempt, its receipt pending in place (a publish validated first makes its
    /// attempts in `Boxed`).
    First {
        guard: InFlight<'a>,
        started: Instant,
        attempt: Attempt<'a>,
    },
    /// Validation, retries, a refusal.
    Boxed(BoxFuture<'a, Result<Receipt>>),
    Done,
}

impl std::fmt::Debug for PendingPublish<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Start { .. } => "not polled",
            State::First { .. } => "first attempt",
            State::Boxed(_) => "boxed",
            State::Done => "done",
        };
        f.debug_struct("PendingPublish").field("state", &state).finish()
    }
}

impl<'a> PendingPublish<'a> {
    /// A publish of `env` to `topic` (or its event type's routed topic) that starts when
    /// first polled.
    pub(super) fn start(inner: &'a Inner, env: &'a Envelope, topic: Option<&'a str>) -> Self {
        Self { state: State::Start { inner, env, topic } }
    }

    /// Starts the publish at `now` rather than on its first poll: over Kafka the record is
    /// with librdkafka when this returns ([`super::PublishPipeline`] starts each publish it
    /// keeps this way, so a publish nobody polls yet is already sent).
    pub(super) fn begin_at(self, now: &mut Now) -> Self {
        match self.state {
            State::Start { inner, env, topic } => Self::begin(inner, env, topic, now.get()),
            state => Self { state },
        }
    }

    /// Waiting for a receipt that needs no poll to arrive (a Kafka delivery report): it can
    /// be left unpolled until its result is wanted.
    pub(super) fn waits_in_place(&self) -> bool {
        match &self.state {
            State::First { attempt, .. } => attempt.waits_in_place(),
            _ => false,
        }
    }

    /// What [`Self::start`] does on the first poll: counts the publish in flight (or refuses
    /// it, when the publisher is closed), starts its clock at `started` and routes it.
    fn begin(inner: &'a Inner, env: &'a Envelope, topic: Option<&'a str>, started: Instant) -> Self {
        let guard = match InFlight::enter(inner) {
            Ok(guard) => guard,
            Err(e) => return Self { state: State::Boxed(Box::pin(std::future::ready(Err(e)))) },
        };
        Self::new(guard, env, inner.topic_for(topic, &env.event_type), started)
    }

    /// [`Future::poll`], with the clock read (if one is needed) shared through `now`.
    pub(super) fn poll_at(&mut self, cx: &mut Context<'_>, now: &mut Now) -> Poll<Result<Receipt>> {
        loop {
            match &mut self.state {
                // Its start and its end are two moments: `now` is left for the end.
                State::Start { inner, env, topic } => *self = Self::begin(inner, env, *topic, Instant::now()),
                State::First { attempt, .. } => {
                    let result = ready!(Pin::new(attempt).poll(cx));
                    let State::First { guard, started, attempt } = std::mem::replace(&mut self.state, State::Done) else {
                        unreachable!("matched above")
                    };
                    match result {
                        Ok(receipt) => {
                            guard.0.counters.record(true, 0, now.get().saturating_duration_since(started));
                            return Poll::Ready(Ok(receipt));
                        }
                        Err(failed) => {
                            let (env, topic) = (attempt.env, attempt.topic);
                            self.state = State::Boxed(Box::pin(async move {
                                // Counted in flight until the retries are done.
                                let guard = guard;
                                retry_failed(guard.0, failed, env, topic, started, started).await
                            }));
                        }
                    }
                }
                State::Boxed(f) => return f.as_mut().poll(cx),
                State::Done => panic!("PendingPublish polled after it finished"),
            }
        }
    }

    /// Validates when the publisher has a validator, then sends: the first attempt in place,
    /// a failure through the retry executor. The publish's time runs from `started`.
    pub(super) fn new(guard: InFlight<'a>, env: &'a Envelope, topic: Cow<'a, str>, started: Instant) -> Self {
        let inner = guard.0;
        match (topic, &inner.validator) {
            (Cow::Borrowed(topic), None) => Self { state: State::First { attempt: Attempt::new(inner, env, topic), guard, started } },
            (topic, validator) => Self {
                state: State::Boxed(Box::pin(async move {
                    // Counted in flight until the retries are done.
                    let _guard = guard;
                    // Retries get their whole `max_elapsed` after validation, which may take a while.
                    let mut attempts_started = started;
                    if let Some(validator) = validator {
                        if let Err(e) = validator.validate_payload(&topic, &env.payload).await {
                            tracing::debug!(topic = %topic, event_type = %env.event_type, error = %e.report(), "payload refused before publishing");
                            inner.counters.record(false, 0, started.elapsed());
                            return Err(e);
                        }
                        attempts_started = Instant::now();
                    }
                    match Attempt::new(inner, env, &topic).await {
                        Ok(receipt) => {
                            inner.counters.record(true, 0, started.elapsed());
                            Ok(receipt)
                        }
                        Err(failed) => retry_failed(inner, failed, env, &topic, started, attempts_started).await,
                    }
                })),
            },
        }
    }
}

impl Future for PendingPublish<'_> {
    type Output = Result<Receipt>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Receipt>> {
        self.get_mut().poll_at(cx, &mut Now::default())
    }
}

/// One clock reading shared by what happens at one moment: a pipeline that takes its oldest
/// publish's result and starts the next publish reads the clock once for both, where each
/// would read it (~25–45 ns on this kind of VM) on its own.
#[derive(Debug, Default)]
pub(super) struct Now(Option<Instant>);

impl Now {
    /// The time, read on first use.
    pub(super) fn get(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// The retry executor, given the first attempt's failure: it decides whether and when to try
/// again exactly as if it had made that attempt itself. Records the publish in the metrics.
pub(super) async fn retry_failed<'a>(
    inner: &'a Inner,
    failed: Error,
    env: &'a Envelope,
    topic: &'a str,
    started: Instant,
    attempts_started: Instant,
) -> Result<Receipt> {
    let mut first = Some(failed);
    let outcome = inner
        .retry
        .run_since(
            attempts_started,
            |_| {
                let first = first.take();
                async move {
                    match first {
                        Some(e) => Err(e),
                        None => Attempt::new(inner, env, topic).await,
                    }
                }
            },
            |e, _| e.is_retryable(),
        )
        .await;
    if let Err(e) = &outcome.result {
        tracing::warn!(topic, event_type = %env.event_type, correlation_id = %env.correlation_id, attempts = outcome.stats.attempts, error = %e.report(), "publish failed");
    }
    let elapsed = outcome.stats.elapsed + (attempts_started - started);
    inner.counters.record(outcome.result.is_ok(), outcome.stats.retries, elapsed);
    outcome.result
}

/// One attempt through the breaker; its outcome is recorded by the breaker when it resolves.
/// Over a [`TransportBus`] the transport's pending receipt is held in place, not boxed by the
/// trait, and a missing topic is looked up (created when allowed) and sent to again, as
/// [`onex_core::EventBus::publish_envelope`] does. Any other bus gets the trait's call.
struct Attempt<'a> {
    /// `None` once recorded, and when the breaker refused.
    permit: Option<BreakerPermit>,
    /// The bus to ask again after a `NotFound`; taken when asked.
    missing_topic: Option<&'a TransportBus>,
    env: &'a Envelope,
    topic: &'a str,
    pending: PendingReceipt<'a>,
}

impl<'a> Attempt<'a> {
    fn new(inner: &'a Inner, env: &'a Envelope, topic: &'a str) -> Self {
        let permit = match inner.breaker.acquire() {
            Ok(permit) => permit,
            Err(e) => {
                let pending = PendingReceipt::failed(e);
                return Self { permit: None, missing_topic: None, env, topic, pending };
            }
        };
        let (missing_topic, pending) = match inner.bus.as_any().and_then(|bus| bus.downcast_ref::<TransportBus>()) {
            Some(bus) => (Some(bus), bus.try_envelope(env, topic)),
            None => (None, PendingReceipt::Boxed(inner.bus.publish_envelope(env, topic))),
        };
        Self { permit: Some(permit), missing_topic, env, topic, pending }
    }

    /// See [`PendingPublish::waits_in_place`]: a Kafka record librdkafka took, through the breaker.
    fn waits_in_place(&self) -> bool {
        #[cfg(feature = "kafka")]
        if self.permit.is_some() && matches!(self.pending, PendingReceipt::Kafka(_)) {
            return true;
        }
        false
    }
}

impl Future for Attempt<'_> {
    type Output = Result<Receipt>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Receipt>> {
        let this = self.get_mut();
        loop {
            let result = ready!(Pin::new(&mut this.pending).poll(cx));
            if is_missing_topic(&result) {
                if let Some(bus) = this.missing_topic.take() {
                    this.pending = PendingReceipt::Boxed(Box::pin(bus.resend_envelope(this.env, this.topic)));
                    continue;
                }
            }
            if let Some(permit) = this.permit.take() {
                permit.record(&result);
            }
            return Poll::Ready(result);
        }
    }
}
