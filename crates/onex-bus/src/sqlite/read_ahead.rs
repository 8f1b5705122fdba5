//! Read-ahead for a consumer that is catching up: each reader connection (a lane) keeps
//! reading the next batches of its partitions while the engine hands out the last ones.
//!
//! Why: a read run on the blocking pool wakes the engine task through the runtime's shared
//! queue, and with every core busy (readers and handlers) that wake waits for a worker. In
//! `onex bench bus-sqlite` (500k records, 2 cores) the readers were busy only ~55% of the
//! consume phase, the rest waiting for the engine to ask again. A lane reads on, up to
//! [`DEPTH`] batches ahead, and the engine takes what is ready.
//!
//! Per-partition order holds: a partition belongs to one lane, whose batches are queued in
//! the order they were read. Nothing is acknowledged or committed here: positions move only
//! for records the consumer returns, so a batch dropped by [`ReadAhead::reset`] is read again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use onex_core::{Error, Result};
use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::Notify;

use crate::transport::ConsumedRecord;

/// Batches a lane may read ahead of the engine.
const DEPTH: usize = 4;

/// What one read transaction of a lane returned.
pub(crate) struct Batch {
    /// The group generation seen in the same transaction.
    pub(crate) generation: Option<i64>,
    pub(crate) records: Vec<ConsumedRecord>,
}

/// Reads one batch: `(partition, partition id, first offset)` for each partition, at most
/// `max` records, and the group generation.
pub(crate) type ReadBatch = dyn Fn(&mut Connection, &[(u32, i64, u64)], usize) -> Result<Batch> + Send + Sync;

#[derive(Clone, Copy, Default)]
struct Lane {
    running: bool,
    /// Its last read came back full: more records are waiting.
    behind: bool,
}

#[derive(Default)]
struct State {
    /// Bumped by [`ReadAhead::reset`]: a read of an older epoch is dropped.
    epoch: u64,
    queue: VecDeque<Batch>,
    /// Next offset to read per partition (past what is queued).
    cursors: BTreeMap<u32, u64>,
    lanes: Vec<Lane>,
    error: Option<Error>,
}

/// What [`ReadAhead::take`] found.
pub(crate) enum Taken {
    /// Batches in read order, at most `max` records together.
    Batches(Vec<Batch>),
    /// Nothing queued yet; a lane is reading.
    Wait,
    /// Every lane has caught up (or none was started).
    CaughtUp,
}

/// The lanes of one consumer and the batches they read ahead.
pub(crate) struct ReadAhead {
    state: Mutex<State>,
    ready: Notify,
}

/// What a lane needs to read: its connection, the partition ids and the batch reader.
pub(crate) struct LaneSpec {
    pub(crate) conns: Vec<Arc<Mutex<Connection>>>,
    pub(crate) partition_ids: Arc<Vec<i64>>,
    pub(crate) read: Arc<ReadBatch>,
    /// Records per read of one lane.
    pub(crate) max: usize,
}

impl ReadAhead {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ReadAhead { state: Mutex::new(State::default()), ready: Notify::new() })
    }

    /// Drops what was read ahead and stops the lanes after their current read.
    pub(crate) fn reset(&self) {
        let mut st = self.state.lock();
        st.epoch += 1;
        st.queue.clear();
        st.cursors.clear();
        st.lanes.clear();
        st.error = None;
    }

    /// Starts reading ahead from `positions` (every assigned partition and the next offset the
    /// consumer returns), one lane per connection of `spec`.
    pub(crate) fn begin(self: &Arc<Self>, positions: &BTreeMap<u32, u64>, spec: &LaneSpec) {
        {
            let mut st = self.state.lock();
            st.epoch += 1;
            st.queue.clear();
            st.cursors = positions.clone();
            st.lanes = vec![Lane { running: false, behind: true }; spec.conns.len()];
            st.error = None;
        }
        self.start_idle(spec);
    }

    /// Takes queued batches (at most `max` records), restarting lanes that have room again.
    pub(crate) fn take(self: &Arc<Self>, max: usize, spec: &LaneSpec) -> Result<Taken> {
        let taken = {
            let mut st = self.state.lock();
            if let Some(e) = st.error.take() {
                drop(st);
                self.reset();
                return Err(e);
            }
            let mut batches = Vec::new();
            let mut count = 0;
            while let Some(b) = st.queue.front() {
                if !batches.is_empty() && count + b.records.len() > max {
                    break;
                }
                count += b.records.len();
                batches.extend(st.queue.pop_front());
            }
            if !batches.is_empty() {
                Taken::Batches(batches)
            } else if st.lanes.iter().any(|l| l.running || l.behind) {
                Taken::Wait
            } else {
                Taken::CaughtUp
            }
        };
        self.start_idle(spec);
        Ok(taken)
    }

    /// Waits until a lane queued a batch, failed or stopped. Create before [`Self::take`]
    /// returns [`Taken::Wait`] (see `Notify::notified`), then await.
    pub(crate) fn ready(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
    }

    fn start_idle(self: &Arc<Self>, spec: &LaneSpec) {
        let mut st = self.state.lock();
        let lanes = st.lanes.len();
        if st.queue.len() >= DEPTH * lanes {
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
            let (me, conn, read, epoch, max) = (self.clone(), spec.conns[lane].clone(), spec.read.clone(), st.epoch, spec.max);
            tokio::task::spawn_blocking(move || me.run_lane(lane, epoch, &conn, parts, max, &*read));
        }
    }

    /// Reads batches until the lane catches up, the queue is full or the epoch moves on.
    fn run_lane(&self, lane: usize, epoch: u64, conn: &Mutex<Connection>, mut parts: Vec<(u32, i64, u64)>, max: usize, read: &ReadBatch) {
        let mut conn = conn.lock();
        loop {
            let result = read(&mut conn, &parts, max);
            let mut st = self.state.lock();
            if st.epoch != epoch {
                return; // reset: the lane's state is gone, and so is what it read
            }
            let go_on = match result {
                Err(e) => {
                    st.error = Some(e);
                    st.lanes[lane] = Lane { running: false, behind: false };
                    false
                }
                Ok(batch) => {
                    let full = batch.records.len() >= max;
                    for r in &batch.records {
                        if let Some(p) = parts.iter_mut().find(|p| p.0 == r.partition) {
                            p.2 = p.2.max(r.offset + 1);
                        }
                    }
                    for (p, _, next) in &parts {
                        st.cursors.insert(*p, *next);
                    }
                    if !batch.records.is_empty() {
                        st.queue.push_back(batch);
                    }
                    let go_on = full && st.queue.len() < DEPTH * st.lanes.len();
                    st.lanes[lane] = Lane { running: go_on, behind: full };
                    go_on
                }
            };
            drop(st);
            self.ready.notify_one();
            if !go_on {
                return;
            }
        }
    }
}
