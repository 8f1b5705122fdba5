//! Concurrency limit: explicit back-pressure for handlers and consumers.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Error, Result};

/// At most `max` holders of a [`ConcurrencyPermit`] at once. Clones share the limit.
///
/// ```
/// use onex_core::resilience::ConcurrencyLimit;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> onex_core::Result<()> {
/// let limit = ConcurrencyLimit::new(2)?;
/// let a = limit.acquire().await?;
/// let _b = limit.acquire().await?;
/// assert!(limit.try_acquire().is_none());
/// drop(a);
/// assert!(limit.try_acquire().is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    semaphore: Arc<Semaphore>,
    max: usize,
}

/// A slot of a [`ConcurrencyLimit`]; dropping it frees the slot.
#[derive(Debug)]
pub struct ConcurrencyPermit {
    _permit: OwnedSemaphorePermit,
}

impl ConcurrencyLimit {
    /// A limit of `max` concurrent holders (1 ..= `Semaphore::MAX_PERMITS`).
    pub fn new(max: usize) -> Result<Self> {
        if max == 0 || max > Semaphore::MAX_PERMITS {
            return Err(Error::config(format!("concurrency limit {max} is invalid; use a value between 1 and {}", Semaphore::MAX_PERMITS)));
        }
        Ok(ConcurrencyLimit { semaphore: Arc::new(Semaphore::new(max)), max })
    }

    /// Waits for a free slot (FIFO). Fails with [`Error::Shutdown`] once [`ConcurrencyLimit::close`] was called.
    pub async fn acquire(&self) -> Result<ConcurrencyPermit> {
        let permit = Arc::clone(&self.semaphore).acquire_owned().await.map_err(|_| self.closed_error())?;
        Ok(ConcurrencyPermit { _permit: permit })
    }

    /// A slot if one is free now; `None` when all are taken or the limit is closed.
    pub fn try_acquire(&self) -> Option<ConcurrencyPermit> {
        Arc::clone(&self.semaphore).try_acquire_owned().ok().map(|permit| ConcurrencyPermit { _permit: permit })
    }

    /// Runs `fut` while holding a slot.
    pub async fn run<T, F>(&self, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let _permit = self.acquire().await?;
        fut.await
    }

    /// Stops handing out slots: waiting and future [`ConcurrencyLimit::acquire`] calls fail with
    /// [`Error::Shutdown`]; held permits stay valid until dropped.
    pub fn close(&self) {
        self.semaphore.close();
    }

    /// The configured maximum.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Free slots now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.max.saturating_sub(self.available())
    }

    fn closed_error(&self) -> Error {
        Error::shutdown(format!("concurrency limit (max {}) was closed; no new work is accepted", self.max))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn rejects_zero() {
        let err = ConcurrencyLimit::new(0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("concurrency limit 0"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn bounds_concurrency() {
        let limit = ConcurrencyLimit::new(3).unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (limit, running, peak) = (limit.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    limit
                        .run(async {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            running.fetch_sub(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!((limit.available(), limit.in_use(), limit.max()), (3, 0, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_and_close() {
        let limit = ConcurrencyLimit::new(1).unwrap();
        let held = limit.try_acquire().expect("one free slot");
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.in_use(), 1);
        let waiter = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        limit.close();
        let err = waiter.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Shutdown);
        drop(held);
        assert!(limit.try_acquire().is_none(), "closed limits hand out nothing");
    }
}
