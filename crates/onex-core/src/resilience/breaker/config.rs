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
