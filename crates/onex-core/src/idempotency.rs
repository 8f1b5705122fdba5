//! The [`IdempotencyStore`] trait (DESIGN §3 rule 8).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Outcome of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimOutcome {
    /// The caller owns the id until it completes, releases, or the lease expires.
    Claimed,
    /// The id was completed before: skip the work.
    Duplicate,
    /// Someone else holds an unexpired lease.
    InProgress,
}

/// Records which ids were handled so a redelivery does not repeat side effects.
///
/// `claim` is atomic: of many concurrent claims of one id exactly one gets `Claimed`.
/// A claim whose lease expired (its holder died) can be taken again.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `id` in `domain` (e.g. the consumer group) for `lease`.
    async fn claim(&self, domain: &str, id: &str, lease: Duration) -> Result<ClaimOutcome>;
    /// Marks `id` done: later claims answer `Duplicate`.
    async fn complete(&self, domain: &str, id: &str) -> Result<()>;
    /// Gives up a claim so it can be taken again at once.
    async fn release(&self, domain: &str, id: &str) -> Result<()>;
    /// Removes completed entries older than `ttl` and expired claims; returns how many.
    async fn cleanup_expired(&self, ttl: Duration) -> Result<u64>;
}
