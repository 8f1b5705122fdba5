//! Retry with exponential backoff and full jitter.

mod policy;

pub use policy::RetryPolicy;
