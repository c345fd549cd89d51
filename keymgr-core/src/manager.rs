//! [`KeyManager`]: the front door that audits every key operation and stacks the layers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use crate::layer::{
    BreakerPolicy, Cached, CircuitBreaker, RateLimit, RateLimitPolicy, Retry, RetryPolicy, Timeout,
};
use crate::{
    AuditEvent, AuditRecord, AuditSink, DataKey, EncryptionContext, Error, HealthReport,
    KeyBackend, KeyRef, KeyVersion, Outcome, PublicKey, Result, SecretBytes, SignPayload,
    Signature, TracingAuditSink,
};

/// Signs, reports public keys and checks health through one backend stack,
/// writing an audit record for every key operation.
///
/// `KeyManager` is itself a [`KeyBackend`], so adapters (`keymgr-evm`, `keymgr-xrp`)
/// accept it wherever they accept a backend.
///
/// ```
/// # async fn demo() -> keymgr_core::Result<()> {
/// use std::sync::Arc;
/// use keymgr_core::{KeyManager, KeyRef, SignPayload};
/// # let backend: Arc<dyn keymgr_core::KeyBackend> = unimplemented!();
/// let manager = KeyManager::builder(backend).build();
/// let signature = manager.sign(&KeyRef::new("evm"), &SignPayload::Prehash([7; 32])).await?;
/// # let _ = signature; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KeyManager {
    backend: Arc<dyn KeyBackend>,
    audit: Arc<dyn AuditSink>,
    actor: Option<String>,
}

/// Builds a [`KeyManager`] around a provider, stacking the layers in the documented order.
#[derive(Debug)]
pub struct KeyManagerBuilder {
    backend: Arc<dyn KeyBackend>,
    audit: Arc<dyn AuditSink>,
    actor: Option<String>,
    retry: Option<RetryPolicy>,
    timeout: Option<Duration>,
    cache_ttl: Option<Duration>,
    breaker: Option<BreakerPolicy>,
    rate_limit: Option<RateLimitPolicy>,
}

impl KeyManagerBuilder {
    /// Circuit breaker (default [`BreakerPolicy::default`]: open after 5 consecutive
    /// failures, trial after 60 s); `None` disables it.
    pub fn circuit_breaker(mut self, policy: Option<BreakerPolicy>) -> Self {
        self.breaker = policy;
        self
    }

    /// Per-key signature rate limit; off unless set here (`KeyManager::from_env` in the
    /// `keymgr` facade sets the documented default of 100 per minute).
    pub fn rate_limit(mut self, policy: Option<RateLimitPolicy>) -> Self {
        self.rate_limit = policy;
        self
    }

    /// Where audit records go (default: `tracing` only).
    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = sink;
        self
    }

    /// Who is acting (service name, operator), recorded in audit entries.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Retry policy (default [`RetryPolicy::default`]); `None` disables retries.
    pub fn retry(mut self, policy: Option<RetryPolicy>) -> Self {
        self.retry = policy;
        self
    }

    /// Per-attempt timeout (default 10 s); `None` disables it.
    pub fn timeout(mut self, limit: Option<Duration>) -> Self {
        self.timeout = limit;
        self
    }

    /// Public key cache TTL (default 1 h); `None` disables the cache.
    pub fn public_key_cache(mut self, ttl: Option<Duration>) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Stacks the layers (see [`crate::layer`]) and returns the manager.
    pub fn build(self) -> KeyManager {
        let mut stack = self.backend;
        if let Some(limit) = self.timeout {
            stack = Arc::new(Timeout::new(stack, limit));
        }
        if let Some(policy) = self.breaker {
            stack = Arc::new(CircuitBreaker::new(stack, policy));
        }
        if let Some(policy) = self.retry {
            stack = Arc::new(Retry::new(stack, policy));
        }
        if let Some(ttl) = self.cache_ttl {
            stack = Arc::new(Cached::with_ttl(stack, ttl));
        }
        if let Some(policy) = self.rate_limit {
            stack = Arc::new(RateLimit::new(stack, policy));
        }
        KeyManager {
            backend: stack,
            audit: self.audit,
            actor: self.actor,
        }
    }
}

impl KeyManager {
    /// Starts building a manager over `backend` (timeout, breaker, retry and public key
    /// cache on by default; rate limit off).
    pub fn builder(backend: Arc<dyn KeyBackend>) -> KeyManagerBuilder {
        KeyManagerBuilder {
            backend,
            audit: Arc::new(TracingAuditSink),
            actor: None,
            retry: Some(RetryPolicy::default()),
            timeout: Some(Duration::from_secs(10)),
            cache_ttl: Some(Cached::<Arc<dyn KeyBackend>>::DEFAULT_TTL),
            breaker: Some(BreakerPolicy::default()),
            rate_limit: None,
        }
    }

    /// Where this manager's audit records go (for components that audit on their own,
    /// such as the rotation scheduler).
    pub fn audit_sink(&self) -> &Arc<dyn AuditSink> {
        &self.audit
    }

    /// The layered backend stack.
    pub fn backend(&self) -> &Arc<dyn KeyBackend> {
        &self.backend
    }

    /// Who this manager acts as in audit entries (`KEYMGR_ACTOR`), if set.
    pub fn actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    fn record(&self, event: AuditEvent, key: &KeyRef, outcome: Outcome) -> AuditRecord {
        let mut r = AuditRecord::new(event, self.backend.name(), key.name(), outcome);
        r.key_version = key.version().map(str::to_owned);
        r.actor = self.actor.clone();
        r
    }

    /// Signs `payload` with `key`: audits the request, signs through the layers, audits
    /// the outcome, and returns only after the outcome record is written.
    ///
    /// If the request record cannot be written, nothing is signed (fail closed).
    pub async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<Signature> {
        let digest = hex::encode(Sha256::digest(payload.as_bytes()));
        let mut request = self.record(AuditEvent::SignRequest, key, Outcome::Pending);
        request.payload_sha256 = Some(digest.clone());
        request
            .details
            .insert("payload_kind".into(), payload.kind().into());
        self.audit.record(request).await?;

        let result = self.sign_verified(key, payload).await;
        let mut outcome = match &result {
            Ok(sig) => self
                .record(AuditEvent::SignSuccess, key, Outcome::Success)
                .detail("algorithm", sig.algorithm().as_str()),
            Err(e) => {
                let (event, outcome) = match e {
                    Error::RateLimited { .. } => (AuditEvent::RateLimited, Outcome::Denied),
                    Error::AccessDenied { .. } => (AuditEvent::KeyAccessDenied, Outcome::Denied),
                    _ => (AuditEvent::SignFailure, Outcome::Failure),
                };
                let mut r = self
                    .record(event, key, outcome)
                    .detail("error", e.to_string());
                r.error_kind = Some(e.kind());
                r
            }
        };
        outcome.payload_sha256 = Some(digest);
        self.audit.record(outcome).await?;
        result
    }

    /// Signs and checks the result against the (cached) public key: providers verify
    /// already, and this keeps the guarantee for any third-party backend too.
    async fn sign_verified(&self, key: &KeyRef, payload: &SignPayload) -> Result<Signature> {
        let signature = self.backend.sign(key, payload).await?;
        let public_key = self.backend.public_key(key).await?;
        public_key.verify(payload, &signature).map_err(|_| {
            Error::integrity(
                key.to_string(),
                format!(
                    "the {} backend returned a signature that does not verify against the key's public key",
                    self.backend.name()
                ),
            )
        })?;
        Ok(signature)
    }

    /// The public key of `key` (cached).
    pub async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        self.backend.public_key(key).await
    }

    /// Health of the whole stack.
    pub async fn health(&self) -> HealthReport {
        self.backend.health().await
    }
}

#[async_trait]
impl KeyBackend for KeyManager {
    fn name(&self) -> &str {
        self.backend.name()
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        KeyManager::public_key(self, key).await
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<Signature> {
        KeyManager::sign(self, key, payload).await
    }

    async fn health(&self) -> HealthReport {
        KeyManager::health(self).await
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        self.backend.list_versions(name).await
    }

    /// Refused: rotation has one implementation, `keymgr_rotation::Rotator` (build it
    /// with `Rotator::from_manager`), which audits every step and keeps the old version
    /// through its overlap.
    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
        Err(Error::unsupported(
            self.backend.name(),
            "create_version",
            format!(
                "KeyManager does not rotate {name}: use keymgr_rotation::Rotator::from_manager \
                 (or `keymgr rotate`), the one audited, crash-safe rotation path"
            ),
        ))
    }

    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        let result = self.backend.disable_version(key).await;
        let mut r = self.record(
            AuditEvent::KeyDisabled,
            key,
            if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        );
        if let Err(e) = &result {
            r.error_kind = Some(e.kind());
            r.details.insert("error".into(), e.to_string());
        }
        self.audit.record(r).await?;
        result
    }

    async fn encrypt(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        self.backend.encrypt(key, plaintext, context).await
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        self.backend.decrypt(key, ciphertext, context).await
    }

    async fn generate_data_key(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        self.backend.generate_data_key(key, context).await
    }

    fn invalidate(&self, name: &str) {
        self.backend.invalidate(name);
    }
}
