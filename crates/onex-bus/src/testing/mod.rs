//! The public conformance suite (feature `testing`): one set of tests every backend runs
//! unchanged, with capability flags.
//!
//! A backend provides a [`Harness`] and one line:
//!
//! ```ignore
//! onex_bus::conformance_suite!(my_backend, MyHarness::new());
//! ```
//!
//! which expands to one `#[tokio::test]` per conformance test. Each test uses its own topics
//! (a random suffix), so they run in parallel against one backend.

mod suite;
mod support;

use std::sync::Arc;

use async_trait::async_trait;

pub use suite::*;
pub use support::*;

use crate::bus::TransportBus;

/// What a backend can do; a test whose feature is off skips itself and says why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    /// Records survive closing the bus and opening a new one on the same storage.
    pub persistent: bool,
    /// Members of one group on different buses split partitions.
    pub groups: bool,
    /// Committed offsets survive a restart of the consumer.
    pub restart_resume: bool,
    /// Scale factor for event counts (1.0 = the full suite; slower backends may lower it).
    pub scale: f64,
    /// How long a group takes to settle after members join (Kafka rebalances take seconds).
    pub settle: std::time::Duration,
}

impl Default for Features {
    fn default() -> Self {
        Features { persistent: false, groups: true, restart_resume: true, scale: 1.0, settle: std::time::Duration::from_millis(300) }
    }
}

/// Builds buses on one backend for the suite.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// The backend's capabilities.
    fn features(&self) -> Features;
    /// A new bus on the shared storage. Calling it again is "another process" or "a restart":
    /// the new bus sees the topics, records and committed offsets of the earlier ones.
    async fn bus(&self) -> Arc<TransportBus>;
}

/// Expands to one `#[tokio::test]` per conformance test, in a module named `$name`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $harness:expr) => {
        $crate::conformance_suite!(@tests $name, $harness;
            envelope_round_trip,
            per_key_order,
            groups_fan_out,
            group_members_split_partitions,
            retryable_failure_retries_then_dlq,
            non_retryable_goes_straight_to_dlq,
            panic_goes_to_dlq_and_consumer_continues,
            undecodable_bytes_go_to_dlq,
            stop_drains_in_flight_and_commits,
            restart_resumes_after_committed_offset,
            binary_values_survive_dlq,
            structured_and_plain_records_decode,
            auto_create_can_be_turned_off,
            invalid_topic_names_are_rejected,
            publish_batches_keep_order_and_fail_alone
        );
    };
    (@tests $name:ident, $harness:expr; $($test:ident),* $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let harness = $harness;
                    $crate::testing::$test(&harness).await;
                }
            )*
        }
    };
}
