//! A short-lived cache of the latest compiled schema per key (topic or subject).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::time::Instant;

use onex_core::{ErrorKind, Result, SchemaInfo};

use crate::validation::{CompiledSchema, ValidatorCache};

/// How long a fetched "latest schema" (or "no such subject") is trusted by default.
pub const DEFAULT_LATEST_TTL: Duration = Duration::from_secs(5);

struct Entry {
    fetched: Instant,
    /// `None`: the subject does not exist (also cached, so unvalidated topics stay cheap).
    schema: Option<Arc<CompiledSchema>>,
}

/// The latest schema of each key, compiled, for `ttl`. Uses tokio's clock (testable paused).
#[derive(Default)]
pub(crate) struct LatestCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, Entry>>,
    validators: ValidatorCache,
}

impl std::fmt::Debug for LatestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatestCache").field("ttl", &self.ttl).field("entries", &self.entries.read().len()).finish()
    }
}

impl LatestCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        LatestCache { ttl, entries: RwLock::new(HashMap::new()), validators: ValidatorCache::new() }
    }

    /// The cached latest schema for `key`, calling `fetch` when missing or older than the TTL.
    /// A NotFound answer is cached as `None`; other errors are returned and not cached.
    pub(crate) async fn latest<F, Fut>(&self, key: &str, fetch: F) -> Result<Option<Arc<CompiledSchema>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SchemaInfo>>,
    {
        if let Some(entry) = self.entries.read().get(key) {
            if entry.fetched.elapsed() < self.ttl {
                return Ok(entry.schema.clone());
            }
        }
        let schema = match fetch().await {
            Ok(info) => Some(self.validators.get_or_compile(&info.schema, info.schema_type)?),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        self.entries.write().insert(key.to_string(), Entry { fetched: Instant::now(), schema: schema.clone() });
        Ok(schema)
    }
}
