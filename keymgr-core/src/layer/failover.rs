use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{Operation, Reply};
use crate::{
    Error, HealthReport, HealthStatus, IntegrityReason, KeyBackend, KeyRef, PublicKey, Result,
};

/// Ordered failover across backends that hold the same logical key (HSM replicas, a key
/// imported into two KMSs). Each call goes to the first backend that answers; a retryable
/// error (outage, timeout, throttling, open breaker) moves on to the next, any other error
/// is returned as is.
///
/// Every backend must hold the *same* key: the first public key seen for a name is
/// remembered, and a backend that reports a different one is an [`Error::Integrity`],
/// never a signature by another key. Wrap each member in a
/// [`CircuitBreaker`](super::CircuitBreaker) so a dead one is skipped quickly; health
/// shows each member's state.
#[derive(Debug)]
pub struct Failover {
    backends: Vec<Arc<dyn KeyBackend>>,
    known: Mutex<HashMap<KeyRef, PublicKey>>,
}

impl Failover {
    /// Backends in order of preference; errors if `backends` is empty.
    pub fn new(backends: Vec<Arc<dyn KeyBackend>>) -> Result<Self> {
        if backends.is_empty() {
            return Err(Error::invalid_input(
                "failover backends",
                "at least one backend is needed",
            ));
        }
        Ok(Self {
            backends,
            known: Mutex::new(HashMap::new()),
        })
    }

    fn check_same_key(&self, key: &KeyRef, from: &str, pk: &PublicKey) -> Result<()> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(key) {
            Some(seen) if seen != pk => Err(Error::integrity_failure(
                key.to_string(),
                IntegrityReason::MembersDisagree,
                format!(
                    "failover member {from} holds a different public key than the other members; refusing to use it"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                known.insert(key.clone(), pk.clone());
                Ok(())
            }
        }
    }

    fn backend_name(&self) -> &str {
        "failover"
    }

    async fn dispatch(&self, operation: Operation<'_>) -> Result<Reply> {
        match operation {
            Operation::CreateVersion(_) => {
                return Err(Error::unsupported(
                    "failover",
                    "create_version",
                    "members must hold the same key; rotate the key in each provider (or import the new version into each) instead",
                ));
            }
            Operation::DisableVersion(_) => {
                return Err(Error::unsupported(
                    "failover",
                    "disable_version",
                    "disable the version in each member provider",
                ));
            }
            _ => {}
        }
        let mut last = None;
        for backend in &self.backends {
            if let Operation::Sign(key, _) = operation {
                // Know which key this member holds before letting it sign (wrap members
                // in `Cached` to make this free).
                match backend.public_key(key).await {
                    Ok(pk) => self.check_same_key(key, backend.name(), &pk)?,
                    Err(e) if e.is_retryable() => {
                        last = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            match operation.call(backend.as_ref()).await {
                Err(e) if e.is_retryable() => {
                    tracing::warn!(backend = backend.name(), operation = operation.name(), error = %e, "failing over");
                    last = Some(e);
                }
                Err(e) => return Err(e),
                Ok(reply) => {
                    // Every member must hold the same key; the signature says which key
                    // verified it, which also catches a member whose key changed between
                    // the two calls.
                    match (&operation, &reply) {
                        (Operation::PublicKey(key), Reply::PublicKey(pk)) => {
                            self.check_same_key(key, backend.name(), pk)?
                        }
                        (Operation::Sign(key, _), Reply::Signature(sig)) => {
                            self.check_same_key(key, backend.name(), sig.public_key())?
                        }
                        _ => {}
                    }
                    return Ok(reply);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::unavailable("failover", "no backend answered", None)))
    }

    async fn dispatch_health(&self) -> HealthReport {
        let started = Instant::now();
        let mut components = Vec::with_capacity(self.backends.len());
        for backend in &self.backends {
            components.push(backend.health().await);
        }
        let up = components
            .iter()
            .filter(|c| c.status != HealthStatus::Unhealthy)
            .count();
        let status = if up == 0 {
            HealthStatus::Unhealthy
        } else if up < components.len() || components[0].status != HealthStatus::Healthy {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        HealthReport {
            status,
            detail: Some(format!("{up} of {} members usable", components.len())),
            components,
            ..HealthReport::healthy("failover", started.elapsed())
        }
    }

    fn dispatch_invalidate(&self, name: &str) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| k.name() != name);
        for b in &self.backends {
            b.invalidate(name);
        }
    }
}

super::dispatch_backend!([] Failover);
