//! Dead letter queue types and the [`DlqHandler`] trait (DESIGN §3 rules 5, 6).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ErrorKind, Result};

/// Event type of DLQ envelopes.
pub const DLQ_EVENT_TYPE: &str = "onex.dlq.message.v1";
/// Replay header: how many times the record was replayed.
pub const REPLAY_COUNT_HEADER: &str = "x-replay-count";
/// Replay header: when it was last replayed (RFC 3339).
pub const REPLAYED_AT_HEADER: &str = "x-replayed-at";
/// Replay header: the offset of the DLQ record it was replayed from.
pub const ORIGINAL_DLQ_OFFSET_HEADER: &str = "x-original-dlq-offset";
/// Default replay cap: past it a record goes to `{topic}.quarantine`.
pub const DEFAULT_REPLAY_CAP: u32 = 5;

/// Bytes as stored in a DLQ record: UTF-8 text as is, anything else base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "encoding", content = "data", rename_all = "snake_case")]
pub enum DlqBytes {
    /// Valid UTF-8.
    Utf8(String),
    /// Base64 of bytes that are not UTF-8.
    Base64(String),
}

impl DlqBytes {
    /// Stores `bytes` exactly.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        use base64::Engine;
        match std::str::from_utf8(bytes) {
            Ok(s) => DlqBytes::Utf8(s.to_string()),
            Err(_) => DlqBytes::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }

    /// The exact original bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        use base64::Engine;
        match self {
            DlqBytes::Utf8(s) => Ok(s.as_bytes().to_vec()),
            DlqBytes::Base64(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| crate::Error::decode(format!("DLQ record holds invalid base64: {e}"))),
        }
    }
}

/// The payload of a DLQ envelope: everything needed to inspect and replay the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqRecord {
    /// Original key.
    pub key: Option<DlqBytes>,
    /// Original value, exact.
    pub value: DlqBytes,
    /// Original headers, exact, in order.
    pub headers: Vec<(String, DlqBytes)>,
    /// Original topic.
    pub topic: String,
    /// Original partition.
    pub partition: u32,
    /// Original offset.
    pub offset: u64,
    /// Consumer group that failed.
    pub group: String,
    /// Subscriber (subscription id / name).
    pub subscriber: String,
    /// Error kind.
    pub error_kind: ErrorKind,
    /// Sanitized reason.
    pub reason: String,
    /// First failure.
    pub first_failure_at: DateTime<Utc>,
    /// Last failure.
    pub last_failure_at: DateTime<Utc>,
    /// Attempts made.
    pub attempts: u32,
    /// Correlation id, when the record decoded.
    pub correlation_id: Option<Uuid>,
    /// Event type, when the record decoded.
    pub event_type: Option<String>,
}

/// Filters for listing and replaying DLQ records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DlqFilter {
    /// Only this correlation id.
    pub correlation_id: Option<Uuid>,
    /// Only this error kind.
    pub error_kind: Option<ErrorKind>,
    /// Only records that failed at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only records that failed before this time.
    pub until: Option<DateTime<Utc>>,
}

/// A DLQ record with its position in the DLQ topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqEntry {
    /// DLQ topic.
    pub dlq_topic: String,
    /// Partition in the DLQ topic.
    pub partition: u32,
    /// Offset in the DLQ topic.
    pub offset: u64,
    /// Envelope id of the DLQ envelope.
    pub envelope_id: Uuid,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTime<Utc>,
    /// The record.
    pub record: DlqRecord,
}

/// Options of a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReprocessOptions {
    /// Replay at most this many.
    pub limit: Option<u64>,
    /// Filters.
    pub filter: DlqFilter,
    /// Records per second (`None` = unlimited).
    pub rate_per_second: Option<f64>,
    /// Report what would happen, change nothing.
    pub dry_run: bool,
    /// Replays past this count go to `{topic}.quarantine`.
    pub replay_cap: u32,
}

impl Default for ReprocessOptions {
    fn default() -> Self {
        ReprocessOptions {
            limit: None,
            filter: DlqFilter::default(),
            rate_per_second: None,
            dry_run: false,
            replay_cap: DEFAULT_REPLAY_CAP,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReprocessReport {
    /// DLQ records looked at.
    pub scanned: u64,
    /// Matched the filters.
    pub matched: u64,
    /// Republished to their original topic.
    pub replayed: u64,
    /// Sent to quarantine (over the replay cap).
    pub quarantined: u64,
    /// Skipped (filtered out or already replayed).
    pub skipped: u64,
    /// Whether nothing was changed.
    pub dry_run: bool,
}

/// Counts for one key in a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Topic or error kind.
    pub name: String,
    /// Records.
    pub count: u64,
}

/// Alert status of the DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AlertStatus {
    /// Under the thresholds.
    Ok,
    /// Over the count or age threshold.
    Alert,
}

/// DLQ overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqSummary {
    /// Records in every DLQ topic.
    pub total: u64,
    /// Age of the oldest record in seconds.
    pub oldest_age_seconds: Option<f64>,
    /// Records per DLQ topic.
    pub by_dlq_topic: BTreeMap<String, u64>,
    /// Top 5 original topics.
    pub top_topics: Vec<Count>,
    /// Top 5 error kinds.
    pub top_error_kinds: Vec<Count>,
    /// OK or ALERT.
    pub alert_status: AlertStatus,
    /// Why ALERT, when it is.
    pub alert_reasons: Vec<String>,
}

/// Inspects and replays dead letter queues.
#[async_trait]
pub trait DlqHandler: Send + Sync {
    /// Totals, oldest age, top topics and error kinds, alert status over every `*.dlq` topic.
    async fn summary(&self) -> Result<DlqSummary>;
    /// Records of one DLQ topic matching `filter`, oldest first, at most `limit`.
    async fn list(&self, dlq_topic: &str, filter: &DlqFilter, limit: usize) -> Result<Vec<DlqEntry>>;
    /// Republishes matching records to their original topic (DESIGN §3 rule 6). Progress is
    /// committed, so a second run does not replay the same records again.
    async fn reprocess(&self, dlq_topic: &str, opts: ReprocessOptions) -> Result<ReprocessReport>;
}
