//! The handler of the consume benchmarks: it counts deliveries and notes the first one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use onex_core::{handler_fn, Delivery, EventHandler};
use tokio::sync::Notify;

/// Deliveries handled so far, when the first one was, and a notification at the `n`th.
pub(crate) struct HandledCount {
    n: u64,
    handled: AtomicU64,
    first: OnceLock<Instant>,
    done: Notify,
}

impl HandledCount {
    pub(crate) fn new(n: u64) -> Arc<Self> {
        Arc::new(HandledCount { n, handled: AtomicU64::new(0), first: OnceLock::new(), done: Notify::new() })
    }

    /// A handler that counts into `self`. It counts before it returns a ready future: the
    /// benchmark measures the bus, not the `Arc` clones an async block would need per record.
    pub(crate) fn handler(self: &Arc<Self>) -> impl EventHandler {
        let count = self.clone();
        handler_fn(move |d: Delivery| {
            std::hint::black_box(d.envelope.payload.len());
            let k = count.handled.fetch_add(1, Ordering::Relaxed);
            if k == 0 {
                let _ = count.first.set(Instant::now());
            }
            if k + 1 == count.n {
                count.done.notify_one();
            }
            std::future::ready(Ok(()))
        })
    }

    /// Deliveries handled so far.
    pub(crate) fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// When the first delivery was handled.
    pub(crate) fn first(&self) -> Option<Instant> {
        self.first.get().copied()
    }

    /// Returns once `n` deliveries were handled (at once if they already were).
    pub(crate) async fn all_handled(&self) {
        self.done.notified().await;
    }
}
