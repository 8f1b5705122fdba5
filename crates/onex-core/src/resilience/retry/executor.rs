use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::policy::{RetryDecision, RetryPolicy, StopReason};
use crate::{Error, Result};

/// Runs an async operation under a validated [`RetryPolicy`].
///
/// ```
/// use onex_core::{Error, resilience::{Retry, RetryPolicy}};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> onex_core::Result<()> {
/// tokio::time::pause(); // the doc test does not want to wait for the backoff
/// let retry = Retry::new(RetryPolicy::default())?;
/// let outcome = retry
///     .run(|attempt| async move { if attempt < 3 { Err(Error::unavailable("503")) } else { Ok(attempt) } }, |err, _| err.is_retryable())
///     .await;
/// assert_eq!(outcome.result?, 3);
/// assert_eq!((outcome.stats.attempts, outcome.stats.retries), (3, 2));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Retry {
    policy: RetryPolicy,
}

/// What a [`Retry::run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryStats {
    /// Attempts made (the first one included).
    pub attempts: u32,
    /// Retries made (`attempts - 1`).
    pub retries: u32,
    /// Time from the start of the first attempt to the end of the last.
    #[serde(with = "crate::util::duration_ms")]
    pub elapsed: Duration,
    /// Total time slept between attempts.
    #[serde(with = "crate::util::duration_ms")]
    pub waited: Duration,
    /// Why the loop ended.
    pub stop: StopReason,
}

/// The result of the last attempt, and the statistics of the run.
#[derive(Debug)]
pub struct RetryOutcome<T> {
    /// The last attempt's result.
    pub result: Result<T>,
    /// What happened.
    pub stats: RetryStats,
}

impl Retry {
    /// A retry executor; the policy is validated ([`RetryPolicy::validate`]).
    pub fn new(policy: RetryPolicy) -> Result<Self> {
        policy.validate()?;
        Ok(Retry { policy })
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Calls `operation(attempt)` (attempt counts from 1) until it succeeds or retrying stops.
    ///
    /// After a failure, `may_retry(&err, attempt)` says whether this error may be retried at all
    /// (retryable kind, idempotency); then the policy decides: stop after `max_retries` retries,
    /// stop when the next wait would pass `max_elapsed` since the first attempt, otherwise wait
    /// `Retry-After` when the error carries one, else the jittered backoff. Sleeps use
    /// `tokio::time`, so tests run on a paused clock.
    pub async fn run<T, F, Fut, P>(&self, operation: F, may_retry: P) -> RetryOutcome<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
        P: FnMut(&Error, u32) -> bool,
    {
        self.run_since(Instant::now(), operation, may_retry).await
    }

    /// [`Retry::run`] for a caller that already read the clock when the call began:
    /// `max_elapsed` and [`RetryStats::elapsed`] count from `started`, and the executor reads
    /// the clock only after a failure and once at the end (a caller timing the call can take
    /// [`RetryStats::elapsed`] instead of reading it again).
    pub async fn run_since<T, F, Fut, P>(&self, started: Instant, mut operation: F, mut may_retry: P) -> RetryOutcome<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
        P: FnMut(&Error, u32) -> bool,
    {
        let mut waited = Duration::ZERO;
        let mut attempt = 1;
        loop {
            // Scoped so that the failed result's storage ends before the wait: the future
            // does not keep it (every caller's future holds this one).
            let wait = {
                let result = operation(attempt).await;
                let next = match &result {
                    Ok(_) => Err(StopReason::Succeeded),
                    Err(err) if !may_retry(err, attempt) => Err(StopReason::NotRetryable),
                    Err(err) => match self.policy.decide(attempt - 1, started.elapsed(), err) {
                        RetryDecision::Stop(reason) => Err(reason),
                        RetryDecision::Wait(wait) => {
                            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %err.report(), "retrying after failure");
                            Ok(wait)
                        }
                    },
                };
                match next {
                    Ok(wait) => wait,
                    Err(stop) => {
                        let stats = RetryStats { attempts: attempt, retries: attempt - 1, elapsed: started.elapsed(), waited, stop };
                        return RetryOutcome { result, stats };
                    }
                }
            };
            // Boxed: the rare path; inline, its timer would enlarge every caller's future.
            Box::pin(tokio::time::sleep(wait)).await;
            waited += wait;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fixed(max_retries: u32) -> RetryPolicy {
        RetryPolicy { max_retries, jitter: false, ..Default::default() }
    }

    #[test]
    fn new_validates_the_policy() {
        let err = Retry::new(RetryPolicy { multiplier: 0.0, ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("multiplier"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn makes_exactly_max_retries_retries() {
        let calls = AtomicU32::new(0);
        let retry = Retry::new(fixed(3)).unwrap();
        let outcome = retry
            .run(
                |_| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(Error::unavailable("down"))
                },
                |e, _| e.is_retryable(),
            )
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!((outcome.stats.attempts, outcome.stats.retries, outcome.stats.stop), (4, 3, StopReason::MaxRetries));
        assert_eq!(outcome.stats.waited, Duration::from_millis(100 + 200 + 400));
        assert_eq!(outcome.result.unwrap_err().kind(), crate::ErrorKind::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_retries_means_one_attempt() {
        let outcome =
            Retry::new(RetryPolicy::none()).unwrap().run(|_| async { Err::<(), _>(Error::connection("refused")) }, |_, _| true).await;
        assert_eq!((outcome.stats.attempts, outcome.stats.stop), (1, StopReason::MaxRetries));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_on_non_retryable_errors_at_once() {
        let outcome =
            Retry::new(fixed(5)).unwrap().run(|_| async { Err::<(), _>(Error::rejected("bad input")) }, |e, _| e.is_retryable()).await;
        assert_eq!((outcome.stats.attempts, outcome.stats.stop), (1, StopReason::NotRetryable));
        assert_eq!(outcome.stats.elapsed, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn succeeds_after_transient_failures() {
        let outcome = Retry::new(fixed(5))
            .unwrap()
            .run(
                |attempt| async move {
                    if attempt <= 2 {
                        Err(Error::timeout("slow", Duration::from_secs(1)))
                    } else {
                        Ok("ok")
                    }
                },
                |e, _| e.is_retryable(),
            )
            .await;
        assert_eq!(outcome.result.unwrap(), "ok");
        assert_eq!((outcome.stats.attempts, outcome.stats.retries, outcome.stats.stop), (3, 2, StopReason::Succeeded));
        assert_eq!(outcome.stats.elapsed, Duration::from_millis(300), "paused clock: exactly the two backoffs");
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_the_next_wait_would_pass_max_elapsed() {
        // Each attempt takes 1 s; waits 100, 200, 400 ms. Budget 2.5 s: attempt 1 ends at 1 s,
        // +100 ms wait -> attempt 2 ends at 2.1 s, +200 ms would end at 2.3 s (ok) -> attempt 3
        // ends at 3.3 s; the next wait would pass 2.5 s, so stop after 3 attempts.
        let policy = RetryPolicy { max_elapsed: Some(Duration::from_millis(2500)), ..fixed(10) };
        let outcome = Retry::new(policy)
            .unwrap()
            .run(
                |_| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Err::<(), _>(Error::unavailable("down"))
                },
                |_, _| true,
            )
            .await;
        assert_eq!((outcome.stats.attempts, outcome.stats.stop), (3, StopReason::MaxElapsed));
        assert_eq!(outcome.stats.elapsed, Duration::from_millis(3300));
    }

    #[test]
    fn the_future_does_not_keep_a_failed_result_across_the_wait() {
        // Every publish and handler call holds this future; a result kept across the
        // backoff sleep would make it as large as the operation's output.
        fn size<T>() -> usize {
            let retry = Retry::new(fixed(1)).unwrap();
            let fut = retry.run_since(Instant::now(), |_| async { Err::<T, _>(Error::unavailable("down")) }, |_, _| true);
            std::mem::size_of_val(&fut)
        }
        let (small, large) = (size::<()>(), size::<[u8; 4096]>());
        assert!(large < small + 1024, "a 4 KiB output grew the future from {small} to {large} bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn run_since_counts_the_budget_and_the_time_from_the_given_start() {
        // The caller started 2 s before the first attempt: with a 2.5 s budget, attempt 1 ends
        // at 3 s, past it, so there is no retry; `run` from now would have retried.
        let started = Instant::now();
        tokio::time::advance(Duration::from_secs(2)).await;
        let policy = RetryPolicy { max_elapsed: Some(Duration::from_millis(2500)), ..fixed(10) };
        let outcome = Retry::new(policy)
            .unwrap()
            .run_since(
                started,
                |_| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Err::<(), _>(Error::unavailable("down"))
                },
                |_, _| true,
            )
            .await;
        assert_eq!((outcome.stats.attempts, outcome.stats.stop), (1, StopReason::MaxElapsed));
        assert_eq!(outcome.stats.elapsed, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_instead_of_the_backoff() {
        let start = Instant::now();
        let mut seen = Vec::new();
        let outcome = Retry::new(fixed(3))
            .unwrap()
            .run(
                |attempt| {
                    seen.push(start.elapsed());
                    async move {
                        if attempt == 1 {
                            Err(Error::rate_limited("429", Some(Duration::from_secs(7))))
                        } else {
                            Ok(())
                        }
                    }
                },
                |e, _| e.is_retryable(),
            )
            .await;
        outcome.result.unwrap();
        assert_eq!(seen, [Duration::ZERO, Duration::from_secs(7)]);
        assert_eq!(outcome.stats.waited, Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_past_max_elapsed_stops() {
        let policy = RetryPolicy { max_elapsed: Some(Duration::from_secs(5)), ..fixed(3) };
        let outcome = Retry::new(policy)
            .unwrap()
            .run(|_| async { Err::<(), _>(Error::rate_limited("429", Some(Duration::from_secs(60)))) }, |_, _| true)
            .await;
        assert_eq!((outcome.stats.attempts, outcome.stats.stop), (1, StopReason::MaxElapsed));
        assert_eq!(outcome.stats.waited, Duration::ZERO, "must not sleep past the budget");
    }

    #[tokio::test(start_paused = true)]
    async fn may_retry_sees_the_attempt_number() {
        let mut asked = Vec::new();
        let outcome = Retry::new(fixed(10))
            .unwrap()
            .run(
                |_| async { Err::<(), _>(Error::unavailable("x")) },
                |_, attempt| {
                    asked.push(attempt);
                    attempt < 2
                },
            )
            .await;
        assert_eq!(asked, [1, 2]);
        assert_eq!(outcome.stats.stop, StopReason::NotRetryable);
    }
}
