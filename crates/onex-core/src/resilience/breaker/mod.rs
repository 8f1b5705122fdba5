//! Circuit breaker.

mod config;

pub use config::BreakerConfig;
