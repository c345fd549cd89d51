use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::time::Instant;

use crate::{
    DataKey, EncryptionContext, Error, HealthReport, HealthStatus, KeyBackend, KeyRef, KeyVersion,
    PublicKey, Result, SecretBytes, SignPayload, Signature,
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
    known: Mutex<HashMap<String, PublicKey>>,
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
        match known.get(&key.to_string()) {
            Some(seen) if seen != pk => Err(Error::integrity(
                key.to_string(),
                format!(
                    "failover member {from} holds a different public key than the other members; refusing to use it"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                known.insert(key.to_string(), pk.clone());
                Ok(())
            }
        }
    }

    async fn first<'a, T, F, Fut>(&'a self, operation: &'static str, call: F) -> Result<T>
    where
        F: Fn(&'a Arc<dyn KeyBackend>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'a,
    {
        let mut last = None;
        for backend in &self.backends {
            match call(backend).await {
                Err(e) if e.is_retryable() => {
                    tracing::warn!(backend = backend.name(), operation, error = %e, "failing over");
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::unavailable("failover", "no backend answered", None)))
    }
}

#[async_trait]
impl KeyBackend for Failover {
    fn name(&self) -> &str {
        "failover"
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        let mut last = None;
        for backend in &self.backends {
            match backend.public_key(key).await {
                Ok(pk) => {
                    self.check_same_key(key, backend.name(), &pk)?;
                    return Ok(pk);
                }
                Err(e) if e.is_retryable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::unavailable("failover", "no backend answered", None)))
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<Signature> {
        let mut last = None;
        for backend in &self.backends {
            // Know which key this member holds before trusting its signature.
            let pk = match backend.public_key(key).await {
                Ok(pk) => pk,
                Err(e) if e.is_retryable() => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.check_same_key(key, backend.name(), &pk)?;
            match backend.sign(key, payload).await {
                Err(e) if e.is_retryable() => {
                    tracing::warn!(backend = backend.name(), error = %e, "sign failing over");
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::unavailable("failover", "no backend answered", None)))
    }

    async fn health(&self) -> HealthReport {
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
            backend: "failover".into(),
            status,
            latency: started.elapsed(),
            detail: Some(format!("{up} of {} members usable", components.len())),
            components,
        }
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        self.first("list_versions", |b| b.list_versions(name)).await
    }

    async fn create_version(&self, _name: &str) -> Result<KeyVersion> {
        Err(Error::unsupported(
            "failover",
            "create_version",
            "members must hold the same key; rotate the key in each provider (or import the new version into each) instead",
        ))
    }

    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        let _ = key;
        Err(Error::unsupported(
            "failover",
            "disable_version",
            "disable the version in each member provider",
        ))
    }

    async fn encrypt(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        self.first("encrypt", |b| b.encrypt(key, plaintext, context))
            .await
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        self.first("decrypt", |b| b.decrypt(key, ciphertext, context))
            .await
    }

    async fn generate_data_key(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        self.first("generate_data_key", |b| b.generate_data_key(key, context))
            .await
    }

    fn invalidate(&self, name: &str) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| KeyRef::parse(k).map(|r| r.name() != name).unwrap_or(true));
        for b in &self.backends {
            b.invalidate(name);
        }
    }
}
