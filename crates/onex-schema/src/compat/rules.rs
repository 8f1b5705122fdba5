//! The parallel walk over a reader and a writer schema that proves (or fails to prove) that the
//! reader accepts every instance the writer accepts.
//!
//! Soundness rule: constraints of the **writer** that the checker does not understand are
//! ignored (that only over-approximates what the writer produces); constraints of the
//! **reader** that it does not understand must be identical on the writer's side, or the
//! answer is "cannot decide", reported as incompatible.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use jsonschema::{Draft, Validator};
use serde_json::{Map, Value};

use super::direction::{Direction, NARROWED, TIGHTENED};
use super::types::{
    accepts_everything, accepts_nothing, allowed_values, contains_ref, count, escape_pointer, finite_values, is_assertion, json_equal,
    lower_admits, lower_bound, required, show_bound, show_types, type_accepted, type_set, upper_admits, upper_bound,
};

/// Reader keywords the checker cannot reason about: accepted only when identical in the writer.
const UNDECIDABLE: [&str; 21] = [
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "dependencies",
    "dependentRequired",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "minContains",
    "maxContains",
    "patternProperties",
    "pattern",
    "format",
    "$dynamicRef",
    "$recursiveRef",
];

/// Nesting beyond this is reported instead of followed.
const MAX_DEPTH: usize = 128;
/// `$ref` chains longer than this are reported instead of followed.
const MAX_REF_HOPS: usize = 32;
/// Resource name a document is registered under to validate single values against a node of it.
const DOC_URI: &str = "urn:onex:compat-document";
/// Pointer of a node that is not in the document (an implied `true`).
const SYNTHETIC: &str = "!";

static TRUE: Value = Value::Bool(true);
static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Reader,
    Writer,
}

/// One reader/writer comparison.
pub(crate) struct Checker<'a> {
    reader: &'a Value,
    reader_draft: Draft,
    writer: &'a Value,
    writer_draft: Draft,
    direction: Direction,
    /// (reader node, writer node) pairs already being compared: recursion through `$ref`
    /// cycles is assumed to hold (co-inductive), which is what makes recursive schemas terminate.
    visited: HashSet<(usize, usize)>,
    /// Validators for single nodes of either document, by side and JSON pointer.
    validators: HashMap<(Side, String), Option<Validator>>,
    out: Vec<String>,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(reader: &'a Value, reader_draft: Draft, writer: &'a Value, writer_draft: Draft, direction: Direction) -> Self {
        Checker {
            reader,
            reader_draft,
            writer,
            writer_draft,
            direction,
            visited: HashSet::new(),
            validators: HashMap::new(),
            out: Vec::new(),
        }
    }

    /// Every reason the reader does not cover the writer.
    pub(crate) fn run(mut self) -> Vec<String> {
        self.covers((self.reader, String::new()), (self.writer, String::new()), "#", 0);
        self.out
    }

    fn push(&mut self, path: &str, message: impl AsRef<str>) {
        self.out.push(format!("{path}: {}", message.as_ref()));
    }

    /// The new/old name of the reader and of the writer.
    fn names(&self) -> (&'static str, &'static str) {
        match self.direction {
            Direction::Backward => ("new", "old"),
            Direction::Forward => ("old", "new"),
        }
    }

    fn covers(&mut self, (r, rptr): Located<'a>, (w, wptr): Located<'a>, path: &str, depth: usize) {
        if depth > MAX_DEPTH {
            self.push(path, format!("cannot decide: schemas nest deeper than {MAX_DEPTH} levels"));
            return;
        }
        let Some((r, rptr)) = self.resolve(Side::Reader, r, rptr, path) else { return };
        let Some((w, wptr)) = self.resolve(Side::Writer, w, wptr, path) else { return };
        if !self.visited.insert((r as *const Value as usize, w as *const Value as usize)) {
            return;
        }
        if accepts_everything(r) || accepts_nothing(w) {
            return;
        }
        let (reader_name, writer_name) = self.names();
        let Some(rmap) = r.as_object() else {
            if accepts_nothing(r) {
                self.push(path, format!("the {reader_name} schema accepts nothing (false) but the {writer_name} one accepts values here"));
            }
            return;
        };
        let wmap: &'a Map<String, Value> = w.as_object().unwrap_or(&EMPTY);
        self.undecidable_keywords(rmap, wmap, path);

        let enumerated = wmap.contains_key("enum") || wmap.contains_key("const");
        if enumerated {
            for value in finite_values(wmap).unwrap_or_default() {
                // A listed value the writer's other keywords reject is never produced.
                if self.node_accepts(Side::Writer, &wptr, &value) != Some(false) {
                    self.value_accepted(rmap, &rptr, &value, path);
                }
            }
            return;
        }

        let rtypes = type_set(rmap);
        let wtypes = type_set(wmap);
        if let Some(rt) = &rtypes {
            let narrowed = match &wtypes {
                None => true,
                Some(wt) => wt.iter().any(|t| !type_accepted(rt, t)),
            };
            if narrowed {
                let message = self.direction.change("type", NARROWED, &show_types(Some(rt)), &show_types(wtypes.as_ref()));
                self.push(path, message);
            }
        }
        // Type-specific keywords matter for the types both sides have in common.
        let produces = |t: &str| {
            let writer = wtypes.as_ref().is_none_or(|wt| wt.contains(t) || (t == "number" && wt.contains("integer")));
            let reader = rtypes.as_ref().is_none_or(|rt| type_accepted(rt, t) || (t == "number" && rt.contains("integer")));
            writer && reader
        };

        if let Some(allowed) = allowed_values(rmap) {
            match finite_values(wmap) {
                Some(values) => {
                    for value in values {
                        self.value_accepted(rmap, &rptr, &value, path);
                    }
                }
                None => {
                    let shown = format!("[{}]", allowed.iter().map(Value::to_string).collect::<Vec<_>>().join(", "));
                    let message = self.direction.change("enum", TIGHTENED, &shown, "any value");
                    self.push(path, message);
                }
            }
            return;
        }

        if produces("string") {
            self.min_count(rmap, wmap, "minLength", path);
            self.max_count(rmap, wmap, "maxLength", path);
        }
        if produces("number") {
            self.numeric(rmap, wmap, path);
        }
        if produces("array") {
            self.min_count(rmap, wmap, "minItems", path);
            self.max_count(rmap, wmap, "maxItems", path);
            if rmap.get("uniqueItems") == Some(&Value::Bool(true)) && wmap.get("uniqueItems") != Some(&Value::Bool(true)) {
                let message = self.direction.change("uniqueItems", TIGHTENED, "true", "false");
                self.push(path, message);
            }
            self.items((rmap, &rptr), (wmap, &wptr), path, depth);
        }
        if produces("object") {
            self.min_count(rmap, wmap, "minProperties", path);
            self.max_count(rmap, wmap, "maxProperties", path);
            self.object((rmap, &rptr), (wmap, &wptr), path, depth);
        }
    }

    /// Follows local `$ref`s to the node they name, or reports why it cannot.
    fn resolve(&mut self, side: Side, mut node: &'a Value, mut ptr: String, path: &str) -> Option<(&'a Value, String)> {
        let root = match side {
            Side::Reader => self.reader,
            Side::Writer => self.writer,
        };
        for _ in 0..MAX_REF_HOPS {
            let Some(map) = node.as_object() else { return Some((node, ptr)) };
            let Some(reference) = map.get("$ref") else { return Some((node, ptr)) };
            let Some(reference) = reference.as_str() else {
                self.push(path, "cannot decide: `$ref` is not a string");
                return None;
            };
            // In 2020-12 keywords next to `$ref` apply too; for the reader they would be extra
            // constraints, so they must not be dropped (for the writer dropping them is safe).
            if side == Side::Reader && self.reader_draft == Draft::Draft202012 && map.keys().any(|k| k != "$ref" && is_assertion(k)) {
                self.push(path, format!("cannot decide: `$ref` {reference:?} has sibling keywords in the {} schema", self.names().0));
                return None;
            }
            let target = reference.strip_prefix('#').filter(|p| p.is_empty() || p.starts_with('/'));
            let Some(pointer) = target else {
                self.push(
                    path,
                    format!("cannot decide: `$ref` {reference:?} is not a local JSON pointer (only `#/...` references inside the schema are followed)"),
                );
                return None;
            };
            match root.pointer(pointer) {
                Some(next) => {
                    node = next;
                    ptr = pointer.to_string();
                }
                None => {
                    self.push(path, format!("cannot decide: `$ref` {reference:?} does not resolve"));
                    return None;
                }
            }
        }
        self.push(path, format!("cannot decide: more than {MAX_REF_HOPS} chained `$ref`s"));
        None
    }

    fn undecidable_keywords(&mut self, rmap: &Map<String, Value>, wmap: &Map<String, Value>, path: &str) {
        let (reader_name, writer_name) = self.names();
        for keyword in UNDECIDABLE {
            let Some(rv) = rmap.get(keyword) else { continue };
            let wv = wmap.get(keyword);
            if wv.is_some_and(|wv| json_equal(rv, wv) && !contains_ref(rv)) {
                continue;
            }
            let state = match wv {
                Some(wv) if keyword == "pattern" => format!("changed from {wv} to {rv}"),
                Some(_) => "changed".to_string(),
                None => format!("present only in the {reader_name} schema"),
            };
            self.push(
                path,
                format!(
                    "cannot decide: `{keyword}` {state}; the checker cannot prove the {reader_name} schema accepts everything the {writer_name} one does, so it is treated as incompatible"
                ),
            );
        }
    }

    /// A value the writer can produce must pass the reader.
    fn value_accepted(&mut self, rmap: &Map<String, Value>, rptr: &str, value: &Value, path: &str) {
        let (reader_name, writer_name) = self.names();
        if let Some(allowed) = allowed_values(rmap) {
            if !allowed.iter().any(|a| json_equal(a, value)) {
                let what = if rmap.contains_key("const") { "const" } else { "enum" };
                let message = format!("{what} value {value} {}", self.direction.pick("removed", "added"));
                self.push(path, message);
                return;
            }
        }
        let failure = match self.node_validator(Side::Reader, rptr) {
            Some(v) => v.iter_errors(value).next().map(|e| e.to_string()),
            None => Some("cannot decide: the schema at this path could not be compiled on its own".to_string()),
        };
        if let Some(reason) = failure {
            self.push(path, format!("value {value} allowed by the {writer_name} schema is rejected by the {reader_name} one: {reason}"));
        }
    }

    /// Whether the node at `ptr` of one side's document accepts `value` (`None`: cannot tell).
    fn node_accepts(&mut self, side: Side, ptr: &str, value: &Value) -> Option<bool> {
        self.node_validator(side, ptr).map(|v| v.is_valid(value))
    }

    /// A validator for one node of a document, compiled once per (side, pointer).
    fn node_validator(&mut self, side: Side, ptr: &str) -> Option<&Validator> {
        let (document, draft) = match side {
            Side::Reader => (self.reader, self.reader_draft),
            Side::Writer => (self.writer, self.writer_draft),
        };
        self.validators
            .entry((side, ptr.to_string()))
            .or_insert_with(|| {
                if ptr == SYNTHETIC {
                    return jsonschema::options().build(&TRUE).ok();
                }
                let resource = draft.create_resource(document.clone());
                let entry = serde_json::json!({ "$ref": format!("{DOC_URI}#{ptr}") });
                jsonschema::options().with_draft(draft).with_resource(DOC_URI, resource).build(&entry).ok()
            })
            .as_ref()
    }

    fn min_count(&mut self, rmap: &Map<String, Value>, wmap: &Map<String, Value>, keyword: &str, path: &str) {
        let r = count(rmap, keyword).unwrap_or(0);
        let w = count(wmap, keyword).unwrap_or(0);
        if r > w {
            let message = self.direction.change(keyword, TIGHTENED, &r.to_string(), &w.to_string());
            self.push(path, message);
        }
    }

    fn max_count(&mut self, rmap: &Map<String, Value>, wmap: &Map<String, Value>, keyword: &str, path: &str) {
        let r = count(rmap, keyword);
        let w = count(wmap, keyword);
        let admits = match (r, w) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(r), Some(w)) => r >= w,
        };
        if !admits {
            let show = |c: Option<u64>| c.map_or_else(|| "none".to_string(), |c| c.to_string());
            let message = self.direction.change(keyword, TIGHTENED, &show(r), &show(w));
            self.push(path, message);
        }
    }

    fn numeric(&mut self, rmap: &Map<String, Value>, wmap: &Map<String, Value>, path: &str) {
        let (r, w) = (upper_bound(rmap), upper_bound(wmap));
        if !upper_admits(r, w) {
            let message = self.direction.change("maximum", TIGHTENED, &show_bound(r, true), &show_bound(w, true));
            self.push(path, message);
        }
        let (r, w) = (lower_bound(rmap), lower_bound(wmap));
        if !lower_admits(r, w) {
            let message = self.direction.change("minimum", TIGHTENED, &show_bound(r, false), &show_bound(w, false));
            self.push(path, message);
        }
        if let Some(rm) = rmap.get("multipleOf").and_then(Value::as_f64) {
            let wm = wmap.get("multipleOf").and_then(Value::as_f64);
            let divides = wm.is_some_and(|wm| {
                let q = wm / rm;
                (q - q.round()).abs() < 1e-9
            });
            if !divides {
                let show = |m: Option<f64>| m.map_or_else(|| "none".to_string(), super::types::show_number);
                let message = self.direction.change("multipleOf", TIGHTENED, &show(Some(rm)), &show(wm));
                self.push(path, message);
            }
        }
    }

    /// `items` / `prefixItems` (2020-12) and `items` arrays / `additionalItems` (draft-07).
    fn items(&mut self, (rmap, rptr): Node<'a, '_>, (wmap, wptr): Node<'a, '_>, path: &str, depth: usize) {
        let (rprefix, rrest) = tuple_form(rmap, rptr, self.reader_draft == Draft::Draft7);
        let (wprefix, wrest) = tuple_form(wmap, wptr, self.writer_draft == Draft::Draft7);
        for i in 0..rprefix.len().max(wprefix.len()) {
            let rs = rprefix.get(i).cloned().unwrap_or_else(|| rrest.clone());
            let ws = wprefix.get(i).cloned().unwrap_or_else(|| wrest.clone());
            self.covers(rs, ws, &format!("{path}/prefixItems/{i}"), depth + 1);
        }
        self.covers(rrest, wrest, &format!("{path}/items"), depth + 1);
    }

    fn object(&mut self, (rmap, rptr): Node<'a, '_>, (wmap, wptr): Node<'a, '_>, path: &str, depth: usize) {
        for name in required(rmap).difference(&required(wmap)) {
            let message = match self.direction {
                Direction::Backward => format!("required property '{name}' added: old data may lack it"),
                Direction::Forward => {
                    format!("property '{name}' is no longer required: new data may lack it and the old schema requires it")
                }
            };
            self.push(path, message);
        }
        let rprops = rmap.get("properties").and_then(Value::as_object).unwrap_or(&EMPTY);
        let wprops = wmap.get("properties").and_then(Value::as_object).unwrap_or(&EMPTY);
        let rfall: Located<'a> = match rmap.get("additionalProperties") {
            Some(v) => (v, format!("{rptr}/additionalProperties")),
            None => (&TRUE, SYNTHETIC.to_string()),
        };
        // Names a writer's patternProperties match are not bound by its additionalProperties.
        let wfall: Located<'a> = match wmap.get("additionalProperties") {
            Some(v) if !wmap.contains_key("patternProperties") => (v, format!("{wptr}/additionalProperties")),
            _ => (&TRUE, SYNTHETIC.to_string()),
        };
        let names: BTreeSet<&String> = rprops.keys().chain(wprops.keys()).collect();
        for name in names {
            let ppath = format!("{path}/properties/{}", escape_pointer(name));
            let rs_ptr = format!("{rptr}/properties/{}", escape_pointer(name));
            let ws_ptr = format!("{wptr}/properties/{}", escape_pointer(name));
            match (rprops.get(name), wprops.get(name)) {
                (Some(rs), Some(ws)) => self.covers((rs, rs_ptr), (ws, ws_ptr), &ppath, depth + 1),
                (None, Some(ws)) => {
                    if accepts_nothing(rfall.0) && !accepts_nothing(ws) {
                        let message = self.direction.pick(
                            "property removed from a closed content model (additionalProperties: false): old data may contain it",
                            "property added but the old schema's content model is closed (additionalProperties: false)",
                        );
                        self.push(&ppath, message);
                    } else {
                        self.covers(rfall.clone(), (ws, ws_ptr), &ppath, depth + 1);
                    }
                }
                (Some(rs), None) => {
                    if accepts_everything(wfall.0) && !accepts_everything(rs) {
                        let message = self.direction.pick(
                            "property added with constraints to an open content model: old data may hold any value under this name \
                             (close the old schema with additionalProperties: false, or add the property unconstrained)",
                            "property removed from an open content model: new data may hold any value under this name, which the old schema constrains",
                        );
                        self.push(&ppath, message);
                    } else {
                        self.covers((rs, rs_ptr), wfall.clone(), &ppath, depth + 1);
                    }
                }
                (None, None) => {}
            }
        }
        if accepts_everything(rfall.0) {
            return;
        }
        if accepts_nothing(rfall.0) && !accepts_nothing(wfall.0) {
            let message = self.direction.pick(
                "content model closed (additionalProperties: false): old data may contain properties the new schema does not declare",
                "content model opened: the old schema is closed (additionalProperties: false) and rejects properties the new one allows",
            );
            self.push(path, message);
            return;
        }
        self.covers(rfall, wfall, &format!("{path}/additionalProperties"), depth + 1);
    }
}

/// A schema node and its JSON pointer in its document ([`SYNTHETIC`] for an implied `true`).
type Located<'a> = (&'a Value, String);
/// An object schema node and its pointer.
type Node<'a, 'p> = (&'a Map<String, Value>, &'p str);

/// Splits array keywords into positional schemas and the schema for the remaining items.
fn tuple_form<'a>(map: &'a Map<String, Value>, ptr: &str, draft7_tuple: bool) -> (Vec<Located<'a>>, Located<'a>) {
    let locate = |key: &str| map.get(key).map(|v| (v, format!("{ptr}/{key}")));
    let positional = |key: &str| -> Vec<Located<'a>> {
        match map.get(key) {
            Some(Value::Array(items)) => items.iter().enumerate().map(|(i, v)| (v, format!("{ptr}/{key}/{i}"))).collect(),
            _ => Vec::new(),
        }
    };
    if draft7_tuple && map.get("items").is_some_and(Value::is_array) {
        (positional("items"), locate("additionalItems").unwrap_or((&TRUE, SYNTHETIC.to_string())))
    } else {
        (positional("prefixItems"), locate("items").filter(|(v, _)| !v.is_array()).unwrap_or((&TRUE, SYNTHETIC.to_string())))
    }
}
