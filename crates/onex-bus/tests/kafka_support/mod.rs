//! Shared helpers of the kafka_* tests: broker address, skip-or-fail, URLs.

#![allow(dead_code, unreachable_pub)]

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onex_bus::kafka::KafkaTransport;
use onex_bus::testing::{Features, Harness};
use onex_bus::transport::Transport;
use onex_bus::{BusConfig, TransportBus};

/// `ONEX_KAFKA_BROKERS`, default `127.0.0.1:9092`.
pub fn brokers() -> String {
    std::env::var("ONEX_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// Group settings that make tests join and rebalance in seconds instead of tens of seconds.
pub const FAST_GROUPS: &str = "session.timeout.ms=6000&heartbeat.interval.ms=500";

/// A `kafka://` URL for the test broker with fast group settings and `extra` query settings.
pub fn url(extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "&" };
    format!("kafka://{}?{FAST_GROUPS}{sep}{extra}", brokers())
}

fn reachable(brokers: &str) -> bool {
    brokers.split(',').any(|b| {
        b.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
    })
}

/// The broker address, or `None` (after a loud message) when it is unreachable and
/// `ONEX_REQUIRE_KAFKA` is unset. With `ONEX_REQUIRE_KAFKA` set, an unreachable broker fails.
pub fn require_broker() -> Option<String> {
    let b = brokers();
    if reachable(&b) {
        return Some(b);
    }
    if std::env::var_os("ONEX_REQUIRE_KAFKA").is_some() {
        panic!("Kafka broker {b} is unreachable and ONEX_REQUIRE_KAFKA is set; start one with scripts/tansu.sh");
    }
    // Written past the test harness's capture, so a skip is visible in a normal run.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("\n!!!!! SKIPPED: no Kafka broker at {b} (start one with scripts/tansu.sh, or set ONEX_KAFKA_BROKERS); set ONEX_REQUIRE_KAFKA=1 to fail instead !!!!!\n").as_bytes());
    None
}

/// A transport on the test broker.
pub async fn transport(extra: &str) -> Arc<KafkaTransport> {
    KafkaTransport::from_url_str(&url(extra)).await.expect("connect to the test Kafka broker")
}

/// A new topic with a unique name starting with `prefix` and `partitions` partitions, created
/// through `t`'s admin (tansu does not create topics on its own).
pub async fn new_topic(t: &KafkaTransport, prefix: &str, partitions: u32) -> String {
    let topic = onex_bus::testing::unique_topic(prefix);
    t.admin().create_topic(onex_core::TopicSpec::new(&topic, partitions)).await.expect("create the test topic");
    topic
}

/// The conformance harness: every `bus()` is a new transport (another "process") on the
/// same broker, so topics, records and committed offsets are shared.
pub struct KafkaHarness {
    pub settle: Duration,
    pub scale: f64,
}

impl KafkaHarness {
    /// `None` when the test must skip (see [`require_broker`]).
    pub fn new() -> Option<Self> {
        require_broker().map(|_| KafkaHarness { settle: Duration::from_secs(8), scale: 1.0 })
    }
}

#[async_trait]
impl Harness for KafkaHarness {
    fn features(&self) -> Features {
        Features { persistent: true, groups: true, restart_resume: true, scale: self.scale, settle: self.settle }
    }

    async fn bus(&self) -> Arc<TransportBus> {
        let t = transport("").await;
        Arc::new(TransportBus::with_config(t, BusConfig::default()))
    }
}
