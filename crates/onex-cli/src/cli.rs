//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// onex: event bus and handlers for services, and the tools to operate them.
#[derive(Debug, Parser)]
#[command(name = "onex", version, about, long_about = None)]
pub struct Cli {
    /// Bus URL: memory://, sqlite://PATH, kafka://HOST:PORT[,…], redpanda://… (default sqlite://.onex/onex.db).
    #[arg(long, global = true, env = "ONEX_BUS")]
    pub bus: Option<String>,
    /// Machine-readable output: one JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log filter (e.g. `info`, `onex_bus=debug`); logs go to stderr.
    #[arg(long, global = true, env = "ONEX_LOG", default_value = "warn")]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the order → inventory → payment demo: both patterns, correlation chains, the DLQ.
    Demo(DemoArgs),
    /// Publish events.
    Publish(PublishArgs),
    /// Consume events as a group member, printing each envelope.
    Consume(ConsumeArgs),
    /// Manage topics.
    Topics {
        /// What to do with topics.
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Dead letter queues: summary, list, replay.
    Dlq {
        /// What to do.
        #[command(subcommand)]
        action: crate::commands::dlq::DlqCommand,
    },
    /// Call a handler once: `onex exec http --url URL GET /path`, `onex exec postgres --url URL db.query SQL`.
    Exec(crate::commands::exec::ExecArgs),
    /// Schema registry: register, check, validate, configure.
    Schema {
        /// Remote Confluent-compatible registry URL (default: the registry embedded in the sqlite bus file).
        #[arg(long, env = "ONEX_REGISTRY")]
        registry: Option<String>,
        /// What to do.
        #[command(subcommand)]
        action: crate::commands::schema::SchemaCommand,
    },
    /// Benchmarks: our path against the raw baseline in the same run.
    Bench(BenchArgs),
    /// Print the version.
    Version,
}

/// `onex demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 5)]
    pub orders: u32,
}

/// `onex publish` arguments.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Topic.
    #[arg(long)]
    pub topic: String,
    /// Event type (default: the topic name, when it is a valid event type).
    #[arg(long)]
    pub event_type: Option<String>,
    /// Partition key.
    #[arg(long)]
    pub key: Option<String>,
    /// JSON payload.
    #[arg(long, conflicts_with = "file")]
    pub payload: Option<String>,
    /// File holding the JSON payload.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Publish N events; each payload (an object) gets a "seq" field 0..N-1.
    #[arg(long)]
    pub count: Option<u64>,
    /// Correlation id (default: a new one per event).
    #[arg(long)]
    pub correlation_id: Option<uuid::Uuid>,
    /// Source of the events.
    #[arg(long, default_value = "onex-cli")]
    pub source: String,
    /// Validate against this Confluent-compatible registry (default: the registry embedded in a sqlite bus).
    #[arg(long, env = "ONEX_REGISTRY")]
    pub registry: Option<String>,
}

/// `onex consume` arguments.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic.
    #[arg(long)]
    pub topic: String,
    /// Consumer group.
    #[arg(long, default_value = "onex-consume")]
    pub group: String,
    /// Exit after N events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// A new group starts at the oldest record (default: only new records).
    #[arg(long)]
    pub from_beginning: bool,
}

/// `onex topics` actions.
#[derive(Debug, Subcommand)]
pub enum TopicsAction {
    /// List topics.
    List,
    /// Create a topic.
    Create {
        /// Name.
        name: String,
        /// Partitions.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// Settings, KEY=VALUE (e.g. retention.records=1000).
        #[arg(long = "config", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
    },
    /// Describe a topic with its partition watermarks.
    Describe {
        /// Name.
        name: String,
    },
    /// Delete a topic.
    Delete {
        /// Name.
        name: String,
    },
}

/// `onex bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// bus-memory, bus-sqlite, bus-kafka, http, postgres, publisher, schema.
    pub scenario: String,
    /// Messages (bus scenarios).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Requests (handler scenarios).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Concurrency levels (handler scenarios), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// Kafka brokers (bus-kafka; publisher).
    #[arg(long, env = "ONEX_KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Bus URLs to run the publisher scenario on (default: memory, a temp sqlite file, and kafka with --brokers).
    #[arg(long = "on")]
    pub bus: Vec<String>,
    /// Runs the scenario this many times, then prints the median ratio of each of its
    /// measurements: one run's ratio moves by ±10–30 % on a shared machine.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}
