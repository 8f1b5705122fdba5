//! JSON Schema validation: compiling schemas once and reporting every violation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, ValidationError, Validator};
use parking_lot::RwLock;
use serde_json::Value;

use onex_core::{Error, Result, SchemaType, Violation};

use crate::canonical::{canonicalize, excerpt};
use crate::fast_path::FastPlan;

/// `$schema` of JSON Schema draft-07.
pub const DRAFT_07: &str = "http://json-schema.org/draft-07/schema";
/// `$schema` of JSON Schema 2020-12 (the default when a schema names none).
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Longest violation message kept; instance values can be large.
const MAX_MESSAGE_CHARS: usize = 300;

/// Rejects schema types other than JSON with a clear message.
pub fn ensure_supported(schema_type: SchemaType) -> Result<()> {
    match schema_type {
        SchemaType::Json => Ok(()),
        other => Err(Error::rejected(format!(
            "unsupported schema type {}: onex validates and checks JSON Schema only; register the schema as JSON",
            serde_json::to_value(other).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| format!("{other:?}"))
        ))
        .with("schema_type", format!("{other:?}").to_uppercase())
        .with("error_code", crate::errors::codes::INVALID_SCHEMA)),
    }
}

/// The draft a schema document declares with `$schema` (2020-12 when it declares none).
pub fn draft_of(schema: &Value) -> Result<Draft> {
    let Some(declared) = schema.as_object().and_then(|o| o.get("$schema")) else {
        return Ok(Draft::Draft202012);
    };
    let Some(uri) = declared.as_str() else {
        return Err(Error::rejected(format!("invalid JSON Schema: `$schema` must be a string, got {declared}")));
    };
    match uri.trim_end_matches('#') {
        DRAFT_07 => Ok(Draft::Draft7),
        DRAFT_2020_12 => Ok(Draft::Draft202012),
        other => Err(Error::rejected(format!(
            "unsupported `$schema` {other:?}: onex supports JSON Schema draft-07 ({DRAFT_07}) and 2020-12 ({DRAFT_2020_12})"
        ))
        .with("$schema", other)
        .with("error_code", crate::errors::codes::INVALID_SCHEMA)),
    }
}

/// A JSON Schema compiled once, ready to validate many instances.
pub struct CompiledSchema {
    validator: Validator,
    fast: Option<FastPlan>,
    draft: Draft,
    canonical: String,
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("draft", &self.draft)
            .field("fast_path", &self.fast.is_some())
            .field("schema", &excerpt(&self.canonical))
            .finish()
    }
}

impl CompiledSchema {
    /// Compiles schema text. Not JSON → [`Error::Decode`]; not a valid JSON Schema (or an
    /// unsupported `$schema`, or a `$ref` that cannot be resolved inside the document) →
    /// [`Error::Rejected`]; AVRO and PROTOBUF → [`Error::Rejected`] saying they are unsupported.
    pub fn compile(schema: &str, schema_type: SchemaType) -> Result<Self> {
        ensure_supported(schema_type)?;
        let (value, canonical) = canonicalize(schema)?;
        Self::compile_value(&value, canonical)
    }

    fn compile_value(value: &Value, canonical: String) -> Result<Self> {
        if !value.is_object() && !value.is_boolean() {
            return Err(Error::rejected(format!(
                "invalid JSON Schema: a schema is a JSON object or a boolean, got {}",
                excerpt(&value.to_string())
            ))
            .with("error_code", crate::errors::codes::INVALID_SCHEMA));
        }
        let draft = draft_of(value)?;
        let validator = jsonschema::options().with_draft(draft).build(value).map_err(|e| {
            let at = e.schema_path.as_str().to_string();
            let at = if at.is_empty() { "#".to_string() } else { format!("#{at}") };
            Error::rejected(format!("invalid JSON Schema at {at}: {}; fix the schema and register it again", truncate(&e.to_string())))
                .with("schema_path", at)
                .with("error_code", crate::errors::codes::INVALID_SCHEMA)
        })?;
        Ok(CompiledSchema { validator, fast: FastPlan::compile(value), draft, canonical })
    }

    /// The draft the schema is validated with.
    pub fn draft(&self) -> Draft {
        self.draft
    }

    /// The schema in canonical form.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// `true` when the JSON text `payload` is certainly valid, checked by streaming over the
    /// bytes without building a `Value` (schemas of plain types, properties, required,
    /// additionalProperties, scalar enums, bounds and items). `false` means invalid or not
    /// sure: parse the payload and use [`validate`](Self::validate) for the verdict and violations.
    pub fn certainly_valid(&self, payload: &[u8]) -> bool {
        self.fast.as_ref().is_some_and(|plan| plan.certainly_valid(payload))
    }

    /// Whether the streaming fast path applies to this schema.
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Whether `instance` is valid (faster than collecting violations).
    pub fn is_valid(&self, instance: &Value) -> bool {
        self.validator.is_valid(instance)
    }

    /// Every violation of `instance` (empty when valid).
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        self.validator.iter_errors(instance).map(|e| to_violation(&e)).collect()
    }

    /// `Ok` when `instance` is valid; otherwise [`Error::Schema`] with every violation.
    pub fn validate(&self, subject: Option<&str>, instance: &Value) -> Result<()> {
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        Err(Error::schema(subject.map(str::to_owned), self.violations(instance)))
    }
}

fn to_violation(e: &ValidationError<'_>) -> Violation {
    Violation {
        instance_path: e.instance_path.as_str().to_string(),
        keyword: keyword_of(&e.kind).to_string(),
        message: truncate(&e.to_string()),
    }
}

fn truncate(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_string(),
    }
}

/// The JSON Schema keyword behind a validation error.
fn keyword_of(kind: &ValidationErrorKind) -> &'static str {
    use ValidationErrorKind as K;
    match kind {
        K::AdditionalItems { .. } => "additionalItems",
        K::AdditionalProperties { .. } => "additionalProperties",
        K::AnyOf { .. } => "anyOf",
        K::BacktrackLimitExceeded { .. } | K::Pattern { .. } => "pattern",
        K::Constant { .. } => "const",
        K::Contains => "contains",
        K::ContentEncoding { .. } | K::FromUtf8 { .. } => "contentEncoding",
        K::ContentMediaType { .. } => "contentMediaType",
        K::Custom { .. } => "custom",
        K::Enum { .. } => "enum",
        K::ExclusiveMaximum { .. } => "exclusiveMaximum",
        K::ExclusiveMinimum { .. } => "exclusiveMinimum",
        K::FalseSchema => "false",
        K::Format { .. } => "format",
        K::MaxItems { .. } => "maxItems",
        K::Maximum { .. } => "maximum",
        K::MaxLength { .. } => "maxLength",
        K::MaxProperties { .. } => "maxProperties",
        K::MinItems { .. } => "minItems",
        K::Minimum { .. } => "minimum",
        K::MinLength { .. } => "minLength",
        K::MinProperties { .. } => "minProperties",
        K::MultipleOf { .. } => "multipleOf",
        K::Not { .. } => "not",
        K::OneOfMultipleValid { .. } | K::OneOfNotValid { .. } => "oneOf",
        K::PropertyNames { .. } => "propertyNames",
        K::Required { .. } => "required",
        K::Type { .. } => "type",
        K::UnevaluatedItems { .. } => "unevaluatedItems",
        K::UnevaluatedProperties { .. } => "unevaluatedProperties",
        K::UniqueItems => "uniqueItems",
        K::Referencing(_) => "$ref",
    }
}

/// Compiled schemas keyed by canonical text, so each distinct schema is compiled once per
/// process however many subjects, clients or validators use it.
#[derive(Debug, Default)]
pub struct ValidatorCache {
    compiled: RwLock<HashMap<String, Arc<CompiledSchema>>>,
}

/// Distinct schemas kept before the cache starts over (a bound, not an LRU: registries hold
/// few distinct schemas, and recompiling after a reset is correct, just slower once).
const MAX_CACHED_SCHEMAS: usize = 1024;

impl ValidatorCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The compiled form of `schema`, compiling it on first use.
    pub fn get_or_compile(&self, schema: &str, schema_type: SchemaType) -> Result<Arc<CompiledSchema>> {
        ensure_supported(schema_type)?;
        let (value, canonical) = canonicalize(schema)?;
        if let Some(hit) = self.compiled.read().get(&canonical) {
            return Ok(hit.clone());
        }
        let compiled = Arc::new(CompiledSchema::compile_value(&value, canonical.clone())?);
        let mut map = self.compiled.write();
        if map.len() >= MAX_CACHED_SCHEMAS {
            map.clear();
        }
        Ok(map.entry(canonical).or_insert(compiled).clone())
    }

    /// How many compiled schemas are cached.
    pub fn len(&self) -> usize {
        self.compiled.read().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use onex_core::ErrorKind;
    use serde_json::json;

    use super::*;

    const ORDER: &str = r#"{
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "sku": {"type": "string", "maxLength": 5},
            "lines": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "number"}}, "required": ["qty"]}}
        },
        "required": ["id", "sku"],
        "additionalProperties": false
    }"#;

    #[test]
    fn reports_every_violation_with_pointer_and_keyword() {
        let schema = CompiledSchema::compile(ORDER, SchemaType::Json).unwrap();
        let bad = json!({"id": 0, "sku": "TOOLONG", "lines": [{"qty": 1}, {"qty": "x"}, {}], "extra": true});
        let mut got: Vec<(String, String)> = schema.violations(&bad).into_iter().map(|v| (v.instance_path, v.keyword)).collect();
        got.sort();
        let mut want = vec![
            ("".to_string(), "additionalProperties".to_string()),
            ("/id".into(), "minimum".into()),
            ("/sku".into(), "maxLength".into()),
            ("/lines/1/qty".into(), "type".into()),
            ("/lines/2".into(), "required".into()),
        ];
        want.sort();
        assert_eq!(got, want);
        let err = schema.validate(Some("orders-value"), &bad).unwrap_err();
        let Error::Schema { subject, violations } = &err else { panic!("{err}") };
        assert_eq!(subject.as_deref(), Some("orders-value"));
        assert_eq!(violations.len(), 5);
        assert!(violations.iter().all(|v| !v.message.is_empty()));
        assert!(schema.validate(None, &json!({"id": 1, "sku": "A1", "lines": []})).is_ok());
    }

    #[test]
    fn honours_declared_draft() {
        // In draft-07 `items` as an array is a tuple; 2020-12 rejects that form at compile time.
        let tuple = r#"{"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}]}"#;
        let compiled = CompiledSchema::compile(tuple, SchemaType::Json).unwrap();
        assert_eq!(compiled.draft(), Draft::Draft7);
        assert_eq!(compiled.violations(&json!([1])).len(), 1);
        // 2020-12 `prefixItems` works when no `$schema` is given (the default draft).
        let prefix = CompiledSchema::compile(r#"{"prefixItems": [{"type": "string"}]}"#, SchemaType::Json).unwrap();
        assert_eq!(prefix.draft(), Draft::Draft202012);
        assert_eq!(prefix.violations(&json!([1]))[0].keyword, "type");
    }

    #[test]
    fn bad_schemas_get_clear_errors() {
        let not_json = CompiledSchema::compile("{\"type\": ", SchemaType::Json).unwrap_err();
        assert_eq!(not_json.kind(), ErrorKind::Decode, "{not_json}");
        let not_schema = CompiledSchema::compile(r#"{"type": "strnig"}"#, SchemaType::Json).unwrap_err();
        assert_eq!(not_schema.kind(), ErrorKind::Rejected);
        assert!(not_schema.to_string().contains("invalid JSON Schema"), "{not_schema}");
        let scalar = CompiledSchema::compile("42", SchemaType::Json).unwrap_err();
        assert!(scalar.to_string().contains("JSON object or a boolean"), "{scalar}");
        let draft4 = CompiledSchema::compile(r#"{"$schema": "http://json-schema.org/draft-04/schema#"}"#, SchemaType::Json).unwrap_err();
        assert!(draft4.to_string().contains("unsupported `$schema`"), "{draft4}");
        let dangling = CompiledSchema::compile(r##"{"$ref": "#/$defs/missing"}"##, SchemaType::Json).unwrap_err();
        assert_eq!(dangling.kind(), ErrorKind::Rejected, "{dangling}");
        for t in [SchemaType::Avro, SchemaType::Protobuf] {
            let err = CompiledSchema::compile(r#"{"type": "record"}"#, t).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Rejected);
            assert!(err.to_string().contains("unsupported schema type"), "{err}");
        }
    }

    #[test]
    fn cache_compiles_each_distinct_schema_once() {
        let cache = ValidatorCache::new();
        let a = cache.get_or_compile(r#"{"type": "string", "maxLength": 3}"#, SchemaType::Json).unwrap();
        let b = cache.get_or_compile(r#"{"maxLength": 3, "type": "string"}"#, SchemaType::Json).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(cache.len(), 1);
        cache.get_or_compile(r#"{"type": "integer"}"#, SchemaType::Json).unwrap();
        assert_eq!(cache.len(), 2);
    }
}
