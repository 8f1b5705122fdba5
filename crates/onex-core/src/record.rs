//! The (key, value, headers) record every backend stores and every wire carries.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Record headers: ordered (name, bytes) pairs, as Kafka has them. Names may repeat;
/// [`Headers::get`] returns the last value of a name, as CloudEvents readers do.
/// Well-known names are stored without allocating ([`Headers::push_static`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headers(Vec<(Cow<'static, str>, Bytes)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Room for `n` headers.
    pub fn with_capacity(n: usize) -> Self {
        Headers(Vec::with_capacity(n))
    }

    /// Appends a header.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<Bytes>) {
        self.0.push((Cow::Owned(name.into()), value.into()));
    }

    /// Appends a header whose name is a constant (no allocation for the name).
    pub fn push_static(&mut self, name: &'static str, value: impl Into<Bytes>) {
        self.0.push((Cow::Borrowed(name), value.into()));
    }

    /// Appends a header read from the wire: a well-known name (the CloudEvents headers of
    /// [`crate::envelope::ce_headers::RESERVED`]) is stored without allocating.
    pub fn push_name(&mut self, name: &str, value: impl Into<Bytes>) {
        let name = match well_known_header(name.as_bytes()) {
            Some(k) => Cow::Borrowed(k),
            None => Cow::Owned(name.to_string()),
        };
        self.0.push((name, value.into()));
    }

    /// Sets a header, replacing every earlier value of the name.
    pub fn set(&mut self, name: &str, value: impl Into<Bytes>) {
        self.0.retain(|(k, _)| k != name);
        self.0.push((Cow::Owned(name.to_string()), value.into()));
    }

    /// The last value of `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0.iter().rev().find(|(k, _)| k.as_ref() == name).map(|(_, v)| v)
    }

    /// The last value of `name` as UTF-8, when it is.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Removes every header named `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }

    /// Total bytes of names and values.
    pub fn byte_len(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// The constant for a CloudEvents header name; a `match` on bytes compiles to a length
/// switch and one comparison, which matters: every header of every consumed record comes here,
/// and a name that matches needs no UTF-8 check and no allocation.
pub fn well_known_header(name: &[u8]) -> Option<&'static str> {
    use crate::envelope::ce_headers as h;
    Some(match name {
        b"ce_specversion" => h::SPECVERSION,
        b"ce_id" => h::ID,
        b"ce_source" => h::SOURCE,
        b"ce_type" => h::TYPE,
        b"ce_time" => h::TIME,
        b"content-type" => h::CONTENT_TYPE,
        b"ce_correlationid" => h::CORRELATION_ID,
        b"ce_causationid" => h::CAUSATION_ID,
        b"ce_partitionkey" => h::PARTITION_KEY,
        b"ce_dataschema" => h::DATASCHEMA,
        b"traceparent" => h::TRACEPARENT,
        b"tracestate" => h::TRACESTATE,
        b"ce_retrycount" => h::RETRY_COUNT,
        b"ce_tags" => h::TAGS,
        _ => return None,
    })
}

/// A record as stored by a backend and carried on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Partition key bytes.
    pub key: Option<Bytes>,
    /// Value bytes (the payload in CloudEvents binary mode).
    pub value: Bytes,
    /// Headers.
    pub headers: Headers,
}

impl Record {
    /// Size used against message size limits: key + value + headers.
    pub fn byte_len(&self) -> usize {
        self.key.as_ref().map_or(0, |k| k.len()) + self.value.len() + self.headers.byte_len()
    }
}

impl FromIterator<(String, Bytes)> for Headers {
    fn from_iter<I: IntoIterator<Item = (String, Bytes)>>(iter: I) -> Self {
        Headers(iter.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reserved_name_is_interned_and_others_are_not() {
        for name in crate::envelope::ce_headers::RESERVED {
            assert_eq!(well_known_header(name.as_bytes()), Some(name));
        }
        assert_eq!(well_known_header(b"ce_idx"), None);
        assert_eq!(well_known_header(b"x-user"), None);
        let mut h = Headers::new();
        h.push_name("ce_id", Bytes::from_static(b"1"));
        h.push_name("x-user", Bytes::from_static(b"2"));
        assert!(matches!(h.0[0].0, Cow::Borrowed(_)));
        assert!(matches!(h.0[1].0, Cow::Owned(_)));
    }
}
