//! PostgresHandler against the machine's PostgreSQL (127.0.0.1:5432, db `test`).
//! Each test uses its own table name so tests run in parallel.

use std::time::Duration;

use onex_core::{ConnectionConfig, ErrorKind, OperationConfig, ProtocolHandler, ProtocolRequest};
use onex_handlers::PostgresHandler;
use serde_json::{json, Value};

mod classification;
mod secrets;

pub(crate) const URL: &str = "postgres://root@127.0.0.1:5432/test";

pub(crate) async fn handler() -> PostgresHandler {
    let h = PostgresHandler::new("test-pg");
    h.initialize(ConnectionConfig::new(URL)).await.expect("PostgreSQL at 127.0.0.1:5432 (db test, user root)");
    h
}

pub(crate) fn table(prefix: &str) -> String {
    format!("onex_{prefix}_{}", uuid::Uuid::new_v4().simple())
}

pub(crate) fn op() -> OperationConfig {
    OperationConfig::default()
}

pub(crate) async fn run(h: &PostgresHandler, operation: &str, sql: &str, params: Value) -> onex_core::Result<Value> {
    h.execute(ProtocolRequest::new(operation, sql).with_params(params), &op()).await.map(|r| r.data)
}

#[tokio::test]
async fn query_binds_params_by_type() {
    let h = handler().await;
    let rows = run(&h, "db.query", "select $1::int as n, $2::text as s, $3 as untyped", json!([1, "x", "y"])).await.unwrap();
    assert_eq!(rows, json!([{"n": 1, "s": "x", "untyped": "y"}]));
    let resp = h
        .execute(ProtocolRequest::new("db.query", "select generate_series(1, $1::int) as i").with_params(json!([3])), &op())
        .await
        .unwrap();
    assert_eq!(resp.data, json!([{"i": 1}, {"i": 2}, {"i": 3}]));
    assert_eq!(resp.metadata["row_count"], 3);
}

#[tokio::test]
async fn every_type_round_trips() {
    let h = handler().await;
    let t = table("types");
    run(
        &h,
        "db.execute",
        &format!(
            "create table {t} (id int primary key, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, num numeric, num_big numeric, num_scale numeric(10,2),
             tx text, vc varchar(20), bc char(3), b bool, u uuid, d date, tm time, ts timestamp, tstz timestamptz, j json, jb jsonb, by bytea,
             ai int4[], at text[], an numeric[], ats timestamptz[], nul text)"
        ),
        Value::Null,
    )
    .await
    .unwrap();
    let row = json!({
        "id": 1, "i2": -32768, "i4": 2147483647, "i8": 9007199254740993i64, "f4": 1.5, "f8": 0.1, "num": 12.5,
        "num_big": "123456789012345678901234567890.123456789", "num_scale": 7.1,
        "tx": "héllo 🌍", "vc": "v", "bc": "ab ", "b": true, "u": "6f1c3c4e-7d43-4bd7-9c3e-2f4a0e1d2b3c", "d": "2024-02-29",
        "tm": "13:14:15.123456", "ts": "2024-02-29T13:14:15.123456", "tstz": "2024-02-29T12:14:15.123456Z",
        "j": {"a": [1, "x", null]}, "jb": {"nested": {"k": true}}, "by": "AAEC/w==",
        "ai": [1, null, 3], "at": ["a", "b c"], "an": [1.25, "99999999999999999999.5"], "ats": ["2024-01-01T00:00:00Z"], "nul": null
    });
    let cols = [
        "id",
        "i2",
        "i4",
        "i8",
        "f4",
        "f8",
        "num",
        "num_big",
        "num_scale",
        "tx",
        "vc",
        "bc",
        "b",
        "u",
        "d",
        "tm",
        "ts",
        "tstz",
        "j",
        "jb",
        "by",
        "ai",
        "at",
        "an",
        "ats",
        "nul",
    ];
    let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    let insert = format!("insert into {t} ({}) values ({})", cols.join(", "), placeholders.join(", "));
    let params: Vec<Value> = cols.iter().map(|c| row[*c].clone()).collect();
    assert_eq!(run(&h, "db.execute", &insert, Value::Array(params)).await.unwrap(), json!({"affected": 1}));
    let nulls: Vec<Value> = cols.iter().enumerate().map(|(i, _)| if i == 0 { json!(2) } else { Value::Null }).collect();
    run(&h, "db.execute", &insert, Value::Array(nulls)).await.unwrap();
    let back = run(&h, "db.query", &format!("select * from {t} order by id"), Value::Null).await.unwrap();
    let mut expected = row.clone();
    expected["num_scale"] = json!(7.1); // numeric(10,2) stores 7.10: the same value as a number
    for c in cols {
        assert_eq!(back[0][c], expected[c], "column {c}");
        if c != "id" {
            assert_eq!(back[1][c], Value::Null, "NULL in column {c}");
        }
    }
    run(&h, "db.execute", &format!("drop table {t}"), Value::Null).await.unwrap();
}

#[tokio::test]
async fn numeric_edge_values() {
    let h = handler().await;
    let rows = run(
        &h,
        "db.query",
        "select 'NaN'::numeric as nan, 0::numeric as zero, -0.000123::numeric as small, 1e30::numeric as big, $1::numeric as p",
        json!(["-12.3400"]),
    )
    .await
    .unwrap();
    assert_eq!(rows[0]["nan"], "NaN");
    assert_eq!(rows[0]["zero"], 0);
    assert_eq!(rows[0]["small"], -0.000123);
    assert_eq!(rows[0]["big"], 1e30);
    assert_eq!(rows[0]["p"], -12.34);
    let rows = run(&h, "db.query", "select 'Infinity'::float8 as inf, 'NaN'::float4 as nan", Value::Null).await.unwrap();
    assert_eq!(rows[0], json!({"inf": "Infinity", "nan": "NaN"}));
}

#[tokio::test]
async fn execute_reports_affected_rows() {
    let h = handler().await;
    let t = table("exec");
    run(&h, "db.execute", &format!("create table {t} (id int)"), Value::Null).await.unwrap();
    run(&h, "db.execute", &format!("insert into {t} select generate_series(1, 5)"), Value::Null).await.unwrap();
    let resp = h
        .execute(ProtocolRequest::new("db.execute", format!("update {t} set id = id + 10 where id > $1")).with_params(json!([2])), &op())
        .await
        .unwrap();
    assert_eq!(resp.data, json!({"affected": 3}));
    assert_eq!(resp.metadata["affected_rows"], 3);
    run(&h, "db.execute", &format!("drop table {t}"), Value::Null).await.unwrap();
}

#[tokio::test]
async fn injection_text_is_stored_as_text() {
    let h = handler().await;
    let t = table("inject");
    run(&h, "db.execute", &format!("create table {t} (v text)"), Value::Null).await.unwrap();
    let evil = format!("'; drop table {t}; --");
    run(&h, "db.execute", &format!("insert into {t} (v) values ($1)"), json!([evil])).await.unwrap();
    let rows = run(&h, "db.query", &format!("select v from {t}"), Value::Null).await.unwrap();
    assert_eq!(rows, json!([{"v": evil}]), "the table still exists and holds the text");
    run(&h, "db.execute", &format!("drop table {t}"), Value::Null).await.unwrap();
}

#[tokio::test]
async fn multiple_statements_are_rejected_clearly() {
    let h = handler().await;
    let e = run(&h, "db.query", "select 1; select 2", Value::Null).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.to_string().contains("one SQL statement per call"), "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn parameter_mismatches_are_rejected_before_running() {
    let h = handler().await;
    let e = run(&h, "db.query", "select $1::int as n", json!(["abc"])).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.to_string().contains("$1") && e.to_string().contains("int4"), "{e}");
    let e = run(&h, "db.query", "select $1::int as n", json!([])).await.unwrap_err();
    assert!(e.to_string().contains("1 parameter(s) but 0"), "{e}");
    let e = run(&h, "db.query", "select 1", json!({"a": 1})).await.unwrap_err();
    assert!(e.to_string().contains("JSON array"), "{e}");
    let e = run(&h, "db.query", "  ", Value::Null).await.unwrap_err();
    assert!(e.to_string().contains("SQL text"), "{e}");
    let e = run(&h, "db.select", "select 1", Value::Null).await.unwrap_err();
    assert!(e.to_string().contains("db.query"), "{e}");
}

#[tokio::test]
async fn transaction_commits_all_or_rolls_back_all() {
    let h = handler().await;
    let t = table("tx");
    run(&h, "db.execute", &format!("create table {t} (id int primary key, v text)"), Value::Null).await.unwrap();
    let ok = run(
        &h,
        "db.transaction",
        "",
        json!([
            {"sql": format!("insert into {t} values ($1, $2)"), "params": [1, "a"]},
            {"sql": format!("insert into {t} values ($1, $2)"), "params": [2, "b"]},
            {"sql": format!("select count(*)::int as n from {t}")}
        ]),
    )
    .await
    .unwrap();
    assert_eq!(ok, json!([{"affected": 1}, {"affected": 1}, {"rows": [{"n": 2}]}]));
    let e = run(
        &h,
        "db.transaction",
        "",
        json!({"statements": [
            {"sql": format!("insert into {t} values ($1, $2)"), "params": [3, "c"]},
            {"sql": format!("update {t} set v = 'changed'")},
            {"sql": format!("insert into {t} values ($1, $2)"), "params": [1, "dup"]}
        ], "isolation_level": "serializable"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    let ctx = e.context().unwrap();
    assert_eq!((ctx["statement_index"].as_str(), ctx["sqlstate"].as_str()), ("2", "23505"));
    let rows = run(&h, "db.query", &format!("select id, v from {t} order by id"), Value::Null).await.unwrap();
    assert_eq!(rows, json!([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]), "nothing of the failed transaction stays");
    let e = run(&h, "db.transaction", "", json!({"statements": [{"sql": format!("insert into {t} values (9, 'x')")}], "read_only": true}))
        .await
        .unwrap_err();
    assert_eq!(e.context().unwrap()["sqlstate"], "25006", "{e}");
    run(&h, "db.execute", &format!("drop table {t}"), Value::Null).await.unwrap();
}

#[tokio::test]
async fn timeout_cancels_the_statement_on_the_server() {
    let h = handler().await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let op = OperationConfig { timeout: Some(Duration::from_millis(300)), ..op() };
    let started = std::time::Instant::now();
    let e = h.execute(ProtocolRequest::new("db.query", format!("select pg_sleep(20) /* {marker} */")), &op).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(took >= Duration::from_millis(290) && took < Duration::from_secs(5), "{took:?}");
    let mut still_running = 1;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rows = run(
            &h,
            "db.query",
            "select count(*)::int as n from pg_stat_activity where query like $1 and state = 'active' and pid <> pg_backend_pid()",
            json!([format!("%pg_sleep(20) /* {marker}%")]),
        )
        .await
        .unwrap();
        still_running = rows[0]["n"].as_i64().unwrap();
        if still_running == 0 {
            break;
        }
    }
    assert_eq!(still_running, 0, "the server-side statement was cancelled");
}

#[tokio::test]
async fn describe_and_health() {
    let h = handler().await;
    let d = h.describe().unwrap();
    assert_eq!(d.handler_type, "postgres");
    assert_eq!(
        (d.connection["host"].as_str(), d.connection["port"].as_str(), d.connection["database"].as_str()),
        ("127.0.0.1", "5432", "test")
    );
    assert_eq!(d.connection.len(), 3, "host/port/db only: {:?}", d.connection);
    let pool = d.pool.unwrap();
    assert_eq!(pool.max_size, 16);
    assert!(pool.size >= 1);
    let health = h.health_check().await.unwrap();
    assert!(health.healthy && health.latency_ms > 0.0, "{health:?}");
    h.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(h.describe().unwrap_err().kind(), ErrorKind::InvalidState);
}

#[tokio::test]
async fn statement_cache_prepares_once_per_connection() {
    let h = PostgresHandler::new("cache");
    let mut cfg = ConnectionConfig::new(URL);
    cfg.pool.max = 1;
    h.initialize(cfg).await.unwrap();
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let sql = format!("select $1::int + 1 as n /* {marker} */");
    for i in 0..3 {
        let rows = run(&h, "db.query", &sql, json!([i])).await.unwrap();
        assert_eq!(rows[0]["n"], i + 1);
    }
    // One connection: its session shows the named statement prepared exactly once.
    let rows = run(
        &h,
        "db.query",
        "select count(*)::int as n from pg_prepared_statements where statement like $1",
        json!([format!("%{marker}%")]),
    )
    .await
    .unwrap();
    assert_eq!(rows[0]["n"], 1);
}

#[tokio::test]
async fn response_limit_stops_reading_rows() {
    let h = PostgresHandler::new("limit");
    let mut cfg = ConnectionConfig::new(URL);
    cfg.pool.max = 1;
    h.initialize(cfg).await.unwrap();
    let op = OperationConfig { max_response_bytes: Some(50_000), ..op() };
    let started = std::time::Instant::now();
    let e = h
        .execute(ProtocolRequest::new("db.query", "select repeat('x', 1000) as v from generate_series(1, 2000000)"), &op)
        .await
        .unwrap_err();
    match &e {
        onex_core::Error::TooLarge { size, limit, .. } => assert!(*size > 50_000 && *size < 52_000 && *limit == 50_000, "{e}"),
        other => panic!("expected TooLarge, got {other}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "stopped early: {:?}", started.elapsed());
    // The one pooled connection was retired and the statement cancelled: the next call works.
    let rows = h.execute(ProtocolRequest::new("db.query", "select 1 as one"), &op).await.unwrap();
    assert_eq!(rows.data, json!([{"one": 1}]));
    let small = h.execute(ProtocolRequest::new("db.query", "select repeat('x', 10) as v from generate_series(1, 3)"), &op).await.unwrap();
    assert_eq!((small.metadata["row_count"].as_u64(), small.metadata["bytes"].as_u64()), (Some(3), Some(30)));
}
