//! `BusPublisher::pipeline`: single publishes kept in flight up to a limit, results handed
//! back in push order, a refused or failed publish in its own place, retries and metrics as
//! for any publish. The backend is the real memory transport wrapped to fail or stall on
//! demand; tests/kafka_pipeline.rs runs a pipeline against a broker.
//!
//! `cargo test -p onex-bus --all-features --test publisher_pipeline`

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use onex_bus::publisher::{BusPublisher, PublishPipeline};
use onex_bus::testing::unique_topic;
use onex_core::resilience::BreakerConfig;
use onex_core::{Envelope, Error, ErrorKind, EventPublisher, Receipt, Result};

mod publisher_support;

use publisher_support::{quick_retry, setup, RefuseBad};

/// `n` envelopes with one partition key, so that their order on the topic is their offsets'.
fn envelopes(n: usize) -> Vec<Envelope> {
    (0..n).map(|i| Envelope::new("pipeline.created.v1", &serde_json::json!({ "i": i })).unwrap().with_partition_key("k")).collect()
}

/// Pushes every envelope, then takes what is left: every result, in push order.
async fn run_all<'a>(pipeline: &mut PublishPipeline<'a>, envs: &'a [Envelope], topic: &'a str) -> Vec<Result<Receipt>> {
    let mut results = Vec::new();
    for env in envs {
        results.extend(pipeline.push(env, Some(topic)).await);
    }
    while let Some(r) = pipeline.next().await {
        results.push(r);
    }
    results
}

#[tokio::test]
async fn results_come_back_in_push_order_with_no_more_than_the_limit_in_flight() {
    let (t, bus) = setup();
    let publisher = BusPublisher::new(bus.clone()).unwrap();
    let topic = unique_topic("pipeline");
    bus.ensure_topic(&topic).await.unwrap();
    let envs = envelopes(3);
    t.gated.store(true, Ordering::SeqCst);

    let mut pipeline = publisher.pipeline(2);
    assert!(pipeline.push(&envs[0], Some(&topic)).await.is_none());
    assert!(pipeline.push(&envs[1], Some(&topic)).await.is_none());
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 2, "each publish is on its way when push returns");
    assert_eq!(pipeline.len(), 2);
    let state = format!("{pipeline:?}");
    assert!(state.contains("driven: 2"), "memory receipts are futures the pipeline polls: {state}");

    // Full, and the backend holds both: a third push waits for the oldest.
    let waited = tokio::time::timeout(Duration::from_millis(100), pipeline.push(&envs[2], Some(&topic))).await;
    assert!(waited.is_err(), "a full pipeline waits");
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 2, "a push given up on sent nothing");
    assert_eq!(pipeline.len(), 2, "and took no result");

    t.gate.add_permits(3);
    let oldest = pipeline.push(&envs[2], Some(&topic)).await.expect("the oldest result").unwrap();
    assert_eq!(oldest.offset, 0);
    assert_eq!(pipeline.next().await.unwrap().unwrap().offset, 1);
    assert_eq!(pipeline.next().await.unwrap().unwrap().offset, 2);
    assert!(pipeline.next().await.is_none());
    assert!(pipeline.is_empty());
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed), (3, 0));
}

#[tokio::test]
async fn a_refused_publish_fails_in_its_own_place() {
    let (_t, bus) = setup();
    let publisher = BusPublisher::builder(bus.clone()).validator(Arc::new(RefuseBad)).build().unwrap();
    let topic = unique_topic("pipeline-refused");
    bus.ensure_topic(&topic).await.unwrap();
    let mut envs = envelopes(5);
    envs[1] = Envelope::new("pipeline.created.v1", &"bad").unwrap().with_partition_key("k");
    // Over the memory transport's 1 MiB limit.
    let huge = Bytes::from(serde_json::to_vec(&"x".repeat(1_100_000)).unwrap());
    envs[3] = Envelope::from_json_bytes("pipeline.created.v1", huge).unwrap().with_partition_key("k");

    let results = run_all(&mut publisher.pipeline(2), &envs, &topic).await;
    let kinds: Vec<_> = results.iter().map(|r| r.as_ref().err().map(Error::kind)).collect();
    assert_eq!(kinds, [None, Some(ErrorKind::Rejected), None, Some(ErrorKind::TooLarge), None]);
    let offsets: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok().map(|r| r.offset)).collect();
    assert_eq!(offsets, [0, 1, 2], "the refused ones took no offset");
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_and_a_dead_backend_fails_each_publish() {
    let (t, bus) = setup();
    let breaker = BreakerConfig { failure_threshold: 100, ..Default::default() };
    let publisher = BusPublisher::builder(bus.clone()).retry(quick_retry(2)).breaker(breaker).build().unwrap();
    let topic = unique_topic("pipeline-retried");
    bus.ensure_topic(&topic).await.unwrap();
    let envs = envelopes(4);

    t.fail_next.store(1, Ordering::SeqCst);
    let results = run_all(&mut publisher.pipeline(3), &envs, &topic).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut offsets: Vec<_> = results.iter().map(|r| r.as_ref().unwrap().offset).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, [0, 1, 2, 3], "every publish landed once");
    assert_eq!(publisher.metrics().retries_attempted, 1);

    t.dead.store(true, Ordering::SeqCst);
    let results = run_all(&mut publisher.pipeline(3), &envs, &topic).await;
    assert_eq!(results.len(), 4);
    for r in &results {
        assert_eq!(r.as_ref().unwrap_err().kind(), ErrorKind::Unavailable);
    }
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed, m.retries_attempted), (4, 4, 9));
}

#[tokio::test]
async fn a_limit_of_zero_keeps_one_in_flight() {
    let (_t, bus) = setup();
    let publisher = BusPublisher::new(bus.clone()).unwrap();
    let topic = unique_topic("pipeline-one");
    bus.ensure_topic(&topic).await.unwrap();
    let envs = envelopes(3);
    let mut pipeline = publisher.pipeline(0);
    assert!(pipeline.push(&envs[0], Some(&topic)).await.is_none());
    assert_eq!(pipeline.push(&envs[1], Some(&topic)).await.unwrap().unwrap().offset, 0);
    assert_eq!(pipeline.len(), 1);
}
