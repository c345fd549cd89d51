//! [`Restarting`]: a backend that is started on first use and started again after its
//! start-up failed, so one provider that cannot start (an HSM token missing, a KMS
//! endpoint down) does not stop the others in a [`Failover`](super::Failover).

use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{BoxFuture, Operation, Reply};
use crate::{Error, HealthReport, KeyBackend, Result};

type Start = Box<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn KeyBackend>>> + Send + Sync>;

/// Starts its provider with `start` on first use (or [`start_now`](Self::start_now)),
/// and again on a later call while starting fails; until it starts, every call is an
/// [`Error::Unavailable`] (so failover moves on) whose source is the start-up error, and
/// health is unhealthy with the reason. Put a breaker in front to bound how often a
/// failing start is retried.
pub struct Restarting {
    name: String,
    start: Start,
    started: OnceCell<Arc<dyn KeyBackend>>,
    last_error: Mutex<Option<String>>,
}

impl fmt::Debug for Restarting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restarting")
            .field("name", &self.name)
            .field("started", &self.started.get())
            .finish_non_exhaustive()
    }
}

impl Restarting {
    /// A backend named `name` that `start` creates.
    pub fn new(
        name: impl Into<String>,
        start: impl Fn() -> BoxFuture<'static, Result<Arc<dyn KeyBackend>>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            start: Box::new(start),
            started: OnceCell::new(),
            last_error: Mutex::new(None),
        }
    }

    /// Tries to start now; the error says why it could not (it is kept for health, and
    /// the next call tries again).
    pub async fn start_now(&self) -> Result<Arc<dyn KeyBackend>> {
        let backend = self
            .started
            .get_or_try_init(|| async {
                let result = (self.start)().await;
                let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
                match &result {
                    Ok(_) => *last = None,
                    Err(e) => *last = Some(e.to_string()),
                }
                result
            })
            .await?;
        Ok(backend.clone())
    }

    /// Why the last start failed, while it has not started.
    pub fn start_error(&self) -> Option<String> {
        if self.started.initialized() {
            return None;
        }
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn backend(&self) -> Result<Arc<dyn KeyBackend>> {
        self.start_now().await.map_err(|e| {
            Error::unavailable(
                self.name.clone(),
                format!("the provider could not be started: {e}"),
                Some(Box::new(e)),
            )
        })
    }

    fn backend_name(&self) -> &str {
        &self.name
    }

    async fn dispatch(&self, operation: Operation<'_>) -> Result<Reply> {
        operation.call(self.backend().await?.as_ref()).await
    }

    async fn dispatch_health(&self) -> HealthReport {
        let started = Instant::now();
        match self.backend().await {
            Ok(backend) => backend.health().await,
            Err(e) => HealthReport::unhealthy(self.name.clone(), started.elapsed(), e.to_string()),
        }
    }

    fn dispatch_invalidate(&self, name: &str) {
        if let Some(backend) = self.started.get() {
            backend.invalidate(name);
        }
    }
}

super::dispatch_backend!([] Restarting);
