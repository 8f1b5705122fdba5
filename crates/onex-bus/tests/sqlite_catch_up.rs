//! A consumer catching up on a backlog reads its partitions with two connections at once:
//! every record must still arrive exactly once, in offset order per partition.

use std::collections::BTreeMap;
use std::time::Duration;

use onex_bus::sqlite::{SqliteConfig, SqliteTransport};
use onex_bus::{BusConfig, TransportBus};
use onex_core::{handler_fn, Delivery, Envelope, EventBus, Subscription};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_on_four_partitions_arrives_once_and_in_order() {
    const EVENTS: u64 = 4_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let transport = SqliteTransport::open(dir.path().join("onex.db"), SqliteConfig::default()).await.expect("open");
    let bus = TransportBus::with_config(transport, BusConfig { default_partitions: 4, ..BusConfig::default() });
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    for i in 0..EVENTS {
        let env = Envelope::new("test.backlog.v1", &serde_json::json!({ "seq": i }))
            .expect("envelope")
            .with_partition_key(format!("key-{}", i % 37));
        let receipt = bus.publish_envelope(&env, "backlog").await.expect("publish");
        *expected.entry(receipt.partition).or_default() += 1;
    }
    assert_eq!(expected.len(), 4, "the keys spread over all four partitions: {expected:?}");

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = handler_fn(move |d: Delivery| {
        let tx = tx.clone();
        async move {
            let seq = d.envelope.payload_json()?["seq"].as_u64().unwrap_or(u64::MAX);
            tx.send((d.partition, d.offset, seq)).ok();
            Ok(())
        }
    });
    let mut sub = Subscription::new("backlog", "catch-up", handler);
    sub.options.max_poll_records = 64; // many reads, each a full one: the split path
    bus.subscribe(sub).await.expect("subscribe");
    bus.start().await.expect("start");

    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..EVENTS {
        let (partition, offset, seq) =
            tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("every event arrives").expect("channel open");
        let want = next.entry(partition).or_default();
        assert_eq!(offset, *want, "partition {partition}: offsets arrive in order, none skipped or repeated");
        *want += 1;
        assert!(seen.insert(seq), "event {seq} delivered twice");
    }
    assert_eq!(next, expected, "every partition delivered completely");
    bus.stop_consuming(Duration::from_secs(10)).await.expect("stop");
    assert!(rx.try_recv().is_err(), "nothing delivered beyond the published events");
}
