//! [`KafkaConsumer`]: the engine's view of a group member (the librdkafka thread is in `member.rs`).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onex_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};

use super::member::{Command, Event, MemberHandle, MemberShared};
use crate::transport::{ConsumedRecord, PollEvent, TransportConsumer};

/// One member of a consumer group on one topic.
#[derive(Debug)]
pub struct KafkaConsumer {
    shared: Arc<MemberShared>,
    events: mpsc::UnboundedReceiver<Event>,
    commands: std_mpsc::Sender<Command>,
    /// A non-record event met while batching records, returned by the next poll.
    pending: Option<Event>,
    /// Partitions sought: their records fetched before the seek are dropped until the
    /// member thread confirms the seek.
    seeking: BTreeSet<u32>,
    reply_timeout: Duration,
}

impl KafkaConsumer {
    pub(crate) fn new(handle: MemberHandle, reply_timeout: Duration) -> Self {
        KafkaConsumer {
            shared: handle.shared,
            events: handle.events,
            commands: handle.commands,
            pending: None,
            seeking: BTreeSet::new(),
            reply_timeout,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<MemberShared> {
        &self.shared
    }

    async fn ask<T>(&self, what: &str, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| Error::shutdown(format!("{what}: the consumer of {:?} has stopped", self.shared.topic)))?;
        match tokio::time::timeout(self.reply_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::shutdown(format!("{what}: the consumer of {:?} stopped before answering", self.shared.topic))),
            Err(_) => {
                Err(Error::timeout(format!("{what}: the consumer thread of {:?} did not answer", self.shared.topic), self.reply_timeout))
            }
        }
    }

    /// Keeps a record unless it predates a seek of its partition.
    fn keep(&mut self, rec: ConsumedRecord, out: &mut Vec<ConsumedRecord>) {
        if !self.seeking.contains(&rec.partition) {
            out.push(rec);
        }
    }

    fn take_records(&mut self, first: ConsumedRecord, max: usize) -> Vec<ConsumedRecord> {
        let mut out = Vec::with_capacity(max.min(1024));
        let mut taken = 1;
        self.keep(first, &mut out);
        while out.len() < max {
            match self.events.try_recv() {
                Ok(Event::Record(r)) => {
                    taken += 1;
                    self.keep(r, &mut out);
                }
                Ok(Event::Seeked(p)) => {
                    self.seeking.remove(&p);
                }
                Ok(other) => {
                    self.pending = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.shared.buffered.fetch_sub(taken, Ordering::AcqRel);
        out
    }
}

#[async_trait]
impl TransportConsumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<PollEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let event = match self.pending.take() {
                Some(ev) => ev,
                None => match tokio::time::timeout_at(deadline, self.events.recv()).await {
                    Ok(Some(ev)) => ev,
                    Ok(None) => {
                        return Err(Error::shutdown(format!(
                            "the consumer of {:?} in group {:?} has stopped",
                            self.shared.topic, self.shared.group
                        )))
                    }
                    Err(_) => return Ok(PollEvent::Idle),
                },
            };
            match event {
                Event::Record(first) => {
                    let records = self.take_records(first, max.max(1));
                    if !records.is_empty() {
                        return Ok(PollEvent::Records(records));
                    }
                }
                Event::Assigned(ps) => return Ok(PollEvent::Assigned(ps)),
                Event::Revoked(ps) => return Ok(PollEvent::Revoked(ps)),
                Event::Seeked(p) => {
                    self.seeking.remove(&p);
                }
                Event::Error(e) => return Err(e),
            }
        }
    }

    async fn commit(&mut self, offsets: &[(u32, u64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let offsets = offsets.to_vec();
        self.ask("committing offsets", |reply| Command::Commit { offsets, reply }).await
    }

    async fn seek(&mut self, partition: u32, offset: u64) -> Result<()> {
        self.seeking.insert(partition);
        let result = self.ask("seeking", |reply| Command::Seek { partition, offset, reply }).await;
        if result.is_err() {
            self.seeking.remove(&partition);
        }
        result
    }

    fn assignment(&self) -> Vec<u32> {
        self.shared.owned.lock().iter().copied().collect()
    }

    async fn revoke_complete(&mut self, partitions: &[u32]) -> Result<()> {
        // The member thread is blocked in the revoke callback until this arrives.
        self.commands
            .send(Command::RevokeComplete(partitions.to_vec()))
            .map_err(|_| Error::shutdown(format!("the consumer of {:?} has stopped", self.shared.topic)))
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let this = *self;
        this.ask("leaving the consumer group", |reply| Command::Close { reply }).await
    }
}
