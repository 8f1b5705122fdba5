//! Resilience primitives (DESIGN §5), tower-style: small pieces that wrap an async call.
//! Handlers and the publisher are wrapped; they never loop on their own.
//!
//! - [`retry`] — [`RetryPolicy`] (exponential backoff, full jitter, max retries, max elapsed,
//!   `Retry-After`) and the [`Retry`] executor.
//! - [`timeout`] — [`with_timeout`] and [`Timeout`].
//! - [`breaker`] — [`CircuitBreaker`] (consecutive-failure and failure-rate trips, half-open probes).
//! - [`limit`] — [`ConcurrencyLimit`].
//!
//! Constructors validate their parameters and return [`crate::Result`]; all waiting uses
//! `tokio::time`, so behaviour is testable on a paused clock.

pub mod breaker;
pub mod limit;
pub mod retry;
pub mod timeout;

pub use breaker::{BreakerConfig, BreakerCounters, BreakerPermit, BreakerState, CircuitBreaker};
pub use limit::{ConcurrencyLimit, ConcurrencyPermit};
pub use retry::{Retry, RetryDecision, RetryOutcome, RetryPolicy, RetryStats, StopReason};
pub use timeout::{with_timeout, Timeout};
