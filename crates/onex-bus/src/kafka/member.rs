//! The librdkafka side of a group member: a `BaseConsumer` driven by a dedicated thread.
//!
//! librdkafka runs rebalance callbacks on the thread that polls. The engine must finish and
//! commit revoked partitions *before* they move (the revoke handshake of
//! [`crate::transport::PollEvent::Revoked`]), so the revoke callback forwards `Revoked` to the
//! async side and blocks until the engine calls `revoke_complete` (or a timeout), serving the
//! engine's commits meanwhile. Records flow to the async side over an unbounded channel whose
//! depth is bounded by pausing the assignment above a high-water mark.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use onex_core::{Error, Headers, Record, Result};
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

use super::context::{self, LastError};
use super::errors;
use crate::transport::ConsumedRecord;

/// Records buffered for the engine above which the assignment is paused.
const HIGH_WATER: usize = 20_000;
/// Buffered records below which a paused assignment resumes.
const LOW_WATER: usize = 5_000;
/// Longest wait of one librdkafka poll; bounds how late a command (commit, seek) is served.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// What the member thread tells the async side.
#[derive(Debug)]
pub(crate) enum Event {
    Record(ConsumedRecord),
    Assigned(Vec<u32>),
    Revoked(Vec<u32>),
    /// A seek of this partition took effect: records of it fetched before are stale.
    Seeked(u32),
    Error(Error),
}

/// What the async side asks the member thread to do.
#[derive(Debug)]
pub(crate) enum Command {
    Commit { offsets: Vec<(u32, u64)>, reply: oneshot::Sender<Result<()>> },
    Seek { partition: u32, offset: u64, reply: oneshot::Sender<Result<()>> },
    RevokeComplete(Vec<u32>),
    Close { reply: oneshot::Sender<Result<()>> },
}

/// State shared by the member thread, its rebalance callbacks and the async side.
#[derive(Debug)]
pub(crate) struct MemberShared {
    pub(crate) topic: Arc<str>,
    pub(crate) group: String,
    pub(crate) brokers: String,
    events: mpsc::UnboundedSender<Event>,
    commands: Mutex<std_mpsc::Receiver<Command>>,
    /// Partitions this member owns (assigned and not yet released after a revocation).
    pub(crate) owned: Mutex<BTreeSet<u32>>,
    /// Records sent to the async side and not yet taken by a poll.
    pub(crate) buffered: AtomicUsize,
    closing: AtomicBool,
    pending_close: Mutex<Option<oneshot::Sender<Result<()>>>>,
    fresh_assignment: AtomicBool,
    revoke_timeout: Duration,
    request_timeout: Duration,
    last_error: LastError,
}

/// librdkafka context of a member: logging plus the rebalance handshake.
pub(crate) struct MemberContext {
    shared: Arc<MemberShared>,
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        context::log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        context::record_error(&self.shared.last_error, &error, reason);
    }
}

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<u32> {
    let mut ps: Vec<u32> = tpl.elements_for_topic(topic).iter().map(|e| e.partition() as u32).collect();
    ps.sort_unstable();
    ps
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let ps = partitions_of(tpl, &self.shared.topic);
            self.shared.on_revoke(consumer, ps);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let ps = partitions_of(tpl, &self.shared.topic);
                self.shared.owned.lock().extend(ps.iter().copied());
                self.shared.fresh_assignment.store(true, Ordering::Release);
                if !ps.is_empty() {
                    self.shared.send(Event::Assigned(ps));
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.shared.group, topic = %self.shared.topic, error = %e, "rebalance failed");
                self.shared.send(Event::Error(errors::from_kafka(e.clone(), "rebalancing the consumer group", &self.shared.brokers)));
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

impl MemberShared {
    fn send(&self, event: Event) {
        if self.events.send(event).is_err() {
            self.closing.store(true, Ordering::Release); // the async side is gone
        }
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The revoke handshake: tell the engine, serve its commits, wait for its acknowledgement.
    fn on_revoke(&self, consumer: &BaseConsumer<MemberContext>, ps: Vec<u32>) {
        if ps.is_empty() {
            return;
        }
        if !self.is_closing() {
            self.send(Event::Revoked(ps.clone()));
            let deadline = Instant::now() + self.revoke_timeout;
            let commands = self.commands.lock();
            while !self.is_closing() {
                match commands.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(Command::RevokeComplete(done)) => {
                        if ps.iter().all(|p| done.contains(p)) {
                            break;
                        }
                    }
                    Ok(Command::Close { reply }) => {
                        *self.pending_close.lock() = Some(reply);
                        self.closing.store(true, Ordering::Release);
                    }
                    Ok(cmd) => self.serve(consumer, cmd),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {
                        tracing::warn!(group = %self.group, topic = %self.topic, partitions = ?ps, timeout = ?self.revoke_timeout,
                            "the engine did not acknowledge the revocation in time; releasing the partitions with what was committed");
                        break;
                    }
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => self.closing.store(true, Ordering::Release),
                }
            }
        }
        let mut owned = self.owned.lock();
        for p in &ps {
            owned.remove(p);
        }
    }

    /// Serves a commit or seek on the member thread.
    fn serve(&self, consumer: &BaseConsumer<MemberContext>, cmd: Command) {
        match cmd {
            Command::Commit { offsets, reply } => {
                let _ = reply.send(self.commit(consumer, &offsets));
            }
            Command::Seek { partition, offset, reply } => {
                let result = if self.owned.lock().contains(&partition) {
                    consumer.seek(&self.topic, partition as i32, Offset::Offset(offset as i64), self.request_timeout).map_err(|e| {
                        errors::from_kafka(e, &format!("seeking {:?} partition {partition} to {offset}", self.topic), &self.brokers)
                    })
                } else {
                    Err(Error::invalid_state(format!(
                        "cannot seek partition {partition} of {:?}: not assigned to this consumer",
                        self.topic
                    )))
                };
                if result.is_ok() {
                    self.send(Event::Seeked(partition));
                }
                let _ = reply.send(result);
            }
            Command::RevokeComplete(_) => {} // late acknowledgement of a revocation that timed out
            Command::Close { reply } => {
                *self.pending_close.lock() = Some(reply);
                self.closing.store(true, Ordering::Release);
            }
        }
    }

    fn commit(&self, consumer: &BaseConsumer<MemberContext>, offsets: &[(u32, u64)]) -> Result<()> {
        {
            let owned = self.owned.lock();
            if let Some((p, _)) = offsets.iter().find(|(p, _)| !owned.contains(p)) {
                return Err(Error::invalid_state(format!(
                    "partition {p} of {:?} is not owned by this consumer; commit refused",
                    self.topic
                ))
                .with("group", &self.group));
            }
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (p, o) in offsets {
            tpl.add_partition_offset(&self.topic, *p as i32, Offset::Offset(*o as i64))
                .map_err(|e| errors::from_kafka(e, "building a commit", &self.brokers))?;
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| errors::from_kafka(e, &format!("committing offsets of group {:?} on {:?}", self.group, self.topic), &self.brokers))
    }

    fn forward(&self, msg: &BorrowedMessage<'_>) {
        let mut headers = Headers::new();
        if let Some(hs) = msg.headers() {
            for h in hs.iter() {
                // Kafka allows null header values; they arrive as empty bytes.
                headers.push_name(h.key, Bytes::copy_from_slice(h.value.unwrap_or_default()));
            }
        }
        let record = Record {
            key: msg.key().map(Bytes::copy_from_slice),
            value: Bytes::copy_from_slice(msg.payload().unwrap_or_default()),
            headers,
        };
        let timestamp = msg.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis).unwrap_or_else(Utc::now);
        let rec = ConsumedRecord {
            topic: self.topic.clone(),
            partition: msg.partition() as u32,
            offset: msg.offset() as u64,
            timestamp,
            record: Arc::new(record.into()),
        };
        self.buffered.fetch_add(1, Ordering::AcqRel);
        self.send(Event::Record(rec));
    }
}

/// Settings of one member.
#[derive(Debug)]
pub(crate) struct MemberSpec {
    pub(crate) topic: String,
    pub(crate) group: String,
    pub(crate) brokers: String,
    pub(crate) revoke_timeout: Duration,
    pub(crate) request_timeout: Duration,
}

/// The async side's handles on a running member.
#[derive(Debug)]
pub(crate) struct MemberHandle {
    pub(crate) shared: Arc<MemberShared>,
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
    pub(crate) commands: std_mpsc::Sender<Command>,
}

/// Creates the consumer, subscribes and starts its thread.
pub(crate) fn spawn(config: rdkafka::ClientConfig, spec: MemberSpec) -> Result<MemberHandle> {
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (cmd_tx, cmd_rx) = std_mpsc::channel();
    let shared = Arc::new(MemberShared {
        topic: Arc::from(spec.topic.as_str()),
        group: spec.group.clone(),
        brokers: spec.brokers.clone(),
        events: ev_tx,
        commands: Mutex::new(cmd_rx),
        owned: Mutex::new(BTreeSet::new()),
        buffered: AtomicUsize::new(0),
        closing: AtomicBool::new(false),
        pending_close: Mutex::new(None),
        fresh_assignment: AtomicBool::new(false),
        revoke_timeout: spec.revoke_timeout,
        request_timeout: spec.request_timeout,
        last_error: LastError::default(),
    });
    let what = format!("joining group {:?} on topic {:?}", spec.group, spec.topic);
    let consumer: BaseConsumer<MemberContext> =
        config.create_with_context(MemberContext { shared: shared.clone() }).map_err(|e| errors::from_kafka(e, &what, &spec.brokers))?;
    consumer.subscribe(&[&spec.topic]).map_err(|e| errors::from_kafka(e, &what, &spec.brokers))?;
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name(format!("onex-kafka-{}", spec.group))
        .spawn(move || run(consumer, thread_shared))
        .map_err(|e| Error::initialization(format!("{what}: cannot start the consumer thread")).with_source(e))?;
    Ok(MemberHandle { shared, events: ev_rx, commands: cmd_tx })
}

fn run(consumer: BaseConsumer<MemberContext>, shared: Arc<MemberShared>) {
    let mut paused = false;
    while !shared.is_closing() {
        loop {
            let cmd = shared.commands.lock().try_recv();
            match cmd {
                Ok(cmd) => shared.serve(&consumer, cmd),
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => {
                    shared.closing.store(true, Ordering::Release);
                    break;
                }
            }
        }
        if shared.is_closing() {
            break;
        }
        if shared.fresh_assignment.swap(false, Ordering::AcqRel) {
            paused = false; // a new assignment starts fetching
        }
        let buffered = shared.buffered.load(Ordering::Acquire);
        if (!paused && buffered >= HIGH_WATER) || (paused && buffered <= LOW_WATER) {
            if let Ok(assignment) = consumer.assignment() {
                let result = if paused { consumer.resume(&assignment) } else { consumer.pause(&assignment) };
                match result {
                    Ok(()) => paused = !paused,
                    Err(e) => tracing::warn!(group = %shared.group, error = %e, "pausing/resuming fetches failed"),
                }
            }
        }
        match consumer.poll(POLL_INTERVAL) {
            Some(Ok(msg)) => shared.forward(&msg),
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => {
                let err = errors::from_kafka(e, &format!("consuming {:?} in group {:?}", shared.topic, shared.group), &shared.brokers);
                shared.send(Event::Error(err));
                std::thread::sleep(Duration::from_millis(100)); // do not spin on a persistent error
            }
        }
    }
    // Leaving: `closing` makes the revoke callback of the final rebalance return at once
    // (the engine committed before it asked to close). Dropping the consumer leaves the group.
    drop(consumer);
    if let Some(reply) = shared.pending_close.lock().take() {
        let _ = reply.send(Ok(()));
    }
}
