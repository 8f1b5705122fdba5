//! A consumer process killed with SIGKILL on an idempotent subscription (sqlite bus, sqlite
//! idempotency table in the same file) does not lose the event and does not repeat its
//! side effect, a row in PostgreSQL:
//!
//! 1. process A claims the event and dies (kill -9) inside the handler, its PostgreSQL
//!    transaction uncommitted;
//! 2. process B waits out A's lease (the engine's 60 s claim lease), handles the event
//!    (one row), completes the claim and is killed before its offset commit;
//! 3. process C gets the event again (offset uncommitted), finds it completed and skips it.
//!
//! The rows for the event: exactly one. Children are this test binary re-invoked on
//! `child_process_entry` with `ONEX_IDEM_CHILD=<mode>`.
//!
//! `cargo test -p onex-bus --all-features --test idempotency_crash`

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use onex_bus::idempotency::SqliteIdempotencyStore;
use onex_bus::BusConfig;
use onex_core::{handler_fn, Delivery, Envelope, EventBus, Subscription, SubscriptionOptions};

const CHILD_ENV: &str = "ONEX_IDEM_CHILD";
const DB_ENV: &str = "ONEX_IDEM_DB";
const TOPIC_ENV: &str = "ONEX_IDEM_TOPIC";
const RUN_ENV: &str = "ONEX_IDEM_RUN";
const GROUP: &str = "effects";
const TABLE: &str = "onex_test_idem_effects";

fn postgres_url() -> String {
    std::env::var("ONEX_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn pg() -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await.expect("PostgreSQL at 127.0.0.1:5432 db test");
    tokio::spawn(conn);
    client
}

// ---------------------------------------------------------------- child side

/// Not a test on its own: the entry point of the child processes. Without the environment
/// variable it returns at once.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else { return };
    let db = std::env::var(DB_ENV).expect("db path");
    let topic = std::env::var(TOPIC_ENV).expect("topic");
    let run = std::env::var(RUN_ENV).expect("run id");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(child(&mode, &db, &topic, &run));
    std::process::exit(0);
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

async fn child(mode: &str, db: &str, topic: &str, run: &str) {
    let store = Arc::new(SqliteIdempotencyStore::open(db).await.expect("idempotency store"));
    let bus =
        onex_bus::connect_with(&format!("sqlite://{db}"), BusConfig { idempotency: Some(store), ..Default::default() }).await.expect("bus");
    let client = Arc::new(tokio::sync::Mutex::new(pg().await));
    let (mode_h, run_h) = (mode.to_string(), run.to_string());
    let handler = handler_fn(move |d: Delivery| {
        let (client, mode, run) = (client.clone(), mode_h.clone(), run_h.clone());
        async move {
            let id = d.envelope.envelope_id.to_string();
            let mut client = client.lock().await;
            if mode == "crash" {
                // The side effect in a transaction that the kill leaves uncommitted.
                let tx = client.transaction().await.expect("begin");
                tx.execute(&format!("INSERT INTO {TABLE} (run_id, envelope_id) VALUES ($1, $2)"), &[&run, &id]).await.expect("insert");
                say(&format!("IN_HANDLER {id}"));
                std::future::pending::<()>().await;
            }
            client.execute(&format!("INSERT INTO {TABLE} (run_id, envelope_id) VALUES ($1, $2)"), &[&run, &id]).await.expect("insert");
            say(&format!("HANDLED {id}"));
            Ok(())
        }
    });
    let mut options = SubscriptionOptions { idempotent: true, ..Default::default() };
    if mode == "handle-then-hang" {
        // Never commit the offset on our own: the parent kills us before that.
        options.commit_interval = Duration::from_secs(3600);
    } else {
        options.commit_interval = Duration::from_millis(20);
    }
    let id = bus.subscribe(Subscription::new(topic, GROUP, handler).with_options(options)).await.expect("subscribe");
    bus.start().await.expect("start");
    say("READY");
    if mode == "verify" {
        let stats = bus.stats(id).expect("stats");
        let end: u64 = bus.admin().describe_topic(topic).await.unwrap().partitions.iter().map(|p| p.high_watermark).sum();
        loop {
            let mut committed = 0;
            for p in bus.admin().describe_topic(topic).await.unwrap().partitions {
                committed += bus.transport().committed(GROUP, topic, p.partition).await.unwrap().unwrap_or(p.low_watermark);
            }
            if committed >= end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        use std::sync::atomic::Ordering::Relaxed;
        say(&format!("STATS handled={} skipped={}", stats.handled.load(Relaxed), stats.duplicates_skipped.load(Relaxed)));
        bus.stop_consuming(Duration::from_secs(10)).await.unwrap();
        return;
    }
    std::future::pending::<()>().await;
}

// ---------------------------------------------------------------- parent side

struct ChildProc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ChildProc {
    fn spawn(mode: &str, db: &str, topic: &str, run: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_process_entry", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, mode)
            .env(DB_ENV, db)
            .env(TOPIC_ENV, topic)
            .env(RUN_ENV, run)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProc { child, lines }
    }

    /// Waits for a line starting with `prefix` (other lines, such as the test harness's, are skipped).
    fn expect(&self, prefix: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!("child did not print {prefix:?} within {within:?}: {e}"),
            }
        }
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        self.child.wait().expect("reap");
    }
}

fn claim_state(db: &str, id: &str) -> Option<String> {
    let conn = rusqlite::Connection::open(db).ok()?;
    conn.query_row("SELECT state FROM bus_idem_entries WHERE domain = ?1 AND id = ?2", [GROUP, id], |r| r.get(0)).ok()
}

async fn rows(client: &tokio_postgres::Client, run: &str, id: &str) -> i64 {
    client.query_one(&format!("SELECT count(*) FROM {TABLE} WHERE run_id = $1 AND envelope_id = $2"), &[&run, &id]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_handler_then_restarts_leave_exactly_one_effect() {
    let client = pg().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (run_id TEXT NOT NULL, envelope_id TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.db").display().to_string();
    let topic = format!("idem-crash-{}", uuid::Uuid::new_v4().simple());
    let run = uuid::Uuid::new_v4().to_string();

    let bus = onex_bus::connect(&format!("sqlite://{db}")).await.unwrap();
    let env = Envelope::new("payments.captured.v1", &serde_json::json!({"amount": 42})).unwrap();
    let id = env.envelope_id.to_string();
    let receipt = bus.publish_envelope(&env, &topic).await.unwrap();

    // 1. Killed inside the handler: the claim is held, the effect was never committed.
    let a = ChildProc::spawn("crash", &db, &topic, &run);
    assert_eq!(a.expect("IN_HANDLER", Duration::from_secs(60)), format!("IN_HANDLER {id}"));
    a.kill9();
    assert_eq!(claim_state(&db, &id).as_deref(), Some("claimed"), "the dead process's claim remains until its lease ends");
    assert_eq!(rows(&client, &run, &id).await, 0);

    // 2. After the lease expires the event is handled; killed before committing its offset.
    let b = ChildProc::spawn("handle-then-hang", &db, &topic, &run);
    assert_eq!(b.expect("HANDLED", Duration::from_secs(150)), format!("HANDLED {id}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while claim_state(&db, &id).as_deref() != Some("done") {
        assert!(std::time::Instant::now() < deadline, "claim never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.kill9();
    let committed = bus.transport().committed(GROUP, &topic, receipt.partition).await.unwrap();
    assert!(committed.is_none_or(|o| o <= receipt.offset), "B was killed before committing the offset: {committed:?}");
    assert_eq!(rows(&client, &run, &id).await, 1);

    // 3. Redelivered (nothing committed), recognised as done, skipped.
    let c = ChildProc::spawn("verify", &db, &topic, &run);
    let stats = c.expect("STATS", Duration::from_secs(60));
    c.child.wait_with_output().ok();
    assert_eq!(stats, "STATS handled=0 skipped=1", "C got the redelivery and skipped it as a duplicate");
    assert_eq!(rows(&client, &run, &id).await, 1, "the side effect exists exactly once");
}
