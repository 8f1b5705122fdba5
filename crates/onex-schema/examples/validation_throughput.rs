//! Measures `RegistryValidator::validate_payload` on a 20-field schema against parsing the same
//! payload into a `serde_json::Value` (what validating with the full validator costs at least),
//! in the same run. The streaming fast path makes validation cheaper than that parse; the full
//! validator on a pre-parsed value is shown too (`compiled_is_valid_per_s`).
//!
//! Run: `cargo run --release -p onex-schema --example validation_throughput [-- N]`

use std::sync::Arc;
use std::time::Instant;

use onex_core::{PayloadValidator, SchemaRegistry, SchemaType};
use onex_schema::{RegistryValidator, SqliteSchemaRegistry};
use serde_json::{json, Map, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let mut properties = Map::new();
    let mut payload = Map::new();
    for i in 0..20 {
        let (schema, value) = match i % 4 {
            0 => (json!({"type": "integer", "minimum": 0}), json!(i)),
            1 => (json!({"type": "string", "maxLength": 64}), json!(format!("value-{i}"))),
            2 => (json!({"type": "number"}), json!(i as f64 * 1.5)),
            _ => (json!({"type": "boolean"}), json!(i % 2 == 0)),
        };
        properties.insert(format!("field_{i}"), schema);
        payload.insert(format!("field_{i}"), value);
    }
    let required: Vec<String> = properties.keys().cloned().collect();
    let schema = json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false});
    let payload = serde_json::to_vec(&Value::Object(payload))?;

    let dir = tempfile::tempdir()?;
    let registry = Arc::new(SqliteSchemaRegistry::open(dir.path().join("onex.db")).await?);
    registry.register("bench-value", &schema.to_string(), SchemaType::Json).await?;
    let validator = RegistryValidator::new(registry);
    validator.validate_payload("bench", &payload).await?;

    let start = Instant::now();
    for _ in 0..n {
        let v: Value = serde_json::from_slice(std::hint::black_box(&payload))?;
        std::hint::black_box(v);
    }
    let parse_only = n as f64 / start.elapsed().as_secs_f64();

    let compiled = onex_schema::CompiledSchema::compile(&schema.to_string(), SchemaType::Json)?;
    let parsed: Value = serde_json::from_slice(&payload)?;
    let start = Instant::now();
    for _ in 0..n {
        assert!(compiled.is_valid(std::hint::black_box(&parsed)));
    }
    let validate_only = n as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    for _ in 0..n {
        assert!(compiled.certainly_valid(std::hint::black_box(&payload)));
    }
    let streaming_only = n as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    for _ in 0..n {
        validator.validate_payload("bench", std::hint::black_box(&payload)).await?;
    }
    let validated = n as f64 / start.elapsed().as_secs_f64();

    println!(
        "{}",
        json!({"scenario": "schema-validate", "payload_bytes": payload.len(), "iterations": n,
               "ours": {"validations_per_s": validated.round()}, "baseline": {"parses_per_s": parse_only.round()},
               "compiled_is_valid_per_s": validate_only.round(), "streaming_check_per_s": streaming_only.round(),
               "ratio": (validated / parse_only * 1000.0).round() / 1000.0})
    );
    Ok(())
}
