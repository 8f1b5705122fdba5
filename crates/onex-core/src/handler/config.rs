//! Connection and operation configuration of handlers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::resilience::{BreakerConfig, RetryPolicy};
use crate::{Error, Result, Secret};

/// Timeouts of a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeouts {
    /// Connect timeout.
    #[serde(with = "crate::util::duration_ms")]
    pub connect: Duration,
    /// Default per-request timeout (an [`OperationConfig::timeout`] overrides it).
    #[serde(with = "crate::util::duration_ms")]
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(5), request: Duration::from_secs(30) }
    }
}

/// Pool sizing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolConfig {
    /// Connections kept open.
    pub min: usize,
    /// Most connections.
    pub max: usize,
    /// Idle connections are closed after this.
    #[serde(with = "crate::util::duration_ms")]
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { min: 0, max: 16, idle_timeout: Duration::from_secs(90) }
    }
}

/// TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// Require TLS.
    pub enabled: bool,
    /// Extra CA certificate (PEM file).
    pub ca_file: Option<String>,
    /// Skip certificate verification (tests only).
    pub insecure_skip_verify: bool,
}

/// Authentication. Credentials are [`Secret`]s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Auth {
    /// None.
    #[default]
    None,
    /// HTTP basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// Bearer token.
    Bearer {
        /// Token.
        token: Secret,
    },
    /// API key in a header.
    ApiKey {
        /// Header name, e.g. `X-API-Key`.
        header: String,
        /// Key.
        key: Secret,
    },
}

/// How to reach a system. `url` may contain `${ENV}` references, resolved by
/// [`ConnectionConfig::resolved_url`]; `Debug` masks any password in it.
///
/// ```
/// use onex_core::ConnectionConfig;
/// std::env::set_var("ONEX_DOC_DB_PASSWORD", "s3cret");
/// let c = ConnectionConfig::new("postgres://app:${ONEX_DOC_DB_PASSWORD}@127.0.0.1/test");
/// assert_eq!(c.resolved_url()?, "postgres://app:s3cret@127.0.0.1/test");
/// assert!(!format!("{c:?}").contains("s3cret"));
/// # Ok::<(), onex_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionConfig {
    /// URL, with `${ENV}` substitution. Serialized with any password masked.
    #[serde(serialize_with = "serialize_masked")]
    pub url: String,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Pool sizing.
    pub pool: PoolConfig,
    /// TLS.
    pub tls: TlsConfig,
    /// Authentication.
    pub auth: Auth,
    /// Circuit breaker guarding this target (one per target, shared by clones).
    pub breaker: BreakerConfig,
    /// Handler-specific options (`health_path`, `max_request_bytes`, `redirects`, …).
    pub options: BTreeMap<String, String>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            url: String::new(),
            timeouts: Timeouts::default(),
            pool: PoolConfig::default(),
            tls: TlsConfig::default(),
            auth: Auth::None,
            breaker: BreakerConfig::default(),
            options: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("url", &crate::sanitize::sanitize(&self.url))
            .field("timeouts", &self.timeouts)
            .field("pool", &self.pool)
            .field("tls", &self.tls)
            .field("auth", &self.auth)
            .field("breaker", &self.breaker)
            .field("options", &crate::sanitize::sanitize(&format!("{:?}", self.options)))
            .finish()
    }
}

impl ConnectionConfig {
    /// A config for `url` with defaults.
    pub fn new(url: impl Into<String>) -> Self {
        ConnectionConfig { url: url.into(), ..Default::default() }
    }

    /// The URL with every `${NAME}` replaced by the environment variable. A missing variable
    /// is a [`Error::Config`] naming it.
    pub fn resolved_url(&self) -> Result<String> {
        substitute_env(&self.url)
    }

    /// An option parsed as `T`, or `default` when absent; a bad value is a config error.
    pub fn option<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.options.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| Error::config(format!("option {name}={v:?} is not valid"))),
        }
    }
}

fn serialize_masked<S: serde::Serializer>(url: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::sanitize::sanitize(url))
}

/// Replaces `${NAME}` with environment variables.
pub(crate) fn substitute_env(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| Error::config("unterminated ${ in connection URL"))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::config(format!("invalid environment variable name {name:?} in connection URL")));
        }
        let value = std::env::var(name).map_err(|_| {
            Error::config(format!("environment variable {name} is not set (referenced as ${{{name}}} in the connection URL)"))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Per-operation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OperationConfig {
    /// Time limit of one attempt; `None` uses the connection's request timeout.
    #[serde(with = "crate::util::opt_duration_ms")]
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Whether the operation may be repeated after it was sent. Non-idempotent requests are
    /// retried only when the error says nothing was sent.
    pub idempotent: bool,
    /// Response size limit in bytes.
    pub max_response_bytes: Option<u64>,
}

impl Default for OperationConfig {
    fn default() -> Self {
        OperationConfig { timeout: None, retry: RetryPolicy::default(), idempotent: true, max_response_bytes: Some(10 * 1024 * 1024) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_substitution() {
        std::env::set_var("ONEX_TEST_HOST_X", "db.local");
        assert_eq!(substitute_env("pg://${ONEX_TEST_HOST_X}:5432").unwrap(), "pg://db.local:5432");
        let err = substitute_env("pg://${ONEX_SURELY_MISSING_VAR}").unwrap_err().to_string();
        assert!(err.contains("ONEX_SURELY_MISSING_VAR"), "{err}");
        assert!(substitute_env("pg://${unterminated").is_err());
        assert_eq!(substitute_env("plain").unwrap(), "plain");
    }

    #[test]
    fn secrets_do_not_print() {
        let mut c = ConnectionConfig::new("http://u:topsecret@h");
        c.auth = Auth::Bearer { token: Secret::new("tok-123") };
        let dbg = format!("{c:?}");
        let json = serde_json::to_string(&c).unwrap();
        assert!(!dbg.contains("topsecret") && !dbg.contains("tok-123"), "{dbg}");
        assert!(!json.contains("tok-123") && !json.contains("topsecret"), "{json}");
    }
}
