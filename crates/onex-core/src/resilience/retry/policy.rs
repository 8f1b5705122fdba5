use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// When and how long to wait before trying again.
///
/// Defaults (DESIGN §5): 3 retries, 100 ms initial backoff, ×2, 10 s cap, full jitter.
///
/// ```
/// use std::time::Duration;
/// use onex_core::resilience::RetryPolicy;
/// let policy = RetryPolicy { jitter: false, ..Default::default() };
/// policy.validate()?;
/// assert_eq!(policy.backoff(1), Duration::from_millis(100));
/// assert_eq!(policy.backoff(3), Duration::from_millis(400));
/// assert_eq!(policy.backoff(30), Duration::from_secs(10)); // capped
/// # Ok::<(), onex_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = no retries).
    pub max_retries: u32,
    /// Backoff before the first retry.
    #[serde(with = "crate::util::duration_ms")]
    pub initial_backoff: Duration,
    /// Growth factor per retry.
    pub multiplier: f64,
    /// Cap on one backoff.
    #[serde(with = "crate::util::duration_ms")]
    pub max_backoff: Duration,
    /// Stop retrying once this much time has passed since the first attempt.
    #[serde(with = "crate::util::opt_duration_ms")]
    pub max_elapsed: Option<Duration>,
    /// Full jitter: wait a random time in `[0, backoff]`.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(10),
            max_elapsed: None,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        RetryPolicy { max_retries: 0, ..Default::default() }
    }

    /// Checks the parameters; the error names the field, its value and what to set instead.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &str, value: String, fix: &str| {
            Err(Error::config(format!("retry policy: {field} = {value} is invalid; {fix}")).with("field", field))
        };
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return invalid(
                "multiplier",
                self.multiplier.to_string(),
                "use a finite factor >= 1.0 (1.0 = constant backoff, 2.0 = doubling)",
            );
        }
        if self.max_backoff < self.initial_backoff {
            return invalid(
                "max_backoff",
                format!("{:?}", self.max_backoff),
                &format!("it caps every wait, so it must be at least initial_backoff ({:?})", self.initial_backoff),
            );
        }
        if self.jitter && self.initial_backoff.is_zero() {
            return invalid(
                "initial_backoff",
                "0s".into(),
                "jitter spreads waits in [0, backoff], so with jitter the backoff must be > 0 (or set jitter = false)",
            );
        }
        if self.max_elapsed.is_some_and(|d| d.is_zero()) {
            return invalid(
                "max_elapsed",
                "0s".into(),
                "a zero budget allows no retry at all: leave it unset (no limit) or use max_retries = 0",
            );
        }
        Ok(())
    }

    /// The ceiling of the wait before retry `retry_number` (1 = the first retry):
    /// `min(initial_backoff * multiplier^(retry_number - 1), max_backoff)`, without jitter.
    /// A `retry_number` of 0 is treated as 1.
    pub fn backoff_ceiling(&self, retry_number: u32) -> Duration {
        let exponent = retry_number.saturating_sub(1).min(i32::MAX as u32) as i32;
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        let cap = self.max_backoff.as_secs_f64();
        // `min` first: the product can be infinite for large exponents, and Duration rejects that.
        if secs.is_nan() || secs >= cap {
            self.max_backoff
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }

    /// The wait before retry `retry_number` (1 = the first retry): [`RetryPolicy::backoff_ceiling`],
    /// or, with `jitter`, a uniformly random duration in `[0, ceiling]` (full jitter, so that
    /// many clients failing together do not retry together).
    pub fn backoff(&self, retry_number: u32) -> Duration {
        let ceiling = self.backoff_ceiling(retry_number);
        if !self.jitter {
            return ceiling;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }

    /// The retry decision after a failed attempt, given how many retries were already made
    /// and how long ago the first attempt started: wait this long, or stop (and why).
    ///
    /// A `Retry-After` from the error ([`Error::retry_after`]) replaces the computed backoff;
    /// it is not capped by `max_backoff` (the server asked for it) but is bounded by `max_elapsed`.
    /// Whether the error may be retried at all is the caller's call (see [`super::Retry::run`]).
    pub fn decide(&self, retries_done: u32, elapsed: Duration, err: &Error) -> RetryDecision {
        if retries_done >= self.max_retries {
            return RetryDecision::Stop(StopReason::MaxRetries);
        }
        let wait = err.retry_after().unwrap_or_else(|| self.backoff(retries_done + 1));
        if let Some(budget) = self.max_elapsed {
            if elapsed.saturating_add(wait) > budget {
                return RetryDecision::Stop(StopReason::MaxElapsed);
            }
        }
        RetryDecision::Wait(wait)
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Sleep this long, then try again.
    Wait(Duration),
    /// Give up and return the error.
    Stop(StopReason),
}

/// Why retrying stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The last attempt succeeded.
    Succeeded,
    /// The error may not be retried (not retryable, or not idempotent and possibly sent).
    NotRetryable,
    /// `max_retries` retries were made.
    MaxRetries,
    /// The next wait would pass `max_elapsed` since the first attempt.
    MaxElapsed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> RetryPolicy {
        RetryPolicy { jitter: false, ..Default::default() }
    }

    #[test]
    fn backoff_grows_geometrically_then_caps() {
        let p = fixed();
        let got: Vec<u128> = (1..=9).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(p.backoff(0), Duration::from_millis(100), "retry 0 is treated as the first retry");
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(10), "huge exponents saturate at the cap");
        let constant = RetryPolicy { multiplier: 1.0, ..fixed() };
        assert_eq!(constant.backoff(7), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_zero_and_the_ceiling() {
        let p = RetryPolicy::default();
        for n in 1..=10 {
            let ceiling = p.backoff_ceiling(n);
            let mut distinct = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let b = p.backoff(n);
                assert!(b <= ceiling, "retry {n}: {b:?} > {ceiling:?}");
                distinct.insert(b);
            }
            assert!(distinct.len() > 100, "retry {n}: jitter should spread waits, got {} distinct", distinct.len());
        }
    }

    #[test]
    fn defaults_validate() {
        RetryPolicy::default().validate().unwrap();
        RetryPolicy::none().validate().unwrap();
        RetryPolicy { initial_backoff: Duration::ZERO, max_backoff: Duration::ZERO, jitter: false, ..Default::default() }
            .validate()
            .unwrap();
    }

    #[test]
    fn validate_rejects_each_bad_parameter_with_a_clear_message() {
        let cases = [
            (RetryPolicy { multiplier: 0.5, ..Default::default() }, "multiplier = 0.5"),
            (RetryPolicy { multiplier: f64::NAN, ..Default::default() }, "multiplier = NaN"),
            (RetryPolicy { multiplier: f64::INFINITY, ..Default::default() }, "multiplier = inf"),
            (RetryPolicy { max_backoff: Duration::from_millis(50), ..Default::default() }, "max_backoff = 50ms"),
            (RetryPolicy { initial_backoff: Duration::ZERO, jitter: true, ..Default::default() }, "initial_backoff = 0s"),
            (RetryPolicy { max_elapsed: Some(Duration::ZERO), ..Default::default() }, "max_elapsed = 0s"),
        ];
        for (policy, needle) in cases {
            let err = policy.validate().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config);
            let text = err.to_string();
            assert!(text.contains(needle), "{text:?} should contain {needle:?}");
            assert!(text.contains("; "), "message should say what to do: {text}");
        }
    }

    #[test]
    fn decide_stops_at_max_retries_and_max_elapsed_and_honours_retry_after() {
        let p = RetryPolicy { max_elapsed: Some(Duration::from_secs(1)), ..fixed() };
        let err = Error::unavailable("503");
        assert_eq!(p.decide(0, Duration::ZERO, &err), RetryDecision::Wait(Duration::from_millis(100)));
        assert_eq!(p.decide(2, Duration::ZERO, &err), RetryDecision::Wait(Duration::from_millis(400)));
        assert_eq!(p.decide(3, Duration::ZERO, &err), RetryDecision::Stop(StopReason::MaxRetries));
        assert_eq!(p.decide(2, Duration::from_millis(600), &err), RetryDecision::Wait(Duration::from_millis(400)));
        assert_eq!(p.decide(2, Duration::from_millis(601), &err), RetryDecision::Stop(StopReason::MaxElapsed));
        let limited = Error::rate_limited("429", Some(Duration::from_millis(700)));
        assert_eq!(p.decide(0, Duration::ZERO, &limited), RetryDecision::Wait(Duration::from_millis(700)));
        assert_eq!(p.decide(0, Duration::from_millis(400), &limited), RetryDecision::Stop(StopReason::MaxElapsed));
        let unbounded = fixed();
        let long = Error::rate_limited("429", Some(Duration::from_secs(60)));
        assert_eq!(
            unbounded.decide(0, Duration::ZERO, &long),
            RetryDecision::Wait(Duration::from_secs(60)),
            "Retry-After is not capped by max_backoff"
        );
    }
}
