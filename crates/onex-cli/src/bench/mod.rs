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

pub use report::{CpuClock, Latencies, ScenarioReport, Side};

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

/// Refuses a scenario asked to send no messages: it would measure nothing.
fn require_messages(scenario: &str, messages: u64) -> Result<()> {
    match messages {
        0 => Err(Error::config(format!("bench {scenario}: --messages 0 measures nothing; use at least 1000"))),
        _ => Ok(()),
    }
}

fn levels(args: &BenchArgs) -> Vec<usize> {
    if args.concurrency.is_empty() {
        vec![1, 64]
    } else {
        args.concurrency.clone()
    }
}

pub(crate) async fn run(args: BenchArgs, json: bool) -> Result<()> {
    let reports = match args.scenario.as_str() {
        "bus-memory" => bus_memory::run(args.messages.unwrap_or(1_000_000)).await?,
        "bus-sqlite" => bus_sqlite::run(args.messages.unwrap_or(200_000)).await?,
        "http" => http::run(&levels(&args), args.requests.unwrap_or(20_000)).await?,
        "postgres" => postgres::run(&levels(&args), args.requests.unwrap_or(20_000)).await?,
        "schema" => schema::run(args.messages.unwrap_or(200_000)).await?,
        "bus-kafka" => {
            let brokers = args
                .brokers
                .as_deref()
                .ok_or_else(|| Error::config("bench bus-kafka needs --brokers HOST:PORT (or ONEX_KAFKA_BROKERS)"))?;
            bus_kafka::run(brokers, args.messages.unwrap_or(1_000_000)).await?
        }
        "publisher" => {
            let mut urls = args.bus.clone();
            if urls.is_empty() {
                let dir = std::env::temp_dir().join(format!("onex-bench-publisher-{}", uuid::Uuid::new_v4().simple()));
                std::fs::create_dir_all(&dir).map_err(|e| Error::config(format!("cannot create {}: {e}", dir.display())))?;
                urls = vec!["memory://".to_string(), format!("sqlite://{}", dir.join("bench.db").display())];
                if let Some(b) = &args.brokers {
                    urls.push(format!("kafka://{b}"));
                }
            }
            publisher::run(&urls, args.messages.unwrap_or(100_000)).await?
        }
        other => {
            return Err(Error::config(format!("unknown bench scenario {other:?}; known: {}", SCENARIOS.join(", "))));
        }
    };
    for r in &reports {
        r.print(json);
    }
    Ok(())
}
