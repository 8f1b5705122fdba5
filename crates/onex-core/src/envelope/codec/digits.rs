//! Table-driven text for the two kinds of value every record header set carries: UUIDs
//! (`ce_id`, `ce_correlationid`) and the decimal fields of `ce_time`. One lookup writes two
//! characters, where a loop per character costs several times more on every publish.

use uuid::Uuid;

/// `"00"` to `"99"`.
const DECIMAL_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// `"00"` to `"ff"`.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    t
};

/// Where each byte of a UUID starts in its hyphenated form (8-4-4-4-12).
const UUID_POSITIONS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/// The value of each hex digit (either case); 0xff for any other byte.
const HEX_VALUES: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Writes `v` (below 100) as two digits at `buf[at..at + 2]`.
pub(super) fn two(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 2].copy_from_slice(&DECIMAL_PAIRS[v as usize % 100]);
}

/// The nine digits of `nanos` (below 10^9), zero-padded.
pub(super) fn nine(nanos: u32) -> [u8; 9] {
    let mut out = [b'0'; 9];
    let mut n = nanos % 1_000_000_000;
    out[8] = b'0' + (n % 10) as u8;
    n /= 10;
    for i in (0..4).rev() {
        two(&mut out, 2 * i, n % 100);
        n /= 100;
    }
    out
}

/// `id` in lowercase hyphenated form, exactly as `id.hyphenated().encode_lower` writes it.
pub(super) fn hyphenated<'a>(id: &Uuid, out: &'a mut [u8; 36]) -> &'a [u8] {
    for at in [8, 13, 18, 23] {
        out[at] = b'-';
    }
    for (byte, at) in id.as_bytes().iter().zip(UUID_POSITIONS) {
        out[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
    out
}

/// Parses the hyphenated form (either case) that every onex producer writes; `None` for
/// anything else, which the caller hands to the uuid crate (other forms, and its errors).
pub(super) fn parse_hyphenated(v: &[u8]) -> Option<Uuid> {
    if v.len() != 36 || v[8] != b'-' || v[13] != b'-' || v[18] != b'-' || v[23] != b'-' {
        return None;
    }
    let mut bytes = [0u8; 16];
    let mut bad = 0u8;
    for (byte, at) in bytes.iter_mut().zip(UUID_POSITIONS) {
        let (hi, lo) = (HEX_VALUES[usize::from(v[at])], HEX_VALUES[usize::from(v[at + 1])]);
        bad |= hi | lo; // 0xff marks a non-hex byte; valid digits never set the top bits
        *byte = (hi << 4) | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then(|| Uuid::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hyphenated_matches_the_uuid_crate(bits in any::<u128>()) {
            let id = Uuid::from_u128(bits);
            let (mut buf, expected) = ([0u8; 36], id.hyphenated().to_string());
            prop_assert_eq!(hyphenated(&id, &mut buf), expected.as_bytes());
        }

        #[test]
        fn parse_hyphenated_reads_both_cases(bits in any::<u128>()) {
            let id = Uuid::from_u128(bits);
            let lower = id.hyphenated().to_string();
            prop_assert_eq!(parse_hyphenated(lower.as_bytes()), Some(id));
            prop_assert_eq!(parse_hyphenated(lower.to_uppercase().as_bytes()), Some(id));
        }

        #[test]
        fn parse_hyphenated_accepts_only_what_the_uuid_crate_reads_the_same(s in "[0-9a-fA-Fg-]{36}") {
            if let Some(id) = parse_hyphenated(s.as_bytes()) {
                prop_assert_eq!(Uuid::try_parse(&s).ok(), Some(id));
            }
        }

        #[test]
        fn nine_matches_format(nanos in 0u32..1_000_000_000) {
            let expected = format!("{nanos:09}");
            prop_assert_eq!(&nine(nanos)[..], expected.as_bytes());
        }
    }

    #[test]
    fn parse_hyphenated_leaves_other_forms_to_the_uuid_crate() {
        for s in [
            "67e55044-10b1-426f-9247-bb680e5fe0c8 ",
            "67e5504410b1426f9247bb680e5fe0c8",
            "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
            "67e55044-10b1-426f-9247-bb680e5fe0cg",
            "67e55044+10b1-426f-9247-bb680e5fe0c8",
            "",
        ] {
            assert_eq!(parse_hyphenated(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn two_writes_every_pair() {
        let mut buf = [0u8; 2];
        for v in 0..100 {
            two(&mut buf, 0, v);
            assert_eq!(&buf, format!("{v:02}").as_bytes());
        }
    }
}
