//! A short-lived cache of the latest compiled schema per key (topic or subject).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Set while one caller refetches an expired entry; the others keep the previous answer
    /// meanwhile instead of all hitting the registry at once.
    refreshing: AtomicBool,
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
    /// A NotFound answer is cached as `None`; other errors are returned and not cached. While
    /// one caller refetches an expired entry, concurrent callers get the previous answer.
    pub(crate) async fn latest<F, Fut>(&self, key: &str, fetch: F) -> Result<Option<Arc<CompiledSchema>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SchemaInfo>>,
    {
        if let Some(entry) = self.entries.read().get(key) {
            if entry.fetched.elapsed() < self.ttl || entry.refreshing.swap(true, Ordering::AcqRel) {
                return Ok(entry.schema.clone());
            }
        }
        let schema = match fetch().await {
            Ok(info) => self.validators.get_or_compile(&info.schema, info.schema_type).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        match schema {
            Ok(schema) => {
                let entry = Entry { fetched: Instant::now(), schema: schema.clone(), refreshing: AtomicBool::new(false) };
                self.entries.write().insert(key.to_string(), entry);
                Ok(schema)
            }
            Err(e) => {
                if let Some(entry) = self.entries.read().get(key) {
                    entry.refreshing.store(false, Ordering::Release);
                }
                Err(e)
            }
        }
    }
}
