//! Unit tests of the transport's internals: the first two need no broker, the last runs
//! against the test broker (skipped without one unless `ONEX_REQUIRE_KAFKA` is set).

use onex_core::ErrorKind;

use super::*;

#[tokio::test]
async fn unreachable_broker_fails_clearly_and_quickly() {
    // Port 1 on localhost: nothing listens, the connection is refused at once.
    let err = KafkaTransport::from_url_str("kafka://127.0.0.1:1?connect_timeout_ms=3000").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1") && text.contains("check the host and port"), "{text}");
}

#[tokio::test]
async fn unknown_setting_fails_before_connecting() {
    let err = KafkaTransport::from_url_str("kafka://127.0.0.1:1?no.such.setting=1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("\"no.such.setting\""), "{err}");
}

/// A transport on the test broker (`ONEX_KAFKA_BROKERS`, default `127.0.0.1:9092`), or `None`
/// when it is unreachable and `ONEX_REQUIRE_KAFKA` is unset (scripts/test.sh sets it).
async fn test_broker() -> Option<Arc<KafkaTransport>> {
    let brokers = std::env::var("ONEX_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string());
    match KafkaTransport::from_url_str(&format!("kafka://{brokers}?connect_timeout_ms=5000")).await {
        Ok(t) => Some(t),
        Err(e) if std::env::var_os("ONEX_REQUIRE_KAFKA").is_none() => {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("\n!!!!! SKIPPED: no Kafka broker: {e} !!!!!\n").as_bytes());
            None
        }
        Err(e) => panic!("Kafka broker {brokers} is unreachable and ONEX_REQUIRE_KAFKA is set: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_producer_is_replaced_once_and_its_records_in_flight_still_get_reports() {
    let Some(t) = test_broker().await else { return };
    let topic = crate::testing::unique_topic("kafka-replace");
    t.admin().create_topic(onex_core::TopicSpec::new(&topic, 2)).await.unwrap();
    let env = onex_core::Envelope::new("replace.tick.v1", &1).unwrap().with_partition_key("k");
    t.send_envelope(&topic, &env).await.expect("first publish"); // caches the partition count

    let generation = || t.producer.read().generation;
    let in_flight = t.envelope_pending(&topic, &env);
    assert!(matches!(in_flight, PendingReceipt::Kafka(_)), "{in_flight:?}");
    let fenced = KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced);
    t.replace_broken_producer(0, &fenced);
    assert_eq!(generation(), 1, "a fenced producer is replaced");
    // A second report from the same broken producer must not replace its successor.
    t.replace_broken_producer(0, &fenced);
    assert_eq!(generation(), 1, "the successor is left alone");

    // The retired producer is flushed, then dropped: its record gets a report either way.
    match tokio::time::timeout(Duration::from_secs(60), in_flight).await.expect("a record of a retired producer gets its report") {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), ErrorKind::Unavailable, "a purged record is published again: {e}"),
    }
    let receipt = t.send_envelope(&topic, &env).await.expect("the new producer publishes");
    assert_eq!(receipt.topic, topic);
    t.admin().delete_topic(&topic).await.unwrap();
}
