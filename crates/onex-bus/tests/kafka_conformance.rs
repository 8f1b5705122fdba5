//! The public conformance suite, unchanged, on the kafka transport against a real broker
//! (tansu in CI: `scripts/tansu.sh`; `ONEX_KAFKA_BROKERS` picks another).
#![cfg(feature = "kafka")]

mod kafka_support;

onex_bus::conformance_suite!(
    kafka,
    match crate::kafka_support::KafkaHarness::new() {
        Some(h) => h,
        None => return,
    }
);
