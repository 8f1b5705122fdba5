//! Soundness, by property, of the two places where onex-schema answers "yes" without the full
//! validator's say-so:
//!
//! - the compatibility checker: whenever it says the new schema is BACKWARD compatible, every
//!   instance the old schema accepts is accepted by the new one (and likewise FORWARD);
//! - the streaming fast path: whenever it says a payload is certainly valid, the full validator
//!   agrees (and, on these instances, it is never unsure about a valid one).
//!
//! Schemas and instances come from a small grammar so that random instances often satisfy
//! random schemas. Run: `cargo test -p onex-schema --test soundness` (`PROPTEST_CASES=5000` for more).

use onex_schema::compat::{incompatibilities, Direction};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const NAMES: [&str; 3] = ["a", "b", "c"];

/// `PROPTEST_CASES`, or 800 per property (about 10 s in a debug build on two cores).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(800)
}

fn leaf_schema() -> impl Strategy<Value = Value> {
    let types = prop_oneof![
        Just(json!("string")),
        Just(json!("integer")),
        Just(json!("number")),
        Just(json!("boolean")),
        Just(json!("null")),
        Just(json!(["string", "null"])),
        Just(json!(["integer", "string"])),
    ];
    (
        types,
        prop::option::of(0u64..3),
        prop::option::of(0u64..2),
        prop::option::of(-2i64..3),
        prop::option::of(-2i64..3),
        prop::option::of(prop::sample::subsequence(vec![json!("x"), json!(1), json!(null), json!("xy"), json!(2.5)], 1..4)),
        any::<bool>(),
    )
        .prop_map(|(t, max_len, min_len, min, max, enumerated, exclusive)| {
            let mut s = Map::new();
            s.insert("type".into(), t);
            if let Some(n) = max_len {
                s.insert("maxLength".into(), json!(n));
            }
            if let Some(n) = min_len {
                s.insert("minLength".into(), json!(n));
            }
            if let Some(n) = min {
                s.insert("minimum".into(), json!(n));
            }
            if let Some(n) = max {
                s.insert(if exclusive { "exclusiveMaximum" } else { "maximum" }.into(), json!(n));
            }
            if let Some(values) = enumerated {
                s.insert("enum".into(), Value::Array(values));
            }
            Value::Object(s)
        })
}

/// A schema, sometimes reached through a root-level `$ref` into `$defs`.
fn schema() -> impl Strategy<Value = Value> {
    prop_oneof![3 => nested_schema(), 1 => nested_schema().prop_map(|node| json!({"$defs": {"node": node}, "$ref": "#/$defs/node"}))]
}

fn nested_schema() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![8 => leaf_schema(), 1 => Just(json!(true)), 1 => Just(json!({}))];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (
                prop::collection::btree_map(prop::sample::select(NAMES.to_vec()), inner.clone(), 0..3),
                prop::sample::subsequence(NAMES.to_vec(), 0..3),
                prop_oneof![Just(None), Just(Some(json!(false))), Just(Some(json!(true))), inner.clone().prop_map(Some)],
            )
                .prop_map(|(props, required, additional)| {
                    let mut s = json!({"type": "object", "properties": props, "required": required});
                    if let Some(a) = additional {
                        s["additionalProperties"] = a;
                    }
                    s
                }),
            (inner.clone(), prop::option::of(0u64..3), prop::option::of(0u64..2)).prop_map(|(items, max, min)| {
                let mut s = json!({"type": "array", "items": items});
                if let Some(n) = max {
                    s["maxItems"] = json!(n);
                }
                if let Some(n) = min {
                    s["minItems"] = json!(n);
                }
                s
            }),
            (prop::collection::vec(inner.clone(), 1..3), inner)
                .prop_map(|(prefix, items)| json!({"type": "array", "prefixItems": prefix, "items": items})),
        ]
    })
}

/// Values that fit in keyword positions (`maxLength: 1`, `type: "string"`, `required: []`, ...).
fn leaf_values() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!(0),
        json!(1),
        json!(2),
        json!(-1),
        json!("string"),
        json!("integer"),
        json!("number"),
        json!(true),
        json!(false),
        json!([]),
        json!(["a"]),
        json!("x"),
    ])
}

fn instance() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(|n| json!(n)),
        prop::sample::select(vec![-0.5, 1.5, 2.5]).prop_map(|f| json!(f)),
        prop::sample::select(vec!["", "x", "xy", "xyz"]).prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c", "d"]), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(schema).expect("generated schemas are valid")
}

/// Every JSON pointer in `value`.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

/// `old` with one edit: the node at a chosen pointer removed or replaced.
fn mutate(old: &Value, pick: usize, remove: bool, replacement: Value) -> Value {
    let mut all = Vec::new();
    pointers(old, String::new(), &mut all);
    let target = &all[pick % all.len()];
    let mut new = old.clone();
    if target.is_empty() {
        return replacement;
    }
    let (parent, last) = target.rsplit_once('/').unwrap();
    let key = last.replace("~1", "/").replace("~0", "~");
    match new.pointer_mut(parent).unwrap() {
        Value::Object(map) if remove => {
            map.remove(&key);
        }
        Value::Array(items) if remove && items.len() > 1 => {
            items.remove(key.parse::<usize>().unwrap());
        }
        _ => *new.pointer_mut(target).unwrap() = replacement,
    }
    new
}

fn check_sound(old: &Value, new: &Value, instances: &[Value]) -> Result<(), TestCaseError> {
    let (old_v, new_v) = (validator(old), validator(new));
    if incompatibilities(new, old, Direction::Backward).is_empty() {
        for i in instances {
            prop_assert!(
                !old_v.is_valid(i) || new_v.is_valid(i),
                "BACKWARD said compatible, but {i} is valid under old {old} and not under new {new}"
            );
        }
    }
    if incompatibilities(new, old, Direction::Forward).is_empty() {
        for i in instances {
            prop_assert!(
                !new_v.is_valid(i) || old_v.is_valid(i),
                "FORWARD said compatible, but {i} is valid under new {new} and not under old {old}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn compatible_verdicts_are_sound(old in schema(), new in schema(), instances in prop::collection::vec(instance(), 48)) {
        check_sound(&old, &new, &instances)?;
    }

    /// One small edit of a schema: far more pairs are compatible one way than for unrelated schemas.
    #[test]
    fn compatible_verdicts_on_edited_schemas_are_sound(
        old in schema(),
        pick in any::<usize>(),
        remove in any::<bool>(),
        replacement in prop_oneof![schema(), leaf_values()],
        instances in prop::collection::vec(instance(), 48),
    ) {
        let new = mutate(&old, pick, remove, replacement);
        if jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&new).is_err() {
            return Ok(()); // the edit made an invalid schema: the registry would refuse it first
        }
        check_sound(&old, &new, &instances)?;
    }

    /// The fast path never accepts what the full validator refuses, and is sure about valid payloads.
    #[test]
    fn fast_path_agrees_with_the_full_validator(s in schema(), instances in prop::collection::vec(instance(), 48)) {
        let compiled = onex_schema::CompiledSchema::compile(&s.to_string(), onex_core::SchemaType::Json).expect("generated schemas are valid");
        for i in &instances {
            let bytes = serde_json::to_vec(i).unwrap();
            let fast = compiled.certainly_valid(&bytes);
            let full = compiled.is_valid(i);
            prop_assert!(!fast || full, "fast path accepted {i}, which {s} refuses");
            prop_assert!(!compiled.has_fast_path() || fast == full, "fast path unsure about valid {i} under {s}");
        }
    }

    /// A schema is always compatible with itself (no false alarms on identical schemas).
    #[test]
    fn identical_schemas_are_compatible(s in schema()) {
        prop_assert!(incompatibilities(&s, &s, Direction::Backward).is_empty(), "{s}: {:?}", incompatibilities(&s, &s, Direction::Backward));
        prop_assert!(incompatibilities(&s, &s, Direction::Forward).is_empty());
    }
}
