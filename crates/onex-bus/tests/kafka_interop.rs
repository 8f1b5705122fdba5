//! Interop with clients that are not ours, admin, health and the partitioner, against a real
//! broker (tansu in CI).
#![cfg(feature = "kafka")]

mod kafka_support;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use kafka_support::{new_topic, require_broker, transport};
use onex_bus::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use onex_bus::kafka::rdkafka::message::{Header, Headers as _, OwnedHeaders};
use onex_bus::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use onex_bus::kafka::rdkafka::{ClientConfig, Message};
use onex_bus::partitioner::partition_for_key;
use onex_bus::testing::{unique_topic, Collector};
use onex_bus::transport::Transport;
use onex_bus::TransportBus;
use onex_core::envelope::ce_headers as h;
use onex_core::{Envelope, ErrorKind, EventBus, SubscriptionOptions, TopicSpec};
use uuid::Uuid;

fn plain_producer(brokers: &str) -> FutureProducer {
    ClientConfig::new().set("bootstrap.servers", brokers).create().expect("plain producer")
}

/// A record from a plain rdkafka producer with `ce_` headers, and one with plain JSON and no
/// headers at all, are consumed with every field right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_binary_mode_and_plain_json_records_are_consumed() {
    let Some(brokers) = require_broker() else { return };
    let t = transport("").await;
    let topic = new_topic(&t, "kafka-interop-in", 1).await;
    let (id, corr, cause) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let producer = plain_producer(&brokers);
    let headers = OwnedHeaders::new()
        .insert(Header { key: "ce_specversion", value: Some("1.0") })
        .insert(Header { key: "ce_id", value: Some(id.to_string().as_str()) })
        .insert(Header { key: "ce_source", value: Some("java-billing") })
        .insert(Header { key: "ce_type", value: Some("billing.invoice_paid.v2") })
        .insert(Header { key: "ce_time", value: Some("2026-03-04T05:06:07.890Z") })
        .insert(Header { key: "content-type", value: Some("application/json") })
        .insert(Header { key: "ce_correlationid", value: Some(corr.to_string().as_str()) })
        .insert(Header { key: "ce_causationid", value: Some(cause.to_string().as_str()) })
        .insert(Header { key: "ce_partitionkey", value: Some("invoice-9") })
        .insert(Header { key: "traceparent", value: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") })
        .insert(Header { key: "x-tenant", value: Some("acme") });
    producer
        .send(FutureRecord::to(&topic).key("invoice-9").payload(r#"{"invoice":9,"paid":true}"#).headers(headers), Duration::from_secs(10))
        .await
        .expect("plain produce (binary mode)");
    producer
        .send(FutureRecord::<str, str>::to(&topic).payload(r#"{"legacy":true}"#), Duration::from_secs(10))
        .await
        .expect("plain produce (plain JSON)");

    let bus = TransportBus::new(t.clone());
    let c = Collector::new();
    c.subscribe(&bus, &topic, "interop", SubscriptionOptions::default()).await;
    bus.start().await.unwrap();
    let got = c.wait_for(2).await;
    let env = &got[0].envelope;
    assert_eq!(env.envelope_id, id);
    assert_eq!(env.event_type, "billing.invoice_paid.v2");
    assert_eq!(env.source, "java-billing");
    assert_eq!(env.timestamp.to_rfc3339(), "2026-03-04T05:06:07.890+00:00");
    assert_eq!(env.content_type, "application/json");
    assert_eq!(env.correlation_id, corr);
    assert_eq!(env.causation_id, Some(cause));
    assert_eq!(env.partition_key.as_deref(), Some("invoice-9"));
    assert_eq!(env.metadata.traceparent.as_deref(), Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_eq!(env.metadata.headers.get("x-tenant").map(String::as_str), Some("acme"));
    assert_eq!(env.payload_json().unwrap(), serde_json::json!({"invoice": 9, "paid": true}));
    assert_eq!((got[0].partition, got[0].offset, got[0].attempt), (0, 0, 1));
    let plain = &got[1].envelope;
    assert_eq!(plain.event_type, topic, "no ce_ headers and no event_type header: the type is the topic");
    assert_eq!(plain.payload_json().unwrap(), serde_json::json!({"legacy": true}));
    assert_eq!(got[1].offset, 1);
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

/// What we produce carries exactly the documented headers (DESIGN §2.1), read by a plain
/// rdkafka consumer; key = partition key, value = payload bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn our_records_carry_exactly_the_documented_headers() {
    let Some(brokers) = require_broker() else { return };
    let t = transport("").await;
    let topic = unique_topic("kafka-interop-out");
    let bus = TransportBus::new(t.clone());
    let parent = Envelope::new("orders.placed.v1", &1).unwrap();
    let mut env = Envelope::new("orders.order_created.v1", &serde_json::json!({"id": 7}))
        .unwrap()
        .caused_by(&parent)
        .with_source("orders-service")
        .with_partition_key("order-7")
        .with_header("x-tenant", "acme");
    env.metadata.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    env.metadata.tracestate = Some("onex=1".into());
    let receipt = bus.publish_envelope(&env, &topic).await.unwrap();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique_topic("plain-reader"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let msg = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            assert!(std::time::Instant::now() < deadline, "plain consumer got nothing in 60 s");
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                break m.expect("plain consume").detach();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!((msg.partition() as u32, msg.offset() as u64), (receipt.partition, receipt.offset));
    assert_eq!(msg.key(), Some(&b"order-7"[..]));
    assert_eq!(msg.payload(), Some(&env.payload[..]));
    let hs = msg.headers().expect("headers");
    let got: Vec<(String, String)> =
        hs.iter().map(|h| (h.key.to_string(), String::from_utf8(h.value.unwrap().to_vec()).unwrap())).collect();
    let time = env.timestamp.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let want: Vec<(&str, String)> = vec![
        (h::SPECVERSION, "1.0".into()),
        (h::ID, env.envelope_id.to_string()),
        (h::SOURCE, "orders-service".into()),
        (h::TYPE, "orders.order_created.v1".into()),
        (h::TIME, time),
        (h::CONTENT_TYPE, "application/json".into()),
        (h::CORRELATION_ID, parent.correlation_id.to_string()),
        (h::CAUSATION_ID, parent.envelope_id.to_string()),
        (h::PARTITION_KEY, "order-7".into()),
        (h::TRACEPARENT, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        (h::TRACESTATE, "onex=1".into()),
        ("x-tenant", "acme".into()),
    ];
    let want: Vec<(String, String)> = want.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(got, want, "exactly the documented headers, in order");
}

/// A key lands on the partition our murmur2 partitioner computes (the one memory and
/// sqlite use), so moving a service between backends keeps per-key placement.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_land_on_the_murmur2_partition() {
    if require_broker().is_none() {
        return;
    }
    let t = transport("").await;
    let topic = new_topic(&t, "kafka-murmur2", 6).await;
    let bus = TransportBus::new(t.clone());
    let mut used = HashSet::new();
    for i in 0..60 {
        let key = format!("customer-{i}");
        let env = Envelope::new("crm.touched.v1", &i).unwrap().with_partition_key(key.clone());
        let r = bus.publish_envelope(&env, &topic).await.unwrap();
        assert_eq!(r.partition, partition_for_key(key.as_bytes(), 6), "key {key}");
        used.insert(r.partition);
    }
    assert!(used.len() > 3, "keys spread: {used:?}");
}

/// Create with partitions and config, duplicate create (exists=true), list, describe with
/// watermarks, delete, and NotFound after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topic_admin_round_trip() {
    if require_broker().is_none() {
        return;
    }
    let t = transport("").await;
    let admin = t.admin();
    let topic = unique_topic("kafka-admin");
    admin.create_topic(TopicSpec::new(&topic, 3)).await.unwrap();
    let dup = admin.create_topic(TopicSpec::new(&topic, 3)).await.unwrap_err();
    assert_eq!(dup.context().and_then(|c| c.get("exists")).map(String::as_str), Some("true"), "{dup}");
    assert!(dup.to_string().contains("already exists"), "{dup}");
    assert!(admin.list_topics().await.unwrap().iter().any(|i| i.name == topic && i.partition_count == 3));
    let bus = TransportBus::new(t.clone());
    for i in 0..5 {
        bus.publish(onex_core::EventMessage {
            topic: topic.clone(),
            key: None,
            value: Bytes::from(format!("{i}")),
            partition: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let info = admin.describe_topic(&topic).await.unwrap();
    assert_eq!(info.partition_count, 3);
    assert_eq!(info.partitions.iter().map(|p| p.high_watermark).collect::<Vec<_>>(), vec![0, 5, 0]);
    assert_eq!(info.retained(), 5);
    admin.delete_topic(&topic).await.unwrap();
    let gone = admin.describe_topic(&topic).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone}");
    assert_eq!(admin.delete_topic(&topic).await.unwrap_err().kind(), ErrorKind::NotFound);
}

/// Health: metadata round trip, profile and producer settings (no secrets), lag per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_shows_profile_settings_and_lag_without_secrets() {
    let Some(brokers) = require_broker() else { return };
    let raw =
        format!("redpanda://{brokers}?session.timeout.ms=6000&heartbeat.interval.ms=500&sasl.password=hunter2-secret&sasl.username=svc");
    let t = onex_bus::kafka::KafkaTransport::from_url_str(&raw).await.unwrap();
    assert_eq!(t.backend(), "redpanda");
    let topic = new_topic(&t, "kafka-health", 2).await;
    let bus = TransportBus::new(t.clone());
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let g2 = gate.clone();
    // The handler holds every record until released, so lag is visible.
    bus.subscribe(onex_core::Subscription::new(
        &topic,
        "lagging",
        onex_core::handler_fn(move |_d| {
            let g = g2.clone();
            async move {
                g.acquire().await.unwrap().forget();
                Ok(())
            }
        }),
    ))
    .await
    .unwrap();
    bus.start().await.unwrap();
    for i in 0..10 {
        bus.publish_envelope(&Envelope::new("health.tick.v1", &i).unwrap().with_partition_key(format!("k{i}")), &topic).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let health = loop {
        let hs = bus.health_check().await.unwrap();
        let parts = hs.details["consumers"][0]["partitions"].as_array().cloned().unwrap_or_default();
        if parts.len() == 2 {
            break hs;
        }
        assert!(std::time::Instant::now() < deadline, "no assignment in health: {}", hs.details);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(health.healthy && health.latency_ms >= 0.0);
    let d = &health.details;
    assert_eq!(d["profile"], "redpanda");
    assert_eq!(d["producer"]["compression.type"], "lz4");
    assert_eq!(d["producer"]["enable.idempotence"], "true");
    assert_eq!(d["producer"]["acks"], "all");
    assert_eq!(d["producer"]["sasl.password"], "***");
    let lag: u64 = d["consumers"][0]["partitions"].as_array().unwrap().iter().map(|p| p["lag"].as_u64().unwrap()).sum();
    assert_eq!(lag, 10, "nothing handled yet: {d}");
    let shown = format!("{d} {t:?} {:?}", t.config());
    assert!(!shown.contains("hunter2"), "secret leaked: {shown}");
    gate.add_permits(10);
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
}
