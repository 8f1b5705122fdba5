//! The memory transport keeps published envelopes unencoded (`Transport::produce_envelope`):
//! consumers must still see exactly what the encode/decode trip of the other backends gives,
//! and anyone reading the bytes must see exactly `encode_record`'s output.

use std::sync::Arc;
use std::time::Duration;

use onex_bus::memory::{MemoryConfig, MemoryTransport};
use onex_bus::transport::{PollEvent, Transport};
use onex_bus::TransportBus;
use onex_core::envelope::{decode_record, encode_record};
use onex_core::{handler_fn, Envelope, ErrorKind, EventBus, StartFrom, Subscription};

fn envelope(n: u32) -> Envelope {
    let mut env = Envelope::new("orders.created.v1", &serde_json::json!({"n": n})).unwrap().with_source("shop").with_partition_key("k1");
    env.metadata.headers.insert("x-tenant".into(), "acme".into());
    env.metadata.tags.insert("region".into(), "eu".into());
    env
}

async fn handled(bus: &TransportBus, topic: &str, count: usize) -> Vec<Arc<Envelope>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    bus.subscribe(Subscription::new(
        topic,
        "g",
        handler_fn(move |d| {
            let tx = tx.clone();
            async move {
                tx.send(d.envelope).ok();
                Ok(())
            }
        }),
    ))
    .await
    .unwrap();
    bus.start().await.unwrap();
    let mut out = Vec::new();
    while out.len() < count {
        out.push(tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("delivered in time").expect("open"));
    }
    bus.stop_consuming(Duration::from_secs(5)).await.unwrap();
    out
}

#[tokio::test]
async fn consumers_get_what_decoding_the_encoded_record_gives() {
    let bus = TransportBus::new(Arc::new(MemoryTransport::default()));
    let plain = envelope(1);
    // A user header named like a codec header: decoding lets it override ce_type, so this
    // envelope must take the encoded path and arrive as the other backends deliver it.
    let mut clashing = envelope(2);
    clashing.metadata.headers.insert("ce_type".into(), "spoofed.v1".into());
    for env in [&plain, &clashing] {
        bus.publish_envelope(env, "orders").await.unwrap();
    }
    let got = handled(&bus, "orders", 2).await;
    for (env, got) in [&plain, &clashing].into_iter().zip(&got) {
        assert_eq!(**got, decode_record(&encode_record(env), "orders").unwrap());
    }
    assert_eq!(*got[0], plain);
    assert_eq!(got[1].event_type, "spoofed.v1");
}

#[tokio::test]
async fn the_bytes_of_an_envelope_kept_unencoded_are_exactly_the_encoded_record() {
    let transport = Arc::new(MemoryTransport::default());
    let bus = TransportBus::new(transport.clone());
    let env = envelope(3);
    bus.publish_envelope(&env, "orders").await.unwrap();
    let mut consumer = transport.consumer("reader", "orders", StartFrom::Earliest).await.unwrap();
    let records = loop {
        match consumer.poll(10, Duration::from_secs(5)).await.unwrap() {
            PollEvent::Records(r) => break r,
            PollEvent::Idle => panic!("nothing to read"),
            _ => {}
        }
    };
    let expected = encode_record(&env);
    assert_eq!(**records[0].record, expected);
    assert_eq!(records[0].record.byte_len(), expected.byte_len());
}

#[tokio::test]
async fn an_oversize_envelope_is_refused_before_it_is_stored() {
    let transport = Arc::new(MemoryTransport::new(MemoryConfig { max_message_bytes: 600, ..Default::default() }));
    let bus = TransportBus::new(transport.clone());
    let small = envelope(4);
    let big = Envelope::new("orders.created.v1", &"x".repeat(700)).unwrap();
    assert!(encode_record(&small).byte_len() <= 600 && encode_record(&big).byte_len() > 600);
    bus.publish_envelope(&small, "orders").await.unwrap();
    let err = bus.publish_envelope(&big, "orders").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    let info = transport.admin().describe_topic("orders").await.unwrap();
    assert_eq!(info.partitions.iter().map(|p| p.high_watermark).sum::<u64>(), 1, "only the small one is stored");
}

#[test]
fn a_body_keeps_only_envelopes_that_decode_to_themselves() {
    use onex_bus::transport::RecordBody;
    let plain = envelope(5);
    assert_eq!(RecordBody::from_envelope(Arc::new(plain.clone())).envelope().map(|e| &**e), Some(&plain));
    let mut clashing = envelope(6);
    clashing.metadata.headers.insert("ce_id".into(), "not-a-uuid".into());
    let body = RecordBody::from_envelope(Arc::new(clashing.clone()));
    assert!(body.envelope().is_none(), "encoded at once");
    assert_eq!(*body, encode_record(&clashing));
}

/// A body shares its envelope with every consumer and still gives the exact bytes to anyone
/// who asks (a DLQ record, a tool).
#[test]
fn a_body_shares_its_envelope_and_keeps_its_bytes() {
    use onex_bus::transport::RecordBody;
    let env = Arc::new(envelope(7));
    let body = RecordBody::from_envelope(env.clone());
    assert!(Arc::ptr_eq(body.envelope().unwrap(), &env), "the published envelope itself, not a copy");
    assert_eq!(*body, encode_record(&env), "encoded on demand");
    assert!(Arc::ptr_eq(body.envelope().unwrap(), &env));

    let bytes = encode_record(&env);
    let stored = RecordBody::stored(Some((*env).clone()), move || bytes.clone());
    assert_eq!(stored.envelope().map(|e| &**e), Some(&*env));
    assert_eq!(*stored, encode_record(&env), "rebuilt from the stored bytes");
}

/// `publish_envelope_owned` stores the envelope itself: two groups' handlers get that one
/// envelope, and a retried record gets its own copy with the retry count (the shared one is
/// never changed).
#[tokio::test]
async fn an_owned_publish_is_shared_by_groups_and_copied_only_for_a_retry() {
    use parking_lot::Mutex;
    let bus = TransportBus::new(Arc::new(MemoryTransport::default()));
    type Seen = Vec<(String, u32, Arc<Envelope>)>; // (group, attempt, envelope)
    let seen: Arc<Mutex<Seen>> = Arc::default();
    for group in ["a", "b"] {
        let seen = seen.clone();
        let handler = handler_fn(move |d| {
            let seen = seen.clone();
            async move {
                seen.lock().push((group.to_string(), d.attempt, d.envelope.clone()));
                if group == "b" && d.attempt == 1 {
                    return Err(onex_core::Error::unavailable("try again"));
                }
                Ok(())
            }
        });
        let mut options = onex_core::SubscriptionOptions::default();
        options.retry.initial_backoff = Duration::from_millis(1);
        bus.subscribe(Subscription::new("shared", group, handler).with_options(options)).await.unwrap();
    }
    let env = envelope(8);
    let id = env.envelope_id;
    // A copy would have its own string buffers: the address tells whether it was copied.
    let event_type_at = env.event_type.as_ptr() as usize;
    bus.publish_envelope_owned(env, "shared").await.unwrap();
    bus.start().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bus.stop_consuming(Duration::from_secs(5)).await.unwrap();
    let seen = seen.lock();
    let get = |g: &str, attempt: u32| seen.iter().find(|(sg, a, _)| sg == g && *a == attempt).map(|(_, _, e)| e.clone()).unwrap();
    let (a1, b1, b2) = (get("a", 1), get("b", 1), get("b", 2));
    assert!(Arc::ptr_eq(&a1, &b1), "both groups' first attempts share the stored envelope");
    assert_eq!(a1.event_type.as_ptr() as usize, event_type_at, "the stored envelope is the published one, not a copy");
    assert_eq!((a1.retry_count, b2.retry_count), (0, 1));
    assert!(!Arc::ptr_eq(&b1, &b2), "the retry has its own copy");
    assert_eq!(b2.envelope_id, id);
}

#[tokio::test]
async fn a_bad_record_fails_its_call_and_stores_nothing_of_it() {
    use onex_bus::transport::ProduceRecord;
    let record = |env: Envelope| ProduceRecord::new(encode_record(&env));
    let transport = MemoryTransport::new(MemoryConfig { max_message_bytes: 600, ..Default::default() });
    transport.admin().create_topic(onex_core::TopicSpec::new("orders", 2)).await.unwrap();
    let mut wrong_partition = record(envelope(1));
    wrong_partition.partition = Some(2);
    let err = transport.produce_one("orders", wrong_partition.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.to_string().contains("partition 2 does not exist in topic \"orders\" (2 partitions)"), "{err}");
    // In a batch, one bad record refuses the whole call.
    let big = Envelope::new("orders.created.v1", &"x".repeat(700)).unwrap();
    for batch in [vec![record(envelope(2)), wrong_partition], vec![record(envelope(3)), record(big.clone())]] {
        assert!(transport.produce("orders", batch).await.is_err());
    }
    let err = transport.produce_one("missing", record(envelope(4))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // The envelope path refuses the same way.
    let err = transport.produce_envelope("missing", &envelope(4)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = transport.produce_envelope("orders", &big).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    let info = transport.admin().describe_topic("orders").await.unwrap();
    assert_eq!(info.partitions.iter().map(|p| p.high_watermark).sum::<u64>(), 0, "nothing stored");
    let receipt = transport.produce_one("orders", record(envelope(5))).await.unwrap();
    assert_eq!((receipt.topic.as_str(), receipt.offset), ("orders", 0));
}

#[tokio::test]
async fn an_envelope_lands_where_its_partition_key_hashes_like_on_the_other_backends() {
    let transport = MemoryTransport::default();
    transport.admin().create_topic(onex_core::TopicSpec::new("orders", 8)).await.unwrap();
    for key in ["k1", "order-42", "ünï", ""] {
        let env = Envelope::new("orders.created.v1", &1).unwrap().with_partition_key(key);
        let receipt = transport.produce_envelope("orders", &env).await.unwrap();
        assert_eq!(receipt.partition, onex_bus::partitioner::partition_for_key(key.as_bytes(), 8), "{key:?}");
    }
    // No key: spread round robin over the partitions.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        seen.insert(transport.produce_envelope("orders", &Envelope::new("orders.created.v1", &1).unwrap()).await.unwrap().partition);
    }
    assert_eq!(seen.len(), 8);
}

/// A topic deleted behind the bus's back is created again. An envelope publish, which the bus
/// can send twice, recreates it and succeeds; a record publish hands its record to the
/// transport, so the one that finds the topic missing fails and the next one recreates it.
#[tokio::test]
async fn a_topic_deleted_behind_the_bus_is_created_again() {
    let transport = Arc::new(MemoryTransport::default());
    let bus = TransportBus::new(transport.clone());
    let message = |topic: &str| onex_core::EventMessage {
        topic: topic.to_string(),
        key: None,
        value: bytes::Bytes::from_static(b"{}"),
        headers: Default::default(),
        partition: None,
    };
    bus.publish_envelope(&envelope(1), "gone").await.unwrap();
    bus.publish(message("gone-too")).await.unwrap();
    for topic in ["gone", "gone-too"] {
        transport.admin().delete_topic(topic).await.unwrap();
    }

    let receipt = bus.publish_envelope(&envelope(2), "gone").await.expect("recreated by the publish that found it missing");
    assert_eq!(receipt.offset, 0, "written to the new topic");
    assert_eq!(transport.admin().describe_topic("gone").await.unwrap().partition_count, 4, "created with the default partitions");
    let e = bus.publish(message("gone-too")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    bus.publish(message("gone-too")).await.expect("recreated on the next publish");
    assert!(transport.admin().describe_topic("gone").await.is_ok());
}
