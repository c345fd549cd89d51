//! [`KeyManager`]: the front door that audits every key operation and stacks the layers.

use std::sync::Arc;

mod dispatch;

use sha2::{Digest as _, Sha256};

use crate::layer::{
    BreakerPolicy, CachePolicy, Layer, RateLimitPolicy, RetryPolicy, TimeoutPolicy,
};
use crate::{
    AuditEvent, AuditRecord, AuditSink, Error, HealthReport, IntegrityReason, KeyBackend, KeyRef,
    Outcome, OutcomeContext, PublicKey, Result, SignContext, SignPayload, TracingAuditSink,
    VerifiedSignature,
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
/// use keymgr_core::layer::{RetryPolicy, TimeoutPolicy};
/// # let backend: Arc<dyn keymgr_core::KeyBackend> = unimplemented!();
/// // The recommended stack (see `keymgr_core::layer`):
/// let manager = KeyManager::new(backend.clone());
/// // Or a stack in the caller's order, outermost first:
/// let custom = KeyManager::builder(backend)
///     .layer(RetryPolicy::default())
///     .layer(TimeoutPolicy::default())
///     .build();
/// let signature = manager.sign(&KeyRef::new("evm"), &SignPayload::Prehash([7; 32])).await?;
/// # let _ = (signature, custom); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KeyManager {
    backend: Arc<dyn KeyBackend>,
    audit: Arc<dyn AuditSink>,
    actor: Option<String>,
}

type BoxLayer = Box<dyn FnOnce(Arc<dyn KeyBackend>) -> Arc<dyn KeyBackend> + Send>;

/// Builds a [`KeyManager`] around a provider with the layers the caller adds, in the
/// caller's order: the first [`layer`](Self::layer) is the outermost (it sees each call
/// first), as with tower's `ServiceBuilder`.
pub struct KeyManagerBuilder {
    backend: Arc<dyn KeyBackend>,
    audit: Arc<dyn AuditSink>,
    actor: Option<String>,
    layers: Vec<BoxLayer>,
}

impl std::fmt::Debug for KeyManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManagerBuilder")
            .field("backend", &self.backend)
            .field("audit", &self.audit)
            .field("actor", &self.actor)
            .field("layers", &self.layers.len())
            .finish()
    }
}

/// The recommended stack (see [`crate::layer`]), each layer optional; its
/// [`Default`] is what [`KeyManager::new`] builds: timeout 10 s, breaker 5 failures /
/// 60 s, 3 retries, public keys cached 1 h, no rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendedLayers {
    /// Per-key signature rate limit (outermost); off by default (`keymgr`'s `from_env`
    /// sets 100 per minute).
    pub rate_limit: Option<RateLimitPolicy>,
    /// Public key cache.
    pub cache: Option<CachePolicy>,
    /// Retries of retryable errors.
    pub retry: Option<RetryPolicy>,
    /// Circuit breaker.
    pub breaker: Option<BreakerPolicy>,
    /// Per-attempt timeout (innermost).
    pub timeout: Option<TimeoutPolicy>,
}

impl Default for RecommendedLayers {
    fn default() -> Self {
        Self {
            rate_limit: None,
            cache: Some(CachePolicy::default()),
            retry: Some(RetryPolicy::default()),
            breaker: Some(BreakerPolicy::default()),
            timeout: Some(TimeoutPolicy::default()),
        }
    }
}

impl KeyManagerBuilder {
    /// Adds `layer` inside the layers added so far (outside the ones added later).
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Arc<dyn KeyBackend>> + Send + 'static,
        L::Backend: 'static,
    {
        self.layers
            .push(Box::new(move |inner| Arc::new(layer.layer(inner))));
        self
    }

    /// Adds `layer` if it is `Some` (tower's `option_layer`).
    pub fn option_layer<L>(self, layer: Option<L>) -> Self
    where
        L: Layer<Arc<dyn KeyBackend>> + Send + 'static,
        L::Backend: 'static,
    {
        match layer {
            Some(l) => self.layer(l),
            None => self,
        }
    }

    /// Adds the recommended stack, in its documented order, at this point.
    pub fn recommended_layers(self, layers: RecommendedLayers) -> Self {
        self.option_layer(layers.rate_limit)
            .option_layer(layers.cache)
            .option_layer(layers.retry)
            .option_layer(layers.breaker)
            .option_layer(layers.timeout)
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

    /// Stacks the layers (the first added outermost) and returns the manager.
    pub fn build(self) -> KeyManager {
        let mut stack = self.backend;
        for layer in self.layers.into_iter().rev() {
            stack = layer(stack);
        }
        KeyManager {
            backend: stack,
            audit: self.audit,
            actor: self.actor,
        }
    }
}

impl KeyManager {
    /// A manager over `backend` with the recommended stack
    /// ([`RecommendedLayers::default`]) and audit to `tracing`.
    pub fn new(backend: Arc<dyn KeyBackend>) -> Self {
        Self::recommended(backend).build()
    }

    /// A builder over `backend` that starts with the recommended stack
    /// ([`RecommendedLayers::default`]); layers added to it go inside that stack.
    pub fn recommended(backend: Arc<dyn KeyBackend>) -> KeyManagerBuilder {
        Self::builder(backend).recommended_layers(RecommendedLayers::default())
    }

    /// Starts building a manager over `backend` with no layers: add them in the order
    /// you want with [`layer`](KeyManagerBuilder::layer), or the recommended stack with
    /// [`recommended_layers`](KeyManagerBuilder::recommended_layers).
    pub fn builder(backend: Arc<dyn KeyBackend>) -> KeyManagerBuilder {
        KeyManagerBuilder {
            backend,
            audit: Arc::new(TracingAuditSink),
            actor: None,
            layers: Vec::new(),
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
    /// the outcome, and returns only after the outcome record (and with it the request)
    /// is written.
    ///
    /// If the request record cannot be written, nothing is signed (fail closed). The
    /// signature comes back verified (by the provider, once); the manager checks that it
    /// is over `payload` and by the key's current public key. If the key changed (rotated
    /// by another process since the public key was cached), the cache is dropped and the
    /// key re-read once; only a second mismatch is an [`Error::Integrity`]
    /// ([`IntegrityReason::KeyChanged`]).
    ///
    /// The outcome entry records the version that signed
    /// ([`VerifiedSignature::key_version`], else the version `key` names). Both entries
    /// say what was signed: without a context, [`SignContext::raw`] (a raw digest or
    /// message).
    pub async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        self.sign_audited(key, payload, None, None).await
    }

    /// [`sign`](Self::sign), recording what is signed (`context`; `None`:
    /// [`SignContext::raw`]) as typed fields of the request and outcome entries; what
    /// [`KeyBackend::sign_with_context`] on a manager runs.
    pub async fn sign_in_context(
        &self,
        key: &KeyRef,
        payload: &SignPayload,
        context: Option<&SignContext>,
    ) -> Result<VerifiedSignature> {
        self.sign_audited(key, payload, context, None).await
    }

    /// [`sign_in_context`](Self::sign_in_context), with the success entry's context
    /// completed by `outcome` from the signature (see [`OutcomeContext`]); what
    /// [`KeyBackend::sign_with_outcome_context`] on a manager runs. Still one commit:
    /// the request and the completed outcome are written together.
    pub async fn sign_audited(
        &self,
        key: &KeyRef,
        payload: &SignPayload,
        context: Option<&SignContext>,
        outcome: Option<&dyn OutcomeContext>,
    ) -> Result<VerifiedSignature> {
        let context = context
            .cloned()
            .unwrap_or_else(|| SignContext::raw(payload));
        let digest = hex::encode(Sha256::digest(payload.as_bytes()));
        let mut request = self.record(AuditEvent::SignRequest, key, Outcome::Pending);
        request.payload_sha256 = Some(digest.clone());
        request
            .details
            .insert("payload_kind".into(), payload.kind().into());
        request.context = Some(context.clone());
        // Appended now, made durable with the outcome (one commit per signature).
        self.audit.record_request(request).await?;

        let (result, route) = crate::layer::route::traced(self.sign_checked(key, payload)).await;
        let mut entry = match &result {
            Ok(sig) => {
                let mut r = self
                    .record(AuditEvent::SignSuccess, key, Outcome::Success)
                    .detail("algorithm", sig.algorithm().as_str());
                if let Some(v) = sig.key_version() {
                    r.key_version = Some(v.to_owned());
                }
                r.context = Some(match outcome {
                    Some(o) => o.outcome_context(sig),
                    None => context.clone(),
                });
                r
            }
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
                r.context = Some(context);
                r
            }
        };
        entry.payload_sha256 = Some(digest);
        self.commit(with_route(entry, &route)).await?;
        result
    }

    /// What [`KeyBackend::refuse_sign`] on a manager runs: a `SIGN_FAILURE` entry with
    /// outcome `denied` for a signature an adapter refused before asking for it; returns
    /// `error`.
    pub async fn audit_refusal(
        &self,
        key: &KeyRef,
        payload: &SignPayload,
        context: &SignContext,
        error: Error,
    ) -> Error {
        let mut r = self
            .record(AuditEvent::SignFailure, key, Outcome::Denied)
            .detail("error", error.to_string());
        r.error_kind = Some(error.kind());
        r.context = Some(context.clone());
        r.payload_sha256 = Some(hex::encode(Sha256::digest(payload.as_bytes())));
        if let Err(e) = self.commit(r).await {
            tracing::warn!(key = %key, error = %e, "could not audit a refused signature");
        }
        error
    }

    /// Writes an outcome record (durable on return), timing the commit.
    async fn commit(&self, record: AuditRecord) -> Result<()> {
        let event = record.event.as_str();
        let started = tokio::time::Instant::now();
        let result = self.audit.record(record).await;
        crate::metrics::audit_commit(event, started.elapsed());
        result
    }

    /// Signs and checks what the verified signature proves against what was asked: the
    /// payload, and the key's (cached) public key. Equality checks only: the provider
    /// verified the signature, and [`VerifiedSignature`] cannot be made without that.
    async fn sign_checked(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        let signature = self.backend.sign(key, payload).await?;
        if !signature.is_over(payload) {
            return Err(Error::integrity_failure(
                key.to_string(),
                IntegrityReason::PayloadMismatch,
                format!(
                    "the {} backend returned a signature over another payload than the one asked for",
                    self.backend.name()
                ),
            ));
        }
        if *signature.public_key() == self.backend.public_key(key).await? {
            return Ok(signature);
        }
        // The cached public key may predate a rotation made elsewhere: re-read it once.
        self.backend.invalidate(key.name());
        if *signature.public_key() == self.backend.public_key(key).await? {
            tracing::info!(
                backend = self.backend.name(),
                key = %key,
                "key changed since its public key was cached (rotated elsewhere); re-read it"
            );
            return Ok(signature);
        }
        Err(Error::integrity_failure(
            key.to_string(),
            IntegrityReason::KeyChanged,
            format!(
                "the {} backend signed with a key other than the public key it reports for {key}, even after re-reading it",
                self.backend.name()
            ),
        ))
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

/// Adds which failover member served the call and why earlier ones were skipped.
fn with_route(mut record: AuditRecord, route: &crate::layer::route::Route) -> AuditRecord {
    if let Some(member) = &route.served_by {
        record = record.detail("failover.member", member.clone());
    }
    if let Some(member) = &route.failed_at {
        record = record.detail("failover.failed_at", member.clone());
    }
    if !route.skipped.is_empty() {
        record = record.detail("failover.skipped", route.skipped_summary());
    }
    record
}

crate::layer::dispatch_backend!([] KeyManager, sign_with_context);
