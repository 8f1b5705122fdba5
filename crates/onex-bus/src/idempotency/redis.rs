//! The Redis idempotency store: `SET NX PX` claims, completion as a value with a TTL.

use std::time::Duration;

use async_trait::async_trait;
use onex_core::{ClaimOutcome, Error, IdempotencyStore, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::{check_duration, check_key, millis};

/// Claim: `SET NX PX` (taken when there is no key; an expired lease is a key Redis already
/// removed), and in the same script tell a completed key from one in progress.
const CLAIM: &str = r"
if redis.call('SET', KEYS[1], 'claimed', 'NX', 'PX', ARGV[1]) then return 'claimed' end
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 5) == 'done:' then return 'duplicate' end
return 'in_progress'";

/// Release only a claim, never a completion.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == 'claimed' then return redis.call('DEL', KEYS[1]) end
return 0";

/// Delete the given keys that are completions older than ARGV[1] (ms since the epoch).
const CLEANUP: &str = r"
local n = 0
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and string.sub(v, 1, 5) == 'done:' and tonumber(string.sub(v, 6)) < tonumber(ARGV[1]) then
    redis.call('DEL', k)
    n = n + 1
  end
end
return n";

/// Idempotency in Redis. Keys are `{prefix}{domain length}:{domain}:{id}` (default prefix
/// `onex:idem:`); a claim is `claimed` with the lease as its TTL, a completion is
/// `done:<ms since epoch>` kept for `completed_ttl` (default 7 days).
#[derive(Clone)]
pub struct RedisIdempotencyStore {
    conn: ConnectionManager,
    prefix: String,
    completed_ttl: Duration,
    claim: Script,
    release: Script,
    cleanup: Script,
}

impl std::fmt::Debug for RedisIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIdempotencyStore").field("prefix", &self.prefix).field("completed_ttl", &self.completed_ttl).finish()
    }
}

fn redis_err(what: &str, e: redis::RedisError) -> Error {
    let err = if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        Error::connection(format!("idempotency {what}: Redis connection failed"))
    } else {
        Error::unavailable(format!("idempotency {what}: Redis answered an error"))
    };
    err.with_source(e)
}

impl RedisIdempotencyStore {
    /// Connects to `url` (`redis://host:port/db`; credentials are never shown) with the
    /// default prefix and a 7-day retention of completions.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, "onex:idem:", Duration::from_secs(7 * 24 * 3600)).await
    }

    /// Connects with a key prefix and how long completions are kept.
    pub async fn connect_with(url: &str, prefix: &str, completed_ttl: Duration) -> Result<Self> {
        check_duration("completed_ttl", completed_ttl)?;
        let client = redis::Client::open(url)
            .map_err(|e| Error::config(format!("invalid Redis URL for the idempotency store: {e}")).with("url", url))?;
        // Bounded connection attempts: the store reports an unreachable server instead of
        // retrying for a long time; the manager still reconnects later on its own.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_factor(2)
            .set_max_delay(1000)
            .set_connection_timeout(Duration::from_secs(5))
            .set_response_timeout(Duration::from_secs(10));
        let conn = client.get_connection_manager_with_config(config).await.map_err(|e| redis_err("connect", e).with("url", url))?;
        Ok(RedisIdempotencyStore {
            conn,
            prefix: prefix.to_string(),
            completed_ttl,
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            cleanup: Script::new(CLEANUP),
        })
    }

    fn key(&self, domain: &str, id: &str) -> String {
        format!("{}{}:{domain}:{id}", self.prefix, domain.len())
    }
}

#[async_trait]
impl IdempotencyStore for RedisIdempotencyStore {
    async fn claim(&self, domain: &str, id: &str, lease: Duration) -> Result<ClaimOutcome> {
        check_key(domain, id)?;
        check_duration("lease", lease)?;
        let mut conn = self.conn.clone();
        let answer: String =
            self.claim.key(self.key(domain, id)).arg(millis(lease)).invoke_async(&mut conn).await.map_err(|e| redis_err("claim", e))?;
        match answer.as_str() {
            "claimed" => Ok(ClaimOutcome::Claimed),
            "duplicate" => Ok(ClaimOutcome::Duplicate),
            "in_progress" => Ok(ClaimOutcome::InProgress),
            other => Err(Error::protocol(format!("idempotency claim script answered {other:?}"))),
        }
    }

    async fn complete(&self, domain: &str, id: &str) -> Result<()> {
        check_key(domain, id)?;
        let mut conn = self.conn.clone();
        let value = format!("done:{}", chrono::Utc::now().timestamp_millis());
        redis::cmd("SET")
            .arg(self.key(domain, id))
            .arg(value)
            .arg("PX")
            .arg(millis(self.completed_ttl))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| redis_err("complete", e))
    }

    async fn release(&self, domain: &str, id: &str) -> Result<()> {
        check_key(domain, id)?;
        let mut conn = self.conn.clone();
        self.release.key(self.key(domain, id)).invoke_async::<i64>(&mut conn).await.map_err(|e| redis_err("release", e))?;
        Ok(())
    }

    /// Expired claims are removed by Redis itself (their TTL is the lease); this removes
    /// completions older than `ttl`, scanning the prefix in batches.
    async fn cleanup_expired(&self, ttl: Duration) -> Result<u64> {
        check_duration("ttl", ttl)?;
        let mut conn = self.conn.clone();
        let cutoff = chrono::Utc::now().timestamp_millis() - millis(ttl);
        let pattern = format!("{}*", self.prefix.replace('*', "\\*").replace('?', "\\?").replace('[', "\\["));
        let mut cursor: u64 = 0;
        let mut removed = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_err("cleanup scan", e))?;
            if !keys.is_empty() {
                let mut inv = self.cleanup.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                let n: u64 = inv.arg(cutoff).invoke_async(&mut conn).await.map_err(|e| redis_err("cleanup", e))?;
                removed += n;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}
