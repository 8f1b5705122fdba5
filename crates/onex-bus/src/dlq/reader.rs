//! Reading a topic "to the end" with a group consumer: the end is the high watermarks taken
//! when reading starts, so records appended meanwhile wait for the next run.

use std::collections::BTreeMap;
use std::time::Duration;

use onex_core::{Error, ErrorKind, Result, StartFrom};
use tokio::time::Instant;

use crate::transport::{ConsumedRecord, PollEvent, Transport, TransportConsumer};

/// Records fetched per poll.
const POLL_MAX: usize = 500;
/// One poll's wait.
const POLL_WAIT: Duration = Duration::from_millis(200);

/// A consumer in one group on one topic that stops at the watermarks seen when it opened.
pub(crate) struct TopicReader {
    consumer: Option<Box<dyn TransportConsumer>>,
    topic: String,
    group: String,
    /// Per partition: next offset to read, end (exclusive).
    progress: BTreeMap<u32, (u64, u64)>,
    idle_limit: Duration,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader").field("topic", &self.topic).field("group", &self.group).field("progress", &self.progress).finish()
    }
}

impl TopicReader {
    /// Joins `group` on `topic` (reading from the group's committed offsets, or the oldest
    /// retained record). `idle_limit` bounds how long reading may make no progress.
    pub(crate) async fn open(transport: &dyn Transport, topic: &str, group: &str, idle_limit: Duration) -> Result<Self> {
        let info = transport.admin().describe_topic(topic).await.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::not_found(format!("DLQ topic {topic:?} does not exist; `onex dlq summary` lists the DLQ topics there are"))
                    .with("topic", topic)
            } else {
                e
            }
        })?;
        let mut progress = BTreeMap::new();
        for p in &info.partitions {
            let committed = transport.committed(group, topic, p.partition).await?.unwrap_or(0);
            let next = committed.max(p.low_watermark);
            if next < p.high_watermark {
                progress.insert(p.partition, (next, p.high_watermark));
            }
        }
        let consumer = if progress.is_empty() { None } else { Some(transport.consumer(group, topic, StartFrom::Earliest).await?) };
        Ok(TopicReader { consumer, topic: topic.to_string(), group: group.to_string(), progress, idle_limit })
    }

    /// Records left to read, as far as the watermarks tell (retention may shrink it).
    pub(crate) fn remaining(&self) -> u64 {
        self.progress.values().map(|(next, end)| end - next).sum()
    }

    /// The next records below the end, in offset order per partition; `None` once every
    /// partition reached its end.
    pub(crate) async fn next_batch(&mut self) -> Result<Option<Vec<ConsumedRecord>>> {
        let mut last_progress = Instant::now();
        loop {
            if self.progress.is_empty() {
                return Ok(None);
            }
            let consumer = self.consumer.as_mut().expect("a consumer exists while partitions are pending");
            match consumer.poll(POLL_MAX, POLL_WAIT).await? {
                PollEvent::Records(records) => {
                    let mut out = Vec::with_capacity(records.len());
                    for rec in records {
                        let Some((next, end)) = self.progress.get_mut(&rec.partition) else { continue };
                        if rec.offset >= *end || rec.offset < *next {
                            continue;
                        }
                        *next = rec.offset + 1;
                        if *next >= *end {
                            self.progress.remove(&rec.partition);
                        }
                        out.push(rec);
                    }
                    if !out.is_empty() {
                        return Ok(Some(out));
                    }
                }
                PollEvent::Revoked(parts) => {
                    // A rebalance (e.g. the previous run's member leaving). Progress is
                    // committed per record, so after reassignment reading resumes at the
                    // committed offset; anything below `next` is skipped as already seen.
                    consumer.revoke_complete(&parts).await?;
                }
                PollEvent::Assigned(_) => {}
                PollEvent::Idle => {
                    if last_progress.elapsed() >= self.idle_limit {
                        return Err(Error::timeout(
                            format!(
                                "reading {:?} in group {:?} made no progress; {} records expected before the end \
                                 (is another replay of this DLQ topic holding the group's partitions, or is the backend down?)",
                                self.topic,
                                self.group,
                                self.remaining()
                            ),
                            self.idle_limit,
                        ));
                    }
                    continue;
                }
            }
            last_progress = Instant::now();
        }
    }

    /// Commits, per partition, the next offset to read.
    pub(crate) async fn commit(&mut self, offsets: &[(u32, u64)]) -> Result<()> {
        match self.consumer.as_mut() {
            Some(c) if !offsets.is_empty() => c.commit(offsets).await,
            _ => Ok(()),
        }
    }

    /// Leaves the group.
    pub(crate) async fn close(mut self) -> Result<()> {
        match self.consumer.take() {
            Some(c) => c.close().await,
            None => Ok(()),
        }
    }
}
