//! Envelope ⇄ record, CloudEvents 1.0 binary mode; decoding also reads structured mode and
//! plain JSON from producers that are not onex. Decoding never panics.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{Envelope, Metadata, JSON_CONTENT_TYPE};
use crate::record::{Headers, Record};
use crate::{Error, Result};

/// Content type of a CloudEvents structured-mode record.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// Header names of the binary-mode wire format (DESIGN §2.1).
pub mod headers {
    /// `1.0`.
    pub const SPECVERSION: &str = "ce_specversion";
    /// envelope_id.
    pub const ID: &str = "ce_id";
    /// source.
    pub const SOURCE: &str = "ce_source";
    /// event_type.
    pub const TYPE: &str = "ce_type";
    /// timestamp, RFC 3339.
    pub const TIME: &str = "ce_time";
    /// content_type.
    pub const CONTENT_TYPE: &str = "content-type";
    /// correlation_id.
    pub const CORRELATION_ID: &str = "ce_correlationid";
    /// causation_id.
    pub const CAUSATION_ID: &str = "ce_causationid";
    /// partition_key.
    pub const PARTITION_KEY: &str = "ce_partitionkey";
    /// schema_version.
    pub const DATASCHEMA: &str = "ce_dataschema";
    /// W3C trace parent.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace state.
    pub const TRACESTATE: &str = "tracestate";
    /// retry_count (only when > 0).
    pub const RETRY_COUNT: &str = "ce_retrycount";
    /// tags, a JSON object (only when there are tags).
    pub const TAGS: &str = "ce_tags";
    /// Event type of a plain-JSON record from a producer that is not onex.
    pub const PLAIN_EVENT_TYPE: &str = "event_type";

    /// Every name the codec owns; user headers with these names are not allowed.
    pub const RESERVED: [&str; 14] = [
        SPECVERSION,
        ID,
        SOURCE,
        TYPE,
        TIME,
        CONTENT_TYPE,
        CORRELATION_ID,
        CAUSATION_ID,
        PARTITION_KEY,
        DATASCHEMA,
        TRACEPARENT,
        TRACESTATE,
        RETRY_COUNT,
        TAGS,
    ];
}

use headers as h;

/// Calls `codec` with every CloudEvents header of `env`'s binary-mode record, in wire order
/// (name, value), then `user` with every user header (`metadata.headers`). This is the one
/// definition of the binary-mode headers: [`encode_record`] collects them into a [`Record`],
/// and a transport with its own header type (librdkafka's) writes them straight from here
/// without building one.
pub fn for_each_header(env: &Envelope, mut codec: impl FnMut(&'static str, &[u8]), mut user: impl FnMut(&str, &str)) {
    let mut uuid = [0u8; 36];
    codec(h::SPECVERSION, b"1.0");
    codec(h::ID, digits::hyphenated(&env.envelope_id, &mut uuid));
    codec(h::SOURCE, env.source.as_bytes());
    codec(h::TYPE, env.event_type.as_bytes());
    let mut tbuf = [0u8; time::MAX_LEN];
    let tlen = time::format(&env.timestamp, &mut tbuf);
    codec(h::TIME, &tbuf[..tlen]);
    codec(h::CONTENT_TYPE, env.content_type.as_bytes());
    codec(h::CORRELATION_ID, digits::hyphenated(&env.correlation_id, &mut uuid));
    if let Some(c) = &env.causation_id {
        codec(h::CAUSATION_ID, digits::hyphenated(c, &mut uuid));
    }
    if let Some(k) = &env.partition_key {
        codec(h::PARTITION_KEY, k.as_bytes());
    }
    if let Some(s) = &env.schema_version {
        codec(h::DATASCHEMA, s.as_bytes());
    }
    if let Some(t) = &env.metadata.traceparent {
        codec(h::TRACEPARENT, t.as_bytes());
    }
    if let Some(t) = &env.metadata.tracestate {
        codec(h::TRACESTATE, t.as_bytes());
    }
    if env.retry_count > 0 {
        codec(h::RETRY_COUNT, env.retry_count.to_string().as_bytes());
    }
    if !env.metadata.tags.is_empty() {
        codec(h::TAGS, &serde_json::to_vec(&env.metadata.tags).unwrap_or_default());
    }
    for (k, v) in &env.metadata.headers {
        user(k, v);
    }
}

/// Encodes an envelope as a binary-mode record: value = payload bytes, attributes in `ce_` headers.
/// All header values share one buffer, so a record costs one allocation for all of them.
pub fn encode_record(env: &Envelope) -> Record {
    let mut buf = bytes::BytesMut::with_capacity(
        3 + 2 * 36
            + time::MAX_LEN
            + env.source.len()
            + env.event_type.len()
            + env.content_type.len()
            + env.partition_key.as_ref().map_or(0, String::len)
            + 16,
    );
    // Spans on the stack: at most the 14 codec headers.
    let mut spans = [("", 0u32, 0u32); h::RESERVED.len() + 1];
    let mut n = 0;
    let mut users = Vec::new();
    for_each_header(
        env,
        |name, value| {
            let start = buf.len() as u32;
            buf.extend_from_slice(value);
            spans[n] = (name, start, buf.len() as u32);
            n += 1;
        },
        |name, value| users.push((name.to_string(), Bytes::copy_from_slice(value.as_bytes()))),
    );
    let all = buf.freeze();
    let spans = &spans[..n];
    // The key shares the buffer with the `ce_partitionkey` header value.
    let key = spans.iter().find(|(name, _, _)| *name == h::PARTITION_KEY).map(|(_, s, e)| all.slice(*s as usize..*e as usize));
    let mut hs = Headers::with_capacity(spans.len() + users.len());
    for (name, start, end) in spans {
        hs.push_static(name, all.slice(*start as usize..*end as usize));
    }
    for (name, value) in users {
        hs.push(name, value);
    }
    Record { key, value: env.payload.clone(), headers: hs }
}

/// `encode_record(env).byte_len()` without encoding: what a size limit is checked against.
// It lists the headers of `for_each_header` again, as lengths: summing through that function
// would format two UUIDs and the time on every memory publish. A property test ties the two.
pub fn encoded_len(env: &Envelope) -> usize {
    let opt = |name: &str, v: &Option<String>| v.as_ref().map_or(0, |v| name.len() + v.len());
    let uuid = |name: &str| name.len() + 36;
    let key = env.partition_key.as_ref().map_or(0, String::len);
    let mut headers = h::SPECVERSION.len()
        + 3
        + uuid(h::ID)
        + h::SOURCE.len()
        + env.source.len()
        + h::TYPE.len()
        + env.event_type.len()
        + h::TIME.len()
        + time::formatted_len(&env.timestamp)
        + h::CONTENT_TYPE.len()
        + env.content_type.len()
        + uuid(h::CORRELATION_ID)
        + env.causation_id.map_or(0, |_| uuid(h::CAUSATION_ID))
        + opt(h::PARTITION_KEY, &env.partition_key)
        + opt(h::DATASCHEMA, &env.schema_version)
        + opt(h::TRACEPARENT, &env.metadata.traceparent)
        + opt(h::TRACESTATE, &env.metadata.tracestate);
    if env.retry_count > 0 {
        headers += h::RETRY_COUNT.len() + env.retry_count.checked_ilog10().map_or(1, |d| d as usize + 1);
    }
    if !env.metadata.tags.is_empty() {
        headers += h::TAGS.len() + serde_json::to_vec(&env.metadata.tags).map_or(0, |v| v.len());
    }
    headers += env.metadata.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    key + env.payload.len() + headers
}

/// Whether `decode_record(&encode_record(env))` gives `env` back exactly — true for every
/// envelope except those with an empty event type, a user header named like one of the
/// codec's own, or a timestamp outside years 0–9999. A transport that keeps records in the
/// process can then hand the envelope itself to consumers instead of encoding and decoding it.
pub fn encodes_losslessly(env: &Envelope) -> bool {
    !env.event_type.is_empty()
        && time::is_canonical(&env.timestamp.naive_utc())
        && env.metadata.headers.keys().all(|k| !h::RESERVED.contains(&k.as_str()))
}

/// Decodes a record read from `topic`: binary mode when `ce_specversion` or `ce_id` is
/// present, structured mode when `content-type` is `application/cloudevents+json`, and
/// otherwise a plain JSON value (wrapped: new id, type from the `event_type` header or the
/// topic name). Anything else is [`Error::Decode`].
pub fn decode_record(rec: &Record, topic: &str) -> Result<Envelope> {
    let content_type = rec.headers.get_str(h::CONTENT_TYPE);
    if rec.headers.get(h::SPECVERSION).is_some() || rec.headers.get(h::ID).is_some() {
        decode_binary(rec)
    } else if content_type.is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with(STRUCTURED_CONTENT_TYPE)) {
        decode_structured(rec)
    } else {
        decode_plain(rec, topic)
    }
}

fn text(name: &str, v: &[u8]) -> Result<String> {
    std::str::from_utf8(v).map(str::to_string).map_err(|_| Error::decode(format!("header {name} is not UTF-8")))
}

fn parse_uuid(name: &str, v: &[u8]) -> Result<Uuid> {
    if let Some(id) = digits::parse_hyphenated(v) {
        return Ok(id);
    }
    Uuid::try_parse_ascii(v).map_err(|e| Error::decode(format!("header {name} is not a UUID ({e}): {:?}", String::from_utf8_lossy(v))))
}

fn parse_time(name: &str, v: &str) -> Result<DateTime<Utc>> {
    if let Some(t) = time::parse_fast(v) {
        return Ok(t);
    }
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::decode(format!("{name} is not an RFC 3339 time ({e}): {v:?}")))
}

fn decode_binary(rec: &Record) -> Result<Envelope> {
    binary_from_pairs(rec.headers.iter().map(|(k, v)| (k, &v[..])), rec.value.clone())
}

/// Decodes a binary-mode record from header pairs borrowed from wherever a backend keeps them
/// (no [`Headers`] is built) and its value; `None` when the pairs are not binary mode (no
/// `ce_specversion` or `ce_id`): [`decode_record`] then decides how to read the record, so
/// both paths give the same envelope or the same error for the same bytes.
///
/// ```
/// use bytes::Bytes;
/// use onex_core::envelope::{decode_binary_pairs, encode_record};
/// use onex_core::Envelope;
///
/// let env = Envelope::new("order_created", &serde_json::json!({"id": 1})).unwrap();
/// let rec = encode_record(&env);
/// let pairs: Vec<(&str, &[u8])> = rec.headers.iter().map(|(k, v)| (k, &v[..])).collect();
/// let back = decode_binary_pairs(pairs.iter().copied(), rec.value.clone()).unwrap().unwrap();
/// assert_eq!(back, env);
/// assert!(decode_binary_pairs([("x-user", &b"1"[..])].into_iter(), Bytes::from_static(b"{}")).is_none());
/// ```
pub fn decode_binary_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a [u8])> + Clone, value: Bytes) -> Option<Result<Envelope>> {
    match binary_from_pairs(pairs.clone(), value) {
        Ok(env) => Some(Ok(env)),
        Err(e) => {
            let mut pairs = pairs;
            pairs.any(|(k, _)| k == h::SPECVERSION || k == h::ID).then_some(Err(e))
        }
    }
}

fn binary_from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a [u8])>, payload: Bytes) -> Result<Envelope> {
    let mut id = None;
    let mut source = None;
    let mut event_type = None;
    let mut timestamp = None;
    let mut content_type = None;
    let mut correlation = None;
    let mut causation = None;
    let mut partition_key = None;
    let mut schema = None;
    let mut meta = Metadata::default();
    let mut retry_count = 0u32;
    for (name, value) in pairs {
        match name {
            h::SPECVERSION => {
                if value != b"1.0" {
                    return Err(Error::decode(format!("unsupported CloudEvents specversion {:?}", String::from_utf8_lossy(value))));
                }
            }
            h::ID => id = Some(parse_uuid(name, value)?),
            h::SOURCE => source = Some(text(name, value)?),
            h::TYPE => event_type = Some(text(name, value)?),
            h::TIME => {
                let v = std::str::from_utf8(value).map_err(|_| Error::decode(format!("header {name} is not UTF-8")))?;
                timestamp = Some(parse_time(name, v)?);
            }
            h::CONTENT_TYPE => content_type = Some(text(name, value)?),
            h::CORRELATION_ID => correlation = Some(parse_uuid(name, value)?),
            h::CAUSATION_ID => causation = Some(parse_uuid(name, value)?),
            h::PARTITION_KEY => partition_key = Some(text(name, value)?),
            h::DATASCHEMA => schema = Some(text(name, value)?),
            h::TRACEPARENT => meta.traceparent = Some(text(name, value)?),
            h::TRACESTATE => meta.tracestate = Some(text(name, value)?),
            h::RETRY_COUNT => {
                retry_count = text(name, value)?.parse().map_err(|_| Error::decode(format!("{name} is not a number")))?;
            }
            h::TAGS => {
                meta.tags =
                    serde_json::from_slice(value).map_err(|e| Error::decode(format!("{name} is not a JSON object of strings: {e}")))?;
            }
            other => {
                meta.headers.insert(other.to_string(), String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    let event_type = event_type.filter(|t| !t.is_empty()).ok_or_else(|| Error::decode("binary-mode record has no ce_type header"))?;
    let id = id.ok_or_else(|| Error::decode("binary-mode record has no ce_id header"))?;
    Ok(Envelope {
        envelope_id: id,
        event_type,
        source: source.unwrap_or_default(),
        timestamp: timestamp.unwrap_or_else(Utc::now),
        correlation_id: correlation.unwrap_or(id),
        causation_id: causation,
        partition_key,
        schema_version: schema,
        content_type: content_type.unwrap_or_else(|| JSON_CONTENT_TYPE.to_string()),
        payload,
        metadata: meta,
        retry_count,
    })
}

#[derive(Deserialize)]
struct Structured<'a> {
    specversion: Option<String>,
    id: String,
    source: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    time: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
    data_base64: Option<String>,
    correlationid: Option<String>,
    causationid: Option<String>,
    partitionkey: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    retrycount: Option<serde_json::Value>,
    #[serde(flatten)]
    extensions: BTreeMap<String, serde_json::Value>,
}

fn decode_structured(rec: &Record) -> Result<Envelope> {
    use base64::Engine;
    let s: Structured<'_> =
        serde_json::from_slice(&rec.value).map_err(|e| Error::decode(format!("structured-mode CloudEvent is not valid: {e}")))?;
    if let Some(v) = &s.specversion {
        if v != "1.0" {
            return Err(Error::decode(format!("unsupported CloudEvents specversion {v:?}")));
        }
    }
    let id = parse_uuid("id", s.id.as_bytes()).unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_OID, s.id.as_bytes()));
    let payload = match (s.data, s.data_base64) {
        (_, Some(b64)) => Bytes::from(
            base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| Error::decode(format!("data_base64 is not base64: {e}")))?,
        ),
        (Some(raw), None) => Bytes::copy_from_slice(raw.get().as_bytes()),
        (None, None) => Bytes::from_static(b"null"),
    };
    let mut meta = Metadata { traceparent: s.traceparent, tracestate: s.tracestate, ..Metadata::default() };
    for (k, v) in s.extensions {
        if k == "tags" {
            meta.tags = serde_json::from_value(v).map_err(|e| Error::decode(format!("tags is not an object of strings: {e}")))?;
        } else {
            meta.headers.insert(k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        }
    }
    if s.event_type.is_empty() {
        return Err(Error::decode("structured-mode CloudEvent has an empty type"));
    }
    Ok(Envelope {
        envelope_id: id,
        event_type: s.event_type,
        source: s.source.unwrap_or_default(),
        timestamp: s.time.as_deref().map(|t| parse_time("time", t)).transpose()?.unwrap_or_else(Utc::now),
        correlation_id: s.correlationid.as_deref().map(|c| parse_uuid("correlationid", c.as_bytes())).transpose()?.unwrap_or(id),
        causation_id: s.causationid.as_deref().map(|c| parse_uuid("causationid", c.as_bytes())).transpose()?,
        partition_key: s.partitionkey,
        schema_version: s.dataschema,
        content_type: s.datacontenttype.unwrap_or_else(|| JSON_CONTENT_TYPE.to_string()),
        payload,
        metadata: meta,
        retry_count: match s.retrycount {
            None => 0,
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| Error::decode("retrycount is not a number"))?,
        },
    })
}

fn decode_plain(rec: &Record, topic: &str) -> Result<Envelope> {
    serde_json::from_slice::<serde::de::IgnoredAny>(&rec.value).map_err(|e| {
        Error::decode(format!("record on {topic} has no CloudEvents headers and its value is not JSON ({e}); {} bytes", rec.value.len()))
    })?;
    let event_type = rec.headers.get_str(h::PLAIN_EVENT_TYPE).filter(|t| !t.is_empty()).unwrap_or(topic).to_string();
    let mut env = Envelope::unchecked(event_type, rec.value.clone());
    env.source = topic.to_string();
    if let Some(c) = rec.headers.get("x-correlation-id").and_then(|v| Uuid::try_parse_ascii(v).ok()) {
        env.correlation_id = c;
    }
    env.partition_key = rec.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned());
    for (k, v) in rec.headers.iter() {
        match k {
            h::TRACEPARENT => env.metadata.traceparent = Some(String::from_utf8_lossy(v).into_owned()),
            h::TRACESTATE => env.metadata.tracestate = Some(String::from_utf8_lossy(v).into_owned()),
            h::CONTENT_TYPE => env.content_type = String::from_utf8_lossy(v).into_owned(),
            h::PLAIN_EVENT_TYPE => {}
            other => {
                env.metadata.headers.insert(other.to_string(), String::from_utf8_lossy(v).into_owned());
            }
        }
    }
    Ok(env)
}

mod digits;
mod time;

#[cfg(test)]
mod tests;
