//! `ce_time` without a detour through `String`: every record carries one, so formatting and
//! parsing it is on the hot path of both publish and consume. The fast paths produce and
//! accept exactly chrono's RFC 3339 (`SecondsFormat::AutoSi`, `Z`); anything else (offsets,
//! lowercase, leap seconds, years outside 0..=9999) goes through chrono.

use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, Timelike, Utc};

use super::digits::{nine, two};

/// Room for the longest output chrono can make (`+262143-12-31T23:59:59.999999999Z`).
pub(super) const MAX_LEN: usize = 40;

/// (year, month, day) → days since 1970-01-01 (`days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats `t` as chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)` would, into `buf`.
pub(super) fn format(t: &DateTime<Utc>, buf: &mut [u8; MAX_LEN]) -> usize {
    // Read from the naive UTC value: year, month, day (a table lookup in chrono) and the
    // seconds of the day are cheap there.
    let naive = t.naive_utc();
    if !is_canonical(&naive) {
        let s = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let n = s.len().min(MAX_LEN);
        buf[..n].copy_from_slice(&s.as_bytes()[..n]);
        return n;
    }
    let y = naive.year() as u32;
    let sod = naive.num_seconds_from_midnight();
    two(buf, 0, y / 100);
    two(buf, 2, y % 100);
    buf[4] = b'-';
    two(buf, 5, naive.month());
    buf[7] = b'-';
    two(buf, 8, naive.day());
    buf[10] = b'T';
    two(buf, 11, sod / 3600);
    buf[13] = b':';
    two(buf, 14, sod / 60 % 60);
    buf[16] = b':';
    two(buf, 17, sod % 60);
    let nanos = naive.nanosecond();
    let digits = fraction_digits(nanos) as usize;
    let mut len = 19;
    if digits > 0 {
        buf[len] = b'.';
        buf[len + 1..len + 1 + digits].copy_from_slice(&nine(nanos)[..digits]);
        len += 1 + digits;
    }
    buf[len] = b'Z';
    len + 1
}

/// Digits of the fraction AutoSi writes: none, milli, micro or nano.
fn fraction_digits(nanos: u32) -> u32 {
    match nanos {
        0 => 0,
        n if n % 1_000_000 == 0 => 3,
        n if n % 1_000 == 0 => 6,
        _ => 9,
    }
}

/// The length [`format`] writes for `t`, without formatting the canonical cases.
pub(super) fn formatted_len(t: &DateTime<Utc>) -> usize {
    let naive = t.naive_utc();
    if !is_canonical(&naive) {
        return format(t, &mut [0u8; MAX_LEN]);
    }
    // `YYYY-MM-DDTHH:MM:SSZ`, plus `.` and the fraction when there is one.
    match fraction_digits(naive.nanosecond()) {
        0 => 20,
        d => 21 + d as usize,
    }
}

/// Whether `t` (UTC) takes the fast paths both ways (and so parses back to itself exactly).
/// Read from the naive UTC value: `DateTime`'s own accessors first add the (zero) offset,
/// which costs more than the check itself.
pub(super) fn is_canonical(t: &NaiveDateTime) -> bool {
    (0..=9999).contains(&t.year()) && t.nanosecond() < 1_000_000_000
}

fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |acc, c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses the canonical form quickly; `None` means "use the general parser".
pub(super) fn parse_fast(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let (y, m, d) = (i64::from(digits(&b[0..4])?), digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, min, sec) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    // Leap seconds (sec 60) and anything out of range go to chrono, which knows the rules.
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || h > 23 || min > 59 || sec > 59 {
        return None;
    }
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => digits(frac)? * 10u32.pow(9 - frac.len() as u32),
        _ => return None,
    };
    let secs = days_from_civil(y, m, d) * 86_400 + i64::from(h * 3600 + min * 60 + sec);
    DateTime::from_timestamp(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn format_matches_chrono(secs in -70_000_000_000i64..300_000_000_000i64, nanos in prop_oneof![Just(0u32), 0u32..1000, (0u32..1000).prop_map(|n| n * 1_000_000), (0u32..1_000_000).prop_map(|n| n * 1000), 0u32..1_000_000_000]) {
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            let mut buf = [0u8; MAX_LEN];
            let n = format(&t, &mut buf);
            prop_assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }

        #[test]
        fn fast_parse_agrees_with_chrono(secs in 0i64..250_000_000_000i64, nanos in 0u32..1_000_000_000) {
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            for fmt in [SecondsFormat::AutoSi, SecondsFormat::Secs, SecondsFormat::Millis, SecondsFormat::Nanos] {
                let s = t.to_rfc3339_opts(fmt, true);
                let chrono = DateTime::parse_from_rfc3339(&s).unwrap().with_timezone(&Utc);
                prop_assert_eq!(parse_fast(&s), Some(chrono));
            }
        }

        #[test]
        fn fast_parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse_fast(&s);
        }

        #[test]
        fn fast_parse_agrees_with_chrono_on_near_canonical_strings(y in 0u32..10000, m in 0u32..14, d in 0u32..33, h in 0u32..25, min in 0u32..61, sec in 0u32..62) {
            let s = format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{sec:02}Z");
            if let Some(fast) = parse_fast(&s) {
                prop_assert_eq!(Some(fast), DateTime::parse_from_rfc3339(&s).ok().map(|t| t.with_timezone(&Utc)), "{}", s);
            }
        }
    }

    #[test]
    fn non_canonical_forms_go_to_chrono() {
        for s in
            ["2026-11-27T10:00:00+01:00", "2026-11-27t10:00:00z", "2026-11-27T10:00:60Z", "2026-13-01T00:00:00Z", "2026-11-27T10:00:00.Z"]
        {
            assert_eq!(parse_fast(s), None, "{s}");
        }
    }
}
