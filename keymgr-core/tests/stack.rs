//! The layer mechanism (caller-ordered stacks, custom policies, idempotency) and signing
//! across a rotation made by another manager.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::layer::{
    BreakerPolicy, BreakerState, Layered, Next, Operation, Policy, Reply, Retry, RetryPolicy,
    Timeout, TimeoutPolicy, layer_fn,
};
use keymgr_core::{
    Error, ErrorKind, HealthStatus, IntegrityReason, KeyAlgorithm, KeyBackend, KeyManager, KeyRef,
    RecommendedLayers, SignPayload,
};
use keymgr_env::EnvBackend;
use keymgr_testkit::fault::{Fault, Faulty};
use keymgr_testkit::memory::{FailAt, MemoryBackend};

/// A custom policy: counts the calls that pass through it, per operation kind.
#[derive(Debug, Default)]
struct Counting {
    signs: AtomicUsize,
    timeouts_seen: AtomicUsize,
}

#[async_trait]
impl Policy for Counting {
    async fn call(
        &self,
        _backend: &str,
        operation: Operation<'_>,
        next: Next<'_>,
    ) -> Result<Reply, Error> {
        if matches!(operation, Operation::Sign(..)) {
            self.signs.fetch_add(1, Ordering::SeqCst);
        }
        let result = next.run().await;
        if matches!(&result, Err(e) if e.kind() == ErrorKind::Timeout) {
            self.timeouts_seen.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

fn unavailable() -> Error {
    Error::unavailable("env", "injected outage", None)
}

fn no_jitter() -> RetryPolicy {
    RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_layer_sits_where_the_caller_puts_it() {
    let inner = Arc::new(Faulty::new(EnvBackend::generate()));
    let counting = Arc::new(Counting::default());
    let probe = counting.clone();
    // Retry, then the custom layer, then Timeout: the custom layer sees every attempt
    // (1 + 2 retries) and every timeout before Retry does.
    let manager = KeyManager::builder(inner.clone())
        .layer(no_jitter())
        .layer(layer_fn(move |b| {
            Layered::with_policy(b, SharedPolicy(probe.clone()))
        }))
        .layer(TimeoutPolicy {
            limit: Duration::from_secs(2),
        })
        .build();
    inner.inject(Fault::Delay(Duration::from_secs(30)));
    inner.inject(Fault::Delay(Duration::from_secs(30)));
    let payload = SignPayload::Prehash([3; 32]);
    let sig = manager.sign(&KeyRef::new("evm"), &payload).await.unwrap();
    assert_eq!(counting.signs.load(Ordering::SeqCst), 3);
    assert_eq!(counting.timeouts_seen.load(Ordering::SeqCst), 2);
    assert_eq!(inner.sign_calls(), 3);
    // Checked independently of keymgr: k256 over the same prehash.
    let vk = manager.public_key(&KeyRef::new("evm")).await.unwrap();
    vk.as_secp256k1()
        .unwrap()
        .verify_prehash(&[3; 32], sig.as_secp256k1().unwrap().as_k256())
        .unwrap();

    // The other order (Timeout outside the custom layer, no Retry): one attempt, and the
    // timeout is raised outside the custom layer, which never sees it.
    let counting = Arc::new(Counting::default());
    let probe = counting.clone();
    let manager = KeyManager::builder(inner.clone())
        .layer(TimeoutPolicy {
            limit: Duration::from_secs(2),
        })
        .layer(layer_fn(move |b| {
            Layered::with_policy(b, SharedPolicy(probe.clone()))
        }))
        .build();
    inner.inject(Fault::Delay(Duration::from_secs(30)));
    let e = manager
        .sign(&KeyRef::new("evm"), &payload)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(e.operation(), Some("sign"));
    assert_eq!(counting.signs.load(Ordering::SeqCst), 1);
    assert_eq!(counting.timeouts_seen.load(Ordering::SeqCst), 0);
}

/// Shares one [`Counting`] between the test and the stack.
#[derive(Debug)]
struct SharedPolicy(Arc<Counting>);

#[async_trait]
impl Policy for SharedPolicy {
    async fn call(
        &self,
        backend: &str,
        operation: Operation<'_>,
        next: Next<'_>,
    ) -> Result<Reply, Error> {
        self.0.call(backend, operation, next).await
    }
}

#[tokio::test(start_paused = true)]
async fn create_version_is_never_retried_nor_abandoned() {
    let memory = Arc::new(MemoryBackend::with_key("evm", KeyAlgorithm::Secp256k1));
    // The version is created, then the call fails with a retryable error: a retry would
    // create a second version.
    memory.fail_next_create(FailAt::After);
    let stack = Retry::new(
        Timeout::new(memory.clone(), Duration::from_millis(1)),
        no_jitter(),
    );
    let e = stack.create_version("evm").await.unwrap_err();
    assert!(e.is_retryable(), "the injected failure is retryable: {e}");
    assert_eq!(memory.creates(), 1, "not retried");
    // Idempotent operations on the same stack are retried.
    assert_eq!(stack.list_versions("evm").await.unwrap().len(), 2);
    assert!(Operation::Sign(&KeyRef::new("k"), &SignPayload::Prehash([0; 32])).is_idempotent());
    assert!(!Operation::CreateVersion("k").is_idempotent());
}

#[tokio::test(start_paused = true)]
async fn retry_counts_one_plus_max_retries_and_layers_unwrap() {
    let inner = Arc::new(Faulty::new(EnvBackend::generate()));
    inner.fail_next(10, unavailable);
    let retry = Retry::new(inner.clone(), no_jitter());
    let e = retry
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([1; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(inner.sign_calls(), 4);
    assert_eq!(retry.policy(), &no_jitter());
    assert!(Arc::ptr_eq(retry.get_ref(), &inner));
    assert!(Arc::ptr_eq(&retry.into_inner(), &inner));
}

#[tokio::test]
async fn two_managers_sign_across_a_rotation_made_by_the_other() {
    for algorithm in [KeyAlgorithm::Secp256k1, KeyAlgorithm::Ed25519] {
        let backend: Arc<dyn KeyBackend> = Arc::new(MemoryBackend::with_key("k", algorithm));
        // Two processes' managers over one key store, each with its own 1 h cache.
        let a = KeyManager::new(backend.clone());
        let b = KeyManager::new(backend.clone());
        let key = KeyRef::new("k");
        let payload = match algorithm {
            KeyAlgorithm::Secp256k1 => SignPayload::Prehash([9; 32]),
            _ => SignPayload::message(b"claim".to_vec()),
        };
        let before = b.public_key(&key).await.unwrap();
        b.sign(&key, &payload).await.unwrap();
        a.sign(&key, &payload).await.unwrap();

        // Manager `a`'s process rotates through its own stack, as
        // `keymgr_rotation::Rotator::from_manager` does (its cache drops the key); `b`'s
        // cache still holds the old public key.
        a.backend().create_version("k").await.unwrap();
        for _ in 0..3 {
            let sig_a = a.sign(&key, &payload).await.unwrap();
            let sig = b.sign(&key, &payload).await.unwrap();
            let now = backend.public_key(&key).await.unwrap();
            assert_ne!(now, before, "the key did rotate");
            assert_eq!(sig_a.public_key(), &now, "a signs with the new version");
            assert_eq!(sig.public_key(), &now, "signed by the new version");
            // Independent check with the curve libraries themselves.
            match (&now, &payload) {
                (keymgr_core::PublicKey::Secp256k1(vk), SignPayload::Prehash(h)) => vk
                    .verify_prehash(h, sig.as_secp256k1().unwrap().as_k256())
                    .unwrap(),
                (keymgr_core::PublicKey::Ed25519(vk), SignPayload::Message(m)) => vk
                    .verify_strict(
                        m,
                        &ed25519_dalek::Signature::from_bytes(
                            &sig.as_ed25519().unwrap().to_bytes(),
                        ),
                    )
                    .unwrap(),
                _ => unreachable!(),
            }
        }
        // B's cache now holds the new key.
        assert_eq!(
            b.public_key(&key).await.unwrap(),
            backend.public_key(&key).await.unwrap()
        );
    }
}

/// Signs with one key but reports another as its public key, every time.
#[derive(Debug)]
struct Lying {
    signer: EnvBackend,
    claimed: EnvBackend,
}

#[async_trait]
impl KeyBackend for Lying {
    fn name(&self) -> &str {
        "lying"
    }
    async fn public_key(&self, key: &KeyRef) -> keymgr_core::Result<keymgr_core::PublicKey> {
        self.claimed.public_key(key).await
    }
    async fn sign(
        &self,
        key: &KeyRef,
        payload: &SignPayload,
    ) -> keymgr_core::Result<keymgr_core::VerifiedSignature> {
        self.signer.sign(key, payload).await
    }
    async fn health(&self) -> keymgr_core::HealthReport {
        self.signer.health().await
    }
}

#[tokio::test]
async fn a_key_that_stays_different_after_one_re_read_is_an_integrity_error() {
    let lying = Arc::new(Faulty::new(Lying {
        signer: EnvBackend::generate(),
        claimed: EnvBackend::generate(),
    }));
    let manager = KeyManager::new(lying.clone());
    let e = manager
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([2; 32]))
        .await
        .unwrap_err();
    assert_eq!(
        e.integrity_reason(),
        Some(IntegrityReason::KeyChanged),
        "{e}"
    );
    assert!(matches!(&e, Error::Integrity { key, .. } if key == "evm"));
    assert_eq!(
        lying.public_key_calls(),
        2,
        "read once, re-read once, no more"
    );
    assert!(!e.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn health_reports_breaker_state_as_a_field() {
    let inner = Arc::new(Faulty::new(EnvBackend::generate()));
    let manager = KeyManager::builder(inner.clone())
        .recommended_layers(RecommendedLayers {
            retry: None,
            breaker: Some(BreakerPolicy {
                failure_threshold: 1,
                open_for: Duration::from_secs(60),
            }),
            ..Default::default()
        })
        .build();
    let h = manager.health().await;
    assert_eq!(
        (h.status, h.breaker),
        (HealthStatus::Healthy, Some(BreakerState::Closed))
    );
    inner.fail_next(1, unavailable);
    manager
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([1; 32]))
        .await
        .unwrap_err();
    let h = manager.health().await;
    assert_eq!(
        (h.status, h.breaker),
        (HealthStatus::Unhealthy, Some(BreakerState::Open))
    );
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["breaker"], "open");
    assert!(json["latency_ms"].is_number());
}
