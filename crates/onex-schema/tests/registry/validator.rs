//! `RegistryValidator`: the publisher's hook, with its per-topic TTL cache (paused clock).

use std::sync::Arc;
use std::time::Duration;

use onex_core::{CompatibilityMode, Error, ErrorKind, PayloadValidator, SchemaRegistry, SchemaType};
use onex_schema::{encode_confluent, RegistryValidator};

use crate::support;

const ORDER: &str =
    r#"{"type": "object", "properties": {"id": {"type": "integer"}, "sku": {"type": "string"}}, "required": ["id", "sku"]}"#;

#[tokio::test(start_paused = true)]
async fn validates_against_topic_value_subject_and_caches_for_the_ttl() {
    let backend = support::embedded().await;
    let registry = backend.registry.clone();
    let validator = RegistryValidator::with_ttl(registry.clone(), Duration::from_secs(5));

    // No subject: anything goes, and that answer is cached too.
    validator.validate_payload("orders", b"{}").await.unwrap();
    registry.register("orders-value", ORDER, SchemaType::Json).await.unwrap();
    validator.validate_payload("orders", b"{}").await.unwrap();

    tokio::time::advance(Duration::from_secs(6)).await;
    let err = validator.validate_payload("orders", br#"{"id": "x"}"#).await.unwrap_err();
    let Error::Schema { subject, violations } = &err else { panic!("{err}") };
    assert_eq!(subject.as_deref(), Some("orders-value"));
    let mut found: Vec<(&str, &str)> = violations.iter().map(|v| (v.instance_path.as_str(), v.keyword.as_str())).collect();
    found.sort();
    assert_eq!(found, vec![("", "required"), ("/id", "type")]);
    validator.validate_payload("orders", br#"{"id": 1, "sku": "A"}"#).await.unwrap();

    // A new latest version is picked up only after the TTL.
    registry.set_compatibility(Some("orders-value"), CompatibilityMode::None).await.unwrap();
    registry.register("orders-value", r#"{"type": "object", "required": ["id", "sku", "qty"]}"#, SchemaType::Json).await.unwrap();
    validator.validate_payload("orders", br#"{"id": 1, "sku": "A"}"#).await.unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    let err = validator.validate_payload("orders", br#"{"id": 1, "sku": "A"}"#).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema);
    assert!(err.to_string().contains("qty"), "{err}");
}

#[tokio::test]
async fn non_json_and_framed_payloads() {
    let backend = support::embedded().await;
    let info = backend.registry.register("pay-value", ORDER, SchemaType::Json).await.unwrap();
    let validator = RegistryValidator::new(backend.registry.clone());
    let err = validator.validate_payload("pay", b"not json").await.unwrap_err();
    let Error::Schema { violations, .. } = &err else { panic!("{err}") };
    assert_eq!(violations[0].keyword, "json");
    assert!(violations[0].message.contains("not valid JSON"), "{err}");
    validator.validate_payload("pay", &encode_confluent(info.id, br#"{"id": 1, "sku": "A"}"#)).await.unwrap();
    assert_eq!(validator.validate_payload("pay", &encode_confluent(info.id, br#"{"id": 1}"#)).await.unwrap_err().kind(), ErrorKind::Schema);
}

#[tokio::test]
async fn works_over_the_rest_client_and_reports_an_unreachable_registry() {
    let backend = support::rest().await;
    backend.registry.register("remote-value", ORDER, SchemaType::Json).await.unwrap();
    let validator = RegistryValidator::new(backend.registry.clone());
    validator.validate_payload("remote", br#"{"id": 1, "sku": "A"}"#).await.unwrap();
    assert_eq!(validator.validate_payload("remote", br#"{"sku": "A"}"#).await.unwrap_err().kind(), ErrorKind::Schema);

    // Nothing listens on this port: publishing must fail rather than skip validation.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let unreachable: Arc<dyn SchemaRegistry> = Arc::new(onex_schema::ConfluentRegistryClient::new(&url).unwrap());
    let err = RegistryValidator::new(unreachable).validate_payload("orders", b"{}").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
}
