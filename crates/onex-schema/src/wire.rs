//! The Confluent wire format for Kafka values: magic byte `0`, the 4-byte big-endian schema id,
//! then the JSON bytes. Off by default; consumers accept either form.

use bytes::{BufMut, Bytes, BytesMut};

/// The first byte of a Confluent-framed value.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte + schema id.
pub const HEADER_LEN: usize = 5;

/// Frames `json` with the Confluent header for schema `id`.
///
/// ```
/// let framed = onex_schema::encode_confluent(7, br#"{"a":1}"#);
/// assert_eq!(&framed[..5], &[0, 0, 0, 0, 7]);
/// assert_eq!(onex_schema::decode_value(&framed), (Some(7), &br#"{"a":1}"#[..]));
/// ```
pub fn encode_confluent(id: u32, json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + json.len());
    out.put_u8(MAGIC_BYTE);
    out.put_u32(id);
    out.put_slice(json);
    out.freeze()
}

/// Splits a value into its schema id (when Confluent-framed) and the JSON bytes. A JSON text
/// never starts with byte `0`, so plain JSON and framed values are told apart without a flag.
///
/// ```
/// assert_eq!(onex_schema::decode_value(b"{}"), (None, &b"{}"[..]));
/// ```
pub fn decode_value(bytes: &[u8]) -> (Option<u32>, &[u8]) {
    match bytes {
        [MAGIC_BYTE, a, b, c, d, rest @ ..] => (Some(u32::from_be_bytes([*a, *b, *c, *d])), rest),
        _ => (None, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_plain_json() {
        for id in [0, 1, 256, u32::MAX] {
            let framed = encode_confluent(id, b"[1,2]");
            assert_eq!(framed.len(), 10);
            assert_eq!(decode_value(&framed), (Some(id), &b"[1,2]"[..]));
        }
        assert_eq!(decode_value(b" {\"a\": 1}"), (None, &b" {\"a\": 1}"[..]));
        assert_eq!(decode_value(b""), (None, &b""[..]));
        // Too short to carry an id: left as is (it then fails to parse as JSON, clearly).
        assert_eq!(decode_value(&[0, 1]), (None, &[0u8, 1][..]));
        assert_eq!(decode_value(&encode_confluent(9, b"")), (Some(9), &b""[..]));
    }
}
