use std::time::Duration;

use async_trait::async_trait;

use super::{BoxFuture, Layered, Next, Operation, Policy, Reply};
use crate::{Error, HealthReport, HealthStatus, KeyBackend, Result};

/// How long one call to the inner backend may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutPolicy {
    /// The bound per attempt (default 10 s).
    pub limit: Duration,
}

impl Default for TimeoutPolicy {
    fn default() -> Self {
        Self {
            limit: Duration::from_secs(10),
        }
    }
}

/// Bounds each call to the inner backend; an overrun is [`Error::Timeout`] (retryable).
///
/// Operations that are not idempotent (`create_version`, `delete_version`) are not
/// bounded: abandoning a half-done key creation or deletion would leave an orphan key.
pub type Timeout<B> = Layered<TimeoutPolicy, B>;

impl<B: KeyBackend> Timeout<B> {
    /// Wraps `inner`, bounding every call by `limit`.
    pub fn new(inner: B, limit: Duration) -> Self {
        Layered::with_policy(inner, TimeoutPolicy { limit })
    }
}

#[async_trait]
impl Policy for TimeoutPolicy {
    async fn call(&self, backend: &str, operation: Operation<'_>, next: Next<'_>) -> Result<Reply> {
        if !operation.is_idempotent() {
            return next.run().await;
        }
        tokio::time::timeout(self.limit, next.run())
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    backend: backend.to_owned(),
                    operation: operation.name(),
                    after: self.limit,
                })
            })
    }

    async fn health(&self, backend: &str, inner: BoxFuture<'_, HealthReport>) -> HealthReport {
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(self.limit, inner).await {
            Ok(report) => report,
            Err(_) => HealthReport {
                status: HealthStatus::Unhealthy,
                detail: Some(format!("health check timed out after {:?}", self.limit)),
                ..HealthReport::healthy(backend, started.elapsed())
            },
        }
    }
}
