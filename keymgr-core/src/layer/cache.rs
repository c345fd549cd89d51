use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Layered, Next, Operation, Policy, Reply};
use crate::{KeyBackend, KeyRef, PublicKey, Result};

/// How long [`Cached`] keeps a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Time to live (default 1 hour).
    pub ttl: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
        }
    }
}

/// Caches public keys for a TTL (default 1 hour); rotation and
/// [`invalidate`](KeyBackend::invalidate) drop the cached entries of a key.
pub type Cached<B> = Layered<PublicKeyCache, B>;

impl<B: KeyBackend> Cached<B> {
    /// Default time a public key stays cached.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// Wraps `inner` with the default TTL.
    pub fn new(inner: B) -> Self {
        Self::with_ttl(inner, Self::DEFAULT_TTL)
    }

    /// Wraps `inner` with a custom TTL.
    pub fn with_ttl(inner: B, ttl: Duration) -> Self {
        Layered::with_policy(inner, PublicKeyCache::new(CachePolicy { ttl }))
    }
}

/// The cached entries of a [`Cached`] layer: the [`Policy`] behind it.
#[derive(Debug)]
pub struct PublicKeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<KeyRef, (Instant, PublicKey)>>,
}

impl PublicKeyCache {
    /// An empty cache.
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            ttl: policy.ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyRef, (Instant, PublicKey)>> {
        // A poisoned cache only means a panic elsewhere; its data is still a valid cache.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &KeyRef) -> Option<PublicKey> {
        match self.lock().get(key) {
            Some((at, pk)) if at.elapsed() < self.ttl => Some(pk.clone()),
            _ => None,
        }
    }
}

#[async_trait]
impl Policy for PublicKeyCache {
    async fn call(
        &self,
        _backend: &str,
        operation: Operation<'_>,
        next: Next<'_>,
    ) -> Result<Reply> {
        match operation {
            Operation::PublicKey(key) => {
                if let Some(pk) = self.get(key) {
                    crate::metrics::cache_lookup("public_key", true);
                    return Ok(Reply::PublicKey(pk));
                }
                crate::metrics::cache_lookup("public_key", false);
                let reply = next.run().await?;
                if let Reply::PublicKey(pk) = &reply {
                    self.lock()
                        .insert(key.clone(), (Instant::now(), pk.clone()));
                }
                Ok(reply)
            }
            Operation::CreateVersion(_)
            | Operation::DisableVersion(_)
            | Operation::DeleteVersion(_) => {
                let result = next.run().await;
                // Even a failed attempt may have moved the current version: never serve a
                // stale key.
                self.invalidate(operation.key_name());
                result
            }
            _ => next.run().await,
        }
    }

    fn invalidate(&self, name: &str) {
        self.lock().retain(|k, _| k.name() != name);
    }
}
