//! Bad input against the kafka transport: each case fails with a clear error that names
//! what failed and what to do. Also the producer's limits: a full local queue, and what a
//! publish in flight holds.
#![cfg(feature = "kafka")]

mod kafka_support;

use bytes::Bytes;
use kafka_support::{new_topic, require_broker, transport, url};
use onex_bus::kafka::KafkaTransport;
use onex_bus::testing::unique_topic;
use onex_bus::transport::{PendingReceipt, ProduceRecord, Transport};
use onex_bus::TransportBus;
use onex_core::{Envelope, ErrorKind, EventBus, EventMessage, Record, TopicSpec};

#[tokio::test]
async fn unknown_host_is_a_connection_error_naming_it() {
    let err = KafkaTransport::from_url_str("kafka://no-such-host.invalid:9092?connect_timeout_ms=5000").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let text = err.to_string();
    assert!(text.contains("no-such-host.invalid:9092") && text.contains("check the host and port"), "{text}");
}

#[tokio::test]
async fn wrong_port_is_a_connection_error() {
    let err = onex_bus::connect("kafka://127.0.0.1:1?connect_timeout_ms=5000").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(text.to_lowercase().contains("refused") || text.contains("within"), "says why: {text}");
}

#[tokio::test]
async fn unknown_client_setting_is_a_config_error_naming_it() {
    let err = onex_bus::connect("kafka://127.0.0.1:9092?linger.msec=5").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("unknown Kafka client setting \"linger.msec\""), "{err}");
    let err = onex_bus::connect("kafka://127.0.0.1:9092?compression.type=gzipp").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("compression.type"), "{err}");
}

#[tokio::test]
async fn a_bad_password_value_never_shows_in_the_error() {
    // sasl.mechanisms must be a known mechanism: the error names the setting, not secrets.
    let err =
        onex_bus::connect("kafka://u:hunter2@127.0.0.1:9092?security.protocol=sasl_plaintext&sasl.mechanisms=NOPE").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(!err.report().contains("hunter2"), "{}", err.report());
    assert!(err.to_string().contains("SASL mechanism"), "says what is wrong: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_with_auto_create_off_is_not_found() {
    if require_broker().is_none() {
        return;
    }
    let bus = onex_bus::connect(&url("auto_create_topics=false")).await.unwrap();
    let topic = unique_topic("kafka-missing");
    let err = bus.publish_envelope(&Envelope::new("x.y.v1", &1).unwrap(), &topic).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&topic) && err.to_string().contains("auto_create_topics"), "{err}");
    // The transport alone says the same, without the bus's hint.
    let err = bus.transport().produce(&topic, vec![ProduceRecord::new(Record::default())]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(!bus.admin().list_topics().await.unwrap().iter().any(|t| t.name == topic), "nothing created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_over_the_max_size_is_too_large_and_nothing_is_written() {
    if require_broker().is_none() {
        return;
    }
    let t = transport("").await;
    let topic = new_topic(&t, "kafka-too-large", 1).await;
    let bus = TransportBus::new(t.clone());
    let small = ProduceRecord::new(Record { value: Bytes::from_static(b"ok"), ..Default::default() });
    let big = ProduceRecord::new(Record { value: Bytes::from(vec![7u8; 2 * 1024 * 1024]), ..Default::default() });
    let err = bus.publish_batch(&topic, vec![small, big]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(err.to_string().contains("max_message_bytes") && err.to_string().contains(&topic), "{err}");
    assert_eq!(t.admin().describe_topic(&topic).await.unwrap().retained(), 0, "nothing of the batch was written");
    let err = bus
        .publish(EventMessage { topic: topic.clone(), value: Bytes::from(vec![1u8; 1024 * 1024 + 1]), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "one byte over 1 MiB: {err}");
    // An envelope is measured as encoded (payload + headers), before anything is sent.
    let env = onex_core::Envelope::from_json_bytes("x.y.v1", Bytes::from(format!("\"{}\"", "x".repeat(1024 * 1024 - 100)))).unwrap();
    let err = bus.publish_envelope(&env, &topic).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "payload under 1 MiB, headers take it over: {err}");
    assert_eq!(t.admin().describe_topic(&topic).await.unwrap().retained(), 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_partition_out_of_range_is_rejected() {
    if require_broker().is_none() {
        return;
    }
    let t = transport("").await;
    let topic = new_topic(&t, "kafka-bad-partition", 2).await;
    let err = t.produce(&topic, vec![ProduceRecord { partition: Some(5), ..Default::default() }]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.to_string().contains("partition 5") && err.to_string().contains("2 partitions"), "{err}");
    let err = t.admin().create_topic(TopicSpec::new(unique_topic("kafka-zero"), 0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_brokers_in_the_url_work_when_one_answers() {
    let Some(brokers) = require_broker() else { return };
    let t = KafkaTransport::from_url_str(&format!("kafka://127.0.0.1:1,{brokers}")).await.unwrap();
    assert_eq!(t.config().brokers, format!("127.0.0.1:1,{brokers}"));
    let bus = onex_bus::connect(&format!("kafka://127.0.0.1:1?bootstrap.servers=127.0.0.1:1,{brokers}")).await.unwrap();
    assert!(bus.health_check().await.unwrap().healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_topic_name_is_a_config_error_before_the_broker_is_asked() {
    if require_broker().is_none() {
        return;
    }
    let t = transport("").await;
    let env = onex_core::Envelope::new("x.y.v1", &1).unwrap();
    for bad in ["", "has space", "ünïcode", &"x".repeat(250)] {
        let err = t.produce(bad, vec![ProduceRecord::default()]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad:?}: {err}");
        assert!(err.to_string().contains("invalid topic name"), "{err}");
        let err = t.produce_envelope(bad, &env).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_local_queue_makes_publishes_wait_not_fail() {
    if require_broker().is_none() {
        return;
    }
    // Room for 2 records in librdkafka's queue, and a linger that keeps them there a while:
    // most of the 90 publishes below find the queue full and must wait for room.
    let t = transport("queue.buffering.max.messages=2&linger.ms=20").await;
    let topic = new_topic(&t, "kafka-full-queue", 1).await;
    let envs: Vec<Envelope> = (0..30).map(|i| Envelope::new("x.y.v1", &i).unwrap()).collect();
    let by_envelope = envs.iter().map(|e| t.produce_envelope(&topic, e));
    let by_record = (0..30u8).map(|i| {
        let r = ProduceRecord::new(Record { value: Bytes::from(vec![i]), ..Default::default() });
        t.produce(&topic, vec![r])
    });
    let batch: Vec<(&str, &Envelope)> = envs.iter().map(|e| (topic.as_str(), e)).collect();
    let (receipts, records, in_batch) =
        tokio::join!(futures::future::join_all(by_envelope), futures::future::join_all(by_record), t.produce_envelopes(&batch));
    let in_batch: Vec<u64> = in_batch.into_iter().map(|r| r.expect("a batch waits for room").offset).collect();
    assert!(in_batch.windows(2).all(|w| w[0] < w[1]), "a batch keeps its order: {in_batch:?}");
    let mut offsets: Vec<u64> = receipts.into_iter().map(|r| r.expect("an envelope waits for room").offset).collect();
    offsets.extend(records.into_iter().map(|r| r.expect("a record waits for room")[0].offset));
    offsets.extend(in_batch);
    offsets.sort_unstable();
    assert_eq!(offsets, (0..90).collect::<Vec<u64>>(), "every publish was acknowledged, each at its own offset");
}

#[tokio::test]
async fn a_publish_in_flight_holds_no_slow_path_state() {
    if require_broker().is_none() {
        return;
    }
    // A pipelined producer keeps thousands of these futures until their delivery reports. Once
    // librdkafka took the record, what waits is the delivery report itself, unboxed; the
    // metadata lookup, the record and a full queue's timer belong in boxes of their own, made
    // only when needed. The bound leaves room for compiler changes, not for those.
    let t = transport("").await;
    let topic = new_topic(&t, "kafka-future-size", 1).await;
    let env = Envelope::new("x.y.v1", &1).unwrap();
    t.produce_envelope(&topic, &env).await.unwrap(); // learns the partition count
    let fut = t.produce_envelope(&topic, &env);
    assert!(matches!(fut, PendingReceipt::Kafka(_)), "{fut:?}");
    let size = std::mem::size_of_val(&fut);
    assert!(size <= 64, "a produce future is {size} bytes");
    fut.await.unwrap();
}
