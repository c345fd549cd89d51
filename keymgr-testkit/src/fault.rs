//! Fault injection: [`Faulty`] wraps a backend and misbehaves on command.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use keymgr_core::{
    Error, HealthReport, KeyBackend, KeyRef, KeyVersion, PublicKey, Result, SignPayload,
    VerifiedSignature,
};

/// One injected misbehaviour, consumed by the next call it applies to.
#[derive(Debug)]
pub enum Fault {
    /// The next call fails with this error.
    Fail(Error),
    /// The next call waits this long first (then proceeds normally).
    Delay(Duration),
    /// The next `sign` returns a signature over a different payload (a faulty device).
    CorruptSignature,
}

/// A backend wrapper that applies queued [`Fault`]s and counts calls.
#[derive(Debug)]
pub struct Faulty<B> {
    inner: B,
    faults: Mutex<VecDeque<Fault>>,
    sign_calls: AtomicUsize,
    public_key_calls: AtomicUsize,
}

impl<B: KeyBackend> Faulty<B> {
    /// Wraps `inner` with no faults queued.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            faults: Mutex::new(VecDeque::new()),
            sign_calls: AtomicUsize::new(0),
            public_key_calls: AtomicUsize::new(0),
        }
    }

    /// Queues a fault for the next call.
    pub fn inject(&self, fault: Fault) {
        self.lock().push_back(fault);
    }

    /// Queues `n` copies of an error built by `make`.
    pub fn fail_next(&self, n: usize, make: impl Fn() -> Error) {
        for _ in 0..n {
            self.inject(Fault::Fail(make()));
        }
    }

    /// How many times `sign` reached this wrapper.
    pub fn sign_calls(&self) -> usize {
        self.sign_calls.load(Ordering::SeqCst)
    }

    /// How many times `public_key` reached this wrapper.
    pub fn public_key_calls(&self) -> usize {
        self.public_key_calls.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Fault>> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn before(&self) -> Result<bool> {
        let next = self.lock().pop_front();
        match next {
            None => Ok(false),
            Some(Fault::Fail(e)) => Err(e),
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(false)
            }
            Some(Fault::CorruptSignature) => Ok(true),
        }
    }
}

#[async_trait]
impl<B: KeyBackend> KeyBackend for Faulty<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        self.public_key_calls.fetch_add(1, Ordering::SeqCst);
        self.before().await?;
        self.inner.public_key(key).await
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        self.sign_calls.fetch_add(1, Ordering::SeqCst);
        if self.before().await? {
            let other = match payload {
                SignPayload::Prehash(h) => {
                    let mut h = *h;
                    h[31] ^= 0x01;
                    SignPayload::Prehash(h)
                }
                SignPayload::Message(m) => {
                    let mut m = m.clone();
                    m.push(0);
                    SignPayload::Message(m)
                }
            };
            return self.inner.sign(key, &other).await;
        }
        self.inner.sign(key, payload).await
    }

    async fn health(&self) -> HealthReport {
        self.inner.health().await
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        self.before().await?;
        self.inner.list_versions(name).await
    }

    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
        self.before().await?;
        self.inner.create_version(name).await
    }

    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        self.before().await?;
        self.inner.disable_version(key).await
    }

    async fn delete_version(&self, key: &KeyRef) -> Result<()> {
        self.before().await?;
        self.inner.delete_version(key).await
    }

    fn invalidate(&self, name: &str) {
        self.inner.invalidate(name);
    }
}
