//! Handling one record: decode, idempotency claim, handler with in-place retries, DLQ.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use onex_core::envelope::decode_record;
use onex_core::{ClaimOutcome, Delivery, Envelope, Error, Result};

use super::dlq::{write_dlq, Failure};
use super::SubscriptionContext;
use crate::transport::ConsumedRecord;

/// How handling a record ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Handled, skipped as a duplicate, or durably dead-lettered: the offset may be committed.
    Done,
    /// The consumer is stopping and the record was not finished: do not commit it.
    Interrupted,
}

/// Idempotency lease while a handler runs.
const CLAIM_LEASE: Duration = Duration::from_secs(60);

pub(crate) async fn handle_record(ctx: &SubscriptionContext, rec: &ConsumedRecord, stopping: &AtomicBool) -> Outcome {
    let envelope = match decode(rec) {
        Ok(env) => env,
        Err(e) => {
            ctx.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            let failure = Failure { error: e, attempts: 1, first_failure: Utc::now(), correlation_id: None, event_type: None };
            return write_dlq(ctx, rec, failure, stopping).await;
        }
    };
    let correlation_id = envelope.correlation_id;
    // Formatted only when an idempotency store needs it (an empty String does not allocate).
    let envelope_id = if ctx.sub.options.idempotent { envelope.envelope_id.to_string() } else { String::new() };

    if ctx.sub.options.validate_payloads {
        if let Some(validator) = &ctx.core.config.validator {
            let mut wait = Duration::from_millis(100);
            let verdict = loop {
                match validator.validate_payload(&rec.topic, &envelope.payload).await {
                    // The registry is unreachable: that says nothing about the record; wait.
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(topic = %rec.topic, error = %e.report(), "payload validation unavailable; retrying");
                        if !sleep_unless_stopped(wait, stopping).await {
                            return Outcome::Interrupted;
                        }
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    other => break other,
                }
            };
            if let Err(error) = verdict {
                ctx.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                let failure = Failure {
                    error,
                    attempts: 1,
                    first_failure: Utc::now(),
                    correlation_id: Some(correlation_id),
                    event_type: Some(envelope.event_type.clone()),
                };
                return write_dlq(ctx, rec, failure, stopping).await;
            }
        }
    }

    if ctx.sub.options.idempotent {
        match claim(ctx, &envelope_id, stopping).await {
            Some(ClaimOutcome::Claimed) => {}
            Some(ClaimOutcome::Duplicate) => {
                ctx.stats.duplicates_skipped.fetch_add(1, Ordering::Relaxed);
                return Outcome::Done;
            }
            _ => return Outcome::Interrupted,
        }
    }

    let policy = &ctx.sub.options.retry;
    let mut attempt: u32 = 1;
    // Read the clock only when something fails: the common path never needs it.
    let mut first_failure = None;
    let error = loop {
        // Every attempt shares the decoded envelope (handlers cannot change it); it is copied
        // only when its retry count changes, so the first attempt of a fresh record shares it.
        let mut env = envelope.clone();
        if env.retry_count != attempt - 1 {
            Arc::make_mut(&mut env).retry_count = attempt - 1;
        }
        let delivery = Delivery { envelope: env, topic: rec.topic.clone(), partition: rec.partition, offset: rec.offset, attempt };
        let result = call_handler(ctx, delivery).await;
        if result.is_err() {
            first_failure.get_or_insert_with(Utc::now);
        }
        match result {
            Ok(()) => {
                ctx.stats.handled.fetch_add(1, Ordering::Relaxed);
                if ctx.sub.options.idempotent {
                    complete(ctx, &envelope_id).await;
                }
                return Outcome::Done;
            }
            // `Shutdown` from a handler means "not now": leave the record for redelivery.
            Err(e) if stopping.load(Ordering::Relaxed) || e.kind() == onex_core::ErrorKind::Shutdown => {
                tracing::debug!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, error = %e.report(), "handler failed while stopping; left uncommitted for redelivery");
                release(ctx, &envelope_id).await;
                return Outcome::Interrupted;
            }
            Err(e) if e.is_retryable() && attempt <= policy.max_retries => {
                ctx.stats.retries.fetch_add(1, Ordering::Relaxed);
                let wait = e.retry_after().unwrap_or_else(|| policy.backoff(attempt));
                tracing::debug!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, attempt, ?wait, error = %e.report(), "retrying in place");
                if !sleep_unless_stopped(wait, stopping).await {
                    release(ctx, &envelope_id).await;
                    return Outcome::Interrupted;
                }
                attempt += 1;
            }
            Err(e) => break e,
        }
    };
    ctx.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, attempts = attempt, kind = %error.kind(), error = %error.report(), "sending record to the DLQ");
    let first_failure = first_failure.unwrap_or_else(Utc::now);
    let failure = Failure {
        error,
        attempts: attempt,
        first_failure,
        correlation_id: Some(correlation_id),
        event_type: Some(envelope.event_type.clone()),
    };
    let outcome = write_dlq(ctx, rec, failure, stopping).await;
    if ctx.sub.options.idempotent {
        // Dead-lettered: a replay must be able to claim it again.
        release(ctx, &envelope_id).await;
    }
    outcome
}

/// The record's envelope: the one published in this process (memory transport) or decoded
/// by the transport, shared; or decoded from the bytes.
fn decode(rec: &ConsumedRecord) -> Result<Arc<Envelope>> {
    match rec.record.envelope() {
        Some(env) => Ok(env.clone()),
        None => decode_record(&rec.record, &rec.topic).map(Arc::new),
    }
}

/// Starts the handler on `delivery` and returns what awaits it. Not an `async fn`: the
/// delivery goes straight into the handler's future instead of being moved through one more
/// future first (a ~400-byte copy per record). A handler that panics before returning its
/// future is caught here, one that panics while running is caught by `catch_unwind`.
fn call_handler(ctx: &SubscriptionContext, delivery: Delivery) -> impl std::future::Future<Output = Result<()>> + '_ {
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| ctx.sub.handler.handle(delivery)));
    let limit = ctx.sub.options.handler_timeout;
    async move {
        let fut = AssertUnwindSafe(started.map_err(panic_error)?).catch_unwind();
        let result = match limit {
            Some(limit) => match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => return Err(Error::timeout("handler did not finish in time", limit)),
            },
            None => fut.await,
        };
        result.unwrap_or_else(|panic| Err(panic_error(panic)))
    }
}

fn panic_error(panic: Box<dyn std::any::Any + Send>) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    Error::Panic { message }
}

/// Sleeps `wait` unless the consumer stops first; returns whether the wait completed.
pub(crate) async fn sleep_unless_stopped(wait: Duration, stopping: &AtomicBool) -> bool {
    let step = Duration::from_millis(50);
    let mut left = wait;
    while !left.is_zero() {
        if stopping.load(Ordering::Relaxed) {
            return false;
        }
        let d = left.min(step);
        tokio::time::sleep(d).await;
        left -= d;
    }
    !stopping.load(Ordering::Relaxed)
}

async fn claim(ctx: &SubscriptionContext, id: &str, stopping: &AtomicBool) -> Option<ClaimOutcome> {
    let store = ctx.idempotency.as_ref()?;
    let mut wait = Duration::from_millis(100);
    loop {
        match store.claim(&ctx.sub.group, id, CLAIM_LEASE).await {
            Ok(ClaimOutcome::InProgress) => {}
            Ok(outcome) => return Some(outcome),
            Err(e) => tracing::warn!(error = %e.report(), "idempotency claim failed; retrying"),
        }
        // Another member holds an unexpired lease (or the store is down): the partition waits.
        if !sleep_unless_stopped(wait, stopping).await {
            return None;
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

async fn complete(ctx: &SubscriptionContext, id: &str) {
    if let Some(store) = &ctx.idempotency {
        if let Err(e) = store.complete(&ctx.sub.group, id).await {
            tracing::warn!(error = %e.report(), "idempotency complete failed; a redelivery may run the handler again");
        }
    }
}

async fn release(ctx: &SubscriptionContext, id: &str) {
    if !ctx.sub.options.idempotent {
        return;
    }
    if let Some(store) = &ctx.idempotency {
        if let Err(e) = store.release(&ctx.sub.group, id).await {
            tracing::warn!(error = %e.report(), "idempotency release failed; the claim expires with its lease");
        }
    }
}
