//! [`ApiError`]: an onex [`Error`] as a Confluent error answer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use onex_core::{Error, ErrorKind};

use super::json_response;
use crate::api_types::ErrorBody;
use crate::errors::error_code;

/// An error answer: `{"error_code": ..., "message": ...}` with the matching HTTP status. The
/// code is the one the error carries in its context (set by the registry), otherwise one
/// derived from its kind. The message is the error's sanitized text.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    /// The Confluent error code of this answer.
    pub fn code(&self) -> u32 {
        error_code(&self.0).unwrap_or(match self.0.kind() {
            ErrorKind::NotFound => 404,
            ErrorKind::Decode => 42201,
            ErrorKind::Rejected | ErrorKind::Schema | ErrorKind::Config => 422,
            ErrorKind::Authentication => 401,
            ErrorKind::RateLimited => 429,
            ErrorKind::Timeout => 50002,
            ErrorKind::Unavailable | ErrorKind::Connection | ErrorKind::CircuitOpen | ErrorKind::Shutdown => 50003,
            _ => 50001,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status_number = if code >= 10_000 { code / 100 } else { code };
        let status = StatusCode::from_u16(status_number as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self.0.report(), code, "schema registry API error");
        }
        json_response(status, &ErrorBody { error_code: code, message: message_of(&self.0) })
    }
}

/// The error's message without its kind prefix (the client adds its own when it maps the code).
fn message_of(err: &Error) -> String {
    match err {
        Error::InvalidState { message, .. }
        | Error::Config { message, .. }
        | Error::Initialization { message, .. }
        | Error::Connection { message, .. }
        | Error::Timeout { message, .. }
        | Error::Unavailable { message, .. }
        | Error::RateLimited { message, .. }
        | Error::Authentication { message, .. }
        | Error::Rejected { message, .. }
        | Error::NotFound { message, .. }
        | Error::Protocol { message, .. }
        | Error::Decode { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
