use std::time::Duration;

use tokio::time::Instant;

/// Buckets per window: the window slides in steps of `window / BUCKETS`.
const BUCKETS: usize = 10;

/// Calls and failures over a sliding time window, in fixed memory: the window is split into
/// [`BUCKETS`] buckets, and a bucket older than the window is reset before it is reused.
#[derive(Debug)]
pub(super) struct RateWindow {
    origin: Instant,
    bucket_width: Duration,
    /// (bucket epoch, calls, failures); epoch = time since origin / bucket width.
    buckets: [(u64, u32, u32); BUCKETS],
}

impl RateWindow {
    pub(super) fn new(window: Duration, now: Instant) -> Self {
        let bucket_width = (window / BUCKETS as u32).max(Duration::from_nanos(1));
        RateWindow { origin: now, bucket_width, buckets: [(u64::MAX, 0, 0); BUCKETS] }
    }

    fn epoch(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_nanos() / self.bucket_width.as_nanos()) as u64
    }

    pub(super) fn record(&mut self, failed: bool, now: Instant) {
        let epoch = self.epoch(now);
        let slot = &mut self.buckets[(epoch % BUCKETS as u64) as usize];
        if slot.0 != epoch {
            *slot = (epoch, 0, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        slot.2 = slot.2.saturating_add(u32::from(failed));
    }

    /// (calls, failures) in the buckets of the last window.
    pub(super) fn totals(&self, now: Instant) -> (u32, u32) {
        let epoch = self.epoch(now);
        let oldest = epoch.saturating_sub(BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|(e, _, _)| *e != u64::MAX && *e >= oldest && *e <= epoch)
            .fold((0u32, 0u32), |(c, f), (_, calls, fails)| (c.saturating_add(*calls), f.saturating_add(*fails)))
    }

    pub(super) fn clear(&mut self) {
        self.buckets = [(u64::MAX, 0, 0); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_the_window_and_forgets_older_calls() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(Duration::from_secs(10), t0);
        w.record(true, t0);
        w.record(false, t0 + Duration::from_secs(5));
        assert_eq!(w.totals(t0 + Duration::from_secs(5)), (2, 1));
        assert_eq!(w.totals(t0 + Duration::from_millis(9_999)), (2, 1));
        // The first bucket [0 s, 1 s) leaves the window once we are in bucket 10.
        assert_eq!(w.totals(t0 + Duration::from_secs(10)), (1, 0));
        assert_eq!(w.totals(t0 + Duration::from_secs(16)), (0, 0));
        w.record(true, t0 + Duration::from_secs(20));
        assert_eq!(w.totals(t0 + Duration::from_secs(20)), (1, 1), "reused slot was reset");
        w.clear();
        assert_eq!(w.totals(t0 + Duration::from_secs(20)), (0, 0));
    }
}
