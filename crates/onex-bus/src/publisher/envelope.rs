//! Building the envelope of a publish without work the hot path does not need.

use bytes::Bytes;
use chrono::Utc;
use onex_core::envelope::{validate_event_type, Metadata, JSON_CONTENT_TYPE};
use onex_core::{Envelope, Result};
use uuid::Uuid;

/// A time-ordered UUID v7 (millisecond timestamp + 74 random bits) from the thread's
/// non-cryptographic generator. `Uuid::now_v7` serialises every thread on one global mutex
/// and asks the OS for randomness per id; ids need uniqueness and time order, not secrecy.
pub(crate) fn fast_v7(millis: u64) -> Uuid {
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    random[8..].copy_from_slice(&fastrand::u16(..).to_le_bytes());
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// The parts of a publish that become the envelope.
pub(crate) struct EnvelopeParts {
    pub(crate) correlation_id: Option<Uuid>,
    pub(crate) causation_id: Option<Uuid>,
    pub(crate) metadata: Metadata,
    pub(crate) partition_key: Option<String>,
    pub(crate) source: String,
}

/// The envelope of one publish: the event type checked, ids generated only when needed,
/// every owned part moved in.
pub(crate) fn build(event_type: &str, payload: Bytes, parts: EnvelopeParts) -> Result<Envelope> {
    validate_event_type(event_type)?;
    // One clock read for the timestamp and both ids.
    let now = Utc::now();
    let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    Ok(Envelope {
        envelope_id: fast_v7(millis),
        event_type: event_type.to_string(),
        source: parts.source,
        timestamp: now,
        correlation_id: parts.correlation_id.unwrap_or_else(|| fast_v7(millis)),
        causation_id: parts.causation_id,
        partition_key: parts.partition_key,
        schema_version: None,
        content_type: JSON_CONTENT_TYPE.to_string(),
        payload,
        metadata: parts.metadata,
        retry_count: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_v7_is_a_unique_time_ordered_v7() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| fast_v7(Utc::now().timestamp_millis() as u64)).collect();
        assert!(ids.iter().all(|u| u.get_version_num() == 7 && u.get_variant() == uuid::Variant::RFC4122));
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let now = Utc::now().timestamp_millis() as u64;
        let (secs, nanos) = ids[0].get_timestamp().expect("v7 has a timestamp").to_unix();
        let ms = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!(ms <= now && now - ms < 60_000, "timestamp {ms} vs now {now}");
    }

    #[test]
    fn build_checks_the_event_type_and_moves_parts_in() {
        let parts = || EnvelopeParts {
            correlation_id: None,
            causation_id: None,
            metadata: Metadata::default(),
            partition_key: None,
            source: "s".into(),
        };
        let err = build("Bad Type", Bytes::new(), parts()).unwrap_err();
        assert!(err.to_string().contains("Bad Type"), "{err}");
        let c = Uuid::now_v7();
        let env =
            build("a.v1", Bytes::from_static(b"{}"), EnvelopeParts { correlation_id: Some(c), partition_key: Some("k".into()), ..parts() })
                .unwrap();
        assert_eq!((env.correlation_id, env.partition_key.as_deref(), env.source.as_str()), (c, Some("k"), "s"));
        assert_eq!(env.content_type, JSON_CONTENT_TYPE);
    }
}
