//! Writing a failed record to its DLQ topic (DESIGN §3 rule 5).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use onex_core::dlq::{DlqBytes, DlqRecord, DLQ_EVENT_TYPE};
use onex_core::envelope::encode_record;
use onex_core::{Envelope, Error};
use uuid::Uuid;

use super::record::{sleep_unless_stopped, Outcome};
use super::SubscriptionContext;
use crate::transport::{ConsumedRecord, ProduceRecord};

/// Why a record is being dead-lettered.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) attempts: u32,
    pub(crate) first_failure: DateTime<Utc>,
    pub(crate) correlation_id: Option<Uuid>,
    pub(crate) event_type: Option<String>,
}

/// Builds the DLQ envelope for a failed record: type `onex.dlq.message.v1`, payload a
/// [`DlqRecord`] holding the exact original bytes, correlated with the original event.
pub fn dlq_envelope(rec: &ConsumedRecord, group: &str, subscriber: &str, failure: DlqFailure<'_>) -> Envelope {
    let record = DlqRecord {
        key: rec.record.key.as_deref().map(DlqBytes::from_bytes),
        value: DlqBytes::from_bytes(&rec.record.value),
        headers: rec.record.headers.iter().map(|(k, v)| (k.to_string(), DlqBytes::from_bytes(v))).collect(),
        topic: rec.topic.to_string(),
        partition: rec.partition,
        offset: rec.offset,
        group: group.to_string(),
        subscriber: subscriber.to_string(),
        error_kind: failure.error.kind(),
        reason: failure.error.report(),
        first_failure_at: failure.first_failure,
        last_failure_at: Utc::now(),
        attempts: failure.attempts,
        correlation_id: failure.correlation_id,
        event_type: failure.event_type.map(str::to_string),
    };
    let payload = serde_json::to_vec(&record).expect("DlqRecord serializes");
    let mut env = Envelope::from_json_bytes(DLQ_EVENT_TYPE, Bytes::from(payload)).expect("DLQ event type is valid");
    env.source = format!("onex.consumer.{group}");
    if let Some(c) = failure.correlation_id {
        env.correlation_id = c;
    }
    env.causation_id = rec.record.headers.get(onex_core::envelope::ce_headers::ID).and_then(|v| Uuid::try_parse_ascii(v).ok());
    env.partition_key = rec.record.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()).map(str::to_string);
    env
}

/// The failure facts [`dlq_envelope`] records.
#[derive(Debug)]
pub struct DlqFailure<'a> {
    /// The final error.
    pub error: &'a Error,
    /// Attempts made.
    pub attempts: u32,
    /// First failure time.
    pub first_failure: DateTime<Utc>,
    /// Correlation id of the original, when it decoded.
    pub correlation_id: Option<Uuid>,
    /// Event type of the original, when it decoded.
    pub event_type: Option<&'a str>,
}

/// Writes the DLQ record, retrying until it is durably written or the consumer stops.
/// The source offset may be committed only after `Outcome::Done`.
pub(crate) async fn write_dlq(ctx: &SubscriptionContext, rec: &ConsumedRecord, failure: Failure, stopping: &AtomicBool) -> Outcome {
    let dlq_topic = ctx.sub.dlq_topic();
    let env = dlq_envelope(
        rec,
        &ctx.sub.group,
        &ctx.subscriber,
        DlqFailure {
            error: &failure.error,
            attempts: failure.attempts,
            first_failure: failure.first_failure,
            correlation_id: failure.correlation_id,
            event_type: failure.event_type.as_deref(),
        },
    );
    let record = encode_record(&env);
    let mut wait = Duration::from_millis(100);
    loop {
        match ctx.core.produce_repeatable(&dlq_topic, |t| t.produce_one(&dlq_topic, ProduceRecord::new(record.clone()))).await {
            Ok(_) => return Outcome::Done,
            Err(e) => {
                tracing::error!(dlq_topic = %dlq_topic, error = %e.report(), "DLQ write failed; retrying (the source offset stays uncommitted)");
                if !sleep_unless_stopped(wait, stopping).await {
                    return Outcome::Interrupted;
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}
