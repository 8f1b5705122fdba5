//! Temporary compile check (h6), removed after use.
#![allow(missing_docs, dead_code, unreachable_pub)]
#[path = "/work/main/crates/onex-cli/src/commands/dlq.rs"]
mod dlq;
mod bench {
    #[path = "/work/main/crates/onex-cli/src/bench/publisher.rs"]
    pub mod publisher;
    #[path = "/work/main/crates/onex-cli/src/bench/report.rs"]
    pub mod report;
}
