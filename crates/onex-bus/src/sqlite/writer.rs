//! The single writer: one thread owns the write connection and commits everything queued
//! since its last commit in ONE transaction (group commit). A publish returns only after the
//! transaction holding its records committed.
//!
//! Offsets are assigned here. Each partition's next offset is cached in memory; the file
//! holds it as the newest record's row id ([`end_offset`]), so a transaction of appends
//! writes `bus_records` and nothing else (a topic with a byte limit also updates its
//! partitions' sizes). Another process may write the same file, so every transaction starts
//! with `BEGIN IMMEDIATE` (the file's write lock) and reloads the cache when
//! `PRAGMA data_version` says another connection committed meanwhile.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use onex_core::{Error, Receipt, Result};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::{oneshot, Notify};

use super::checkpoint::{self, Checkpointer};
use super::codec::{encode_headers, end_offset, row_id, SqlContext, MAX_OFFSET};
use super::config::SqliteConfig;
use super::stored_envelope;
use crate::partitioner::partition_for_key;
use crate::transport::ProduceRecord;

/// Most commands folded into one transaction (bounds the latency of a huge backlog).
const MAX_COMMANDS_PER_BATCH: usize = 8192;

/// A write to run on the writer thread; it starts its own transaction with
/// [`WriterState::write`] and sends its result itself.
pub(crate) type Job = Box<dyn FnOnce(&mut WriterState) + Send>;

enum Command {
    Produce(ProduceJob),
    Call(Job),
    Shutdown,
}

struct ProduceJob {
    topic: String,
    records: Vec<ProduceRecord>,
    reply: oneshot::Sender<Result<Vec<Receipt>>>,
}

/// A partition as the writer knows it.
#[derive(Debug)]
pub(crate) struct CachedPartition {
    pub(crate) next_offset: u64,
    pub(crate) bytes: i64,
    dirty: bool,
}

/// A topic as the writer knows it: its partitions' ids, in partition order.
#[derive(Debug)]
pub(crate) struct CachedTopic {
    pub(crate) partition_ids: Vec<i64>,
    round_robin: u32,
    /// The topic has a byte limit: appends keep `bus_partitions.bytes` up to date for
    /// retention. Without one nothing reads it, and appends do not pay for the update.
    counts_bytes: bool,
}

/// Topics and partition counters, valid while no other connection wrote.
#[derive(Debug, Default)]
pub(crate) struct TopicCache {
    topics: HashMap<String, CachedTopic>,
    partitions: HashMap<i64, CachedPartition>,
}

impl TopicCache {
    pub(crate) fn clear(&mut self) {
        self.topics.clear();
        self.partitions.clear();
    }

    /// Forgets one topic (deleted or recreated).
    pub(crate) fn forget(&mut self, name: &str) {
        if let Some(t) = self.topics.remove(name) {
            for pid in t.partition_ids {
                self.partitions.remove(&pid);
            }
        }
    }

    /// Loads `name` into the cache; `None` when the topic does not exist.
    fn load(&mut self, tx: &Transaction<'_>, name: &str) -> Result<Option<()>> {
        if self.topics.contains_key(name) {
            return Ok(Some(()));
        }
        let row: Option<(i64, bool)> = tx
            .prepare_cached("SELECT id, retention_bytes IS NOT NULL FROM bus_topics WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .sql("looking up a topic")?;
        let Some((id, counts_bytes)) = row else { return Ok(None) };
        let mut stmt = tx
            .prepare_cached("SELECT id, next_offset, bytes FROM bus_partitions WHERE topic_id = ?1 ORDER BY part")
            .sql("loading partitions")?;
        let rows =
            stmt.query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))).sql("loading partitions")?;
        let rows = rows.collect::<rusqlite::Result<Vec<_>>>().sql("loading partitions")?;
        let mut partition_ids = Vec::with_capacity(rows.len());
        for (pid, floor, bytes) in rows {
            partition_ids.push(pid);
            let next_offset = end_offset(tx, pid, floor)?;
            self.partitions.insert(pid, CachedPartition { next_offset, bytes, dirty: false });
        }
        self.topics.insert(name.to_string(), CachedTopic { partition_ids, round_robin: 0, counts_bytes });
        Ok(Some(()))
    }
}

/// What the writer thread owns.
#[derive(Debug)]
pub(crate) struct WriterState {
    conn: Connection,
    cache: TopicCache,
    data_version: i64,
    notify: Arc<Notify>,
    pub(crate) config: Arc<SqliteConfig>,
    checkpointer: Checkpointer,
}

impl WriterState {
    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits it; on failure rolls back and
    /// drops the cache (its counters may be ahead of the file).
    pub(crate) fn write<T>(&mut self, f: impl FnOnce(&Transaction<'_>, &mut TopicCache) -> Result<T>) -> Result<T> {
        let WriterState { conn, cache, data_version, .. } = self;
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).sql("starting a write transaction")?;
        let seen: i64 =
            tx.prepare_cached("PRAGMA data_version").and_then(|mut s| s.query_row([], |r| r.get(0))).sql("reading the data version")?;
        if seen != *data_version {
            // Another connection (process) committed: offsets and topics may have moved.
            cache.clear();
            *data_version = seen;
        }
        match f(&tx, cache) {
            Ok(v) => match tx.commit() {
                Ok(()) => {
                    // Checkpoints run on their own thread, not inside this commit.
                    self.checkpointer.committed(&self.conn);
                    Ok(v)
                }
                Err(e) => {
                    cache.clear();
                    Err(super::codec::sql_error("committing", e))
                }
            },
            Err(e) => {
                cache.clear();
                Err(e)
            }
        }
    }

    /// Wakes in-process consumers after a commit that added records.
    pub(crate) fn notify(&self) {
        self.notify.notify_waiters();
    }

    /// Commits `first` and every publish that arrives while its transaction is open, in ONE
    /// transaction (group commit). Records are inserted as their publishes arrive, so the
    /// inserts overlap the wait for the rest of the group instead of following it. The
    /// transaction stays open while publishes are already queued, and for at most [`LINGER`]
    /// (ended early by a [`LINGER_GAP`] lull) while fewer than `expected` (the previous
    /// transaction's count) have come. Returns how many publishes it held and the first
    /// command that is not a publish (it runs after the commit, keeping callers' order).
    fn produce_group(&mut self, first: ProduceJob, rx: &mpsc::Receiver<Command>, expected: usize) -> (usize, Option<Command>) {
        let now = Utc::now();
        let ts = now.timestamp_micros();
        let mut jobs = vec![first];
        let mut next = None;
        let result = self.write(|tx, cache| {
            let mut append = Append::new(tx, now, ts)?;
            let mut outcomes = vec![append.job(cache, &jobs[0])?];
            let deadline = Instant::now() + LINGER;
            while jobs.len() < MAX_COMMANDS_PER_BATCH {
                let cmd = match rx.try_recv() {
                    Ok(c) => c,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                    Err(mpsc::TryRecvError::Empty) => {
                        let left = deadline.saturating_duration_since(Instant::now()).min(LINGER_GAP);
                        if jobs.len() >= expected || left.is_zero() {
                            break;
                        }
                        match rx.recv_timeout(left) {
                            Ok(c) => c,
                            Err(_) => break,
                        }
                    }
                };
                match cmd {
                    Command::Produce(job) => {
                        // Held before appending: if the transaction fails, this caller gets
                        // its error like the others instead of a dropped reply.
                        jobs.push(job);
                        outcomes.push(append.job(cache, jobs.last().expect("just pushed"))?);
                    }
                    other => {
                        next = Some(other);
                        break;
                    }
                }
            }
            append.save_sizes(cache)?;
            Ok(outcomes)
        });
        let held = jobs.len();
        match result {
            Ok(outcomes) => {
                self.notify();
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                let report = e.report();
                for job in jobs {
                    let err =
                        Error::unavailable(format!("publishing to {:?} failed, nothing of the batch was written: {report}", job.topic))
                            .with("topic", &job.topic);
                    let _ = job.reply.send(Err(err));
                }
            }
        }
        (held, next)
    }
}

/// Appends records inside one open transaction and remembers the partitions it moved.
struct Append<'t> {
    insert: rusqlite::CachedStatement<'t>,
    tx: &'t Transaction<'t>,
    dirty: Vec<i64>,
    now: DateTime<Utc>,
    ts: i64,
}

impl<'t> Append<'t> {
    fn new(tx: &'t Transaction<'t>, now: DateTime<Utc>, ts: i64) -> Result<Self> {
        let insert = tx
            .prepare_cached("INSERT INTO bus_records(id, ts, key, value, headers) VALUES (?1, ?2, ?3, ?4, ?5)")
            .sql("preparing the insert")?;
        Ok(Append { insert, tx, dirty: Vec::new(), now, ts })
    }

    /// Appends one job's records. A job whose topic is missing or whose partition is out of
    /// range fails alone (the inner error), before any of its records is written; a SQLite
    /// failure fails the transaction (the outer error).
    fn job(&mut self, cache: &mut TopicCache, job: &ProduceJob) -> Result<Result<Vec<Receipt>>> {
        if cache.load(self.tx, &job.topic)?.is_none() {
            return Ok(Err(Error::not_found(format!("topic {:?} does not exist", job.topic)).with("topic", &job.topic)));
        }
        let topic = cache.topics.get_mut(&job.topic).expect("loaded above");
        let n = topic.partition_ids.len() as u32;
        if let Some(p) = job.records.iter().filter_map(|r| r.partition).find(|p| *p >= n) {
            return Ok(Err(Error::rejected(format!("partition {p} does not exist in topic {:?} ({n} partitions)", job.topic))
                .with("topic", &job.topic)));
        }
        let mut receipts = Vec::with_capacity(job.records.len());
        for rec in &job.records {
            let p = match (rec.partition, &rec.key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, n),
                (None, None) => {
                    topic.round_robin = topic.round_robin.wrapping_add(1);
                    topic.round_robin % n
                }
            };
            let pid = topic.partition_ids[p as usize];
            let part = cache.partitions.get_mut(&pid).expect("partitions load with their topic");
            let offset = part.next_offset;
            if offset > MAX_OFFSET {
                return Err(Error::rejected(format!(
                    "partition {p} of topic {:?} is full ({MAX_OFFSET} offsets); create a new topic",
                    job.topic
                )));
            }
            let r = &rec.record;
            let (key, value, headers) = match r.published_envelope() {
                Some(env) => (env.partition_key.as_ref().map(String::as_bytes), &env.payload[..], Some(stored_envelope::encode(env))),
                None => (r.key.as_deref(), &r.value[..], encode_headers(&r.headers)),
            };
            // Counted as stored, the same measure retention subtracts.
            let stored = key.map_or(0, <[u8]>::len) + value.len() + headers.as_ref().map_or(0, Vec::len);
            self.insert.execute(params![row_id(pid, offset), self.ts, key, value, headers]).sql("appending a record")?;
            part.next_offset += 1;
            if topic.counts_bytes {
                part.bytes += stored as i64;
                if !part.dirty {
                    part.dirty = true;
                    self.dirty.push(pid);
                }
            }
            receipts.push(Receipt { topic: job.topic.clone(), partition: p, offset, timestamp: self.now });
        }
        Ok(Ok(receipts))
    }

    /// Persists the sizes of the partitions that grew (of topics with a byte limit) in the
    /// same transaction.
    fn save_sizes(&mut self, cache: &mut TopicCache) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let mut update = self.tx.prepare_cached("UPDATE bus_partitions SET bytes = ?1 WHERE id = ?2").sql("preparing the size update")?;
        for pid in self.dirty.drain(..) {
            let part = cache.partitions.get_mut(&pid).expect("dirty partition is cached");
            update.execute(params![part.bytes, pid]).sql("saving partition sizes")?;
            part.dirty = false;
        }
        Ok(())
    }
}

/// The handle to the writer thread. Dropping the last handle lets the thread finish what is
/// queued and exit.
#[derive(Debug)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Command>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Produce(_) => "Produce",
            Command::Call(_) => "Call",
            Command::Shutdown => "Shutdown",
        })
    }
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn start(conn: Connection, config: Arc<SqliteConfig>, notify: Arc<Notify>, path: &std::path::Path) -> Result<Writer> {
        let name = path.display().to_string();
        let data_version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0)).sql("reading the data version")?;
        let checkpointer = Checkpointer::start(path, config.sync.pragma(), &name)?;
        let state = WriterState { conn, cache: TopicCache::default(), data_version, notify, config, checkpointer };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("onex-sqlite-writer:{name}"))
            .spawn(move || run(state, rx))
            .map_err(|e| Error::initialization("cannot start the sqlite writer thread").with_source(e))?;
        Ok(Writer { tx, thread: Mutex::new(Some(thread)) })
    }

    fn send(&self, cmd: Command) -> Result<()> {
        self.tx.send(cmd).map_err(|_| Error::shutdown("the sqlite transport is closed"))
    }

    /// Appends `records` to `topic`; returns once their transaction committed.
    pub(crate) async fn produce(&self, topic: &str, records: Vec<ProduceRecord>) -> Result<Vec<Receipt>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Produce(ProduceJob { topic: topic.to_string(), records, reply }))?;
        rx.await.map_err(|_| Error::shutdown("the sqlite writer stopped before answering"))?
    }

    /// Runs `f` on the writer thread and returns its result.
    pub(crate) async fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut WriterState) -> Result<T> + Send + 'static) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Call(Box::new(move |st| {
            let _ = reply.send(f(st));
        })))?;
        rx.await.map_err(|_| Error::shutdown("the sqlite writer stopped before answering"))?
    }

    /// Queues `f` without waiting (for `Drop`); a failure is logged.
    pub(crate) fn call_detached(&self, what: &'static str, f: impl FnOnce(&mut WriterState) -> Result<()> + Send + 'static) {
        let _ = self.send(Command::Call(Box::new(move |st| {
            if let Err(e) = f(st) {
                tracing::warn!(error = %e.report(), "{what} failed");
            }
        })));
    }

    /// Finishes what is queued and stops the thread.
    pub(crate) async fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Longest wait for publishers expected to join a transaction.
const LINGER: Duration = Duration::from_micros(300);
/// A lull this long ends the wait early: whoever was coming has come.
const LINGER_GAP: Duration = Duration::from_micros(60);

/// Group commit that converges: publishers that each await their publish come back a few
/// microseconds after the previous commit answered them, so a transaction waits (see
/// [`WriterState::produce_group`]) for as many publishes as the previous one held instead of
/// splitting them between two. A lone publisher never waits (it expects one); a pipelining
/// one, whose next publishes wait for this very commit, costs at most one [`LINGER_GAP`].
/// Publishers answered a moment ago come back within tens of microseconds: looking for them
/// with the CPU yielded (instead of sleeping until woken) saves the wake-up on both sides.
fn spin_recv(rx: &mpsc::Receiver<Command>) -> Option<Command> {
    let until = Instant::now() + SPIN;
    loop {
        match rx.try_recv() {
            Ok(c) => return Some(c),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if Instant::now() >= until => return None,
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
}

/// How long [`spin_recv`] looks.
const SPIN: Duration = Duration::from_micros(50);

fn run(mut st: WriterState, rx: mpsc::Receiver<Command>) {
    // On this thread: the hook notes the WAL size where `after_commit` reads it.
    checkpoint::install_hook(&st.conn);
    let interval = st.config.retention_interval;
    let mut next_retention = Instant::now() + interval;
    // Publishes in the previous transaction: their callers are likely to publish again.
    let mut expected = 0;
    let mut queued: Option<Command> = None;
    loop {
        if Instant::now() >= next_retention {
            // Also under a steady stream of writes, which never lets the wait below time out.
            if let Err(e) = super::retention::run(&mut st) {
                tracing::warn!(error = %e.report(), "sqlite retention pass failed; will retry");
            }
            next_retention = Instant::now() + interval;
        }
        let cmd = match queued.take().or_else(|| (expected > 1).then(|| spin_recv(&rx)).flatten()) {
            Some(c) => c,
            None => {
                let wait = next_retention.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
                match rx.recv_timeout(wait) {
                    Ok(c) => c,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        match cmd {
            Command::Produce(job) => (expected, queued) = st.produce_group(job, &rx, expected),
            Command::Call(job) => job(&mut st),
            Command::Shutdown => break,
        }
    }
    // Fold the WAL into the main file so a reader without write access sees everything.
    let WriterState { conn, checkpointer, .. } = st;
    drop(checkpointer);
    let _ = checkpoint::checkpoint(&conn, "PASSIVE");
}
