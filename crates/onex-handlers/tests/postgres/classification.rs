//! DESIGN §5 PostgreSQL table: one row per SQLSTATE class, raised by the real server.

use onex_core::{ConnectionConfig, ErrorKind, ProtocolHandler};
use onex_handlers::PostgresHandler;
use serde_json::Value;

use super::{handler, run, table};

async fn raise(h: &PostgresHandler, sqlstate: &str) -> onex_core::Error {
    let sql = format!("do $$ begin raise exception 'injected %', '{sqlstate}' using errcode = '{sqlstate}'; end $$");
    run(h, "db.execute", &sql, Value::Null).await.unwrap_err()
}

#[tokio::test]
async fn sqlstate_classes() {
    let h = handler().await;
    // (sqlstate, kind, retryable, trips breaker)
    let rows = [
        ("08006", ErrorKind::Unavailable, true, true),
        ("08001", ErrorKind::Connection, true, true),
        ("53300", ErrorKind::Unavailable, true, true),
        ("53100", ErrorKind::Unavailable, true, true),
        ("57P01", ErrorKind::Unavailable, true, true),
        ("57014", ErrorKind::Timeout, true, true),
        ("58030", ErrorKind::Unavailable, true, true),
        ("40001", ErrorKind::Rejected, true, false),
        ("40P01", ErrorKind::Rejected, true, false),
        ("22003", ErrorKind::Rejected, false, false),
        ("23505", ErrorKind::Rejected, false, false),
        ("28000", ErrorKind::Authentication, false, false),
        ("42501", ErrorKind::Rejected, false, false),
    ];
    for (code, kind, retryable, trips) in rows {
        let e = raise(&h, code).await;
        assert_eq!(e.kind(), kind, "{code}: {e}");
        assert_eq!(e.is_retryable(), retryable, "retryable of {code}");
        assert_eq!(e.trips_breaker(), trips, "trips of {code}");
        assert_eq!(e.context().unwrap()["sqlstate"], code);
        assert!(e.to_string().contains(&format!("injected {code}")), "{e}");
    }
}

#[tokio::test]
async fn real_data_syntax_and_constraint_errors() {
    let h = handler().await;
    let e = run(&h, "db.query", "select 1 / $1::int as x", serde_json::json!([0])).await.unwrap_err();
    assert_eq!((e.kind(), e.context().unwrap()["sqlstate"].as_str()), (ErrorKind::Rejected, "22012"));
    let e = run(&h, "db.query", "select * from onex_surely_missing_table", Value::Null).await.unwrap_err();
    assert_eq!((e.kind(), e.context().unwrap()["sqlstate"].as_str()), (ErrorKind::Rejected, "42P01"));
    assert!(!e.is_retryable());
    let t = table("uniq");
    run(&h, "db.execute", &format!("create table {t} (email text constraint {t}_email unique)"), Value::Null).await.unwrap();
    run(&h, "db.execute", &format!("insert into {t} values ($1)"), serde_json::json!(["a@x"])).await.unwrap();
    let e = run(&h, "db.execute", &format!("insert into {t} values ($1)"), serde_json::json!(["a@x"])).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(!e.is_retryable() && !e.trips_breaker());
    let ctx = e.context().unwrap();
    assert_eq!((ctx["sqlstate"].as_str(), ctx["constraint"].clone()), ("23505", format!("{t}_email")));
    run(&h, "db.execute", &format!("drop table {t}"), Value::Null).await.unwrap();
}

#[tokio::test]
async fn unknown_role_is_authentication_and_refused_port_is_connection() {
    let h = PostgresHandler::new("t");
    let e = h.initialize(ConnectionConfig::new("postgres://onex_no_such_role@127.0.0.1:5432/test")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Initialization);
    assert_eq!(e.context().unwrap()["kind"], "authentication", "{e}");
    let e = h.initialize(ConnectionConfig::new("postgres://root@127.0.0.1:1/test")).await.unwrap_err();
    assert_eq!(e.context().unwrap()["kind"], "connection", "{e}");
    let e = h.initialize(ConnectionConfig::new("mysql://root@127.0.0.1/test")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = h.initialize(ConnectionConfig::new("postgres://root@127.0.0.1:5432/onex_no_such_db")).await.unwrap_err();
    assert_eq!(e.context().unwrap()["kind"], "not_found", "{e}");
}
