//! A streaming fast path for the common shape of event schemas.
//!
//! Parsing a payload into a `serde_json::Value` costs more than validating it. For schemas made
//! only of `type`, `properties`, `required`, `additionalProperties`, scalar `enum`/`const`,
//! numeric bounds, string lengths, `items`, `minItems`/`maxItems` and `maxProperties`, a
//! [`FastPlan`] checks the payload bytes directly with a serde visitor, allocating nothing.
//!
//! The plan answers only "certainly valid": it is at least as strict as the full validator
//! (duplicate keys, integers beyond 2^53 and numeric enum members like `1` vs `1.0` make it
//! answer "not sure"), and anything else goes to the full validator, which decides and reports
//! every violation. A property test checks it never accepts what the full validator refuses.

mod scan;

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

const NULL: u8 = 1;
const BOOLEAN: u8 = 1 << 1;
const INTEGER: u8 = 1 << 2;
const NUMBER: u8 = 1 << 3;
const STRING: u8 = 1 << 4;
const ARRAY: u8 = 1 << 5;
const OBJECT: u8 = 1 << 6;
const ANY_TYPE: u8 = 0x7f;

/// Largest integer every f64 comparison is exact for.
const EXACT_F64: f64 = 9_007_199_254_740_992.0;

/// Keywords a plan understands (annotations and definition containers included). Not the
/// compatibility checker's list of non-assertions: that one also holds `contentEncoding`,
/// `contentMediaType` (draft-07 validators may check them) and `$vocabulary` (which can switch
/// vocabularies off), all of which a plan leaves to the full validator.
const SUPPORTED: [&str; 28] = [
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "definitions",
    "$defs",
    "type",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "properties",
    "required",
    "additionalProperties",
    "maxProperties",
    "items",
    "minItems",
    "maxItems",
];

/// The streaming check of one schema (see the module docs).
#[derive(Debug)]
pub(crate) struct FastPlan {
    root: Node,
}

#[derive(Debug)]
enum Node {
    Any,
    Never,
    Checks(Box<Checks>),
}

#[derive(Debug, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Default)]
struct Checks {
    types: u8,
    allowed: Option<Vec<Scalar>>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<f64>,
    exclusive_minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_maximum: Option<f64>,
    properties: Vec<Property>,
    additional: Option<Node>,
    required_mask: u64,
    max_properties: Option<u64>,
    items: Option<Node>,
    min_items: Option<u64>,
    max_items: Option<u64>,
}

#[derive(Debug)]
struct Property {
    name: String,
    /// `None`: a required name that is not declared (its value is checked by `additionalProperties`).
    node: Option<Node>,
    required_bit: u64,
}

impl FastPlan {
    /// A plan for `schema`, or `None` when it uses anything the fast path does not handle.
    pub(crate) fn compile(schema: &Value) -> Option<FastPlan> {
        Some(FastPlan { root: node(schema)? })
    }

    /// `true` only when `payload` is certainly valid; `false` means invalid *or* not sure.
    pub(crate) fn certainly_valid(&self, payload: &[u8]) -> bool {
        if scan::certainly_valid(&self.root, payload) {
            return true;
        }
        let mut de = serde_json::Deserializer::from_slice(payload);
        NodeSeed(&self.root).deserialize(&mut de).is_ok() && de.end().is_ok()
    }
}

fn node(schema: &Value) -> Option<Node> {
    let map = match schema {
        Value::Bool(true) => return Some(Node::Any),
        Value::Bool(false) => return Some(Node::Never),
        Value::Object(map) => map,
        _ => return None,
    };
    if map.keys().any(|k| !SUPPORTED.contains(&k.as_str())) {
        return None;
    }
    let mut c = Checks { types: types(map.get("type"))?, ..Checks::default() };
    if let Some(values) = map.get("enum") {
        c.allowed = Some(values.as_array()?.iter().map(scalar).collect::<Option<Vec<_>>>()?);
    }
    if let Some(value) = map.get("const") {
        let only = vec![scalar(value)?];
        c.allowed = Some(match c.allowed.take() {
            Some(listed) => listed.into_iter().filter(|v| only.contains(v)).collect(),
            None => only,
        });
    }
    let count = |key: &str| map.get(key).map(|v| v.as_u64()).map_or(Some(None), |v| v.map(Some));
    let number = |key: &str| map.get(key).map(|v| v.as_f64()).map_or(Some(None), |v| v.map(Some));
    (c.min_length, c.max_length, c.min_items, c.max_items, c.max_properties) =
        (count("minLength")?, count("maxLength")?, count("minItems")?, count("maxItems")?, count("maxProperties")?);
    (c.minimum, c.maximum, c.exclusive_minimum, c.exclusive_maximum) =
        (number("minimum")?, number("maximum")?, number("exclusiveMinimum")?, number("exclusiveMaximum")?);
    if let Some(items) = map.get("items") {
        c.items = Some(node(items)?);
    }
    if let Some(additional) = map.get("additionalProperties") {
        c.additional = Some(node(additional)?);
    }
    let declared: &Map<String, Value> = match map.get("properties") {
        Some(p) => p.as_object()?,
        None => &EMPTY,
    };
    for (name, schema) in declared {
        c.properties.push(Property { name: name.clone(), node: Some(node(schema)?), required_bit: 0 });
    }
    let required = match map.get("required") {
        Some(r) => r.as_array()?.iter().map(|n| n.as_str()).collect::<Option<Vec<_>>>()?,
        None => Vec::new(),
    };
    if required.len() > 64 {
        return None;
    }
    for (i, name) in required.into_iter().enumerate() {
        let bit = 1u64 << i;
        c.required_mask |= bit;
        match c.properties.iter_mut().find(|p| p.name == name) {
            Some(p) => p.required_bit |= bit,
            None => c.properties.push(Property { name: name.to_string(), node: None, required_bit: bit }),
        }
    }
    c.properties.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Node::Checks(Box::new(c)))
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

fn types(declared: Option<&Value>) -> Option<u8> {
    let one = |t: &str| match t {
        "null" => Some(NULL),
        "boolean" => Some(BOOLEAN),
        "integer" => Some(INTEGER),
        "number" => Some(NUMBER | INTEGER),
        "string" => Some(STRING),
        "array" => Some(ARRAY),
        "object" => Some(OBJECT),
        _ => None,
    };
    match declared {
        None => Some(ANY_TYPE),
        Some(Value::String(t)) => one(t),
        Some(Value::Array(ts)) => ts.iter().try_fold(0, |acc, t| Some(acc | one(t.as_str()?)?)),
        Some(_) => None,
    }
}

fn scalar(value: &Value) -> Option<Scalar> {
    Some(match value {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Bool(*b),
        Value::String(s) => Scalar::Str(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Scalar::Int(i),
            None if n.is_u64() => return None,
            None => Scalar::Float(n.as_f64()?),
        },
        _ => return None,
    })
}

struct NodeSeed<'p>(&'p Node);

/// Stops the streaming check; the text is never shown (the full validator reports).
fn stop<E: de::Error>() -> E {
    E::custom("not certainly valid")
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.0 {
            Node::Any => deserializer.deserialize_ignored_any(IgnoredAny).map(|_| ()),
            Node::Never => Err(stop()),
            Node::Checks(checks) => deserializer.deserialize_any(ChecksVisitor(checks)),
        }
    }
}

struct ChecksVisitor<'p>(&'p Checks);

impl ChecksVisitor<'_> {
    fn kind<E: de::Error>(&self, kind: u8) -> Result<(), E> {
        if self.0.types & kind == 0 {
            return Err(stop());
        }
        Ok(())
    }

    fn allowed<E: de::Error>(&self, matches: impl Fn(&Scalar) -> bool) -> Result<(), E> {
        match &self.0.allowed {
            Some(values) if !values.iter().any(matches) => Err(stop()),
            _ => Ok(()),
        }
    }

    fn number<E: de::Error>(&self, n: f64) -> Result<(), E> {
        let c = self.0;
        let bounded = c.minimum.is_some() || c.maximum.is_some() || c.exclusive_minimum.is_some() || c.exclusive_maximum.is_some();
        if bounded && n.abs() >= EXACT_F64 {
            return Err(stop());
        }
        let fails = c.minimum.is_some_and(|m| n < m)
            || c.maximum.is_some_and(|m| n > m)
            || c.exclusive_minimum.is_some_and(|m| n <= m)
            || c.exclusive_maximum.is_some_and(|m| n >= m);
        if fails {
            return Err(stop());
        }
        Ok(())
    }

    fn integer<E: de::Error>(&self, n: i128) -> Result<(), E> {
        self.kind(INTEGER)?;
        self.allowed(|s| matches!(s, Scalar::Int(i) if i128::from(*i) == n))?;
        // Converting to f64 rounds beyond 2^53; `number` then refuses to compare (not sure).
        let rounded = n as f64;
        self.number(if n.unsigned_abs() > EXACT_F64 as u128 { f64::INFINITY } else { rounded })
    }
}

impl<'de> Visitor<'de> for ChecksVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.kind(NULL)?;
        self.allowed(|s| *s == Scalar::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.kind(BOOLEAN)?;
        self.allowed(|s| *s == Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.integer(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.integer(i128::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.kind(if v.fract() == 0.0 { INTEGER | NUMBER } else { NUMBER })?;
        self.allowed(|s| matches!(s, Scalar::Float(f) if f.to_bits() == v.to_bits()))?;
        self.number(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.kind(STRING)?;
        let c = self.0;
        if c.min_length.is_some() || c.max_length.is_some() {
            let chars = v.chars().count() as u64;
            if c.min_length.is_some_and(|m| chars < m) || c.max_length.is_some_and(|m| chars > m) {
                return Err(stop());
            }
        }
        self.allowed(|s| matches!(s, Scalar::Str(x) if x == v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.kind(ARRAY)?;
        self.allowed(|_| false)?;
        let c = self.0;
        let items = c.items.as_ref().unwrap_or(&Node::Any);
        let mut count = 0u64;
        while seq.next_element_seed(NodeSeed(items))?.is_some() {
            count += 1;
        }
        if c.min_items.is_some_and(|m| count < m) || c.max_items.is_some_and(|m| count > m) {
            return Err(stop());
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.kind(OBJECT)?;
        self.allowed(|_| false)?;
        let c = self.0;
        let additional = c.additional.as_ref().unwrap_or(&Node::Any);
        let (mut seen, mut count, mut next) = (0u64, 0u64, 0usize);
        while let Some(found) = map.next_key_seed(KeySeed { properties: &c.properties, hint: next })? {
            count += 1;
            next = found.map_or(next, |i| i + 1);
            let value_node = match found {
                Some(i) => {
                    let p = &c.properties[i];
                    seen |= p.required_bit;
                    p.node.as_ref().unwrap_or(additional)
                }
                None => additional,
            };
            map.next_value_seed(NodeSeed(value_node))?;
        }
        if seen & c.required_mask != c.required_mask || c.max_properties.is_some_and(|m| count > m) {
            return Err(stop());
        }
        Ok(())
    }
}

/// Finds a key among the plan's properties (sorted by name) without allocating. Payloads often
/// list keys in the same order, so the property after the previous match is tried first.
struct KeySeed<'p> {
    properties: &'p [Property],
    hint: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        if self.properties.get(self.hint).is_some_and(|p| p.name == v) {
            return Ok(Some(self.hint));
        }
        Ok(self.properties.binary_search_by(|p| p.name.as_str().cmp(v)).ok())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn plan(schema: Value) -> FastPlan {
        FastPlan::compile(&schema).expect("supported")
    }

    #[test]
    fn accepts_valid_and_is_unsure_about_the_rest() {
        let p = plan(json!({
            "type": "object",
            "properties": {"id": {"type": "integer", "minimum": 1}, "sku": {"type": "string", "maxLength": 3}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
            "required": ["id", "sku"],
            "additionalProperties": false
        }));
        assert!(p.certainly_valid(br#"{"id": 1, "sku": "abc", "tags": ["a", "b"]}"#));
        assert!(p.certainly_valid(br#"{"id": 2.0, "sku": "\u00e9\u00e9\u00e9"}"#), "2.0 is an integer; lengths count characters");
        for bad in [
            &br#"{"id": 0, "sku": "a"}"#[..],
            br#"{"id": 1}"#,
            br#"{"id": 1, "sku": "abcd"}"#,
            br#"{"id": 1, "sku": "a", "x": 1}"#,
            br#"{"id": 1, "sku": "a", "tags": ["c"]}"#,
            br#"{"id": 1.5, "sku": "a"}"#,
            br#"{"id": 1, "sku": "a"} trailing"#,
            br#"not json"#,
            br#"[]"#,
        ] {
            assert!(!p.certainly_valid(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn duplicate_keys_big_integers_and_numeric_enums_are_left_to_the_full_validator() {
        let p = plan(json!({"type": "object", "properties": {"a": {"type": "integer"}}, "maxProperties": 1}));
        // serde_json keeps the last duplicate; the plan sees both and is never less strict.
        assert!(!p.certainly_valid(br#"{"a": "x", "a": 1}"#));
        assert!(!p.certainly_valid(br#"{"a": 1, "a": "x"}"#));
        let bounded = plan(json!({"type": "integer", "maximum": 9007199254740993u64}));
        assert!(!bounded.certainly_valid(b"9007199254740993"), "beyond 2^53 f64 comparisons are not exact");
        assert!(bounded.certainly_valid(b"12"));
        assert!(plan(json!({"type": "integer"})).certainly_valid(b"1700000000000000000"), "unbounded big integers are fine");
        let listed = plan(json!({"enum": [1, 2.5, "x", null, true]}));
        for ok in [&b"1"[..], b"2.5", b"\"x\"", b"null", b"true"] {
            assert!(listed.certainly_valid(ok), "{}", String::from_utf8_lossy(ok));
        }
        assert!(!listed.certainly_valid(b"1.0"), "1.0 equals 1 for JSON Schema, but the plan leaves that to the full validator");
        assert!(!listed.certainly_valid(b"false"));
    }

    #[test]
    fn unsupported_keywords_have_no_plan() {
        for schema in [
            json!({"pattern": "^a"}),
            json!({"$ref": "#/$defs/a"}),
            json!({"enum": [[1]]}),
            json!({"minProperties": 1}),
            json!({"format": "email"}),
        ] {
            assert!(FastPlan::compile(&schema).is_none(), "{schema}");
        }
        assert!(FastPlan::compile(&json!({"$schema": "http://json-schema.org/draft-07/schema#", "title": "t", "maxItems": 2})).is_some());
    }
}
