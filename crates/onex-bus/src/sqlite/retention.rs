//! Retention: dropping the oldest records of a partition by age, count or bytes. Runs on the
//! writer thread every `retention_interval` and on demand
//! ([`super::SqliteTransport::enforce_retention`]).

use chrono::Utc;
use rusqlite::{params, OptionalExtension, Transaction};

use super::codec::{base_id, end_offset, row_id, SqlContext};
use super::writer::{TopicCache, WriterState};
use onex_core::Result;

struct Limits {
    topic: String,
    ms: Option<i64>,
    records: Option<i64>,
    bytes: Option<i64>,
}

/// One pass over every topic with a limit; returns the records deleted.
pub(crate) fn run(st: &mut WriterState) -> Result<u64> {
    let deleted = st.write(|tx, cache| {
        let limits = topics_with_limits(tx)?;
        let mut deleted = 0;
        for l in limits {
            deleted += enforce(tx, &l)?;
            // The byte counters changed under the cache.
            cache_forget(cache, &l.topic);
        }
        Ok(deleted)
    })?;
    if deleted > 0 {
        tracing::debug!(deleted, "sqlite retention removed records");
    }
    Ok(deleted)
}

fn cache_forget(cache: &mut TopicCache, topic: &str) {
    cache.forget(topic);
}

fn topics_with_limits(tx: &Transaction<'_>) -> Result<Vec<Limits>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT name, retention_ms, retention_records, retention_bytes FROM bus_topics
             WHERE retention_ms IS NOT NULL OR retention_records IS NOT NULL OR retention_bytes IS NOT NULL",
        )
        .sql("listing retention limits")?;
    let rows = stmt
        .query_map([], |r| Ok(Limits { topic: r.get(0)?, ms: r.get(1)?, records: r.get(2)?, bytes: r.get(3)? }))
        .sql("listing retention limits")?;
    rows.collect::<rusqlite::Result<Vec<_>>>().sql("listing retention limits")
}

fn enforce(tx: &Transaction<'_>, l: &Limits) -> Result<u64> {
    let parts: Vec<(i64, i64, i64)> = tx
        .prepare_cached(
            "SELECT p.id, p.next_offset, p.bytes FROM bus_partitions p JOIN bus_topics t ON t.id = p.topic_id WHERE t.name = ?1",
        )
        .and_then(|mut s| s.query_map([&l.topic], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .sql("listing partitions for retention")?;
    let mut deleted = 0;
    for (pid, floor, bytes) in parts {
        let next = end_offset(tx, pid, floor)? as i64;
        let lo = base_id(pid);
        // The first row id to keep: the largest cut any limit asks for.
        let mut keep_from = lo;
        if let Some(max) = l.records {
            keep_from = keep_from.max(row_id(pid, (next - max).max(0) as u64));
        }
        if let Some(ms) = l.ms {
            let cutoff = Utc::now().timestamp_micros() - ms * 1000;
            let first_young: Option<i64> = tx
                .prepare_cached("SELECT id FROM bus_records WHERE id >= ?1 AND id < ?2 AND ts >= ?3 ORDER BY id LIMIT 1")
                .and_then(|mut s| s.query_row(params![lo, row_id(pid, next as u64), cutoff], |r| r.get(0)).optional())
                .sql("finding expired records")?;
            keep_from = keep_from.max(first_young.unwrap_or(row_id(pid, next as u64)));
        }
        let mut freed: i64 = size_of_range(tx, lo, keep_from)?;
        if let Some(max) = l.bytes {
            if bytes - freed > max {
                // Walk forward from the first kept record until what remains fits.
                let mut stmt = tx
                    .prepare_cached("SELECT id, length(value) + coalesce(length(key), 0) + coalesce(length(headers), 0) FROM bus_records WHERE id >= ?1 AND id < ?2 ORDER BY id")
                    .sql("sizing records")?;
                let mut rows = stmt.query(params![keep_from, row_id(pid, next as u64)]).sql("sizing records")?;
                while bytes - freed > max {
                    let Some(row) = rows.next().sql("sizing records")? else { break };
                    let (id, size): (i64, i64) = (row.get(0).sql("sizing")?, row.get(1).sql("sizing")?);
                    freed += size;
                    keep_from = id + 1;
                }
            }
        }
        if keep_from > lo {
            let n = tx
                .prepare_cached("DELETE FROM bus_records WHERE id >= ?1 AND id < ?2")
                .and_then(|mut s| s.execute(params![lo, keep_from]))
                .sql("deleting expired records")?;
            if n > 0 {
                // The end is kept here: the newest records may be among those deleted.
                tx.prepare_cached("UPDATE bus_partitions SET next_offset = ?1, bytes = max(bytes - ?2, 0) WHERE id = ?3")
                    .and_then(|mut s| s.execute(params![next, freed, pid]))
                    .sql("updating partition size")?;
                deleted += n as u64;
            }
        }
    }
    Ok(deleted)
}

/// Stored bytes (key + value + headers, as counted on append) of the rows in `[from, to)`.
fn size_of_range(tx: &Transaction<'_>, from: i64, to: i64) -> Result<i64> {
    if to <= from {
        return Ok(0);
    }
    tx.prepare_cached("SELECT coalesce(sum(length(value) + coalesce(length(key), 0) + coalesce(length(headers), 0)), 0) FROM bus_records WHERE id >= ?1 AND id < ?2")
        .and_then(|mut s| s.query_row(params![from, to], |r| r.get(0)))
        .sql("sizing expired records")
}
