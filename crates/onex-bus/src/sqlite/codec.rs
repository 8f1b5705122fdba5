//! How records sit in the file: row ids that encode (partition, offset), a compact header
//! encoding, and mapping SQLite failures to onex errors.

use std::cell::Cell;

use bytes::Bytes;
use onex_core::{Error, Headers, Result};

/// Bits of a record row id that hold the offset; the bits above hold the partition's id
/// (`bus_partitions.id`). One rowid table keyed this way makes an append a B-tree append and
/// a partition read a range scan, with no second index.
pub(crate) const OFFSET_BITS: u32 = 40;
/// Largest offset a partition can hold (2^40 − 1, about 10^12).
pub(crate) const MAX_OFFSET: u64 = (1 << OFFSET_BITS) - 1;
/// Largest partition id (2^23 − 1) so that row ids stay positive `i64`.
pub(crate) const MAX_PARTITION_ID: i64 = (1 << (63 - OFFSET_BITS)) - 1;

/// The first row id of a partition.
pub(crate) fn base_id(partition_id: i64) -> i64 {
    partition_id << OFFSET_BITS
}

/// The row id of `offset` in a partition.
pub(crate) fn row_id(partition_id: i64, offset: u64) -> i64 {
    base_id(partition_id) | offset as i64
}

/// The offset a row id holds.
pub(crate) fn offset_of(row_id: i64) -> u64 {
    (row_id as u64) & MAX_OFFSET
}

/// The end of a partition (its next offset): one past its newest record. `floor` is what
/// `bus_partitions.next_offset` holds, which is only written when retention deletes records
/// (it may delete them all); appends do not write it, so that a transaction of appends
/// touches `bus_records` alone.
pub(crate) fn end_offset(conn: &rusqlite::Connection, partition_id: i64, floor: i64) -> Result<u64> {
    use rusqlite::OptionalExtension;
    let newest: Option<i64> = conn
        .prepare_cached("SELECT id FROM bus_records WHERE id >= ?1 AND id < ?2 ORDER BY id DESC LIMIT 1")
        .and_then(|mut s| s.query_row([base_id(partition_id), base_id(partition_id + 1)], |r| r.get(0)).optional())
        .sql("reading the end of a partition")?;
    Ok(newest.map_or(0, |id| offset_of(id) + 1).max(floor.max(0) as u64))
}

/// Encodes headers as `varint count, (varint name len, name, varint value len, value)*`,
/// keeping order, repeats and exact bytes. No headers is `None` (stored as NULL).
pub(crate) fn encode_headers(headers: &Headers) -> Option<Vec<u8>> {
    if headers.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(headers.byte_len() + 2 * headers.len() + 1);
    put_varint(&mut out, headers.len() as u64);
    for (name, value) in headers.iter() {
        put_varint(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        put_varint(&mut out, value.len() as u64);
        out.extend_from_slice(value);
    }
    Some(out)
}

/// Decodes [`encode_headers`] output held in `blob`; values are slices of `blob` (no copy).
/// A damaged blob is a [`Error::Decode`].
pub(crate) fn decode_headers(blob: &Bytes) -> Result<Headers> {
    let damaged = Cell::new(false);
    let pairs = HeaderPairs::new(blob, &damaged);
    let mut headers = Headers::with_capacity(pairs.left.min(1024) as usize);
    for (name, value) in pairs {
        headers.push_name(name, blob.slice_ref(value));
    }
    match damaged.get() {
        true => Err(Error::decode("stored record headers are damaged")),
        false => Ok(headers),
    }
}

/// The (name, value) pairs of an [`encode_headers`] blob, borrowed from it. A damaged blob
/// ends the pairs early and sets the flag given to [`HeaderPairs::new`]: whoever reads the
/// pairs checks it once at the end instead of the blob being checked in a pass of its own.
#[derive(Clone)]
pub(crate) struct HeaderPairs<'a> {
    buf: &'a [u8],
    left: u64,
    damaged: &'a Cell<bool>,
}

impl<'a> HeaderPairs<'a> {
    pub(crate) fn new(blob: &'a [u8], damaged: &'a Cell<bool>) -> Self {
        let mut buf = blob;
        let left = match blob.is_empty() {
            true => 0,
            false => get_varint(&mut buf).unwrap_or_else(|| {
                damaged.set(true);
                0
            }),
        };
        HeaderPairs { buf, left, damaged }
    }

    fn pair(&mut self) -> Option<(&'a str, &'a [u8])> {
        let mut buf = self.buf;
        let n = get_varint(&mut buf)? as usize;
        let name = buf.get(..n)?;
        // CloudEvents names (most of them) are matched as bytes: no UTF-8 check.
        let name = match onex_core::well_known_header(name) {
            Some(k) => k,
            None => std::str::from_utf8(name).ok()?,
        };
        buf = &buf[n..];
        let n = get_varint(&mut buf)? as usize;
        let value = buf.get(..n)?;
        self.buf = &buf[n..];
        Some((name, value))
    }
}

impl<'a> Iterator for HeaderPairs<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            if !self.buf.is_empty() {
                self.damaged.set(true); // trailing bytes
            }
            return None;
        }
        self.left -= 1;
        let pair = self.pair();
        if pair.is_none() {
            self.damaged.set(true);
            self.left = 0;
            self.buf = &[];
        }
        pair
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(v);
        }
    }
    None
}

/// Maps a SQLite failure during `what` to an onex error: a busy or locked database is
/// retryable ([`Error::Unavailable`]), a full disk or I/O failure too; anything else says
/// what failed.
pub(crate) fn sql_error(what: &str, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    let code = e.sqlite_error_code();
    let err = match code {
        Some(C::DatabaseBusy | C::DatabaseLocked) => {
            Error::unavailable(format!("{what}: the database is locked by another connection or process; retry"))
        }
        Some(C::DiskFull) => Error::unavailable(format!("{what}: the disk is full; free space and retry")),
        Some(C::SystemIoFailure) => Error::unavailable(format!("{what}: disk I/O failed")),
        Some(C::ReadOnly) => Error::rejected(format!("{what}: the database file is read-only; check its permissions")),
        Some(C::NotADatabase) => Error::config(format!("{what}: the file is not a SQLite database")),
        Some(C::CannotOpen) => Error::connection(format!("{what}: cannot open the database file")),
        _ => Error::unavailable(format!("{what}: SQLite failed")),
    };
    err.with_source(e)
}

/// `Result` adapter: `.sql("what")?`.
pub(crate) trait SqlContext<T> {
    /// Maps a SQLite failure with [`sql_error`].
    fn sql(self, what: &str) -> Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn sql(self, what: &str) -> Result<T> {
        self.map_err(|e| sql_error(what, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_in_order_with_repeats_and_binary() {
        let mut h = Headers::new();
        h.push("ce_id", Bytes::from_static(b"abc"));
        h.push("x-bin", Bytes::from_static(&[0, 0xff, 0xc3, 0x28]));
        h.push("ce_id", Bytes::from_static(b"second"));
        h.push("", Bytes::new());
        h.push("long", Bytes::from(vec![7u8; 300]));
        let blob = Bytes::from(encode_headers(&h).unwrap());
        assert_eq!(decode_headers(&blob).unwrap(), h);
        assert_eq!(encode_headers(&Headers::new()), None);
        assert_eq!(decode_headers(&Bytes::new()).unwrap(), Headers::new());
    }

    #[test]
    fn damaged_headers_are_decode_errors_not_panics() {
        for bad in [&[1][..], &[1, 5, b'a'][..], &[1, 1, 0xff][..], &[0, 9][..], &[0xff; 12][..]] {
            let e = decode_headers(&Bytes::copy_from_slice(bad)).unwrap_err();
            assert_eq!(e.kind(), onex_core::ErrorKind::Decode, "{bad:?}");
        }
    }

    #[test]
    fn row_ids_keep_partitions_apart() {
        assert_eq!(offset_of(row_id(3, 17)), 17);
        assert!(row_id(3, MAX_OFFSET) < base_id(4));
        assert!(row_id(MAX_PARTITION_ID, MAX_OFFSET) > 0);
    }
}
