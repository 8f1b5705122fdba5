//! The resilience pipeline of one `execute`: breaker → retry → per-attempt timeout → inner.

use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::resilience::timeout::elapsed_error;
use crate::resilience::{CircuitBreaker, Retry};
use crate::{Error, OperationConfig, ProtocolHandler, ProtocolRequest, ProtocolResponse, Result};

/// What an initialized handler needs to run calls.
#[derive(Debug)]
pub(super) struct Active {
    pub(super) breaker: CircuitBreaker,
    pub(super) request_timeout: Duration,
}

/// Runs `req` through the pipeline. Each attempt asks the breaker first, so an open breaker
/// ends the retries with [`Error::CircuitOpen`] (not retryable). A failed attempt is retried
/// only when the error is retryable and the operation is idempotent or nothing was sent.
pub(super) async fn execute(
    inner: &dyn ProtocolHandler,
    active: &Active,
    req: ProtocolRequest,
    op: &OperationConfig,
) -> Result<ProtocolResponse> {
    let span = tracing::info_span!(
        "handler.execute",
        handler_type = inner.handler_type(),
        operation = %req.operation,
        correlation_id = tracing::field::Empty,
        attempts = tracing::field::Empty,
    );
    if let Some(id) = req.correlation_id {
        span.record("correlation_id", tracing::field::display(id));
    }
    run(inner, active, req, op, &span).instrument(span.clone()).await
}

async fn run(
    inner: &dyn ProtocolHandler,
    active: &Active,
    req: ProtocolRequest,
    op: &OperationConfig,
    span: &tracing::Span,
) -> Result<ProtocolResponse> {
    let retry = Retry::new(op.retry.clone()).map_err(|e| e.with("operation", &req.operation))?;
    let timeout = op.timeout.unwrap_or(active.request_timeout);
    if timeout.is_zero() {
        return Err(Error::config(format!(
            "operation {}: timeout of 0s is invalid; set a positive OperationConfig.timeout or leave it unset",
            req.operation
        )));
    }
    let last_attempt = op.retry.max_retries.saturating_add(1);
    let operation = req.operation.clone();
    let started = Instant::now();
    // The request is cloned for every attempt that may be followed by another, and moved into
    // the last possible one, so a call without retries never clones.
    let mut request = Some(req);
    let outcome = retry
        .run(
            |attempt| {
                let req = if attempt >= last_attempt { request.take() } else { request.clone() };
                let (breaker, operation) = (&active.breaker, &operation);
                async move {
                    let req = req.ok_or_else(|| Error::invalid_state(format!("{operation}: no request left for attempt {attempt}")))?;
                    let permit = breaker.acquire()?;
                    // Not `with_timeout`: the call's name is only formatted when the time is up.
                    let result = match tokio::time::timeout(timeout, inner.execute(req, op)).await {
                        Ok(result) => result,
                        Err(_) => Err(elapsed_error(&format!("{} {operation}", inner.handler_type()), timeout)),
                    };
                    permit.record(&result);
                    result
                }
            },
            |err, _| err.is_retryable() && (op.idempotent || err.nothing_sent()),
        )
        .await;
    let attempts = outcome.stats.attempts;
    span.record("attempts", attempts);
    match outcome.result {
        Ok(mut response) => {
            response.metadata.insert("attempts".into(), serde_json::Value::from(attempts));
            response.duration = started.elapsed();
            Ok(response)
        }
        Err(err) => {
            tracing::debug!(attempts, stop = ?outcome.stats.stop, error = %err.report(), "handler call failed");
            Err(err.with("attempts", attempts))
        }
    }
}
