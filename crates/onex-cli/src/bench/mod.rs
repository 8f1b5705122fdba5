//! `onex bench SCENARIO`: our path and the raw baseline, in the same run (DESIGN §8).

pub mod report;

pub use report::{Latencies, ScenarioReport, Side};
