//! The one error type of onex.
//!
//! Every failure in every crate is an [`Error`]. Policies (retry, circuit breaker, DLQ
//! routing) match on [`Error::kind`], [`Error::is_retryable`] and [`Error::trips_breaker`],
//! never on message text.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A schema violation: where in the instance, which keyword, and a readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer into the validated instance (`""` is the root).
    pub instance_path: String,
    /// The JSON Schema keyword that failed (`required`, `type`, ...).
    pub keyword: String,
    /// A readable description of the failure.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.instance_path.is_empty() { "/" } else { &self.instance_path };
        write!(f, "{path}: {} ({})", self.message, self.keyword)
    }
}

/// What kind of failure an [`Error`] is. Stable and serialisable: it is what the DLQ
/// records as `error_kind` and what `onex dlq replay --error-kind` filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Called in the wrong lifecycle state.
    InvalidState,
    /// Bad configuration.
    Config,
    /// Start-up failed.
    Initialization,
    /// Could not connect.
    Connection,
    /// Took too long.
    Timeout,
    /// The remote side is down or failing (5xx, broker down).
    Unavailable,
    /// The remote side asked us to slow down.
    RateLimited,
    /// Credentials refused.
    Authentication,
    /// The request was refused as invalid (4xx, constraint violation, validation).
    Rejected,
    /// The target does not exist.
    NotFound,
    /// The remote side answered something malformed.
    Protocol,
    /// A circuit breaker is open.
    CircuitOpen,
    /// A payload violates its schema.
    Schema,
    /// Bytes could not be decoded.
    Decode,
    /// Over a size limit.
    TooLarge,
    /// The component is shutting down.
    Shutdown,
    /// A handler panicked (consumer engine only).
    Panic,
}

impl ErrorKind {
    /// All kinds, in declaration order.
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::InvalidState,
        ErrorKind::Config,
        ErrorKind::Initialization,
        ErrorKind::Connection,
        ErrorKind::Timeout,
        ErrorKind::Unavailable,
        ErrorKind::RateLimited,
        ErrorKind::Authentication,
        ErrorKind::Rejected,
        ErrorKind::NotFound,
        ErrorKind::Protocol,
        ErrorKind::CircuitOpen,
        ErrorKind::Schema,
        ErrorKind::Decode,
        ErrorKind::TooLarge,
        ErrorKind::Shutdown,
        ErrorKind::Panic,
    ];

    /// The snake_case name (`rate_limited`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::Config => "config",
            ErrorKind::Initialization => "initialization",
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Authentication => "authentication",
            ErrorKind::Rejected => "rejected",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Protocol => "protocol",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Schema => "schema",
            ErrorKind::Decode => "decode",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Shutdown => "shutdown",
            ErrorKind::Panic => "panic",
        }
    }

    /// Parses a snake_case name.
    pub fn parse(s: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Context attached to an error: key/value pairs such as `topic`, `url` (masked), `sqlstate`.
/// Never holds secrets: constructors mask URLs, and callers must not add credentials.
pub type Context = BTreeMap<String, String>;

/// The onex error.
///
/// ```
/// use onex_core::{Error, ErrorKind};
/// let e = Error::unavailable("payment gateway answered 503").with("status", "503");
/// assert_eq!(e.kind(), ErrorKind::Unavailable);
/// assert!(e.is_retryable() && e.trips_breaker());
/// assert!(!Error::rejected("duplicate key").is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Called before `initialize`, after `shutdown`, or otherwise out of order.
    #[error("invalid state: {message}")]
    InvalidState {
        /// What was wrong.
        message: String,
        /// Context.
        context: Context,
    },
    /// Configuration is invalid; the message says what to fix.
    #[error("configuration error: {message}")]
    Config {
        /// What was wrong and how to fix it.
        message: String,
        /// Context.
        context: Context,
    },
    /// A component failed to start.
    #[error("initialization failed: {message}")]
    Initialization {
        /// What failed.
        message: String,
        /// Context.
        context: Context,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A connection could not be made or was lost. Nothing was sent.
    #[error("connection failed: {message}")]
    Connection {
        /// What failed.
        message: String,
        /// Context.
        context: Context,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An operation exceeded its time limit.
    #[error("timed out after {elapsed:?}: {message}")]
    Timeout {
        /// What timed out.
        message: String,
        /// How long it ran.
        elapsed: Duration,
        /// Context.
        context: Context,
    },
    /// The remote side is unavailable (5xx, broker down, server shutting down).
    #[error("unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// Context.
        context: Context,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The remote side is rate limiting; retry after `retry_after` when given.
    #[error("rate limited{}: {message}", retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    RateLimited {
        /// What failed.
        message: String,
        /// Server-requested wait.
        retry_after: Option<Duration>,
        /// Context.
        context: Context,
    },
    /// Credentials were refused.
    #[error("authentication failed: {message}")]
    Authentication {
        /// What failed (never the credential).
        message: String,
        /// Context.
        context: Context,
    },
    /// The request was refused as invalid; retrying will not help.
    #[error("rejected: {message}")]
    Rejected {
        /// Why.
        message: String,
        /// Context.
        context: Context,
    },
    /// The target does not exist.
    #[error("not found: {message}")]
    NotFound {
        /// What was not found.
        message: String,
        /// Context.
        context: Context,
    },
    /// The remote side answered something that could not be understood.
    #[error("protocol error: {message}")]
    Protocol {
        /// What was wrong.
        message: String,
        /// Context.
        context: Context,
    },
    /// A circuit breaker is open; the call was not attempted.
    #[error("circuit open for {target}: failing fast for {remaining:?} more")]
    CircuitOpen {
        /// The guarded target.
        target: String,
        /// Time until the breaker lets a probe through.
        remaining: Duration,
    },
    /// A payload violates its schema.
    #[error("schema violation{}: {}", subject.as_ref().map(|s| format!(" against {s}")).unwrap_or_default(), violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Schema {
        /// The subject validated against, if any.
        subject: Option<String>,
        /// Every violation found.
        violations: Vec<Violation>,
    },
    /// Bytes could not be decoded.
    #[error("decode error: {message}")]
    Decode {
        /// What could not be decoded and why.
        message: String,
        /// Context.
        context: Context,
    },
    /// Something is larger than its limit.
    #[error("too large: {message} ({size} bytes, limit {limit})")]
    TooLarge {
        /// What was too large.
        message: String,
        /// Its size in bytes (or at least this many).
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The component is shutting down or was shut down.
    #[error("shut down: {message}")]
    Shutdown {
        /// What was interrupted.
        message: String,
    },
    /// A handler panicked.
    #[error("handler panicked: {message}")]
    Panic {
        /// The panic message.
        message: String,
    },
}

macro_rules! simple_ctor {
    ($(#[$doc:meta] $fn:ident => $variant:ident),* $(,)?) => {$(
        #[$doc]
        pub fn $fn(message: impl Into<String>) -> Self {
            Error::$variant { message: crate::sanitize::sanitize(&message.into()), context: Context::new() }
        }
    )*};
}

macro_rules! source_ctor {
    ($(#[$doc:meta] $fn:ident => $variant:ident),* $(,)?) => {$(
        #[$doc]
        pub fn $fn(message: impl Into<String>) -> Self {
            Error::$variant { message: crate::sanitize::sanitize(&message.into()), context: Context::new(), source: None }
        }
    )*};
}

impl Error {
    simple_ctor! {
        /// [`Error::InvalidState`].
        invalid_state => InvalidState,
        /// [`Error::Config`].
        config => Config,
        /// [`Error::Authentication`].
        authentication => Authentication,
        /// [`Error::Rejected`].
        rejected => Rejected,
        /// [`Error::NotFound`].
        not_found => NotFound,
        /// [`Error::Protocol`].
        protocol => Protocol,
        /// [`Error::Decode`].
        decode => Decode,
    }
    source_ctor! {
        /// [`Error::Initialization`].
        initialization => Initialization,
        /// [`Error::Connection`].
        connection => Connection,
        /// [`Error::Unavailable`].
        unavailable => Unavailable,
    }

    /// [`Error::Timeout`].
    pub fn timeout(message: impl Into<String>, elapsed: Duration) -> Self {
        Error::Timeout { message: crate::sanitize::sanitize(&message.into()), elapsed, context: Context::new() }
    }

    /// [`Error::RateLimited`].
    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Error::RateLimited { message: crate::sanitize::sanitize(&message.into()), retry_after, context: Context::new() }
    }

    /// [`Error::TooLarge`].
    pub fn too_large(message: impl Into<String>, size: u64, limit: u64) -> Self {
        Error::TooLarge { message: message.into(), size, limit }
    }

    /// [`Error::Shutdown`].
    pub fn shutdown(message: impl Into<String>) -> Self {
        Error::Shutdown { message: message.into() }
    }

    /// [`Error::Schema`].
    pub fn schema(subject: Option<String>, violations: Vec<Violation>) -> Self {
        Error::Schema { subject, violations }
    }

    /// Attaches the underlying cause (kept as `#[source]`; its text is sanitized when shown).
    pub fn with_source(mut self, err: impl std::error::Error + Send + Sync + 'static) -> Self {
        match &mut self {
            Error::Initialization { source, .. } | Error::Connection { source, .. } | Error::Unavailable { source, .. } => {
                *source = Some(Box::new(err));
            }
            other => {
                if let Some(ctx) = other.context_mut() {
                    ctx.insert("cause".into(), crate::sanitize::sanitize(&err.to_string()));
                }
            }
        }
        self
    }

    /// Adds a context entry. The value is sanitized (credentials in URLs are masked).
    pub fn with(mut self, key: impl Into<String>, value: impl fmt::Display) -> Self {
        if let Some(ctx) = self.context_mut() {
            ctx.insert(key.into(), crate::sanitize::sanitize(&value.to_string()));
        }
        self
    }

    /// The context map, when the variant carries one.
    pub fn context(&self) -> Option<&Context> {
        match self {
            Error::InvalidState { context, .. }
            | Error::Config { context, .. }
            | Error::Initialization { context, .. }
            | Error::Connection { context, .. }
            | Error::Timeout { context, .. }
            | Error::Unavailable { context, .. }
            | Error::RateLimited { context, .. }
            | Error::Authentication { context, .. }
            | Error::Rejected { context, .. }
            | Error::NotFound { context, .. }
            | Error::Protocol { context, .. }
            | Error::Decode { context, .. } => Some(context),
            _ => None,
        }
    }

    fn context_mut(&mut self) -> Option<&mut Context> {
        match self {
            Error::InvalidState { context, .. }
            | Error::Config { context, .. }
            | Error::Initialization { context, .. }
            | Error::Connection { context, .. }
            | Error::Timeout { context, .. }
            | Error::Unavailable { context, .. }
            | Error::RateLimited { context, .. }
            | Error::Authentication { context, .. }
            | Error::Rejected { context, .. }
            | Error::NotFound { context, .. }
            | Error::Protocol { context, .. }
            | Error::Decode { context, .. } => Some(context),
            _ => None,
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidState { .. } => ErrorKind::InvalidState,
            Error::Config { .. } => ErrorKind::Config,
            Error::Initialization { .. } => ErrorKind::Initialization,
            Error::Connection { .. } => ErrorKind::Connection,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Authentication { .. } => ErrorKind::Authentication,
            Error::Rejected { .. } => ErrorKind::Rejected,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::CircuitOpen { .. } => ErrorKind::CircuitOpen,
            Error::Schema { .. } => ErrorKind::Schema,
            Error::Decode { .. } => ErrorKind::Decode,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::Shutdown { .. } => ErrorKind::Shutdown,
            Error::Panic { .. } => ErrorKind::Panic,
        }
    }

    /// Whether trying again may succeed: connection, timeout, unavailable, rate limited,
    /// and PostgreSQL serialization failures (which carry `retryable=true` in context).
    pub fn is_retryable(&self) -> bool {
        match self.kind() {
            ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::RateLimited => true,
            _ => self.context().and_then(|c| c.get("retryable")).is_some_and(|v| v == "true"),
        }
    }

    /// Whether this failure says the target is unhealthy and should count towards opening
    /// its circuit breaker. Client-side errors (4xx, constraints, authentication, schema)
    /// and contention (`retryable=true` without `trips_breaker`) do not count.
    pub fn trips_breaker(&self) -> bool {
        match self.kind() {
            ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::Unavailable => {
                self.context().and_then(|c| c.get("trips_breaker")).is_none_or(|v| v != "false")
            }
            _ => false,
        }
    }

    /// The server-requested wait before a retry, when there is one.
    /// A 503 with `Retry-After` carries it as `retry_after_ms` in the context.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => self.context().and_then(|c| c.get("retry_after_ms")).and_then(|v| v.parse::<u64>().ok()).map(Duration::from_millis),
        }
    }

    /// Whether nothing reached the remote side, so even a non-idempotent request may be retried.
    pub fn nothing_sent(&self) -> bool {
        matches!(self, Error::Connection { .. } | Error::CircuitOpen { .. })
            || self.context().and_then(|c| c.get("sent")).is_some_and(|v| v == "false")
    }

    /// The error as one line with its source chain, sanitized: safe for logs, health and DLQ.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(s) = src {
            out.push_str(": ");
            out.push_str(&s.to_string());
            src = s.source();
        }
        crate::sanitize::sanitize(&out)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::decode(format!("invalid JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(Error::connection("x").is_retryable());
        assert!(Error::connection("x").trips_breaker());
        assert!(Error::connection("x").nothing_sent());
        assert!(Error::timeout("x", Duration::from_secs(1)).trips_breaker());
        assert!(Error::rate_limited("x", None).is_retryable());
        assert!(!Error::rate_limited("x", None).trips_breaker());
        for e in [Error::rejected("x"), Error::authentication("x"), Error::not_found("x"), Error::decode("x")] {
            assert!(!e.is_retryable(), "{e}");
            assert!(!e.trips_breaker(), "{e}");
        }
        let serialization = Error::rejected("could not serialize").with("retryable", "true");
        assert!(serialization.is_retryable() && !serialization.trips_breaker());
        assert_eq!(Error::unavailable("503").with("retry_after_ms", 1500).retry_after(), Some(Duration::from_millis(1500)));
        let deadlock = Error::unavailable("deadlock").with("trips_breaker", "false");
        assert!(deadlock.is_retryable() && !deadlock.trips_breaker());
    }

    #[test]
    fn kinds_round_trip() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn messages_are_sanitized() {
        let e = Error::connection("cannot reach postgres://admin:hunter2@db:5432/x");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = Error::rejected("x").with("url", "http://u:pw-123@h/");
        assert!(!format!("{e:?}").contains("pw-123"));
    }
}
