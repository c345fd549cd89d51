//! Provider switching: the time from a failover member failing to a signature from the
//! next member, against the next member signing alone (the baseline) in the same
//! process. keymgr's own time is the difference.
//!
//! - `baseline`: the second member (env backend behind its breaker and cache) signs;
//! - `breaker closed`: the first member is called and fails (an unavailable error, as a
//!   dead endpoint gives once its timeout fires), then the second signs;
//! - `breaker open`: the first member's breaker is open, so it is skipped without a
//!   call, then the second signs. Goal: ≤ 50 µs over the baseline.
//!
//! `failover_overhead/*` repeats the three with a second member that answers at once with
//! a ready verified signature (no k256 work), so the differences from its baseline are
//! keymgr's own time, without the ±15 % noise of a real signature on a shared machine.
//!
//! `cargo bench -p keymgr-core --bench failover` (results: keymgr-core/README.md)
#![allow(missing_docs, clippy::expect_used)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use keymgr_core::layer::{BreakerPolicy, CachePolicy, Failover, Layer as _};
use keymgr_core::{
    Error, HealthReport, KeyBackend, KeyRef, PublicKey, Result, SignPayload, VerifiedSignature,
    finish_recoverable,
};
use keymgr_env::EnvBackend;

/// A member whose provider is down: every call fails at once.
#[derive(Debug)]
struct Down;

#[async_trait]
impl KeyBackend for Down {
    fn name(&self) -> &str {
        "down"
    }
    async fn public_key(&self, _key: &KeyRef) -> Result<PublicKey> {
        Err(Error::unavailable("down", "connection refused", None))
    }
    async fn sign(&self, _key: &KeyRef, _payload: &SignPayload) -> Result<VerifiedSignature> {
        Err(Error::unavailable("down", "connection refused", None))
    }
    async fn health(&self) -> HealthReport {
        HealthReport::unhealthy("down", Duration::ZERO, "down")
    }
}

fn member(inner: Arc<dyn KeyBackend>, failure_threshold: u32) -> Arc<dyn KeyBackend> {
    let breaker = BreakerPolicy {
        failure_threshold,
        open_for: Duration::from_secs(3600),
    };
    let inner: Arc<dyn KeyBackend> = Arc::new(breaker.layer(inner));
    Arc::new(CachePolicy::default().layer(inner))
}

/// Answers every call at once with the same verified signature.
#[derive(Debug)]
struct Instant {
    public_key: PublicKey,
    signature: VerifiedSignature,
}

#[async_trait]
impl KeyBackend for Instant {
    fn name(&self) -> &str {
        "instant"
    }
    async fn public_key(&self, _key: &KeyRef) -> Result<PublicKey> {
        Ok(self.public_key.clone())
    }
    async fn sign(&self, _key: &KeyRef, _payload: &SignPayload) -> Result<VerifiedSignature> {
        Ok(self.signature.clone())
    }
    async fn health(&self) -> HealthReport {
        HealthReport::healthy("instant", Duration::ZERO)
    }
}

fn signing_key() -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("key")
}

fn env_member() -> Arc<dyn KeyBackend> {
    Arc::new(EnvBackend::new().with_secp256k1_key("evm", signing_key()))
}

fn instant_member() -> Arc<dyn KeyBackend> {
    let sk = signing_key();
    let public_key = PublicKey::Secp256k1(*sk.verifying_key());
    let digest = [0x5a; 32];
    let (sig, recid) = sk.sign_prehash_recoverable(&digest).expect("sign");
    let signature = finish_recoverable("evm", &public_key, &digest, sig, recid).expect("verifies");
    Arc::new(Instant {
        public_key,
        signature,
    })
}

fn bench(c: &mut Criterion) {
    group(c, "failover_sign", env_member());
    group(c, "failover_overhead", instant_member());
}

/// The three cases with `next` as the member that signs.
fn group(c: &mut Criterion, name: &str, next: Arc<dyn KeyBackend>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let second = member(next, 5);
    // Never opens (threshold unreachable in a run): every call reaches the dead member.
    let closed = Failover::named(vec![
        ("down".into(), member(Arc::new(Down), u32::MAX)),
        ("env".into(), second.clone()),
    ])
    .expect("failover");
    // Opens on the first failure and stays open for the run.
    let open = Failover::named(vec![
        ("down".into(), member(Arc::new(Down), 1)),
        ("env".into(), second.clone()),
    ])
    .expect("failover");
    let key = KeyRef::new("evm");
    rt.block_on(open.sign(&key, &SignPayload::Prehash([1; 32])))
        .expect("opens the first member's breaker");
    let digests: Vec<[u8; 32]> = (0u8..64).map(|i| [i.wrapping_mul(37) ^ 0x5a; 32]).collect();
    let mut i = 0usize;

    let mut g = c.benchmark_group(name);
    let mut run = |name: &str, backend: &dyn KeyBackend| {
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % digests.len();
                let payload = SignPayload::Prehash(digests[i]);
                rt.block_on(backend.sign(&key, black_box(&payload)))
                    .expect("sign")
            })
        });
    };
    run("baseline: next member alone", second.as_ref());
    run("breaker closed: first member fails, next signs", &closed);
    run("breaker open: first member skipped, next signs", &open);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
