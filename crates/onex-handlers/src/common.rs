//! Pieces every handler shares: the in-flight counter that lets `shutdown` drain, and
//! small JSON helpers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use onex_core::Error;
use tokio::sync::Notify;

/// Counts calls in flight so `shutdown` can wait for them (up to its timeout).
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    /// `shutdown` calls waiting in `drain`: only then does the last call out notify.
    draining: AtomicUsize,
    idle: Notify,
}

/// Decrements the [`InFlight`] count when dropped, also when the call future is cancelled.
#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    /// Registers one call.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Waits until no call is in flight or `timeout` passed; returns whether it drained.
    pub(crate) async fn drain(&self, timeout: Duration) -> bool {
        self.draining.fetch_add(1, Ordering::SeqCst);
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let drained = tokio::time::timeout(timeout, wait).await.is_ok();
        self.draining.fetch_sub(1, Ordering::SeqCst);
        drained
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 && self.0.draining.load(Ordering::SeqCst) > 0 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The error for a call made before `initialize` or after `shutdown` on a bare handler
/// (the lifecycle wrapper normally catches this first).
pub(crate) fn not_initialized(handler: &str) -> Error {
    Error::invalid_state(format!("{handler} handler is not initialized (call initialize first, and not after shutdown)"))
}

/// Rejects an operation this handler does not know, listing the ones it does.
#[cfg_attr(not(any(feature = "postgres", feature = "redis", feature = "graphql")), allow(dead_code))]
pub(crate) fn unknown_operation(handler: &str, operation: &str, known: &[&str]) -> Error {
    Error::rejected(format!("{handler} handler has no operation {operation:?}; supported: {}", known.join(", ")))
        .with("operation", operation)
}

/// A short description of a JSON value's type, for error messages.
pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Milliseconds of a duration as a float, for health latencies and metadata.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `params` as a JSON object (`null` counts as an empty one); anything else is `Rejected`
/// with `expected` ("HTTP params must be …") followed by the JSON type that came.
pub(crate) fn params_object<'a>(
    params: &'a serde_json::Value,
    expected: &str,
) -> onex_core::Result<&'a serde_json::Map<String, serde_json::Value>> {
    static EMPTY: std::sync::LazyLock<serde_json::Map<String, serde_json::Value>> = std::sync::LazyLock::new(serde_json::Map::new);
    match params {
        serde_json::Value::Null => Ok(&EMPTY),
        serde_json::Value::Object(m) => Ok(m),
        other => Err(Error::rejected(format!("{expected}, got a JSON {}", json_type(other)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_calls_in_flight_up_to_the_timeout() {
        let f = Arc::new(InFlight::default());
        assert!(f.drain(Duration::from_secs(1)).await, "nothing in flight");
        let guard = f.enter();
        assert!(!f.drain(Duration::from_millis(50)).await, "a call is in flight");
        let f2 = f.clone();
        let waiter = tokio::spawn(async move { f2.drain(Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(guard);
        assert!(waiter.await.unwrap(), "drained when the call finished");
    }
}
