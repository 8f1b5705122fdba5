use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When and how long to wait before trying again.
///
/// Defaults (DESIGN §5): 3 retries, 100 ms initial backoff, ×2, 10 s cap, full jitter.
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
}
