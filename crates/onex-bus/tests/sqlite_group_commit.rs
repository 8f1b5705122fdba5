//! Group commit on the sqlite transport: concurrent publishes share transactions, a publish
//! returns only once its transaction committed (another connection sees it), and one
//! publish's failure inside a shared transaction stays its own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use onex_bus::sqlite::{SqliteConfig, SqliteTransport};
use onex_bus::transport::{ProduceRecord, Transport};
use onex_core::{ErrorKind, Record, TopicSpec};

const PUBLISHERS: usize = 32;
const ROUNDS: usize = 20;

fn rec(key: String, value: String) -> ProduceRecord {
    ProduceRecord::new(Record { key: Some(Bytes::from(key)), value: Bytes::from(value), headers: Default::default() })
}

async fn open(path: &Path) -> Arc<SqliteTransport> {
    SqliteTransport::open(path, SqliteConfig::default()).await.unwrap()
}

/// A transport on a new file with one topic; the directory lives as long as the first value.
async fn fresh(topic: &str, partitions: u32) -> (tempfile::TempDir, PathBuf, Arc<SqliteTransport>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let t = open(&path).await;
    t.admin().create_topic(TopicSpec::new(topic, partitions)).await.unwrap();
    (dir, path, t)
}

/// A second transport on the same file sees everything acknowledged so far.
async fn high_watermarks(path: &Path, topic: &str) -> Vec<u64> {
    let other = open(path).await;
    let info = other.admin().describe_topic(topic).await.unwrap();
    other.close().await.unwrap();
    info.partitions.iter().map(|p| p.high_watermark).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_share_transactions_and_return_after_commit() {
    let (_dir, path, t) = fresh("orders", 4).await;
    let go = Arc::new(tokio::sync::Barrier::new(PUBLISHERS));
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|w| {
            let (t, go) = (t.clone(), go.clone());
            tokio::spawn(async move {
                go.wait().await;
                let mut receipts = Vec::new();
                for i in 0..ROUNDS {
                    let r = t.produce("orders", vec![rec(format!("k{w}"), format!("{w}-{i}"))]).await.unwrap();
                    receipts.push(r.into_iter().next().unwrap());
                }
                receipts
            })
        })
        .collect();
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.extend(task.await.unwrap());
    }
    assert_eq!(receipts.len(), PUBLISHERS * ROUNDS);
    // Every record of one transaction carries that transaction's append time.
    let transactions: BTreeSet<_> = receipts.iter().map(|r| r.timestamp).collect();
    assert!(
        transactions.len() < receipts.len() / 2,
        "{} publishes took {} transactions: concurrent publishes were not grouped",
        receipts.len(),
        transactions.len()
    );
    // Offsets per partition are dense and unique.
    let mut per_partition = vec![Vec::new(); 4];
    for r in &receipts {
        per_partition[r.partition as usize].push(r.offset);
    }
    for (p, offsets) in per_partition.iter_mut().enumerate() {
        offsets.sort_unstable();
        assert_eq!(*offsets, (0..offsets.len() as u64).collect::<Vec<_>>(), "partition {p}");
    }
    let marks = high_watermarks(&path, "orders").await;
    assert_eq!(marks, per_partition.iter().map(|o| o.len() as u64).collect::<Vec<_>>());
    t.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_publish_is_visible_to_another_connection_at_once() {
    let (_dir, path, t) = fresh("orders", 1).await;
    for i in 0..5u64 {
        let r = t.produce("orders", vec![rec("k".into(), format!("v{i}"))]).await.unwrap();
        assert_eq!(r[0].offset, i);
        assert_eq!(high_watermarks(&path, "orders").await, vec![i + 1], "publish {i} returned before its commit");
    }
    t.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_publish_in_a_shared_transaction_fails_alone() {
    let (_dir, path, t) = fresh("orders", 2).await;
    let go = Arc::new(tokio::sync::Barrier::new(3 * 8));
    let mut tasks = Vec::new();
    for w in 0..8 {
        for kind in 0..3 {
            let (t, go) = (t.clone(), go.clone());
            tasks.push(tokio::spawn(async move {
                go.wait().await;
                let mut out = Vec::new();
                for i in 0..10 {
                    let r = match kind {
                        0 => t.produce("orders", vec![rec(format!("k{w}"), format!("{i}"))]).await,
                        1 => t.produce("no-such-topic", vec![rec(format!("k{w}"), format!("{i}"))]).await,
                        _ => {
                            let mut bad = rec(format!("k{w}"), format!("{i}"));
                            bad.partition = Some(7);
                            t.produce("orders", vec![bad]).await
                        }
                    };
                    out.push((kind, r));
                }
                out
            }));
        }
    }
    let mut ok = 0;
    for task in tasks {
        for (kind, r) in task.await.unwrap() {
            match kind {
                0 => {
                    r.unwrap();
                    ok += 1;
                }
                1 => assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound),
                _ => {
                    let e = r.unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::Rejected);
                    assert!(e.to_string().contains("partition 7 does not exist"), "{e}");
                }
            }
        }
    }
    assert_eq!(ok, 80);
    assert_eq!(high_watermarks(&path, "orders").await.iter().sum::<u64>(), 80, "only the good publishes were written");
    t.close().await.unwrap();
}

/// Commits do not checkpoint (the writer's automatic checkpoint is off); a background thread
/// copies the WAL into the database file while the transport stays open and publishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_in_the_background() {
    let (_dir, path, t) = fresh("big", 4).await;
    let value = "v".repeat(1000);
    for batch in 0..100 {
        let records = (0..100).map(|i| rec(format!("k{i}"), format!("{batch}-{i}-{value}"))).collect();
        t.produce("big", records).await.unwrap();
    }
    // 10 MB of records: ~2,500 WAL pages, past the 1,000-page nudge.
    let db_size = || std::fs::metadata(&path).unwrap().len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db_size() < 5_000_000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(db_size() >= 5_000_000, "database file is {} bytes: nothing was checkpointed while open", db_size());
    assert_eq!(high_watermarks(&path, "big").await.iter().sum::<u64>(), 10_000);
    t.close().await.unwrap();
    let reopened = open(&path).await;
    assert_eq!(reopened.admin().describe_topic("big").await.unwrap().partitions.iter().map(|p| p.high_watermark).sum::<u64>(), 10_000);
    reopened.close().await.unwrap();
}

/// Under a steady write load the WAL rewinds: past 20,000 pages the writer checkpoints the
/// little the background thread has not copied, and the next transaction starts the WAL over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_a_steady_load() {
    let (_dir, path, t) = fresh("big", 4).await;
    let wal = path.with_file_name("bus.db-wal");
    let value = "v".repeat(4000);
    let mut largest = 0;
    // ~160 MB of records, twice the 20,000-page (~80 MB) limit, with no pause.
    for batch in 0..400 {
        let records = (0..100).map(|i| rec(format!("k{i}"), format!("{batch}-{i}-{value}"))).collect();
        t.produce("big", records).await.unwrap();
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    eprintln!("largest WAL: {largest} bytes");
    assert!(largest < 100_000_000, "the WAL grew to {largest} bytes");
    assert_eq!(high_watermarks(&path, "big").await.iter().sum::<u64>(), 40_000);
    t.close().await.unwrap();
}

/// A write that fails inside a shared transaction (here a trigger refusing one value) fails
/// every publish of that transaction with the reason, writes none of them, and the writer
/// goes on: the ones that did not share it are stored, and so is everything after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_fails_each_of_its_publishes_and_writes_none() {
    let (_dir, path, t) = fresh("orders", 4).await;
    let other = onex_bus::sqlite::rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON bus_records WHEN NEW.value = CAST('poison' AS BLOB)
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        )
        .unwrap();
    let go = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let (t, go) = (t.clone(), go.clone());
            tokio::spawn(async move {
                go.wait().await;
                let mut out = Vec::new();
                for i in 0..20 {
                    let value = if w == 0 && i == 10 { "poison".to_string() } else { format!("{w}-{i}") };
                    out.push((value.clone(), t.produce("orders", vec![rec(format!("k{w}"), value)]).await));
                }
                out
            })
        })
        .collect();
    let (mut stored, mut failed) = (0u64, 0);
    for task in tasks {
        for (value, r) in task.await.unwrap() {
            assert!(value != "poison" || r.is_err(), "the poisoned record was stored");
            match r {
                Ok(_) => stored += 1,
                Err(e) => {
                    failed += 1;
                    assert_eq!(e.kind(), ErrorKind::Unavailable, "{value}: {e}");
                    assert!(e.to_string().contains("nothing of the batch was written"), "{e}");
                }
            }
        }
    }
    assert!(failed >= 1, "the poisoned publish failed");
    assert_eq!(stored + failed, 320);
    assert_eq!(high_watermarks(&path, "orders").await.iter().sum::<u64>(), stored, "failed publishes wrote nothing");
    let after = t.produce("orders", vec![rec("k".into(), "after".into())]).await.unwrap();
    assert_eq!(after.len(), 1);
    t.close().await.unwrap();
}
