//! PostgreSQL `numeric` in its binary wire form, to and from decimal text.
//!
//! Wire form: `ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: [i16; ndigits]`,
//! base-10000 digits, value = Σ digits\[i\] × 10000^(weight − i).
//!
//! JSON rule for results: a numeric becomes a JSON **number** when the shortest `f64` that
//! reads back from it has exactly the same decimal value (so a consumer parsing JSON into a
//! double gets the stored value; trailing zeros of the scale are not kept), and a JSON
//! **string** with the exact decimal text otherwise (more significant digits than a double
//! holds, `NaN`, `Infinity`, `-Infinity`).

use serde_json::Value;

const SIGN_POS: u16 = 0x0000;
const SIGN_NEG: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_PINF: u16 = 0xD000;
const SIGN_NINF: u16 = 0xF000;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// A decimal split into sign, integer digits and fraction digits (ASCII digits only).
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    int: String,
    frac: String,
}

impl Decimal {
    /// Parses `-12.340`, `+5`, `.5`, `1e-3`, `2.5E+4`.
    fn parse(text: &str) -> Option<Decimal> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(p) => (&rest[..p], rest[p + 1..].parse::<i32>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
            || exp.unsigned_abs() > 10_000
        {
            return None;
        }
        let mut digits = format!("{int}{frac}");
        let mut point = int.len() as i64 + exp as i64;
        if point < 0 {
            digits.insert_str(0, &"0".repeat((-point) as usize));
            point = 0;
        }
        if point as usize > digits.len() {
            digits.push_str(&"0".repeat(point as usize - digits.len()));
        }
        let (i, f) = digits.split_at(point as usize);
        Some(Decimal { negative, int: i.to_string(), frac: f.to_string() })
    }

    /// The same value without leading integer zeros or trailing fraction zeros; zero is positive.
    fn canonical(&self) -> (bool, String, String) {
        let int = self.int.trim_start_matches('0').to_string();
        let frac = self.frac.trim_end_matches('0').to_string();
        let negative = self.negative && !(int.is_empty() && frac.is_empty());
        (negative, int, frac)
    }
}

/// Encodes decimal text (or `NaN`, `Infinity`, `-Infinity`) as binary numeric.
pub(crate) fn encode(text: &str) -> Option<Vec<u8>> {
    let special = |sign: u16| {
        let mut out = Vec::with_capacity(8);
        for v in [0u16, 0, sign, 0] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    };
    match text.trim() {
        "NaN" => return Some(special(SIGN_NAN)),
        "Infinity" | "+Infinity" => return Some(special(SIGN_PINF)),
        "-Infinity" => return Some(special(SIGN_NINF)),
        _ => {}
    }
    let d = Decimal::parse(text)?;
    let dscale = d.frac.len();
    if dscale > 16383 {
        return None;
    }
    let int_pad = (4 - d.int.len() % 4) % 4;
    let frac_pad = (4 - d.frac.len() % 4) % 4;
    let int = format!("{}{}", "0".repeat(int_pad), d.int);
    let frac = format!("{}{}", d.frac, "0".repeat(frac_pad));
    let mut groups: Vec<i16> =
        int.as_bytes().chunks(4).chain(frac.as_bytes().chunks(4)).map(|c| std::str::from_utf8(c).unwrap().parse().unwrap()).collect();
    let mut weight = (int.len() / 4) as i32 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign = if d.negative && !groups.is_empty() { SIGN_NEG } else { SIGN_POS };
    let mut out = Vec::with_capacity(8 + groups.len() * 2);
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&(i16::try_from(weight).ok()?).to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(dscale as u16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(out)
}

/// Decodes binary numeric into its exact decimal text (with the column's scale).
pub(crate) fn decode(raw: &[u8]) -> Result<String, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        raw.get(i * 2..i * 2 + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(|| "numeric value is truncated".into())
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i32;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    match sign {
        SIGN_NAN => return Ok("NaN".into()),
        SIGN_PINF => return Ok("Infinity".into()),
        SIGN_NINF => return Ok("-Infinity".into()),
        SIGN_POS | SIGN_NEG => {}
        other => return Err(format!("numeric has an unknown sign word {other:#x}").into()),
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect::<Result<_, _>>()?;
    if digits.iter().any(|d| *d > 9999) {
        return Err("numeric digit out of range".into());
    }
    use std::fmt::Write as _;
    let digit = |i: i32| if i >= 0 && (i as usize) < digits.len() { digits[i as usize] } else { 0 };
    let mut s = String::with_capacity(8 + 4 * (weight.max(0) as usize + 1) + dscale);
    if sign == SIGN_NEG {
        s.push('-');
    }
    if weight >= 0 {
        let _ = write!(s, "{}", digit(0));
        for i in 1..=weight {
            let _ = write!(s, "{:04}", digit(i));
        }
    } else {
        s.push('0');
    }
    if dscale > 0 {
        s.push('.');
        let frac_start = s.len();
        let mut i = weight + 1;
        while s.len() - frac_start < dscale {
            let _ = write!(s, "{:04}", digit(i));
            i += 1;
        }
        s.truncate(frac_start + dscale);
    }
    Ok(s)
}

/// The JSON form of a numeric's decimal text (see the module docs for the rule).
pub(crate) fn to_json(text: &str) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    // Fast path: up to 15 significant digits always survive the trip through an f64
    // (DBL_DIG), so the shortest f64 text has the same decimal value.
    if significant_digits(text).is_some_and(|n| n <= 15) {
        if let Some(n) = text.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    let Some(d) = Decimal::parse(text) else { return Value::String(text.to_string()) };
    if let Ok(f) = text.parse::<f64>() {
        if let Some(n) = serde_json::Number::from_f64(f) {
            if Decimal::parse(&n.to_string()).map(|back| back.canonical()) == Some(d.canonical()) {
                return Value::Number(n);
            }
        }
    }
    Value::String(text.to_string())
}

/// Significant digits of plain decimal text (`-0012.3400` has 4), `None` when not plain decimal.
fn significant_digits(text: &str) -> Option<usize> {
    let body = text.strip_prefix('-').unwrap_or(text);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit() || b == b'.') || body.bytes().filter(|b| *b == b'.').count() > 1 {
        return None;
    }
    // Digits from the first non-zero to the last non-zero, not counting the point.
    let digits = || body.bytes().filter(u8::is_ascii_digit);
    let Some(first) = digits().position(|d| d != b'0') else { return Some(0) };
    let last = digits().count() - 1 - digits().rev().position(|d| d != b'0').unwrap_or(0);
    Some(last - first + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        for (input, expected) in [
            ("0", "0"),
            ("1", "1"),
            ("-1", "-1"),
            ("10000", "10000"),
            ("12345.6789", "12345.6789"),
            ("0.0001", "0.0001"),
            ("-0.00012", "-0.00012"),
            ("1.50", "1.50"),
            ("123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"),
            ("1e3", "1000"),
            ("2.5E-3", "0.0025"),
            ("NaN", "NaN"),
            ("-Infinity", "-Infinity"),
            ("-0.0", "0.0"),
        ] {
            let bytes = encode(input).unwrap_or_else(|| panic!("encode {input}"));
            assert_eq!(decode(&bytes).unwrap(), expected, "{input}");
        }
        assert!(encode("1.2.3").is_none() && encode("abc").is_none() && encode("").is_none() && encode("-").is_none());
        assert!(decode(&[0, 1]).is_err());
    }

    #[test]
    fn json_rule() {
        assert_eq!(to_json("42"), serde_json::json!(42));
        assert_eq!(to_json("1.50"), serde_json::json!(1.5));
        assert_eq!(to_json("0.1"), serde_json::json!(0.1));
        assert_eq!(to_json("123456789012345678901234567890.1"), serde_json::json!("123456789012345678901234567890.1"));
        assert_eq!(to_json("0.12345678901234567890"), serde_json::json!("0.12345678901234567890"));
        assert_eq!(to_json("NaN"), serde_json::json!("NaN"));
        assert_eq!(to_json("123456789012.345"), serde_json::json!(123456789012.345));
        assert_eq!(to_json("-0.000000000000001"), serde_json::json!(-1e-15));
        assert_eq!(significant_digits("-0012.3400"), Some(4));
        assert_eq!(significant_digits("1e5"), None);
    }
}
