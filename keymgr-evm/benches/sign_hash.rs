//! `sign_hash` through keymgr-evm on the env backend vs alloy's `PrivateKeySigner`, same
//! key, same hashes, same process. Both are driven through the async `Signer` trait on one
//! current-thread runtime, so the runtime overhead is the same on both sides.
//!
//! `cargo bench -p keymgr-evm --bench sign_hash`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use alloy_primitives::{B256, keccak256};
use alloy_signer::Signer as _;
use alloy_signer_local::PrivateKeySigner;
use criterion::{Criterion, criterion_group, criterion_main};
use k256::ecdsa::SigningKey;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{KeyBackend, KeyManager};
use keymgr_env::EnvBackend;
use keymgr_evm::EvmSigner;

fn sign_hash(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = SigningKey::from_bytes(&keccak256("keymgr bench key").0.into()).unwrap();
    let env: Arc<dyn KeyBackend> =
        Arc::new(EnvBackend::new().with_secp256k1_key("evm", key.clone()));
    let evm = rt.block_on(EvmSigner::new(env.clone(), "evm")).unwrap();
    let managed = rt
        .block_on(EvmSigner::new(Arc::new(KeyManager::new(env)), "evm"))
        .unwrap();
    let sk_for_floor = key.clone();
    let local = PrivateKeySigner::from_signing_key(key);
    assert_eq!(evm.address(), local.address());

    // A fixed rotation of hashes, so neither side benefits from one special input.
    let hashes: Vec<B256> = (0u32..64).map(|i| keccak256(i.to_be_bytes())).collect();
    let mut group = c.benchmark_group("sign_hash");
    let mut i = 0usize;
    group.bench_function("PrivateKeySigner", |b| {
        b.iter(|| {
            i = (i + 1) % hashes.len();
            black_box(rt.block_on(local.sign_hash(black_box(&hashes[i]))).unwrap())
        })
    });
    group.bench_function("EvmSigner<env>", |b| {
        b.iter(|| {
            i = (i + 1) % hashes.len();
            black_box(rt.block_on(evm.sign_hash(black_box(&hashes[i]))).unwrap())
        })
    });
    group.bench_function("EvmSigner<KeyManager<env>>", |b| {
        b.iter(|| {
            i = (i + 1) % hashes.len();
            black_box(
                rt.block_on(managed.sign_hash(black_box(&hashes[i])))
                    .unwrap(),
            )
        })
    });
    group.finish();

    // Where EvmSigner's time goes: the backend's sign (k256 recoverable sign + one
    // verification in finish_recoverable, which also yields the recovery id).
    let mut parts = c.benchmark_group("sign_hash_parts");
    let key_ref = keymgr_core::KeyRef::versioned("evm", "1");
    parts.bench_function("EnvBackend::sign", |b| {
        b.iter(|| {
            i = (i + 1) % hashes.len();
            let payload = keymgr_core::SignPayload::Prehash(hashes[i].0);
            black_box(
                rt.block_on(evm.backend().sign(&key_ref, black_box(&payload)))
                    .unwrap(),
            )
        })
    });
    // The floor EvmSigner is measured against (keymgr-core/README.md): one recoverable
    // k256 signature and one verification, the least a verify-after-sign signer can do.
    let vk = *sk_for_floor.verifying_key();
    parts.bench_function(
        "floor: k256 sign_prehash_recoverable + verify_prehash",
        |b| {
            b.iter(|| {
                i = (i + 1) % hashes.len();
                let (sig, recid) = sk_for_floor
                    .sign_prehash_recoverable(black_box(&hashes[i].0))
                    .unwrap();
                vk.verify_prehash(&hashes[i].0, &sig).unwrap();
                black_box((sig, recid))
            })
        },
    );
    parts.finish();
}

criterion_group!(benches, sign_hash);
criterion_main!(benches);
