//! BusPublisher: routing and envelope fields, retries then success, the breaker opening on a
//! dead backend and failing fast (then closing), the validation hook, close flushing and
//! refusing, metrics matching what happened. The backend is the real memory transport
//! wrapped to fail or stall on demand.
//!
//! `cargo test -p onex-bus --all-features --test publisher_behaviour`

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onex_bus::publisher::{BusPublisher, TopicRouter};
use onex_bus::testing::{unique_topic, Collector};
use onex_bus::transport::Transport;
use onex_bus::{BusConfig, TransportBus};
use onex_core::resilience::{BreakerConfig, RetryPolicy};
use onex_core::{
    Envelope, Error, ErrorKind, EventBus, EventPublisher, EventPublisherExt, PayloadValidator, PublishOptions, Result, SubscriptionOptions,
};
use uuid::Uuid;

mod publisher_support;

use publisher_support::{payload, quick_retry, setup, ThroughTheTrait};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_carries_every_envelope_field() {
    let (_t, bus) = setup();
    let publisher = BusPublisher::builder(bus.clone())
        .source("orders-service")
        .router(TopicRouter::new().with_prefix("test.").unwrap().with_route("orders.mapped.v1", "orders-mapped").unwrap())
        .build()
        .unwrap();
    let explicit = unique_topic("explicit");
    let c = Collector::new();
    c.subscribe(&bus, &explicit, "g", SubscriptionOptions::default()).await;
    bus.start().await.unwrap();

    let correlation = Uuid::now_v7();
    let cause = Uuid::now_v7();
    let mut opts = PublishOptions {
        correlation_id: Some(correlation),
        causation_id: Some(cause),
        topic: Some(explicit.clone()),
        partition_key: Some("cust-9".into()),
        source: Some("checkout".into()),
        ..Default::default()
    };
    opts.metadata.headers.insert("x-tenant".into(), "acme".into());
    opts.metadata.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    let receipt = publisher.publish("orders.created.v1", payload(1), opts).await.unwrap();
    assert_eq!(receipt.topic, explicit, "explicit topic wins over the router");
    let env = &c.wait_for(1).await[0].envelope;
    assert_eq!(env.event_type, "orders.created.v1");
    assert_eq!((env.correlation_id, env.causation_id), (correlation, Some(cause)));
    assert_eq!(env.partition_key.as_deref(), Some("cust-9"));
    assert_eq!(env.source, "checkout");
    assert_eq!(env.metadata.headers.get("x-tenant").map(String::as_str), Some("acme"));
    assert!(env.metadata.traceparent.is_some());
    assert_eq!(&env.payload[..], br#"{"i":1}"#);

    let r = publisher.publish_json("orders.mapped.v1", &serde_json::json!({}), PublishOptions::default()).await.unwrap();
    assert_eq!(r.topic, "orders-mapped", "mapped route");
    let r = publisher.publish("orders.other.v1", payload(2), PublishOptions::default()).await.unwrap();
    assert_eq!(r.topic, "test.orders.other.v1", "prefix route");

    // Correlation generated when absent, default source used.
    let auto = unique_topic("auto");
    let c2 = Collector::new();
    c2.subscribe(&bus, &auto, "g", SubscriptionOptions::default()).await;
    publisher.publish("a.v1", payload(3), PublishOptions { topic: Some(auto.clone()), ..Default::default() }).await.unwrap();
    publisher.publish("a.v1", payload(4), PublishOptions { topic: Some(auto), ..Default::default() }).await.unwrap();
    let got = c2.wait_for(2).await;
    assert!(!got[0].envelope.correlation_id.is_nil());
    assert_ne!(got[0].envelope.correlation_id, got[1].envelope.correlation_id, "a fresh correlation id per publish");
    assert_eq!(got[0].envelope.source, "orders-service");
    assert_eq!(publisher.metrics().events_published, 5);
    bus.stop_consuming(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retries_then_succeeds_and_counts_retries() {
    let (t, bus) = setup();
    let topic = unique_topic("retry");
    bus.ensure_topic(&topic).await.unwrap(); // so that every produce call below is an attempt
    let publisher = BusPublisher::builder(bus).retry(quick_retry(3)).build().unwrap();
    t.fail_next.store(2, Ordering::SeqCst);
    let receipt = publisher.publish("x.v1", payload(1), PublishOptions { topic: Some(topic.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(receipt.topic, topic);
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 3, "two failures, then the success");
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed, m.retries_attempted), (1, 0, 2));
    assert_eq!((m.circuit_breaker_opens, m.current_failures, m.circuit_breaker_status.as_str()), (0, 0, "closed"));
    assert!(m.total_publish_time_ms >= 30.0, "10 + 20 ms of backoff on the paused clock: {}", m.total_publish_time_ms);

    // Out of retries: the last error comes back and is counted.
    t.fail_next.store(10, Ordering::SeqCst);
    let err = publisher.publish("x.v1", payload(2), PublishOptions { topic: Some(topic), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed, m.retries_attempted), (1, 1, 5));
    assert!((m.avg_publish_time_ms - m.total_publish_time_ms / 2.0).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_on_a_dead_backend_fails_fast_then_closes() {
    let (t, bus) = setup();
    let breaker = BreakerConfig { failure_threshold: 3, reset_timeout: Duration::from_secs(30), ..Default::default() };
    let publisher = BusPublisher::builder(bus).retry(RetryPolicy::none()).breaker(breaker).breaker_name("orders-bus").build().unwrap();
    let topic = unique_topic("dead");
    let opts = || PublishOptions { topic: Some(topic.clone()), ..Default::default() };
    publisher.publish("x.v1", payload(0), opts()).await.unwrap(); // creates the topic
    t.dead.store(true, Ordering::SeqCst);
    let calls_before = t.produce_calls.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(publisher.publish("x.v1", payload(1), opts()).await.unwrap_err().kind(), ErrorKind::Unavailable);
    }
    let m = publisher.metrics();
    assert_eq!((m.circuit_breaker_opens, m.circuit_breaker_status.as_str(), m.current_failures), (1, "open", 3));
    for _ in 0..5 {
        let err = publisher.publish("x.v1", payload(2), opts()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
        assert!(err.to_string().contains("orders-bus"), "{err}");
    }
    assert_eq!(t.produce_calls.load(Ordering::SeqCst) - calls_before, 3, "an open breaker sends nothing");
    assert_eq!(publisher.metrics().events_failed, 8);

    // The backend recovers; after the reset timeout one probe goes through and closes it.
    t.dead.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(31)).await;
    publisher.publish("x.v1", payload(3), opts()).await.unwrap();
    let m = publisher.metrics();
    assert_eq!((m.circuit_breaker_opens, m.circuit_breaker_closes, m.circuit_breaker_status.as_str()), (1, 1, "closed"));
    assert_eq!((m.events_published, m.events_failed), (2, 8));
}

#[derive(Debug)]
struct RefuseTopic(String);

#[async_trait]
impl PayloadValidator for RefuseTopic {
    async fn validate_payload(&self, topic: &str, payload: &[u8]) -> Result<()> {
        if topic == self.0 && !payload.starts_with(b"{\"ok\"") {
            return Err(Error::schema(
                Some(format!("{topic}-value")),
                vec![onex_core::Violation { instance_path: "".into(), keyword: "required".into(), message: "\"ok\" is required".into() }],
            ));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_hook_refuses_before_anything_is_sent() {
    let (t, bus) = setup();
    let topic = unique_topic("validated");
    let publisher = BusPublisher::builder(bus).validator(Arc::new(RefuseTopic(topic.clone()))).build().unwrap();
    let opts = || PublishOptions { topic: Some(topic.clone()), ..Default::default() };
    let err = publisher.publish("x.v1", payload(1), opts()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema);
    assert!(err.to_string().contains("\"ok\" is required"), "{err}");
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 0, "nothing sent");
    publisher.publish_json("x.v1", &serde_json::json!({"ok": true}), opts()).await.unwrap();
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed, m.retries_attempted, m.circuit_breaker_opens), (1, 1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly() {
    let (t, bus) = setup();
    let publisher = BusPublisher::new(bus.clone()).unwrap();
    let err = publisher.publish("Orders Created", payload(1), PublishOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("Orders Created"), "{err}");
    let err =
        publisher.publish("ok.v1", payload(1), PublishOptions { topic: Some("bad/topic".into()), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("bad/topic"), "{err}");
    // The transport was asked and did not know the topic; nothing was created or written.
    let topics = t.inner.admin().list_topics().await.unwrap();
    assert!(topics.is_empty(), "{topics:?}");
    assert_eq!(publisher.metrics().events_failed, 2);
    let err = BusPublisher::builder(bus.clone()).source("").build().unwrap_err();
    assert!(err.to_string().contains("source is empty"), "{err}");
    let err = BusPublisher::builder(bus.clone()).retry(RetryPolicy { multiplier: 0.5, ..Default::default() }).build().unwrap_err();
    assert!(err.to_string().contains("multiplier"), "{err}");
    let err = BusPublisher::builder(bus).breaker(BreakerConfig { failure_threshold: 0, ..Default::default() }).build().unwrap_err();
    assert!(err.to_string().contains("failure_threshold"), "{err}");
    assert!(TopicRouter::new().with_prefix("bad prefix").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_in_flight_publishes_then_refuses() {
    let (t, bus) = setup();
    let publisher = BusPublisher::new(bus.clone()).unwrap();
    let topic = unique_topic("close");
    bus.ensure_topic(&topic).await.unwrap();
    t.gated.store(true, Ordering::SeqCst);
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (p, topic) = (publisher.clone(), topic.clone());
            tokio::spawn(async move { p.publish("x.v1", payload(i), PublishOptions { topic: Some(topic), ..Default::default() }).await })
        })
        .collect();
    while t.produce_calls.load(Ordering::SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Held in flight: a short close times out and says so.
    let err = publisher.close(Duration::from_millis(100)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.to_string().contains("4 publishes still in flight"), "{err}");
    let err = publisher.publish("x.v1", payload(9), PublishOptions { topic: Some(topic.clone()), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Shutdown, "closed: new publishes are refused");

    // Let them finish: close returns once all four were acknowledged.
    let closing = {
        let p = publisher.clone();
        tokio::spawn(async move { p.close(Duration::from_secs(30)).await })
    };
    t.gate.add_permits(4);
    closing.await.unwrap().unwrap();
    for task in tasks {
        task.await.unwrap().expect("in-flight publish completed");
    }
    let retained: u64 = bus.admin().describe_topic(&topic).await.unwrap().retained();
    assert_eq!(retained, 4, "every in-flight publish landed");
    assert_eq!(publisher.metrics().events_published, 4);
    assert_eq!(publisher.metrics().events_failed, 1, "the refused one");
    publisher.close(Duration::from_millis(10)).await.expect("closing twice is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_envelope_goes_through_the_same_path() {
    let (t, bus) = setup();
    let publisher = BusPublisher::builder(bus).retry(quick_retry(2)).build().unwrap();
    t.fail_next.store(1, Ordering::SeqCst);
    let env = Envelope::new("env.created.v1", &serde_json::json!({"a": 1})).unwrap();
    let r = publisher.publish_envelope(&env, None).await.unwrap();
    assert_eq!(r.topic, "env.created.v1");
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.retries_attempted), (1, 1));
}

#[tokio::test]
async fn a_publish_does_nothing_until_polled() {
    // Like any future: made and not yet awaited, it sends nothing and holds nothing, so
    // `close` does not wait for it; awaited after `close`, it is refused.
    let (t, bus) = setup();
    let publisher = BusPublisher::new(bus).unwrap();
    let env = Envelope::new("lazy.created.v1", &1).unwrap();
    let publish = publisher.publish_envelope(&env, None);
    publisher.close(Duration::from_millis(100)).await.expect("nothing in flight");
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 0);
    let err = publish.await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Shutdown, "{err}");
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 0);
    assert_eq!(publisher.metrics().events_failed, 1);
}

#[tokio::test]
async fn a_topic_missing_at_first_is_created_and_sent_to_in_the_same_attempt() {
    let (t, bus) = setup();
    let publisher = BusPublisher::builder(bus.clone()).retry(quick_retry(2)).build().unwrap();
    let topic = unique_topic("missing");
    let env = Envelope::new("missing.created.v1", &1).unwrap();
    let r = publisher.publish_envelope(&env, Some(&topic)).await.unwrap();
    assert_eq!(r.topic, topic);
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), 2, "the transport's NotFound, then the send once the topic was created");
    assert_eq!(bus.admin().describe_topic(&topic).await.unwrap().retained(), 1);
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed, m.retries_attempted), (1, 0, 0), "a created topic is not a retry");
    assert_eq!(publisher.breaker().counters().consecutive_failures, 0, "nor a failure");

    // Auto-creation off: the missing topic is the publish's error, explained, and not retried.
    let strict = Arc::new(TransportBus::with_config(t.clone(), BusConfig { auto_create_topics: false, ..BusConfig::default() }));
    let publisher = BusPublisher::builder(strict).retry(quick_retry(2)).build().unwrap();
    let calls = t.produce_calls.load(Ordering::SeqCst);
    let err = publisher.publish_envelope(&env, Some(&unique_topic("never"))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("auto_create_topics"), "{err}");
    assert_eq!(t.produce_calls.load(Ordering::SeqCst), calls + 1, "asked once, then looked up; nothing sent again");
    let m = publisher.metrics();
    assert_eq!((m.events_published, m.events_failed, m.retries_attempted), (0, 1, 0));
}

#[tokio::test]
async fn a_publish_in_flight_holds_no_retry_or_topic_lookup_state() {
    // A pipelining caller keeps thousands of these futures until the broker answers. The
    // retry executor, a failed attempt's error and the topic lookup of a missing topic belong
    // in boxes of their own, made only when needed: inline, they made the bus's future 288
    // bytes, and the publisher's 408 when it still held the bus's future in a box. Written
    // out as nested `async fn`s around the bus's future held in place, the publisher's was
    // 448 bytes; as `PendingPublish`, which holds the transport's pending receipt itself,
    // it is 136. The bounds leave room for compiler changes, not for the slow paths.
    let (_t, bus) = setup();
    let publisher = BusPublisher::new(bus.clone()).unwrap();
    let env = Envelope::new("size.v1", &1).unwrap();
    let size = std::mem::size_of_val(&publisher.publish_envelope(&env, Some("sized")));
    assert!(size <= 160, "a publisher's publish future is {size} bytes");
    let fut = bus.publish_envelope(&env, "sized");
    let size = std::mem::size_of_val(&*fut);
    assert!(size <= 240, "a bus's publish future is {size} bytes");
}

#[tokio::test]
async fn a_bus_known_only_through_the_trait_gets_every_publish_through_it() {
    // Over a `TransportBus` the publisher skips the trait's boxed call; any other bus must
    // still see every attempt, retries included.
    let (t, inner) = setup();
    let bus = Arc::new(ThroughTheTrait::new(inner.clone()));
    let publisher = BusPublisher::builder(bus.clone()).retry(quick_retry(2)).build().unwrap();
    t.fail_next.store(1, Ordering::SeqCst);
    let env = Envelope::new("trait.created.v1", &1).unwrap();
    let r = publisher.publish_envelope(&env, None).await.unwrap();
    assert_eq!(bus.envelopes.load(Ordering::SeqCst), 2, "the failed attempt and the retry");
    assert_eq!(inner.admin().describe_topic(&r.topic).await.unwrap().retained(), 1);
    assert_eq!(publisher.metrics().events_published, 1);
}
