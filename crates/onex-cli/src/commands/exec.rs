//! `onex exec TYPE --url URL OPERATION [ARGS...]`: one call through a managed handler
//! (retry, breaker, timeout applied), printing the `ProtocolResponse`.
//!
//! ```text
//! onex exec http --url http://127.0.0.1:8080 GET /users/{id} --params '{"id": 42}'
//! onex exec http --url http://127.0.0.1:8080 POST /orders --body '{"sku": "a"}' --header 'X-Tenant:t1'
//! onex exec postgres --url postgres://root@127.0.0.1/test db.query 'select $1::int as n' --params '[1]'
//! onex exec redis --url redis://127.0.0.1 cache.set greeting '"hello"' --params '{"ttl_secs": 60}'
//! onex exec redis --url redis://127.0.0.1 cache.mget a b c
//! onex exec graphql --url http://127.0.0.1:8080/graphql graphql.query '{ users { id } }'
//! ```
//!
//! ARGS: the first is the target (HTTP path, SQL, cache key, GraphQL document). `cache.set`
//! takes the value as the second (JSON, or a plain string when it does not parse);
//! `cache.del`/`cache.exists`/`cache.mget` take several keys. Whether a call may be retried
//! after it was sent follows the operation: GET/HEAD/OPTIONS/PUT/DELETE, `db.query`, cache
//! reads/sets/deletes and `graphql.query` are idempotent; POST, PATCH, `db.execute`,
//! `db.transaction`, `cache.incr` and `graphql.mutation` are not.

use std::collections::BTreeMap;
use std::time::Duration;

use onex_core::{Body, ConnectionConfig, Error, OperationConfig, ProtocolHandler, ProtocolRequest, ProtocolResponse, Result};
use serde_json::Value;

/// Arguments of `onex exec`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// Handler type: http, postgres, redis or graphql.
    #[arg(value_name = "TYPE")]
    pub handler_type: String,
    /// Connection URL (`${ENV}` references are resolved; a password in it never prints).
    #[arg(long)]
    pub url: String,
    /// Operation: an HTTP method, db.query, db.execute, db.transaction, cache.get, …, graphql.query.
    pub operation: String,
    /// Target (path, SQL, key, document) and operation-specific values. Flags may follow;
    /// put a value that starts with `-` after `--` (`cache.set k -- -5`).
    pub args: Vec<String>,
    /// Parameters as JSON: path/query object (http), positional array (postgres), options object (redis), {variables, operationName} (graphql).
    #[arg(long)]
    pub params: Option<String>,
    /// Request body: JSON, or raw text when it is not JSON (http only).
    #[arg(long)]
    pub body: Option<String>,
    /// Request header `NAME:VALUE` (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// Time limit of one attempt in milliseconds (default: the connection's 30 s).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Retries after the first attempt (default 3; only retryable failures, see above).
    #[arg(long)]
    pub retries: Option<u32>,
    /// One JSON line instead of the readable form. Set from the global `--json` flag by the
    /// caller (`args.json |= cli.json`): clap already owns `--json` globally.
    #[arg(skip)]
    pub json: bool,
}

const HANDLER_TYPES: [&str; 4] = ["http", "postgres", "redis", "graphql"];

fn parse_json(flag: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::config(format!("{flag} is not valid JSON ({e}): {text:?}")))
}

/// Whether `operation` may be repeated after it reached the server.
pub fn is_idempotent(operation: &str) -> bool {
    !matches!(
        operation.to_ascii_uppercase().as_str(),
        "POST" | "PATCH" | "DB.EXECUTE" | "DB.TRANSACTION" | "CACHE.INCR" | "GRAPHQL.MUTATION"
    )
}

/// Builds the request `args` describe.
pub fn build_request(args: &ExecArgs) -> Result<ProtocolRequest> {
    let ty = args.handler_type.as_str();
    if !HANDLER_TYPES.contains(&ty) {
        return Err(Error::config(format!("unknown handler type {ty:?}; use one of {}", HANDLER_TYPES.join(", "))));
    }
    let operation = if ty == "http" { args.operation.to_ascii_uppercase() } else { args.operation.clone() };
    let mut rest = args.args.iter();
    let target = rest.next().cloned().unwrap_or_default();
    let mut req = ProtocolRequest::new(&operation, target);
    if let Some(p) = &args.params {
        req.params = parse_json("--params", p)?;
    }
    if let Some(b) = &args.body {
        req.body = Some(match serde_json::from_str(b) {
            Ok(v) => Body::Json(v),
            Err(_) if ty == "http" => Body::Bytes(bytes::Bytes::from(b.clone().into_bytes())),
            Err(e) => return Err(Error::config(format!("--body is not valid JSON ({e})"))),
        });
    }
    for h in &args.headers {
        let (k, v) = h.split_once(':').ok_or_else(|| Error::config(format!("--header {h:?} must be NAME:VALUE")))?;
        req.headers.insert(k.trim().to_string(), v.trim().to_string());
    }
    let extra: Vec<String> = rest.cloned().collect();
    match (ty, operation.as_str()) {
        (_, _) if extra.is_empty() => {}
        ("redis", "cache.set") if extra.len() == 1 && req.body.is_none() => {
            let value = serde_json::from_str(&extra[0]).unwrap_or_else(|_| Value::String(extra[0].clone()));
            req.body = Some(Body::Json(value));
        }
        ("redis", "cache.del" | "cache.exists" | "cache.mget") if req.params.is_null() => {
            let keys: Vec<Value> = std::iter::once(req.target.clone()).chain(extra).map(Value::String).collect();
            req.target = String::new();
            req.params = serde_json::json!({ "keys": keys });
        }
        _ => return Err(Error::config(format!("{ty} {operation} takes one target argument; unexpected extra arguments {extra:?}"))),
    }
    if ty == "redis" && operation == "cache.mget" && req.params.is_null() && !req.target.is_empty() {
        req.params = serde_json::json!({ "keys": [req.target.clone()] });
        req.target = String::new();
    }
    Ok(req)
}

/// The operation settings `args` ask for.
pub fn operation_config(args: &ExecArgs) -> OperationConfig {
    let mut op = OperationConfig { idempotent: is_idempotent(&args.operation), ..OperationConfig::default() };
    if let Some(ms) = args.timeout_ms {
        op.timeout = Some(Duration::from_millis(ms.max(1)));
    }
    if let Some(r) = args.retries {
        op.retry.max_retries = r;
    }
    op
}

/// Runs the call and returns the response (no printing).
pub async fn execute(args: &ExecArgs) -> Result<ProtocolResponse> {
    let req = build_request(args)?;
    let op = operation_config(args);
    let handler = onex_handlers::build(&args.handler_type, ConnectionConfig::new(&args.url)).await?;
    let result = handler.execute(req, &op).await;
    let _ = handler.shutdown(Duration::from_secs(5)).await;
    result
}

/// The response as printed: one JSON line, or a readable block.
pub fn render(resp: &ProtocolResponse, json: bool) -> String {
    if json {
        return serde_json::to_string(resp).unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the response: {e}\"}}"));
    }
    let mut out = String::new();
    if let Some(status) = resp.status_code {
        out.push_str(&format!("status   {status}\n"));
    }
    out.push_str(&format!("duration {:.3} ms\n", resp.duration.as_secs_f64() * 1000.0));
    let meta: BTreeMap<&String, String> = resp.metadata.iter().map(|(k, v)| (k, v.to_string())).collect();
    for (k, v) in meta {
        out.push_str(&format!("{k:<8} {v}\n"));
    }
    for (k, v) in &resp.headers {
        out.push_str(&format!("header   {k}: {}\n", onex_core::sanitize::sanitize(v)));
    }
    match &resp.data {
        // Text bodies read better as they are than as an escaped JSON string.
        Value::String(text) => out.push_str(text),
        other => out.push_str(&serde_json::to_string_pretty(other).unwrap_or_default()),
    }
    out
}

/// `onex exec`: runs the call and prints the response; errors are returned for `main` to print.
pub async fn run(args: ExecArgs) -> Result<()> {
    let resp = execute(&args).await?;
    println!("{}", render(&resp, args.json));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ty: &str, url: &str, op: &str, rest: &[&str]) -> ExecArgs {
        ExecArgs {
            handler_type: ty.into(),
            url: url.into(),
            operation: op.into(),
            args: rest.iter().map(|s| s.to_string()).collect(),
            params: None,
            body: None,
            headers: vec![],
            timeout_ms: None,
            retries: None,
            json: false,
        }
    }

    #[test]
    fn requests_are_built_per_handler() {
        let mut a = args("http", "http://h", "get", &["/users/{id}"]);
        a.params = Some(r#"{"id": 42}"#.into());
        a.headers = vec!["X-A: 1".into()];
        let r = build_request(&a).unwrap();
        assert_eq!((r.operation.as_str(), r.target.as_str(), r.headers["X-A"].as_str()), ("GET", "/users/{id}", "1"));
        let r = build_request(&args("redis", "redis://h", "cache.set", &["k", "{\"a\":1}"])).unwrap();
        assert_eq!(r.body, Some(Body::Json(serde_json::json!({"a": 1}))));
        let r = build_request(&args("redis", "redis://h", "cache.set", &["k", "plain"])).unwrap();
        assert_eq!(r.body, Some(Body::Json(serde_json::json!("plain"))));
        let r = build_request(&args("redis", "redis://h", "cache.mget", &["a", "b"])).unwrap();
        assert_eq!(r.params, serde_json::json!({"keys": ["a", "b"]}));
        let r = build_request(&args("redis", "redis://h", "cache.mget", &["a"])).unwrap();
        assert_eq!(r.params, serde_json::json!({"keys": ["a"]}));
        let mut a = args("http", "http://h", "POST", &["/x"]);
        a.body = Some("not json".into());
        assert!(matches!(build_request(&a).unwrap().body, Some(Body::Bytes(_))));
    }

    #[test]
    fn bad_arguments_are_explained() {
        let e = build_request(&args("ftp", "x", "GET", &[])).unwrap_err().to_string();
        assert!(e.contains("http, postgres, redis, graphql"), "{e}");
        let mut a = args("postgres", "x", "db.query", &["select 1"]);
        a.params = Some("[1,".into());
        assert!(build_request(&a).unwrap_err().to_string().contains("--params"));
        let e = build_request(&args("postgres", "x", "db.query", &["select 1", "extra"])).unwrap_err().to_string();
        assert!(e.contains("extra"), "{e}");
        let mut a = args("http", "x", "GET", &["/"]);
        a.headers = vec!["nocolon".into()];
        assert!(build_request(&a).unwrap_err().to_string().contains("NAME:VALUE"));
    }

    #[test]
    fn flags_may_follow_the_positional_arguments() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            exec: ExecArgs,
        }
        let parsed = Cmd::try_parse_from([
            "exec",
            "postgres",
            "--url",
            "postgres://h/db",
            "db.query",
            "select $1::int",
            "--params",
            "[1]",
            "--header",
            "A:b",
        ])
        .unwrap()
        .exec;
        assert_eq!(
            (parsed.args, parsed.params.as_deref(), parsed.headers),
            (vec!["select $1::int".to_string()], Some("[1]"), vec!["A:b".to_string()])
        );
        let parsed = Cmd::try_parse_from(["exec", "redis", "--url", "redis://h", "cache.set", "k", "--", "-5"]).unwrap().exec;
        assert_eq!(parsed.args, ["k", "-5"]);
    }

    #[test]
    fn idempotency_follows_the_operation() {
        assert!(is_idempotent("GET") && is_idempotent("db.query") && is_idempotent("cache.set") && is_idempotent("put"));
        assert!(
            !is_idempotent("POST") && !is_idempotent("db.execute") && !is_idempotent("cache.incr") && !is_idempotent("graphql.mutation")
        );
    }

    #[tokio::test]
    async fn runs_against_postgres_and_redis() {
        let mut a = args("postgres", "postgres://root@127.0.0.1:5432/test", "db.query", &["select $1::int as n"]);
        a.params = Some("[1]".into());
        let resp = execute(&a).await.unwrap();
        assert_eq!(resp.data, serde_json::json!([{"n": 1}]));
        let line = render(&resp, true);
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["data"][0]["n"], 1);
        assert!(render(&resp, false).contains("\"n\": 1"));
        let text = ProtocolResponse { data: Value::String("line 1\nline 2".into()), ..Default::default() };
        assert!(render(&text, false).ends_with("line 1\nline 2"));
        let key = format!("onex-exec-test:{}", uuid::Uuid::new_v4().simple());
        execute(&args("redis", "redis://127.0.0.1:6379", "cache.set", &[&key, "7"])).await.unwrap();
        let resp = execute(&args("redis", "redis://127.0.0.1:6379", "cache.get", &[&key])).await.unwrap();
        assert_eq!(resp.data, serde_json::json!(7));
        execute(&args("redis", "redis://127.0.0.1:6379", "cache.del", &[&key])).await.unwrap();
        let e = execute(&args("postgres", "postgres://root:pw-secret-x@127.0.0.1:1/test", "db.query", &["select 1"])).await.unwrap_err();
        assert!(!e.report().contains("pw-secret-x"), "{}", e.report());
    }
}
