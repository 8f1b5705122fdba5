//! Resilience primitives (DESIGN §5): [`retry`], [`breaker`]. Small pieces that wrap an
//! async call; handlers and the publisher are wrapped, they never loop on their own.

pub mod breaker;
pub mod retry;

pub use breaker::BreakerConfig;
pub use retry::RetryPolicy;
