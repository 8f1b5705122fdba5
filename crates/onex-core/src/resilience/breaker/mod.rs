//! Circuit breaker (DESIGN §5): closed → open after N consecutive counted failures or a
//! failure rate over a window; open → half-open after a reset timeout (monotonic clock);
//! half-open lets K probes through, closes when all succeed, reopens on a counted failure.
//!
//! Only errors with [`Error::trips_breaker`] count as failures. Any other outcome — including
//! 4xx-style errors such as `Rejected` or `Authentication` — is a success for the breaker:
//! the target answered.
//!
//! ```
//! use std::time::Duration;
//! use onex_core::{Error, ErrorKind, resilience::{BreakerConfig, BreakerState, CircuitBreaker}};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> onex_core::Result<()> {
//! let breaker = CircuitBreaker::new("payments", BreakerConfig { failure_threshold: 2, ..Default::default() })?;
//! for _ in 0..2 {
//!     let _ = breaker.call(async { Err::<(), _>(Error::unavailable("503")) }).await;
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! let err = breaker.call(async { Ok(()) }).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::CircuitOpen);
//! # Ok(()) }
//! ```

mod config;
mod state;
mod window;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::time::Instant;

pub use config::BreakerConfig;
use state::{Admission, Machine, Ticket, Transition};
pub use state::{BreakerCounters, BreakerState};

use crate::{Error, Result};

/// A circuit breaker guarding one target. Clones share the same state.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    target: String,
    config: BreakerConfig,
    machine: Mutex<Machine>,
    /// The generation while the breaker is closed with nothing to count (no failure streak,
    /// no rate window), else [`NOT_CLEAN`]. In that state admitting a call and recording its
    /// success change nothing, so both are a load of this word instead of two lock round
    /// trips per call. Only a recorded outcome can make the machine clean or not, and each
    /// one updates the word under the lock.
    clean: AtomicU64,
}

/// [`Shared::clean`] when calls must go through the machine.
const NOT_CLEAN: u64 = u64::MAX;

/// Permission to make one call through a [`CircuitBreaker`]. Report the outcome with
/// [`BreakerPermit::record`], [`BreakerPermit::success`] or [`BreakerPermit::failure`].
/// Dropping a permit unused records nothing; a half-open probe slot is given back. A probe
/// that never finishes holds its slot, so guarded calls need a timeout (the handler wrapper
/// applies one per attempt).
#[derive(Debug)]
#[must_use = "report the call's outcome with record/success/failure"]
pub struct BreakerPermit {
    /// `None` once the outcome was recorded, and for a disabled breaker.
    shared: Option<Arc<Shared>>,
    ticket: Ticket,
}

impl CircuitBreaker {
    /// A breaker for `target` (a name shown in [`Error::CircuitOpen`] and logs; never put
    /// credentials in it). The configuration is validated ([`BreakerConfig::validate`]).
    pub fn new(target: impl Into<String>, config: BreakerConfig) -> Result<Self> {
        let target = crate::sanitize::sanitize(&target.into());
        config.validate().map_err(|e| e.with("target", &target))?;
        let machine = Machine::new(config.clone(), Instant::now());
        let clean = AtomicU64::new(machine.clean_generation().unwrap_or(NOT_CLEAN));
        Ok(CircuitBreaker { shared: Arc::new(Shared { target, config, machine: Mutex::new(machine), clean }) })
    }

    /// Asks to make a call. `Err(Error::CircuitOpen { target, remaining })` while open (with the
    /// time left until probes are allowed) or while half-open with every probe slot taken
    /// (`remaining` zero).
    pub fn acquire(&self) -> Result<BreakerPermit> {
        if !self.shared.config.enabled {
            return Ok(BreakerPermit { shared: None, ticket: Ticket { generation: 0, probe: false } });
        }
        let generation = self.shared.clean.load(Ordering::Acquire);
        if generation != NOT_CLEAN {
            let ticket = Ticket { generation, probe: false };
            return Ok(BreakerPermit { shared: Some(Arc::clone(&self.shared)), ticket });
        }
        let (became_half_open, admission) = self.shared.machine.lock().admit(Instant::now);
        if became_half_open {
            tracing::info!(target_name = %self.shared.target, "circuit breaker half-open: letting probes through");
        }
        match admission {
            Admission::Admitted(ticket) => Ok(BreakerPermit { shared: Some(Arc::clone(&self.shared)), ticket }),
            Admission::Rejected { remaining } => Err(Error::CircuitOpen { target: self.shared.target.clone(), remaining }),
        }
    }

    /// Runs `fut` through the breaker: fails fast when open, otherwise records its outcome.
    /// If the returned future is dropped before completion, nothing is recorded.
    pub async fn call<T, F>(&self, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let permit = self.acquire()?;
        let result = fut.await;
        permit.record(&result);
        result
    }

    /// The state now (an open breaker whose reset timeout passed reports half-open).
    /// A disabled breaker is always closed.
    pub fn state(&self) -> BreakerState {
        if !self.shared.config.enabled {
            return BreakerState::Closed;
        }
        self.shared.machine.lock().state(Instant::now())
    }

    /// State and counters (opens, closes, consecutive failures, rejected calls, window).
    pub fn counters(&self) -> BreakerCounters {
        self.shared.machine.lock().counters(Instant::now())
    }

    /// The guarded target's name.
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.config
    }

    /// Whether `other` is a clone sharing this breaker's state.
    pub fn same_as(&self, other: &CircuitBreaker) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl BreakerPermit {
    /// Records a call's result: `Ok` and errors that do not [`Error::trips_breaker`] are
    /// successes; errors that do are failures.
    pub fn record<T>(self, result: &Result<T>) {
        let counted = matches!(result, Err(e) if e.trips_breaker());
        self.finish(counted);
    }

    /// Records a success.
    pub fn success(self) {
        self.finish(false);
    }

    /// Records a failed call; it counts only when `err.trips_breaker()`.
    pub fn failure(self, err: &Error) {
        self.finish(err.trips_breaker());
    }

    /// Whether this permit is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.probe
    }

    fn finish(mut self, counted_failure: bool) {
        let Some(shared) = self.shared.take() else { return };
        if !counted_failure && shared.clean.load(Ordering::Acquire) == self.ticket.generation {
            return; // a success while clean: nothing to count
        }
        let transition = {
            let mut machine = shared.machine.lock();
            let transition = machine.record(self.ticket, counted_failure, Instant::now);
            shared.clean.store(machine.clean_generation().unwrap_or(NOT_CLEAN), Ordering::Release);
            transition
        };
        match transition {
            Transition::Opened => {
                tracing::warn!(target_name = %shared.target, reset_after_ms = shared.config.reset_timeout.as_millis() as u64, "circuit breaker opened")
            }
            Transition::Closed => tracing::info!(target_name = %shared.target, "circuit breaker closed"),
            Transition::None => {}
        }
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take().filter(|_| self.ticket.probe) {
            shared.machine.lock().release(self.ticket);
        }
    }
}
