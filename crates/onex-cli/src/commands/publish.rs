//! `onex publish`.

use std::sync::Arc;

use bytes::Bytes;
use onex_bus::{BusPublisher, TransportBus};
use onex_core::envelope::validate_event_type;
use onex_core::{Envelope, Error, EventPublisher, PayloadValidator, Result, DEFAULT_BUS_URL};

use crate::cli::PublishArgs;

/// Reads the payload argument: `--payload`, `--file`, or `{}`.
fn payload(args: &PublishArgs) -> Result<serde_json::Value> {
    let (text, origin) = match (&args.payload, &args.file) {
        (Some(p), _) => (p.clone(), "--payload".to_string()),
        (None, Some(f)) => (
            std::fs::read_to_string(f).map_err(|e| Error::config(format!("cannot read payload file {}: {e}", f.display())))?,
            f.display().to_string(),
        ),
        (None, None) => ("{}".to_string(), "default".to_string()),
    };
    serde_json::from_str(&text).map_err(|e| Error::config(format!("payload from {origin} is not valid JSON: {e}")))
}

/// The schema check for publishes: the remote registry when given, else the registry embedded
/// in a sqlite bus file (a topic with no subject passes).
async fn validator(bus_url: Option<&str>, registry: Option<&str>) -> Result<Option<Arc<dyn PayloadValidator>>> {
    let sqlite = onex_bus::provider::parse_bus_url(bus_url.unwrap_or(DEFAULT_BUS_URL))?.scheme() == "sqlite";
    if registry.is_none() && !sqlite {
        return Ok(None);
    }
    let registry = super::schema::open_registry(registry, bus_url).await?;
    Ok(Some(Arc::new(onex_schema::RegistryValidator::new(registry))))
}

pub(crate) async fn run(bus: Arc<TransportBus>, bus_url: Option<&str>, args: PublishArgs, json: bool) -> Result<()> {
    onex_core::validate_topic(&args.topic)?;
    let event_type = match &args.event_type {
        Some(t) => t.clone(),
        None => args.topic.clone(),
    };
    validate_event_type(&event_type).map_err(|e| match &args.event_type {
        Some(_) => e,
        None => Error::config(format!("topic {:?} is not a valid event type; pass --event-type (lower-case [a-z0-9._-])", args.topic)),
    })?;
    let base = payload(&args)?;
    let count = args.count.unwrap_or(1);
    if args.count.is_some() && !base.is_object() {
        return Err(Error::config("--count needs an object payload: each event gets a \"seq\" field"));
    }
    let mut builder = BusPublisher::builder(bus).source(&args.source);
    if let Some(v) = validator(bus_url, args.registry.as_deref()).await? {
        builder = builder.validator(v);
    }
    let publisher = builder.build()?;
    for seq in 0..count {
        let mut body = base.clone();
        if args.count.is_some() {
            body["seq"] = serde_json::json!(seq);
        }
        let mut env = Envelope::from_json_bytes(&event_type, Bytes::from(serde_json::to_vec(&body)?))?.with_source(&args.source);
        if let Some(k) = &args.key {
            env = env.with_partition_key(k);
        }
        if let Some(c) = args.correlation_id {
            env = env.with_correlation_id(c);
        }
        let receipt = publisher.publish_envelope(&env, Some(&args.topic)).await?;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "topic": receipt.topic, "partition": receipt.partition, "offset": receipt.offset,
                    "timestamp": receipt.timestamp, "envelope_id": env.envelope_id, "correlation_id": env.correlation_id,
                    "event_type": env.event_type,
                })
            );
        } else {
            println!("published {} {} to {}[{}]@{}", env.event_type, env.envelope_id, receipt.topic, receipt.partition, receipt.offset);
        }
    }
    publisher.close(std::time::Duration::from_secs(10)).await
}
