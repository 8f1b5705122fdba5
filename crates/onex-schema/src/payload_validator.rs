//! [`RegistryValidator`]: the publisher's pre-publish check against a registry.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use onex_core::{Error, PayloadValidator, Result, SchemaRegistry, VersionSpec, Violation};

use crate::latest::{LatestCache, DEFAULT_LATEST_TTL};
use crate::wire::decode_value;

/// Validates payloads published to (or received from) a topic against the latest schema of
/// subject `{topic}-value` in a [`SchemaRegistry`].
///
/// - No such subject → `Ok` (topics without a schema are not validated).
/// - The latest schema (or its absence) is cached per topic for a short TTL (default 5 s), with
///   its compiled validator; a registration is picked up within the TTL.
/// - The payload bytes are checked by streaming (no `Value` is built) when the schema allows it
///   ([`CompiledSchema::certainly_valid`](crate::CompiledSchema::certainly_valid)); otherwise, or
///   when that check is not sure, they are parsed once and validated in full. A Confluent-framed
///   value (magic byte + id) is accepted too.
/// - Not JSON → [`Error::Schema`] with one violation (keyword `json`); not matching →
///   [`Error::Schema`] with every violation. A registry that cannot be reached → its error
///   (publishing fails rather than skipping validation).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use onex_core::{PayloadValidator, SchemaRegistry, SchemaType};
/// let dir = tempfile::tempdir().unwrap();
/// let registry = Arc::new(onex_schema::SqliteSchemaRegistry::open(dir.path().join("onex.db")).await?);
/// registry.register("orders-value", r#"{"required": ["id"]}"#, SchemaType::Json).await?;
/// let validator = onex_schema::RegistryValidator::new(registry);
/// assert!(validator.validate_payload("orders", br#"{"id": 1}"#).await.is_ok());
/// assert!(validator.validate_payload("orders", br#"{}"#).await.is_err());
/// assert!(validator.validate_payload("no-schema-topic", b"anything").await.is_ok());
/// # Ok::<(), onex_core::Error>(())
/// # }).unwrap();
/// ```
pub struct RegistryValidator {
    registry: Arc<dyn SchemaRegistry>,
    cache: LatestCache,
}

impl std::fmt::Debug for RegistryValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryValidator").field("cache", &self.cache).finish_non_exhaustive()
    }
}

impl RegistryValidator {
    /// A validator with the default TTL (5 s).
    pub fn new(registry: Arc<dyn SchemaRegistry>) -> Self {
        Self::with_ttl(registry, DEFAULT_LATEST_TTL)
    }

    /// A validator that trusts a fetched latest schema for `ttl`.
    pub fn with_ttl(registry: Arc<dyn SchemaRegistry>, ttl: Duration) -> Self {
        RegistryValidator { registry, cache: LatestCache::new(ttl) }
    }

    /// The subject validated for `topic`: `{topic}-value`.
    pub fn subject_for(topic: &str) -> String {
        format!("{topic}-value")
    }
}

#[async_trait]
impl PayloadValidator for RegistryValidator {
    async fn validate_payload(&self, topic: &str, payload: &[u8]) -> Result<()> {
        // Keyed by topic so the hot path allocates nothing when the entry is fresh.
        let registry = &self.registry;
        let Some(schema) =
            self.cache.latest(topic, || async move { registry.get(&Self::subject_for(topic), VersionSpec::Latest).await }).await?
        else {
            return Ok(());
        };
        let (_, json) = decode_value(payload);
        if schema.certainly_valid(json) {
            return Ok(());
        }
        let value: Value = match serde_json::from_slice(json) {
            Ok(v) => v,
            Err(e) => {
                let violation =
                    Violation { instance_path: String::new(), keyword: "json".into(), message: format!("payload is not valid JSON: {e}") };
                return Err(Error::schema(Some(Self::subject_for(topic)), vec![violation]));
            }
        };
        if schema.is_valid(&value) {
            return Ok(());
        }
        Err(Error::schema(Some(Self::subject_for(topic)), schema.violations(&value)))
    }
}
