//! Every idempotency store against the same contract: of 8 concurrent claims exactly one is
//! `Claimed`; an expired lease can be claimed again; complete → `Duplicate`; release → can be
//! claimed at once; cleanup removes old completions and expired claims; bad input is refused.
//! PostgreSQL (127.0.0.1:5432, db `test`) and Redis (127.0.0.1:6379) are the machine's real
//! servers (override with ONEX_TEST_POSTGRES_URL / ONEX_TEST_REDIS_URL).
//!
//! `cargo test -p onex-bus --all-features --test idempotency_stores`

use std::sync::Arc;
use std::time::Duration;

use onex_bus::idempotency::{MemoryIdempotencyStore, PostgresIdempotencyStore, RedisIdempotencyStore, SqliteIdempotencyStore};
use onex_core::{ClaimOutcome, ErrorKind, IdempotencyStore};

const LONG: Duration = Duration::from_secs(60);

fn postgres_url() -> String {
    std::env::var("ONEX_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("ONEX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A domain of its own per test, so tests share a table or a Redis without interfering.
fn domain(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

async fn eight_concurrent_claims_one_wins(store: Arc<dyn IdempotencyStore>) {
    let d = domain("race");
    let id = uuid::Uuid::now_v7().to_string();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, d, id, barrier) = (store.clone(), d.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.claim(&d, &id, LONG).await.expect("claim")
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| **o == ClaimOutcome::Claimed).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == ClaimOutcome::InProgress).count(), 7, "{outcomes:?}");
}

async fn complete_then_duplicate_and_release_then_claimable(store: Arc<dyn IdempotencyStore>) {
    let d = domain("lifecycle");
    assert_eq!(store.claim(&d, "a", LONG).await.unwrap(), ClaimOutcome::Claimed);
    assert_eq!(store.claim(&d, "a", LONG).await.unwrap(), ClaimOutcome::InProgress);
    store.complete(&d, "a").await.unwrap();
    assert_eq!(store.claim(&d, "a", LONG).await.unwrap(), ClaimOutcome::Duplicate);
    store.release(&d, "a").await.unwrap();
    assert_eq!(store.claim(&d, "a", LONG).await.unwrap(), ClaimOutcome::Duplicate, "release never undoes a completion");

    assert_eq!(store.claim(&d, "b", LONG).await.unwrap(), ClaimOutcome::Claimed);
    store.release(&d, "b").await.unwrap();
    assert_eq!(store.claim(&d, "b", LONG).await.unwrap(), ClaimOutcome::Claimed, "released: claimable at once");

    let other = domain("lifecycle-other");
    assert_eq!(store.claim(&other, "a", LONG).await.unwrap(), ClaimOutcome::Claimed, "domains (groups) are independent");
    store.release(&d, "never-claimed").await.unwrap();
}

/// Real time for the durable stores (their clocks are the server's or the wall clock): the
/// lease is 200 ms and the test waits 2.5× that, so load only makes the lease more expired.
async fn expired_lease_can_be_claimed_again(store: Arc<dyn IdempotencyStore>) {
    let d = domain("lease");
    assert_eq!(store.claim(&d, "x", Duration::from_millis(200)).await.unwrap(), ClaimOutcome::Claimed);
    assert_eq!(store.claim(&d, "y", LONG).await.unwrap(), ClaimOutcome::Claimed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.claim(&d, "x", LONG).await.unwrap(), ClaimOutcome::Claimed, "the holder died: its lease expired");
    assert_eq!(store.claim(&d, "y", LONG).await.unwrap(), ClaimOutcome::InProgress, "an unexpired lease still holds");
}

async fn cleanup_removes_old_completions_and_expired_claims(store: Arc<dyn IdempotencyStore>) {
    let d = domain("cleanup");
    store.complete(&d, "done").await.unwrap();
    assert_eq!(store.claim(&d, "short", Duration::from_millis(100)).await.unwrap(), ClaimOutcome::Claimed);
    assert_eq!(store.claim(&d, "held", LONG).await.unwrap(), ClaimOutcome::Claimed);
    assert!(store.cleanup_expired(Duration::from_secs(3600)).await.is_ok());
    assert_eq!(store.claim(&d, "done", LONG).await.unwrap(), ClaimOutcome::Duplicate, "a recent completion survives a 1 h ttl");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let removed = store.cleanup_expired(Duration::from_millis(100)).await.unwrap();
    assert!(removed >= 1, "the old completion (and, where the store keeps them, the expired claim) removed: {removed}");
    assert_eq!(store.claim(&d, "done", LONG).await.unwrap(), ClaimOutcome::Claimed, "completion forgotten after cleanup");
    assert_eq!(store.claim(&d, "held", LONG).await.unwrap(), ClaimOutcome::InProgress, "a live claim survives cleanup");
}

async fn bad_input_is_refused(store: Arc<dyn IdempotencyStore>) {
    let long = "x".repeat(600);
    let cases = [
        (store.claim("", "id", LONG).await.unwrap_err(), "domain is empty"),
        (store.claim("g", "", LONG).await.unwrap_err(), "id is empty"),
        (store.claim("g", &long, LONG).await.unwrap_err(), "id is 600 bytes"),
        (store.claim("g", "id", Duration::ZERO).await.unwrap_err(), "lease is 0s"),
        (store.complete("", "id").await.unwrap_err(), "domain is empty"),
        (store.release("g", "").await.unwrap_err(), "id is empty"),
        (store.cleanup_expired(Duration::ZERO).await.unwrap_err(), "ttl is 0s"),
    ];
    for (err, needle) in cases {
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains(needle), "{err} should say {needle:?}");
    }
}

macro_rules! store_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn eight_concurrent_claims_one_wins() {
                super::eight_concurrent_claims_one_wins($make.await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn complete_then_duplicate_and_release_then_claimable() {
                super::complete_then_duplicate_and_release_then_claimable($make.await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn expired_lease_can_be_claimed_again() {
                super::expired_lease_can_be_claimed_again($make.await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cleanup_removes_old_completions_and_expired_claims() {
                super::cleanup_removes_old_completions_and_expired_claims($make.await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_input_is_refused() {
                super::bad_input_is_refused($make.await).await
            }
        }
    };
}

async fn memory() -> Arc<dyn IdempotencyStore> {
    Arc::new(MemoryIdempotencyStore::new())
}

async fn sqlite() -> Arc<dyn IdempotencyStore> {
    let dir = tempfile::tempdir().unwrap().keep();
    Arc::new(SqliteIdempotencyStore::open(dir.join("idem.db")).await.expect("sqlite store"))
}

async fn postgres() -> Arc<dyn IdempotencyStore> {
    Arc::new(
        PostgresIdempotencyStore::connect_with_table(&postgres_url(), "onex_idempotency_test")
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 db test"),
    )
}

async fn redis() -> Arc<dyn IdempotencyStore> {
    Arc::new(
        RedisIdempotencyStore::connect_with(&redis_url(), "onex-test:idem:", Duration::from_secs(3600))
            .await
            .expect("Redis at 127.0.0.1:6379"),
    )
}

store_suite!(memory_store, memory());
store_suite!(sqlite_store, sqlite());
store_suite!(postgres_store, postgres());
store_suite!(redis_store, redis());

/// The memory store runs on tokio's clock: leases are exact on a paused clock.
#[tokio::test(start_paused = true)]
async fn memory_lease_expiry_on_a_paused_clock() {
    let store = MemoryIdempotencyStore::new();
    assert_eq!(store.claim("g", "e", Duration::from_secs(30)).await.unwrap(), ClaimOutcome::Claimed);
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(store.claim("g", "e", Duration::from_secs(30)).await.unwrap(), ClaimOutcome::InProgress);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(store.claim("g", "e", Duration::from_secs(30)).await.unwrap(), ClaimOutcome::Claimed);
    store.complete("g", "e").await.unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(store.cleanup_expired(Duration::from_secs(11)).await.unwrap(), 0);
    assert_eq!(store.cleanup_expired(Duration::from_secs(10)).await.unwrap(), 1);
    assert!(store.is_empty());
}

/// Two store handles on one SQLite file (two connections, as two processes would have):
/// claims race on the file's write lock and exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_claims_race_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let stores: Vec<Arc<dyn IdempotencyStore>> =
        vec![Arc::new(SqliteIdempotencyStore::open(&path).await.unwrap()), Arc::new(SqliteIdempotencyStore::open(&path).await.unwrap())];
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move { store.claim("g", "same", LONG).await.unwrap() })
        })
        .collect();
    let mut claimed = 0;
    for t in tasks {
        claimed += usize::from(t.await.unwrap() == ClaimOutcome::Claimed);
    }
    assert_eq!(claimed, 1);
}

#[tokio::test]
async fn connection_errors_say_what_failed() {
    let err = PostgresIdempotencyStore::connect("postgres://nobody:s3cret-pw@127.0.0.1:1/test").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(!err.report().contains("s3cret-pw"), "{}", err.report());
    let err = PostgresIdempotencyStore::connect_with_table(&postgres_url(), "Robert'); DROP TABLE x;--").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = RedisIdempotencyStore::connect("redis://127.0.0.1:1/").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let err = RedisIdempotencyStore::connect("not a url").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let err = SqliteIdempotencyStore::open("/proc/definitely/not/here.db").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}
