//! What keymgr adds on top of raw signing, measured against k256 in the same process:
//! raw `sign_prehash` → env backend (sign + verify-after-sign) → full `KeyManager` stack
//! (audit to tracing, verify again, cache, retry, breaker, timeout).
#![allow(missing_docs, clippy::expect_used)] // criterion_group! generates undocumented items

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use k256::ecdsa::signature::hazmat::PrehashSigner as _;
use keymgr_core::{KeyBackend as _, KeyManager, KeyRef, SignPayload};
use keymgr_env::EnvBackend;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let sk = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("key");
    let backend = Arc::new(EnvBackend::new().with_secp256k1_key("evm", sk.clone()));
    let manager = KeyManager::builder(backend.clone()).build();
    let key = KeyRef::new("evm");
    let digest = [0x5a; 32];
    let payload = SignPayload::Prehash(digest);

    let mut g = c.benchmark_group("secp256k1_sign");
    g.bench_function("k256_sign_prehash (baseline)", |b| {
        b.iter(|| {
            let s: k256::ecdsa::Signature = sk.sign_prehash(&digest).expect("sign");
            s
        })
    });
    g.bench_function("env_backend_sign", |b| {
        b.iter(|| rt.block_on(backend.sign(&key, &payload)).expect("sign"))
    });
    g.bench_function("key_manager_sign", |b| {
        b.iter(|| rt.block_on(manager.sign(&key, &payload)).expect("sign"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
