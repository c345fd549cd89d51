use std::time::Duration;

use async_trait::async_trait;
use rand_core::RngCore as _;

use super::{Layered, Next, Operation, Policy, Reply};
use crate::{KeyBackend, Result};

/// How [`Retry`] backs off.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 3).
    pub max_retries: u32,
    /// Delay before the first retry (default 1 s); doubles each time.
    pub base_delay: Duration,
    /// Upper bound for one delay (default 30 s).
    pub max_delay: Duration,
    /// Fraction of each delay randomized, 0.0..=1.0 (default 0.2: ±20 %).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based), with jitter applied.
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return base;
        }
        // Uniform in [1 - jitter, 1 + jitter].
        let unit = f64::from(rand_core::OsRng.next_u32()) / f64::from(u32::MAX);
        base.mul_f64(1.0 - jitter + 2.0 * jitter * unit)
    }
}

/// Retries calls that failed with a retryable error ([`crate::Error::is_retryable`]):
/// throttling, outages, timeouts. Never not-found, access-denied or integrity errors, and
/// never an operation that is not idempotent ([`Operation::is_idempotent`]: key creation and
/// deletion).
pub type Retry<B> = Layered<RetryPolicy, B>;

impl<B: KeyBackend> Retry<B> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: B, policy: RetryPolicy) -> Self {
        Layered::with_policy(inner, policy)
    }
}

#[async_trait]
impl Policy for RetryPolicy {
    async fn call(&self, backend: &str, operation: Operation<'_>, next: Next<'_>) -> Result<Reply> {
        let mut retry = 0;
        loop {
            match next.run().await {
                Err(e)
                    if e.is_retryable()
                        && operation.is_idempotent()
                        && retry < self.max_retries =>
                {
                    let delay = self.delay(retry);
                    tracing::warn!(
                        backend,
                        operation = operation.name(),
                        attempt = retry + 1,
                        ?delay,
                        error = %e,
                        "retrying after a transient error"
                    );
                    crate::metrics::retry(backend, operation.name(), e.kind());
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_bounded_jitter() {
        let p = RetryPolicy::default();
        for (i, secs) in [1.0, 2.0, 4.0].into_iter().enumerate() {
            for _ in 0..50 {
                let d = p.delay(i as u32).as_secs_f64();
                assert!(d >= secs * 0.8 - 1e-9 && d <= secs * 1.2 + 1e-9, "{d}");
            }
        }
        let no_jitter = RetryPolicy { jitter: 0.0, ..p };
        assert_eq!(no_jitter.delay(10), Duration::from_secs(30));
    }
}
