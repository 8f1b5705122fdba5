//! `onex bench publisher`: [`BusPublisher::publish`](onex_core::EventPublisher::publish)
//! against [`TransportBus::publish_envelope`] of the same events, on the same backend, in
//! the same run. Target: ours ≥ 0.9 of the direct path's throughput.
//!
//! Both sides publish the same payloads, event type, source and partition keys to a fresh
//! topic of the same bus, from the same number of tasks. Two comparisons per bus:
//!
//! - `publisher/…`: `EventPublisher::publish` (builds the envelope, routes, retry executor,
//!   circuit breaker, metrics) against what an application does without it — build the
//!   same envelope and call `TransportBus::publish_envelope`.
//! - `publisher-prebuilt/…`: the publisher's own overhead — the same prebuilt envelopes
//!   through `BusPublisher::publish_envelope` and `TransportBus::publish_envelope`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use onex_bus::publisher::BusPublisher;
use onex_bus::TransportBus;
use onex_core::{Envelope, Error, EventBus, EventPublisher, PublishOptions, Result, TopicSpec};

use super::report::{Latencies, ScenarioReport, Side};

const EVENT_TYPE: &str = "bench.order_created.v1";
const PARTITIONS: u32 = 4;
const KEYS: u64 = 64;
/// Publishing tasks per side: one (latency of a lone caller) and many (sqlite group commit,
/// Kafka batching).
const CONCURRENCY: [usize; 2] = [1, 32];
const TARGET: f64 = 0.9;
/// Rounds the sides alternate in.
const ROUNDS: u64 = 5;

/// A 256-byte JSON payload.
fn payload(i: u64) -> Bytes {
    let head = format!(r#"{{"order_id":{i},"customer":"c-0042","currency":"EUR","amount_cents":12345,"note":""#);
    let pad = 256usize.saturating_sub(head.len() + 2);
    Bytes::from(format!("{head}{}\"}}", "x".repeat(pad)))
}

fn key(i: u64) -> String {
    format!("k{}", i % KEYS)
}

/// Runs the scenario on each URL (default: `memory://`, a temporary sqlite file removed
/// afterwards, and `kafka://BROKERS` when `brokers` is given).
pub async fn run(bus_urls: &[String], brokers: Option<&str>, messages: u64) -> Result<Vec<ScenarioReport>> {
    let tmp = std::env::temp_dir().join(format!("onex-bench-publisher-{}", uuid::Uuid::new_v4().simple()));
    let urls: Vec<String> = if bus_urls.is_empty() {
        std::fs::create_dir_all(&tmp).map_err(|e| Error::config(format!("bench publisher: cannot create {}: {e}", tmp.display())))?;
        default_urls(&tmp, brokers)
    } else {
        bus_urls.to_vec()
    };
    let reports = async {
        let mut reports = Vec::new();
        for url in &urls {
            let bus = onex_bus::connect(url).await?;
            for concurrency in CONCURRENCY {
                reports.extend(scenario(&bus, messages_for(bus.backend(), messages, concurrency), concurrency).await?);
            }
            bus.transport().close().await?;
        }
        Ok(reports)
    }
    .await;
    // Removed whether the runs succeeded or not.
    let _ = std::fs::remove_dir_all(&tmp);
    reports
}

/// The buses the scenario runs on when none are named: memory, a sqlite file in `dir`, and
/// kafka when there are brokers.
fn default_urls(dir: &std::path::Path, brokers: Option<&str>) -> Vec<String> {
    let mut urls = vec!["memory://".to_string(), format!("sqlite://{}", dir.join("bench.db").display())];
    urls.extend(brokers.map(|b| format!("kafka://{b}")));
    urls
}

/// Messages per side. A broker acknowledges one lone publish in milliseconds (`acks=all`),
/// so on Kafka/Redpanda the count is capped to keep a run within minutes; the report's
/// `count` says how many were measured.
fn messages_for(backend: &str, messages: u64, concurrency: usize) -> u64 {
    match backend {
        "kafka" | "redpanda" => messages.min(if concurrency == 1 { 2_000 } else { 20_000 }),
        _ => messages,
    }
}

async fn fresh_topic(bus: &TransportBus, side: &str) -> Result<String> {
    let topic = format!("bench-publisher-{side}-{}", uuid::Uuid::new_v4().simple());
    bus.admin().create_topic(TopicSpec::new(&topic, PARTITIONS)).await?;
    bus.ensure_topic(&topic).await?;
    Ok(topic)
}

/// Two reports per bus and concurrency: `publisher/…` (`EventPublisher::publish` against
/// building the same envelope and `publish_envelope`) and `publisher-prebuilt/…` (the
/// publisher's own overhead: the same prebuilt envelopes through both).
async fn scenario(bus: &Arc<TransportBus>, messages: u64, concurrency: usize) -> Result<Vec<ScenarioReport>> {
    let backend = bus.backend().to_string();
    let publisher = BusPublisher::builder(bus.clone()).source("bench").build()?;
    // Warm both paths (topic metadata, connections, allocator) outside the measurement.
    let warm = (messages / 20).clamp(100, 5_000);
    direct(bus, &fresh_topic(bus, "warm-direct").await?, warm, concurrency, Build::InLoop).await?;
    ours(&publisher, &fresh_topic(bus, "warm-ours").await?, warm, concurrency).await?;

    // Alternate the sides in rounds so drift on a shared machine (other processes, CPU
    // frequency, allocator state) falls on both sides alike.
    let mut sides: [(Duration, Latencies); 4] = Default::default();
    let per_round = messages.div_ceil(ROUNDS);
    let mut left = messages;
    while left > 0 {
        let n = per_round.min(left);
        left -= n;
        let round = [
            direct(bus, &fresh_topic(bus, "direct").await?, n, concurrency, Build::InLoop).await?,
            ours(&publisher, &fresh_topic(bus, "ours").await?, n, concurrency).await?,
            direct(bus, &fresh_topic(bus, "pre-direct").await?, n, concurrency, Build::Prebuilt).await?,
            ours_prebuilt(&publisher, &fresh_topic(bus, "pre-ours").await?, n, concurrency).await?,
        ];
        for (side, (elapsed, lat)) in sides.iter_mut().zip(round) {
            side.0 += elapsed;
            side.1.merge(&lat);
        }
    }
    let [(direct_elapsed, direct_lat), (ours_elapsed, ours_lat), (pre_direct_elapsed, pre_direct_lat), (pre_ours_elapsed, pre_ours_lat)] =
        sides;
    publisher.close(Duration::from_secs(30)).await?;
    let m = publisher.metrics();
    if m.events_published != 2 * messages + warm || m.events_failed != 0 {
        return Err(Error::protocol(format!(
            "bench publisher: the publisher counted {} published and {} failed, expected {} and 0",
            m.events_published,
            m.events_failed,
            2 * messages + warm
        )));
    }
    let params =
        serde_json::json!({ "backend": backend, "payload_bytes": 256, "partitions": PARTITIONS, "concurrency": concurrency, "keys": KEYS });
    let publish = ScenarioReport::new(
        format!("publisher/{backend}/c{concurrency}"),
        Side::new("EventPublisher.publish(event_type, payload, opts)", messages, ours_elapsed, "msg/s", &ours_lat),
        Side::new("Envelope::from_json_bytes + TransportBus.publish_envelope", messages, direct_elapsed, "msg/s", &direct_lat),
        TARGET,
        params.clone(),
    );
    let prebuilt = ScenarioReport::new(
        format!("publisher-prebuilt/{backend}/c{concurrency}"),
        Side::new("BusPublisher.publish_envelope(prebuilt envelope)", messages, pre_ours_elapsed, "msg/s", &pre_ours_lat),
        Side::new("TransportBus.publish_envelope(prebuilt envelope)", messages, pre_direct_elapsed, "msg/s", &pre_direct_lat),
        TARGET,
        params,
    );
    Ok(vec![publish, prebuilt])
}

/// Whether the direct side builds each envelope inside the timed loop (as an application
/// without the publisher does) or gets them prebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    InLoop,
    Prebuilt,
}

/// Splits `0..messages` over `concurrency` tasks, each running `publish(i)` in order and
/// timing every call.
async fn drive<F, Fut>(messages: u64, concurrency: usize, publish: F) -> Result<(Duration, Latencies)>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency as u64)
        .map(|t| {
            let publish = publish.clone();
            tokio::spawn(async move {
                let mut lat = Latencies::default();
                let mut i = t;
                while i < messages {
                    let at = Instant::now();
                    publish(i).await?;
                    lat.record(at.elapsed());
                    i += concurrency as u64;
                }
                Ok::<Latencies, Error>(lat)
            })
        })
        .collect();
    let mut all = Latencies::default();
    for t in tasks {
        let lat = t.await.map_err(|e| Error::protocol(format!("bench task panicked: {e}")))??;
        all.merge(&lat);
    }
    Ok((started.elapsed(), all))
}

fn envelope(i: u64) -> Result<Envelope> {
    Ok(Envelope::from_json_bytes(EVENT_TYPE, payload(i))?.with_source("bench").with_partition_key(key(i)))
}

async fn direct(bus: &Arc<TransportBus>, topic: &str, messages: u64, concurrency: usize, build: Build) -> Result<(Duration, Latencies)> {
    let (bus, topic) = (bus.clone(), Arc::<str>::from(topic));
    if build == Build::InLoop {
        let payloads: Arc<Vec<Bytes>> = Arc::new((0..messages).map(payload).collect());
        return drive(messages, concurrency, move |i| {
            let (bus, topic, payloads) = (bus.clone(), topic.clone(), payloads.clone());
            async move {
                let env =
                    Envelope::from_json_bytes(EVENT_TYPE, payloads[i as usize].clone())?.with_source("bench").with_partition_key(key(i));
                bus.publish_envelope(&env, &topic).await.map(|_| ())
            }
        })
        .await;
    }
    let envelopes: Arc<Vec<Envelope>> = Arc::new((0..messages).map(envelope).collect::<Result<_>>()?);
    drive(messages, concurrency, move |i| {
        let (bus, topic, envelopes) = (bus.clone(), topic.clone(), envelopes.clone());
        async move { bus.publish_envelope(&envelopes[i as usize], &topic).await.map(|_| ()) }
    })
    .await
}

async fn ours_prebuilt(publisher: &BusPublisher, topic: &str, messages: u64, concurrency: usize) -> Result<(Duration, Latencies)> {
    let envelopes: Arc<Vec<Envelope>> = Arc::new((0..messages).map(envelope).collect::<Result<_>>()?);
    let (publisher, topic) = (publisher.clone(), Arc::<str>::from(topic));
    drive(messages, concurrency, move |i| {
        let (publisher, topic, envelopes) = (publisher.clone(), topic.clone(), envelopes.clone());
        async move { publisher.publish_envelope(&envelopes[i as usize], Some(&topic)).await.map(|_| ()) }
    })
    .await
}

async fn ours(publisher: &BusPublisher, topic: &str, messages: u64, concurrency: usize) -> Result<(Duration, Latencies)> {
    let payloads: Arc<Vec<Bytes>> = Arc::new((0..messages).map(payload).collect());
    let (publisher, topic) = (publisher.clone(), topic.to_string());
    drive(messages, concurrency, move |i| {
        let (publisher, payload) = (publisher.clone(), payloads[i as usize].clone());
        let opts =
            PublishOptions { topic: Some(topic.clone()), partition_key: Some(key(i)), source: Some("bench".into()), ..Default::default() };
        async move { publisher.publish(EVENT_TYPE, payload, opts).await.map(|_| ()) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_runs_are_capped_embedded_ones_are_not() {
        assert_eq!(messages_for("kafka", 100_000, 1), 2_000);
        assert_eq!(messages_for("redpanda", 100_000, 32), 20_000);
        assert_eq!(messages_for("kafka", 500, 32), 500);
        assert_eq!(messages_for("sqlite", 100_000, 1), 100_000);
    }

    #[test]
    fn the_default_buses_are_memory_a_sqlite_file_and_kafka_given_brokers() {
        let dir = std::path::Path::new("/tmp/d");
        assert_eq!(default_urls(dir, None), ["memory://", "sqlite:///tmp/d/bench.db"]);
        assert_eq!(default_urls(dir, Some("h:9092")), ["memory://", "sqlite:///tmp/d/bench.db", "kafka://h:9092"]);
    }

    #[test]
    fn payload_is_256_bytes_of_json() {
        for i in [0, 7, 123_456] {
            let p = payload(i);
            assert_eq!(p.len(), 256, "{}", String::from_utf8_lossy(&p));
            serde_json::from_slice::<serde_json::Value>(&p).unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_both_sides_of_the_same_run() {
        let reports = run(&["memory://".to_string()], None, 2_000).await.unwrap();
        assert_eq!(reports.len(), 2 * CONCURRENCY.len());
        for r in &reports {
            assert!(
                r.scenario.starts_with("publisher/memory/c") || r.scenario.starts_with("publisher-prebuilt/memory/c"),
                "{}",
                r.scenario
            );
            assert_eq!((r.ours.count, r.baseline.count), (2_000, 2_000));
            assert!(r.ours.throughput > 0.0 && r.baseline.throughput > 0.0 && r.ratio > 0.0);
        }
        assert!(run(&["carrier-pigeon://x".to_string()], None, 10).await.is_err());
    }
}
