//! A group member on one topic: reads with its own connection (WAL readers never block the
//! writer), coordinates partitions through the leases of [`super::group`].

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use onex_core::envelope::decode_binary_pairs;
use onex_core::{Error, Record, Result, StartFrom};
use parking_lot::Mutex;
use rusqlite::{params, Connection, Transaction, TransactionBehavior};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::codec::{decode_headers, offset_of, row_id, HeaderPairs, SqlContext};
use super::group::{self, MemberKey};
use super::read_ahead::{Batch, LaneSpec, ReadAhead};
use super::stored_envelope::{self, is_stored_envelope, DayCache};
use super::Shared;
use crate::transport::{ConsumedRecord, PollEvent, RecordBody, TransportConsumer};

/// How often a waiting consumer looks for records and group changes made by other
/// processes (in-process commits wake it at once).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls' worth of records a read-ahead lane reads in one transaction. Two lanes reading
/// two polls each (4,000 records at the default `max_poll_records`) instead of half a poll
/// each took `bench bus-sqlite --messages 1000000` consume from 1.04–1.66M to 1.64–2.06M
/// records/s (decisions.md, thirteenth session).
const LANE_READ_POLLS: usize = 2;

/// Retries of a lease release that failed on a busy database.
const RELEASE_ATTEMPTS: u32 = 10;

/// One member of (group, topic).
pub(crate) struct SqliteConsumer {
    shared: Arc<Shared>,
    reader: Arc<Mutex<Connection>>,
    /// A second connection, a second lane of the read-ahead (opened on the first full read
    /// with two or more partitions; `None` until then or if it failed).
    second_reader: Option<Arc<Mutex<Connection>>>,
    /// Lanes reading ahead once a read came back full, until they catch up.
    ahead: Arc<ReadAhead>,
    key: Arc<MemberKey>,
    topic: Arc<str>,
    partition_ids: Arc<Vec<i64>>,
    start: StartFrom,
    positions: BTreeMap<u32, u64>,
    revoking: Vec<u32>,
    pending: VecDeque<PollEvent>,
    generation_seen: Option<i64>,
    /// `PRAGMA data_version` of the reader at the last read that found nothing new: while it
    /// is unchanged no connection committed, so an idle poll skips the queries.
    quiet_version: Option<i64>,
    coordinate_next: bool,
    cursor: usize,
    heartbeat: JoinHandle<()>,
    closed: bool,
}

impl std::fmt::Debug for SqliteConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteConsumer")
            .field("group", &self.key.group)
            .field("topic", &self.topic)
            .field("member", &self.key.member)
            .finish()
    }
}

impl SqliteConsumer {
    /// Joins the group and starts the heartbeat.
    pub(crate) async fn join(
        shared: Arc<Shared>,
        group: &str,
        topic: &str,
        topic_id: i64,
        partition_ids: Vec<i64>,
        start: StartFrom,
    ) -> Result<Self> {
        let key = Arc::new(MemberKey {
            group: group.to_string(),
            topic: topic.to_string(),
            topic_id,
            member: uuid::Uuid::new_v4().simple().to_string(),
        });
        let path = shared.path.clone();
        let reader = tokio::task::spawn_blocking(move || super::schema::open_reader(&path))
            .await
            .map_err(|e| Error::initialization(format!("opening a reader connection failed: {e}")))??;
        let ttl = shared.config.lease_ttl;
        let k = key.clone();
        shared
            .writer
            .call(move |st| {
                st.write(|tx, _| group::join(tx, &k, ttl))?;
                st.notify();
                Ok(())
            })
            .await?;
        let heartbeat = tokio::spawn(heartbeat(shared.clone(), key.clone()));
        Ok(SqliteConsumer {
            shared,
            reader: Arc::new(Mutex::new(reader)),
            second_reader: None,
            ahead: ReadAhead::new(),
            key,
            topic: Arc::from(topic),
            partition_ids: Arc::new(partition_ids),
            start,
            positions: BTreeMap::new(),
            revoking: Vec::new(),
            pending: VecDeque::new(),
            generation_seen: None,
            quiet_version: None,
            coordinate_next: true,
            cursor: 0,
            heartbeat,
            closed: false,
        })
    }

    /// One coordination round; queues the Revoked/Assigned events it implies.
    async fn coordinate(&mut self) -> Result<()> {
        let (key, n, ttl, start) = (self.key.clone(), self.partition_ids.len() as u32, self.shared.config.lease_ttl, self.start);
        let c = self.shared.writer.call(move |st| st.write(|tx, _| group::coordinate(tx, &key, n, ttl, start))).await?;
        self.generation_seen = Some(c.generation);
        self.quiet_version = None;
        // Partitions we read but no longer lease (expired while we stalled), and partitions
        // the split gives to another member: both are revoked; the engine commits what it
        // can (refused when the lease is gone) and acknowledges.
        let give_up: Vec<u32> = self.positions.keys().copied().filter(|p| !c.held.contains(p) || !c.target.contains(p)).collect();
        if !give_up.is_empty() || !c.acquired.is_empty() {
            self.ahead.reset();
        }
        if !give_up.is_empty() {
            for p in &give_up {
                self.positions.remove(p);
            }
            self.revoking.extend(&give_up);
            self.pending.push_back(PollEvent::Revoked(give_up));
        }
        if !c.acquired.is_empty() {
            let mut parts = Vec::with_capacity(c.acquired.len());
            for (p, offset) in c.acquired {
                self.positions.insert(p, offset);
                parts.push(p);
            }
            self.pending.push_back(PollEvent::Assigned(parts));
        }
        Ok(())
    }

    /// Reads up to `max` records of owned partitions and the group generation, in one read
    /// transaction on the reader connection. When a read comes back full, lanes read ahead
    /// (see [`super::read_ahead`]) until the member has caught up.
    async fn read(&mut self, max: usize) -> Result<(Option<i64>, Vec<ConsumedRecord>)> {
        if let Some(batches) = self.ahead.next(max).await? {
            return Ok(self.took(batches));
        }
        let mut parts: Vec<(u32, i64, u64)> = self.positions.iter().map(|(p, pos)| (*p, self.partition_ids[*p as usize], *pos)).collect();
        if !parts.is_empty() {
            self.cursor = (self.cursor + 1) % parts.len();
            parts.rotate_left(self.cursor);
        }
        let (reader, key, topic, quiet) = (self.reader.clone(), self.key.clone(), self.topic.clone(), self.quiet_version);
        let read = tokio::task::spawn_blocking(move || {
            let mut conn = reader.lock();
            let version: i64 = conn
                .prepare_cached("PRAGMA data_version")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .sql("reading the data version")?;
            if quiet == Some(version) {
                return Ok::<_, Error>((version, None));
            }
            let batch = read_batch(&key, &topic, &mut conn, &parts, max)?;
            Ok((version, Some(batch)))
        });
        let (version, read) = read.await.map_err(|e| Error::unavailable(format!("sqlite read task failed: {e}")))??;
        let Some(Batch { generation, records }) = read else {
            return Ok((self.generation_seen, Vec::new()));
        };
        self.quiet_version = (records.is_empty() && generation == self.generation_seen).then_some(version);
        self.advance(&records);
        if records.len() >= max {
            self.begin_read_ahead(max).await;
        }
        Ok((generation, records))
    }

    /// Records are in offset order per partition: the last one of each moves its position.
    fn advance(&mut self, records: &[ConsumedRecord]) {
        for r in records.iter().rev() {
            if let Some(pos) = self.positions.get_mut(&r.partition) {
                *pos = (*pos).max(r.offset + 1);
            }
        }
    }

    /// Starts the lanes: one per reader connection (a second one is opened when two or more
    /// partitions are assigned), each reading [`LANE_READ_POLLS`] polls' worth of records per
    /// transaction, queued as batches of one poll.
    async fn begin_read_ahead(&mut self, max: usize) {
        if self.positions.len() >= 2 && max >= 2 && self.second_reader.is_none() {
            self.open_second_reader().await;
        }
        let conns: Vec<_> = std::iter::once(self.reader.clone()).chain(self.second_reader.clone()).collect();
        let spec = LaneSpec {
            read: max.saturating_mul(LANE_READ_POLLS),
            batch: max,
            conns,
            key: self.key.clone(),
            topic: self.topic.clone(),
            partition_ids: self.partition_ids.clone(),
        };
        self.ahead.begin(&self.positions, spec);
    }

    /// The records of batches the lanes read, and the newest generation they saw.
    fn took(&mut self, batches: Vec<Batch>) -> (Option<i64>, Vec<ConsumedRecord>) {
        let mut generation = self.generation_seen;
        let mut records = Vec::new();
        for b in batches {
            if b.generation != self.generation_seen {
                generation = b.generation;
            }
            if records.is_empty() {
                records = b.records;
            } else {
                records.extend(b.records);
            }
        }
        self.advance(&records);
        self.quiet_version = None;
        (generation, records)
    }

    async fn open_second_reader(&mut self) {
        let path = self.shared.path.clone();
        match tokio::task::spawn_blocking(move || super::schema::open_reader(&path)).await {
            Ok(Ok(conn)) => self.second_reader = Some(Arc::new(Mutex::new(conn))),
            Ok(Err(e)) => tracing::debug!(error = %e.report(), "a second reader connection could not be opened; reading with one"),
            Err(_) => {}
        }
    }
}

/// One read transaction: the group generation and up to `max` records of `parts`.
pub(super) fn read_batch(key: &MemberKey, topic: &Arc<str>, conn: &mut Connection, parts: &[(u32, i64, u64)], max: usize) -> Result<Batch> {
    let tx = Transaction::new(conn, TransactionBehavior::Deferred).sql("starting a read")?;
    let generation = group::generation(&tx, key)?;
    let records = read_partitions(&tx, topic, parts, max)?;
    tx.finish().sql("ending a read")?;
    Ok(Batch { generation, records })
}

/// One partition's records from an offset on, up to a count.
const READ_RECORDS: &str = "SELECT id, ts, key, value, headers FROM bus_records WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3";

fn read_partitions(tx: &Transaction<'_>, topic: &Arc<str>, parts: &[(u32, i64, u64)], max: usize) -> Result<Vec<ConsumedRecord>> {
    let mut out = Vec::with_capacity(max.min(1024));
    let mut stmt = tx.prepare_cached(READ_RECORDS).sql("preparing a read")?;
    let mut days = DayCache::default();
    // A name of this read's own: every record holds a reference, and the engine's threads
    // drop them while this lane reads the next batch. On the consumer's one shared `Arc`,
    // those counts moved its cache line between cores twice per record.
    let topic: Arc<str> = Arc::from(&**topic);
    let topic = &topic;
    for (p, pid, pos) in parts {
        if out.len() >= max {
            break;
        }
        let mut rows = stmt.query(params![row_id(*pid, *pos), row_id(*pid + 1, 0), (max - out.len()) as i64]).sql("reading records")?;
        while let Some(row) = rows.next().sql("reading records")? {
            let id: i64 = row.get(0).sql("reading a record")?;
            let ts: i64 = row.get(1).sql("reading a record")?;
            let key = row.get_ref(2).and_then(|v| Ok(v.as_blob_or_null()?)).sql("reading a key")?;
            let value = row.get_ref(3).and_then(|v| Ok(v.as_blob()?)).sql("reading a value")?;
            let headers = row.get_ref(4).and_then(|v| Ok(v.as_blob_or_null()?)).sql("reading headers")?;
            let (partition, offset) = (*p, offset_of(id));
            let body = match headers.filter(|h| is_stored_envelope(h)) {
                Some(blob) => match stored_envelope::decode(blob, key, value, &mut days) {
                    Ok(env) => RecordBody::from_envelope(Arc::new(env)),
                    Err(e) => {
                        tracing::error!(topic = %topic, partition, offset, error = %e.report(), "a stored envelope is damaged; delivering the record's key and value alone");
                        Record { key: key.map(Bytes::copy_from_slice), value: Bytes::copy_from_slice(value), headers: Default::default() }
                            .into()
                    }
                },
                None => stored_record(topic, partition, offset, key, value, headers),
            };
            out.push(ConsumedRecord {
                topic: topic.clone(),
                partition,
                offset,
                timestamp: days.datetime_micros(ts).unwrap_or_default(),
                record: Arc::new(body),
            });
        }
    }
    Ok(out)
}

/// A record stored with its headers (not a published envelope: see `stored_envelope`).
fn stored_record(topic: &Arc<str>, partition: u32, offset: u64, key: Option<&[u8]>, value: &[u8], headers: Option<&[u8]>) -> RecordBody {
    // One allocation per record: key and value are slices of it, and so are header values
    // when something asks for the record (a DLQ record, a retry); a handler gets the
    // envelope decoded straight from the stored headers.
    let (klen, vlen) = (key.map_or(0, <[u8]>::len), value.len());
    let mut buf = Vec::with_capacity(klen + vlen + headers.map_or(0, <[u8]>::len));
    buf.extend_from_slice(key.unwrap_or_default());
    buf.extend_from_slice(value);
    buf.extend_from_slice(headers.unwrap_or_default());
    let buf = Bytes::from(buf);
    let damaged = Cell::new(false);
    let pairs = HeaderPairs::new(headers.unwrap_or_default(), &damaged);
    // Not binary mode, an error or damaged headers: the engine decodes the record.
    let envelope = decode_binary_pairs(pairs, buf.slice(klen..klen + vlen)).and_then(Result::ok).filter(|_| !damaged.get());
    let (has_key, topic_name) = (key.is_some(), topic.clone());
    let record = move || {
        let headers = decode_headers(&buf.slice(klen + vlen..)).unwrap_or_else(|e| {
            tracing::error!(topic = %topic_name, partition, offset, error = %e.report(), "record headers are damaged; delivering the record without them");
            onex_core::Headers::new()
        });
        Record { key: has_key.then(|| buf.slice(..klen)), value: buf.slice(klen..klen + vlen), headers }
    };
    RecordBody::stored(envelope, record)
}

async fn heartbeat(shared: Arc<Shared>, key: Arc<MemberKey>) {
    let ttl = shared.config.lease_ttl;
    loop {
        tokio::time::sleep(ttl / 3).await;
        let k = key.clone();
        let result = shared
            .writer
            .call(move |st| {
                let changed = st.write(|tx, _| group::heartbeat(tx, &k, ttl))?;
                if changed {
                    st.notify();
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == onex_core::ErrorKind::Shutdown => return,
            Err(e) => tracing::warn!(group = %key.group, topic = %key.topic, error = %e.report(), "group heartbeat failed; retrying"),
        }
    }
}

#[async_trait]
impl TransportConsumer for SqliteConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<PollEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(ev);
            }
            let notify = self.shared.notify.clone();
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if std::mem::take(&mut self.coordinate_next) {
                if let Err(e) = self.coordinate().await {
                    self.coordinate_next = true;
                    return Err(e);
                }
                if let Some(ev) = self.pending.pop_front() {
                    return Ok(ev);
                }
            }
            let (generation, records) = self.read(max.max(1)).await?;
            if generation != self.generation_seen {
                self.coordinate_next = true;
            }
            if !records.is_empty() {
                return Ok(PollEvent::Records(records));
            }
            if self.coordinate_next {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(PollEvent::Idle);
            }
            let _ = tokio::time::timeout((deadline - now).min(POLL_INTERVAL), notified).await;
        }
    }

    async fn commit(&mut self, offsets: &[(u32, u64)]) -> Result<()> {
        if let Some((p, _)) = offsets.iter().find(|(p, _)| !self.positions.contains_key(p) && !self.revoking.contains(p)) {
            return Err(Error::invalid_state(format!(
                "partition {p} of {:?} is not owned by this consumer; commit refused",
                self.topic.as_ref()
            )));
        }
        let (key, offsets) = (self.key.clone(), offsets.to_vec());
        self.shared.writer.call(move |st| st.write(|tx, _| group::commit(tx, &key, &offsets))).await
    }

    async fn seek(&mut self, partition: u32, offset: u64) -> Result<()> {
        match self.positions.get_mut(&partition) {
            Some(pos) => {
                *pos = offset;
                self.quiet_version = None;
                self.ahead.reset();
                Ok(())
            }
            None => Err(Error::invalid_state(format!(
                "cannot seek partition {partition} of {:?}: not assigned to this consumer",
                self.topic.as_ref()
            ))),
        }
    }

    fn assignment(&self) -> Vec<u32> {
        self.positions.keys().copied().collect()
    }

    async fn revoke_complete(&mut self, partitions: &[u32]) -> Result<()> {
        // The heartbeat keeps renewing every lease this member holds, so a release that
        // failed would block the new owner for good: retry a busy database a few times.
        let mut attempt = 0;
        loop {
            let (key, parts) = (self.key.clone(), partitions.to_vec());
            let result = self
                .shared
                .writer
                .call(move |st| {
                    st.write(|tx, _| group::release(tx, &key, &parts))?;
                    st.notify();
                    Ok(())
                })
                .await;
            match result {
                Ok(()) => break,
                Err(e) if e.is_retryable() && attempt < RELEASE_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!(group = %self.key.group, topic = %self.topic, error = %e.report(), attempt, "releasing revoked partitions failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.revoking.retain(|p| !partitions.contains(p));
        Ok(())
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.closed = true;
        self.ahead.reset();
        self.heartbeat.abort();
        let key = self.key.clone();
        self.shared
            .writer
            .call(move |st| {
                st.write(|tx, _| group::leave(tx, &key))?;
                st.notify();
                Ok(())
            })
            .await
    }
}

impl Drop for SqliteConsumer {
    fn drop(&mut self) {
        self.heartbeat.abort();
        self.ahead.reset();
        if !self.closed {
            // Dropped without close (a cancelled task): leave now rather than after the TTL.
            let key = self.key.clone();
            self.shared.writer.call_detached("leaving a consumer group", move |st| {
                st.write(|tx, _| group::leave(tx, &key))?;
                st.notify();
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;
    use crate::sqlite::schema::{open_reader, open_writer};
    use crate::sqlite::SqliteConfig;

    #[test]
    fn reads_of_any_size_run_the_statement_as_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.db");
        let writer = open_writer(&path, &SqliteConfig::default()).unwrap();
        let ts = 1_764_000_000_000_000i64;
        for (pid, n) in [(1i64, 30u64), (2, 20)] {
            for offset in 0..n {
                writer
                    .execute(
                        "INSERT INTO bus_records(id, ts, key, value, headers) VALUES (?1, ?2, NULL, x'7b7d', NULL)",
                        params![row_id(pid, offset), ts],
                    )
                    .unwrap();
            }
        }
        let mut reader = open_reader(&path).unwrap();
        let key = MemberKey { group: "g".into(), topic: "t".into(), topic_id: 1, member: "m".into() };
        let topic: Arc<str> = Arc::from("t");
        // Each read binds a different LIMIT: what is left of `max` after the first partition.
        for max in [40, 25, 7, 50] {
            let batch = read_batch(&key, &topic, &mut reader, &[(0, 1, 0), (1, 2, 0)], max).unwrap();
            assert_eq!(batch.records.len(), max.min(50));
        }
        let stmt = reader.prepare_cached(READ_RECORDS).unwrap();
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "the read statement was parsed and planned again");
    }
}
