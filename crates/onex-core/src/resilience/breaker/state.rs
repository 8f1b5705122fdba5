use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::window::RateWindow;
use super::BreakerConfig;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls pass; counted failures are tallied.
    Closed,
    /// Calls fail fast with [`crate::Error::CircuitOpen`] until the reset timeout passes.
    Open,
    /// A limited number of probe calls pass; their outcome closes or reopens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A snapshot of a breaker's state and counters, for metrics and `describe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerCounters {
    /// State now.
    pub state: BreakerState,
    /// Times the breaker opened (from closed or half-open).
    pub opens: u64,
    /// Times it closed again after half-open probes succeeded.
    pub closes: u64,
    /// Counted failures in a row (reset by a success and when the breaker closes).
    pub consecutive_failures: u32,
    /// Calls refused while open or while all half-open probe slots were taken.
    pub rejected: u64,
    /// Calls recorded in the failure-rate window (0 when the rate trip is off).
    pub window_calls: u32,
    /// Counted failures in the failure-rate window.
    pub window_failures: u32,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

/// Which phase a permit was issued in. Results of permits from an earlier generation (the
/// breaker changed state since) are ignored, so a slow call started while closed cannot
/// close a breaker that is now half-open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticket {
    pub(super) generation: u64,
    pub(super) probe: bool,
}

pub(super) enum Admission {
    Admitted(Ticket),
    Rejected { remaining: Duration },
}

/// What a recorded outcome changed, so the caller can log transitions outside the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transition {
    None,
    Opened,
    Closed,
}

/// The breaker's state machine. Pure: time is passed in, so it is easy to reason about.
#[derive(Debug)]
pub(super) struct Machine {
    config: BreakerConfig,
    phase: Phase,
    generation: u64,
    consecutive_failures: u32,
    window: Option<RateWindow>,
    opens: u64,
    closes: u64,
    rejected: u64,
}

impl Machine {
    pub(super) fn new(config: BreakerConfig, now: Instant) -> Self {
        let window = config.failure_rate.map(|_| RateWindow::new(config.rate_window, now));
        Machine { config, phase: Phase::Closed, generation: 0, consecutive_failures: 0, window, opens: 0, closes: 0, rejected: 0 }
    }

    /// Moves Open → HalfOpen once the reset timeout has passed (lazily, on the next look).
    fn refresh(&mut self, now: Instant) -> bool {
        if let Phase::Open { until } = self.phase {
            if now >= until {
                self.phase = Phase::HalfOpen { in_flight: 0, succeeded: 0 };
                self.generation += 1;
                return true;
            }
        }
        false
    }

    /// Returns whether the breaker just became half-open, and the admission.
    /// `clock` is read only while the breaker is open: the common case needs no time.
    pub(super) fn admit(&mut self, clock: impl Fn() -> Instant) -> (bool, Admission) {
        let became_half_open = matches!(self.phase, Phase::Open { .. }) && self.refresh(clock());
        let generation = self.generation;
        let admission = match &mut self.phase {
            Phase::Closed => Admission::Admitted(Ticket { generation, probe: false }),
            Phase::Open { until } => {
                self.rejected += 1;
                Admission::Rejected { remaining: until.saturating_duration_since(clock()) }
            }
            Phase::HalfOpen { in_flight, succeeded } => {
                if *in_flight + *succeeded < self.config.half_open_probes {
                    *in_flight += 1;
                    Admission::Admitted(Ticket { generation, probe: true })
                } else {
                    self.rejected += 1;
                    Admission::Rejected { remaining: Duration::ZERO }
                }
            }
        };
        (became_half_open, admission)
    }

    /// Records the outcome of an admitted call: `counted_failure` is true only for errors
    /// that trip the breaker; anything else is a success (the target answered).
    /// `clock` is read only when time matters: a failure, or the failure-rate window.
    pub(super) fn record(&mut self, ticket: Ticket, counted_failure: bool, clock: impl Fn() -> Instant) -> Transition {
        if ticket.generation != self.generation {
            return Transition::None;
        }
        match &mut self.phase {
            Phase::Closed => {
                if let Some(w) = self.window.as_mut() {
                    w.record(counted_failure, clock());
                }
                if !counted_failure {
                    self.consecutive_failures = 0;
                    return Transition::None;
                }
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let now = clock();
                if self.consecutive_failures >= self.config.failure_threshold || self.rate_tripped(now) {
                    self.open(now);
                    return Transition::Opened;
                }
                Transition::None
            }
            Phase::HalfOpen { in_flight, succeeded } => {
                *in_flight = in_flight.saturating_sub(1);
                if counted_failure {
                    self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                    self.open(clock());
                    return Transition::Opened;
                }
                *succeeded += 1;
                if *succeeded >= self.config.half_open_probes {
                    self.phase = Phase::Closed;
                    self.generation += 1;
                    self.closes += 1;
                    self.consecutive_failures = 0;
                    if let Some(w) = self.window.as_mut() {
                        w.clear();
                    }
                    return Transition::Closed;
                }
                Transition::None
            }
            Phase::Open { .. } => Transition::None,
        }
    }

    /// The generation when a call's admission and success would change nothing: closed, no
    /// failure streak and no rate window. `None` otherwise.
    pub(super) fn clean_generation(&self) -> Option<u64> {
        let clean = matches!(self.phase, Phase::Closed) && self.consecutive_failures == 0 && self.window.is_none();
        clean.then_some(self.generation)
    }

    /// Frees the slot of a probe permit that was dropped without a recorded outcome.
    pub(super) fn release(&mut self, ticket: Ticket) {
        if ticket.probe && ticket.generation == self.generation {
            if let Phase::HalfOpen { in_flight, .. } = &mut self.phase {
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }

    fn rate_tripped(&self, now: Instant) -> bool {
        let (Some(rate), Some(window)) = (self.config.failure_rate, self.window.as_ref()) else { return false };
        let (calls, failures) = window.totals(now);
        calls >= self.config.rate_min_calls && f64::from(failures) >= rate * f64::from(calls)
    }

    fn open(&mut self, now: Instant) {
        self.phase = Phase::Open { until: now + self.config.reset_timeout };
        self.generation += 1;
        self.opens += 1;
    }

    pub(super) fn state(&mut self, now: Instant) -> BreakerState {
        self.refresh(now);
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    pub(super) fn counters(&mut self, now: Instant) -> BreakerCounters {
        let state = self.state(now);
        let (window_calls, window_failures) = self.window.as_ref().map(|w| w.totals(now)).unwrap_or((0, 0));
        BreakerCounters {
            state,
            opens: self.opens,
            closes: self.closes,
            consecutive_failures: self.consecutive_failures,
            rejected: self.rejected,
            window_calls,
            window_failures,
        }
    }
}
