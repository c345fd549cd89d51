use async_trait::async_trait;
use tokio::time::Instant;

use super::{Layered, Next, Operation, Policy, Reply};
use crate::{KeyBackend, Result};

/// Records every operation through the `metrics` facade (see [`crate::metrics`]):
/// count, latency and outcome by provider, operation and logical key name, and errors
/// by kind. Costs nothing measurable when no recorder is installed.
pub type Metrics<B> = Layered<MetricsPolicy, B>;

impl<B: KeyBackend> Metrics<B> {
    /// Wraps `inner`, labelling its operations with its own name.
    pub fn new(inner: B) -> Self {
        Layered::with_policy(inner, MetricsPolicy::default())
    }
}

/// The [`Policy`] behind [`Metrics`]; `provider` overrides the `provider` label (e.g.
/// a failover member's name, `hsm:2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsPolicy {
    /// The `provider` label; default: the wrapped backend's name.
    pub provider: Option<String>,
}

impl MetricsPolicy {
    /// Labels operations with `provider`.
    pub fn named(provider: impl Into<String>) -> Self {
        Self {
            provider: Some(provider.into()),
        }
    }
}

#[async_trait]
impl Policy for MetricsPolicy {
    async fn call(&self, backend: &str, operation: Operation<'_>, next: Next<'_>) -> Result<Reply> {
        let started = Instant::now();
        let result = next.run().await;
        crate::metrics::operation(
            self.provider.as_deref().unwrap_or(backend),
            operation.name(),
            operation.key_name(),
            result.as_ref().map(|_| ()).map_err(|e| e.kind()),
            started.elapsed(),
        );
        result
    }
}
