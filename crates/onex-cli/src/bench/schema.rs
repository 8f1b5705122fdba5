//! `bench schema`: publish throughput on the memory bus through the EventPublisher, with
//! validation against a 20-field JSON Schema vs without, same run.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use onex_bus::memory::MemoryTransport;
use onex_bus::{BusPublisher, TransportBus};
use onex_core::{EventPublisher, PublishOptions, Result, SchemaRegistry, SchemaType};
use onex_schema::{RegistryValidator, SqliteSchemaRegistry};

use super::{Latencies, ScenarioReport, Side};

const FIELDS: usize = 20;

fn schema() -> String {
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for i in 0..FIELDS {
        let name = format!("field_{i:02}");
        let spec = match i % 4 {
            0 => serde_json::json!({"type": "string", "maxLength": 64}),
            1 => serde_json::json!({"type": "integer", "minimum": 0}),
            2 => serde_json::json!({"type": "number"}),
            _ => serde_json::json!({"type": "boolean"}),
        };
        props.insert(name.clone(), spec);
        required.push(name);
    }
    serde_json::json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": props, "required": required}).to_string()
}

fn payload(seq: u64) -> Bytes {
    let mut obj = serde_json::Map::new();
    for i in 0..FIELDS {
        let v = match i % 4 {
            0 => serde_json::json!(format!("value-{seq}-{i}")),
            1 => serde_json::json!(seq + i as u64),
            2 => serde_json::json!(seq as f64 * 1.5),
            _ => serde_json::json!(seq % 2 == 0),
        };
        obj.insert(format!("field_{i:02}"), v);
    }
    Bytes::from(serde_json::to_vec(&obj).expect("payload serializes"))
}

async fn measure(publisher: &BusPublisher, payloads: &[Bytes], what: &str) -> Result<Side> {
    let mut lat = Latencies::default();
    let opts = PublishOptions { topic: Some("bench-orders".into()), ..Default::default() };
    let start = Instant::now();
    for p in payloads {
        let t = Instant::now();
        publisher.publish("bench.order_created.v1", p.clone(), opts.clone()).await?;
        lat.record(t.elapsed());
    }
    Ok(Side::new(what, payloads.len() as u64, start.elapsed(), "msg/s", &lat))
}

/// Runs the scenario with `messages` publishes per side.
pub async fn run(messages: u64) -> Result<Vec<ScenarioReport>> {
    let dir = tempfile::tempdir().map_err(|e| onex_core::Error::initialization("cannot create a temp dir").with_source(e))?;
    let registry: Arc<dyn SchemaRegistry> = Arc::new(SqliteSchemaRegistry::open(dir.path().join("registry.db")).await?);
    registry.register("bench-orders-value", &schema(), SchemaType::Json).await?;
    let payloads: Vec<Bytes> = (0..messages).map(payload).collect();

    let plain_bus = Arc::new(TransportBus::new(Arc::new(MemoryTransport::default())));
    let plain = BusPublisher::builder(plain_bus).build()?;
    let checked_bus = Arc::new(TransportBus::new(Arc::new(MemoryTransport::default())));
    let checked = BusPublisher::builder(checked_bus).validator(Arc::new(RegistryValidator::new(registry))).build()?;
    // Warm both (topic creation, schema fetch and compile), then measure.
    measure(&plain, &payloads[..payloads.len().min(1000)], "warm-up").await?;
    measure(&checked, &payloads[..payloads.len().min(1000)], "warm-up").await?;
    let base = measure(&plain, &payloads, "EventPublisher.publish, memory bus, no validation").await?;
    let ours = measure(&checked, &payloads, "EventPublisher.publish, memory bus, validated against a 20-field schema").await?;
    let params = serde_json::json!({"messages": messages, "schema_fields": FIELDS, "payload_bytes": payloads.first().map(|p| p.len())});
    Ok(vec![ScenarioReport::new("schema", ours, base, 0.8, params)])
}
