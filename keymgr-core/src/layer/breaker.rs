use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{BoxFuture, Layered, Next, Operation, Policy, Reply};
use crate::{Error, ErrorKind, HealthReport, HealthStatus, KeyBackend, Result};

/// When a [`CircuitBreaker`] opens and when it tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit (default 5).
    pub failure_threshold: u32,
    /// How long it stays open before one trial call (default 60 s).
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(60),
        }
    }
}

/// A breaker's state, as health reports show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls pass through.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// One trial call is allowed; its result closes or re-opens the circuit.
    HalfOpen,
}

#[derive(Debug)]
struct State {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
}

/// Fails fast while a backend is down: opens after `failure_threshold` consecutive
/// failures that indicate an unhealthy backend (unavailable, timeout, throttled, backend
/// and integrity errors — not caller mistakes such as not-found or invalid input), then
/// lets one trial call through after `open_for`. Health reports carry the state in
/// [`HealthReport::breaker`].
pub type CircuitBreaker<B> = Layered<Breaker, B>;

impl<B: KeyBackend> CircuitBreaker<B> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: B, policy: BreakerPolicy) -> Self {
        Layered::with_policy(inner, Breaker::new(policy))
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.policy().state()
    }
}

/// A [`BreakerPolicy`] with its state: the [`Policy`] behind [`CircuitBreaker`].
#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<State>,
}

fn counts_as_failure(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Unavailable
            | ErrorKind::Timeout
            | ErrorKind::Throttled
            | ErrorKind::Backend
            | ErrorKind::Integrity
    )
}

impl Breaker {
    /// A closed breaker with `policy`.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(State {
                consecutive_failures: 0,
                opened_at: None,
                trial_in_flight: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        let s = self.lock();
        match s.opened_at {
            None => BreakerState::Closed,
            Some(at) if at.elapsed() >= self.policy.open_for => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    /// How long until the next trial call is allowed: `None` while closed, zero when a
    /// trial may run now (half-open).
    pub fn next_trial_in(&self) -> Option<Duration> {
        let s = self.lock();
        s.opened_at
            .map(|at| self.policy.open_for.saturating_sub(at.elapsed()))
    }

    /// Admits a call, or fails fast while open. Returns whether it is the half-open trial.
    fn admit(&self, backend: &str, operation: &'static str) -> Result<bool> {
        let mut s = self.lock();
        let Some(at) = s.opened_at else {
            return Ok(false);
        };
        let elapsed = at.elapsed();
        if elapsed >= self.policy.open_for && !s.trial_in_flight {
            s.trial_in_flight = true;
            crate::metrics::breaker_transition(backend, BreakerState::HalfOpen);
            return Ok(true);
        }
        Err(Error::unavailable(
            backend,
            format!(
                "circuit open after {} consecutive failures; {operation} refused without calling the backend, next trial in {:?}",
                s.consecutive_failures,
                self.policy.open_for.saturating_sub(elapsed)
            ),
            None,
        ))
    }

    fn settle<T>(&self, backend: &str, trial: bool, result: &Result<T>) {
        let mut s = self.lock();
        if trial {
            s.trial_in_flight = false;
        }
        match result {
            Err(e) if counts_as_failure(e) => {
                s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                if trial || s.consecutive_failures >= self.policy.failure_threshold {
                    if s.opened_at.is_none() || trial {
                        tracing::warn!(backend, error = %e, "circuit breaker opened");
                        crate::metrics::breaker_transition(backend, BreakerState::Open);
                    }
                    s.opened_at = Some(Instant::now());
                }
            }
            _ => {
                if s.opened_at.is_some() {
                    tracing::info!(backend, "circuit breaker closed");
                    crate::metrics::breaker_transition(backend, BreakerState::Closed);
                }
                s.consecutive_failures = 0;
                s.opened_at = None;
            }
        }
    }
}

#[async_trait]
impl Policy for Breaker {
    async fn call(&self, backend: &str, operation: Operation<'_>, next: Next<'_>) -> Result<Reply> {
        let trial = self.admit(backend, operation.name())?;
        let result = next.run().await;
        self.settle(backend, trial, &result);
        result
    }

    async fn health(&self, _backend: &str, inner: BoxFuture<'_, HealthReport>) -> HealthReport {
        let mut report = inner.await;
        let state = self.state();
        report.breaker = Some(state);
        report.next_trial_ms = self
            .next_trial_in()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        report.status = match state {
            BreakerState::Closed => report.status,
            BreakerState::HalfOpen => report.status.max(HealthStatus::Degraded),
            BreakerState::Open => HealthStatus::Unhealthy,
        };
        report
    }
}
