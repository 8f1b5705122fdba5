//! Envelopes stored field by field: the `headers` column of a published envelope holds its
//! fields in binary (ids as 16 bytes, the time as seconds and nanoseconds) instead of its
//! CloudEvents headers as text. A reader gets the envelope back without parsing UUIDs, times
//! or header names, and the exact record (`encode_record` of the envelope) when it asks.
//!
//! Only envelopes that encode losslessly are stored this way (`RecordBody::from_envelope`
//! keeps no others), so the record rebuilt on reading is byte for byte the one the
//! CloudEvents form would have stored. The partition key is the `key` column, as it is for
//! every record.
//!
//! Layout: `0x00 0x01 flags id[16] correlation[16] (causation[16])? secs:i64le nanos:u32le
//! retry:varint type source content_type (schema)? (traceparent)? (tracestate)?
//! tags:varint (name value)* headers:varint (name value)*`, strings as `varint len, UTF-8`.
//! Header blobs of [`super::codec::encode_headers`] never start with `0x00` (no headers is
//! NULL), which is what tells the two forms apart.

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use onex_core::{Envelope, Error, Metadata, Result};
use uuid::Uuid;

use super::codec::{get_varint, put_varint};

const MARKER: u8 = 0x00;
const FORMAT: u8 = 0x01;
const CAUSATION: u8 = 1;
const SCHEMA: u8 = 2;
const TRACEPARENT: u8 = 4;
const TRACESTATE: u8 = 8;

/// Whether a stored `headers` blob holds an envelope in this form.
pub(crate) fn is_stored_envelope(blob: &[u8]) -> bool {
    blob.first() == Some(&MARKER)
}

/// The blob for `env`'s `headers` column; its payload goes in `value`, its partition key in
/// `key`.
pub(crate) fn encode(env: &Envelope) -> Vec<u8> {
    let m = &env.metadata;
    let strings = env.event_type.len() + env.source.len() + env.content_type.len();
    let mut out = Vec::with_capacity(64 + strings + 8);
    let flags = (env.causation_id.is_some() as u8 * CAUSATION)
        | (env.schema_version.is_some() as u8 * SCHEMA)
        | (m.traceparent.is_some() as u8 * TRACEPARENT)
        | (m.tracestate.is_some() as u8 * TRACESTATE);
    out.extend_from_slice(&[MARKER, FORMAT, flags]);
    out.extend_from_slice(env.envelope_id.as_bytes());
    out.extend_from_slice(env.correlation_id.as_bytes());
    if let Some(c) = &env.causation_id {
        out.extend_from_slice(c.as_bytes());
    }
    out.extend_from_slice(&env.timestamp.timestamp().to_le_bytes());
    out.extend_from_slice(&env.timestamp.timestamp_subsec_nanos().to_le_bytes());
    put_varint(&mut out, u64::from(env.retry_count));
    for s in [&env.event_type, &env.source, &env.content_type] {
        put_str(&mut out, s);
    }
    for s in [&env.schema_version, &m.traceparent, &m.tracestate].into_iter().flatten() {
        put_str(&mut out, s);
    }
    for map in [&m.tags, &m.headers] {
        put_varint(&mut out, map.len() as u64);
        for (k, v) in map {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
    }
    out
}

/// The envelope in `blob`, with `key` as its partition key and `value` as its payload (copied
/// only once the rest has read). Anything out of place is an [`Error::Decode`].
pub(crate) fn decode(blob: &[u8], key: Option<&[u8]>, value: &[u8], days: &mut DayCache) -> Result<Envelope> {
    let damaged = || Error::decode("a stored envelope is damaged");
    let mut r = Reader::new(blob);
    if r.bytes(2) != Some(&[MARKER, FORMAT][..]) {
        return Err(Error::decode("a stored envelope has an unknown format; was the file written by a newer onex?"));
    }
    let flags = r.bytes(1).ok_or_else(damaged)?[0];
    let envelope_id = r.uuid().ok_or_else(damaged)?;
    let correlation_id = r.uuid().ok_or_else(damaged)?;
    let causation_id = match flags & CAUSATION {
        0 => None,
        _ => Some(r.uuid().ok_or_else(damaged)?),
    };
    let secs = i64::from_le_bytes(r.array().ok_or_else(damaged)?);
    let nanos = u32::from_le_bytes(r.array().ok_or_else(damaged)?);
    let timestamp = days.datetime(secs, nanos).ok_or_else(damaged)?;
    r.strings_follow();
    let retry_count = u32::try_from(r.varint().ok_or_else(damaged)?).map_err(|_| damaged())?;
    let event_type = r.string().ok_or_else(damaged)?;
    let source = r.string().ok_or_else(damaged)?;
    let content_type = r.string().ok_or_else(damaged)?;
    let mut optional = |flag: u8| match flags & flag {
        0 => Ok(None),
        _ => r.string().map(Some).ok_or_else(damaged),
    };
    let schema_version = optional(SCHEMA)?;
    let traceparent = optional(TRACEPARENT)?;
    let tracestate = optional(TRACESTATE)?;
    let mut metadata = Metadata { traceparent, tracestate, ..Metadata::default() };
    for map in [&mut metadata.tags, &mut metadata.headers] {
        let n = r.varint().ok_or_else(damaged)?;
        for _ in 0..n {
            let k = r.string().ok_or_else(damaged)?;
            map.insert(k, r.string().ok_or_else(damaged)?);
        }
    }
    if !r.buf.is_empty() || flags & !(CAUSATION | SCHEMA | TRACEPARENT | TRACESTATE) != 0 {
        return Err(damaged());
    }
    let partition_key = match key {
        Some(k) => Some(std::str::from_utf8(k).map_err(|_| damaged())?.to_owned()),
        None => None,
    };
    Ok(Envelope {
        envelope_id,
        event_type,
        source,
        timestamp,
        correlation_id,
        causation_id,
        partition_key,
        schema_version,
        content_type,
        payload: Bytes::copy_from_slice(value),
        metadata,
        retry_count,
    })
}

/// Times from seconds and nanoseconds, keeping the last day's date: the records of a read
/// were mostly written on the same day, and finding the date is most of the conversion.
#[derive(Debug, Default)]
pub(crate) struct DayCache(Option<(i64, NaiveDate)>);

impl DayCache {
    /// The UTC time `secs` seconds and `nanos` nanoseconds after the Unix epoch, as
    /// `DateTime::from_timestamp` gives it.
    pub(crate) fn datetime(&mut self, secs: i64, nanos: u32) -> Option<DateTime<Utc>> {
        let (day, second) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
        let date = match self.0 {
            Some((d, date)) if d == day => date,
            _ => {
                let date = DateTime::from_timestamp(day.checked_mul(86_400)?, 0)?.date_naive();
                self.0 = Some((day, date));
                date
            }
        };
        Some(NaiveDateTime::new(date, NaiveTime::from_num_seconds_from_midnight_opt(second, nanos)?).and_utc())
    }

    /// [`DayCache::datetime`] of microseconds after the epoch.
    pub(crate) fn datetime_micros(&mut self, micros: i64) -> Option<DateTime<Utc>> {
        self.datetime(micros.div_euclid(1_000_000), (micros.rem_euclid(1_000_000) * 1000) as u32)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over a blob; every read is `None` past its end.
struct Reader<'a> {
    buf: &'a [u8],
    /// The strings part of the blob (from [`Reader::strings_follow`] on) when it is UTF-8 as
    /// a whole, which it is when every length is under 128: one check instead of one per
    /// string, whose slices then only need their ends to be character boundaries.
    text: Option<&'a str>,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, text: None }
    }

    fn strings_follow(&mut self) {
        self.text = std::str::from_utf8(self.buf).ok();
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.buf.split_at_checked(n)?;
        self.buf = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    fn uuid(&mut self) -> Option<Uuid> {
        self.array().map(Uuid::from_bytes)
    }

    fn varint(&mut self) -> Option<u64> {
        get_varint(&mut self.buf)
    }

    fn string(&mut self) -> Option<String> {
        let n = usize::try_from(self.varint()?).ok()?;
        let s = match self.text {
            Some(text) => {
                let start = text.len() - self.buf.len();
                self.bytes(n)?;
                text.get(start..start + n)?
            }
            None => std::str::from_utf8(self.bytes(n)?).ok()?,
        };
        Some(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Envelope {
        let parent = Envelope::new("test.parent.v1", &serde_json::json!({})).unwrap();
        let mut env = Envelope::new("test.full.v1", &serde_json::json!({"a": [1, 2]}))
            .unwrap()
            .with_source("svc-ü")
            .with_partition_key("key-1")
            .with_header("x-user", "42")
            .caused_by(&parent);
        env.schema_version = Some("3".into());
        env.metadata.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        env.metadata.tracestate = Some("a=b".into());
        env.metadata.tags.insert("tier".into(), "gold".into());
        env.retry_count = 300;
        env.content_type = "application/avro".into();
        env
    }

    #[test]
    fn every_field_round_trips() {
        for env in [full(), Envelope::new("t.minimal.v1", &1).unwrap()] {
            let blob = encode(&env);
            assert!(is_stored_envelope(&blob));
            let key = env.partition_key.as_deref().map(str::as_bytes);
            assert_eq!(decode(&blob, key, &env.payload, &mut DayCache::default()).unwrap(), env);
        }
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_a_decode_error() {
        let env = full();
        let blob = encode(&env);
        for n in 0..blob.len() {
            let e = decode(&blob[..n], Some(b"key-1"), b"{}", &mut DayCache::default()).unwrap_err();
            assert_eq!(e.kind(), onex_core::ErrorKind::Decode, "cut at {n}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(decode(&longer, Some(b"key-1"), b"{}", &mut DayCache::default()).is_err());
        let mut unknown = blob.clone();
        unknown[1] = 2;
        assert!(decode(&unknown, Some(b"key-1"), b"{}", &mut DayCache::default()).unwrap_err().to_string().contains("unknown format"));
        assert!(decode(&blob, Some(&[0xff]), b"{}", &mut DayCache::default()).is_err(), "a key that is not UTF-8");
    }

    #[test]
    fn long_and_non_ascii_strings_take_the_checked_path() {
        let mut env = full();
        env.metadata.tracestate = Some("ü".repeat(200)); // a length of 400: not one byte
        let blob = encode(&env);
        assert_eq!(decode(&blob, Some(b"key-1"), &env.payload, &mut DayCache::default()).unwrap(), env);
        // Invalid UTF-8 inside a string is damage, on either path.
        let at = blob.windows(5).position(|w| w == b"svc-\xc3").unwrap() + 4;
        let mut bad = blob.clone();
        bad[at] = 0xff;
        assert!(decode(&bad, Some(b"key-1"), &env.payload, &mut DayCache::default()).is_err());
    }

    #[test]
    fn the_day_cache_gives_what_chrono_gives() {
        let mut days = DayCache::default();
        for (secs, nanos) in
            [(0, 0), (86_399, 999_999_999), (86_400, 1), (-1, 5), (-86_401, 0), (1_764_000_000, 123_456_789), (1_764_000_001, 0)]
        {
            assert_eq!(days.datetime(secs, nanos), DateTime::from_timestamp(secs, nanos), "{secs} {nanos}");
        }
        assert_eq!(days.datetime_micros(-1), DateTime::from_timestamp_micros(-1));
        assert_eq!(days.datetime_micros(1_764_000_000_123_456), DateTime::from_timestamp_micros(1_764_000_000_123_456));
        assert_eq!(days.datetime(i64::MAX, 0), None);
    }

    #[test]
    fn header_blobs_are_never_taken_for_envelopes() {
        let mut h = onex_core::Headers::new();
        h.push("ce_id", Bytes::from_static(b"x"));
        assert!(!is_stored_envelope(&super::super::codec::encode_headers(&h).unwrap()));
    }
}
