//! `bench bus-kafka`: the kafka transport against raw rdkafka on the same broker, in the same
//! run, with the same librdkafka settings (the transport's own `producer_config` /
//! `consumer_config`), 256-byte JSON payloads, 4 partitions, 64 keys:
//!
//! - `bus-kafka/produce`: single publishes through [`BusPublisher::pipeline`] (encode,
//!   retry executor, breaker, metrics, transport), ≤10,000 in flight, results taken in push
//!   order, against the faster raw producer (below) with up to 10,000 records in flight (the
//!   same key, value and headers, headers built inside the timed loop as any raw writer
//!   must). Both sides complete records the same way: oldest first, or not at all.
//! - `bus-kafka/produce-batch`: [`BusPublisher::publish_envelopes`] of the same envelopes
//!   in batches of 250, up to 40 batches (10,000 records) in flight, against the same raw
//!   run: the same per-envelope work, one send and one wake-up per batch.
//! - `bus-kafka/produce-concurrent` (a diagnostic, no target): the same single publishes as
//!   [`BusPublisher::publish_envelope`] futures in a `FuturesUnordered`, ≤10,000 in flight,
//!   against the same raw run. Each record's completion is a cross-thread wake of its own
//!   and a task of the set's; neither raw side pays that, so this shows what the pattern
//!   costs (it was `bus-kafka/produce` until the twenty-ninth session).
//! - `bus-kafka/produce-transport` (a diagnostic, no target): the transport alone
//!   (`KafkaTransport::produce` of the same prebuilt records, one per call, ≤10,000 in
//!   flight) against the same raw run, to separate the transport's cost from the
//!   publisher's and the envelope encoding's.
//! - `bus-kafka/consume`: the consumer engine draining the produced topic (decode, handler,
//!   commits every 100 ms) against a raw `BaseConsumer` draining the baseline topic with
//!   async commits every 100 ms. Timed from the first record to the last, so the group join
//!   is not measured on either side.
//!
//! Per-record latencies (every single-publish side and the raw `FutureProducer`) are
//! sampled, one record in 16, on every side alike: timing each record costs two clock reads
//! the counting raw producer does not make.
//!
//! The produce reports' `params.process_cpu_us_per_record` give each side's CPU per record:
//! the bench process's CPU time (the sending task and the client library's threads; the
//! broker is another process) while that side ran, over its records. On a machine whose
//! cores are all busy that decides the throughput, and it varies less from run to run.
//! `params.sending_thread_cpu_us_per_record` is the part of it spent by the thread that
//! sends and completes the records (the bench's task, or the raw `ThreadedProducer`'s
//! sending thread): the caller's and the library's own work, apart from what librdkafka's
//! threads do, which moves with the broker's pace. `params.runs_msg_s` gives every run's
//! throughput, a side's runs in the order run (one per round): a scenario's ratio is an
//! average over them, and their spread shows how far the broker's pace moved it.
//!
//! 1,000,000 records by default: with fewer, each run is short enough (~0.1 s at 200,000)
//! that filling and draining the 10,000 in flight is a good part of it, which brings every
//! side's throughput closer to the others' (decisions.md, "Twenty-seventh session").
//!
//! The raw baseline is the faster of two raw producers, each measured in the run: a
//! `FutureProducer` (a oneshot channel per record; its delivery futures awaited oldest first,
//! which costs less than a `FuturesUnordered` of them) and a `ThreadedProducer` (a
//! `BaseProducer` with librdkafka's polling thread, which the transport also uses, with one
//! shared slot per record) whose delivery callback only counts, with the sending thread
//! sleeping while 10,000 are in flight. The second has no per-record future at all, and on
//! tansu it is the faster (decisions.md, "Twenty-second session"); both numbers are in the
//! produce reports' `params`.
//!
//! The records are sent in 4 rounds of one slice each. In each round every produce side
//! sends the slice once, in an order reversed every other round (raw, threaded raw,
//! transport, concurrent, pipeline, batches; then batches first and raw last): the broker
//! slows as it fills and has slow spells, and a few long runs in a fixed order hand the
//! advantage to whoever runs at the right time. Each side keeps one producer of its own for
//! all its runs (a `KafkaTransport` each for the concurrent, pipeline, batch and transport
//! sides), because a new librdkafka producer is faster than one that has worked a while.
//!
//! Two things about tansu keep its state out of the comparison (decisions.md, "Thirty-first
//! session"). Its first few hundred thousand records go slower than the rest, so a
//! throwaway producer sends it one slice before any clock starts. And somewhere past ~8–9M
//! stored records it slows by ~30 % for good; each side sends every record once (6M in
//! all), where two runs per round (12M) met that step inside a round and put it on the
//! sides that ran after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use onex_bus::kafka::KafkaTransport;
use onex_bus::publisher::BusPublisher;
use onex_bus::transport::{ProduceRecord, Transport};
use onex_bus::{BusConfig, TransportBus};
use onex_core::envelope::encode_record;
use onex_core::{Envelope, Error, EventBus, Record, Subscription, TopicSpec};

use super::handled::HandledCount;
use super::kafka_raw::{consume_raw, produce_raw, produce_threaded, raw_producer, threaded_producer};
use super::{payload_256, CpuClock, Latencies, ScenarioReport, Side};

const PARTITIONS: u32 = 4;
pub(super) const IN_FLIGHT: usize = 10_000;
const KEYS: u64 = 64;
/// Envelopes per `publish_envelopes` call in `bus-kafka/produce-batch`. A batch holds its
/// whole size of the 10,000 in flight until its last record is acknowledged, where the raw
/// producer frees a place per record: the smaller the batch, the fuller the window stays
/// (1,000 kept it ~3 points of throughput lower than 250; decisions.md, "Twenty-seventh
/// session").
const BATCH: usize = 250;
const PRODUCE_TARGET: f64 = 0.9;
const CONSUME_TARGET: f64 = 0.8;
pub(super) const COMMIT_EVERY: Duration = Duration::from_millis(100);
/// One record in this many is timed for the latency percentiles (see [`timed`]).
const LATENCY_SAMPLE: usize = 16;
/// Produce rounds: each sends one slice of the records (see `run`).
const ROUNDS: usize = 4;

fn envelopes(n: u64) -> Result<Vec<Envelope>, Error> {
    (0..n)
        .map(|i| {
            let payload = Bytes::from(serde_json::to_vec(&payload_256(i))?);
            Ok(Envelope::from_json_bytes("bench.order_created.v1", payload)?
                .with_source("bench")
                .with_partition_key(format!("k{}", i % KEYS)))
        })
        .collect()
}

/// The start of the `i`-th record's latency sample, for one record in [`LATENCY_SAMPLE`]:
/// two clock reads per record (~50-100 ns each on a VM's clock) would be the harness's
/// cost, not the producer's, and the counting raw producer reads none.
pub(super) fn timed(i: usize) -> Option<Instant> {
    (i % LATENCY_SAMPLE == 0).then(Instant::now)
}

fn fresh_topic(side: &str) -> String {
    format!("bench-kafka-{side}-{}", uuid::Uuid::new_v4().simple())
}

async fn produce_concurrent(publisher: &BusPublisher, envs: &[Envelope], topic: &str, tally: &mut Tally) -> Result<(), Error> {
    let lat = &mut tally.lat;
    let mut pending = FuturesUnordered::new();
    let run = RunClock::start();
    for (i, env) in envs.iter().enumerate() {
        if pending.len() >= IN_FLIGHT {
            let (t0, r): (Option<Instant>, Result<_, Error>) = pending.next().await.expect("non-empty");
            r?;
            lat.sampled(t0);
        }
        pending.push(async move {
            let t0 = timed(i);
            (t0, publisher.publish_envelope(env, Some(topic)).await)
        });
    }
    while let Some((t0, r)) = pending.next().await {
        r?;
        lat.sampled(t0);
    }
    tally.add(envs.len(), run.stop());
    Ok(())
}

/// [`BusPublisher::pipeline`]: the same single publishes as [`produce_concurrent`], ≤10,000
/// in flight, results taken in push order.
async fn produce_pipeline(publisher: &BusPublisher, envs: &[Envelope], topic: &str, tally: &mut Tally) -> Result<(), Error> {
    let lat = &mut tally.lat;
    let mut starts = std::collections::VecDeque::with_capacity(IN_FLIGHT);
    let mut pipeline = publisher.pipeline(IN_FLIGHT);
    let run = RunClock::start();
    for (i, env) in envs.iter().enumerate() {
        starts.push_back(timed(i));
        if let Some(oldest) = pipeline.push(env, Some(topic)).await {
            oldest?;
            lat.sampled(starts.pop_front().flatten());
        }
    }
    while let Some(r) = pipeline.next().await {
        r?;
        lat.sampled(starts.pop_front().flatten());
    }
    tally.add(envs.len(), run.stop());
    Ok(())
}

/// [`BusPublisher::publish_envelopes`] in batches of [`BATCH`], ≤10,000 records in flight;
/// one latency sample per batch (its slowest record's).
async fn produce_batches(publisher: &BusPublisher, envs: &[Envelope], topic: &str, tally: &mut Tally) -> Result<(), Error> {
    let lat = &mut tally.lat;
    let mut pending = FuturesUnordered::new();
    let run = RunClock::start();
    for batch in envs.chunks(BATCH) {
        if pending.len() >= IN_FLIGHT / BATCH {
            let (t0, results): (Instant, Vec<Result<_, Error>>) = pending.next().await.expect("non-empty");
            results.into_iter().try_for_each(|r| r.map(drop))?;
            lat.record(t0.elapsed());
        }
        pending.push(async move {
            let t0 = Instant::now();
            (t0, publisher.publish_envelopes(batch, Some(topic)).await)
        });
    }
    while let Some((t0, results)) = pending.next().await {
        results.into_iter().try_for_each(|r| r.map(drop))?;
        lat.record(t0.elapsed());
    }
    tally.add(envs.len(), run.stop());
    Ok(())
}

/// The transport alone: prebuilt records (as the baseline gets them, built before the clock
/// starts: `produce` takes them by value, the raw producer borrows), one `produce` call each.
async fn produce_transport(transport: &KafkaTransport, records: &[Record], topic: &str, tally: &mut Tally) -> Result<(), Error> {
    let owned: Vec<ProduceRecord> = records.iter().cloned().map(ProduceRecord::new).collect();
    let lat = &mut tally.lat;
    let mut pending = FuturesUnordered::new();
    let run = RunClock::start();
    for (i, r) in owned.into_iter().enumerate() {
        if pending.len() >= IN_FLIGHT {
            let (t0, res): (Option<Instant>, Result<_, Error>) = pending.next().await.expect("non-empty");
            res?;
            lat.sampled(t0);
        }
        pending.push(async move {
            let t0 = timed(i);
            (t0, transport.produce(topic, vec![r]).await)
        });
    }
    while let Some((t0, res)) = pending.next().await {
        res?;
        lat.sampled(t0);
    }
    tally.add(records.len(), run.stop());
    Ok(())
}

/// A produce side of `run`, in the order the sides take their turns in even rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Turn {
    Raw,
    Threaded,
    Transport,
    Concurrent,
    Pipeline,
    Batches,
}

/// The order in which the produce sides send their slice in `round`: reversed every other
/// round.
fn turns(round: usize) -> [Turn; 6] {
    use Turn::*;
    let mut order = [Raw, Threaded, Transport, Concurrent, Pipeline, Batches];
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// The wall and CPU time of one run of a side, from [`RunClock::start`]: started and
/// stopped on the side's sending thread.
pub(super) struct RunClock {
    started: Instant,
    cpu: CpuClock,
    thread: CpuClock,
}

/// What [`RunClock::stop`] read: the run's wall time, and the CPU time during it of the
/// process and of the sending thread.
pub(super) struct RunTime {
    elapsed: Duration,
    cpu: Option<Duration>,
    thread_cpu: Option<Duration>,
}

impl RunClock {
    pub(super) fn start() -> Self {
        RunClock { started: Instant::now(), cpu: CpuClock::start(), thread: CpuClock::start_thread() }
    }

    pub(super) fn stop(&self) -> RunTime {
        RunTime { elapsed: self.started.elapsed(), cpu: self.cpu.spent(), thread_cpu: self.thread.spent() }
    }
}

/// The runs of one side of a produce scenario, added up.
pub(super) struct Tally {
    count: u64,
    elapsed: Duration,
    /// The bench process's CPU time during the runs (`None` where it is not read).
    cpu: Option<Duration>,
    /// The sending thread's part of it.
    thread_cpu: Option<Duration>,
    /// Each run's throughput, in the order run.
    runs_msg_s: Vec<f64>,
    pub(super) lat: Latencies,
}

impl Default for Tally {
    fn default() -> Self {
        let zero = Some(Duration::ZERO);
        Tally { count: 0, elapsed: Duration::ZERO, cpu: zero, thread_cpu: zero, runs_msg_s: Vec::new(), lat: Latencies::default() }
    }
}

impl Tally {
    pub(super) fn add(&mut self, count: usize, run: RunTime) {
        let sum = |total: Option<Duration>, more: Option<Duration>| total.zip(more).map(|(total, more)| total + more);
        self.count += count as u64;
        self.elapsed += run.elapsed;
        self.runs_msg_s.push((count as f64 / run.elapsed.as_secs_f64().max(1e-9)).round());
        self.cpu = sum(self.cpu, run.cpu);
        self.thread_cpu = sum(self.thread_cpu, run.thread_cpu);
    }

    /// The process's CPU time per record, in µs, rounded to 0.01.
    fn cpu_us_per_record(&self) -> Option<f64> {
        self.per_record(self.cpu)
    }

    /// The sending thread's CPU time per record, in µs, rounded to 0.01.
    fn thread_cpu_us_per_record(&self) -> Option<f64> {
        self.per_record(self.thread_cpu)
    }

    fn per_record(&self, cpu: Option<Duration>) -> Option<f64> {
        let cpu = cpu.filter(|_| self.count > 0)?;
        Some((cpu.as_secs_f64() * 1e6 / self.count as f64 * 100.0).round() / 100.0)
    }

    /// This side's report, `what` it is followed by how its runs were scheduled.
    fn side(&self, what: &str) -> Side {
        Side::new(
            format!("{what} (one producer, one run per round, order reversed every other round)"),
            self.count,
            self.elapsed,
            "msg/s",
            &self.lat,
        )
    }
}

async fn consume_ours(bus: &TransportBus, topic: &str, n: u64) -> Result<Side, Error> {
    let count = HandledCount::new(n);
    let sub = Subscription::new(topic, format!("bench-ours-{}", uuid::Uuid::new_v4().simple()), count.handler());
    let id = bus.subscribe(sub).await?;
    bus.start().await?;
    tokio::time::timeout(Duration::from_secs(600), count.all_handled())
        .await
        .map_err(|_| Error::timeout(format!("consumer handled {} of {n}", count.handled()), Duration::from_secs(600)))?;
    let elapsed = count.first().map(|t| t.elapsed()).unwrap_or_default();
    bus.unsubscribe(id).await?;
    Ok(Side::new("consumer engine → handler, commits every 100 ms", n, elapsed, "msg/s", &Latencies::default()))
}

/// Runs the produce and consume scenarios against `brokers` (`HOST:PORT[,HOST:PORT]`).
pub async fn run(brokers: &str, messages: u64) -> Result<Vec<ScenarioReport>, Error> {
    let transport = KafkaTransport::from_url_str(&format!("kafka://{brokers}")).await?;
    let config = transport.config().clone();
    let bus = Arc::new(TransportBus::with_config(transport.clone(), BusConfig { default_partitions: PARTITIONS, ..BusConfig::default() }));
    let publisher = BusPublisher::new(bus.clone())?;
    let envs = envelopes(messages)?;
    let records: Vec<Record> = envs.iter().map(encode_record).collect();
    let (concurrent_topic, raw_topic, transport_topic, threaded_topic, batch_topic, pipeline_topic, warm_up_topic) = (
        fresh_topic("concurrent"),
        fresh_topic("raw"),
        fresh_topic("transport"),
        fresh_topic("threaded"),
        fresh_topic("batch"),
        fresh_topic("pipeline"),
        fresh_topic("warm-up"),
    );
    let topics = [&concurrent_topic, &raw_topic, &transport_topic, &threaded_topic, &batch_topic, &pipeline_topic, &warm_up_topic];
    for t in topics {
        transport.admin().create_topic(TopicSpec::new(t.as_str(), PARTITIONS)).await?;
    }
    bus.ensure_topic(&concurrent_topic).await?;
    let params = serde_json::json!({ "brokers": brokers, "messages": messages, "payload_bytes": 256, "partitions": PARTITIONS, "in_flight": IN_FLIGHT, "latency_sample_one_in": LATENCY_SAMPLE,
        "producer": config.effective_producer_settings() });

    // Each side has a producer of its own, made and warmed up (one record to its topic)
    // before any clock starts, and keeps it for all of its runs: a librdkafka producer's
    // first few hundred thousand records go faster than the next (tansu, 2 cores: ~280k
    // against ~230k msg/s), so a side given a new producer per run would never pay that.
    let direct = KafkaTransport::connect(config.clone()).await?;
    let batch_bus = TransportBus::new(KafkaTransport::connect(config.clone()).await?);
    let batch_publisher = BusPublisher::new(Arc::new(batch_bus))?;
    let pipeline_publisher = BusPublisher::new(Arc::new(TransportBus::new(KafkaTransport::connect(config.clone()).await?)))?;
    publisher.publish_envelope(&envs[0], Some(&concurrent_topic)).await?;
    batch_publisher.publish_envelope(&envs[0], Some(&batch_topic)).await?;
    pipeline_publisher.publish_envelope(&envs[0], Some(&pipeline_topic)).await?;
    direct.produce(&transport_topic, vec![ProduceRecord::new(records[0].clone())]).await?;
    let raw_producer = raw_producer(&config, &raw_topic).await?;
    let threaded = threaded_producer(&config, &threaded_topic).await?;
    let slice = envs.len().div_ceil(ROUNDS).max(1);
    // The broker's own warm-up, by a producer no side uses (see the module's doc).
    let warm = threaded_producer(&config, &warm_up_topic).await?;
    produce_threaded(&warm, &records[..slice.min(records.len())], &warm_up_topic, &mut Tally::default()).await?;
    drop(warm);
    // The broker slows down as it stores more, so whoever runs first wins. The sides take
    // turns, one slice each, in an order reversed every other round, and each side's runs
    // are added up: a steady drift then costs every side the same, and a slow spell of the
    // broker lands on every side alike instead of on whoever runs during it.
    let (mut raw, mut by_transport, mut concurrent) = (Tally::default(), Tally::default(), Tally::default());
    let (mut raw_threaded, mut batches, mut pipelined) = (Tally::default(), Tally::default(), Tally::default());
    for (round, (envs, records)) in envs.chunks(slice).zip(records.chunks(slice)).enumerate() {
        for side in turns(round) {
            match side {
                Turn::Raw => produce_raw(&raw_producer, records, &raw_topic, &mut raw).await?,
                Turn::Threaded => produce_threaded(&threaded, records, &threaded_topic, &mut raw_threaded).await?,
                Turn::Transport => produce_transport(&direct, records, &transport_topic, &mut by_transport).await?,
                Turn::Concurrent => produce_concurrent(&publisher, envs, &concurrent_topic, &mut concurrent).await?,
                Turn::Pipeline => produce_pipeline(&pipeline_publisher, envs, &pipeline_topic, &mut pipelined).await?,
                Turn::Batches => produce_batches(&batch_publisher, envs, &batch_topic, &mut batches).await?,
            }
        }
    }
    drop((raw_producer, threaded, direct, batch_publisher, pipeline_publisher));
    let future_raw = raw.side("raw rdkafka FutureProducer, same settings, ≤10,000 in flight");
    let threaded_raw = raw_threaded.side("raw rdkafka ThreadedProducer, same settings, delivery reports counted, ≤10,000 in flight");
    let mut params = params;
    params["raw_future_producer_msg_s"] = serde_json::json!(future_raw.throughput);
    params["raw_threaded_producer_msg_s"] = serde_json::json!(threaded_raw.throughput);
    for (key, per_record) in [
        ("process_cpu_us_per_record", Tally::cpu_us_per_record as fn(&Tally) -> _),
        ("sending_thread_cpu_us_per_record", Tally::thread_cpu_us_per_record),
    ] {
        params[key] = serde_json::json!({
            "concurrent": per_record(&concurrent), "pipeline": per_record(&pipelined), "batches": per_record(&batches), "transport": per_record(&by_transport),
            "raw_future_producer": per_record(&raw), "raw_threaded_producer": per_record(&raw_threaded),
        });
    }
    // How far one run's throughput strays from the next: a slow spell of the broker shows
    // as a dip on every side it lands on.
    params["runs_msg_s"] = serde_json::json!({
        "concurrent": concurrent.runs_msg_s, "pipeline": pipelined.runs_msg_s, "batches": batches.runs_msg_s, "transport": by_transport.runs_msg_s,
        "raw_future_producer": raw.runs_msg_s, "raw_threaded_producer": raw_threaded.runs_msg_s,
    });
    // The baseline is whichever raw producer was faster in this run.
    let raw = if threaded_raw.throughput > future_raw.throughput { threaded_raw } else { future_raw };
    let concurrent = concurrent.side("BusPublisher::publish_envelope futures in a FuturesUnordered → KafkaTransport, ≤10,000 in flight");
    let by_transport = by_transport.side("KafkaTransport::produce of prebuilt records, one per call, ≤10,000 in flight");
    let batches = batches.side("BusPublisher::publish_envelopes → KafkaTransport, batches of 250, ≤10,000 in flight, latency per batch");
    let pipelined = pipelined.side("BusPublisher::pipeline → KafkaTransport: single publishes, ≤10,000 in flight, results in push order");
    let produce = ScenarioReport::new("bus-kafka/produce", pipelined, raw.clone(), PRODUCE_TARGET, params.clone());
    let produce_batch = ScenarioReport::new("bus-kafka/produce-batch", batches, raw.clone(), PRODUCE_TARGET, params.clone());
    let produce_concurrent = ScenarioReport::diagnostic("bus-kafka/produce-concurrent", concurrent, raw.clone(), params.clone());
    let produce_transport = ScenarioReport::diagnostic("bus-kafka/produce-transport", by_transport, raw, params.clone());

    // Each topic holds one run and one warm-up record.
    let raw = consume_raw(&config, &raw_topic, messages + 1).await?;
    let ours = consume_ours(&bus, &concurrent_topic, messages + 1).await?;
    let consume = ScenarioReport::new("bus-kafka/consume", ours, raw, CONSUME_TARGET, params);

    for t in topics {
        let _ = transport.admin().delete_topic(t).await;
    }
    Ok(vec![produce, produce_batch, produce_concurrent, produce_transport, consume])
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_record_in_latency_sample_is_timed() {
        let timed: Vec<usize> = (0..100).filter(|&i| super::timed(i).is_some()).collect();
        assert_eq!(timed, [0, 16, 32, 48, 64, 80, 96]);
        let mut lat = super::Latencies::default();
        lat.sampled(None);
        lat.sampled(super::timed(0));
        assert_eq!(lat.count(), 1);
    }

    #[test]
    fn the_sides_take_turns_in_an_order_reversed_every_other_round() {
        use super::Turn::*;
        assert_eq!(super::turns(0), [Raw, Threaded, Transport, Concurrent, Pipeline, Batches]);
        assert_eq!(super::turns(1), [Batches, Pipeline, Concurrent, Transport, Threaded, Raw]);
        assert_eq!(super::turns(2), super::turns(0));
        assert_eq!(super::turns(3), super::turns(1));
    }

    #[test]
    fn a_sides_cpu_is_added_up_over_its_runs_and_unknown_if_any_run_was() {
        use std::time::Duration;
        let mut t = super::Tally::default();
        assert_eq!(t.cpu_us_per_record(), None, "no records yet");
        let run = |cpu_ms: Option<u64>, thread_ms: u64| super::RunTime {
            elapsed: Duration::from_millis(10),
            cpu: cpu_ms.map(Duration::from_millis),
            thread_cpu: Some(Duration::from_millis(thread_ms)),
        };
        t.add(1_000, run(Some(3), 1));
        t.add(1_000, run(Some(5), 2));
        assert_eq!((t.cpu_us_per_record(), t.thread_cpu_us_per_record()), (Some(4.0), Some(1.5)));
        t.add(1_000, run(None, 3));
        assert_eq!((t.cpu_us_per_record(), t.thread_cpu_us_per_record()), (None, Some(2.0)));
        assert_eq!(t.runs_msg_s, [100_000.0; 3], "1,000 records in 10 ms, each run");
    }

    /// Runs the benchmark once against `ONEX_KAFKA_BROKERS` (default 127.0.0.1:9092):
    /// `cargo test -p onex-cli --release bus_kafka -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs a Kafka broker; a benchmark, not a test"]
    async fn bench_bus_kafka_smoke() {
        let brokers = std::env::var("ONEX_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
        let n = std::env::var("ONEX_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
        let reports = super::run(&brokers, n).await.unwrap();
        for r in &reports {
            r.print(false);
            assert!(r.ours.count >= n && r.baseline.count >= n);
        }
    }
}
