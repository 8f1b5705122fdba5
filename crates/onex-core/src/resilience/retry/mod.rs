//! Retry with exponential backoff and full jitter (DESIGN §5).
//!
//! [`RetryPolicy`] is the configuration and the decision ([`RetryPolicy::decide`],
//! [`RetryPolicy::backoff`]); [`Retry`] runs an async operation under it. The consumer engine
//! uses the policy directly (it retries in place while a partition waits); handlers and the
//! publisher go through [`Retry::run`].

mod executor;
mod policy;

pub use executor::{Retry, RetryOutcome, RetryStats};
pub use policy::{RetryDecision, RetryPolicy, StopReason};
