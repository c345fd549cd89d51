use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::{
    DataKey, EncryptionContext, Error, HealthReport, KeyBackend, KeyRef, KeyVersion, PublicKey,
    Result, SecretBytes, SignPayload, Signature,
};

/// How many signatures one key may make per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// Signatures allowed per window (default 100).
    pub limit: u32,
    /// The window (default 1 minute).
    pub per: Duration,
}

impl Default for RateLimitPolicy {
    fn default() -> Self {
        Self {
            limit: 100,
            per: Duration::from_secs(60),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Per-key signature rate limit (token bucket: `limit` per `per`, refilled continuously).
///
/// Over the limit, `sign` fails at once with [`Error::RateLimited`] carrying when a permit
/// will be available; waiting is the caller's decision. Other operations are not limited.
#[derive(Debug)]
pub struct RateLimit<B> {
    inner: B,
    policy: RateLimitPolicy,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl<B: KeyBackend> RateLimit<B> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: B, policy: RateLimitPolicy) -> Self {
        Self {
            inner,
            policy,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn acquire(&self, key: &KeyRef) -> Result<()> {
        let capacity = f64::from(self.policy.limit.max(1));
        let per_token = self.policy.per.as_secs_f64() / capacity;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let bucket = buckets.entry(key.name().to_owned()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() / per_token;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Error::RateLimited {
                key: key.name().to_owned(),
                limit: self.policy.limit,
                per: self.policy.per,
                retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) * per_token),
            })
        }
    }
}

#[async_trait]
impl<B: KeyBackend> KeyBackend for RateLimit<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        self.inner.public_key(key).await
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<Signature> {
        self.acquire(key)?;
        self.inner.sign(key, payload).await
    }

    async fn health(&self) -> HealthReport {
        self.inner.health().await
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        self.inner.list_versions(name).await
    }

    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
        self.inner.create_version(name).await
    }

    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        self.inner.disable_version(key).await
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
        self.inner.invalidate(name);
    }
}
