//! Canonical JSON: the form two schemas are compared in to decide whether they are identical.

use serde_json::Value;

use onex_core::{Error, Result};

/// Parses schema text and renders it canonically: compact, object keys sorted at every level.
/// Two schemas are "identical" for the registry (same global id, same version on re-register)
/// exactly when their canonical forms are equal, so whitespace and key order do not matter.
pub fn canonicalize(schema: &str) -> Result<(Value, String)> {
    let value: Value = serde_json::from_str(schema).map_err(|e| {
        Error::decode(format!("schema is not valid JSON ({e}); send the JSON Schema document as a JSON text"))
            .with("schema_excerpt", excerpt(schema))
            .with("error_code", crate::errors::codes::INVALID_SCHEMA)
    })?;
    let mut out = String::with_capacity(schema.len());
    write_canonical(&value, &mut out);
    Ok((value, out))
}

/// Renders `value` canonically (see [`canonicalize`]).
pub fn canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The first characters of `text`, for error messages.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let (_, a) = canonicalize(r#"{"type": "object", "properties": {"b": {}, "a": {"type":"string"}}}"#).unwrap();
        let (_, b) = canonicalize(r#"{"properties":{"a":{"type":"string"},"b":{}},"type":"object"}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, r#"{"properties":{"a":{"type":"string"},"b":{}},"type":"object"}"#);
    }

    #[test]
    fn invalid_json_is_a_decode_error_with_an_excerpt() {
        let err = canonicalize("{not json").unwrap_err();
        assert_eq!(err.kind(), onex_core::ErrorKind::Decode);
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        assert_eq!(err.context().unwrap()["schema_excerpt"], "{not json");
    }
}
