//! The in-process idempotency store.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use onex_core::{ClaimOutcome, IdempotencyStore, Result};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{check_duration, check_key};

#[derive(Debug, Clone, Copy)]
enum Entry {
    Claimed { until: Instant },
    Done { at: Instant },
}

/// Idempotency in one process: a map behind one mutex. Lost on restart, so it protects
/// against redeliveries within a process only; use the sqlite, postgres or redis store
/// across restarts. Times use tokio's clock (testable on a paused clock).
#[derive(Debug, Default)]
pub struct MemoryIdempotencyStore {
    entries: Mutex<HashMap<(String, String), Entry>>,
}

impl MemoryIdempotencyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held (claimed or done).
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn claim(&self, domain: &str, id: &str, lease: Duration) -> Result<ClaimOutcome> {
        check_key(domain, id)?;
        check_duration("lease", lease)?;
        let now = Instant::now();
        let mut entries = self.entries.lock();
        let key = (domain.to_string(), id.to_string());
        match entries.get(&key) {
            Some(Entry::Done { .. }) => Ok(ClaimOutcome::Duplicate),
            Some(Entry::Claimed { until }) if *until > now => Ok(ClaimOutcome::InProgress),
            _ => {
                entries.insert(key, Entry::Claimed { until: now + lease });
                Ok(ClaimOutcome::Claimed)
            }
        }
    }

    async fn complete(&self, domain: &str, id: &str) -> Result<()> {
        check_key(domain, id)?;
        self.entries.lock().insert((domain.to_string(), id.to_string()), Entry::Done { at: Instant::now() });
        Ok(())
    }

    async fn release(&self, domain: &str, id: &str) -> Result<()> {
        check_key(domain, id)?;
        let mut entries = self.entries.lock();
        let key = (domain.to_string(), id.to_string());
        if matches!(entries.get(&key), Some(Entry::Claimed { .. })) {
            entries.remove(&key);
        }
        Ok(())
    }

    async fn cleanup_expired(&self, ttl: Duration) -> Result<u64> {
        check_duration("ttl", ttl)?;
        let now = Instant::now();
        let mut entries = self.entries.lock();
        let before = entries.len();
        entries.retain(|_, e| match e {
            Entry::Claimed { until } => *until > now,
            Entry::Done { at } => now.duration_since(*at) < ttl,
        });
        Ok((before - entries.len()) as u64)
    }
}
