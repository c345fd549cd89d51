//! Signing throughput against the provisioned SoftHSM2 token.
//!
//! - `pool`: 16 concurrent secp256k1 signatures per iteration with a session pool of
//!   1 vs 2 (compare the throughputs: the ratio is what the pool buys).
//! - `overhead`: one secp256k1 signature at a time, keymgr vs calling cryptoki's
//!   `C_Sign` directly on a logged-in session with the key handle already known (and
//!   direct + a k256 verification, the check keymgr adds to every signature), and the
//!   same through `KeyManager::new`'s full stack (`key_manager_sign`).
//!
//! Run with `cargo xtask bench` (or `eval "$(cargo xtask provision --test-env)"` first).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{KeyBackend, KeyManager, KeyRef, SignPayload};
use keymgr_hsm::{HsmBackend, HsmConfig};

const CONCURRENT: usize = 16;

fn config() -> Option<HsmConfig> {
    if std::env::var_os(keymgr_hsm::HSM_PKCS11_LIBRARY_PATH).is_none()
        || std::env::var_os("SOFTHSM2_CONF").is_none()
    {
        keymgr_testkit::skip_or_fail(
            "SoftHSM2 token for the keymgr-hsm benchmarks",
            "run `cargo xtask bench`, or `eval \"$(cargo xtask provision --test-env)\"` first",
        );
        return None;
    }
    Some(HsmConfig::from_env().expect("provisioned HSM_* variables"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn pool(c: &mut Criterion) {
    let Some(config) = config() else { return };
    let rt = runtime();
    let mut group = c.benchmark_group("pool");
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    for size in [1usize, 2] {
        let hsm = Arc::new(
            rt.block_on(HsmBackend::connect(config.clone().with_pool_size(size)))
                .unwrap(),
        );
        let key = KeyRef::new("evm");
        rt.block_on(hsm.public_key(&key)).unwrap();
        group.bench_function(format!("secp256k1_x{CONCURRENT}_pool_{size}"), |b| {
            b.to_async(&rt).iter(|| {
                let hsm = hsm.clone();
                async move {
                    let mut set = tokio::task::JoinSet::new();
                    for i in 0..CONCURRENT {
                        let hsm = hsm.clone();
                        set.spawn(async move {
                            hsm.sign(
                                &KeyRef::new("evm"),
                                &SignPayload::Prehash([i as u8 + 1; 32]),
                            )
                            .await
                            .unwrap()
                        });
                    }
                    while let Some(r) = set.join_next().await {
                        r.unwrap();
                    }
                }
            });
        });
    }
    // The same work on raw cryptoki sessions from 1 vs 2 threads: what the module
    // itself allows, to read keymgr's pool ratio against.
    let (_hsm, ctx, login, handle) = direct_session(&config, &rt);
    let slot = login.get_session_info().unwrap().slot_id();
    for threads in [1usize, 2] {
        let sessions: Vec<_> = (0..threads)
            .map(|_| std::sync::Mutex::new(ctx.open_rw_session(slot).unwrap()))
            .collect();
        group.bench_function(
            format!("cryptoki_direct_x{CONCURRENT}_threads_{threads}"),
            |b| {
                b.iter(|| {
                    std::thread::scope(|scope| {
                        for s in &sessions {
                            scope.spawn(move || {
                                let s = s.lock().unwrap();
                                for i in 0..CONCURRENT / threads {
                                    s.sign(&Mechanism::Ecdsa, handle, &[i as u8 + 1; 32])
                                        .unwrap();
                                }
                            });
                        }
                    });
                })
            },
        );
    }
    group.finish();
}

/// A backend with pool size 1, and a raw logged-in session (sharing the backend's
/// login) with the EVM key's handle. Keep the backend alive while using the session: the
/// last backend to go finalizes the module.
fn direct_session(
    config: &HsmConfig,
    rt: &tokio::runtime::Runtime,
) -> (
    HsmBackend,
    Pkcs11,
    cryptoki::session::Session,
    cryptoki::object::ObjectHandle,
) {
    let hsm = rt
        .block_on(HsmBackend::connect(config.clone().with_pool_size(1)))
        .unwrap();
    let ctx = Pkcs11::new(&config.library_path).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| s.id() == hsm.slot_id())
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    let pin = AuthPin::from(std::env::var(keymgr_hsm::HSM_PIN).unwrap());
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login: {e}"),
    }
    let label = config
        .keys
        .get("evm")
        .cloned()
        .unwrap_or_else(|| "evm".into());
    let handle = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.into_bytes()),
        ])
        .unwrap()[0];
    (hsm, ctx, session, handle)
}

fn overhead(c: &mut Criterion) {
    let Some(config) = config() else { return };
    let rt = runtime();
    let (hsm, _ctx, session, handle) = direct_session(&config, &rt);
    let key = KeyRef::new("evm");
    let pk = rt.block_on(hsm.public_key(&key)).unwrap();
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes()).unwrap();
    let h = [0x5au8; 32];

    let mut group = c.benchmark_group("overhead");
    group.bench_function("cryptoki_direct", |b| {
        b.iter(|| session.sign(&Mechanism::Ecdsa, handle, &h).unwrap())
    });
    group.bench_function("cryptoki_direct_plus_k256_verify", |b| {
        b.iter(|| {
            let raw = session.sign(&Mechanism::Ecdsa, handle, &h).unwrap();
            let sig = k256::ecdsa::Signature::from_slice(&raw).unwrap();
            let sig = sig.normalize_s().unwrap_or(sig);
            vk.verify_prehash(&h, &sig).unwrap();
        })
    });
    group.bench_function("keymgr_sign", |b| {
        b.to_async(&rt)
            .iter(|| async { hsm.sign(&key, &SignPayload::Prehash(h)).await.unwrap() })
    });
    // The full stack a service uses (KeyManager::new: recommended layers, audit to
    // tracing); goal: key_manager_sign <= 1.10 x cryptoki_direct_plus_k256_verify.
    let manager = KeyManager::new(Arc::new(hsm.clone()));
    group.bench_function("key_manager_sign", |b| {
        b.to_async(&rt)
            .iter(|| async { manager.sign(&key, &SignPayload::Prehash(h)).await.unwrap() })
    });
    group.finish();
}

criterion_group!(benches, pool, overhead);
criterion_main!(benches);
