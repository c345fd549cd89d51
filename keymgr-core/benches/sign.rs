//! What keymgr adds on top of raw signing, measured against the cryptographic floor in
//! the same process (see README.md for the table):
//!
//! - floor: one k256 `sign_prehash_recoverable` + one `verify_prehash`, the least a
//!   verify-after-sign signer can do;
//! - `EnvBackend::sign`: k256 signing, then `finish_recoverable` (one libsecp256k1
//!   recovery checks the signature and the recovery id signing reported);
//! - `KeyManager::sign`: the recommended stack (rate limit off, cache, retry, breaker,
//!   timeout), audit records to `tracing`, key and payload checks;
//! - `verify_recoverable` (libsecp256k1 recovery: validity and parity) vs k256's
//!   `verify_prehash` (validity alone).
//!
//! `cargo bench -p keymgr-core --bench sign`
#![allow(missing_docs, clippy::expect_used)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{
    HealthReport, KeyBackend, KeyManager, KeyRef, PublicKey, SignPayload, VerifiedSignature,
    finish_recoverable, verify_recoverable,
};
use keymgr_env::EnvBackend;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let sk = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("key");
    let vk = *sk.verifying_key();
    let backend = Arc::new(EnvBackend::new().with_secp256k1_key("evm", sk.clone()));
    let manager = KeyManager::new(backend.clone());
    let key = KeyRef::new("evm");
    // A fixed rotation of digests, so no input is special.
    let digests: Vec<[u8; 32]> = (0u8..64).map(|i| [i.wrapping_mul(37) ^ 0x5a; 32]).collect();
    let mut i = 0usize;

    let mut g = c.benchmark_group("secp256k1_sign");
    g.bench_function(
        "floor: k256 sign_prehash_recoverable + verify_prehash",
        |b| {
            b.iter(|| {
                i = (i + 1) % digests.len();
                let (sig, recid) = sk
                    .sign_prehash_recoverable(black_box(&digests[i]))
                    .expect("sign");
                vk.verify_prehash(&digests[i], &sig).expect("verify");
                black_box((sig, recid))
            })
        },
    );
    g.bench_function("EnvBackend::sign", |b| {
        b.iter(|| {
            i = (i + 1) % digests.len();
            let payload = SignPayload::Prehash(digests[i]);
            rt.block_on(backend.sign(&key, black_box(&payload)))
                .expect("sign")
        })
    });
    g.bench_function("KeyManager::sign", |b| {
        b.iter(|| {
            i = (i + 1) % digests.len();
            let payload = SignPayload::Prehash(digests[i]);
            rt.block_on(manager.sign(&key, black_box(&payload)))
                .expect("sign")
        })
    });
    g.finish();

    let (sig, _) = sk.sign_prehash_recoverable(&digests[0]).expect("sign");
    let mut g = c.benchmark_group("secp256k1_verify");
    g.bench_function("k256 verify_prehash", |b| {
        b.iter(|| vk.verify_prehash(black_box(&digests[0]), black_box(&sig)))
    });
    g.bench_function("verify_recoverable", |b| {
        b.iter(|| verify_recoverable(&vk, black_box(&digests[0]), black_box(&sig)))
    });
    g.bench_function("k256 trial recovery (old EvmSigner parity search)", |b| {
        b.iter(|| {
            k256::ecdsa::RecoveryId::trial_recovery_from_prehash(
                &vk,
                black_box(&digests[0]),
                black_box(&sig),
            )
        })
    });
    g.finish();
}

/// Answers every call at once with the same verified signature: what is left of
/// `KeyManager::sign` over it is keymgr's own work per call (audit records, hashing,
/// layers, the key and payload checks).
#[derive(Debug)]
struct Instant {
    public_key: PublicKey,
    signature: VerifiedSignature,
}

#[async_trait::async_trait]
impl KeyBackend for Instant {
    fn name(&self) -> &str {
        "instant"
    }
    async fn public_key(&self, _key: &KeyRef) -> keymgr_core::Result<PublicKey> {
        Ok(self.public_key.clone())
    }
    async fn sign(
        &self,
        _key: &KeyRef,
        _payload: &SignPayload,
    ) -> keymgr_core::Result<VerifiedSignature> {
        Ok(self.signature.clone())
    }
    async fn health(&self) -> HealthReport {
        HealthReport::healthy("instant", std::time::Duration::ZERO)
    }
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let sk = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("key");
    let public_key = PublicKey::Secp256k1(*sk.verifying_key());
    let digest = [0x5a; 32];
    let (sig, recid) = sk.sign_prehash_recoverable(&digest).expect("sign");
    let signature = finish_recoverable("evm", &public_key, &digest, sig, recid).expect("verifies");
    let instant = Arc::new(Instant {
        public_key,
        signature,
    });
    let manager = KeyManager::new(instant.clone());
    let bare = KeyManager::builder(instant.clone()).build();
    let key = KeyRef::new("evm");
    let payload = SignPayload::Prehash(digest);
    let mut g = c.benchmark_group("keymgr_overhead");
    g.bench_function("instant backend", |b| {
        b.iter(|| rt.block_on(instant.sign(&key, black_box(&payload))))
    });
    g.bench_function("KeyManager::sign, no layers", |b| {
        b.iter(|| rt.block_on(bare.sign(&key, black_box(&payload))))
    });
    g.bench_function("KeyManager::sign, recommended layers", |b| {
        b.iter(|| rt.block_on(manager.sign(&key, black_box(&payload))))
    });
    g.finish();
}

criterion_group!(benches, bench, overhead);
criterion_main!(benches);
