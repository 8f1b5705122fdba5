//! The schema registry on the bus: the publisher's validation step refuses invalid payloads
//! (nothing is sent), and subscriptions that opt in dead-letter invalid records.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use onex_bus::testing::{read_dlq, Collector};
use onex_bus::{BusConfig, BusPublisher};
use onex_core::{Envelope, ErrorKind, EventBus, EventPublisher, PublishOptions, SchemaRegistry, SchemaType, SubscriptionOptions};
use onex_schema::{RegistryValidator, SqliteSchemaRegistry};

const SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
  "properties":{"order_id":{"type":"string"},"qty":{"type":"integer","minimum":1}},"required":["order_id","qty"]}"#;

async fn setup(dir: &tempfile::TempDir) -> (Arc<onex_bus::TransportBus>, Arc<dyn SchemaRegistry>) {
    let path = dir.path().join("bus.db");
    let url = format!("sqlite://{}", path.display());
    let transport = onex_bus::open_transport(&url).await.unwrap();
    let registry: Arc<dyn SchemaRegistry> = Arc::new(SqliteSchemaRegistry::open(&path).await.unwrap());
    registry.register("orders-value", SCHEMA, SchemaType::Json).await.unwrap();
    let validator = Arc::new(RegistryValidator::new(registry.clone()));
    let bus = Arc::new(onex_bus::TransportBus::with_config(transport, BusConfig { validator: Some(validator), ..BusConfig::default() }));
    (bus, registry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_refuses_invalid_payloads_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, registry) = setup(&dir).await;
    let publisher = BusPublisher::builder(bus.clone()).validator(Arc::new(RegistryValidator::new(registry))).build().unwrap();
    let opts = PublishOptions { topic: Some("orders".into()), ..Default::default() };
    let err =
        publisher.publish("shop.order_created.v1", Bytes::from_static(br#"{"order_id": 7, "qty": 0}"#), opts.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
    let onex_core::Error::Schema { violations, .. } = &err else { unreachable!() };
    let pointers: Vec<&str> = violations.iter().map(|v| v.instance_path.as_str()).collect();
    assert!(pointers.contains(&"/order_id") && pointers.contains(&"/qty"), "{violations:?}");
    let retained = bus.admin().describe_topic("orders").await.map(|t| t.retained()).unwrap_or(0);
    assert_eq!(retained, 0, "nothing was published");

    let receipt = publisher.publish("shop.order_created.v1", Bytes::from_static(br#"{"order_id": "o-7", "qty": 2}"#), opts).await.unwrap();
    assert_eq!(receipt.topic, "orders");
    assert_eq!(bus.admin().describe_topic("orders").await.unwrap().retained(), 1);
    assert_eq!(publisher.metrics().events_published, 1);
    assert_eq!(publisher.metrics().events_failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_that_validate_dead_letter_invalid_records() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, _registry) = setup(&dir).await;
    let c = Collector::new();
    let options = SubscriptionOptions { validate_payloads: true, ..Default::default() };
    c.subscribe(&bus, "orders", "fulfilment", options).await;
    bus.start().await.unwrap();
    // A producer that skips validation (not ours) writes an invalid record, then a valid one.
    let bad = Envelope::new("shop.order_created.v1", &serde_json::json!({"order_id": "o-1"})).unwrap();
    let good = Envelope::new("shop.order_created.v1", &serde_json::json!({"order_id": "o-2", "qty": 1})).unwrap();
    bus.publish_envelope(&bad, "orders").await.unwrap();
    bus.publish_envelope(&good, "orders").await.unwrap();
    let got = c.wait_for(1).await;
    assert_eq!(got[0].envelope.envelope_id, good.envelope_id);
    let dlq = read_dlq(&bus, "orders.dlq", 1).await;
    assert_eq!(dlq[0].1.error_kind, ErrorKind::Schema);
    assert!(dlq[0].1.reason.contains("qty"), "the reason names the violation: {}", dlq[0].1.reason);
    assert_eq!(dlq[0].1.correlation_id, Some(bad.correlation_id));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.len(), 1, "the invalid record never reached the handler");
    bus.stop_consuming(Duration::from_secs(5)).await.unwrap();
}
