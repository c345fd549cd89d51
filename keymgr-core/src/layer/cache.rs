use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::{
    DataKey, EncryptionContext, HealthReport, KeyBackend, KeyRef, KeyVersion, PublicKey, Result,
    SecretBytes, SignPayload, Signature,
};

/// Caches public keys for a TTL (default 1 hour); rotation and
/// [`invalidate`](KeyBackend::invalidate) drop the cached entries of a key.
#[derive(Debug)]
pub struct Cached<B> {
    inner: B,
    ttl: Duration,
    entries: Mutex<HashMap<KeyRef, (Instant, PublicKey)>>,
}

impl<B: KeyBackend> Cached<B> {
    /// Default time a public key stays cached.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// Wraps `inner` with the default TTL.
    pub fn new(inner: B) -> Self {
        Self::with_ttl(inner, Self::DEFAULT_TTL)
    }

    /// Wraps `inner` with a custom TTL.
    pub fn with_ttl(inner: B, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyRef, (Instant, PublicKey)>> {
        // A poisoned cache only means a panic elsewhere; its data is still a valid cache.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn drop_name(&self, name: &str) {
        self.lock().retain(|k, _| k.name() != name);
    }
}

#[async_trait]
impl<B: KeyBackend> KeyBackend for Cached<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        if let Some((at, pk)) = self.lock().get(key)
            && at.elapsed() < self.ttl
        {
            return Ok(pk.clone());
        }
        let pk = self.inner.public_key(key).await?;
        self.lock()
            .insert(key.clone(), (Instant::now(), pk.clone()));
        Ok(pk)
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<Signature> {
        self.inner.sign(key, payload).await
    }

    async fn health(&self) -> HealthReport {
        self.inner.health().await
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        self.inner.list_versions(name).await
    }

    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
        let result = self.inner.create_version(name).await;
        // Even a failed attempt may have moved the current version: never serve a stale key.
        self.drop_name(name);
        result
    }

    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        let result = self.inner.disable_version(key).await;
        self.drop_name(key.name());
        result
    }

    async fn encrypt(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        self.inner.encrypt(key, plaintext, context).await
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        self.inner.decrypt(key, ciphertext, context).await
    }

    async fn generate_data_key(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        self.inner.generate_data_key(key, context).await
    }

    fn invalidate(&self, name: &str) {
        self.drop_name(name);
        self.inner.invalidate(name);
    }
}
