//! What only the embedded registry has: the sqlite file it shares with the bus.

use std::sync::Arc;

use onex_core::{CompatibilityMode, ErrorKind, SchemaRegistry, SchemaType, VersionSpec};
use onex_schema::SqliteSchemaRegistry;

/// The tables in the file, as sqlite lists them.
fn tables(path: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<Vec<String>, _>>().unwrap()
}

fn meta(path: &std::path::Path, key: &str) -> Option<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT value FROM onex_meta WHERE key = ?1", [key], |r| r.get(0)).ok()
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &content).unwrap();
    let err = SqliteSchemaRegistry::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Initialization);
    assert!(err.to_string().contains("is not an SQLite database"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
    assert!(!dir.path().join("notes.txt-wal").exists());
}

#[tokio::test]
async fn registry_tables_are_prefixed_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onex.db");
    let info = {
        let registry = SqliteSchemaRegistry::open(&path).await.unwrap();
        registry.set_compatibility(None, CompatibilityMode::Full).await.unwrap();
        registry.register("orders-value", r#"{"type": "object"}"#, SchemaType::Json).await.unwrap()
    };
    let registry = SqliteSchemaRegistry::open(&path).await.unwrap();
    assert_eq!(registry.get("orders-value", VersionSpec::Latest).await.unwrap(), info);
    assert_eq!(registry.get_compatibility(None).await.unwrap(), CompatibilityMode::Full);
    assert!(dir.path().join("onex.db-wal").exists(), "WAL mode");
    let names = tables(&path);
    assert!(names.iter().all(|t| t.starts_with("schema_") || t == "onex_meta" || t == "sqlite_sequence"), "{names:?}");
    assert!(names.contains(&"onex_meta".to_string()) && names.contains(&"schema_versions".to_string()), "{names:?}");
}

#[tokio::test]
async fn two_handles_on_one_file_register_concurrently_without_losing_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onex.db");
    let a = Arc::new(SqliteSchemaRegistry::open(&path).await.unwrap());
    let b = Arc::new(SqliteSchemaRegistry::open(&path).await.unwrap());
    a.set_compatibility(Some("c-value"), CompatibilityMode::None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10u32 {
        let r = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            r.register("c-value", &serde_json::json!({"type": "string", "maxLength": i + 1}).to_string(), SchemaType::Json).await.unwrap()
        }));
    }
    let mut versions: Vec<u32> = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap().version);
    }
    versions.sort();
    assert_eq!(versions, (1..=10).collect::<Vec<_>>());
    assert_eq!(b.versions("c-value").await.unwrap().len(), 10);
}

#[tokio::test]
async fn invalid_subjects_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let registry = SqliteSchemaRegistry::open(dir.path().join("onex.db")).await.unwrap();
    for bad in ["", "line\nbreak"] {
        let err = registry.register(bad, "{}", SchemaType::Json).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected);
        assert!(err.to_string().contains("invalid subject"), "{err}");
    }
}

#[tokio::test]
async fn shares_the_file_with_the_bus_tables_and_meta() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onex.db");
    {
        // What the bus's sqlite transport may have created first.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE onex_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO onex_meta VALUES ('bus_schema_version', '3');
             CREATE TABLE bus_records (topic TEXT, value BLOB);
             INSERT INTO bus_records VALUES ('orders', x'7b7d');",
        )
        .unwrap();
    }
    let registry = SqliteSchemaRegistry::open(&path).await.unwrap();
    registry.register("orders-value", "{}", SchemaType::Json).await.unwrap();
    assert_eq!(meta(&path, "bus_schema_version").as_deref(), Some("3"));
    assert_eq!(meta(&path, "schema_registry_version").as_deref(), Some("1"));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let records: i64 = conn.query_row("SELECT count(*) FROM bus_records", [], |r| r.get(0)).unwrap();
    assert_eq!(records, 1);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn tables_from_a_newer_onex_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onex.db");
    drop(SqliteSchemaRegistry::open(&path).await.unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE onex_meta SET value = '99' WHERE key = 'schema_registry_version'", [])
        .unwrap();
    let err = SqliteSchemaRegistry::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Initialization);
    assert!(err.to_string().contains("version 99") && err.to_string().contains("upgrade onex"), "{err}");
}
