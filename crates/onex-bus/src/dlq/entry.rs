//! Decoding DLQ records and matching them against filters.

use onex_core::dlq::{DlqEntry, DlqFilter, DlqRecord, DLQ_EVENT_TYPE};
use onex_core::envelope::decode_record;
use onex_core::{Error, Result};

use crate::transport::ConsumedRecord;

/// Decodes a record of a DLQ topic: an envelope of type `onex.dlq.message.v1` whose payload
/// is a [`DlqRecord`].
pub(crate) fn decode_entry(dlq_topic: &str, rec: &ConsumedRecord) -> Result<DlqEntry> {
    let env = decode_record(&rec.record, &rec.topic)?;
    if env.event_type != DLQ_EVENT_TYPE {
        return Err(Error::decode(format!(
            "record {}/{}/{} is of type {:?}, not a DLQ record ({DLQ_EVENT_TYPE})",
            dlq_topic, rec.partition, rec.offset, env.event_type
        )));
    }
    let record: DlqRecord = env.payload_as()?;
    Ok(DlqEntry {
        dlq_topic: dlq_topic.to_string(),
        partition: rec.partition,
        offset: rec.offset,
        envelope_id: env.envelope_id,
        dead_lettered_at: env.timestamp,
        record,
    })
}

/// Whether `entry` passes every filter that is set. The time range applies to the last
/// failure time: `since` inclusive, `until` exclusive.
pub(crate) fn matches(filter: &DlqFilter, entry: &DlqEntry) -> bool {
    let r = &entry.record;
    filter.correlation_id.is_none_or(|c| r.correlation_id == Some(c))
        && filter.error_kind.is_none_or(|k| r.error_kind == k)
        && filter.since.is_none_or(|t| r.last_failure_at >= t)
        && filter.until.is_none_or(|t| r.last_failure_at < t)
}

/// Checks a filter: a time range must not be empty.
pub(crate) fn check_filter(filter: &DlqFilter) -> Result<()> {
    if let (Some(since), Some(until)) = (filter.since, filter.until) {
        if since >= until {
            return Err(Error::config(format!("DLQ filter: since ({since}) is not before until ({until}); the range would match nothing")));
        }
    }
    Ok(())
}

/// A stable name for a filter, used to keep the replay progress of each filter apart.
pub(crate) fn filter_fingerprint(filter: &DlqFilter) -> Option<String> {
    if *filter == DlqFilter::default() {
        return None;
    }
    let text = serde_json::to_string(filter).expect("a filter serializes");
    // FNV-1a: stable across processes and versions (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Some(format!("{h:016x}"))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use onex_core::dlq::{DlqBytes, DlqRecord};
    use onex_core::ErrorKind;
    use uuid::Uuid;

    use super::*;

    fn entry(kind: ErrorKind, corr: Option<Uuid>, at: chrono::DateTime<Utc>) -> DlqEntry {
        DlqEntry {
            dlq_topic: "t.dlq".into(),
            partition: 0,
            offset: 0,
            envelope_id: Uuid::now_v7(),
            dead_lettered_at: at,
            record: DlqRecord {
                key: None,
                value: DlqBytes::from_bytes(b"{}"),
                headers: vec![],
                topic: "t".into(),
                partition: 0,
                offset: 0,
                group: "g".into(),
                subscriber: "s".into(),
                error_kind: kind,
                reason: "r".into(),
                first_failure_at: at,
                last_failure_at: at,
                attempts: 1,
                correlation_id: corr,
                event_type: None,
            },
        }
    }

    #[test]
    fn filters_combine_and_the_time_range_is_half_open() {
        let now = Utc::now();
        let c = Uuid::now_v7();
        let e = entry(ErrorKind::Timeout, Some(c), now);
        assert!(matches(&DlqFilter::default(), &e));
        assert!(matches(&DlqFilter { correlation_id: Some(c), error_kind: Some(ErrorKind::Timeout), ..Default::default() }, &e));
        assert!(!matches(&DlqFilter { correlation_id: Some(Uuid::now_v7()), ..Default::default() }, &e));
        assert!(!matches(&DlqFilter { error_kind: Some(ErrorKind::Rejected), ..Default::default() }, &e));
        assert!(matches(&DlqFilter { since: Some(now), until: Some(now + Duration::seconds(1)), ..Default::default() }, &e));
        assert!(!matches(&DlqFilter { until: Some(now), ..Default::default() }, &e), "until is exclusive");
        assert!(!matches(&DlqFilter { correlation_id: Some(c), ..Default::default() }, &entry(ErrorKind::Timeout, None, now)));
    }

    #[test]
    fn fingerprints_are_stable_and_tell_filters_apart() {
        assert_eq!(filter_fingerprint(&DlqFilter::default()), None);
        let a = DlqFilter { error_kind: Some(ErrorKind::Timeout), ..Default::default() };
        let b = DlqFilter { error_kind: Some(ErrorKind::Rejected), ..Default::default() };
        assert_eq!(filter_fingerprint(&a), filter_fingerprint(&a.clone()));
        assert_ne!(filter_fingerprint(&a), filter_fingerprint(&b));
        assert_eq!(filter_fingerprint(&a).unwrap().len(), 16);
    }

    #[test]
    fn an_empty_time_range_is_refused() {
        let now = Utc::now();
        let err = check_filter(&DlqFilter { since: Some(now), until: Some(now), ..Default::default() }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("would match nothing"), "{err}");
    }
}
