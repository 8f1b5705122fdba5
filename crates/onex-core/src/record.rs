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
        let name = match crate::envelope::ce_headers::RESERVED.iter().find(|k| **k == name) {
            Some(k) => Cow::Borrowed(*k),
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
