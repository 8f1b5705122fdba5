//! [`BusDlqHandler`]: inspect and replay dead letter queues on any bus (DESIGN §2.4, §3 rules 5, 6).
//!
//! - DLQ topics are discovered by name: every topic ending in `.dlq`.
//! - Inspection ([`DlqHandler::summary`], [`DlqHandler::list`], [`BusDlqHandler::scan`]) reads
//!   with a consumer in a throwaway group that never commits, up to the high watermarks
//!   seen when reading starts.
//! - [`DlqHandler::reprocess`] republishes the original key, value and headers (exact bytes)
//!   to the original topic with `x-replay-count` (previous + 1), `x-replayed-at` and
//!   `x-original-dlq-offset`; a record past the replay cap goes to `{topic}.quarantine`
//!   instead, never dropped. Progress is committed per record in the group
//!   `onex-dlq-replay.{dlq_topic}` (one group per DLQ topic and filter: `….f<hash>`), so a second run
//!   does not replay the same records.

mod entry;
mod reader;
mod replay;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use onex_core::dlq::{AlertStatus, Count, DlqEntry, DlqFilter, DlqHandler, DlqSummary, ReprocessOptions, ReprocessReport};
use onex_core::resilience::RetryPolicy;
use onex_core::{EventBus, Result};
use serde::{Deserialize, Serialize};

use self::entry::{check_filter, decode_entry, matches};
use self::reader::TopicReader;
pub use self::replay::{Progress, ORIGINAL_DLQ_PARTITION_HEADER, QUARANTINE_REASON_HEADER};
use crate::bus::TransportBus;

/// The suffix that makes a topic a DLQ topic.
pub const DLQ_SUFFIX: &str = ".dlq";
/// The default group that records replay progress.
pub const DEFAULT_REPLAY_GROUP: &str = "onex-dlq-replay";

/// Settings of a [`BusDlqHandler`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DlqConfig {
    /// ALERT when more records than this are dead-lettered (default 100).
    pub alert_max_records: u64,
    /// ALERT when the oldest record is older than this (default 24 h).
    #[serde(with = "duration_secs")]
    pub alert_max_age: Duration,
    /// The group (prefix) that records replay progress (default `onex-dlq-replay`).
    pub replay_group: String,
    /// Retries of a failed republish during a replay.
    pub publish_retry: RetryPolicy,
    /// How long reading a DLQ topic may make no progress before failing (default 60 s).
    #[serde(with = "duration_secs")]
    pub read_idle_limit: Duration,
}

mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

impl Default for DlqConfig {
    fn default() -> Self {
        DlqConfig {
            alert_max_records: 100,
            alert_max_age: Duration::from_secs(24 * 3600),
            replay_group: DEFAULT_REPLAY_GROUP.to_string(),
            publish_retry: RetryPolicy::default(),
            read_idle_limit: Duration::from_secs(60),
        }
    }
}

/// Counts over every DLQ topic: per DLQ topic, per original topic, per error kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DlqScan {
    /// Records per DLQ topic.
    pub by_dlq_topic: BTreeMap<String, u64>,
    /// Records per original topic.
    pub by_topic: BTreeMap<String, u64>,
    /// Records per error kind (snake_case).
    pub by_error_kind: BTreeMap<String, u64>,
    /// When the oldest record was dead-lettered.
    pub oldest: Option<chrono::DateTime<Utc>>,
    /// Records in DLQ topics that are not DLQ records (written by something else).
    pub foreign_records: u64,
}

impl DlqScan {
    /// Records in every DLQ topic.
    pub fn total(&self) -> u64 {
        self.by_dlq_topic.values().sum()
    }
}

/// The [`DlqHandler`] over a [`TransportBus`].
#[derive(Debug, Clone)]
pub struct BusDlqHandler {
    bus: Arc<TransportBus>,
    config: DlqConfig,
}

impl BusDlqHandler {
    /// A handler with default settings.
    pub fn new(bus: Arc<TransportBus>) -> Self {
        BusDlqHandler { bus, config: DlqConfig::default() }
    }

    /// A handler with settings (checked).
    pub fn with_config(bus: Arc<TransportBus>, config: DlqConfig) -> Result<Self> {
        if config.replay_group.is_empty() {
            return Err(onex_core::Error::config(
                "DLQ replay_group is empty; name the group that records replay progress (default onex-dlq-replay)",
            ));
        }
        if config.read_idle_limit.is_zero() {
            return Err(onex_core::Error::config("DLQ read_idle_limit is 0s; use a positive time (default 60 s)"));
        }
        config.publish_retry.validate()?;
        Ok(BusDlqHandler { bus, config })
    }

    /// The settings.
    pub fn config(&self) -> &DlqConfig {
        &self.config
    }

    /// Every `*.dlq` topic, sorted.
    pub async fn dlq_topics(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .bus
            .admin()
            .list_topics()
            .await?
            .into_iter()
            .map(|t| t.name)
            .filter(|n| n.ends_with(DLQ_SUFFIX) && n.len() > DLQ_SUFFIX.len())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Reads every record of `dlq_topic` (throwaway group, nothing committed) and hands each
    /// decoded entry to `visit`; returns how many records were not DLQ records.
    async fn read_all(&self, dlq_topic: &str, mut visit: impl FnMut(DlqEntry) -> bool) -> Result<u64> {
        onex_core::validate_topic(dlq_topic)?;
        let group = format!("onex-dlq-inspect-{}", uuid::Uuid::new_v4().simple());
        let mut reader = TopicReader::open(self.bus.transport().as_ref(), dlq_topic, &group, self.config.read_idle_limit).await?;
        let mut foreign = 0;
        let result = async {
            while let Some(batch) = reader.next_batch().await? {
                for rec in batch {
                    match decode_entry(dlq_topic, &rec) {
                        Ok(entry) => {
                            if !visit(entry) {
                                return Ok(());
                            }
                        }
                        Err(e) => {
                            foreign += 1;
                            tracing::debug!(dlq_topic, offset = rec.offset, error = %e.report(), "not a DLQ record");
                        }
                    }
                }
            }
            Ok::<(), onex_core::Error>(())
        }
        .await;
        let closed = reader.close().await;
        result?;
        closed?;
        Ok(foreign)
    }

    /// Counts every DLQ topic by original topic and error kind.
    pub async fn scan(&self) -> Result<DlqScan> {
        let mut scan = DlqScan::default();
        for topic in self.dlq_topics().await? {
            let mut n = 0;
            let foreign = self
                .read_all(&topic, |e| {
                    n += 1;
                    *scan.by_topic.entry(e.record.topic).or_default() += 1;
                    *scan.by_error_kind.entry(e.record.error_kind.as_str().to_string()).or_default() += 1;
                    if scan.oldest.is_none_or(|o| e.dead_lettered_at < o) {
                        scan.oldest = Some(e.dead_lettered_at);
                    }
                    true
                })
                .await?;
            scan.foreign_records += foreign;
            scan.by_dlq_topic.insert(topic, n);
        }
        Ok(scan)
    }

    /// The summary of a scan under this handler's alert thresholds.
    pub fn summarize(&self, scan: &DlqScan) -> DlqSummary {
        let total = scan.total();
        let oldest_age_seconds = scan.oldest.map(|o| (Utc::now() - o).num_milliseconds().max(0) as f64 / 1000.0);
        let mut alert_reasons = Vec::new();
        if total > self.config.alert_max_records {
            alert_reasons.push(format!("{total} records dead-lettered, over the threshold of {}", self.config.alert_max_records));
        }
        if let Some(age) = oldest_age_seconds.filter(|a| *a > self.config.alert_max_age.as_secs_f64()) {
            alert_reasons.push(format!("oldest record is {age:.0} s old, over the threshold of {} s", self.config.alert_max_age.as_secs()));
        }
        DlqSummary {
            total,
            oldest_age_seconds,
            by_dlq_topic: scan.by_dlq_topic.clone(),
            top_topics: top5(&scan.by_topic),
            top_error_kinds: top5(&scan.by_error_kind),
            alert_status: if alert_reasons.is_empty() { AlertStatus::Ok } else { AlertStatus::Alert },
            alert_reasons,
        }
    }
}

/// The five largest counts, largest first, ties by name.
fn top5(counts: &BTreeMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = counts.iter().map(|(name, count)| Count { name: name.clone(), count: *count }).collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v.truncate(5);
    v
}

#[async_trait]
impl DlqHandler for BusDlqHandler {
    async fn summary(&self) -> Result<DlqSummary> {
        Ok(self.summarize(&self.scan().await?))
    }

    async fn list(&self, dlq_topic: &str, filter: &DlqFilter, limit: usize) -> Result<Vec<DlqEntry>> {
        check_filter(filter)?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.read_all(dlq_topic, |e| {
            if matches(filter, &e) {
                out.push(e);
            }
            out.len() < limit
        })
        .await?;
        out.sort_by_key(|e| (e.dead_lettered_at, e.partition, e.offset));
        Ok(out)
    }

    async fn reprocess(&self, dlq_topic: &str, opts: ReprocessOptions) -> Result<ReprocessReport> {
        self.reprocess_with_progress(dlq_topic, opts, &mut |_, _| {}).await
    }
}
