//! `onex demo`: the order → inventory flow on the embedded bus, with correlation chains and
//! the DLQ at work.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use onex_core::{handler_fn, Delivery, Envelope, Error, EventBus, Result, Subscription, SubscriptionOptions};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::cli::DemoArgs;

const ORDERS: &str = "orders";
const INVENTORY: &str = "inventory";
const ORDER_CREATED: &str = "omninode.orders.event.order_created.v1";
const INVENTORY_RESERVED: &str = "omninode.inventory.event.inventory_reserved.v1";

#[derive(Debug, Serialize, Deserialize)]
struct OrderCreated {
    order_id: String,
    sku: String,
    quantity: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct InventoryReserved {
    order_id: String,
    sku: String,
    quantity: u32,
    warehouse: String,
}

/// Every envelope the demo saw, by id, to print chains.
type Seen = Arc<Mutex<BTreeMap<uuid::Uuid, Envelope>>>;

fn record(seen: &Seen, env: &Envelope) {
    seen.lock().insert(env.envelope_id, env.clone());
}

pub(crate) async fn run(bus_url: Option<&str>, args: DemoArgs, json: bool) -> Result<()> {
    let url = bus_url.unwrap_or("memory://");
    let bus = onex_bus::connect(url).await?;
    let seen: Seen = Arc::default();
    let say = move |line: String| {
        if !json {
            println!("{line}");
        }
    };
    say(format!("onex demo on {} ({})", onex_core::sanitize::sanitize(url), bus.backend()));

    // InventoryService: reserves stock for each order, publishes inventory_reserved caused by it.
    let inv_bus = bus.clone();
    let inv_seen = seen.clone();
    let inventory = handler_fn(move |d: Delivery| {
        let (bus, seen) = (inv_bus.clone(), inv_seen.clone());
        async move {
            record(&seen, &d.envelope);
            let order: OrderCreated = d.envelope.payload_as().map_err(|e| Error::rejected(format!("malformed order: {e}")))?;
            let reserved = InventoryReserved { order_id: order.order_id.clone(), sku: order.sku, quantity: order.quantity, warehouse: "ams-1".into() };
            let env = Envelope::new(INVENTORY_RESERVED, &reserved)?.caused_by(&d.envelope).with_source("inventory-service").with_partition_key(&order.order_id);
            bus.publish_envelope(&env, INVENTORY).await?;
            record(&seen, &env);
            Ok(())
        }
    });
    let mut fast = SubscriptionOptions::default();
    fast.retry.initial_backoff = Duration::from_millis(20);
    bus.subscribe(Subscription::new(ORDERS, "inventory-service", inventory).with_options(fast.clone())).await?;

    let reserved_seen = seen.clone();
    let watcher = handler_fn(move |d: Delivery| {
        let seen = reserved_seen.clone();
        async move {
            record(&seen, &d.envelope);
            Ok(())
        }
    });
    bus.subscribe(Subscription::new(INVENTORY, "demo-watcher", watcher).with_options(fast)).await?;
    bus.start().await?;

    // OrderService: each order starts its own flow (own correlation id); one is malformed.
    let mut order_ids = Vec::new();
    for i in 1..=args.orders {
        let order_id = format!("order-{i:03}");
        let env = if i == 3 {
            Envelope::new(ORDER_CREATED, &serde_json::json!({"order_id": order_id, "sku": "sku-7", "quantity": "three"}))?
        } else {
            Envelope::new(ORDER_CREATED, &OrderCreated { order_id: order_id.clone(), sku: format!("sku-{i}"), quantity: i })?
        }
        .with_source("order-service")
        .with_partition_key(&order_id);
        bus.publish_envelope(&env, ORDERS).await?;
        record(&seen, &env);
        order_ids.push(env.envelope_id);
        say(format!("OrderService      published {ORDER_CREATED} {order_id} corr={}", env.correlation_id));
    }
    let good = args.orders.saturating_sub(u32::from(args.orders >= 3)) as usize;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dlq_topic = format!("{ORDERS}.dlq");
    loop {
        let reserved = seen.lock().values().filter(|e| e.event_type == INVENTORY_RESERVED).count();
        let dlq = bus.admin().describe_topic(&dlq_topic).await.map(|t| t.retained()).unwrap_or(0);
        if reserved >= good && (args.orders < 3 || dlq >= 1) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::timeout(format!("demo flow incomplete: {reserved}/{good} reserved, {dlq} in DLQ"), Duration::from_secs(30)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.stop_consuming(Duration::from_secs(10)).await?;

    let seen = seen.lock();
    let reserved = seen.values().filter(|e| e.event_type == INVENTORY_RESERVED).count();
    let dlq = bus.admin().describe_topic(&dlq_topic).await.map(|t| t.retained()).unwrap_or(0);
    if let Some(first) = order_ids.first().and_then(|id| seen.get(id)) {
        say(String::new());
        say(format!("correlation chain of {} (correlation {}):", first.partition_key.as_deref().unwrap_or("?"), first.correlation_id));
        let mut chain: Vec<&Envelope> = seen.values().filter(|e| e.correlation_id == first.correlation_id).collect();
        chain.sort_by_key(|e| e.timestamp);
        for e in chain {
            let cause = e.causation_id.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
            say(format!("  {}  {}  caused by {}  from {}", e.envelope_id, e.event_type, cause, e.source));
        }
    }
    say(String::new());
    say(format!("summary: {} orders, {reserved} reserved, {dlq} in {dlq_topic}", args.orders));
    if json {
        println!("{}", serde_json::json!({"orders": args.orders, "reserved": reserved, "dlq": dlq, "bus": bus.backend()}));
    }
    Ok(())
}
