//! The raw rdkafka sides of `bench bus-kafka` (see its module doc): a `FutureProducer`, a
//! `ThreadedProducer` whose delivery callback only counts, and a `BaseConsumer`, each with
//! the transport's own librdkafka settings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use onex_bus::kafka::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use onex_bus::kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use onex_bus::kafka::rdkafka::message::{Header, OwnedHeaders};
use onex_bus::kafka::rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext, ThreadedProducer,
};
use onex_bus::kafka::rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use onex_bus::kafka::KafkaConfig;
use onex_core::{Error, Record};

use super::bus_kafka::{timed, RunClock, Tally, COMMIT_EVERY, IN_FLIGHT};
use super::{Latencies, Side};

/// The raw side's producer, warmed up (metadata, producer id) with one record to `topic`
/// before any clock starts, as each transport is.
pub(super) async fn raw_producer(config: &KafkaConfig, topic: &str) -> Result<FutureProducer, Error> {
    let producer: FutureProducer = config.producer_config().create().map_err(|e| Error::config(format!("raw producer: {e}")))?;
    let warm = FutureRecord::<[u8], [u8]>::to(topic).payload(&b"warm-up"[..]);
    check_delivery(Ok(producer.send(warm, Duration::from_secs(30)).await.map(|_| ())))?;
    Ok(producer)
}

/// A record's headers as a raw writer hands them to librdkafka (inside the timed loop).
fn raw_headers(r: &Record) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in r.headers.iter() {
        headers = headers.insert(Header { key: k, value: Some(&v[..]) });
    }
    headers
}

/// The threaded raw producer's context: delivery reports are counted, nothing more.
#[derive(Default)]
pub(super) struct CountDeliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for CountDeliveries {}

impl ProducerContext for CountDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, report: &DeliveryResult<'_>, _: ()) {
        match report {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

pub(super) type CountingProducer = ThreadedProducer<CountDeliveries>;

/// The threaded raw producer, warmed up with one record to `topic`.
pub(super) async fn threaded_producer(config: &KafkaConfig, topic: &str) -> Result<Arc<CountingProducer>, Error> {
    let producer: CountingProducer = config
        .producer_config()
        .create_with_context(CountDeliveries::default())
        .map_err(|e| Error::config(format!("raw threaded producer: {e}")))?;
    let producer = Arc::new(producer);
    let warm = Record { key: None, value: Bytes::from_static(b"warm-up"), headers: Default::default() };
    produce_threaded(&producer, &[warm], topic, &mut Tally::default()).await?;
    Ok(producer)
}

/// Sends on a blocking thread, sleeping while 10,000 records are in flight or the queue is
/// full; done when every delivery report of the run has been counted.
pub(super) async fn produce_threaded(
    producer: &Arc<CountingProducer>,
    records: &[Record],
    topic: &str,
    tally: &mut Tally,
) -> Result<(), Error> {
    let (producer, records, topic) = (producer.clone(), records.to_vec(), topic.to_string());
    let count = records.len();
    let time = tokio::task::spawn_blocking(move || {
        let ctx = producer.context();
        let reported = || ctx.delivered.load(Ordering::Relaxed) + ctx.failed.load(Ordering::Relaxed);
        let (failed_before, reported_before) = (ctx.failed.load(Ordering::Relaxed), reported());
        let pause = Duration::from_micros(200);
        let run = RunClock::start();
        let mut sent = 0u64;
        for r in &records {
            while sent - (reported() - reported_before) >= IN_FLIGHT as u64 {
                std::thread::sleep(pause);
            }
            let mut rec = BaseRecord::<[u8], [u8]>::to(&topic).payload(&r.value[..]).headers(raw_headers(r));
            if let Some(k) = &r.key {
                rec = rec.key(&k[..]);
            }
            while let Err((e, back)) = producer.send(rec) {
                if !matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) {
                    return Err(Error::unavailable(format!("raw threaded produce failed: {e}")));
                }
                rec = back;
                std::thread::sleep(pause);
            }
            sent += 1;
        }
        while reported() - reported_before < sent {
            std::thread::sleep(pause);
        }
        match ctx.failed.load(Ordering::Relaxed) - failed_before {
            0 => Ok(run.stop()),
            n => Err(Error::unavailable(format!("raw threaded producer: {n} records failed"))),
        }
    })
    .await
    .map_err(|e| Error::shutdown(format!("raw threaded producer task failed: {e}")))??;
    tally.add(count, time);
    Ok(())
}

/// The raw `FutureProducer`, its delivery futures awaited oldest first (a future nobody
/// polls yet is woken by nobody: cheaper than a `FuturesUnordered`, as for the pipeline).
pub(super) async fn produce_raw(producer: &FutureProducer, records: &[Record], topic: &str, tally: &mut Tally) -> Result<(), Error> {
    let lat = &mut tally.lat;
    let mut pending = std::collections::VecDeque::with_capacity(IN_FLIGHT);
    let run = RunClock::start();
    for (i, r) in records.iter().enumerate() {
        if pending.len() >= IN_FLIGHT {
            let (t0, delivery): (Option<Instant>, _) = pending.pop_front().expect("non-empty");
            check_delivery(delivery.await)?;
            lat.sampled(t0);
        }
        let mut rec = FutureRecord::to(topic).payload(&r.value[..]).headers(raw_headers(r));
        if let Some(k) = &r.key {
            rec = rec.key(&k[..]);
        }
        let t0 = timed(i);
        let delivery = loop {
            match producer.send_result(rec) {
                Ok(d) => break d,
                Err((_, back)) => {
                    rec = back; // queue full: wait for deliveries, as the transport does
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        };
        pending.push_back((t0, delivery));
    }
    while let Some((t0, delivery)) = pending.pop_front() {
        check_delivery(delivery.await)?;
        lat.sampled(t0);
    }
    tally.add(records.len(), run.stop());
    Ok(())
}

fn check_delivery<T, E: std::fmt::Display, C: std::fmt::Debug>(
    d: Result<Result<T, (E, C)>, futures::channel::oneshot::Canceled>,
) -> Result<(), Error> {
    match d {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(Error::unavailable(format!("raw produce failed: {e}"))),
        Err(_) => Err(Error::shutdown("raw producer dropped")),
    }
}

pub(super) async fn consume_raw(config: &KafkaConfig, topic: &str, n: u64) -> Result<Side, Error> {
    let group = format!("bench-raw-{}", uuid::Uuid::new_v4().simple());
    let consumer: BaseConsumer =
        config.consumer_config(&group, "earliest").create().map_err(|e| Error::config(format!("raw consumer: {e}")))?;
    consumer.subscribe(&[topic]).map_err(|e| Error::config(format!("raw subscribe: {e}")))?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let mut next: std::collections::BTreeMap<i32, i64> = Default::default();
        let (mut count, mut first, mut last_commit) = (0u64, None::<Instant>, Instant::now());
        let deadline = Instant::now() + Duration::from_secs(600);
        while count < n {
            if Instant::now() > deadline {
                return Err(Error::timeout(format!("raw consumer read {count} of {n}"), Duration::from_secs(600)));
            }
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.map_err(|e| Error::unavailable(format!("raw consume: {e}")))?;
                first.get_or_insert_with(Instant::now);
                std::hint::black_box(m.payload().map(<[u8]>::len));
                next.insert(m.partition(), m.offset() + 1);
                count += 1;
            }
            if last_commit.elapsed() >= COMMIT_EVERY && !next.is_empty() {
                let mut tpl = TopicPartitionList::new();
                for (p, o) in &next {
                    let _ = tpl.add_partition_offset(&topic, *p, Offset::Offset(*o));
                }
                let _ = consumer.commit(&tpl, CommitMode::Async);
                last_commit = Instant::now();
            }
        }
        let elapsed = first.map(|t| t.elapsed()).unwrap_or_default();
        Ok(Side::new("raw rdkafka BaseConsumer, same settings, async commits every 100 ms", n, elapsed, "msg/s", &Latencies::default()))
    })
    .await
    .map_err(|e| Error::shutdown(format!("raw consumer task failed: {e}")))?
}
