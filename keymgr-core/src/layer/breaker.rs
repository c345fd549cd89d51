use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{
    DataKey, EncryptionContext, Error, ErrorKind, HealthReport, HealthStatus, KeyBackend, KeyRef,
    KeyVersion, PublicKey, Result, SecretBytes, SignPayload, Signature,
};

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
/// lets one trial call through after `open_for`.
#[derive(Debug)]
pub struct CircuitBreaker<B> {
    inner: B,
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

impl<B: KeyBackend> CircuitBreaker<B> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: B, policy: BreakerPolicy) -> Self {
        Self {
            inner,
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

    /// Admits a call, or fails fast while open. Returns whether it is the half-open trial.
    fn admit(&self, operation: &'static str) -> Result<bool> {
        let mut s = self.lock();
        let Some(at) = s.opened_at else {
            return Ok(false);
        };
        let elapsed = at.elapsed();
        if elapsed >= self.policy.open_for && !s.trial_in_flight {
            s.trial_in_flight = true;
            return Ok(true);
        }
        Err(Error::unavailable(
            self.inner.name(),
            format!(
                "circuit open after {} consecutive failures; {operation} refused without calling the backend, next trial in {:?}",
                s.consecutive_failures,
                self.policy.open_for.saturating_sub(elapsed)
            ),
            None,
        ))
    }

    fn settle<T>(&self, trial: bool, result: &Result<T>) {
        let mut s = self.lock();
        if trial {
            s.trial_in_flight = false;
        }
        match result {
            Err(e) if counts_as_failure(e) => {
                s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                if trial || s.consecutive_failures >= self.policy.failure_threshold {
                    if s.opened_at.is_none() || trial {
                        tracing::warn!(backend = self.inner.name(), error = %e, "circuit breaker opened");
                    }
                    s.opened_at = Some(Instant::now());
                }
            }
            _ => {
                if s.opened_at.is_some() {
                    tracing::info!(backend = self.inner.name(), "circuit breaker closed");
                }
                s.consecutive_failures = 0;
                s.opened_at = None;
            }
        }
    }

    async fn call<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        let trial = self.admit(operation)?;
        let result = fut.await;
        self.settle(trial, &result);
        result
    }
}

#[async_trait]
impl<B: KeyBackend> KeyBackend for CircuitBreaker<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        self.call("public_key", self.inner.public_key(key)).await
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<Signature> {
        self.call("sign", self.inner.sign(key, payload)).await
    }

    async fn health(&self) -> HealthReport {
        let mut report = self.inner.health().await;
        let state = self.state();
        let note = format!("breaker {}", serde_plain(state));
        report.detail = Some(match report.detail.take() {
            Some(d) => format!("{d}; {note}"),
            None => note,
        });
        report.status = match state {
            BreakerState::Closed => report.status,
            BreakerState::HalfOpen => report.status.max(HealthStatus::Degraded),
            BreakerState::Open => HealthStatus::Unhealthy,
        };
        report
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        self.call("list_versions", self.inner.list_versions(name))
            .await
    }

    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
        self.call("create_version", self.inner.create_version(name))
            .await
    }

    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        self.call("disable_version", self.inner.disable_version(key))
            .await
    }

    async fn encrypt(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        self.call("encrypt", self.inner.encrypt(key, plaintext, context))
            .await
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        self.call("decrypt", self.inner.decrypt(key, ciphertext, context))
            .await
    }

    async fn generate_data_key(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        self.call(
            "generate_data_key",
            self.inner.generate_data_key(key, context),
        )
        .await
    }

    fn invalidate(&self, name: &str) {
        self.inner.invalidate(name);
    }
}

fn serde_plain(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
    }
}
