//! Key → partition with Kafka's murmur2 partitioner, so a key lands on the same partition
//! number on every backend (DESIGN §3 rule 2).

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`), as a Java `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions` (Java's `toPositive(murmur2(key)) % n`).
///
/// ```
/// assert_eq!(onex_bus::partitioner::partition_for_key(b"order-42", 1), 0);
/// ```
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from the Java client's `UtilsTest.testMurmur2`.
    #[test]
    fn java_client_vectors() {
        let cases: [(&[u8], i32); 7] = [
            (b"", 275646681),
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            (b"abc", 479470107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "murmur2({:?})", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partition_uses_the_positive_hash() {
        assert_eq!(partition_for_key(b"foobar", 50), 16);
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        for n in 1..20u32 {
            for i in 0..100 {
                let k = format!("key-{i}");
                let p = partition_for_key(k.as_bytes(), n);
                assert!(p < n);
                assert_eq!(p, partition_for_key(k.as_bytes(), n));
            }
        }
    }
}
