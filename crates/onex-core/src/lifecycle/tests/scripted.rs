//! A test double of the *inner* handler: it plays back scripted answers and counts calls.
//! The wrapper around it is the unit under test.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::{
    ConnectionConfig, Error, HandlerDescriptor, HealthStatus, OperationConfig, ProtocolHandler, ProtocolRequest, ProtocolResponse, Result,
};

/// One scripted answer to `execute`.
#[derive(Debug)]
pub(super) enum Step {
    /// Answer `{"attempt": n}` with status 200.
    Ok,
    /// Fail with this error.
    Fail(Error),
    /// Never answer (until cancelled by a timeout).
    Hang,
}

#[derive(Debug, Default)]
pub(super) struct Scripted {
    pub(super) steps: Mutex<VecDeque<Step>>,
    pub(super) init_failures: Mutex<VecDeque<Error>>,
    pub(super) health_answers: Mutex<VecDeque<Result<HealthStatus>>>,
    pub(super) init_delay: Duration,
    pub(super) health_delay: Duration,
    pub(super) init_calls: AtomicU32,
    pub(super) shutdown_calls: AtomicU32,
    pub(super) execute_calls: AtomicU32,
    pub(super) health_calls: AtomicU32,
    pub(super) last_request: Mutex<Option<ProtocolRequest>>,
}

impl Scripted {
    pub(super) fn with_steps(steps: impl IntoIterator<Item = Step>) -> Self {
        Scripted { steps: Mutex::new(steps.into_iter().collect()), ..Default::default() }
    }

    pub(super) fn count(counter: &AtomicU32) -> u32 {
        counter.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ProtocolHandler for Scripted {
    fn handler_type(&self) -> &str {
        "scripted"
    }

    async fn initialize(&self, _config: ConnectionConfig) -> Result<()> {
        self.init_calls.fetch_add(1, Ordering::SeqCst);
        if !self.init_delay.is_zero() {
            tokio::time::sleep(self.init_delay).await;
        }
        match self.init_failures.lock().pop_front() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    async fn shutdown(&self, _timeout: Duration) -> Result<()> {
        self.shutdown_calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn execute(&self, req: ProtocolRequest, _op: &OperationConfig) -> Result<ProtocolResponse> {
        let n = self.execute_calls.fetch_add(1, Ordering::SeqCst) + 1;
        *self.last_request.lock() = Some(req);
        let step = self.steps.lock().pop_front().unwrap_or(Step::Ok);
        match step {
            Step::Ok => Ok(ProtocolResponse { status_code: Some(200), data: serde_json::json!({ "attempt": n }), ..Default::default() }),
            Step::Fail(err) => Err(err),
            Step::Hang => std::future::pending().await,
        }
    }

    fn describe(&self) -> Result<HandlerDescriptor> {
        Ok(HandlerDescriptor { handler_type: "scripted".into(), name: "scripted".into(), version: "1".into(), ..Default::default() })
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        self.health_calls.fetch_add(1, Ordering::SeqCst);
        if !self.health_delay.is_zero() {
            tokio::time::sleep(self.health_delay).await;
        }
        self.health_answers
            .lock()
            .pop_front()
            .unwrap_or_else(|| Ok(HealthStatus::healthy(Duration::from_millis(1), serde_json::Value::Null)))
    }
}
