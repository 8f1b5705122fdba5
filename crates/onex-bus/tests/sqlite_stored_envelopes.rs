//! Published envelopes are stored field by field (not as CloudEvents header text): readers
//! get every field back and the exact record on request; envelopes that would not encode
//! back to themselves, and plain records, keep their headers; a damaged stored envelope is
//! survived; a version-1 file is migrated and its records still read.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use onex_bus::sqlite::rusqlite;
use onex_bus::sqlite::{SqliteConfig, SqliteTransport, BUS_SCHEMA_VERSION};
use onex_bus::transport::{ConsumedRecord, PollEvent, ProduceRecord, Transport, TransportConsumer};
use onex_core::envelope::encode_record;
use onex_core::{Envelope, StartFrom, TopicSpec};

async fn open(path: &Path) -> Arc<SqliteTransport> {
    SqliteTransport::open(path, SqliteConfig::default()).await.unwrap()
}

async fn read_all(t: &SqliteTransport, topic: &str, n: usize) -> Vec<ConsumedRecord> {
    let mut c: Box<dyn TransportConsumer> = t.consumer("g", topic, StartFrom::Earliest).await.unwrap();
    let mut out = Vec::new();
    for _ in 0..100 {
        if let PollEvent::Records(rs) = c.poll(100, Duration::from_millis(100)).await.unwrap() {
            out.extend(rs);
        }
        if out.len() >= n {
            break;
        }
    }
    c.close().await.unwrap();
    out.sort_by_key(|r| r.offset);
    out
}

/// The first byte of each stored `headers` blob, in offset order (`None` for NULL).
fn header_markers(path: &Path) -> Vec<Option<u8>> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut s = c.prepare("SELECT substr(headers, 1, 1) FROM bus_records ORDER BY id").unwrap();
    s.query_map([], |r| r.get::<_, Option<Vec<u8>>>(0)).unwrap().map(|v| v.unwrap().map(|b| b[0])).collect()
}

fn full() -> Envelope {
    let parent = Envelope::new("test.parent.v1", &serde_json::json!({"n": 1})).unwrap();
    let mut env = Envelope::new("test.full.v1", &serde_json::json!({"order": 7}))
        .unwrap()
        .with_source("orders-ü")
        .with_partition_key("order-7")
        .with_header("x-tenant", "acme")
        .caused_by(&parent);
    env.schema_version = Some("2".into());
    env.metadata.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    env.metadata.tracestate = Some("vendor=1".into());
    env.metadata.tags.insert("tier".into(), "gold".into());
    env.retry_count = 2;
    env
}

#[tokio::test]
async fn published_envelopes_read_back_whole_and_as_their_exact_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let t = open(&path).await;
    t.admin().create_topic(TopicSpec::new("events", 1)).await.unwrap();
    let (whole, minimal) = (full(), Envelope::new("test.minimal.v1", &1).unwrap());
    // A user header named like a CloudEvents one does not survive encoding: kept as headers.
    let odd = Envelope::new("test.odd.v1", &2).unwrap().with_header("ce_type", "spoof");
    t.produce_envelope("events", &whole).await.unwrap();
    t.produce_shared_envelope("events", Arc::new(minimal.clone())).await.unwrap();
    t.produce_envelope("events", &odd).await.unwrap();
    let plain = onex_core::Record { key: None, value: Bytes::from_static(b"{}"), headers: Default::default() };
    t.produce_one("events", ProduceRecord::new(plain.clone())).await.unwrap();
    t.close().await.unwrap();

    let markers = header_markers(&path);
    assert_eq!(markers[..2], [Some(0), Some(0)], "envelopes stored field by field");
    assert!(matches!(markers[2], Some(b) if b != 0), "a lossy envelope keeps its headers: {markers:?}");
    assert_eq!(markers[3], None, "a record without headers stores NULL");

    let t = open(&path).await;
    let rs = read_all(&t, "events", 4).await;
    assert_eq!(rs.len(), 4);
    for (r, env) in rs.iter().zip([whole, minimal]) {
        assert_eq!(r.record.envelope().map(|e| &**e), Some(&env));
        assert_eq!(**r.record, encode_record(&env), "the exact record on request");
        assert_eq!(r.record.key.as_deref(), env.partition_key.as_deref().map(str::as_bytes));
    }
    assert_eq!(**rs[2].record, encode_record(&odd), "the lossy one reads as it was encoded");
    assert_eq!(**rs[3].record, plain);
    t.close().await.unwrap();
}

#[tokio::test]
async fn a_damaged_stored_envelope_is_delivered_as_key_and_value_and_its_neighbours_are_not_affected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let t = open(&path).await;
    t.admin().create_topic(TopicSpec::new("events", 1)).await.unwrap();
    let envs: Vec<Envelope> = (0..3).map(|i| Envelope::new("test.seq.v1", &i).unwrap().with_partition_key("k")).collect();
    for env in &envs {
        t.produce_envelope("events", env).await.unwrap();
    }
    t.close().await.unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    let changed = c
        .execute("UPDATE bus_records SET headers = substr(headers, 1, length(headers) - 3) WHERE id = (SELECT id FROM bus_records ORDER BY id LIMIT 1 OFFSET 1)", [])
        .unwrap();
    assert_eq!(changed, 1);
    drop(c);
    let t = open(&path).await;
    let rs = read_all(&t, "events", 3).await;
    assert_eq!(rs.len(), 3);
    assert_eq!(rs[0].record.envelope().map(|e| &**e), Some(&envs[0]));
    assert_eq!(rs[2].record.envelope().map(|e| &**e), Some(&envs[2]));
    assert_eq!(rs[1].record.envelope(), None, "left to the engine, which decodes what is left");
    assert!(rs[1].record.headers.is_empty());
    assert_eq!(rs[1].record.value, envs[1].payload, "the value survives");
    assert_eq!(rs[1].record.key.as_deref(), Some(&b"k"[..]), "the key survives");
    t.close().await.unwrap();
}

#[tokio::test]
async fn a_version_1_file_is_migrated_and_its_header_records_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let env = full();
    let t = open(&path).await;
    t.admin().create_topic(TopicSpec::new("events", 1)).await.unwrap();
    // What version 1 stored for every envelope: its CloudEvents headers.
    t.produce_one("events", ProduceRecord::new(encode_record(&env))).await.unwrap();
    t.close().await.unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute("UPDATE onex_meta SET value = '1' WHERE key = 'bus_schema_version'", []).unwrap();
    drop(c);

    let t = open(&path).await;
    t.produce_envelope("events", &env).await.unwrap();
    let rs = read_all(&t, "events", 2).await;
    t.close().await.unwrap();
    assert_eq!(rs.len(), 2);
    for r in &rs {
        assert_eq!(r.record.envelope().map(|e| &**e), Some(&env), "offset {}", r.offset);
        assert_eq!(**r.record, encode_record(&env), "offset {}", r.offset);
    }
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: String = c.query_row("SELECT value FROM onex_meta WHERE key = 'bus_schema_version'", [], |r| r.get(0)).unwrap();
    assert_eq!(v, BUS_SCHEMA_VERSION.to_string());
    assert_eq!(BUS_SCHEMA_VERSION, 3);
    assert_eq!(header_markers(&path)[1], Some(0));
}
