//! The demo's services: InventoryService (event → event) and PaymentService (event → HTTP
//! call through the HttpRestHandler → event).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use onex_bus::TransportBus;
use onex_core::{
    handler_fn, Delivery, Envelope, Error, EventBus, EventHandler, ManagedHandler, OperationConfig, ProtocolHandler, ProtocolRequest,
};
use serde::{Deserialize, Serialize};

use super::{record, Seen, INVENTORY, INVENTORY_RESERVED, PAYMENTS, PAYMENT_PROCESSED};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OrderCreated {
    pub(crate) order_id: String,
    pub(crate) sku: String,
    pub(crate) quantity: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct InventoryReserved {
    order_id: String,
    sku: String,
    quantity: u32,
    warehouse: String,
}

/// Reads an order; after the "fix", a quantity written as a word is accepted too.
fn parse_order(env: &Envelope, fixed: bool) -> Result<OrderCreated, Error> {
    match env.payload_as::<OrderCreated>() {
        Ok(o) => Ok(o),
        Err(e) if fixed => {
            let v = env.payload_json()?;
            let words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
            let quantity = v["quantity"].as_str().and_then(|w| words.iter().position(|x| *x == w)).ok_or(e)? as u32;
            Ok(OrderCreated {
                order_id: v["order_id"].as_str().unwrap_or_default().into(),
                sku: v["sku"].as_str().unwrap_or_default().into(),
                quantity,
            })
        }
        Err(e) => Err(Error::rejected(format!("malformed order: {e}"))),
    }
}

/// InventoryService: reserves stock, publishes `inventory_reserved` caused by the order.
pub(crate) fn inventory(bus: Arc<TransportBus>, seen: Seen, fixed: Arc<AtomicBool>) -> impl EventHandler {
    handler_fn(move |d: Delivery| {
        let (bus, seen, fixed) = (bus.clone(), seen.clone(), fixed.clone());
        async move {
            record(&seen, &d.envelope);
            let order = parse_order(&d.envelope, fixed.load(Ordering::SeqCst))?;
            let reserved =
                InventoryReserved { order_id: order.order_id.clone(), sku: order.sku, quantity: order.quantity, warehouse: "ams-1".into() };
            let env = Envelope::new(INVENTORY_RESERVED, &reserved)?
                .caused_by(&d.envelope)
                .with_source("inventory-service")
                .with_partition_key(&order.order_id);
            bus.publish_envelope(&env, INVENTORY).await?;
            record(&seen, &env);
            Ok(())
        }
    })
}

/// PaymentService: charges each reservation through the HttpRestHandler (retries absorb
/// gateway failures), then publishes `payment_processed` caused by the reservation.
pub(crate) fn payment(bus: Arc<TransportBus>, seen: Seen, http: Arc<ManagedHandler>, retries: Arc<AtomicU64>) -> impl EventHandler {
    handler_fn(move |d: Delivery| {
        let (bus, seen, http, retries) = (bus.clone(), seen.clone(), http.clone(), retries.clone());
        async move {
            record(&seen, &d.envelope);
            let reservation = d.envelope.payload_json()?;
            let order_id = reservation["order_id"].as_str().unwrap_or_default().to_string();
            let mut req = ProtocolRequest::new("POST", "/charges")
                .with_json(serde_json::json!({"order_id": order_id, "amount_cents": 1999 * reservation["quantity"].as_u64().unwrap_or(1)}))
                .with_correlation_id(d.envelope.correlation_id);
            req.traceparent.clone_from(&d.envelope.metadata.traceparent);
            req.idempotency_key = Some(format!("charge-{order_id}"));
            let mut op = OperationConfig { idempotent: true, ..Default::default() };
            op.retry.initial_backoff = Duration::from_millis(50);
            let resp = http.execute(req, &op).await?;
            let attempts = resp.metadata.get("attempts").and_then(|a| a.as_u64()).unwrap_or(1);
            retries.fetch_add(attempts.saturating_sub(1), Ordering::SeqCst);
            let processed = serde_json::json!({"order_id": order_id, "charge": resp.data, "attempts": attempts});
            let env = Envelope::new(PAYMENT_PROCESSED, &processed)?
                .caused_by(&d.envelope)
                .with_source("payment-service")
                .with_partition_key(&order_id);
            bus.publish_envelope(&env, PAYMENTS).await?;
            record(&seen, &env);
            Ok(())
        }
    })
}

/// Records what arrives on a topic (so the demo can print chains).
pub(crate) fn watcher(seen: Seen) -> impl EventHandler {
    handler_fn(move |d: Delivery| {
        let seen = seen.clone();
        async move {
            record(&seen, &d.envelope);
            Ok(())
        }
    })
}

/// The HttpRestHandler pointed at the gateway, through the lifecycle wrapper.
pub(crate) async fn payment_client(gateway: &str) -> onex_core::Result<Arc<ManagedHandler>> {
    let handler = ManagedHandler::new(Arc::new(onex_handlers::HttpRestHandler::new("payment-gateway")));
    handler.initialize(onex_core::ConnectionConfig::new(gateway)).await?;
    Ok(Arc::new(handler))
}
