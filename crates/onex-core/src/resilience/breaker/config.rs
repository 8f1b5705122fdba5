use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Circuit breaker settings. Defaults (DESIGN §5): open after 5 consecutive failures,
/// half-open after 30 s, 1 probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BreakerConfig {
    /// Whether the breaker is active.
    pub enabled: bool,
    /// Consecutive counted failures that open the breaker.
    pub failure_threshold: u32,
    /// Optional failure-rate trip: open when, over `rate_window`, at least
    /// `rate_min_calls` calls were made and the failed share is ≥ `failure_rate`.
    pub failure_rate: Option<f64>,
    /// Window of the failure-rate trip.
    #[serde(with = "crate::util::duration_ms")]
    pub rate_window: Duration,
    /// Minimum calls in the window before the rate counts.
    pub rate_min_calls: u32,
    /// Time open before letting probes through.
    #[serde(with = "crate::util::duration_ms")]
    pub reset_timeout: Duration,
    /// Probes let through while half-open; all must succeed to close.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_threshold: 5,
            failure_rate: None,
            rate_window: Duration::from_secs(60),
            rate_min_calls: 20,
            reset_timeout: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// A disabled breaker: every call passes.
    pub fn disabled() -> Self {
        BreakerConfig { enabled: false, ..Default::default() }
    }

    /// Checks the parameters of an enabled breaker (a disabled one is not checked: its
    /// settings are unused). The error names the field, its value and what to set instead.
    pub fn validate(&self) -> crate::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let invalid = |field: &str, value: String, fix: &str| {
            Err(crate::Error::config(format!("circuit breaker: {field} = {value} is invalid; {fix}")).with("field", field))
        };
        if self.failure_threshold == 0 {
            return invalid("failure_threshold", "0".into(), "use at least 1 consecutive failure (default 5), or enabled = false");
        }
        if self.half_open_probes == 0 {
            return invalid("half_open_probes", "0".into(), "at least 1 probe must be let through to ever close again (default 1)");
        }
        if self.reset_timeout.is_zero() {
            return invalid("reset_timeout", "0s".into(), "use a positive time to stay open before probing (default 30000 ms)");
        }
        if let Some(rate) = self.failure_rate {
            if !(rate > 0.0 && rate <= 1.0) {
                return invalid("failure_rate", rate.to_string(), "use a share in (0, 1], e.g. 0.5 for 50 %, or leave it unset");
            }
            if self.rate_window.is_zero() {
                return invalid("rate_window", "0s".into(), "the failure-rate trip needs a positive window (default 60000 ms)");
            }
            if self.rate_min_calls == 0 {
                return invalid("rate_min_calls", "0".into(), "the failure-rate trip needs at least 1 call in the window (default 20)");
            }
        }
        Ok(())
    }
}
