//! The byte scanner in front of the serde visitor: one pass over the payload, no allocation,
//! no serde machinery. It covers what event payloads are made of — strings without escapes,
//! integer literals, plain decimals without exponents, literals, objects and arrays — and answers "certainly
//! valid" or "not sure". Not sure is cheap to be: the serde visitor, then the full validator,
//! decide. So every doubtful corner (an escape, a control byte, `-0`, an exponent, a decimal that
//! meets a bound or an enum, nesting deeper than [`MAX_DEPTH`]) is left to them.

use super::{Checks, Node, Scalar, ARRAY, BOOLEAN, EXACT_F64, INTEGER, NULL, NUMBER, OBJECT, STRING};

/// Deeper values are left to serde_json (whose own limit is 128).
const MAX_DEPTH: u32 = 100;

/// `true` only when `payload` is one JSON value, certainly valid under `root`.
pub(super) fn certainly_valid(root: &Node, payload: &[u8]) -> bool {
    let mut s = Scan { b: payload, i: 0 };
    s.value(root, 0) == Some(()) && {
        s.ws();
        s.i == payload.len()
    }
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

/// How a number literal reads.
enum Num {
    Int(i64),
    /// A literal with a fraction (and no exponent).
    Decimal,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.i) == Some(&byte)).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(word).then(|| self.i += word.len())
    }

    /// A string without escapes or control bytes, checked to be UTF-8; the cursor is on its
    /// `"`. Returns its bytes: names and enum members compare as bytes (UTF-8 orders as `str`).
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.i + 1;
        let rest = self.b.get(start..)?;
        let (mut end, mut ascii) = (0, true);
        loop {
            // A tight loop over plain ASCII; anything else is looked at once.
            end += rest[end..].iter().position(|&c| STRING_BYTE[c as usize] != PLAIN)?;
            match STRING_BYTE[rest[end] as usize] {
                HIGH => ascii = false,
                QUOTE => break,
                _ => return None, // a backslash or a control byte
            }
            end += 1;
        }
        self.i = start + end + 1;
        let v = &rest[..end];
        (ascii || std::str::from_utf8(v).is_ok()).then_some(v)
    }

    /// A number literal by the JSON grammar.
    fn number(&mut self) -> Option<Num> {
        let negative = self.b.get(self.i) == Some(&b'-');
        if negative {
            self.i += 1;
        }
        let int_start = self.i;
        let mut value: i64 = 0;
        while let Some(d) = self.b.get(self.i).filter(|c| c.is_ascii_digit()) {
            value = value.wrapping_mul(10).wrapping_add(i64::from(d - b'0'));
            self.i += 1;
        }
        let int_len = self.i - int_start;
        if int_len == 0 || (int_len > 1 && self.b[int_start] == b'0') {
            return None;
        }
        let mut decimal = false;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let from = self.i;
            while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            if self.i == from {
                return None;
            }
            decimal = true;
        }
        // An exponent can overflow f64, which serde_json refuses: not sure. So can a decimal
        // with hundreds of integer digits.
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            return None;
        }
        if decimal {
            return (int_len <= 100).then_some(Num::Decimal);
        }
        // 18 digits always fit an i64; `-0` reads as -0.0 in serde_json: both left to it.
        if int_len > 18 || (negative && value == 0) {
            return None;
        }
        Some(Num::Int(if negative { -value } else { value }))
    }

    fn value(&mut self, node: &Node, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match node {
            Node::Never => None,
            Node::Any => self.any(depth),
            Node::Checks(c) => self.checked(c, depth),
        }
    }

    /// Any well-formed value.
    fn any(&mut self, depth: u32) -> Option<()> {
        match *self.b.get(self.i)? {
            b'{' => self.object(&ANY_OBJECT, depth).map(|_| ()),
            b'[' => self.array(&Node::Any, depth).map(|_| ()),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(|_| ()),
        }
    }

    fn checked(&mut self, c: &Checks, depth: u32) -> Option<()> {
        let kind = |k: u8| (c.types & k != 0).then_some(());
        let allowed = |m: &dyn Fn(&Scalar) -> bool| match &c.allowed {
            Some(values) if !values.iter().any(m) => None,
            _ => Some(()),
        };
        match *self.b.get(self.i)? {
            b'{' => {
                kind(OBJECT)?;
                allowed(&|_| false)?;
                let (seen, count) = self.object(c, depth)?;
                (seen & c.required_mask == c.required_mask && c.max_properties.is_none_or(|m| count <= m)).then_some(())
            }
            b'[' => {
                kind(ARRAY)?;
                allowed(&|_| false)?;
                let count = self.array(c.items.as_ref().unwrap_or(&Node::Any), depth)?;
                (c.min_items.is_none_or(|m| count >= m) && c.max_items.is_none_or(|m| count <= m)).then_some(())
            }
            b'"' => {
                kind(STRING)?;
                let v = self.string()?;
                if c.min_length.is_some() || c.max_length.is_some() {
                    // Characters, not bytes: count what does not continue a UTF-8 sequence.
                    let chars = v.iter().filter(|b| *b & 0xC0 != 0x80).count() as u64;
                    if c.min_length.is_some_and(|m| chars < m) || c.max_length.is_some_and(|m| chars > m) {
                        return None;
                    }
                }
                allowed(&|s| matches!(s, Scalar::Str(x) if x.as_bytes() == v))
            }
            b't' | b'f' => {
                let v = self.b[self.i] == b't';
                self.literal(if v { b"true" } else { b"false" })?;
                kind(BOOLEAN)?;
                allowed(&|s| *s == Scalar::Bool(v))
            }
            b'n' => {
                self.literal(b"null")?;
                kind(NULL)?;
                allowed(&|s| *s == Scalar::Null)
            }
            _ => match self.number()? {
                Num::Int(n) => {
                    kind(INTEGER)?;
                    allowed(&|s| matches!(s, Scalar::Int(i) if *i == n))?;
                    bounds(c, n)
                }
                // A decimal is certain only where its exact value cannot matter: the type
                // admits any number and nothing compares it.
                Num::Decimal => {
                    let unbounded =
                        c.minimum.is_none() && c.maximum.is_none() && c.exclusive_minimum.is_none() && c.exclusive_maximum.is_none();
                    (c.types & NUMBER != 0 && c.allowed.is_none() && unbounded).then_some(())
                }
            },
        }
    }

    /// An object's members against `c`'s properties; returns (required bits seen, member count).
    fn object(&mut self, c: &Checks, depth: u32) -> Option<(u64, u64)> {
        self.i += 1; // `{`
        let additional = c.additional.as_ref().unwrap_or(&Node::Any);
        let (mut seen, mut count, mut hint) = (0u64, 0u64, 0usize);
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Some((0, 0));
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return None;
            }
            let key = self.string()?;
            let found = match c.properties.get(hint) {
                Some(p) if p.name.as_bytes() == key => Some(hint),
                _ => c.properties.binary_search_by(|p| p.name.as_bytes().cmp(key)).ok(),
            };
            self.eat(b':')?;
            let node = match found {
                Some(i) => {
                    let p = &c.properties[i];
                    hint = i + 1;
                    seen |= p.required_bit;
                    p.node.as_ref().unwrap_or(additional)
                }
                None => additional,
            };
            self.value(node, depth + 1)?;
            count += 1;
            if self.closed(b'}')? {
                return Some((seen, count));
            }
        }
    }

    /// After a member: `,` (more follow, `false`) or `close` (`true`); anything else is `None`.
    fn closed(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let c = *self.b.get(self.i)?;
        self.i += 1;
        match c {
            b',' => Some(false),
            c if c == close => Some(true),
            _ => None,
        }
    }

    /// An array's items against `items`; returns the count.
    fn array(&mut self, items: &Node, depth: u32) -> Option<u64> {
        self.i += 1; // `[`
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Some(0);
        }
        let mut count = 0;
        loop {
            self.value(items, depth + 1)?;
            count += 1;
            if self.closed(b']')? {
                return Some(count);
            }
        }
    }
}

/// Integer bounds, compared as f64 only where that is exact.
fn bounds(c: &Checks, n: i64) -> Option<()> {
    let bounded = c.minimum.is_some() || c.maximum.is_some() || c.exclusive_minimum.is_some() || c.exclusive_maximum.is_some();
    if !bounded {
        return Some(());
    }
    if n.unsigned_abs() >= EXACT_F64 as u64 {
        return None;
    }
    let n = n as f64;
    let fails = c.minimum.is_some_and(|m| n < m)
        || c.maximum.is_some_and(|m| n > m)
        || c.exclusive_minimum.is_some_and(|m| n <= m)
        || c.exclusive_maximum.is_some_and(|m| n >= m);
    (!fails).then_some(())
}

const PLAIN: u8 = 0;
const HIGH: u8 = 1;
const QUOTE: u8 = 2;
const STOP: u8 = 3;

/// What each byte means inside a string.
static STRING_BYTE: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i {
            0..=0x1f => STOP,
            0x22 => QUOTE,
            0x5c => STOP,
            0x80..=0xff => HIGH,
            _ => PLAIN,
        };
        i += 1;
    }
    t
};

/// The checks of an object under `Node::Any`: anything goes.
static ANY_OBJECT: std::sync::LazyLock<Checks> = std::sync::LazyLock::new(|| Checks { types: super::ANY_TYPE, ..Checks::default() });

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::super::FastPlan;
    use super::certainly_valid;

    fn plan(schema: &Value) -> FastPlan {
        FastPlan::compile(schema).expect("supported")
    }

    fn event_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "sku": {"type": "string", "maxLength": 3},
                "price": {"type": "number"},
                "paid": {"type": "boolean"},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
                "note": {}
            },
            "required": ["id", "sku"],
            "additionalProperties": false
        })
    }

    #[test]
    fn typical_payloads_are_certain_without_serde() {
        let p = plan(&event_schema());
        for ok in [
            &br#"{"id": 1, "sku": "abc", "price": 9.99, "paid": true, "tags": ["a"], "note": {"x": [1, null, "y"]}}"#[..],
            " { \"sku\" : \"\u{e9}\u{e9}\u{e9}\" , \"id\" : 7 } ".as_bytes(), // three characters, six bytes
            br#"{"id":1,"sku":"","tags":[]}"#,
        ] {
            assert!(certainly_valid(&p.root, ok), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn doubtful_or_wrong_payloads_are_not_certain() {
        let p = plan(&event_schema());
        for doubtful in [
            &br#"{"id": 1, "sku": "a\"b"}"#[..],       // escape
            br#"{"id": 1, "sku": "a", "price": 1e3}"#, // exponent
            br#"{"id": -0, "sku": "a"}"#,              // -0
            br#"{"id": 1.0, "sku": "a"}"#,             // integer written as a decimal
            b"{\"id\": 1, \"sku\": \"a\x01\"}",        // control byte
            b"{\"id\": 1, \"sku\": \"\xff\"}",         // not UTF-8
            br#"{"id": 1, "sku": "a"} x"#,             // trailing bytes
            br#"{"id": 01, "sku": "a"}"#,              // leading zero
            br#"{"id": 1, "sku": "a",}"#,              // trailing comma
            br#"{"id": 1 "sku": "a"}"#,                // missing comma
            br#"{"id": 12345678901234567890, "sku": "a"}"#,
            br#"{"id": 0, "sku": "a"}"#,         // below minimum
            br#"{"id": 1, "sku": "abcd"}"#,      // too long
            br#"{"id": 1}"#,                     // sku missing
            br#"{"id": 1, "sku": "a", "x": 1}"#, // additional
            br#"{"id": 1, "sku": "a", "tags": ["c"]}"#,
            br#"{"id": 1, "sku": "a", "tags": ["a", "b", "a"]}"#,
            br#"{"id": 1, "sku": "a", "paid": tru}"#,
            b"",
            b"   ",
        ] {
            assert!(!certainly_valid(&p.root, doubtful), "{}", String::from_utf8_lossy(doubtful));
        }
        let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
        assert!(!certainly_valid(&plan(&json!({})).root, deep.as_bytes()), "nesting past the limit is left to serde_json");
    }

    fn token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\"a\"",
            "\"b\"",
            "\"id\"",
            "\"sku\"",
            "\"x\u{e9}\"",
            "\"\\n\"",
            "\"",
            "1",
            "-1",
            "0",
            "-0",
            "01",
            "1.5",
            "-2.25",
            "1e5",
            "1e400",
            "1E+2",
            "1.",
            "true",
            "false",
            "null",
            "tru",
            "\u{1}",
            "12345678901234567890",
            "9007199254740993",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever bytes come, "certainly valid" means serde_json parses them and the full
        /// validator agrees.
        #[test]
        fn certain_means_parsable_and_valid(tokens in prop::collection::vec(token(), 0..24), which in 0usize..4) {
            let schemas = [event_schema(), json!({}), json!({"type": "array", "items": {"type": "integer", "maximum": 1}}), json!({"type": ["string", "number"]})];
            let schema = &schemas[which];
            let bytes = tokens.concat();
            if certainly_valid(&plan(schema).root, bytes.as_bytes()) {
                let value: Value = serde_json::from_slice(bytes.as_bytes()).map_err(|e| TestCaseError::fail(format!("{bytes:?} is not JSON: {e}")))?;
                let full = jsonschema::validator_for(schema).unwrap();
                prop_assert!(full.is_valid(&value), "{} accepted under {}", bytes, schema);
            }
        }
    }
}
