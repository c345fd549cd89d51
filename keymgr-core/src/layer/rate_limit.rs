use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Layered, Next, Operation, Policy, Reply};
use crate::{Error, KeyBackend, KeyRef, Result};

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
pub type RateLimit<B> = Layered<RateLimiter, B>;

impl<B: KeyBackend> RateLimit<B> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: B, policy: RateLimitPolicy) -> Self {
        Layered::with_policy(inner, RateLimiter::new(policy))
    }
}

/// A [`RateLimitPolicy`] with its per-key buckets: the [`Policy`] behind [`RateLimit`].
#[derive(Debug)]
pub struct RateLimiter {
    policy: RateLimitPolicy,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Full buckets under `policy`.
    pub fn new(policy: RateLimitPolicy) -> Self {
        Self {
            policy,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn acquire(&self, key: &KeyRef) -> Result<()> {
        let capacity = f64::from(self.policy.limit.max(1));
        let per_token = self.policy.per.as_secs_f64() / capacity;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let bucket = match buckets.get_mut(key.name()) {
            Some(b) => b,
            None => buckets.entry(key.name().to_owned()).or_insert(Bucket {
                tokens: capacity,
                updated: now,
            }),
        };
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
impl Policy for RateLimiter {
    async fn call(
        &self,
        _backend: &str,
        operation: Operation<'_>,
        next: Next<'_>,
    ) -> Result<Reply> {
        if let Operation::Sign(key, _) = operation {
            self.acquire(key)?;
        }
        next.run().await
    }
}
