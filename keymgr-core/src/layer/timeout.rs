use std::time::Duration;

use async_trait::async_trait;

use crate::{
    DataKey, EncryptionContext, Error, HealthReport, HealthStatus, KeyBackend, KeyRef, KeyVersion,
    PublicKey, Result, SecretBytes, SignPayload, Signature,
};

/// Bounds each call to the inner backend; an overrun is [`Error::Timeout`] (retryable).
#[derive(Debug)]
pub struct Timeout<B> {
    inner: B,
    limit: Duration,
}

impl<B: KeyBackend> Timeout<B> {
    /// Wraps `inner`, bounding every call by `limit`.
    pub fn new(inner: B, limit: Duration) -> Self {
        Self { inner, limit }
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        tokio::time::timeout(self.limit, fut)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    backend: self.inner.name().to_owned(),
                    operation,
                    after: self.limit,
                })
            })
    }
}

#[async_trait]
impl<B: KeyBackend> KeyBackend for Timeout<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        self.run("public_key", self.inner.public_key(key)).await
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<Signature> {
        self.run("sign", self.inner.sign(key, payload)).await
    }

    async fn health(&self) -> HealthReport {
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(self.limit, self.inner.health()).await {
            Ok(report) => report,
            Err(_) => HealthReport {
                backend: self.inner.name().to_owned(),
                status: HealthStatus::Unhealthy,
                latency: started.elapsed(),
                detail: Some(format!("health check timed out after {:?}", self.limit)),
                components: Vec::new(),
            },
        }
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        self.run("list_versions", self.inner.list_versions(name))
            .await
    }

    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
        // Not bounded: abandoning a half-done key creation would leave an orphan key.
        self.inner.create_version(name).await
    }

    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        self.run("disable_version", self.inner.disable_version(key))
            .await
    }

    async fn encrypt(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        self.run("encrypt", self.inner.encrypt(key, plaintext, context))
            .await
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        self.run("decrypt", self.inner.decrypt(key, ciphertext, context))
            .await
    }

    async fn generate_data_key(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        self.run(
            "generate_data_key",
            self.inner.generate_data_key(key, context),
        )
        .await
    }

    fn invalidate(&self, name: &str) {
        self.inner.invalidate(name);
    }
}
