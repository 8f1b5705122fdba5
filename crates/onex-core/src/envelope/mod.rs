//! [`Envelope`]: the unit on the bus (DESIGN §2.1), and its CloudEvents codec.

mod codec;

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result};

pub use codec::{
    decode_binary_pairs, decode_record, encode_record, encoded_len, encodes_losslessly, for_each_header, headers as ce_headers,
    STRUCTURED_CONTENT_TYPE,
};

/// Default `content_type` of a payload.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Envelope metadata: user headers (passed through as record headers), tags, trace context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// User headers; on the wire each is a record header of the same name.
    pub headers: BTreeMap<String, String>,
    /// Free-form tags; on the wire one `ce_tags` header holding a JSON object.
    pub tags: BTreeMap<String, String>,
    /// W3C `traceparent`.
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    pub tracestate: Option<String>,
}

/// An event with its identity, causality and routing data. The payload is JSON held as
/// bytes: serialized once when the envelope is made, parsed only when asked.
///
/// ```
/// use onex_core::Envelope;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderCreated { order_id: u32 }
///
/// let order = Envelope::new("orders.order_created.v1", &OrderCreated { order_id: 7 })?
///     .with_source("orders-service")
///     .with_partition_key("order-7");
/// let reserved = Envelope::new("inventory.reserved.v1", &serde_json::json!({"order_id": 7}))?
///     .caused_by(&order);
/// assert_eq!(reserved.correlation_id, order.correlation_id);
/// assert_eq!(reserved.causation_id, Some(order.envelope_id));
/// assert_eq!(order.payload_as::<OrderCreated>()?.order_id, 7);
/// # Ok::<(), onex_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id (UUID v7, time-ordered); the dedup key.
    pub envelope_id: Uuid,
    /// Event type, e.g. `omninode.orders.event.order_created.v1`.
    pub event_type: String,
    /// Producing service or node.
    pub source: String,
    /// Creation time (UTC).
    pub timestamp: DateTime<Utc>,
    /// Shared by a whole flow.
    pub correlation_id: Uuid,
    /// `envelope_id` of the direct cause.
    pub causation_id: Option<Uuid>,
    /// Same key ⇒ same partition ⇒ ordered.
    pub partition_key: Option<String>,
    /// Payload schema version (CloudEvents `dataschema`).
    pub schema_version: Option<String>,
    /// Payload content type (default `application/json`).
    pub content_type: String,
    /// Payload bytes.
    #[serde(with = "payload_serde")]
    pub payload: Bytes,
    /// Headers, tags and trace context.
    pub metadata: Metadata,
    /// Redelivery count, set by the consumer engine.
    pub retry_count: u32,
}

/// Checks an event type: non-empty, `[a-z0-9._-]`.
pub fn validate_event_type(event_type: &str) -> Result<()> {
    if event_type.is_empty() || event_type.len() > 249 {
        return Err(Error::config(format!("invalid event type {event_type:?}: must be 1 to 249 characters of [a-z0-9._-]")));
    }
    if let Some(c) = event_type.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-')) {
        return Err(Error::config(format!("invalid event type {event_type:?}: character {c:?} is not allowed; use [a-z0-9._-]")));
    }
    Ok(())
}

impl Envelope {
    /// A new envelope with a fresh id and correlation id, serializing `payload` to JSON once.
    pub fn new<T: Serialize + ?Sized>(event_type: &str, payload: &T) -> Result<Self> {
        let bytes =
            serde_json::to_vec(payload).map_err(|e| Error::rejected(format!("payload of {event_type} cannot be serialized: {e}")))?;
        Self::from_json_bytes(event_type, Bytes::from(bytes))
    }

    /// A new envelope around payload bytes that are already JSON (not re-parsed).
    pub fn from_json_bytes(event_type: &str, payload: Bytes) -> Result<Self> {
        validate_event_type(event_type)?;
        Ok(Self::unchecked(event_type.to_string(), payload))
    }

    pub(crate) fn unchecked(event_type: String, payload: Bytes) -> Self {
        Envelope {
            envelope_id: Uuid::now_v7(),
            event_type,
            source: String::from("onex"),
            timestamp: Utc::now(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            partition_key: None,
            schema_version: None,
            content_type: JSON_CONTENT_TYPE.to_string(),
            payload,
            metadata: Metadata::default(),
            retry_count: 0,
        }
    }

    /// Marks this envelope as caused by `parent`: sets `causation_id` to the parent's id and
    /// copies its correlation id and trace context.
    pub fn caused_by(mut self, parent: &Envelope) -> Self {
        self.causation_id = Some(parent.envelope_id);
        self.correlation_id = parent.correlation_id;
        if self.metadata.traceparent.is_none() {
            self.metadata.traceparent.clone_from(&parent.metadata.traceparent);
            self.metadata.tracestate.clone_from(&parent.metadata.tracestate);
        }
        self
    }

    /// Sets `source`.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets `partition_key`.
    pub fn with_partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Sets `correlation_id`.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = id;
        self
    }

    /// Adds a user header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.headers.insert(name.into(), value.into());
        self
    }

    /// Parses the payload as `T`.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| Error::decode(format!("payload of {} ({}) is not the expected shape: {e}", self.event_type, self.envelope_id)))
    }

    /// Parses the payload as a JSON value.
    pub fn payload_json(&self) -> Result<serde_json::Value> {
        self.payload_as()
    }
}

mod payload_serde {
    //! JSON payloads serialize inline; anything else as `{"base64": "..."}`.
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_slice::<serde_json::Value>(b) {
            Ok(v) => v.serialize(s),
            Err(_) => serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) }).serialize(s),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        if let Some(b64) = v.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("base64")).and_then(|b| b.as_str()) {
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) {
                return Ok(Bytes::from(raw));
            }
        }
        serde_json::to_vec(&v).map(Bytes::from).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_rules() {
        assert!(validate_event_type("orders.order_created.v1").is_ok());
        assert!(validate_event_type("").is_err());
        let err = validate_event_type("Orders").unwrap_err().to_string();
        assert!(err.contains("'O'"), "{err}");
        assert!(Envelope::new("bad type", &1).is_err());
    }

    #[test]
    fn caused_by_copies_correlation_and_trace() {
        let mut parent = Envelope::new("a", &1).unwrap();
        parent.metadata.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        let child = Envelope::new("b", &2).unwrap().caused_by(&parent);
        assert_eq!(child.correlation_id, parent.correlation_id);
        assert_eq!(child.causation_id, Some(parent.envelope_id));
        assert_eq!(child.metadata.traceparent, parent.metadata.traceparent);
        assert_ne!(child.envelope_id, parent.envelope_id);
    }
}
