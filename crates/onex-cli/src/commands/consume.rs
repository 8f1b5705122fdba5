//! `onex consume`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use onex_bus::TransportBus;
use onex_core::{handler_fn, Delivery, Error, EventBus, Result, StartFrom, Subscription, SubscriptionOptions};
use tokio::sync::Notify;

use crate::cli::ConsumeArgs;

/// One delivery as printed by `onex consume --json`.
pub(crate) fn delivery_json(d: &Delivery) -> serde_json::Value {
    let payload = d.envelope.payload_json().unwrap_or_else(|_| serde_json::json!({ "base64_bytes": d.envelope.payload.len() }));
    serde_json::json!({
        "topic": &*d.topic, "partition": d.partition, "offset": d.offset,
        "envelope_id": d.envelope.envelope_id, "event_type": d.envelope.event_type, "source": d.envelope.source,
        "timestamp": d.envelope.timestamp, "correlation_id": d.envelope.correlation_id, "causation_id": d.envelope.causation_id,
        "partition_key": d.envelope.partition_key, "content_type": d.envelope.content_type,
        "headers": d.envelope.metadata.headers, "payload": payload,
    })
}

pub(crate) async fn run(bus: &TransportBus, args: ConsumeArgs, json: bool) -> Result<()> {
    if let Some(t) = args.timeout {
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::config(format!("--timeout {t} must be a positive number of seconds")));
        }
    }
    let limit = args.count.unwrap_or(u64::MAX);
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let (h2, d2) = (handled.clone(), done.clone());
    let handler = handler_fn(move |d: Delivery| {
        let (handled, done) = (h2.clone(), d2.clone());
        async move {
            // Claim a slot first: past the limit, leave the record for the next consumer.
            let n = handled.fetch_add(1, Ordering::SeqCst);
            if n >= limit {
                handled.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::shutdown("consume limit reached"));
            }
            let line = if json {
                delivery_json(&d).to_string()
            } else {
                format!(
                    "{}[{}]@{} {} {} corr={} {}",
                    d.topic,
                    d.partition,
                    d.offset,
                    d.envelope.event_type,
                    d.envelope.envelope_id,
                    d.envelope.correlation_id,
                    String::from_utf8_lossy(&d.envelope.payload)
                )
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            if n + 1 >= limit {
                done.notify_one();
            }
            Ok(())
        }
    });
    let options =
        SubscriptionOptions { start_from: if args.from_beginning { StartFrom::Earliest } else { StartFrom::Latest }, ..Default::default() };
    bus.subscribe(Subscription::new(&args.topic, &args.group, handler).with_options(options)).await?;
    bus.start().await?;
    let reached = tokio::select! {
        r = async {
            match args.timeout {
                Some(t) => tokio::time::timeout(Duration::from_secs_f64(t), done.notified()).await.is_ok(),
                None => {
                    done.notified().await;
                    true
                }
            }
        } => r,
        _ = crate::shutdown_signal() => false,
    };
    bus.stop_consuming(Duration::from_secs(10)).await?;
    let got = handled.load(Ordering::SeqCst);
    match args.count {
        Some(n) if !reached && got < n => Err(Error::timeout(
            format!("received {got} of {n} events from {} before stopping", args.topic),
            Duration::from_secs_f64(args.timeout.unwrap_or(0.0)),
        )),
        _ => Ok(()),
    }
}
