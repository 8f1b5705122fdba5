//! `bench bus-memory`: EventBus memory publish → handler vs a raw tokio mpsc moving the same
//! already-encoded records from one task to another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use onex_bus::memory::MemoryTransport;
use onex_bus::{BusConfig, TransportBus};
use onex_core::envelope::encode_record;
use onex_core::{handler_fn, Delivery, Envelope, EventBus, Headers, Result, Subscription, TopicSpec};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{payload_256, Latencies, ScenarioReport, Side};

const PARTITIONS: u32 = 4;
/// Every 16th publish carries a send time for the latency sample, on both sides: reading the
/// clock for every message would measure the clock as much as the bus.
const SAMPLE_EVERY: u64 = 16;

fn envelopes(n: u64) -> Result<Vec<Envelope>> {
    (0..n)
        .map(|i| {
            let payload = Bytes::from(serde_json::to_vec(&payload_256(i))?);
            Ok(Envelope::from_json_bytes("bench.order_created.v1", payload)?
                .with_source("bench")
                .with_partition_key(format!("k{}", i % 64)))
        })
        .collect()
}

async fn ours(envs: Vec<Envelope>) -> Result<Side> {
    let n = envs.len() as u64;
    let bus =
        TransportBus::with_config(Arc::new(MemoryTransport::default()), BusConfig { default_partitions: PARTITIONS, ..Default::default() });
    bus.admin().create_topic(TopicSpec::new("bench", PARTITIONS)).await?;
    let count = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Latencies::default()));
    let done = Arc::new(Notify::new());
    let (c2, l2, d2) = (count.clone(), lat.clone(), done.clone());
    let sampling_from = Utc::now();
    let handler = handler_fn(move |d: Delivery| {
        let (count, lat, done) = (c2.clone(), l2.clone(), d2.clone());
        async move {
            let k = count.fetch_add(1, Ordering::Relaxed) + 1;
            // Envelopes were made before the clock started; a sampled one was stamped after.
            if d.envelope.timestamp >= sampling_from {
                let age = (Utc::now() - d.envelope.timestamp).to_std().unwrap_or_default();
                lat.lock().record(age);
            }
            if k == n {
                done.notify_one();
            }
            Ok(())
        }
    });
    bus.subscribe(Subscription::new("bench", "bench-group", handler)).await?;
    bus.start().await?;
    let start = Instant::now();
    for (i, mut env) in envs.into_iter().enumerate() {
        if i as u64 % SAMPLE_EVERY == 0 {
            env.timestamp = Utc::now();
        }
        bus.publish_envelope_owned(env, "bench").await?;
    }
    done.notified().await;
    let elapsed = start.elapsed();
    bus.stop_consuming(Duration::from_secs(10)).await?;
    let lat = lat.lock();
    Ok(Side::new("TransportBus(memory).publish_envelope_owned → subscriber handler, 1 group, 4 partitions", n, elapsed, "msg/s", &lat))
}

type Raw = (Option<Bytes>, Bytes, Headers, Option<Instant>);

async fn baseline(envs: &[Envelope]) -> Side {
    let records: Vec<(Option<Bytes>, Bytes, Headers)> = envs.iter().map(encode_record).map(|r| (r.key, r.value, r.headers)).collect();
    let n = records.len() as u64;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Raw>(8192);
    let receiver = tokio::spawn(async move {
        let mut lat = Latencies::default();
        let mut k = 0u64;
        while let Some((_key, _value, _headers, sent)) = rx.recv().await {
            k += 1;
            if let Some(sent) = sent {
                lat.record(sent.elapsed());
            }
            if k == n {
                break;
            }
        }
        lat
    });
    let start = Instant::now();
    for (i, (key, value, headers)) in records.into_iter().enumerate() {
        let sent = (i as u64 % SAMPLE_EVERY == 0).then(Instant::now);
        if tx.send((key, value, headers, sent)).await.is_err() {
            break;
        }
    }
    let lat = receiver.await.unwrap_or_default();
    let elapsed = start.elapsed();
    Side::new("tokio mpsc of pre-encoded (key, value, headers), one task to another", n, elapsed, "msg/s", &lat)
}

pub(crate) async fn run(messages: u64) -> Result<Vec<ScenarioReport>> {
    let envs = envelopes(messages)?;
    let base = baseline(&envs).await;
    let ours = ours(envs).await?;
    let params = serde_json::json!({"messages": messages, "payload_bytes": 256, "partitions": PARTITIONS, "groups": 1});
    Ok(vec![ScenarioReport::new("bus-memory", ours, base, 0.5, params)])
}
