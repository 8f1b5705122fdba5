//! The cache operations and their parameters.
//!
//! | operation | target | params / body | data |
//! |---|---|---|---|
//! | `cache.get` | key | | the value, or null when missing (`metadata.hit`) |
//! | `cache.set` | key | value in the JSON body or `params.value`; `ttl_secs` or `ttl_ms`; `nx` | `{"set": bool}` (false: NX and the key existed) |
//! | `cache.del` | key, or `params.keys` | | `{"deleted": n}` |
//! | `cache.exists` | key, or `params.keys` | | bool for one key, count for `keys` |
//! | `cache.incr` | key | `by` (integer, default 1) | the new integer |
//! | `cache.expire` | key | `ttl_secs` or `ttl_ms` | bool: whether the key existed |
//! | `cache.mget` | | `keys` | values in key order, null when missing |
//! | `cache.mset` | | `entries` object (or the JSON body) | `{"set": n}` |
//!
//! Values are stored as JSON text (`"a"` is stored as `"a"` with quotes, `5` as `5`, so
//! `cache.incr` works on numbers set here). A stored value that is not JSON (written by
//! another client) is returned as a string.

use onex_core::{Body, Error, ProtocolRequest, Result};
use serde_json::{json, Value};

use crate::common::json_type;

/// Operations of the Redis handler.
pub const REDIS_OPERATIONS: [&str; 8] =
    ["cache.get", "cache.set", "cache.del", "cache.exists", "cache.incr", "cache.expire", "cache.mget", "cache.mset"];

/// A time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ttl {
    Secs(u64),
    Millis(u64),
}

/// A parsed cache command.
#[derive(Debug, PartialEq)]
pub(crate) enum CacheOp {
    Get(String),
    Set { key: String, value: String, ttl: Option<Ttl>, nx: bool },
    Del(Vec<String>),
    Exists { keys: Vec<String>, single: bool },
    Incr { key: String, by: i64 },
    Expire { key: String, ttl: Ttl },
    MGet(Vec<String>),
    MSet(Vec<(String, String)>),
}

fn param<'a>(req: &'a ProtocolRequest, name: &str) -> Option<&'a Value> {
    req.params.get(name).filter(|v| !v.is_null())
}

fn key(req: &ProtocolRequest, prefix: &str) -> Result<String> {
    if req.target.is_empty() {
        return Err(Error::rejected(format!("{} needs the key in the target", req.operation)));
    }
    Ok(format!("{prefix}{}", req.target))
}

fn keys(req: &ProtocolRequest, prefix: &str) -> Result<Option<Vec<String>>> {
    match param(req, "keys") {
        None => Ok(None),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|k| {
                k.as_str().map(|k| format!("{prefix}{k}")).ok_or_else(|| {
                    Error::rejected(format!("params.keys of {} must hold strings, found a JSON {}", req.operation, json_type(k)))
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(other) => {
            Err(Error::rejected(format!("params.keys of {} must be a non-empty array of key strings, got {}", req.operation, other)))
        }
    }
}

fn ttl(req: &ProtocolRequest) -> Result<Option<Ttl>> {
    let get = |name: &str| -> Result<Option<u64>> {
        match param(req, name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| Error::rejected(format!("params.{name} must be a positive integer, got {v}"))),
        }
    };
    match (get("ttl_secs")?, get("ttl_ms")?) {
        (Some(_), Some(_)) => Err(Error::rejected("give either params.ttl_secs or params.ttl_ms, not both")),
        (Some(s), None) => Ok(Some(Ttl::Secs(s))),
        (None, Some(ms)) => Ok(Some(Ttl::Millis(ms))),
        (None, None) => Ok(None),
    }
}

/// Parses a request into a cache command; keys get `prefix`.
pub(crate) fn parse(req: &ProtocolRequest, prefix: &str) -> Result<CacheOp> {
    if !matches!(req.params, Value::Null | Value::Object(_)) {
        return Err(Error::rejected(format!("{} params must be a JSON object, got a JSON {}", req.operation, json_type(&req.params))));
    }
    Ok(match req.operation.as_str() {
        "cache.get" => CacheOp::Get(key(req, prefix)?),
        "cache.set" => {
            let value = match (&req.body, param(req, "value")) {
                (Some(Body::Json(v)), _) => v.clone(),
                (Some(Body::Bytes(_)), _) => {
                    return Err(Error::rejected("cache.set stores JSON values; send the value as a JSON body or params.value"))
                }
                (None, Some(v)) => v.clone(),
                (None, None) => return Err(Error::rejected("cache.set needs a value: a JSON body or params.value")),
            };
            let nx = match param(req, "nx") {
                None => false,
                Some(v) => v.as_bool().ok_or_else(|| Error::rejected(format!("params.nx must be true or false, got {v}")))?,
            };
            CacheOp::Set { key: key(req, prefix)?, value: serde_json::to_string(&value)?, ttl: ttl(req)?, nx }
        }
        "cache.del" => CacheOp::Del(match keys(req, prefix)? {
            Some(k) => k,
            None => vec![key(req, prefix)?],
        }),
        "cache.exists" => match keys(req, prefix)? {
            Some(k) => CacheOp::Exists { keys: k, single: false },
            None => CacheOp::Exists { keys: vec![key(req, prefix)?], single: true },
        },
        "cache.incr" => {
            let by = match param(req, "by") {
                None => 1,
                Some(v) => v.as_i64().ok_or_else(|| Error::rejected(format!("params.by must be an integer, got {v}")))?,
            };
            CacheOp::Incr { key: key(req, prefix)?, by }
        }
        "cache.expire" => CacheOp::Expire {
            key: key(req, prefix)?,
            ttl: ttl(req)?.ok_or_else(|| Error::rejected("cache.expire needs params.ttl_secs or params.ttl_ms"))?,
        },
        "cache.mget" => {
            CacheOp::MGet(keys(req, prefix)?.ok_or_else(|| Error::rejected("cache.mget needs params.keys, a non-empty array of keys"))?)
        }
        "cache.mset" => {
            let entries = match (&req.body, param(req, "entries")) {
                (_, Some(Value::Object(m))) | (Some(Body::Json(Value::Object(m))), None) if !m.is_empty() => m,
                _ => return Err(Error::rejected("cache.mset needs params.entries (or a JSON body): a non-empty object of key → value")),
            };
            CacheOp::MSet(entries.iter().map(|(k, v)| Ok((format!("{prefix}{k}"), serde_json::to_string(v)?))).collect::<Result<_>>()?)
        }
        other => return Err(crate::common::unknown_operation("redis", other, &REDIS_OPERATIONS)),
    })
}

/// A stored value back as JSON: parsed when it is JSON text, a string otherwise.
pub(crate) fn decode_value(raw: Option<Vec<u8>>) -> Value {
    match raw {
        None => Value::Null,
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
    }
}

/// Runs one command on a connection.
pub(crate) async fn run(conn: &mut redis::aio::ConnectionManager, op: CacheOp) -> redis::RedisResult<(Value, Option<bool>)> {
    use redis::AsyncCommands as _;
    Ok(match op {
        CacheOp::Get(k) => {
            let v: Option<Vec<u8>> = conn.get(k).await?;
            let hit = v.is_some();
            (decode_value(v), Some(hit))
        }
        CacheOp::Set { key, value, ttl, nx } => {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value);
            match ttl {
                Some(Ttl::Secs(s)) => {
                    cmd.arg("EX").arg(s);
                }
                Some(Ttl::Millis(ms)) => {
                    cmd.arg("PX").arg(ms);
                }
                None => {}
            }
            if nx {
                cmd.arg("NX");
            }
            let reply: Option<String> = cmd.query_async(conn).await?;
            (json!({ "set": reply.is_some() }), None)
        }
        CacheOp::Del(keys) => {
            let n: i64 = conn.del(keys).await?;
            (json!({ "deleted": n }), None)
        }
        CacheOp::Exists { keys, single } => {
            let n: i64 = redis::cmd("EXISTS").arg(keys).query_async(conn).await?;
            (if single { json!(n > 0) } else { json!(n) }, None)
        }
        CacheOp::Incr { key, by } => {
            let n: i64 = conn.incr(key, by).await?;
            (json!(n), None)
        }
        CacheOp::Expire { key, ttl } => {
            let existed: bool = match ttl {
                Ttl::Secs(s) => redis::cmd("EXPIRE").arg(key).arg(s).query_async(conn).await?,
                Ttl::Millis(ms) => redis::cmd("PEXPIRE").arg(key).arg(ms).query_async(conn).await?,
            };
            (json!(existed), None)
        }
        CacheOp::MGet(keys) => {
            let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(keys).query_async(conn).await?;
            (Value::Array(values.into_iter().map(decode_value).collect()), None)
        }
        CacheOp::MSet(entries) => {
            let n = entries.len();
            let () = redis::cmd("MSET").arg(entries).query_async(conn).await?;
            (json!({ "set": n }), None)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: &str, target: &str, params: Value) -> ProtocolRequest {
        ProtocolRequest::new(op, target).with_params(params)
    }

    #[test]
    fn parses_and_prefixes() {
        assert_eq!(parse(&req("cache.get", "k", Value::Null), "p:").unwrap(), CacheOp::Get("p:k".into()));
        assert_eq!(
            parse(&req("cache.set", "k", json!({"value": {"a": 1}, "ttl_ms": 50, "nx": true})), "").unwrap(),
            CacheOp::Set { key: "k".into(), value: "{\"a\":1}".into(), ttl: Some(Ttl::Millis(50)), nx: true }
        );
        assert_eq!(
            parse(&req("cache.del", "", json!({"keys": ["a", "b"]})), "p:").unwrap(),
            CacheOp::Del(vec!["p:a".into(), "p:b".into()])
        );
        assert_eq!(parse(&req("cache.incr", "c", Value::Null), "").unwrap(), CacheOp::Incr { key: "c".into(), by: 1 });
    }

    #[test]
    fn bad_requests_say_what_is_missing() {
        let msg = |r: ProtocolRequest| parse(&r, "").unwrap_err().to_string();
        assert!(msg(req("cache.get", "", Value::Null)).contains("key in the target"));
        assert!(msg(req("cache.set", "k", Value::Null)).contains("needs a value"));
        assert!(msg(req("cache.set", "k", json!({"value": 1, "ttl_secs": 1, "ttl_ms": 1}))).contains("not both"));
        assert!(msg(req("cache.set", "k", json!({"value": 1, "ttl_secs": -1}))).contains("positive integer"));
        assert!(msg(req("cache.expire", "k", Value::Null)).contains("ttl_secs"));
        assert!(msg(req("cache.mget", "", json!({"keys": []}))).contains("non-empty"));
        assert!(msg(req("cache.mget", "", json!({"keys": [1]}))).contains("strings"));
        assert!(msg(req("cache.mset", "", json!({"entries": {}}))).contains("entries"));
        assert!(msg(req("cache.incr", "k", json!({"by": "x"}))).contains("integer"));
        assert!(msg(req("cache.flush", "k", Value::Null)).contains("cache.get"));
        assert!(msg(req("cache.get", "k", json!([1]))).contains("JSON object"));
    }

    #[test]
    fn foreign_values_come_back_as_strings() {
        assert_eq!(decode_value(Some(b"plain text".to_vec())), json!("plain text"));
        assert_eq!(decode_value(Some(b"[1,2]".to_vec())), json!([1, 2]));
        assert_eq!(decode_value(None), Value::Null);
    }
}
