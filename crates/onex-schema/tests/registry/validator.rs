//! `RegistryValidator`: the publisher's hook, with its per-topic TTL cache (paused clock).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onex_core::{CompatibilityReport, Result, SchemaInfo, VersionSpec};

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

/// A registry that counts `get` calls and delegates everything to a real one.
struct CountingRegistry {
    inner: Arc<dyn SchemaRegistry>,
    gets: AtomicUsize,
}

#[async_trait]
impl SchemaRegistry for CountingRegistry {
    async fn register(&self, subject: &str, schema: &str, schema_type: SchemaType) -> Result<SchemaInfo> {
        self.inner.register(subject, schema, schema_type).await
    }
    async fn get(&self, subject: &str, version: VersionSpec) -> Result<SchemaInfo> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(subject, version).await
    }
    async fn get_by_id(&self, id: u32) -> Result<SchemaInfo> {
        self.inner.get_by_id(id).await
    }
    async fn subjects(&self) -> Result<Vec<String>> {
        self.inner.subjects().await
    }
    async fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        self.inner.versions(subject).await
    }
    async fn validate(&self, subject: &str, value: &serde_json::Value) -> Result<()> {
        self.inner.validate(subject, value).await
    }
    async fn check_compatibility(&self, subject: &str, schema: &str, version: Option<VersionSpec>) -> Result<CompatibilityReport> {
        self.inner.check_compatibility(subject, schema, version).await
    }
    async fn set_compatibility(&self, subject: Option<&str>, mode: CompatibilityMode) -> Result<()> {
        self.inner.set_compatibility(subject, mode).await
    }
    async fn get_compatibility(&self, subject: Option<&str>) -> Result<CompatibilityMode> {
        self.inner.get_compatibility(subject).await
    }
    async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<u32>> {
        self.inner.delete_subject(subject, permanent).await
    }
    async fn delete_version(&self, subject: &str, version: u32, permanent: bool) -> Result<u32> {
        self.inner.delete_version(subject, version, permanent).await
    }
}

#[tokio::test(start_paused = true)]
async fn one_caller_refreshes_an_expired_entry_while_the_others_use_the_previous_schema() {
    let backend = support::embedded().await;
    let counting = Arc::new(CountingRegistry { inner: backend.registry.clone(), gets: AtomicUsize::new(0) });
    counting.register("hot-value", ORDER, SchemaType::Json).await.unwrap();
    let validator = RegistryValidator::with_ttl(counting.clone(), Duration::from_secs(5));
    let valid = br#"{"id": 1, "sku": "A"}"#;
    for _ in 0..100 {
        validator.validate_payload("hot", valid).await.unwrap();
    }
    assert_eq!(counting.gets.load(Ordering::SeqCst), 1, "fetched once, then served from the cache");

    tokio::time::advance(Duration::from_secs(6)).await;
    let calls: Vec<_> = (0..20).map(|_| validator.validate_payload("hot", valid)).collect();
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(counting.gets.load(Ordering::SeqCst), 2, "20 concurrent callers after expiry: one refetch");
    // Invalid payloads are still refused by the stale-but-serving entry and the refreshed one.
    assert_eq!(validator.validate_payload("hot", b"{}").await.unwrap_err().kind(), ErrorKind::Schema);
    assert_eq!(counting.gets.load(Ordering::SeqCst), 2);
}
