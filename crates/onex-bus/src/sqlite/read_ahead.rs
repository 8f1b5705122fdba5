//! Read-ahead for a consumer that is catching up: each reader connection (a lane) keeps
//! reading the next batches of its partitions while the engine hands out the last ones.
//!
//! Why: a read run on the blocking pool wakes the engine task through the runtime's shared
//! queue, and with every core busy (readers and handlers) that wake waits for a worker. In
//! `onex bench bus-sqlite` (500k records, 2 cores) the readers were busy only ~55% of the
//! consume phase, the rest waiting for the engine to ask again. A lane reads on, up to
//! [`DEPTH`] reads ahead, and the engine takes what is ready.
//!
//! Per-partition order holds: a partition belongs to one lane, whose batches are queued in
//! the order they were read. Nothing is acknowledged or committed here: positions move only
//! for records the consumer returns, so a batch dropped by [`ReadAhead::reset`] is read again.
//!
//! A lane also keeps what it read until the engine is done with it, and drops it itself
//! (see [`Retired`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use onex_core::{Error, Result};
use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::Notify;

use super::consumer::read_batch;
use super::group::MemberKey;
use crate::transport::{ConsumedRecord, RecordBody};

/// Reads per lane that may wait in the queue before the lanes pause.
const DEPTH: usize = 4;

/// What one read transaction returned.
pub(crate) struct Batch {
    /// The group generation seen in the same transaction.
    pub(crate) generation: Option<i64>,
    pub(crate) records: Vec<ConsumedRecord>,
}

/// What the lanes read with: one connection per lane, and how much per read.
pub(crate) struct LaneSpec {
    pub(crate) conns: Vec<Arc<Mutex<Connection>>>,
    pub(crate) key: Arc<MemberKey>,
    pub(crate) topic: Arc<str>,
    pub(crate) partition_ids: Arc<Vec<i64>>,
    /// Records per read transaction of one lane: several polls' worth, because every
    /// transaction pays a fixed cost (and, after any commit to the file, SQLite drops and
    /// rebuilds its mapping of it).
    pub(crate) read: usize,
    /// Records per queued batch: what one poll may return.
    pub(crate) batch: usize,
}

impl LaneSpec {
    /// Queued batches at which the lanes pause.
    fn queue_limit(&self) -> usize {
        DEPTH * self.conns.len() * self.read.div_ceil(self.batch.max(1))
    }
}

#[derive(Clone, Copy)]
struct Lane {
    running: bool,
    /// Its last read came back full: more records are waiting.
    behind: bool,
}

#[derive(Default)]
struct State {
    /// Bumped by every reset: a read of an older epoch is dropped.
    epoch: u64,
    spec: Option<Arc<LaneSpec>>,
    queue: VecDeque<Batch>,
    /// Next offset to read per partition (past what is queued).
    cursors: BTreeMap<u32, u64>,
    lanes: Vec<Lane>,
    /// What each lane keeps (see [`Retired`]); a running lane has taken its own out.
    retired: Vec<Retired>,
    error: Option<Error>,
}

impl State {
    fn clear(&mut self) {
        *self = State { epoch: self.epoch + 1, ..State::default() };
    }
}

/// Records a lane read, each held once more until the engine has dropped its own reference;
/// the lane then drops them before its next read.
///
/// Why: a record's memory (~7 blocks: the envelope's strings, its payload, two `Arc`s) then
/// goes back to the allocator on the thread that allocated it. Dropped on the engine's threads,
/// each block was a cross-thread free in mimalloc (an atomic each, and a collection pass on
/// the reading thread later): in `onex bench bus-sqlite` that was ~15 % of the consume
/// phase's CPU, and consume went from ~0.98M to ~1.17M msg/s without it.
#[derive(Default)]
struct Retired(Vec<Arc<RecordBody>>);

impl Retired {
    fn keep(&mut self, records: &[ConsumedRecord]) {
        self.0.extend(records.iter().map(|r| r.record.clone()));
    }

    /// Drops the records nothing else holds any more.
    fn sweep(&mut self) {
        self.0.retain(|r| Arc::strong_count(r) > 1);
    }
}

/// The lanes of one consumer and the batches they read ahead.
pub(crate) struct ReadAhead {
    state: Mutex<State>,
    ready: Notify,
}

impl ReadAhead {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ReadAhead { state: Mutex::new(State::default()), ready: Notify::new() })
    }

    /// Drops what was read ahead and stops the lanes after their current read.
    pub(crate) fn reset(&self) {
        self.state.lock().clear();
    }

    /// Starts reading ahead from `positions` (every assigned partition and the next offset the
    /// consumer returns), one lane per connection of `spec`.
    pub(crate) fn begin(self: &Arc<Self>, positions: &BTreeMap<u32, u64>, spec: LaneSpec) {
        {
            let mut st = self.state.lock();
            st.clear();
            st.lanes = vec![Lane { running: false, behind: true }; spec.conns.len()];
            st.retired = std::iter::repeat_with(Retired::default).take(spec.conns.len()).collect();
            st.cursors = positions.clone();
            st.spec = Some(Arc::new(spec));
        }
        self.start_idle();
    }

    /// Queued batches, at most `max` records together, waiting for a lane's first one; `None`
    /// when the lanes have caught up or were never started. Restarts lanes that have room.
    pub(crate) async fn next(self: &Arc<Self>, max: usize) -> Result<Option<Vec<Batch>>> {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let mut st = self.state.lock();
                if let Some(e) = st.error.take() {
                    st.clear();
                    return Err(e);
                }
                if !st.queue.is_empty() {
                    let mut batches = Vec::new();
                    let mut count = 0;
                    while let Some(b) = st.queue.front() {
                        if !batches.is_empty() && count + b.records.len() > max {
                            break;
                        }
                        count += b.records.len();
                        batches.extend(st.queue.pop_front());
                    }
                    drop(st);
                    self.start_idle();
                    return Ok(Some(batches));
                }
                if !st.lanes.iter().any(|l| l.running || l.behind) {
                    // Caught up: no lane reads again soon, so nothing it kept may wait for that.
                    st.retired.iter_mut().for_each(Retired::sweep);
                    return Ok(None);
                }
            }
            ready.await;
        }
    }

    fn start_idle(self: &Arc<Self>) {
        let mut st = self.state.lock();
        let Some(spec) = st.spec.clone() else { return };
        let lanes = st.lanes.len();
        if st.queue.len() >= spec.queue_limit() {
            return;
        }
        let partitions: Vec<u32> = st.cursors.keys().copied().collect();
        for lane in 0..lanes {
            let l = st.lanes[lane];
            if l.running || !l.behind {
                continue;
            }
            let parts: Vec<(u32, i64, u64)> = partitions
                .iter()
                .enumerate()
                .filter(|(i, _)| i % lanes == lane)
                .map(|(_, p)| (*p, spec.partition_ids[*p as usize], st.cursors[p]))
                .collect();
            if parts.is_empty() {
                st.lanes[lane].behind = false;
                continue;
            }
            st.lanes[lane].running = true;
            let (me, spec, epoch, retired) = (self.clone(), spec.clone(), st.epoch, std::mem::take(&mut st.retired[lane]));
            tokio::task::spawn_blocking(move || me.run_lane(lane, epoch, &spec, parts, retired));
        }
    }

    /// Reads batches until the lane catches up, the queue is full or the epoch moves on.
    fn run_lane(&self, lane: usize, epoch: u64, spec: &LaneSpec, mut parts: Vec<(u32, i64, u64)>, mut retired: Retired) {
        let mut conn = spec.conns[lane].lock();
        loop {
            retired.sweep();
            let result = read_batch(&spec.key, &spec.topic, &mut conn, &parts, spec.read);
            if let Ok(batch) = &result {
                retired.keep(&batch.records);
            }
            let mut st = self.state.lock();
            if st.epoch != epoch {
                return; // reset: the lane's state is gone, and so is what it read and kept
            }
            let go_on = match result {
                Err(e) => {
                    st.error = Some(e);
                    st.lanes[lane] = Lane { running: false, behind: false };
                    false
                }
                Ok(batch) => {
                    let full = batch.records.len() >= spec.read;
                    for r in &batch.records {
                        if let Some(p) = parts.iter_mut().find(|p| p.0 == r.partition) {
                            p.2 = p.2.max(r.offset + 1);
                        }
                    }
                    for (p, _, next) in &parts {
                        st.cursors.insert(*p, *next);
                    }
                    if !batch.records.is_empty() {
                        let generation = batch.generation;
                        st.queue.extend(chunks(batch.records, spec.batch).into_iter().map(|records| Batch { generation, records }));
                    }
                    let go_on = full && st.queue.len() < spec.queue_limit();
                    st.lanes[lane] = Lane { running: go_on, behind: full };
                    go_on
                }
            };
            if !go_on {
                st.retired[lane] = std::mem::take(&mut retired);
            }
            drop(st);
            self.ready.notify_one();
            if !go_on {
                return;
            }
        }
    }
}

/// `records` in order, cut into vectors of at most `size`. Cut from the end, so each record
/// is moved at most once.
fn chunks(mut records: Vec<ConsumedRecord>, size: usize) -> Vec<Vec<ConsumedRecord>> {
    let size = size.max(1);
    let mut out = Vec::with_capacity(records.len().div_ceil(size));
    while records.len() > size {
        let last = (records.len() - 1) / size * size;
        out.push(records.split_off(last));
    }
    out.push(records);
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: u64) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from("t"),
            partition: 0,
            offset,
            timestamp: chrono::Utc::now(),
            record: Arc::new(onex_core::Record { key: None, value: bytes::Bytes::new(), headers: Default::default() }.into()),
        }
    }

    #[test]
    fn chunks_keep_order_and_size() {
        let sizes = |n: u64, size| {
            let out = chunks((0..n).map(rec).collect(), size);
            let offsets: Vec<u64> = out.iter().flatten().map(|r| r.offset).collect();
            assert_eq!(offsets, (0..n).collect::<Vec<_>>());
            out.iter().map(Vec::len).collect::<Vec<_>>()
        };
        assert_eq!(sizes(0, 3), vec![0]);
        assert_eq!(sizes(3, 3), vec![3]);
        assert_eq!(sizes(7, 3), vec![3, 3, 1]);
        assert_eq!(sizes(2000, 1000), vec![1000, 1000]);
        assert_eq!(sizes(5, 0), vec![1, 1, 1, 1, 1]);
    }

    #[test]
    fn a_lane_drops_what_it_kept_only_once_nothing_else_holds_it() {
        let (handled, in_engine) = (rec(0), rec(1));
        let mut retired = Retired::default();
        retired.keep(&[handled.clone(), in_engine.clone()]);
        let handled_body = Arc::downgrade(&handled.record);
        drop(handled);
        assert!(handled_body.upgrade().is_some(), "the lane still holds a record the engine has dropped, until it sweeps");
        retired.sweep();
        assert!(handled_body.upgrade().is_none(), "the sweep drops a record nothing else holds");
        assert_eq!(retired.0.len(), 1, "a record the engine still holds stays kept");
        assert!(Arc::ptr_eq(&retired.0[0], &in_engine.record));
        drop(in_engine);
        retired.sweep();
        assert!(retired.0.is_empty());
    }
}
