//! Time limits on async calls.
//!
//! [`with_timeout`] bounds one future; [`Timeout`] is the validated, reusable form.

use std::future::Future;
use std::time::Duration;

use crate::{Error, Result};

/// Runs `fut`, failing with [`Error::Timeout`] when it takes longer than `duration`.
/// `what` names the call in the error ("GET /users", "db.query"); the future is dropped
/// (cancelled) when the time is up.
///
/// ```
/// use std::time::Duration;
/// use onex_core::{ErrorKind, resilience::with_timeout};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// tokio::time::pause();
/// let slow = tokio::time::sleep(Duration::from_secs(60));
/// let err = with_timeout(Duration::from_secs(1), "slow call", async { slow.await; Ok(()) }).await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Timeout);
/// # }
/// ```
pub async fn with_timeout<T, F>(duration: Duration, what: &str, fut: F) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    match tokio::time::timeout(duration, fut).await {
        Ok(result) => result,
        Err(_) => Err(elapsed_error(what, duration)),
    }
}

/// The error of a call named `what` that ran out of `duration`.
pub(crate) fn elapsed_error(what: &str, duration: Duration) -> Error {
    Error::timeout(format!("{what} did not finish within {duration:?}"), duration).with("timeout_ms", duration.as_millis())
}

/// A validated time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    duration: Duration,
}

impl Timeout {
    /// A time limit of `duration`; zero is rejected (it would fail every call that has to wait).
    pub fn new(duration: Duration) -> Result<Self> {
        if duration.is_zero() {
            return Err(Error::config("timeout of 0s is invalid; set a positive duration (e.g. 30000 ms)"));
        }
        Ok(Timeout { duration })
    }

    /// The limit.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Runs `fut` under the limit ([`with_timeout`]).
    pub async fn run<T, F>(&self, what: &str, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        with_timeout(self.duration, what, fut).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[tokio::test(start_paused = true)]
    async fn fires_when_the_call_is_too_slow() {
        let start = tokio::time::Instant::now();
        let err = with_timeout(Duration::from_millis(250), "GET /slow", async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.is_retryable() && err.trips_breaker());
        assert!(err.to_string().contains("GET /slow did not finish within 250ms"), "{err}");
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn passes_results_and_errors_through() {
        let ok = with_timeout(Duration::from_secs(1), "fast", async {
            tokio::time::sleep(Duration::from_millis(999)).await;
            Ok(5)
        })
        .await;
        assert_eq!(ok.unwrap(), 5);
        let err = with_timeout(Duration::from_secs(1), "fast", async { Err::<(), _>(Error::rejected("no")) }).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected);
    }

    #[tokio::test(start_paused = true)]
    async fn validated_form_rejects_zero() {
        let err = Timeout::new(Duration::ZERO).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("0s"), "{err}");
        let t = Timeout::new(Duration::from_millis(10)).unwrap();
        let err = t.run("x", std::future::pending::<Result<()>>()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
    }
}
