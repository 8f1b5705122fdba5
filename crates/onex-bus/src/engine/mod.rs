//! The consumer engine: one implementation of DESIGN §3 rules 1–5, 7 and 8 for every transport.
//!
//! Per subscription, one task polls the transport and hands each partition's records to that
//! partition's worker (in order; partitions in parallel). A worker handles a record — decode,
//! idempotency claim, handler with in-place retries, DLQ — and then marks its offset done.
//! Because a partition is handled sequentially, the highest contiguous done offset is simply
//! the last one; the poll task commits it every `commit_interval`, on revocation and on stop.

mod dlq;
mod record;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onex_core::{IdempotencyStore, Result, Subscription, SubscriptionId};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

pub use self::dlq::{dlq_envelope, DlqFailure};
use crate::bus::BusCore;
use crate::transport::{ConsumedRecord, PollEvent, TransportConsumer};

/// Counters of one subscription.
#[derive(Debug, Default)]
pub struct SubscriptionStats {
    /// Records whose handler succeeded.
    pub handled: AtomicU64,
    /// In-place retries.
    pub retries: AtomicU64,
    /// Records sent to the DLQ.
    pub dead_lettered: AtomicU64,
    /// Records skipped as already handled (idempotent subscriptions).
    pub duplicates_skipped: AtomicU64,
    /// Offset commits made.
    pub commits: AtomicU64,
}

/// What a worker needs to handle records of one subscription.
pub(crate) struct SubscriptionContext {
    pub(crate) core: Arc<BusCore>,
    pub(crate) sub: Subscription,
    pub(crate) subscriber: String,
    pub(crate) idempotency: Option<Arc<dyn IdempotencyStore>>,
    pub(crate) stats: Arc<SubscriptionStats>,
    limit: Option<Arc<Semaphore>>,
}

/// A running subscription.
#[derive(Debug)]
pub(crate) struct RunningSubscription {
    stop: watch::Sender<Option<Duration>>,
    handle: JoinHandle<Result<()>>,
}

impl RunningSubscription {
    /// Starts the engine for `sub`.
    pub(crate) fn spawn(core: Arc<BusCore>, sub: Subscription, id: SubscriptionId, stats: Arc<SubscriptionStats>) -> Self {
        let (stop, stop_rx) = watch::channel(None);
        let limit = (sub.options.concurrency > 0).then(|| Arc::new(Semaphore::new(sub.options.concurrency)));
        let ctx = Arc::new(SubscriptionContext {
            idempotency: core.config.idempotency.clone(),
            subscriber: format!("{}#{}", sub.group, id.0),
            core,
            sub,
            stats,
            limit,
        });
        let handle = tokio::spawn(run(ctx, stop_rx));
        RunningSubscription { stop, handle }
    }

    /// Stops polling, drains in-flight handlers within `timeout`, commits, leaves the group.
    pub(crate) async fn stop(self, timeout: Duration) -> Result<()> {
        let _ = self.stop.send(Some(timeout));
        match tokio::time::timeout(timeout + Duration::from_secs(5), self.handle).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(onex_core::Error::Panic { message: format!("consumer task failed: {join}") }),
            Err(_) => Err(onex_core::Error::timeout("consumer did not stop", timeout)),
        }
    }

    /// Whether the engine task has ended (stopped or failed).
    pub(crate) fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

struct PartitionWorker {
    tx: mpsc::Sender<Vec<ConsumedRecord>>,
    /// Next offset after the last finished record (0 = none yet).
    done: Arc<AtomicU64>,
    committed: u64,
    stopping: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl PartitionWorker {
    fn spawn(ctx: Arc<SubscriptionContext>) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let done = Arc::new(AtomicU64::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let handle = tokio::spawn(work(ctx, rx, done.clone(), stopping.clone()));
        PartitionWorker { tx, done, committed: 0, stopping, handle }
    }

    /// Lets the record in flight finish (within `timeout`), drops the queued ones.
    async fn finish(self, timeout: Duration) -> (u64, u64) {
        self.stopping.store(true, Ordering::Relaxed);
        drop(self.tx);
        let mut handle = self.handle;
        if tokio::time::timeout(timeout, &mut handle).await.is_err() {
            tracing::warn!(?timeout, "handler still running at the stop deadline; its record stays uncommitted");
            handle.abort();
        }
        (self.done.load(Ordering::Acquire), self.committed)
    }
}

async fn work(ctx: Arc<SubscriptionContext>, mut rx: mpsc::Receiver<Vec<ConsumedRecord>>, done: Arc<AtomicU64>, stopping: Arc<AtomicBool>) {
    while let Some(batch) = rx.recv().await {
        let _permit = match &ctx.limit {
            Some(l) => Some(l.clone().acquire_owned().await.expect("semaphore never closed")),
            None => None,
        };
        for rec in batch {
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            match record::handle_record(&ctx, &rec, &stopping).await {
                record::Outcome::Done => done.store(rec.offset + 1, Ordering::Release),
                record::Outcome::Interrupted => return,
            }
        }
    }
}

async fn run(ctx: Arc<SubscriptionContext>, mut stop: watch::Receiver<Option<Duration>>) -> Result<()> {
    let sub = &ctx.sub;
    ctx.core.ensure_topic(&sub.topic).await?;
    let mut consumer = ctx.core.transport.consumer(&sub.group, &sub.topic, sub.options.start_from).await?;
    let mut workers: BTreeMap<u32, PartitionWorker> = BTreeMap::new();
    let interval = sub.options.commit_interval;
    let poll_timeout = interval.min(Duration::from_millis(100));
    let mut last_commit = Instant::now();
    let drain = loop {
        if let Some(t) = *stop.borrow() {
            break t;
        }
        let event = tokio::select! {
            _ = stop.changed() => continue,
            ev = consumer.poll(sub.options.max_poll_records, poll_timeout) => ev,
        };
        match event {
            Ok(PollEvent::Records(records)) => dispatch(&ctx, &mut workers, records, &mut *consumer, &mut last_commit, &stop).await,
            Ok(PollEvent::Assigned(parts)) => {
                tracing::debug!(topic = %sub.topic, group = %sub.group, ?parts, "partitions assigned");
                for p in parts {
                    workers.entry(p).or_insert_with(|| PartitionWorker::spawn(ctx.clone()));
                }
            }
            Ok(PollEvent::Revoked(parts)) => {
                tracing::debug!(topic = %sub.topic, group = %sub.group, ?parts, "partitions revoked");
                let mut finished = Vec::new();
                for p in &parts {
                    if let Some(w) = workers.remove(p) {
                        let (done, committed) = w.finish(Duration::from_secs(30)).await;
                        if done > committed {
                            finished.push((*p, done));
                        }
                    }
                }
                commit(&ctx, &mut *consumer, &finished).await;
                consumer.revoke_complete(&parts).await?;
            }
            Ok(PollEvent::Idle) => {}
            Err(e) => {
                tracing::warn!(topic = %sub.topic, group = %sub.group, error = %e.report(), "poll failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if last_commit.elapsed() >= interval {
            commit_progress(&ctx, &mut workers, &mut *consumer).await;
            last_commit = Instant::now();
        }
    };
    // Rule 7: stop polling, let in-flight handlers finish, commit, leave.
    let deadline = Instant::now() + drain;
    let mut finished = Vec::new();
    for (p, w) in std::mem::take(&mut workers) {
        let (done, committed) = w.finish(deadline.saturating_duration_since(Instant::now())).await;
        if done > committed {
            finished.push((p, done));
        }
    }
    commit(&ctx, &mut *consumer, &finished).await;
    consumer.close().await
}

/// Hands records to their partition workers, committing while it waits on a full queue.
async fn dispatch(
    ctx: &SubscriptionContext,
    workers: &mut BTreeMap<u32, PartitionWorker>,
    records: Vec<ConsumedRecord>,
    consumer: &mut dyn TransportConsumer,
    last_commit: &mut Instant,
    stop: &watch::Receiver<Option<Duration>>,
) {
    for (p, batch) in partition_runs(records) {
        let Some(w) = workers.get(&p) else {
            continue; // not (or no longer) ours: a stale record of a revoked partition
        };
        let tx = w.tx.clone();
        let permit = loop {
            match tokio::time::timeout(ctx.sub.options.commit_interval, tx.reserve()).await {
                Ok(Ok(permit)) => break Some(permit),
                Ok(Err(_)) => break None,
                Err(_) if stop.borrow().is_some() => break None,
                Err(_) => {
                    commit_progress(ctx, workers, consumer).await;
                    *last_commit = Instant::now();
                }
            }
        };
        if let Some(permit) = permit {
            permit.send(batch);
        }
    }
}

/// Splits a poll's records into runs of one partition, in order. Transports read partition
/// by partition, so a poll is usually a few long runs: each is copied once into its own batch
/// (the first keeps the poll's vector), where pushing record by record would regrow each one.
fn partition_runs(mut records: Vec<ConsumedRecord>) -> Vec<(u32, Vec<ConsumedRecord>)> {
    let mut runs = Vec::new();
    while let Some(last) = records.last().map(|r| r.partition) {
        let start = records.iter().rposition(|r| r.partition != last).map_or(0, |i| i + 1);
        let run = if start == 0 { std::mem::take(&mut records) } else { records.split_off(start) };
        runs.push((last, run));
    }
    runs.reverse();
    runs
}

async fn commit_progress(ctx: &SubscriptionContext, workers: &mut BTreeMap<u32, PartitionWorker>, consumer: &mut dyn TransportConsumer) {
    let offsets: Vec<(u32, u64)> = workers
        .iter()
        .filter_map(|(p, w)| {
            let done = w.done.load(Ordering::Acquire);
            (done > w.committed).then_some((*p, done))
        })
        .collect();
    if offsets.is_empty() {
        return;
    }
    if commit(ctx, consumer, &offsets).await {
        for (p, o) in offsets {
            if let Some(w) = workers.get_mut(&p) {
                w.committed = o;
            }
        }
    }
}

async fn commit(ctx: &SubscriptionContext, consumer: &mut dyn TransportConsumer, offsets: &[(u32, u64)]) -> bool {
    if offsets.is_empty() {
        return true;
    }
    match consumer.commit(offsets).await {
        Ok(()) => {
            ctx.stats.commits.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(e) => {
            tracing::warn!(topic = %ctx.sub.topic, group = %ctx.sub.group, error = %e.report(), "commit failed; will retry (records may be redelivered)");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::partition_runs;
    use crate::transport::ConsumedRecord;

    fn rec(partition: u32, offset: u64) -> ConsumedRecord {
        let record = onex_core::Record { key: None, value: bytes::Bytes::from_static(b"{}"), headers: Default::default() };
        ConsumedRecord { topic: Arc::from("t"), partition, offset, timestamp: chrono::Utc::now(), record: Arc::new(record.into()) }
    }

    fn shape(runs: &[(u32, Vec<ConsumedRecord>)]) -> Vec<(u32, Vec<u64>)> {
        runs.iter().map(|(p, batch)| (*p, batch.iter().map(|r| r.offset).collect())).collect()
    }

    #[test]
    fn runs_keep_partition_order_and_split_where_the_partition_changes() {
        assert!(partition_runs(Vec::new()).is_empty());
        let one = partition_runs(vec![rec(2, 5), rec(2, 6), rec(2, 7)]);
        assert_eq!(shape(&one), vec![(2, vec![5, 6, 7])]);
        // A partition that comes back later gets a second run, after the first, in order.
        let mixed = partition_runs(vec![rec(0, 1), rec(0, 2), rec(3, 9), rec(1, 4), rec(1, 5), rec(0, 3)]);
        assert_eq!(shape(&mixed), vec![(0, vec![1, 2]), (3, vec![9]), (1, vec![4, 5]), (0, vec![3])]);
    }
}
