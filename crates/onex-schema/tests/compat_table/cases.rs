//! The compatibility table: schema pairs with the expected verdict in each direction.
//! `docs/schema-compatibility.md` is generated from this table (see `main.rs`).

use serde_json::{json, Value};

/// One schema change and its expected verdicts.
pub(crate) struct Case {
    /// What changed, as a user would say it.
    pub(crate) change: &'static str,
    pub(crate) old: Value,
    pub(crate) new: Value,
    /// The new schema reads old data.
    pub(crate) backward: bool,
    /// The old schema reads new data.
    pub(crate) forward: bool,
    /// A piece of the reasons given when incompatible in either direction ("" when compatible both ways).
    pub(crate) reason: &'static str,
}

fn obj(props: Value, required: &[&str], closed: bool) -> Value {
    let mut schema = json!({"type": "object", "properties": props, "required": required});
    if closed {
        schema["additionalProperties"] = json!(false);
    }
    schema
}

fn case(change: &'static str, old: Value, new: Value, backward: bool, forward: bool, reason: &'static str) -> Case {
    Case { change, old, new, backward, forward, reason }
}

pub(crate) fn cases() -> Vec<Case> {
    let id = json!({"type": "integer"});
    let name = json!({"type": "string"});
    vec![
        case("identical schema", obj(json!({"id": id}), &["id"], false), obj(json!({"id": id}), &["id"], false), true, true, ""),
        case(
            "add an optional property (open content model)",
            obj(json!({"id": id}), &["id"], false),
            obj(json!({"id": id, "name": name}), &["id"], false),
            false,
            true,
            "#/properties/name: property added with constraints to an open content model",
        ),
        case(
            "add an optional unconstrained property (open content model)",
            obj(json!({"id": id}), &["id"], false),
            obj(json!({"id": id, "note": {"description": "free text"}}), &["id"], false),
            true,
            true,
            "",
        ),
        case(
            "add an optional property (closed content model)",
            obj(json!({"id": id}), &["id"], true),
            obj(json!({"id": id, "name": name}), &["id"], true),
            true,
            false,
            "#/properties/name: property added but the old schema's content model is closed",
        ),
        case(
            "add a required property (open content model)",
            obj(json!({"id": id}), &["id"], false),
            obj(json!({"id": id, "name": name}), &["id", "name"], false),
            false,
            true,
            "#: required property 'name' added",
        ),
        case(
            "add a required property (closed content model)",
            obj(json!({"id": id}), &["id"], true),
            obj(json!({"id": id, "name": name}), &["id", "name"], true),
            false,
            false,
            "#: required property 'name' added",
        ),
        case(
            "remove an optional property (closed content model)",
            obj(json!({"id": id, "name": name}), &["id"], true),
            obj(json!({"id": id}), &["id"], true),
            false,
            true,
            "#/properties/name: property removed from a closed content model",
        ),
        case(
            "remove an optional property (open content model)",
            obj(json!({"id": id, "name": name}), &["id"], false),
            obj(json!({"id": id}), &["id"], false),
            true,
            false,
            "#/properties/name: property removed from an open content model",
        ),
        case(
            "remove a required property (open content model)",
            obj(json!({"id": id, "name": name}), &["id", "name"], false),
            obj(json!({"id": id}), &["id"], false),
            true,
            false,
            "property 'name' is no longer required",
        ),
        case(
            "make an optional property required",
            obj(json!({"id": id, "name": name}), &["id"], false),
            obj(json!({"id": id, "name": name}), &["id", "name"], false),
            false,
            true,
            "#: required property 'name' added",
        ),
        case(
            "make a required property optional",
            obj(json!({"id": id, "name": name}), &["id", "name"], false),
            obj(json!({"id": id, "name": name}), &["id"], false),
            true,
            false,
            "#: property 'name' is no longer required",
        ),
        case(
            "widen integer to number",
            obj(json!({"qty": {"type": "integer"}}), &[], false),
            obj(json!({"qty": {"type": "number"}}), &[], false),
            true,
            false,
            "#/properties/qty: type widened from integer to number",
        ),
        case(
            "narrow number to integer",
            obj(json!({"qty": {"type": "number"}}), &[], false),
            obj(json!({"qty": {"type": "integer"}}), &[], false),
            false,
            true,
            "#/properties/qty: type narrowed from number to integer",
        ),
        case(
            "change a property's type (string to integer)",
            obj(json!({"code": {"type": "string"}}), &[], false),
            obj(json!({"code": {"type": "integer"}}), &[], false),
            false,
            false,
            "#/properties/code: type",
        ),
        case("make a type nullable (string to [string, null])", json!({"type": "string"}), json!({"type": ["string", "null"]}), true, false, "#: type widened from string to [null, string]"),
        case(
            "add an enum value",
            json!({"type": "string", "enum": ["new", "paid"]}),
            json!({"type": "string", "enum": ["new", "paid", "shipped"]}),
            true,
            false,
            "#: enum value \"shipped\" added",
        ),
        case(
            "remove an enum value",
            json!({"type": "string", "enum": ["new", "paid", "shipped"]}),
            json!({"type": "string", "enum": ["new", "paid"]}),
            false,
            true,
            "#: enum value \"shipped\" removed",
        ),
        case("const to an enum that contains it", json!({"const": "v1"}), json!({"enum": ["v1", "v2"]}), true, false, "#: const value \"v2\" added"),
        case("add an enum to a free string", json!({"type": "string"}), json!({"type": "string", "enum": ["a", "b"]}), false, true, "#: enum tightened from any value to [\"a\", \"b\"]"),
        case("tighten maxLength", json!({"type": "string", "maxLength": 10}), json!({"type": "string", "maxLength": 5}), false, true, "#: maxLength tightened from 10 to 5"),
        case("loosen maxLength", json!({"type": "string", "maxLength": 5}), json!({"type": "string", "maxLength": 10}), true, false, "#: maxLength loosened from 5 to 10"),
        case("add minLength", json!({"type": "string"}), json!({"type": "string", "minLength": 1}), false, true, "#: minLength tightened from 0 to 1"),
        case("tighten maximum", json!({"type": "number", "maximum": 100}), json!({"type": "number", "maximum": 50}), false, true, "#: maximum tightened from <= 100 to <= 50"),
        case(
            "maximum to exclusiveMaximum (same limit)",
            json!({"type": "number", "maximum": 100}),
            json!({"type": "number", "exclusiveMaximum": 100}),
            false,
            true,
            "#: maximum tightened from <= 100 to < 100",
        ),
        case("remove minimum", json!({"type": "integer", "minimum": 0}), json!({"type": "integer"}), true, false, "#: minimum loosened from >= 0 to none"),
        case("tighten multipleOf (2 to 4)", json!({"type": "integer", "multipleOf": 2}), json!({"type": "integer", "multipleOf": 4}), false, true, "#: multipleOf tightened from 2 to 4"),
        case(
            "change a nested property's type",
            obj(json!({"address": obj(json!({"zip": {"type": "string"}}), &["zip"], false)}), &[], false),
            obj(json!({"address": obj(json!({"zip": {"type": "integer"}}), &["zip"], false)}), &[], false),
            false,
            false,
            "#/properties/address/properties/zip: type",
        ),
        case(
            "add an optional property to a closed nested object",
            obj(json!({"address": obj(json!({"zip": name}), &[], true)}), &[], false),
            obj(json!({"address": obj(json!({"zip": name, "city": name}), &[], true)}), &[], false),
            true,
            false,
            "#/properties/address/properties/city: property added but the old schema's content model is closed",
        ),
        case(
            "widen a $ref'd definition (integer to number)",
            json!({"$defs": {"amount": {"type": "integer"}}, "type": "object", "properties": {"total": {"$ref": "#/$defs/amount"}}}),
            json!({"$defs": {"amount": {"type": "number"}}, "type": "object", "properties": {"total": {"$ref": "#/$defs/amount"}}}),
            true,
            false,
            "#/properties/total: type widened from integer to number",
        ),
        case(
            "move an inline schema into a definition ($ref refactor)",
            obj(json!({"total": {"type": "number", "minimum": 0}}), &["total"], false),
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"amount": {"type": "number", "minimum": 0}}, "type": "object", "properties": {"total": {"$ref": "#/definitions/amount"}}, "required": ["total"]}),
            true,
            true,
            "",
        ),
        case(
            "recursive $ref: widen a field of the recursive type",
            json!({"$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}, "$ref": "#/$defs/node"}),
            json!({"$defs": {"node": {"type": "object", "properties": {"value": {"type": "number"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}, "$ref": "#/$defs/node"}),
            true,
            false,
            "#/properties/value: type widened from integer to number",
        ),
        case(
            "closed to open (drop additionalProperties: false)",
            obj(json!({"id": id}), &["id"], true),
            obj(json!({"id": id}), &["id"], false),
            true,
            false,
            "#: content model opened",
        ),
        case(
            "open to closed (add additionalProperties: false)",
            obj(json!({"id": id}), &["id"], false),
            obj(json!({"id": id}), &["id"], true),
            false,
            true,
            "#: content model closed",
        ),
        case(
            "widen schema-valued additionalProperties",
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            json!({"type": "object", "additionalProperties": {"type": ["string", "number"]}}),
            true,
            false,
            "#/additionalProperties: type widened from string to [number, string]",
        ),
        case(
            "change the items type (string to integer)",
            json!({"type": "array", "items": {"type": "string"}}),
            json!({"type": "array", "items": {"type": "integer"}}),
            false,
            false,
            "#/items: type",
        ),
        case(
            "widen the items type (integer to number)",
            json!({"type": "array", "items": {"type": "integer"}}),
            json!({"type": "array", "items": {"type": "number"}}),
            true,
            false,
            "#/items: type widened from integer to number",
        ),
        case("add maxItems", json!({"type": "array"}), json!({"type": "array", "maxItems": 10}), false, true, "#: maxItems tightened from none to 10"),
        case(
            "add a typed tuple position (prefixItems)",
            json!({"type": "array", "prefixItems": [{"type": "string"}]}),
            json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}),
            false,
            true,
            "#/prefixItems/1: type narrowed from any type to integer",
        ),
        case(
            "change a pattern",
            json!({"type": "string", "pattern": "^[a-z]+$"}),
            json!({"type": "string", "pattern": "^[a-z0-9]+$"}),
            false,
            false,
            "cannot decide: `pattern` changed",
        ),
        case("remove a pattern", json!({"type": "string", "pattern": "^[a-z]+$"}), json!({"type": "string"}), true, false, "cannot decide: `pattern` present only in the old schema"),
        case(
            "add a oneOf",
            json!({"type": "object"}),
            json!({"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}),
            false,
            true,
            "cannot decide: `oneOf` present only in the new schema",
        ),
        case(
            "identical oneOf on both sides",
            json!({"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}),
            json!({"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}], "description": "same"}),
            true,
            true,
            "",
        ),
        case("add a not", json!({"type": "string"}), json!({"type": "string", "not": {"const": ""}}), false, true, "cannot decide: `not` present only in the new schema"),
        case("accept anything (true) to a typed schema", json!(true), json!({"type": "object"}), false, true, "#: type narrowed from any type to object"),
    ]
}
