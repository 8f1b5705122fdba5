//! `onex bench SCENARIO`: our path and the raw baseline, in the same run (DESIGN §8).

pub mod bus_kafka;
mod bus_memory;
pub mod bus_sqlite;
mod handled;
pub mod http;
mod kafka_raw;
pub mod postgres;
pub mod publisher;
pub mod report;
pub mod schema;

use onex_core::{Error, Result};

pub use report::{CpuClock, Latencies, RepeatedRuns, ScenarioReport, Side};

use crate::cli::BenchArgs;

/// 256-byte JSON payload used by the bus scenarios.
pub(crate) fn payload_256(i: u64) -> serde_json::Value {
    let mut v = serde_json::json!({"order_id": i, "customer": "c-0042", "currency": "EUR", "amount_cents": 12_345, "items": [{"sku": "sku-1", "qty": 2}], "note": ""});
    let len = serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0);
    v["note"] = serde_json::json!("x".repeat(256usize.saturating_sub(len)));
    v
}

/// Scenario names.
pub const SCENARIOS: [&str; 7] = ["bus-memory", "bus-sqlite", "bus-kafka", "http", "postgres", "publisher", "schema"];

/// Refuses a count of zero, for every scenario alike: a run of nothing measures nothing
/// (and some scenarios would print a ratio of 0, or wait forever for a first message).
fn require_work(args: &BenchArgs) -> Result<()> {
    if args.repeat == 0 {
        return Err(Error::config(format!("bench {}: --repeat 0 runs nothing; use at least 1", args.scenario)));
    }
    for (flag, value) in [("--messages", args.messages), ("--requests", args.requests)] {
        if value == Some(0) {
            return Err(Error::config(format!("bench {}: {flag} 0 measures nothing; use at least 1000", args.scenario)));
        }
    }
    Ok(())
}

fn levels(args: &BenchArgs) -> Vec<usize> {
    if args.concurrency.is_empty() {
        vec![1, 64]
    } else {
        args.concurrency.clone()
    }
}

pub(crate) async fn run(args: BenchArgs, json: bool) -> Result<()> {
    let summaries = repeated(&args, |report| report.print(json)).await?;
    if args.repeat > 1 {
        for summary in &summaries {
            summary.print(json);
        }
    }
    Ok(())
}

/// Runs the scenario `args.repeat` times, handing each measurement to `each` as it is made,
/// and gathers each of the scenario's measurements over the runs.
async fn repeated(args: &BenchArgs, mut each: impl FnMut(&ScenarioReport)) -> Result<Vec<RepeatedRuns>> {
    require_work(args)?;
    let mut summaries: Vec<RepeatedRuns> = Vec::new();
    for _ in 0..args.repeat {
        for report in once(args).await? {
            each(&report);
            match summaries.iter_mut().find(|s| s.scenario == report.scenario) {
                Some(summary) => summary.add(&report),
                None => summaries.push(RepeatedRuns::first(&report)),
            }
        }
    }
    Ok(summaries)
}

/// One run of the scenario: its measurements (one per level or phase).
async fn once(args: &BenchArgs) -> Result<Vec<ScenarioReport>> {
    let reports = match args.scenario.as_str() {
        "bus-memory" => bus_memory::run(args.messages.unwrap_or(1_000_000)).await?,
        "bus-sqlite" => bus_sqlite::run(args.messages.unwrap_or(200_000)).await?,
        "http" => http::run(&levels(args), args.requests.unwrap_or(20_000)).await?,
        "postgres" => postgres::run(&levels(args), args.requests.unwrap_or(20_000)).await?,
        "schema" => schema::run(args.messages.unwrap_or(200_000)).await?,
        "bus-kafka" => {
            let brokers = args
                .brokers
                .as_deref()
                .ok_or_else(|| Error::config("bench bus-kafka needs --brokers HOST:PORT (or ONEX_KAFKA_BROKERS)"))?;
            bus_kafka::run(brokers, args.messages.unwrap_or(1_000_000)).await?
        }
        "publisher" => publisher::run(&args.bus, args.brokers.as_deref(), args.messages.unwrap_or(100_000)).await?,
        other => {
            return Err(Error::config(format!("unknown bench scenario {other:?}; known: {}", SCENARIOS.join(", "))));
        }
    };
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(scenario: &str, messages: Option<u64>, requests: Option<u64>) -> BenchArgs {
        // Port 9 (discard) answers nothing: a scenario that got past the check would fail
        // differently, or not at all.
        BenchArgs {
            scenario: scenario.to_string(),
            messages,
            requests,
            concurrency: vec![1],
            brokers: Some("127.0.0.1:9".into()),
            bus: Vec::new(),
            repeat: 1,
        }
    }

    #[tokio::test]
    async fn a_count_of_zero_is_refused_before_anything_runs() {
        for scenario in SCENARIOS {
            let Err(e) = run(args(scenario, Some(0), None), true).await else { panic!("{scenario}: --messages 0 was accepted") };
            assert_eq!(e.kind(), onex_core::ErrorKind::Config, "{e}");
            assert!(e.to_string().contains(&format!("bench {scenario}: --messages 0")), "{e}");
            let Err(e) = run(args(scenario, None, Some(0)), true).await else { panic!("{scenario}: --requests 0 was accepted") };
            assert!(e.to_string().contains("--requests 0"), "{e}");
            let Err(e) = run(BenchArgs { repeat: 0, ..args(scenario, None, None) }, true).await else {
                panic!("{scenario}: --repeat 0 was accepted")
            };
            assert!(e.to_string().contains(&format!("bench {scenario}: --repeat 0")), "{e}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_publisher_scenario_leaves_no_temporary_bus_behind() {
        // No other test of this binary runs the publisher scenario on its default buses.
        let leftovers = || {
            std::fs::read_dir(std::env::temp_dir())
                .unwrap()
                .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("onex-bench-publisher-")))
                .count()
        };
        let before = leftovers();
        let on_defaults = BenchArgs { brokers: None, repeat: 2, ..args("publisher", Some(1_000), None) };
        let summaries = repeated(&on_defaults, |_| {}).await.unwrap();
        assert!(summaries.iter().any(|s| s.scenario.starts_with("publisher/sqlite/")), "ran on sqlite");
        assert_eq!(leftovers(), before, "each run removes its sqlite file");
        // Kafka at a port that answers nothing fails after memory and sqlite ran.
        let failing = BenchArgs { brokers: Some("127.0.0.1:9".into()), ..args("publisher", Some(1_000), None) };
        assert!(repeated(&failing, |_| {}).await.is_err());
        assert_eq!(leftovers(), before, "a failed run removes its sqlite file too");
    }

    #[tokio::test]
    async fn repeated_runs_gather_every_measurement_of_each_scenario() {
        let args = BenchArgs { repeat: 3, ..args("schema", Some(2_000), None) };
        let mut seen = Vec::new();
        let summaries = repeated(&args, |r| seen.push((r.scenario.clone(), r.ratio))).await.unwrap();
        assert_eq!(seen.len(), 3, "one measurement per run: {seen:?}");
        assert_eq!(summaries.len(), 1);
        let summary = &summaries[0];
        assert_eq!(summary.scenario, "schema");
        assert_eq!(summary.ratios, seen.iter().map(|(_, ratio)| *ratio).collect::<Vec<_>>());
        assert_eq!(summary.target, Some(0.8));
    }
}
