//! Classifying HTTP outcomes (DESIGN §5) and reading response bodies within a size limit.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use onex_core::{Error, Result};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// How much of an error response body is kept in the error context.
const ERROR_BODY_SNIPPET: usize = 512;

/// Parses `Retry-After`: delay seconds or an HTTP-date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(date.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Maps a non-success status to its error kind. `body` is a (sanitized, truncated) snippet.
pub(crate) fn classify_status(status: StatusCode, headers: &HeaderMap, method: &str, url: &str, body: &str) -> Error {
    let code = status.as_u16();
    let what = format!("{method} {url} answered {status}");
    let retry_after =
        headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| parse_retry_after(v, SystemTime::now()));
    let err = match code {
        401 | 403 => Error::authentication(format!("{what}; check the configured credentials")),
        404 | 410 => Error::not_found(what),
        // The server gave up waiting for us: retry, but it says nothing about its health. With
        // a Retry-After it is a request to wait, which only RateLimited carries to the retry.
        408 if retry_after.is_some() => Error::rate_limited(what, retry_after),
        408 => Error::timeout(what, Duration::ZERO).with("trips_breaker", "false"),
        429 => Error::rate_limited(what, retry_after),
        500..=599 => Error::unavailable(what),
        _ => Error::rejected(what),
    };
    let mut err = err.with("status", code).with("url", url).with("method", method);
    if let Some(d) = retry_after {
        err = err.with("retry_after_ms", d.as_millis());
    }
    if !body.is_empty() {
        err = err.with("body", body);
    }
    err
}

/// Maps a reqwest transport error. `sent` tells whether the request may have reached the server.
pub(crate) fn classify_transport(e: reqwest::Error, method: &str, url: &str, timeout: Duration) -> Error {
    let err = if e.is_connect() {
        if e.is_timeout() {
            Error::timeout(format!("connecting for {method} {url} timed out"), timeout).with("sent", "false")
        } else {
            Error::connection(format!("cannot connect for {method} {url}; is the server running and the URL right?"))
        }
    } else if e.is_timeout() {
        Error::timeout(format!("{method} {url} got no complete answer in time"), timeout)
    } else if e.is_redirect() {
        Error::protocol(format!("{method} {url}: too many redirects (raise option `redirects`, 0 disables following)"))
    } else if e.is_builder() {
        Error::rejected(format!("cannot build request {method} {url}"))
    } else {
        // The connection broke after (part of) the request went out: the request may have
        // been processed, so only idempotent requests may be retried.
        Error::unavailable(format!("{method} {url}: connection lost before a complete answer"))
    };
    err.with("url", url).with("method", method).with_source(e)
}

/// Reads the body, stopping as soon as it passes `limit` (checked on Content-Length first).
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    limit: Option<u64>,
    method: &str,
    url: &str,
    timeout: Duration,
) -> Result<bytes::Bytes> {
    if let (Some(limit), Some(len)) = (limit, resp.content_length()) {
        if len > limit {
            return Err(Error::too_large(
                format!("response of {method} {url} (by Content-Length; raise max_response_bytes if expected)"),
                len,
                limit,
            ));
        }
    }
    let mut buf = bytes::BytesMut::with_capacity(resp.content_length().unwrap_or(0).min(1 << 20) as usize);
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let total = (buf.len() + chunk.len()) as u64;
                if let Some(limit) = limit {
                    if total > limit {
                        // Dropping the response closes the connection: we stop reading here.
                        return Err(Error::too_large(
                            format!("response of {method} {url} (stopped reading; raise max_response_bytes if expected)"),
                            total,
                            limit,
                        ));
                    }
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => return Err(classify_transport(e, method, url, timeout)),
        }
    }
}

/// Response headers as a map; repeated names are joined with `, `.
pub(crate) fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        out.entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

/// Whether a content type is JSON (`application/json`, `application/*+json`).
pub(crate) fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
    })
}

/// The body as JSON: parsed when JSON, a string when UTF-8, base64 otherwise. Returns the
/// value and its encoding (`json`, `text`, `base64`, `empty`).
pub(crate) fn body_to_json(body: &[u8], content_type: Option<&str>, url: &str) -> Result<(serde_json::Value, &'static str)> {
    use base64::Engine as _;
    if body.is_empty() {
        return Ok((serde_json::Value::Null, "empty"));
    }
    if is_json(content_type) {
        return serde_json::from_slice(body)
            .map(|v| (v, "json"))
            .map_err(|e| Error::protocol(format!("{url} declared a JSON body that does not parse: {e}")).with("url", url));
    }
    match std::str::from_utf8(body) {
        Ok(s) => Ok((serde_json::Value::String(s.to_string()), "text")),
        Err(_) => Ok((serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(body)), "base64")),
    }
}

/// A short, sanitized snippet of an error body for the error context.
pub(crate) fn snippet(body: &[u8]) -> String {
    let end = body.len().min(ERROR_BODY_SNIPPET);
    let mut s = String::from_utf8_lossy(&body[..end]).into_owned();
    if body.len() > end {
        s.push('…');
    }
    onex_core::sanitize::sanitize(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn json_detection_and_body_encoding() {
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("application/problem+json")));
        assert!(!is_json(Some("text/plain")));
        assert_eq!(body_to_json(b"{\"a\":1}", Some("application/json"), "u").unwrap().0["a"], 1);
        assert_eq!(body_to_json(b"hi", None, "u").unwrap(), (serde_json::json!("hi"), "text"));
        assert_eq!(body_to_json(&[0xff, 0xfe], None, "u").unwrap(), (serde_json::json!("//4="), "base64"));
        assert_eq!(body_to_json(b"{", Some("application/json"), "u").unwrap_err().kind(), onex_core::ErrorKind::Protocol);
    }
}
