//! `BusPublisher::publish_envelopes`: one send for the batch, a result per envelope in
//! order, a refused envelope failing alone, failures retried each, a missing topic created
//! once, the breaker and `close` applying to every envelope, a bus known only through the
//! trait, and a backend short of receipts. The backend is the real memory transport wrapped
//! to fail on demand.
//!
//! `cargo test -p onex-bus --all-features --test publisher_batches`

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use onex_bus::publisher::BusPublisher;
use onex_bus::testing::unique_topic;
use onex_bus::{BusConfig, TransportBus};
use onex_core::resilience::{BreakerConfig, RetryPolicy};
use onex_core::{Envelope, ErrorKind, EventBus, EventPublisher, Result};

mod publisher_support;

use publisher_support::{quick_retry, setup, RefuseBad, ThroughTheTrait};

/// `n` envelopes with one partition key, so that their order on the topic is their offsets'.
fn batch(n: usize) -> Vec<Envelope> {
    (0..n).map(|i| Envelope::new("batch.created.v1", &serde_json::json!({ "i": i })).unwrap().with_partition_key("k")).collect()
}

fn offsets(results: Vec<Result<onex_core::Receipt>>) -> Vec<u64> {
    results.into_iter().map(|r| r.expect("published").offset).collect()
}

#[tokio::test]
async fn a_batch_is_one_send_with_a_result_per_envelope_in_order() {
    let (t, bus) = setup();
    let publisher = BusPublisher::new(bus.clone()).unwrap();
    let topic = unique_topic("batch");
    bus.ensure_topic(&topic).await.unwrap();
    let results = publisher.publish_envelopes(&batch(5), Some(&topic)).await;
    assert_eq!(offsets(results), [0, 1, 2, 3, 4]);
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 1, "one send for the batch");
    let results = publisher.publish_envelopes(&batch(3), Some(&topic)).await;
    assert_eq!(offsets(results), [5, 6, 7]);
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 2);
    assert!(publisher.publish_envelopes(&[], Some(&topic)).await.is_empty());
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 2, "an empty batch sends nothing");
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed, m.retries_attempted), (8, 0, 0));

    // Routed by event type when no topic is named, as a single publish is.
    let env = Envelope::new("batch.routed.v1", &1).unwrap();
    let results = publisher.publish_envelopes(std::slice::from_ref(&env), None).await;
    assert_eq!(results[0].as_ref().unwrap().topic, "batch.routed.v1");
}

#[tokio::test]
async fn a_refused_envelope_fails_alone() {
    let (t, bus) = setup();
    let publisher = BusPublisher::builder(bus.clone()).validator(Arc::new(RefuseBad)).retry(quick_retry(2)).build().unwrap();
    let topic = unique_topic("refused");
    bus.ensure_topic(&topic).await.unwrap();
    let mut envs = batch(4);
    envs[1] = Envelope::new("batch.created.v1", &"bad").unwrap().with_partition_key("k");
    // Over the memory transport's 1 MiB limit.
    let huge = Bytes::from(serde_json::to_vec(&"x".repeat(1_100_000)).unwrap());
    envs[2] = Envelope::from_json_bytes("batch.created.v1", huge).unwrap().with_partition_key("k");
    let results = publisher.publish_envelopes(&envs, Some(&topic)).await;
    assert_eq!(results[1].as_ref().unwrap_err().kind(), ErrorKind::Rejected);
    let err = results[2].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert_eq!(results[0].as_ref().unwrap().offset, 0);
    assert_eq!(results[3].as_ref().unwrap().offset, 1, "the refused ones took no offset");
    assert_eq!(bus.admin().describe_topic(&topic).await.unwrap().retained(), 2);
    assert!(t.produce_calls.load(Ordering::SeqCst) >= 1);
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed, m.retries_attempted), (2, 2, 0), "too large is not retried");
}

#[tokio::test(start_paused = true)]
async fn failed_envelopes_are_retried_each_and_counted() {
    let (t, bus) = setup();
    // A breaker that stays closed: this is about retries.
    let breaker = BreakerConfig { failure_threshold: 100, ..Default::default() };
    let publisher = BusPublisher::builder(bus.clone()).retry(quick_retry(2)).breaker(breaker).build().unwrap();
    let topic = unique_topic("retried");
    bus.ensure_topic(&topic).await.unwrap();

    // The batch's send fails and each envelope goes again on its own.
    t.fail_next.store(1, Ordering::SeqCst);
    let results = publisher.publish_envelopes(&batch(3), Some(&topic)).await;
    assert_eq!(offsets(results), [0, 1, 2]);

    // The backend is down: every envelope is retried by the policy, then fails with its error.
    t.dead.store(true, Ordering::SeqCst);
    let results = publisher.publish_envelopes(&batch(3), Some(&topic)).await;
    for r in &results {
        assert_eq!(r.as_ref().unwrap_err().kind(), ErrorKind::Unavailable);
    }
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed, m.retries_attempted), (3, 3, 6));
    assert_eq!(bus.admin().describe_topic(&topic).await.unwrap().retained(), 3, "nothing of the failed batch landed");
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_fails_the_batch_fast() {
    let (t, bus) = setup();
    let breaker = BreakerConfig { failure_threshold: 2, reset_timeout: Duration::from_secs(30), ..Default::default() };
    let publisher = BusPublisher::builder(bus.clone()).retry(RetryPolicy::none()).breaker(breaker).build().unwrap();
    let topic = unique_topic("breaker");
    bus.ensure_topic(&topic).await.unwrap();
    t.dead.store(true, Ordering::SeqCst);
    let results = publisher.publish_envelopes(&batch(2), Some(&topic)).await;
    assert!(results.iter().all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::Unavailable));
    assert_eq!(publisher.metrics().circuit_breaker_status, "open", "each envelope counted in the breaker");
    let calls = t.produce_calls.load(Ordering::SeqCst);
    let results = publisher.publish_envelopes(&batch(3), Some(&topic)).await;
    assert!(results.iter().all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::CircuitOpen));
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), calls, "an open breaker sends nothing");
    assert_eq!(publisher.metrics().events_failed, 5);
}

#[tokio::test]
async fn a_closed_publisher_refuses_every_envelope() {
    let (t, bus) = setup();
    let publisher = BusPublisher::new(bus).unwrap();
    publisher.close(Duration::from_millis(100)).await.unwrap();
    let results = publisher.publish_envelopes(&batch(3), Some("closed")).await;
    assert_eq!(results.len(), 3);
    for r in results {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Shutdown);
        assert!(err.to_string().contains("closed"), "{err}");
    }
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 0);
    assert_eq!(publisher.metrics().events_failed, 3);
}

#[tokio::test]
async fn a_missing_topic_is_created_once_for_the_batch() {
    let (t, bus) = setup();
    let publisher = BusPublisher::builder(bus.clone()).retry(quick_retry(2)).build().unwrap();
    let topic = unique_topic("created");
    let results = publisher.publish_envelopes(&batch(6), Some(&topic)).await;
    assert_eq!(offsets(results), [0, 1, 2, 3, 4, 5]);
    assert_eq!(bus.admin().describe_topic(&topic).await.unwrap().retained(), 6);
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed, m.retries_attempted), (6, 0, 0), "a created topic is not a retry");
    assert_eq!(publisher.breaker().counters().consecutive_failures, 0, "nor a failure");
    // The batch (NotFound), each envelope again (the memory default's per-envelope results),
    // then, the topic created once, all six in one send.
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 1 + 6 + 1);

    // Auto-creation off: each envelope gets the missing topic as its error, explained.
    let strict = Arc::new(TransportBus::with_config(t.clone(), BusConfig { auto_create_topics: false, ..BusConfig::default() }));
    let publisher = BusPublisher::builder(strict).retry(quick_retry(2)).build().unwrap();
    let results = publisher.publish_envelopes(&batch(2), Some(&unique_topic("never"))).await;
    for r in results {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains("auto_create_topics"), "{err}");
    }
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed, m.retries_attempted), (0, 2, 0));
}

#[tokio::test]
async fn a_bus_known_only_through_the_trait_gets_each_envelope_in_order() {
    let (_t, inner) = setup();
    let topic = unique_topic("trait");
    inner.ensure_topic(&topic).await.unwrap();
    let bus = Arc::new(ThroughTheTrait::new(inner.clone()));
    let publisher = BusPublisher::new(bus.clone()).unwrap();
    let results = publisher.publish_envelopes(&batch(4), Some(&topic)).await;
    assert_eq!(offsets(results), [0, 1, 2, 3]);
    assert_eq!(bus.envelopes.load(Ordering::SeqCst), 4);
    assert_eq!(inner.admin().describe_topic(&topic).await.unwrap().retained(), 4);
}

#[tokio::test]
async fn a_backend_short_of_receipts_is_an_error_not_a_resend() {
    // Its records were written: sending them again would duplicate them.
    let (t, bus) = setup();
    let publisher = BusPublisher::builder(bus.clone()).retry(quick_retry(2)).build().unwrap();
    let topic = unique_topic("short");
    bus.ensure_topic(&topic).await.unwrap();
    t.short_receipts.store(true, Ordering::SeqCst);
    let results = publisher.publish_envelopes(&batch(3), Some(&topic)).await;
    for r in results {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(err.to_string().contains("3 records") && err.to_string().contains("2 receipts"), "{err}");
    }
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 1, "not sent again");
    assert_eq!(bus.admin().describe_topic(&topic).await.unwrap().retained(), 3, "written once");
    assert_eq!(publisher.metrics().events_failed, 3);
}
