//! `onex demo`: the order → inventory → payment flow on the embedded durable bus. Shows both
//! patterns (events between services, an HTTP call through a handler), a batch publish (the
//! orders, a receipt each), correlation chains, a retry absorbing a gateway failure, and a
//! poison order going to the DLQ, summarised, "fixed" and replayed.

mod gateway;
mod services;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use onex_bus::{BusDlqHandler, BusPublisher, TransportBus};
use onex_core::dlq::ReprocessOptions;
use onex_core::{DlqHandler, Envelope, Error, EventBus, ProtocolHandler, Result, Subscription, SubscriptionOptions};
use parking_lot::Mutex;

use crate::cli::DemoArgs;

pub(crate) const ORDERS: &str = "orders";
pub(crate) const INVENTORY: &str = "inventory";
pub(crate) const PAYMENTS: &str = "payments";
pub(crate) const ORDER_CREATED: &str = "omninode.orders.event.order_created.v1";
pub(crate) const INVENTORY_RESERVED: &str = "omninode.inventory.event.inventory_reserved.v1";
pub(crate) const PAYMENT_PROCESSED: &str = "omninode.payments.event.payment_processed.v1";
/// The demo's own bus file, recreated on every run.
const DEMO_DB: &str = ".onex/demo.db";

/// Every envelope the demo saw, by id, to print chains.
pub(crate) type Seen = Arc<Mutex<BTreeMap<uuid::Uuid, Envelope>>>;

pub(crate) fn record(seen: &Seen, env: &Envelope) {
    seen.lock().insert(env.envelope_id, env.clone());
}

fn count(seen: &Seen, event_type: &str) -> usize {
    seen.lock().values().filter(|e| e.event_type == event_type).count()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        if tokio::time::Instant::now() > deadline {
            return Err(Error::timeout(format!("demo flow incomplete: {what}"), Duration::from_secs(60)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The bus of the demo: `--bus` when given, else a fresh `sqlite://.onex/demo.db`.
async fn demo_bus(bus_url: Option<&str>) -> Result<(String, Arc<TransportBus>)> {
    let url = match bus_url {
        Some(u) => u.to_string(),
        None => {
            std::fs::create_dir_all(".onex").map_err(|e| Error::config(format!("cannot create .onex/ for the demo bus: {e}")))?;
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{DEMO_DB}{suffix}"));
            }
            format!("sqlite://{DEMO_DB}")
        }
    };
    let bus = onex_bus::connect(&url).await?;
    Ok((url, bus))
}

fn print_chain(seen: &Seen, root: uuid::Uuid, say: &dyn Fn(String)) {
    let seen = seen.lock();
    let Some(first) = seen.get(&root) else { return };
    say(format!("correlation chain of {} (correlation {}):", first.partition_key.as_deref().unwrap_or("?"), first.correlation_id));
    let mut chain: Vec<&Envelope> = seen.values().filter(|e| e.correlation_id == first.correlation_id).collect();
    chain.sort_by_key(|e| e.timestamp);
    for e in chain {
        let cause = e.causation_id.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        say(format!("  {}  {:<48} caused by {:<36}  from {}", e.envelope_id, e.event_type, cause, e.source));
    }
}

/// Runs the demo.
pub async fn run(bus_url: Option<&str>, args: DemoArgs, json: bool) -> Result<()> {
    if args.orders < 3 {
        return Err(Error::config("--orders must be at least 3 (order 3 is the poison one)"));
    }
    let (url, bus) = demo_bus(bus_url).await?;
    let say = move |line: String| {
        if !json {
            println!("{line}");
        }
    };
    say(format!("onex demo on {} ({} backend)\n", onex_core::sanitize::sanitize(&url), bus.backend()));

    let (gateway_url, gateway) = gateway::start("order-002").await?;
    let http = services::payment_client(&gateway_url).await?;
    say(format!("payment gateway on {gateway_url} (fails the first charge of order-002 with 503)"));

    let seen: Seen = Arc::default();
    let fixed = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicU64::new(0));
    let mut fast = SubscriptionOptions::default();
    fast.retry.initial_backoff = Duration::from_millis(20);
    fast.commit_interval = Duration::from_millis(20);
    let subs = [
        Subscription::new(ORDERS, "inventory-service", services::inventory(bus.clone(), seen.clone(), fixed.clone())),
        Subscription::new(INVENTORY, "payment-service", services::payment(bus.clone(), seen.clone(), http.clone(), retries.clone())),
        Subscription::new(PAYMENTS, "demo-watcher", services::watcher(seen.clone())),
        Subscription::new(format!("{ORDERS}.dlq"), "demo-watcher", services::watcher(seen.clone())),
    ];
    for sub in subs {
        bus.subscribe(sub.with_options(fast.clone())).await?;
    }
    bus.start().await?;

    // OrderService: each order starts its own flow (own correlation id); order 3 is malformed.
    // The orders go out as one batch: one send, a receipt (or an error) per order.
    let mut orders = Vec::new();
    for i in 1..=args.orders {
        let order_id = format!("order-{i:03}");
        let env = if i == 3 {
            Envelope::new(ORDER_CREATED, &serde_json::json!({"order_id": order_id, "sku": "sku-3", "quantity": "three"}))?
        } else {
            Envelope::new(ORDER_CREATED, &services::OrderCreated { order_id: order_id.clone(), sku: format!("sku-{i}"), quantity: i })?
        }
        .with_source("order-service")
        .with_partition_key(&order_id);
        record(&seen, &env);
        orders.push(env);
    }
    let publisher = BusPublisher::builder(bus.clone()).source("order-service").build()?;
    let mut batch_published = 0;
    for (i, (env, receipt)) in orders.iter().zip(publisher.publish_envelopes(&orders, Some(ORDERS)).await).enumerate() {
        let receipt = receipt?;
        batch_published += 1;
        let order_id = env.partition_key.as_deref().unwrap_or("?");
        let note = if i == 2 { " (malformed quantity)" } else { "" };
        say(format!(
            "OrderService published {order_id}{note}  corr={}  → {}[{}]@{}",
            env.correlation_id, receipt.topic, receipt.partition, receipt.offset
        ));
    }
    say(format!("  ({batch_published} orders in one batch: BusPublisher::publish_envelopes)"));
    let order_ids: Vec<uuid::Uuid> = orders.iter().map(|e| e.envelope_id).collect();
    let good = args.orders as usize - 1;
    let dlq_topic = format!("{ORDERS}.dlq");
    let dlq = BusDlqHandler::new(bus.clone());
    wait_for("payments of the well-formed orders", || count(&seen, PAYMENT_PROCESSED) >= good).await?;
    wait_for("the poison order in the DLQ", || count(&seen, onex_core::dlq::DLQ_EVENT_TYPE) >= 1).await?;

    say(String::new());
    print_chain(&seen, order_ids[0], &say);
    let summary = dlq.summary().await?;
    say(String::new());
    say(format!(
        "DLQ summary: {} record(s), status {:?}; top topics {:?}; top error kinds {:?}",
        summary.total,
        summary.alert_status,
        summary.top_topics.iter().map(|c| format!("{}={}", c.name, c.count)).collect::<Vec<_>>(),
        summary.top_error_kinds.iter().map(|c| format!("{}={}", c.name, c.count)).collect::<Vec<_>>()
    ));
    let dead = dlq.list(&dlq_topic, &Default::default(), 10).await?;
    for e in &dead {
        say(format!(
            "  {}@{}: {} failed in group {} ({}): {}",
            e.dlq_topic, e.offset, e.record.topic, e.record.group, e.record.error_kind, e.record.reason
        ));
    }

    // The fix ships: InventoryService now reads quantities written as words. Replay the DLQ.
    fixed.store(true, Ordering::SeqCst);
    let report = dlq.reprocess(&dlq_topic, ReprocessOptions::default()).await?;
    say(format!("\nfix deployed; replayed {} record(s) from {dlq_topic} (quarantined {})", report.replayed, report.quarantined));
    wait_for("payment of the replayed order", || count(&seen, PAYMENT_PROCESSED) > good).await?;
    bus.stop_consuming(Duration::from_secs(10)).await?;
    http.shutdown(Duration::from_secs(5)).await?;
    gateway.abort();

    say(String::new());
    print_chain(&seen, order_ids[2], &say);
    let reserved = count(&seen, INVENTORY_RESERVED);
    let payments = count(&seen, PAYMENT_PROCESSED);
    let retried = retries.load(Ordering::SeqCst);
    say(format!(
        "\nsummary: {} orders, {reserved} reserved, {payments} paid, {} dead-lettered then replayed, {retried} gateway failure(s) absorbed by retry",
        args.orders, summary.total
    ));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "orders": args.orders, "reserved": reserved, "payments": payments, "dlq": summary.total,
                "replayed": report.replayed, "retries_absorbed": retried, "bus": bus.backend(),
                "batch_published": batch_published,
            })
        );
    }
    Ok(())
}
