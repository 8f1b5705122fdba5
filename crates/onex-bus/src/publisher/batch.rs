//! [`BusPublisher::publish_envelopes`]: a batch of envelopes in one send.
//!
//! Each envelope of a batch is published as [`BusPublisher::publish_envelope`] would publish
//! it (validation, breaker, retries, metrics, a result of its own), but the batch goes to the
//! transport in one call: over Kafka every record is handed to librdkafka before any report
//! is awaited, and the caller is woken once for the batch instead of once per record.

use std::borrow::Cow;

use onex_core::resilience::BreakerPermit;
use onex_core::{Envelope, Error, Receipt, Result};
use tokio::time::Instant;

use super::pending::retry_failed;
use super::{closed_error, BusPublisher, InFlight, Inner};
use crate::TransportBus;

impl BusPublisher {
    /// Publishes a batch of envelopes the caller built, each to `topic` (or the routed topic
    /// of its event type): one result per envelope, in input order. Each envelope gets the
    /// validation, breaker, retries and metrics of [`Self::publish_envelope`] on its own, so
    /// one refused envelope fails alone; what goes out together is the send. Envelopes are
    /// handed to the transport in order, so envelopes with one partition key keep their order
    /// on one topic; a failed envelope is retried after the batch, in order with the other
    /// failed ones (as a retried single publish would land after later ones). A topic not yet
    /// created costs one lookup for the whole batch, not one per envelope.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use onex_bus::publisher::BusPublisher;
    /// use onex_core::Envelope;
    ///
    /// let publisher = BusPublisher::new(onex_bus::connect("memory://").await?)?;
    /// let envs = (0..3)
    ///     .map(|step| Ok(Envelope::new("orders.updated.v1", &serde_json::json!({ "step": step }))?.with_partition_key("order-7")))
    ///     .collect::<Result<Vec<_>, onex_core::Error>>()?;
    /// let results = publisher.publish_envelopes(&envs, None).await;
    /// let offsets = results.into_iter().map(|r| r.map(|receipt| receipt.offset)).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(offsets, [0, 1, 2]); // one key, one partition, in order
    /// assert_eq!(onex_core::EventPublisher::metrics(&publisher).events_published, 3);
    /// # Ok::<(), onex_core::Error>(()) }).unwrap();
    /// ```
    pub async fn publish_envelopes(&self, envs: &[Envelope], topic: Option<&str>) -> Vec<Result<Receipt>> {
        let inner = &*self.inner;
        let _guard = match InFlight::enter_many(inner, envs.len()) {
            Ok(guard) => guard,
            Err(_) => return envs.iter().map(|_| Err(closed_error())).collect(),
        };
        let started = Instant::now();
        let topics: Vec<Cow<'_, str>> = envs.iter().map(|env| inner.topic_for(topic, &env.event_type)).collect();
        let mut refused: Vec<Option<Error>> = envs.iter().map(|_| None).collect();
        let mut attempts_started = started;
        if let Some(validator) = &inner.validator {
            for ((env, topic), refused) in envs.iter().zip(&topics).zip(&mut refused) {
                if let Err(e) = validator.validate_payload(topic, &env.payload).await {
                    tracing::debug!(topic = %topic, event_type = %env.event_type, error = %e.report(), "payload refused before publishing");
                    *refused = Some(e);
                }
            }
            // Retries get their whole `max_elapsed` after validation, as a single publish's do.
            attempts_started = Instant::now();
        }
        let mut firsts: Vec<Option<Result<Receipt>>> = envs.iter().map(|_| None).collect();
        let unrefused: Vec<usize> = (0..envs.len()).filter(|&i| refused[i].is_none()).collect();
        send_batch(inner, envs, &topics, &unrefused, &mut firsts).await;
        // Every envelope sent in the batch took the batch's time.
        let elapsed = started.elapsed();
        let mut results = Vec::with_capacity(envs.len());
        let mut published = 0;
        for (((env, topic), refused), first) in envs.iter().zip(&topics).zip(refused).zip(firsts) {
            let result = match (refused, first) {
                (Some(e), _) => {
                    inner.counters.record(false, 0, elapsed);
                    Err(e)
                }
                (None, Some(Ok(receipt))) => {
                    published += 1;
                    Ok(receipt)
                }
                (None, first) => {
                    let failed = match first {
                        Some(Err(e)) => e,
                        _ => Error::protocol(format!("the backend returned no receipt for a publish to {topic:?}")),
                    };
                    retry_failed(inner, failed, env, topic, started, attempts_started).await
                }
            };
            results.push(result);
        }
        inner.counters.record_published(published, elapsed);
        results
    }
}

/// The first attempt of the envelopes at `indices`, each through the breaker, all in one
/// send (over a [`TransportBus`], which looks up a missing topic and sends to it again, as it
/// does for one envelope); each result goes to `firsts`.
async fn send_batch(inner: &Inner, envs: &[Envelope], topics: &[Cow<'_, str>], indices: &[usize], firsts: &mut [Option<Result<Receipt>>]) {
    let mut batch: Vec<(&str, &Envelope)> = Vec::with_capacity(indices.len());
    let mut sent: Vec<(usize, BreakerPermit)> = Vec::with_capacity(indices.len());
    for &i in indices {
        match inner.breaker.acquire() {
            Ok(permit) => {
                batch.push((&topics[i], &envs[i]));
                sent.push((i, permit));
            }
            Err(e) => firsts[i] = Some(Err(e)),
        }
    }
    if batch.is_empty() {
        return;
    }
    let results = match inner.bus.as_any().and_then(|bus| bus.downcast_ref::<TransportBus>()) {
        Some(bus) => bus.publish_envelopes(&batch).await,
        None => {
            let mut results = Vec::with_capacity(batch.len());
            for (topic, env) in &batch {
                results.push(inner.bus.publish_envelope(env, topic).await);
            }
            results
        }
    };
    for ((i, permit), result) in sent.into_iter().zip(results) {
        permit.record(&result);
        firsts[i] = Some(result);
    }
}
