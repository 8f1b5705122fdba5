//! Small facts about one schema node: its type set, bounds, finite value sets.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// Keywords that never reject an instance (annotations, identifiers, definitions containers).
const NON_ASSERTIONS: [&str; 17] = [
    "$schema",
    "$id",
    "$anchor",
    "$comment",
    "$defs",
    "definitions",
    "$vocabulary",
    "$dynamicAnchor",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentEncoding",
    "contentMediaType",
];

/// Whether `key` can reject an instance.
pub(crate) fn is_assertion(key: &str) -> bool {
    !NON_ASSERTIONS.contains(&key)
}

/// Whether a schema accepts every instance (`true`, or an object with no assertion keyword).
pub(crate) fn accepts_everything(schema: &Value) -> bool {
    match schema {
        Value::Bool(b) => *b,
        Value::Object(map) => !map.keys().any(|k| is_assertion(k)),
        _ => false,
    }
}

/// Whether a schema accepts nothing (`false`).
pub(crate) fn accepts_nothing(schema: &Value) -> bool {
    matches!(schema, Value::Bool(false))
}

/// The `type` set of a schema (`None` = any type). Unknown type names are kept so they are
/// reported rather than ignored.
pub(crate) fn type_set(map: &Map<String, Value>) -> Option<BTreeSet<String>> {
    match map.get("type")? {
        Value::String(t) => Some(BTreeSet::from([t.clone()])),
        Value::Array(ts) => Some(ts.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect()),
        _ => None,
    }
}

/// Whether a reader with type set `reader` accepts writer type `t` (integer ⊂ number).
pub(crate) fn type_accepted(reader: &BTreeSet<String>, t: &str) -> bool {
    reader.contains(t) || (t == "integer" && reader.contains("number"))
}

/// `number`, `[integer, string]`.
pub(crate) fn show_types(types: Option<&BTreeSet<String>>) -> String {
    match types {
        None => "any type".to_string(),
        Some(set) if set.len() == 1 => set.iter().next().cloned().unwrap_or_default(),
        Some(set) => format!("[{}]", set.iter().cloned().collect::<Vec<_>>().join(", ")),
    }
}

/// The finite set of values a schema can produce, when it is finite by `enum`, `const` or a
/// `type` of only `null` / `boolean`.
pub(crate) fn finite_values(map: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(c) = map.get("const") {
        return Some(vec![c.clone()]);
    }
    if let Some(Value::Array(values)) = map.get("enum") {
        return Some(values.clone());
    }
    let types = type_set(map)?;
    if types.iter().all(|t| t == "null" || t == "boolean") {
        let mut values = Vec::new();
        if types.contains("null") {
            values.push(Value::Null);
        }
        if types.contains("boolean") {
            values.extend([Value::Bool(false), Value::Bool(true)]);
        }
        return Some(values);
    }
    None
}

/// The values a reader's `enum`/`const` allows, when it has one.
pub(crate) fn allowed_values(map: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(c) = map.get("const") {
        return Some(vec![c.clone()]);
    }
    match map.get("enum") {
        Some(Value::Array(values)) => Some(values.clone()),
        _ => None,
    }
}

/// JSON equality where `1` and `1.0` are the same number.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w))),
        _ => a == b,
    }
}

/// Whether a value contains a `$ref` anywhere (its meaning then depends on the rest of the document).
pub(crate) fn contains_ref(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.contains_key("$ref") || map.contains_key("$dynamicRef") || map.values().any(contains_ref),
        Value::Array(items) => items.iter().any(contains_ref),
        _ => false,
    }
}

/// A numeric bound: the limit and whether it is exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bound {
    pub(crate) limit: f64,
    pub(crate) exclusive: bool,
}

impl Bound {
    fn tighter_upper(self, other: Bound) -> Bound {
        if other.limit < self.limit || (other.limit == self.limit && other.exclusive) {
            other
        } else {
            self
        }
    }

    fn tighter_lower(self, other: Bound) -> Bound {
        if other.limit > self.limit || (other.limit == self.limit && other.exclusive) {
            other
        } else {
            self
        }
    }
}

/// The effective upper bound of `maximum` / `exclusiveMaximum`.
pub(crate) fn upper_bound(map: &Map<String, Value>) -> Option<Bound> {
    let inclusive = map.get("maximum").and_then(Value::as_f64).map(|limit| Bound { limit, exclusive: false });
    let exclusive = map.get("exclusiveMaximum").and_then(Value::as_f64).map(|limit| Bound { limit, exclusive: true });
    match (inclusive, exclusive) {
        (Some(a), Some(b)) => Some(a.tighter_upper(b)),
        (a, b) => a.or(b),
    }
}

/// The effective lower bound of `minimum` / `exclusiveMinimum`.
pub(crate) fn lower_bound(map: &Map<String, Value>) -> Option<Bound> {
    let inclusive = map.get("minimum").and_then(Value::as_f64).map(|limit| Bound { limit, exclusive: false });
    let exclusive = map.get("exclusiveMinimum").and_then(Value::as_f64).map(|limit| Bound { limit, exclusive: true });
    match (inclusive, exclusive) {
        (Some(a), Some(b)) => Some(a.tighter_lower(b)),
        (a, b) => a.or(b),
    }
}

/// Whether reader upper bound `r` admits everything under writer upper bound `w`.
pub(crate) fn upper_admits(r: Option<Bound>, w: Option<Bound>) -> bool {
    match (r, w) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(r), Some(w)) => r.limit > w.limit || (r.limit == w.limit && (!r.exclusive || w.exclusive)),
    }
}

/// Whether reader lower bound `r` admits everything above writer lower bound `w`.
pub(crate) fn lower_admits(r: Option<Bound>, w: Option<Bound>) -> bool {
    match (r, w) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(r), Some(w)) => r.limit < w.limit || (r.limit == w.limit && (!r.exclusive || w.exclusive)),
    }
}

/// `<= 10`, `< 10`, `none`.
pub(crate) fn show_bound(b: Option<Bound>, upper: bool) -> String {
    match b {
        None => "none".to_string(),
        Some(Bound { limit, exclusive }) => {
            let op = match (upper, exclusive) {
                (true, false) => "<=",
                (true, true) => "<",
                (false, false) => ">=",
                (false, true) => ">",
            };
            format!("{op} {}", show_number(limit))
        }
    }
}

/// A number without a needless `.0`.
pub(crate) fn show_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// A count keyword (`maxLength`, `minItems`, …) as a number.
pub(crate) fn count(map: &Map<String, Value>, key: &str) -> Option<u64> {
    map.get(key).and_then(|v| v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)))
}

/// The `required` names of a schema.
pub(crate) fn required(map: &Map<String, Value>) -> BTreeSet<String> {
    match map.get("required") {
        Some(Value::Array(names)) => names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect(),
        _ => BTreeSet::new(),
    }
}

/// Escapes a name for use in a JSON pointer (`~` → `~0`, `/` → `~1`).
pub(crate) fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn bounds_combine_inclusive_and_exclusive() {
        let m = obj(json!({"maximum": 10, "exclusiveMaximum": 10}));
        assert_eq!(upper_bound(&m), Some(Bound { limit: 10.0, exclusive: true }));
        let m = obj(json!({"minimum": 3, "exclusiveMinimum": 1}));
        assert_eq!(lower_bound(&m), Some(Bound { limit: 3.0, exclusive: false }));
        let le10 = Some(Bound { limit: 10.0, exclusive: false });
        let lt10 = Some(Bound { limit: 10.0, exclusive: true });
        assert!(upper_admits(le10, lt10));
        assert!(!upper_admits(lt10, le10));
        assert!(upper_admits(None, le10));
        assert!(!upper_admits(le10, None));
        assert_eq!(show_bound(lt10, true), "< 10");
    }

    #[test]
    fn finite_sets_and_equality() {
        assert_eq!(finite_values(&obj(json!({"type": ["null", "boolean"]}))).unwrap().len(), 3);
        assert_eq!(finite_values(&obj(json!({"const": "a"}))), Some(vec![json!("a")]));
        assert!(finite_values(&obj(json!({"type": "string"}))).is_none());
        assert!(json_equal(&json!({"a": [1]}), &json!({"a": [1.0]})));
        assert!(!json_equal(&json!("1"), &json!(1)));
        assert!(accepts_everything(&json!({"description": "anything"})));
        assert!(!accepts_everything(&json!({"type": "string"})));
    }
}
