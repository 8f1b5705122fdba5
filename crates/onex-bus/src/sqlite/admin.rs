//! Topic administration of the sqlite transport.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::Utc;
use onex_core::{validate_topic, Error, PartitionInfo, Result, TopicAdmin, TopicInfo, TopicSpec};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::codec::{base_id, row_id, SqlContext, MAX_PARTITION_ID};
use super::SqliteTransport;

/// Most partitions one topic may have.
const MAX_PARTITIONS: u32 = 10_000;

/// Topic-level retention settings (`retention.ms`, `retention.records`, `retention.bytes`),
/// falling back to the transport's defaults.
fn retention_of(spec: &TopicSpec, t: &SqliteTransport) -> Result<[Option<i64>; 3]> {
    let c = &t.shared.config;
    let read = |k: &str, default: Option<u64>| -> Result<Option<i64>> {
        match spec.config.get(k) {
            None => Ok(default.map(|v| v as i64)),
            Some(v) => v.parse::<i64>().ok().filter(|n| *n > 0).map(Some).ok_or_else(|| {
                Error::config(format!("topic {:?}: {k}={v:?} must be a positive whole number", spec.name)).with("topic", &spec.name)
            }),
        }
    };
    Ok([
        read("retention.ms", c.retention_ms)?,
        read("retention.records", c.retention_records)?,
        read("retention.bytes", c.retention_bytes)?,
    ])
}

fn create(tx: &Transaction<'_>, spec: &TopicSpec, retention: [Option<i64>; 3]) -> Result<()> {
    let exists: Option<i64> =
        tx.query_row("SELECT id FROM bus_topics WHERE name = ?1", [&spec.name], |r| r.get(0)).optional().sql("looking up a topic")?;
    if exists.is_some() {
        return Err(Error::rejected(format!("topic {:?} already exists", spec.name)).with("topic", &spec.name).with("exists", "true"));
    }
    let config = serde_json::to_string(&spec.config).expect("string map serializes");
    tx.execute(
        "INSERT INTO bus_topics(name, partitions, config, retention_ms, retention_records, retention_bytes, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![spec.name, spec.partitions, config, retention[0], retention[1], retention[2], Utc::now().timestamp_millis()],
    )
    .sql("creating a topic")?;
    let topic_id = tx.last_insert_rowid();
    let mut insert = tx.prepare_cached("INSERT INTO bus_partitions(topic_id, part) VALUES (?1, ?2)").sql("creating partitions")?;
    for p in 0..spec.partitions {
        insert.execute(params![topic_id, p]).sql("creating a partition")?;
        if tx.last_insert_rowid() > MAX_PARTITION_ID {
            return Err(Error::rejected(format!("this database has used all {MAX_PARTITION_ID} partition ids; start a new database file")));
        }
    }
    Ok(())
}

fn delete(tx: &Transaction<'_>, name: &str) -> Result<()> {
    let id: Option<i64> =
        tx.query_row("SELECT id FROM bus_topics WHERE name = ?1", [name], |r| r.get(0)).optional().sql("looking up a topic")?;
    let Some(id) = id else {
        return Err(Error::not_found(format!("topic {name:?} does not exist")).with("topic", name));
    };
    let pids: Vec<i64> = tx
        .prepare("SELECT id FROM bus_partitions WHERE topic_id = ?1")
        .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
        .sql("listing partitions")?;
    for pid in pids {
        tx.execute("DELETE FROM bus_records WHERE id >= ?1 AND id < ?2", params![base_id(pid), base_id(pid + 1)])
            .sql("deleting records")?;
    }
    for table in ["bus_partitions", "bus_offsets", "bus_groups", "bus_members", "bus_leases"] {
        tx.execute(&format!("DELETE FROM {table} WHERE topic_id = ?1"), [id]).sql("deleting topic state")?;
    }
    tx.execute("DELETE FROM bus_topics WHERE id = ?1", [id]).sql("deleting a topic")?;
    Ok(())
}

/// Describes a topic from a reader connection; `None` when it does not exist.
pub(crate) fn describe(conn: &Connection, name: &str) -> Result<Option<TopicInfo>> {
    let row: Option<(i64, u32, String)> = conn
        .prepare_cached("SELECT id, partitions, config FROM bus_topics WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .sql("describing a topic")?;
    let Some((id, count, config)) = row else { return Ok(None) };
    let parts: Vec<(u32, i64, i64)> = conn
        .prepare_cached("SELECT part, id, next_offset FROM bus_partitions WHERE topic_id = ?1 ORDER BY part")
        .and_then(|mut s| s.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .sql("describing partitions")?;
    let mut first =
        conn.prepare_cached("SELECT id FROM bus_records WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT 1").sql("describing partitions")?;
    let mut partitions = Vec::with_capacity(parts.len());
    for (p, pid, floor) in parts {
        let high = super::codec::end_offset(conn, pid, floor)?;
        let low: Option<i64> =
            first.query_row(params![base_id(pid), row_id(pid, high)], |r| r.get(0)).optional().sql("reading a low watermark")?;
        partitions.push(PartitionInfo { partition: p, low_watermark: low.map_or(high, super::codec::offset_of), high_watermark: high });
    }
    let config: BTreeMap<String, String> = serde_json::from_str(&config).unwrap_or_default();
    Ok(Some(TopicInfo { name: name.to_string(), partitions, partition_count: count, config }))
}

/// The id and partition ids of a topic; `None` when it does not exist.
pub(crate) fn lookup(conn: &Connection, name: &str) -> Result<Option<(i64, Vec<i64>)>> {
    let id: Option<i64> = conn
        .prepare_cached("SELECT id FROM bus_topics WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .sql("looking up a topic")?;
    let Some(id) = id else { return Ok(None) };
    let pids: Vec<i64> = conn
        .prepare_cached("SELECT id FROM bus_partitions WHERE topic_id = ?1 ORDER BY part")
        .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
        .sql("listing partitions")?;
    Ok(Some((id, pids)))
}

#[async_trait]
impl TopicAdmin for SqliteTransport {
    async fn create_topic(&self, spec: TopicSpec) -> Result<()> {
        validate_topic(&spec.name)?;
        if spec.partitions == 0 || spec.partitions > MAX_PARTITIONS {
            return Err(Error::config(format!("topic {:?} needs 1 to {MAX_PARTITIONS} partitions, got {}", spec.name, spec.partitions))
                .with("topic", &spec.name));
        }
        let retention = retention_of(&spec, self)?;
        self.shared.writer.call(move |st| st.write(|tx, _| create(tx, &spec, retention))).await
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.shared
            .writer
            .call(move |st| {
                st.write(|tx, cache| {
                    delete(tx, &name)?;
                    cache.forget(&name);
                    Ok(())
                })?;
                st.notify();
                Ok(())
            })
            .await
    }

    async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        self.read(|conn| {
            let names: Vec<String> = conn
                .prepare_cached("SELECT name FROM bus_topics ORDER BY name")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .sql("listing topics")?;
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                if let Some(info) = describe(conn, &n)? {
                    out.push(info);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        let n = name.to_string();
        self.read(move |conn| describe(conn, &n))
            .await?
            .ok_or_else(|| Error::not_found(format!("topic {name:?} does not exist")).with("topic", name))
    }
}
