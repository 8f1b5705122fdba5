//! Reprocessing a DLQ topic (DESIGN §3 rule 6).

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use onex_core::dlq::{
    DlqBytes, DlqEntry, ReprocessOptions, ReprocessReport, ORIGINAL_DLQ_OFFSET_HEADER, REPLAYED_AT_HEADER, REPLAY_COUNT_HEADER,
};
use onex_core::resilience::Retry;
use onex_core::{Error, EventBus, EventMessage, Headers, Result};
use tokio::time::Instant;

use super::entry::{check_filter, decode_entry, filter_fingerprint, matches};
use super::reader::TopicReader;
use super::BusDlqHandler;

/// Header naming the DLQ partition a replayed record came from (next to `x-original-dlq-offset`).
pub const ORIGINAL_DLQ_PARTITION_HEADER: &str = "x-original-dlq-partition";
/// Header of a quarantined record: why it was quarantined.
pub const QUARANTINE_REASON_HEADER: &str = "x-quarantine-reason";

/// A progress callback: called after each record looked at with the report so far and the
/// records left to read.
pub type Progress<'a> = &'a mut (dyn FnMut(&ReprocessReport, u64) + Send);

pub(crate) fn check_options(opts: &ReprocessOptions) -> Result<()> {
    check_filter(&opts.filter)?;
    if let Some(rate) = opts.rate_per_second {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::config(format!(
                "replay rate {rate} per second is invalid; use a positive number, or no rate for unlimited"
            )));
        }
    }
    if opts.limit == Some(0) {
        return Err(Error::config("replay limit 0 would replay nothing; leave the limit out to replay every matching record"));
    }
    Ok(())
}

/// The group that remembers how far replays of `filter` got. Each filter has its own, so a
/// filtered replay does not mark records it skipped as done for an unfiltered one.
/// One progress group per DLQ topic (and filter): on Kafka a group shared by readers of
/// different topics would rebalance them against each other, so two replays of different
/// DLQ topics would stall each other.
pub(crate) fn progress_group(base: &str, dlq_topic: &str, opts: &ReprocessOptions) -> String {
    match filter_fingerprint(&opts.filter) {
        None => format!("{base}.{dlq_topic}"),
        Some(f) => format!("{base}.{dlq_topic}.f{f}"),
    }
}

/// How many times the original was replayed before: `x-replay-count` of its headers.
fn previous_replays(headers: &[(String, DlqBytes)]) -> u32 {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == REPLAY_COUNT_HEADER)
        .and_then(|(_, v)| match v {
            DlqBytes::Utf8(s) => s.trim().parse().ok(),
            DlqBytes::Base64(_) => None,
        })
        .unwrap_or(0)
}

/// The record to republish: the original key, value and headers, exact, with the replay
/// headers set (replacing older values).
fn replay_message(entry: &DlqEntry, topic: String, replay_count: u32, quarantine: Option<u32>) -> Result<EventMessage> {
    let r = &entry.record;
    let key = r.key.as_ref().map(|k| k.to_bytes().map(Bytes::from)).transpose()?;
    let value = Bytes::from(r.value.to_bytes()?);
    let mut headers = Headers::with_capacity(r.headers.len() + 5);
    for (k, v) in &r.headers {
        headers.push(k.clone(), Bytes::from(v.to_bytes()?));
    }
    headers.set(REPLAY_COUNT_HEADER, replay_count.to_string());
    headers.set(REPLAYED_AT_HEADER, Utc::now().to_rfc3339());
    headers.set(ORIGINAL_DLQ_OFFSET_HEADER, entry.offset.to_string());
    headers.set(ORIGINAL_DLQ_PARTITION_HEADER, entry.partition.to_string());
    if let Some(cap) = quarantine {
        headers.set(QUARANTINE_REASON_HEADER, format!("replayed {} times, over the replay cap of {cap}", replay_count - 1));
    }
    Ok(EventMessage { topic, key, value, headers, partition: None })
}

impl BusDlqHandler {
    /// [`onex_core::DlqHandler::reprocess`] with a progress callback.
    pub async fn reprocess_with_progress(
        &self,
        dlq_topic: &str,
        opts: ReprocessOptions,
        progress: Progress<'_>,
    ) -> Result<ReprocessReport> {
        check_options(&opts)?;
        onex_core::validate_topic(dlq_topic)?;
        let group = progress_group(&self.config.replay_group, dlq_topic, &opts);
        let mut reader = TopicReader::open(self.bus.transport().as_ref(), dlq_topic, &group, self.config.read_idle_limit).await?;
        let result = self.replay_from(&mut reader, dlq_topic, &opts, progress).await;
        let closed = reader.close().await;
        let report = result?;
        closed?;
        tracing::info!(dlq_topic, group, ?report, "DLQ reprocess finished");
        Ok(report)
    }

    async fn replay_from(
        &self,
        reader: &mut TopicReader,
        dlq_topic: &str,
        opts: &ReprocessOptions,
        progress: Progress<'_>,
    ) -> Result<ReprocessReport> {
        let mut report = ReprocessReport { dry_run: opts.dry_run, ..Default::default() };
        let retry = Retry::new(self.config.publish_retry.clone())?;
        let interval = opts.rate_per_second.map(|r| Duration::from_secs_f64(1.0 / r));
        let mut next_send = Instant::now();
        'read: while let Some(batch) = reader.next_batch().await? {
            for rec in batch {
                let acted = report.replayed + report.quarantined;
                let entry = match decode_entry(dlq_topic, &rec) {
                    Ok(entry) => Some(entry).filter(|e| matches(&opts.filter, e)),
                    Err(e) => {
                        tracing::warn!(dlq_topic, partition = rec.partition, offset = rec.offset, error = %e.report(), "skipping a record that is not a DLQ record");
                        None
                    }
                };
                if let Some(entry) = entry {
                    if opts.limit.is_some_and(|l| acted >= l) {
                        break 'read; // not resolved: the next run starts here
                    }
                    report.matched += 1;
                    let replay_count = previous_replays(&entry.record.headers) + 1;
                    let over_cap = replay_count > opts.replay_cap;
                    if !opts.dry_run {
                        if let Some(iv) = interval {
                            tokio::time::sleep_until(next_send).await;
                            next_send = Instant::now() + iv;
                        }
                        let (topic, quarantine) = if over_cap {
                            (format!("{}.quarantine", entry.record.topic), Some(opts.replay_cap))
                        } else {
                            (entry.record.topic.clone(), None)
                        };
                        let msg = replay_message(&entry, topic, replay_count, quarantine)?;
                        let bus = self.bus.as_ref();
                        let outcome = retry.run(|_| bus.publish(msg.clone()), |e, _| e.is_retryable()).await;
                        outcome.result.map_err(|e| e.with("dlq_topic", dlq_topic).with("dlq_offset", rec.offset))?;
                    }
                    if over_cap {
                        report.quarantined += 1;
                    } else {
                        report.replayed += 1;
                    }
                } else {
                    report.skipped += 1;
                }
                report.scanned += 1;
                if !opts.dry_run {
                    // One commit per record: a replay that dies part-way repeats at most the record in hand.
                    reader.commit(&[(rec.partition, rec.offset + 1)]).await?;
                }
                progress(&report, reader.remaining());
            }
        }
        Ok(report)
    }
}
