//! Errors shared by the registries: Confluent error codes, subject checks, mode names.
//!
//! Every registry error carries the Confluent `error_code` in its context, so the embedded
//! registry, the REST API server and the REST client agree on what failed.

use onex_core::{CompatibilityMode, Error, Result};

/// Confluent schema registry error codes.
pub mod codes {
    /// Subject not found.
    pub const SUBJECT_NOT_FOUND: &str = "40401";
    /// Version not found.
    pub const VERSION_NOT_FOUND: &str = "40402";
    /// Schema (id) not found.
    pub const SCHEMA_NOT_FOUND: &str = "40403";
    /// Subject was soft-deleted.
    pub const SUBJECT_SOFT_DELETED: &str = "40404";
    /// Subject must be soft-deleted before a permanent delete.
    pub const SUBJECT_NOT_SOFT_DELETED: &str = "40405";
    /// Version was soft-deleted.
    pub const VERSION_SOFT_DELETED: &str = "40406";
    /// Version must be soft-deleted before a permanent delete.
    pub const VERSION_NOT_SOFT_DELETED: &str = "40407";
    /// The subject has no compatibility level of its own.
    pub const SUBJECT_LEVEL_NOT_CONFIGURED: &str = "40408";
    /// The schema is incompatible with earlier versions.
    pub const INCOMPATIBLE: &str = "409";
    /// The schema is invalid (not JSON, not a JSON Schema, unsupported type).
    pub const INVALID_SCHEMA: &str = "42201";
    /// The version is invalid.
    pub const INVALID_VERSION: &str = "42202";
    /// The compatibility level is invalid.
    pub const INVALID_COMPATIBILITY_LEVEL: &str = "42203";
    /// The backend store failed.
    pub const STORE_ERROR: &str = "50001";
}

/// The Confluent error code an error carries, if any.
pub fn error_code(err: &Error) -> Option<u32> {
    err.context().and_then(|c| c.get("error_code")).and_then(|c| c.parse().ok())
}

/// Maps a Confluent error answer (HTTP status, `error_code`, message) to an [`Error`].
pub fn from_confluent(status: u16, code: Option<u32>, message: &str) -> Error {
    let code_or_status = code.unwrap_or(u32::from(status));
    let err = match code_or_status {
        40405 | 40407 => Error::rejected(message.to_string()),
        40400..=40499 | 404 => Error::not_found(message.to_string()),
        409 | 42200..=42299 | 422 | 400 => Error::rejected(message.to_string()),
        401 | 403 | 40100..=40399 => Error::authentication(message.to_string()),
        429 | 42900..=42999 => Error::rate_limited(message.to_string(), None),
        408 => Error::timeout(message.to_string(), std::time::Duration::ZERO),
        500..=599 | 50000..=59999 => Error::unavailable(message.to_string()),
        _ if (400..500).contains(&status) => Error::rejected(message.to_string()),
        _ => Error::protocol(format!("unexpected answer {status}: {message}")),
    };
    let err = err.with("status", status);
    match code {
        Some(c) => err.with("error_code", c),
        None => err,
    }
}

/// Checks a subject name: non-empty, at most 255 bytes, without control characters.
pub fn validate_subject(subject: &str) -> Result<()> {
    if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err(Error::rejected(format!(
            "invalid subject {subject:?}: use 1 to 255 printable characters, conventionally `{{topic}}-value` or `{{topic}}-key`"
        )));
    }
    Ok(())
}

/// NotFound for an unknown subject (code 40401).
pub fn subject_not_found(subject: &str) -> Error {
    Error::not_found(format!("subject {subject:?} not found (or all its versions are deleted); register a schema under it first"))
        .with("subject", subject)
        .with("error_code", codes::SUBJECT_NOT_FOUND)
}

/// NotFound for an unknown version of a subject (code 40402).
pub fn version_not_found(subject: &str, version: u32) -> Error {
    Error::not_found(format!("version {version} of subject {subject:?} not found; list the live versions of the subject"))
        .with("subject", subject)
        .with("version", version)
        .with("error_code", codes::VERSION_NOT_FOUND)
}

/// `BACKWARD_TRANSITIVE`.
pub fn mode_name(mode: CompatibilityMode) -> &'static str {
    match mode {
        CompatibilityMode::None => "NONE",
        CompatibilityMode::Backward => "BACKWARD",
        CompatibilityMode::BackwardTransitive => "BACKWARD_TRANSITIVE",
        CompatibilityMode::Forward => "FORWARD",
        CompatibilityMode::ForwardTransitive => "FORWARD_TRANSITIVE",
        CompatibilityMode::Full => "FULL",
        CompatibilityMode::FullTransitive => "FULL_TRANSITIVE",
    }
}

/// Parses a mode name (case-insensitive).
pub fn parse_mode(name: &str) -> Result<CompatibilityMode> {
    const ALL: [CompatibilityMode; 7] = [
        CompatibilityMode::None,
        CompatibilityMode::Backward,
        CompatibilityMode::BackwardTransitive,
        CompatibilityMode::Forward,
        CompatibilityMode::ForwardTransitive,
        CompatibilityMode::Full,
        CompatibilityMode::FullTransitive,
    ];
    ALL.into_iter().find(|m| mode_name(*m).eq_ignore_ascii_case(name.trim())).ok_or_else(|| {
        Error::rejected(format!(
            "invalid compatibility level {name:?}: use one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"
        ))
        .with("error_code", codes::INVALID_COMPATIBILITY_LEVEL)
    })
}

#[cfg(test)]
mod tests {
    use onex_core::ErrorKind;

    use super::*;

    #[test]
    fn confluent_codes_map_to_kinds() {
        let cases = [
            (404, Some(40401), ErrorKind::NotFound),
            (404, Some(40402), ErrorKind::NotFound),
            (404, Some(40403), ErrorKind::NotFound),
            (404, Some(40405), ErrorKind::Rejected),
            (409, Some(409), ErrorKind::Rejected),
            (422, Some(42201), ErrorKind::Rejected),
            (422, Some(42202), ErrorKind::Rejected),
            (401, None, ErrorKind::Authentication),
            (403, None, ErrorKind::Authentication),
            (429, None, ErrorKind::RateLimited),
            (500, Some(50001), ErrorKind::Unavailable),
            (503, None, ErrorKind::Unavailable),
            (418, None, ErrorKind::Rejected),
        ];
        for (status, code, kind) in cases {
            let err = from_confluent(status, code, "m");
            assert_eq!(err.kind(), kind, "{status} {code:?}");
            assert_eq!(error_code(&err), code);
        }
    }

    #[test]
    fn modes_round_trip_and_bad_names_are_explained() {
        for name in ["NONE", "backward", "Full_Transitive"] {
            let mode = parse_mode(name).unwrap();
            assert!(mode_name(mode).eq_ignore_ascii_case(name));
        }
        let err = parse_mode("SIDEWAYS").unwrap_err();
        assert!(err.to_string().contains("\"SIDEWAYS\"") && err.to_string().contains("FULL_TRANSITIVE"), "{err}");
    }

    #[test]
    fn subjects_are_checked() {
        assert!(validate_subject("orders-value").is_ok());
        for bad in ["", "a\nb", &"x".repeat(256)] {
            assert_eq!(validate_subject(bad).unwrap_err().kind(), ErrorKind::Rejected);
        }
    }
}
