//! `bench bus-sqlite`: the sqlite transport against raw rusqlite on the same machine, in the
//! same run, 256-byte payloads, default sync (`NORMAL`, WAL):
//!
//! - `bus-sqlite/pipelined`: one publisher keeping up to 1,000 publishes in flight vs raw
//!   inserts in transactions of 1,000;
//! - `bus-sqlite/concurrent16`: 16 publishers each awaiting every publish (group commit) vs
//!   raw inserts in transactions of 16;
//! - `bus-sqlite/consume`: subscribe and handle every record of the pipelined run (commits on)
//!   vs a raw `SELECT` range scan of the baseline table, 3 runs each in mirrored order.
//!
//! The baseline table has the same columns and key as the transport's `bus_records`
//! (row id = partition << 40 | offset), and the baseline encodes headers inside the timed loop,
//! as any real writer must.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use onex_bus::sqlite::rusqlite::{self, params};
use onex_bus::sqlite::{SqliteConfig, SqliteTransport};
use onex_bus::{BusConfig, TransportBus};
use onex_core::envelope::encode_record;
use onex_core::{Envelope, Error, EventBus, Headers, Record, Result, Subscription, TopicSpec};

use super::handled::HandledCount;
use super::{payload_256, Latencies, ScenarioReport, Side};

const PARTITIONS: u32 = 4;
const IN_FLIGHT: usize = 1000;
const PUBLISHERS: usize = 16;
const TARGET: f64 = 0.7;

/// The same DDL as the transport's record table.
const BASELINE_DDL: &str = "CREATE TABLE records(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, key BLOB, value BLOB NOT NULL, headers BLOB)";

/// The events both sides write: ours publishes them as envelopes, as services do; the
/// baseline inserts their CloudEvents records (`encode_record`, before its clock starts).
fn events(n: u64) -> Result<Vec<Envelope>> {
    (0..n)
        .map(|i| {
            let payload = Bytes::from(serde_json::to_vec(&payload_256(i))?);
            Ok(Envelope::from_json_bytes("bench.order_created.v1", payload)?
                .with_source("bench")
                .with_partition_key(format!("k{}", i % 64)))
        })
        .collect()
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("onex-bench-sqlite-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::config(format!("cannot create scratch directory {}: {e}", dir.display())))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn open_bus(path: &Path) -> Result<Arc<TransportBus>> {
    let transport = SqliteTransport::open(path, SqliteConfig::default()).await?;
    let bus = Arc::new(TransportBus::with_config(transport, BusConfig { default_partitions: PARTITIONS, ..BusConfig::default() }));
    bus.admin().create_topic(TopicSpec::new("bench", PARTITIONS)).await?;
    Ok(bus)
}

async fn ours_pipelined(bus: &TransportBus, envs: &[Envelope]) -> Result<Side> {
    // Copied before the clock starts, as the baseline's records are built.
    let owned = envs.to_vec();
    let mut lat = Latencies::default();
    let mut pending = FuturesUnordered::new();
    let start = Instant::now();
    for env in owned {
        pending.push(async move {
            let t = Instant::now();
            bus.publish_envelope_owned(env, "bench").await.map(|_| t.elapsed())
        });
        if pending.len() >= IN_FLIGHT {
            lat.record(pending.next().await.expect("non-empty")?);
        }
    }
    while let Some(d) = pending.next().await {
        lat.record(d?);
    }
    Ok(Side::new(
        format!("TransportBus(sqlite).publish_envelope_owned, 1 publisher, ≤{IN_FLIGHT} in flight"),
        envs.len() as u64,
        start.elapsed(),
        "msg/s",
        &lat,
    ))
}

async fn ours_concurrent(bus: Arc<TransportBus>, envs: Arc<Vec<Envelope>>) -> Result<Side> {
    let go = Arc::new(tokio::sync::Barrier::new(PUBLISHERS + 1));
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|w| {
            let (bus, go) = (bus.clone(), go.clone());
            let mine: Vec<Envelope> = envs.iter().skip(w).step_by(PUBLISHERS).cloned().collect();
            tokio::spawn(async move {
                let mut lat = Latencies::default();
                go.wait().await;
                for env in mine {
                    let t = Instant::now();
                    bus.publish_envelope_owned(env, "bench").await?;
                    lat.record(t.elapsed());
                }
                Ok::<_, Error>(lat)
            })
        })
        .collect();
    go.wait().await;
    let start = Instant::now();
    let mut lat = Latencies::default();
    for t in tasks {
        lat.merge(&t.await.map_err(|e| Error::unavailable(format!("publisher task failed: {e}")))??);
    }
    Ok(Side::new(
        format!("TransportBus(sqlite).publish_envelope_owned, {PUBLISHERS} publishers each awaiting every publish"),
        envs.len() as u64,
        start.elapsed(),
        "msg/s",
        &lat,
    ))
}

/// Timed from the first record handled to the last, as `bus-kafka/consume` is: joining the
/// group (lease, assignment) is a one-time cost, reported apart, not throughput.
/// One consume run: a new group reads the whole topic. Returns the time from the first record
/// to the last, and how long joining took before the first record.
async fn ours_consume(bus: &TransportBus, n: u64, group: &str) -> Result<(Duration, Duration)> {
    let count = HandledCount::new(n);
    let subscribed = Instant::now();
    let id = bus.subscribe(Subscription::new("bench", group, count.handler())).await?;
    bus.start().await?;
    count.all_handled().await;
    let end = Instant::now();
    let start = count.first().unwrap_or(subscribed);
    bus.unsubscribe(id).await?;
    Ok((end - start, start - subscribed))
}

/// Length-prefixed headers: what a raw writer has to do to store them at all.
fn raw_headers(h: &Headers) -> Option<Vec<u8>> {
    if h.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(h.byte_len() + 8 * h.len());
    for (k, v) in h.iter() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    Some(out)
}

fn open_raw(path: &Path) -> Result<rusqlite::Connection> {
    let sql = |e: rusqlite::Error| Error::unavailable(format!("raw rusqlite baseline failed: {e}"));
    let conn = rusqlite::Connection::open(path).map_err(sql)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)).map_err(sql)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
    conn.execute_batch(&format!("CREATE TABLE IF NOT EXISTS {}", BASELINE_DDL.trim_start_matches("CREATE TABLE "))).map_err(sql)?;
    Ok(conn)
}

/// Inserts `recs` in transactions of `batch`; every record's latency is its transaction's.
fn raw_insert(path: &Path, recs: &[Record], batch: usize) -> Result<Side> {
    let sql = |e: rusqlite::Error| Error::unavailable(format!("raw rusqlite baseline failed: {e}"));
    let mut conn = open_raw(path)?;
    let mut lat = Latencies::default();
    let mut next = [0u64; PARTITIONS as usize];
    let start = Instant::now();
    for chunk in recs.chunks(batch) {
        let t = Instant::now();
        let tx = conn.transaction().map_err(sql)?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT INTO records(id, ts, key, value, headers) VALUES (?1, ?2, ?3, ?4, ?5)").map_err(sql)?;
            let ts = chrono::Utc::now().timestamp_micros();
            for (i, r) in chunk.iter().enumerate() {
                let p = i % PARTITIONS as usize;
                let id = ((p as i64) << 40) | next[p] as i64;
                next[p] += 1;
                stmt.execute(params![id, ts, r.key.as_deref(), &r.value[..], raw_headers(&r.headers)]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        let d = t.elapsed();
        for _ in chunk {
            lat.record(d);
        }
    }
    Ok(Side::new(
        format!("raw rusqlite INSERT, transactions of {batch}, same table layout"),
        recs.len() as u64,
        start.elapsed(),
        "msg/s",
        &lat,
    ))
}

/// Reads every row back with one range scan, copying out key, value and headers.
fn raw_scan(path: &Path) -> Result<(u64, Duration)> {
    let sql = |e: rusqlite::Error| Error::unavailable(format!("raw rusqlite baseline failed: {e}"));
    let conn = open_raw(path)?;
    let start = Instant::now();
    let mut stmt = conn.prepare("SELECT id, ts, key, value, headers FROM records WHERE id >= ?1 ORDER BY id").map_err(sql)?;
    let mut rows = stmt.query([0i64]).map_err(sql)?;
    let mut n = 0u64;
    let mut bytes = 0usize;
    while let Some(row) = rows.next().map_err(sql)? {
        let key: Option<Vec<u8>> = row.get(2).map_err(sql)?;
        let value: Vec<u8> = row.get(3).map_err(sql)?;
        let headers: Option<Vec<u8>> = row.get(4).map_err(sql)?;
        bytes += key.map_or(0, |k| k.len()) + value.len() + headers.map_or(0, |h| h.len());
        n += 1;
    }
    std::hint::black_box(bytes);
    Ok((n, start.elapsed()))
}

/// Consume runs per side. One run takes a fraction of a second, short enough for a burst of
/// other work on the machine to decide a single comparison; the sides alternate in mirrored
/// order (raw, ours, ours, raw, raw, ours) and their runs are added up.
const CONSUME_RUNS: usize = 3;

/// The consume scenario: both sides read everything the pipelined scenario wrote.
async fn consume(bus: &TransportBus, raw_path: &Path, n: u64) -> Result<(Side, Side)> {
    let (mut ours, mut raw) = ((0u64, Duration::ZERO), (0u64, Duration::ZERO));
    let mut joining = Duration::ZERO;
    for run in 0..2 * CONSUME_RUNS {
        // Mirrored pairs: raw first in even pairs, ours first in odd ones.
        if (run % 4 == 0) || (run % 4 == 3) {
            let path = raw_path.to_path_buf();
            let (count, elapsed) = blocking(move || raw_scan(&path)).await?;
            raw = (raw.0 + count, raw.1 + elapsed);
        } else {
            let (elapsed, joined) = ours_consume(bus, n, &format!("bench-consume-{run}")).await?;
            ours = (ours.0 + n, ours.1 + elapsed);
            joining += joined;
        }
    }
    let ours = Side::new(
        format!(
            "TransportBus(sqlite) subscribe → handler, 1 group, 4 partitions, commits on; first to last record; {CONSUME_RUNS} runs, each a new group (joining took {:.1} ms on average)",
            joining.as_secs_f64() * 1e3 / CONSUME_RUNS as f64
        ),
        ours.0,
        ours.1,
        "msg/s",
        &Latencies::default(),
    );
    let raw = Side::new(
        format!("raw rusqlite SELECT range scan of the same rows, copying key/value/headers; {CONSUME_RUNS} runs, mirrored order"),
        raw.0,
        raw.1,
        "msg/s",
        &Latencies::default(),
    );
    Ok((ours, raw))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::unavailable(format!("baseline task failed: {e}")))?
}

/// Runs the three scenarios with `messages` records each.
pub async fn run(messages: u64) -> Result<Vec<ScenarioReport>> {
    let messages = messages.max(PUBLISHERS as u64);
    let envs = Arc::new(events(messages)?);
    let recs: Arc<Vec<Record>> = Arc::new(envs.iter().map(encode_record).collect());
    let scratch = Scratch::new()?;
    let params = |extra: serde_json::Value| {
        let mut p =
            serde_json::json!({"messages": messages, "payload_bytes": 256, "partitions": PARTITIONS, "sync": "normal", "journal": "wal"});
        if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        p
    };
    let mut reports = Vec::new();

    let (raw_a, r) = (scratch.0.join("raw-pipelined.db"), recs.clone());
    let base = blocking(move || raw_insert(&raw_a, &r, IN_FLIGHT)).await?;
    let bus = open_bus(&scratch.0.join("ours-pipelined.db")).await?;
    let ours = ours_pipelined(&bus, &envs).await?;
    reports.push(ScenarioReport::new("bus-sqlite/pipelined", ours, base, TARGET, params(serde_json::json!({"in_flight": IN_FLIGHT}))));

    let (raw_b, r) = (scratch.0.join("raw-concurrent.db"), recs.clone());
    let base = blocking(move || raw_insert(&raw_b, &r, PUBLISHERS)).await?;
    let bus16 = open_bus(&scratch.0.join("ours-concurrent.db")).await?;
    let ours = ours_concurrent(bus16.clone(), envs.clone()).await?;
    bus16.transport().close().await?;
    reports.push(ScenarioReport::new("bus-sqlite/concurrent16", ours, base, TARGET, params(serde_json::json!({"publishers": PUBLISHERS}))));

    let (ours, base) = consume(&bus, &scratch.0.join("raw-pipelined.db"), messages).await?;
    bus.stop_consuming(Duration::from_secs(10)).await?;
    bus.transport().close().await?;
    let consume_params = serde_json::json!({"max_poll_records": 1000, "runs": CONSUME_RUNS});
    reports.push(ScenarioReport::new("bus-sqlite/consume", ours, base, TARGET, params(consume_params)));
    Ok(reports)
}
