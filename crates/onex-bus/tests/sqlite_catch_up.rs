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

mod read_ahead {
    //! The lanes read ahead of the consumer; a seek or a rebalance must drop what they read.

    use std::collections::BTreeMap;
    use std::time::Duration;

    use bytes::Bytes;
    use onex_bus::sqlite::{SqliteConfig, SqliteTransport};
    use onex_bus::transport::{PollEvent, ProduceRecord, Transport, TransportConsumer};
    use onex_core::{Record, StartFrom, TopicSpec};

    async fn filled(topic: &str, partitions: u32, per_partition: u64) -> (tempfile::TempDir, std::sync::Arc<SqliteTransport>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let t = SqliteTransport::open(dir.path().join("bus.db"), SqliteConfig::default()).await.expect("open");
        t.admin().create_topic(TopicSpec::new(topic, partitions)).await.expect("create");
        let records = (0..per_partition * partitions as u64)
            .map(|i| {
                let mut r = ProduceRecord::new(Record { key: None, value: Bytes::from(i.to_string()), headers: Default::default() });
                r.partition = Some((i % partitions as u64) as u32);
                r
            })
            .collect();
        t.produce(topic, records).await.expect("produce");
        (dir, t)
    }

    async fn assigned(c: &mut Box<dyn TransportConsumer>) -> Vec<u32> {
        for _ in 0..50 {
            if let PollEvent::Assigned(ps) = c.poll(10, Duration::from_millis(100)).await.expect("poll") {
                return ps;
            }
        }
        panic!("no assignment");
    }

    /// Checks that `records` continue each partition's run in `next` without a gap or repeat.
    fn follow(next: &mut BTreeMap<u32, u64>, records: &[onex_bus::transport::ConsumedRecord]) {
        for r in records {
            let want = next.entry(r.partition).or_default();
            assert_eq!(r.offset, *want, "partition {}: records continue where the consumer is", r.partition);
            *want += 1;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_seek_drops_what_was_read_ahead() {
        let (_dir, t) = filled("seekable", 2, 300).await;
        let mut c = t.consumer("g", "seekable", StartFrom::Earliest).await.expect("consumer");
        assert_eq!(assigned(&mut c).await, vec![0, 1]);
        let mut next = BTreeMap::new();
        let PollEvent::Records(first) = c.poll(20, Duration::from_secs(1)).await.expect("poll") else { panic!("records expected") };
        assert_eq!(first.len(), 20, "a full read: the lanes start reading ahead");
        follow(&mut next, &first);
        tokio::time::sleep(Duration::from_millis(50)).await; // let the lanes queue batches
        c.seek(0, 3).await.expect("seek");
        next.insert(0, 3);
        while next.get(&0).copied().unwrap_or(0) < 300 || next.get(&1).copied().unwrap_or(0) < 300 {
            match c.poll(20, Duration::from_secs(1)).await.expect("poll") {
                PollEvent::Records(rs) => {
                    assert!(rs.len() <= 20, "at most max_poll_records per poll");
                    follow(&mut next, &rs);
                }
                PollEvent::Idle => panic!("records still waiting, at {next:?}"),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(matches!(c.poll(20, Duration::from_millis(100)).await.expect("poll"), PollEvent::Idle), "nothing beyond the end");
        c.close().await.expect("close");
    }

    /// The lanes keep what they read until the engine is done with it (so that its memory is
    /// freed where it was allocated): once the consumer has caught up, nothing stays kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_read_ahead_are_released_once_the_consumer_catches_up() {
        let (_dir, t) = filled("released", 2, 500).await;
        let mut c = t.consumer("g", "released", StartFrom::Earliest).await.expect("consumer");
        assert_eq!(assigned(&mut c).await, vec![0, 1]);
        let (mut next, mut bodies) = (BTreeMap::new(), Vec::new());
        while next.get(&0).copied().unwrap_or(0) < 500 || next.get(&1).copied().unwrap_or(0) < 500 {
            match c.poll(20, Duration::from_secs(1)).await.expect("poll") {
                PollEvent::Records(rs) => {
                    follow(&mut next, &rs);
                    bodies.extend(rs.iter().map(|r| std::sync::Arc::downgrade(&r.record)));
                }
                other => panic!("records still waiting at {next:?}, got {other:?}"),
            }
        }
        assert_eq!(bodies.len(), 1000);
        assert!(matches!(c.poll(20, Duration::from_millis(100)).await.expect("poll"), PollEvent::Idle), "nothing beyond the end");
        let held = bodies.iter().filter(|b| b.upgrade().is_some()).count();
        assert_eq!(held, 0, "records still held after the consumer caught up and dropped them all");
        c.close().await.expect("close");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rebalance_mid_backlog_stops_the_revoked_partitions_at_once() {
        let (_dir, t) = filled("shared", 4, 500).await;
        let mut a = t.consumer("g", "shared", StartFrom::Earliest).await.expect("consumer a");
        assert_eq!(assigned(&mut a).await, vec![0, 1, 2, 3]);
        let mut next_a = BTreeMap::new();
        let PollEvent::Records(first) = a.poll(40, Duration::from_secs(1)).await.expect("poll") else { panic!("records expected") };
        follow(&mut next_a, &first);
        tokio::time::sleep(Duration::from_millis(50)).await; // batches of all four partitions queued
        let mut b = t.consumer("g", "shared", StartFrom::Earliest).await.expect("consumer b");
        let (mut revoked, mut b_parts) = (Vec::new(), Vec::new());
        let mut next_b = BTreeMap::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while b_parts.is_empty() {
            assert!(std::time::Instant::now() < deadline, "b never got partitions; a revoked {revoked:?}");
            match a.poll(40, Duration::from_millis(20)).await.expect("poll a") {
                PollEvent::Records(rs) => {
                    assert!(rs.iter().all(|r| !revoked.contains(&r.partition)), "a record of a revoked partition after Revoked");
                    follow(&mut next_a, &rs);
                }
                PollEvent::Revoked(ps) => {
                    a.revoke_complete(&ps).await.expect("release");
                    revoked.extend(ps);
                }
                _ => {}
            }
            if let PollEvent::Assigned(ps) = b.poll(40, Duration::from_millis(20)).await.expect("poll b") {
                b_parts = ps;
            }
        }
        assert_eq!(b_parts, revoked, "b gets what a gave up");
        // Nothing was committed: b starts the revoked partitions at 0; a goes on with the rest.
        let done = |n: &BTreeMap<u32, u64>, ps: &[u32]| ps.iter().all(|p| n.get(p).copied().unwrap_or(0) >= 500);
        let kept: Vec<u32> = (0..4).filter(|p| !revoked.contains(p)).collect();
        while !done(&next_a, &kept) || !done(&next_b, &b_parts) {
            assert!(std::time::Instant::now() < deadline, "stuck at a {next_a:?}, b {next_b:?}");
            if let PollEvent::Records(rs) = a.poll(40, Duration::from_millis(20)).await.expect("poll a") {
                assert!(rs.iter().all(|r| kept.contains(&r.partition)), "a reads only what it kept");
                follow(&mut next_a, &rs);
            }
            if let PollEvent::Records(rs) = b.poll(40, Duration::from_millis(20)).await.expect("poll b") {
                assert!(rs.iter().all(|r| b_parts.contains(&r.partition)), "b reads only its partitions");
                follow(&mut next_b, &rs);
            }
        }
        a.close().await.expect("close a");
        b.close().await.expect("close b");
    }
}
