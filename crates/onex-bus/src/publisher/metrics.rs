//! Lock-free publisher counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use onex_core::resilience::BreakerCounters;
use onex_core::PublisherMetrics;

/// The publisher's counters; relaxed atomics (each is a monotonic tally read for reporting).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) publish_nanos: AtomicU64,
}

impl Counters {
    pub(crate) fn record(&self, ok: bool, retries: u32, elapsed: Duration) {
        if ok {
            self.published.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if retries > 0 {
            self.retries.fetch_add(u64::from(retries), Ordering::Relaxed);
        }
        self.publish_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// `count` publishes that succeeded at the first attempt, each in `elapsed`.
    pub(crate) fn record_published(&self, count: u64, elapsed: Duration) {
        if count == 0 {
            return;
        }
        self.published.fetch_add(count, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.publish_nanos.fetch_add(nanos.saturating_mul(count), Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, breaker: &BreakerCounters) -> PublisherMetrics {
        let published = self.published.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let total_ms = self.publish_nanos.load(Ordering::Relaxed) as f64 / 1e6;
        let calls = published + failed;
        PublisherMetrics {
            events_published: published,
            events_failed: failed,
            events_sent_to_dlq: 0,
            retries_attempted: self.retries.load(Ordering::Relaxed),
            circuit_breaker_opens: breaker.opens,
            circuit_breaker_closes: breaker.closes,
            circuit_breaker_status: breaker.state.as_str().to_string(),
            current_failures: u64::from(breaker.consecutive_failures),
            total_publish_time_ms: total_ms,
            avg_publish_time_ms: if calls == 0 { 0.0 } else { total_ms / calls as f64 },
        }
    }
}
