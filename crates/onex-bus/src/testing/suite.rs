//! The conformance tests. Each takes a [`Harness`] and panics on a violation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use onex_core::dlq::DlqBytes;
use onex_core::envelope::ce_headers as h;
use onex_core::{
    handler_fn, Delivery, Envelope, Error, ErrorKind, EventBus, EventMessage, Headers, Subscription, SubscriptionOptions, TopicSpec,
};
use uuid::Uuid;

use super::{fast_retries, read_dlq, unique_topic, wait_until, Collector, Harness};
use crate::bus::{BusConfig, TransportBus};

fn full_envelope() -> Envelope {
    let parent = Envelope::new("conformance.parent.v1", &serde_json::json!({"p": 1})).unwrap();
    let mut env = Envelope::new("conformance.every_field.v1", &serde_json::json!({"order_id": 42, "items": ["a", "b"], "note": "héllo"}))
        .unwrap()
        .caused_by(&parent)
        .with_source("conformance-suite")
        .with_partition_key("order-42")
        .with_header("x-tenant", "acme");
    env.schema_version = Some("conformance.every_field.v1-value/3".into());
    env.content_type = "application/json; charset=utf-8".into();
    env.metadata.tags.insert("env".into(), "test".into());
    env.metadata.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    env.metadata.tracestate = Some("onex=1".into());
    env
}

/// Every envelope field arrives as sent (retry_count is the engine's: 0 on first delivery).
pub async fn envelope_round_trip(h: &impl Harness) {
    let bus = h.bus().await;
    let topic = unique_topic("conf-envelope");
    let c = Collector::new();
    c.subscribe(&bus, &topic, "g", SubscriptionOptions::default()).await;
    bus.start().await.unwrap();
    let env = full_envelope();
    let receipt = bus.publish_envelope(&env, &topic).await.unwrap();
    let got = c.wait_for(1).await;
    assert_eq!(*got[0].envelope, env);
    assert_eq!((got[0].partition, got[0].offset), (receipt.partition, receipt.offset));
    assert_eq!(got[0].attempt, 1);
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

/// 10,000 events on 4 partitions arrive in order per key, all of them.
pub async fn per_key_order(h: &impl Harness) {
    let bus = h.bus().await;
    let topic = unique_topic("conf-order");
    bus.admin().create_topic(TopicSpec::new(&topic, 4)).await.unwrap();
    let n = ((10_000.0 * h.features().scale) as usize).max(100);
    let keys = 50;
    let c = Collector::new();
    c.subscribe(&bus, &topic, "g", SubscriptionOptions::default()).await;
    bus.start().await.unwrap();
    let mut pending = futures::stream::FuturesOrdered::new();
    for i in 0..n {
        let env = Envelope::new("conformance.order.v1", &serde_json::json!({"key": i % keys, "seq": i / keys}))
            .unwrap()
            .with_partition_key(format!("k{}", i % keys));
        let bus = bus.clone();
        let topic = topic.clone();
        pending.push_back(async move { bus.publish_envelope(&env, &topic).await });
        if pending.len() >= 256 {
            use futures::StreamExt;
            pending.next().await.unwrap().unwrap();
        }
    }
    use futures::StreamExt;
    while let Some(r) = pending.next().await {
        r.unwrap();
    }
    // Publishes of one key were issued in order but ran concurrently; order is checked
    // against the partition offsets, which is what the bus guarantees.
    let got = c.wait_for(n).await;
    let mut next_seq: HashMap<String, u64> = HashMap::new();
    for d in &got {
        let key = d.envelope.partition_key.clone().unwrap();
        let seq = d.envelope.payload_json().unwrap()["seq"].as_u64().unwrap();
        let want = next_seq.entry(key.clone()).or_insert(0);
        assert_eq!(seq, *want, "key {key}: got seq {seq}, expected {want}");
        *want += 1;
    }
    let mut last: HashMap<String, (u32, u64)> = HashMap::new();
    let mut partitions_used = HashSet::new();
    for d in &got {
        let key = d.envelope.partition_key.clone().unwrap();
        partitions_used.insert(d.partition);
        if let Some((p, off)) = last.get(&key) {
            assert_eq!(*p, d.partition, "key {key} moved partitions");
            assert!(d.offset > *off, "key {key}: offset {} handled after {}", d.offset, off);
        }
        last.insert(key, (d.partition, d.offset));
    }
    assert_eq!(got.len(), n, "every event exactly once in steady state");
    assert!(partitions_used.len() > 1, "keys spread over partitions");
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

/// Two groups each get every record.
pub async fn groups_fan_out(h: &impl Harness) {
    let bus = h.bus().await;
    let topic = unique_topic("conf-fanout");
    let (a, b) = (Collector::new(), Collector::new());
    a.subscribe(&bus, &topic, "group-a", SubscriptionOptions::default()).await;
    b.subscribe(&bus, &topic, "group-b", SubscriptionOptions::default()).await;
    bus.start().await.unwrap();
    for i in 0..200 {
        bus.publish_envelope(&Envelope::new("conformance.fanout.v1", &i).unwrap(), &topic).await.unwrap();
    }
    let (ga, gb) = (a.wait_for(200).await, b.wait_for(200).await);
    let ids = |v: &[Delivery]| v.iter().map(|d| d.envelope.envelope_id).collect::<HashSet<_>>();
    assert_eq!(ids(&ga).len(), 200);
    assert_eq!(ids(&ga), ids(&gb));
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

/// Two members of one group (on two buses) split the partitions: together they see every
/// record once, each sees some.
pub async fn group_members_split_partitions(h: &impl Harness) {
    if !h.features().groups {
        eprintln!("skipped: backend has no consumer groups across buses");
        return;
    }
    let (bus1, bus2) = (h.bus().await, h.bus().await);
    let topic = unique_topic("conf-split");
    bus1.admin().create_topic(TopicSpec::new(&topic, 4)).await.unwrap();
    let (a, b) = (Collector::new(), Collector::new());
    a.subscribe(&bus1, &topic, "workers", SubscriptionOptions::default()).await;
    bus1.start().await.unwrap();
    b.subscribe(&bus2, &topic, "workers", SubscriptionOptions::default()).await;
    bus2.start().await.unwrap();
    tokio::time::sleep(h.features().settle).await;
    for i in 0..400 {
        let env = Envelope::new("conformance.split.v1", &i).unwrap().with_partition_key(format!("k{i}"));
        bus1.publish_envelope(&env, &topic).await.unwrap();
    }
    wait_until("400 deliveries across both members", || a.len() + b.len() >= 400).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all: Vec<Delivery> = a.deliveries().into_iter().chain(b.deliveries()).collect();
    let ids: HashSet<Uuid> = all.iter().map(|d| d.envelope.envelope_id).collect();
    assert_eq!(ids.len(), 400, "every record handled");
    assert_eq!(all.len(), 400, "no duplicates in steady state");
    assert!(!a.is_empty() && !b.is_empty(), "both members got partitions ({} / {})", a.len(), b.len());
    let pa: HashSet<u32> = a.deliveries().iter().map(|d| d.partition).collect();
    let pb: HashSet<u32> = b.deliveries().iter().map(|d| d.partition).collect();
    assert!(pa.is_disjoint(&pb), "members share partitions: {pa:?} / {pb:?}");
    bus1.stop_consuming(Duration::from_secs(10)).await.unwrap();
    bus2.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

/// A retryable failure is retried exactly `max_retries` times, then dead-lettered with the
/// documented fields and the exact original bytes.
pub async fn retryable_failure_retries_then_dlq(h: &impl Harness) {
    let bus = h.bus().await;
    let topic = unique_topic("conf-retry");
    let calls = Arc::new(AtomicU32::new(0));
    let attempts_seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (c2, a2) = (calls.clone(), attempts_seen.clone());
    let handler = handler_fn(move |d: Delivery| {
        let (calls, seen) = (c2.clone(), a2.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            seen.lock().push((d.attempt, d.envelope.retry_count));
            Err(Error::unavailable("payment gateway down (503)"))
        }
    });
    bus.subscribe(Subscription::new(&topic, "payments", handler).with_options(fast_retries(3))).await.unwrap();
    bus.start().await.unwrap();
    let env = Envelope::new("conformance.retry.v1", &serde_json::json!({"amount": 10}))
        .unwrap()
        .with_partition_key("acct-1")
        .with_header("x-keep", "me");
    let receipt = bus.publish_envelope(&env, &topic).await.unwrap();
    let dlq = read_dlq(&bus, &format!("{topic}.dlq"), 1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4, "1 attempt + 3 retries");
    assert_eq!(*attempts_seen.lock(), vec![(1, 0), (2, 1), (3, 2), (4, 3)]);
    let (dlq_delivery, rec) = &dlq[0];
    assert_eq!(rec.topic, topic);
    assert_eq!((rec.partition, rec.offset), (receipt.partition, receipt.offset));
    assert_eq!(rec.group, "payments");
    assert!(!rec.subscriber.is_empty());
    assert_eq!(rec.error_kind, ErrorKind::Unavailable);
    assert!(rec.reason.contains("payment gateway down"), "{}", rec.reason);
    assert_eq!(rec.attempts, 4);
    assert!(rec.last_failure_at >= rec.first_failure_at);
    assert_eq!(rec.correlation_id, Some(env.correlation_id));
    assert_eq!(rec.event_type.as_deref(), Some("conformance.retry.v1"));
    assert_eq!(rec.value.to_bytes().unwrap(), env.payload.to_vec());
    assert_eq!(rec.key, Some(DlqBytes::Utf8("acct-1".into())));
    assert!(rec.headers.iter().any(|(k, v)| k == "x-keep" && *v == DlqBytes::Utf8("me".into())));
    assert!(rec.headers.iter().any(|(k, _)| k == h::ID));
    assert_eq!(dlq_delivery.envelope.correlation_id, env.correlation_id, "DLQ envelope stays in the correlation chain");
    assert_eq!(dlq_delivery.envelope.causation_id, Some(env.envelope_id));
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

async fn failing_once(h: &impl Harness, error: fn() -> Error, kind: ErrorKind) {
    let bus = h.bus().await;
    let topic = unique_topic("conf-nonretry");
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = calls.clone();
    let handler = handler_fn(move |_d: Delivery| {
        let calls = c2.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(error())
        }
    });
    bus.subscribe(Subscription::new(&topic, "g", handler).with_options(fast_retries(3))).await.unwrap();
    bus.start().await.unwrap();
    bus.publish_envelope(&Envelope::new("conformance.reject.v1", &1).unwrap(), &topic).await.unwrap();
    let dlq = read_dlq(&bus, &format!("{topic}.dlq"), 1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no retries");
    assert_eq!(dlq[0].1.error_kind, kind);
    assert_eq!(dlq[0].1.attempts, 1);
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

/// A non-retryable failure goes to the DLQ with no retries.
pub async fn non_retryable_goes_straight_to_dlq(h: &impl Harness) {
    failing_once(h, || Error::rejected("order 7 has no items"), ErrorKind::Rejected).await;
}

/// A handler panic is dead-lettered and the partition keeps going, whether the handler panics
/// while it runs or before it returns its future.
pub async fn panic_goes_to_dlq_and_consumer_continues(h: &impl Harness) {
    let bus = h.bus().await;
    let topic = unique_topic("conf-panic");
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let handler = handler_fn(move |d: Delivery| {
        let seen = s2.clone();
        let v: serde_json::Value = d.envelope.payload_json().unwrap_or_default();
        if v["poison"] == "early" {
            panic!("poison pill {} before its future", v["n"]);
        }
        async move {
            if v["poison"] == true {
                panic!("poison pill {}", v["n"]);
            }
            seen.lock().push(v["n"].as_u64().unwrap());
            Ok(())
        }
    });
    bus.subscribe(Subscription::new(&topic, "g", handler).with_options(fast_retries(3))).await.unwrap();
    bus.start().await.unwrap();
    let events = [
        (1, serde_json::json!(false)),
        (2, serde_json::json!(true)),
        (3, serde_json::json!(false)),
        (4, serde_json::json!("early")),
        (5, serde_json::json!(false)),
    ];
    for (n, poison) in events {
        let env = Envelope::new("conformance.panic.v1", &serde_json::json!({"n": n, "poison": poison})).unwrap().with_partition_key("same");
        bus.publish_envelope(&env, &topic).await.unwrap();
    }
    let dlq = read_dlq(&bus, &format!("{topic}.dlq"), 2).await;
    assert!(dlq.iter().all(|(_, r)| r.error_kind == ErrorKind::Panic), "{dlq:?}");
    let mut reasons: Vec<&str> = dlq.iter().map(|(_, r)| r.reason.as_str()).collect();
    reasons.sort();
    assert!(reasons[0].contains("poison pill 2"), "{reasons:?}");
    assert!(reasons[1].contains("poison pill 4 before its future"), "{reasons:?}");
    wait_until("records around the poison handled", || seen.lock().len() >= 3).await;
    assert_eq!(*seen.lock(), vec![1, 3, 5]);
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

/// Bytes that do not decode go to the DLQ, exactly, and the consumer goes on.
pub async fn undecodable_bytes_go_to_dlq(h: &impl Harness) {
    let bus = h.bus().await;
    let topic = unique_topic("conf-undecodable");
    let c = Collector::new();
    c.subscribe(&bus, &topic, "g", fast_retries(3)).await;
    bus.start().await.unwrap();
    let garbage = Bytes::from_static(b"\xff\xfe\x00 not json {");
    bus.publish(EventMessage { topic: topic.clone(), key: Some(Bytes::from_static(b"k")), value: garbage.clone(), ..Default::default() })
        .await
        .unwrap();
    let good = Envelope::new("conformance.good.v1", &1).unwrap().with_partition_key("k");
    bus.publish_envelope(&good, &topic).await.unwrap();
    let dlq = read_dlq(&bus, &format!("{topic}.dlq"), 1).await;
    assert_eq!(dlq[0].1.error_kind, ErrorKind::Decode);
    assert!(matches!(dlq[0].1.value, DlqBytes::Base64(_)));
    assert_eq!(dlq[0].1.value.to_bytes().unwrap(), garbage.to_vec());
    let got = c.wait_for(1).await;
    assert_eq!(got[0].envelope.envelope_id, good.envelope_id);
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

/// Non-UTF-8 values and headers survive the DLQ byte for byte.
pub async fn binary_values_survive_dlq(h: &impl Harness) {
    let bus = h.bus().await;
    let topic = unique_topic("conf-binary");
    let handler = handler_fn(|_d: Delivery| async { Err(Error::rejected("cannot handle binary")) });
    bus.subscribe(Subscription::new(&topic, "g", handler).with_options(fast_retries(0))).await.unwrap();
    bus.start().await.unwrap();
    let mut env = Envelope::new("conformance.binary.v1", &0).unwrap();
    env.content_type = "application/octet-stream".into();
    env.payload = Bytes::from((0u8..=255).rev().collect::<Vec<u8>>());
    let mut rec = onex_core::envelope::encode_record(&env);
    rec.headers.push("x-bin", Bytes::from_static(&[0xc3, 0x28, 0x00, 0xff]));
    bus.publish(EventMessage {
        topic: topic.clone(),
        key: rec.key.clone(),
        value: rec.value.clone(),
        headers: rec.headers.clone(),
        partition: None,
    })
    .await
    .unwrap();
    let dlq = read_dlq(&bus, &format!("{topic}.dlq"), 1).await;
    let r = &dlq[0].1;
    assert_eq!(r.value.to_bytes().unwrap(), env.payload.to_vec());
    let bin = r.headers.iter().find(|(k, _)| k == "x-bin").unwrap();
    assert_eq!(bin.1.to_bytes().unwrap(), vec![0xc3, 0x28, 0x00, 0xff]);
    let original: Vec<(String, Vec<u8>)> = rec.headers.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
    let stored: Vec<(String, Vec<u8>)> = r.headers.iter().map(|(k, v)| (k.clone(), v.to_bytes().unwrap())).collect();
    assert_eq!(original, stored, "headers kept exactly, in order");
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

/// Structured-mode CloudEvents and plain JSON from other producers decode.
pub async fn structured_and_plain_records_decode(h: &impl Harness) {
    let bus = h.bus().await;
    let topic = unique_topic("conf-foreign");
    let c = Collector::new();
    c.subscribe(&bus, &topic, "g", SubscriptionOptions::default()).await;
    bus.start().await.unwrap();
    let id = Uuid::now_v7();
    let corr = Uuid::now_v7();
    let structured = serde_json::json!({
        "specversion": "1.0", "id": id.to_string(), "source": "legacy-app", "type": "legacy.thing.v1",
        "time": "2026-01-02T03:04:05.123Z", "datacontenttype": "application/json", "data": {"a": 1},
        "correlationid": corr.to_string()
    });
    let mut hs = Headers::new();
    hs.push(h::CONTENT_TYPE, Bytes::from_static(b"application/cloudevents+json"));
    bus.publish(EventMessage {
        topic: topic.clone(),
        key: None,
        value: Bytes::from(structured.to_string()),
        headers: hs,
        partition: Some(0),
    })
    .await
    .unwrap();
    let mut hs = Headers::new();
    hs.push(h::PLAIN_EVENT_TYPE, Bytes::from_static(b"plain.thing.v1"));
    bus.publish(EventMessage {
        topic: topic.clone(),
        key: None,
        value: Bytes::from_static(br#"{"b":2}"#),
        headers: hs,
        partition: Some(0),
    })
    .await
    .unwrap();
    bus.publish(EventMessage {
        topic: topic.clone(),
        key: None,
        value: Bytes::from_static(br#"[3]"#),
        headers: Headers::new(),
        partition: Some(0),
    })
    .await
    .unwrap();
    let got = c.wait_for(3).await;
    let by_type: BTreeMap<String, &Delivery> = got.iter().map(|d| (d.envelope.event_type.clone(), d)).collect();
    let s = &by_type["legacy.thing.v1"].envelope;
    assert_eq!((s.envelope_id, s.correlation_id, s.source.as_str()), (id, corr, "legacy-app"));
    assert_eq!(s.payload_json().unwrap(), serde_json::json!({"a": 1}));
    assert_eq!(s.timestamp.to_rfc3339(), "2026-01-02T03:04:05.123+00:00");
    assert_eq!(by_type["plain.thing.v1"].envelope.payload_json().unwrap(), serde_json::json!({"b": 2}));
    assert_eq!(by_type[topic.as_str()].envelope.payload_json().unwrap(), serde_json::json!([3]), "type falls back to the topic");
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

/// `stop_consuming` lets the handler in flight finish and commits its offset.
pub async fn stop_drains_in_flight_and_commits(h: &impl Harness) {
    let bus = h.bus().await;
    let topic = unique_topic("conf-drain");
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (s2, f2) = (started.clone(), finished.clone());
    let handler = handler_fn(move |_d: Delivery| {
        let (started, finished) = (s2.clone(), f2.clone());
        async move {
            started.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(700)).await;
            finished.store(true, Ordering::SeqCst);
            Ok(())
        }
    });
    bus.subscribe(Subscription::new(&topic, "drainers", handler)).await.unwrap();
    bus.start().await.unwrap();
    let receipt = bus.publish_envelope(&Envelope::new("conformance.drain.v1", &1).unwrap(), &topic).await.unwrap();
    wait_until("handler started", || started.load(Ordering::SeqCst)).await;
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
    assert!(finished.load(Ordering::SeqCst), "in-flight handler finished before stop returned");
    let committed = bus.transport().committed("drainers", &topic, receipt.partition).await.unwrap();
    assert_eq!(committed, Some(receipt.offset + 1));
}

/// A restarted consumer resumes after its committed offset: nothing lost, nothing that was
/// committed delivered again.
pub async fn restart_resumes_after_committed_offset(h: &impl Harness) {
    if !h.features().restart_resume {
        eprintln!("skipped: backend does not keep committed offsets across buses");
        return;
    }
    let topic = unique_topic("conf-restart");
    let bus1 = h.bus().await;
    let first = Collector::new();
    first.subscribe(&bus1, &topic, "resumers", SubscriptionOptions::default()).await;
    bus1.start().await.unwrap();
    for i in 0..100 {
        bus1.publish_envelope(&Envelope::new("conformance.restart.v1", &i).unwrap(), &topic).await.unwrap();
    }
    first.wait_for(100).await;
    bus1.stop_consuming(Duration::from_secs(10)).await.unwrap();
    drop(bus1);

    let bus2 = h.bus().await;
    for i in 100..150 {
        bus2.publish_envelope(&Envelope::new("conformance.restart.v1", &i).unwrap(), &topic).await.unwrap();
    }
    let second = Collector::new();
    second.subscribe(&bus2, &topic, "resumers", SubscriptionOptions::default()).await;
    bus2.start().await.unwrap();
    let got = second.wait_for(50).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seqs: Vec<i64> = second.deliveries().iter().map(|d| d.envelope.payload_as::<i64>().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (100..150).collect::<Vec<_>>(), "exactly the uncommitted events, got {} deliveries", got.len());
    bus2.stop_consuming(Duration::from_secs(10)).await.unwrap();
}

/// With auto-create off, publishing to a missing topic fails clearly and creates nothing.
pub async fn auto_create_can_be_turned_off(h: &impl Harness) {
    let base = h.bus().await;
    let strict = TransportBus::with_config(base.transport().clone(), BusConfig { auto_create_topics: false, ..BusConfig::default() });
    let topic = unique_topic("conf-missing");
    let err = strict.publish_envelope(&Envelope::new("conformance.missing.v1", &1).unwrap(), &topic).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("auto_create_topics"), "{err}");
    let listed = strict.admin().list_topics().await.unwrap();
    assert!(!listed.iter().any(|t| t.name == topic), "nothing created");
}

/// Invalid topic names are refused before anything is written.
pub async fn invalid_topic_names_are_rejected(h: &impl Harness) {
    let bus = h.bus().await;
    for bad in ["", "has space", "slash/topic", "ümlaut", &"x".repeat(250)] {
        let err = bus.publish_envelope(&Envelope::new("conformance.bad.v1", &1).unwrap(), bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad:?}: {err}");
        assert!(err.to_string().contains("invalid topic name"), "{err}");
        let sub = Subscription::new(bad, "g", handler_fn(|_d: Delivery| async { Ok(()) }));
        assert!(bus.subscribe(sub).await.is_err());
    }
}

/// A publisher's batch ([`crate::publisher::BusPublisher::publish_envelopes`]) lands in order
/// per key with each receipt where its envelope was delivered; in a batch to a topic not yet
/// created, the topic is created and an envelope over the size limit fails alone.
pub async fn publish_batches_keep_order_and_fail_alone(h: &impl Harness) {
    let bus = h.bus().await;
    let publisher = crate::publisher::BusPublisher::new(bus.clone()).unwrap();
    let topic = unique_topic("conf-batch");
    bus.admin().create_topic(TopicSpec::new(&topic, 4)).await.unwrap();
    let c = Collector::new();
    c.subscribe(&bus, &topic, "g", SubscriptionOptions::default()).await;
    bus.start().await.unwrap();
    let (n, keys) = (((2_000.0 * h.features().scale) as usize).max(100), 20);
    let envs: Vec<Envelope> = (0..n)
        .map(|i| {
            Envelope::new("conformance.batch.v1", &serde_json::json!({"key": i % keys, "seq": i / keys}))
                .unwrap()
                .with_partition_key(format!("k{}", i % keys))
        })
        .collect();
    let mut receipts = HashMap::new();
    for (chunk, envs) in envs.chunks(n / 2).enumerate() {
        for (i, r) in publisher.publish_envelopes(envs, Some(&topic)).await.into_iter().enumerate() {
            let r = r.unwrap_or_else(|e| panic!("envelope {i} of batch {chunk}: {e}"));
            receipts.insert((r.partition, r.offset), envs[i].envelope_id);
        }
    }
    let got = c.wait_for(n).await;
    let mut next_seq: HashMap<String, u64> = HashMap::new();
    for d in &got {
        assert_eq!(receipts.get(&(d.partition, d.offset)), Some(&d.envelope.envelope_id), "the receipt says where its envelope went");
        let key = d.envelope.partition_key.clone().unwrap();
        let seq = d.envelope.payload_json().unwrap()["seq"].as_u64().unwrap();
        let want = next_seq.entry(key.clone()).or_insert(0);
        assert_eq!(seq, *want, "key {key}: got seq {seq}, expected {want}");
        *want += 1;
    }
    assert_eq!(got.len(), n, "every event exactly once");
    bus.stop_consuming(Duration::from_secs(10)).await.unwrap();

    // A topic that does not exist yet, and an envelope over every backend's 1 MiB default.
    let fresh = unique_topic("conf-batch-new");
    let huge = Bytes::from(serde_json::to_vec(&"x".repeat(2 * 1024 * 1024)).unwrap());
    let batch = [
        Envelope::new("conformance.batch.v1", &1).unwrap().with_partition_key("a"),
        Envelope::from_json_bytes("conformance.batch.v1", huge).unwrap().with_partition_key("a"),
        Envelope::new("conformance.batch.v1", &2).unwrap().with_partition_key("a"),
    ];
    let results = publisher.publish_envelopes(&batch, Some(&fresh)).await;
    let err = results[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    let (first, last) = (results[0].as_ref().unwrap(), results[2].as_ref().unwrap());
    assert_eq!(first.partition, last.partition);
    assert!(first.offset < last.offset, "in order: {first:?} then {last:?}");
    let m = onex_core::EventPublisher::metrics(&publisher);
    assert_eq!((m.events_published, m.events_failed), (n as u64 + 2, 1));
}
