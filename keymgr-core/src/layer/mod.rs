//! Behaviour as layers, in tower's shape: each concern is a [`Policy`] written once
//! against one method ([`Policy::call`], which sees every backend call as an
//! [`Operation`]); [`Layered`] runs a policy around an inner backend and is the only place
//! that maps the [`KeyBackend`] methods onto operations; a [`Layer`] builds the wrapper,
//! and the *caller* orders the stack
//! ([`KeyManagerBuilder::layer`](crate::KeyManagerBuilder::layer), first added =
//! outermost).
//!
//! The recommended stack ([`RecommendedLayers`](crate::RecommendedLayers), what
//! [`KeyManager::new`](crate::KeyManager::new) and `keymgr`'s `from_env` use), outermost
//! first:
//!
//! ```text
//! KeyManager (audit; checks the verified signature's key and payload)
//!   └ RateLimit       per key, e.g. 100 signatures / minute (opt-in; on via from_env)
//!     └ Cached        public keys, 1 h TTL, invalidated on rotation or key change
//!       └ Retry       3 retries, 1 s / 2 s / 4 s ± 20 %, retryable errors of
//!                     idempotent operations only (never create_version or
//!                     delete_version)
//!         └ CircuitBreaker   open after 5 consecutive failures, trial after 60 s
//!           └ Timeout        per attempt, 10 s (not create_version/delete_version:
//!                            never abandoned)
//!             └ provider (env, aws-kms, hsm, ...) or a Failover over several,
//!               each member with its own CircuitBreaker
//! ```
//!
//! Every layer is usable on its own: `Retry::new(Timeout::new(backend, d), policy)`, and
//! a custom one is a [`Policy`] wrapped with [`Layered::with_policy`] or [`layer_fn`].
//! Providers keep retries to this one place (the AWS provider turns the SDK's own off).

mod breaker;
mod cache;
mod failover;
mod lazy;
mod metrics;
mod operation;
mod rate_limit;
mod retry;
pub mod route;
mod timeout;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

pub use breaker::{Breaker, BreakerPolicy, BreakerState, CircuitBreaker};
pub use cache::{CachePolicy, Cached, PublicKeyCache};
pub use failover::{CanaryPolicy, Failover, MemberFailure, MemberFailures};
pub use lazy::Restarting;
pub use metrics::{Metrics, MetricsPolicy};
pub use operation::{Operation, Reply};
pub use rate_limit::{RateLimit, RateLimitPolicy, RateLimiter};
pub use retry::{Retry, RetryPolicy};
pub use timeout::{Timeout, TimeoutPolicy};

use crate::{HealthReport, KeyBackend, Result};

/// A boxed, `Send` future (what policies and `next` calls return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Calls the wrapped backend with the operation a [`Policy`] is running; call
/// [`run`](Next::run) once, several times (retry) or not at all (fail fast, cache hit).
#[derive(Clone, Copy)]
pub struct Next<'a> {
    call: &'a (dyn Fn() -> BoxFuture<'a, Result<Reply>> + Send + Sync),
}

impl<'a> Next<'a> {
    /// One call to the inner backend.
    pub fn run(&self) -> BoxFuture<'a, Result<Reply>> {
        (self.call)()
    }
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Next")
    }
}

/// One concern (retry, timeout, breaker, cache, limit, metrics, ...) written once for
/// every backend operation.
#[async_trait]
pub trait Policy: Send + Sync + fmt::Debug {
    /// Runs `operation` against the inner backend named `backend` through `next`.
    async fn call(&self, backend: &str, operation: Operation<'_>, next: Next<'_>) -> Result<Reply>;

    /// The inner backend's health (`inner`), as this layer sees it; default: unchanged.
    async fn health(&self, backend: &str, inner: BoxFuture<'_, HealthReport>) -> HealthReport {
        let _ = backend;
        inner.await
    }

    /// Drops anything this layer keeps for `name` (called after rotation).
    fn invalidate(&self, name: &str) {
        let _ = name;
    }
}

/// A backend `B` wrapped in a policy `P`: the one place where backend methods become
/// [`Operation`]s. [`Retry`], [`Timeout`], [`CircuitBreaker`], [`Cached`] and
/// [`RateLimit`] are `Layered` with their policy.
#[derive(Debug)]
pub struct Layered<P, B> {
    inner: B,
    policy: P,
}

impl<P, B> Layered<P, B> {
    /// Wraps `inner` in `policy`.
    pub fn with_policy(inner: B, policy: P) -> Self {
        Self { inner, policy }
    }

    /// The wrapped backend.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped backend, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Unwraps the backend.
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

impl<P: Policy, B: KeyBackend> Layered<P, B> {
    fn backend_name(&self) -> &str {
        self.inner.name()
    }

    async fn dispatch(&self, operation: Operation<'_>) -> Result<Reply> {
        let inner = &self.inner;
        let call = move || -> BoxFuture<'_, Result<Reply>> { Box::pin(operation.call(inner)) };
        self.policy
            .call(inner.name(), operation, Next { call: &call })
            .await
    }

    async fn dispatch_health(&self) -> HealthReport {
        self.policy
            .health(self.inner.name(), Box::pin(self.inner.health()))
            .await
    }

    fn dispatch_invalidate(&self, name: &str) {
        self.policy.invalidate(name);
        self.inner.invalidate(name);
    }
}

/// Implements [`KeyBackend`] for a type with inherent `backend_name`, `dispatch`,
/// `dispatch_health` and `dispatch_invalidate`: every method becomes one [`Operation`].
/// With `, sign_with_context` the type also has inherent `sign_in_context`,
/// `sign_audited` and `audit_refusal` that [`KeyBackend::sign_with_context`],
/// [`KeyBackend::sign_with_outcome_context`] and [`KeyBackend::refuse_sign`] call (the
/// auditing manager); otherwise the trait's defaults apply (layers below the manager
/// sign and ignore the context).
macro_rules! dispatch_backend {
    ([$($generics:tt)*] $ty:ty) => {
        $crate::layer::dispatch_backend!(@impl [$($generics)*] $ty {});
    };
    ([$($generics:tt)*] $ty:ty, sign_with_context) => {
        $crate::layer::dispatch_backend!(@impl [$($generics)*] $ty {
            async fn sign_with_context(
                &self,
                key: &$crate::KeyRef,
                payload: &$crate::SignPayload,
                context: &$crate::SignContext,
            ) -> $crate::Result<$crate::VerifiedSignature> {
                self.sign_in_context(key, payload, Some(context)).await
            }
            async fn sign_with_outcome_context(
                &self,
                key: &$crate::KeyRef,
                payload: &$crate::SignPayload,
                context: &$crate::SignContext,
                outcome: &dyn $crate::OutcomeContext,
            ) -> $crate::Result<$crate::VerifiedSignature> {
                self.sign_audited(key, payload, Some(context), Some(outcome)).await
            }
            async fn refuse_sign(
                &self,
                key: &$crate::KeyRef,
                payload: &$crate::SignPayload,
                context: &$crate::SignContext,
                error: $crate::Error,
            ) -> $crate::Error {
                self.audit_refusal(key, payload, context, error).await
            }
        });
    };
    (@impl [$($generics:tt)*] $ty:ty { $($extra:tt)* }) => {
        #[async_trait::async_trait]
        impl<$($generics)*> $crate::KeyBackend for $ty {
            $($extra)*
            fn name(&self) -> &str {
                self.backend_name()
            }
            async fn public_key(&self, key: &$crate::KeyRef) -> $crate::Result<$crate::PublicKey> {
                self.dispatch($crate::layer::Operation::PublicKey(key)).await?.into_public_key()
            }
            async fn sign(
                &self,
                key: &$crate::KeyRef,
                payload: &$crate::SignPayload,
            ) -> $crate::Result<$crate::VerifiedSignature> {
                self.dispatch($crate::layer::Operation::Sign(key, payload)).await?.into_signature()
            }
            async fn health(&self) -> $crate::HealthReport {
                self.dispatch_health().await
            }
            async fn list_versions(&self, name: &str) -> $crate::Result<Vec<$crate::KeyVersion>> {
                self.dispatch($crate::layer::Operation::ListVersions(name)).await?.into_versions()
            }
            async fn create_version(&self, name: &str) -> $crate::Result<$crate::KeyVersion> {
                self.dispatch($crate::layer::Operation::CreateVersion(name)).await?.into_version()
            }
            async fn disable_version(&self, key: &$crate::KeyRef) -> $crate::Result<()> {
                self.dispatch($crate::layer::Operation::DisableVersion(key)).await?.into_done()
            }
            async fn delete_version(&self, key: &$crate::KeyRef) -> $crate::Result<()> {
                self.dispatch($crate::layer::Operation::DeleteVersion(key)).await?.into_done()
            }
            async fn encrypt(
                &self,
                key: &$crate::KeyRef,
                plaintext: &[u8],
                context: &$crate::EncryptionContext,
            ) -> $crate::Result<Vec<u8>> {
                self.dispatch($crate::layer::Operation::Encrypt(key, plaintext, context))
                    .await?
                    .into_ciphertext()
            }
            async fn decrypt(
                &self,
                key: &$crate::KeyRef,
                ciphertext: &[u8],
                context: &$crate::EncryptionContext,
            ) -> $crate::Result<$crate::SecretBytes> {
                self.dispatch($crate::layer::Operation::Decrypt(key, ciphertext, context))
                    .await?
                    .into_plaintext()
            }
            async fn generate_data_key(
                &self,
                key: &$crate::KeyRef,
                context: &$crate::EncryptionContext,
            ) -> $crate::Result<$crate::DataKey> {
                self.dispatch($crate::layer::Operation::GenerateDataKey(key, context))
                    .await?
                    .into_data_key()
            }
            fn invalidate(&self, name: &str) {
                self.dispatch_invalidate(name)
            }
        }
    };
}
pub(crate) use dispatch_backend;

dispatch_backend!([P: Policy, B: KeyBackend] Layered<P, B>);

/// Builds a wrapper around a backend (tower's `Layer`): `RetryPolicy`, `TimeoutPolicy`,
/// `BreakerPolicy`, `CachePolicy` and `RateLimitPolicy` are layers, and [`layer_fn`]
/// turns a closure into one.
pub trait Layer<B> {
    /// The wrapped backend.
    type Backend: KeyBackend;

    /// Wraps `inner`.
    fn layer(&self, inner: B) -> Self::Backend;
}

/// A [`Layer`] from a closure (see [`layer_fn`]).
#[derive(Clone, Copy)]
pub struct LayerFn<F>(F);

impl<F> fmt::Debug for LayerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LayerFn")
    }
}

/// A [`Layer`] that calls `f` with the inner backend, e.g.
/// `layer_fn(|inner| Layered::with_policy(inner, Metrics::default()))`.
pub fn layer_fn<F>(f: F) -> LayerFn<F> {
    LayerFn(f)
}

impl<F, B, Out> Layer<B> for LayerFn<F>
where
    F: Fn(B) -> Out,
    Out: KeyBackend,
{
    type Backend = Out;

    fn layer(&self, inner: B) -> Out {
        (self.0)(inner)
    }
}

macro_rules! policy_layer {
    ($policy:ty => $layered:ident, |$p:ident| $state:expr) => {
        impl<B: KeyBackend> Layer<B> for $policy {
            type Backend = $layered<B>;

            fn layer(&self, inner: B) -> $layered<B> {
                let $p = self;
                Layered::with_policy(inner, $state)
            }
        }
    };
}

policy_layer!(RetryPolicy => Retry, |p| p.clone());
policy_layer!(TimeoutPolicy => Timeout, |p| *p);
policy_layer!(BreakerPolicy => CircuitBreaker, |p| Breaker::new(*p));
policy_layer!(CachePolicy => Cached, |p| PublicKeyCache::new(*p));
policy_layer!(RateLimitPolicy => RateLimit, |p| RateLimiter::new(*p));
policy_layer!(MetricsPolicy => Metrics, |p| p.clone());
