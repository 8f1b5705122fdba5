use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::resilience::with_timeout;
use crate::{HealthStatus, Result};

/// Caches health results for a TTL. Single-flight: concurrent callers with an expired cache
/// wait for one check instead of each hitting the target.
#[derive(Debug)]
pub(super) struct HealthCache {
    ttl: Duration,
    slot: tokio::sync::Mutex<Option<(Instant, HealthStatus)>>,
}

impl HealthCache {
    pub(super) fn new(ttl: Duration) -> Self {
        HealthCache { ttl, slot: tokio::sync::Mutex::new(None) }
    }

    pub(super) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The cached status when younger than the TTL; otherwise runs `check` (bounded by
    /// `limit`) and caches its answer. A failed or timed-out check is an answer too: it becomes
    /// an unhealthy status with the sanitized error, cached like any other.
    pub(super) async fn get_or_check<F>(&self, limit: Duration, check: F) -> HealthStatus
    where
        F: Future<Output = Result<HealthStatus>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, status)) = slot.as_ref() {
            if at.elapsed() < self.ttl {
                return status.clone();
            }
        }
        let started = Instant::now();
        let status = match with_timeout(limit, "health check", check).await {
            Ok(status) => status,
            Err(err) => HealthStatus::unhealthy(started.elapsed(), &err),
        };
        *slot = Some((Instant::now(), status.clone()));
        status
    }
}
