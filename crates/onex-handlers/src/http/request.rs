//! Turning a [`ProtocolRequest`] into a URL, headers and a body.
//!
//! Parameter rule (`params` must be a JSON object or null):
//! 1. every `{name}` in the target path is replaced by `params.name`, percent-encoded as one
//!    path segment; a missing or null `name` is [`Error::Rejected`] naming it;
//! 2. the query string is built from `params.query` (an object) when present, plus every
//!    top-level key not used by the path (except `query` itself). Scalars become `k=v`,
//!    arrays repeat the key (`k=a&k=b`), null is skipped, nested objects are rejected.

use onex_core::{Body, Error, ProtocolRequest, Result};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::common::{json_type, params_object};

/// Characters left as they are in a path segment (RFC 3986 unreserved).
fn encode_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn scalar(name: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(Error::rejected(format!(
            "parameter {name:?} is a JSON {}; path and query parameters must be strings, numbers or booleans",
            json_type(other)
        ))
        .with("param", name)),
    }
}

/// Builds the full URL from the base, the templated target and the query parameters.
pub(crate) fn build_url(base: &str, req: &ProtocolRequest) -> Result<String> {
    let params = params_object(&req.params, "HTTP params must be a JSON object of path and query parameters")?;
    if req.target.starts_with("http://") || req.target.starts_with("https://") || req.target.starts_with("//") {
        return Err(Error::rejected("the HTTP target must be a path relative to the configured base URL, not an absolute URL")
            .with("target", &req.target));
    }
    let mut used = Vec::new();
    let mut url = String::with_capacity(base.len() + req.target.len() + 16);
    url.push_str(base);
    let target = req.target.as_str();
    let (path, existing_query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if !path.is_empty() && !path.starts_with('/') {
        url.push('/');
    }
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        url.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| Error::rejected(format!("unterminated '{{' in HTTP path {path:?}")))?;
        let name = &after[..close];
        let value = params.get(name).and_then(|v| scalar(name, v).transpose()).transpose()?.ok_or_else(|| {
            Error::rejected(format!("path parameter {name:?} of {path:?} is missing from params; add it, e.g. params: {{\"{name}\": ...}}"))
                .with("param", name)
        })?;
        encode_component(&value, &mut url);
        used.push(name);
        rest = &after[close + 1..];
    }
    url.push_str(rest);

    let mut query = String::new();
    if let Some(q) = existing_query {
        query.push_str(q);
    }
    let mut add = |k: &str, v: &Value| -> Result<()> {
        let values: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for item in values {
            if let Some(s) = scalar(k, item)? {
                if !query.is_empty() {
                    query.push('&');
                }
                encode_component(k, &mut query);
                query.push('=');
                encode_component(&s, &mut query);
            }
        }
        Ok(())
    };
    if let Some(q) = params.get("query") {
        match q {
            Value::Object(m) => {
                for (k, v) in m {
                    add(k, v)?;
                }
            }
            Value::Null => {}
            other => {
                return Err(Error::rejected(format!(
                    "params.query must be a JSON object of query parameters, got a JSON {}",
                    json_type(other)
                )))
            }
        }
    }
    for (k, v) in params {
        if k != "query" && !used.contains(&k.as_str()) {
            add(k, v)?;
        }
    }
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    Ok(url)
}

/// The request headers: the caller's, then correlation, trace and idempotency headers.
pub(crate) fn build_headers(req: &ProtocolRequest) -> Result<HeaderMap> {
    let mut map = HeaderMap::with_capacity(req.headers.len() + 3);
    for (k, v) in &req.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| Error::rejected(format!("{k:?} is not a valid HTTP header name")).with("header", k))?;
        // The value is not echoed: it may be a credential.
        let value = HeaderValue::from_str(v)
            .map_err(|_| Error::rejected(format!("the value of header {k:?} contains characters not allowed in HTTP headers")))?;
        map.insert(name, value);
    }
    let mut set = |name: &'static str, value: &str| -> Result<()> {
        let v = HeaderValue::from_str(value).map_err(|_| Error::rejected(format!("{name} value {value:?} is not a valid header value")))?;
        map.insert(HeaderName::from_static(name), v);
        Ok(())
    };
    if let Some(id) = req.correlation_id {
        set("x-correlation-id", &id.to_string())?;
    }
    if let Some(tp) = &req.traceparent {
        set("traceparent", tp)?;
    }
    if let Some(key) = &req.idempotency_key {
        set("idempotency-key", key)?;
    }
    Ok(map)
}

/// The body bytes and their default content type.
pub(crate) fn build_body(body: &Option<Body>) -> Result<Option<(bytes::Bytes, &'static str)>> {
    Ok(match body {
        None => None,
        Some(Body::Json(v)) => Some((bytes::Bytes::from(serde_json::to_vec(v)?), "application/json")),
        Some(Body::Bytes(b)) => Some((b.clone(), "application/octet-stream")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn url(target: &str, params: Value) -> Result<String> {
        build_url("http://h:1/api", &ProtocolRequest::new("GET", target).with_params(params))
    }

    #[test]
    fn templating_and_query_rule() {
        assert_eq!(url("/users/{id}", json!({"id": 42})).unwrap(), "http://h:1/api/users/42");
        assert_eq!(url("users/{id}", json!({"id": "a b/c"})).unwrap(), "http://h:1/api/users/a%20b%2Fc");
        assert_eq!(url("/u/{id}", json!({"id": 1, "q": "x y", "tag": ["a", "b"]})).unwrap(), "http://h:1/api/u/1?q=x%20y&tag=a&tag=b");
        assert_eq!(url("/u?a=1", json!({"query": {"b": true}, "c": null})).unwrap(), "http://h:1/api/u?a=1&b=true");
        assert_eq!(url("", Value::Null).unwrap(), "http://h:1/api");
    }

    #[test]
    fn bad_params_are_rejected_with_the_name() {
        let e = url("/users/{id}", json!({})).unwrap_err();
        assert_eq!(e.kind(), onex_core::ErrorKind::Rejected);
        assert!(e.to_string().contains("\"id\""), "{e}");
        assert!(url("/users/{id}", json!({"id": null})).is_err());
        assert!(url("/u", json!({"f": {"x": 1}})).unwrap_err().to_string().contains("\"f\""));
        assert!(url("/u", json!([1])).is_err());
        assert!(url("/u/{id", json!({"id": 1})).is_err());
        assert!(url("http://evil/x", Value::Null).is_err());
        assert!(url("/u", json!({"query": 3})).is_err());
    }

    #[test]
    fn headers_carry_correlation_trace_and_idempotency() {
        let mut req = ProtocolRequest::new("GET", "/").with_header("X-A", "1").with_correlation_id(uuid::Uuid::nil());
        req.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        req.idempotency_key = Some("k1".into());
        let h = build_headers(&req).unwrap();
        assert_eq!(h["x-a"], "1");
        assert_eq!(h["x-correlation-id"], "00000000-0000-0000-0000-000000000000");
        assert!(h.contains_key("traceparent"));
        assert_eq!(h["idempotency-key"], "k1");
        assert!(build_headers(&ProtocolRequest::new("GET", "/").with_header("bad name", "1")).is_err());
        let e = build_headers(&ProtocolRequest::new("GET", "/").with_header("Authorization", "Bearer s3cr\n")).unwrap_err();
        assert!(!e.to_string().contains("s3cr"));
    }
}
