//! The backend conformance suite.
//!
//! Each backend runs it from one test file (`tests/conformance.rs`): [`run`] for
//! signing, [`versions`] for the key versions contract (or [`manual_rotation`] for a
//! backend without rotation), and [`unreachable`] where its service can be taken away.
//!
//! Signatures are checked with k256 and ed25519-dalek directly, from the public key
//! bytes the backend reported, not with keymgr's own verification code.

use std::sync::Arc;

use ed25519_dalek::Verifier as _;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use k256::elliptic_curve::scalar::IsHigh as _;
use keymgr_core::{ErrorKind, KeyAlgorithm, KeyBackend, KeyRef, PublicKey, SignPayload};
use rand_core::RngCore as _;

mod versions;

pub use versions::{
    closed_endpoint, disabled_answers_public_key, disabled_refuses_to_sign, manual_rotation,
    unreachable, versions,
};

/// Which keys of the backend under test the suite uses.
#[derive(Debug, Clone)]
pub struct SuiteKeys {
    /// A secp256k1 key, if the backend has one.
    pub secp256k1: Option<KeyRef>,
    /// An Ed25519 key, if the backend has one.
    pub ed25519: Option<KeyRef>,
    /// A key name that does not exist in the backend.
    pub missing: KeyRef,
}

impl SuiteKeys {
    /// Keys named `secp` and `ed`, with `no-such-key` as the missing one.
    pub fn new(secp256k1: Option<&str>, ed25519: Option<&str>) -> Self {
        Self {
            secp256k1: secp256k1.map(KeyRef::new),
            ed25519: ed25519.map(KeyRef::new),
            missing: KeyRef::new("keymgr-conformance-no-such-key"),
        }
    }
}

/// Runs every conformance check against `backend`; panics with a description on failure.
pub async fn run(backend: Arc<dyn KeyBackend>, keys: &SuiteKeys) {
    assert!(
        keys.secp256k1.is_some() || keys.ed25519.is_some(),
        "the suite needs at least one key"
    );
    if let Some(k) = &keys.secp256k1 {
        secp256k1_signatures(&*backend, k).await;
        payload_mismatch(&*backend, k, KeyAlgorithm::Secp256k1).await;
    }
    if let Some(k) = &keys.ed25519 {
        ed25519_signatures(&*backend, k).await;
        payload_mismatch(&*backend, k, KeyAlgorithm::Ed25519).await;
    }
    missing_key(&*backend, &keys.missing).await;
    health(&*backend).await;
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut b);
    b
}

async fn public_key_of(backend: &dyn KeyBackend, key: &KeyRef, want: KeyAlgorithm) -> PublicKey {
    let pk = backend
        .public_key(key)
        .await
        .unwrap_or_else(|e| panic!("{}: public_key({key}) failed: {e}", backend.name()));
    assert_eq!(
        pk.algorithm(),
        want,
        "{}: algorithm of {key}",
        backend.name()
    );
    let again = backend
        .public_key(key)
        .await
        .expect("second public_key call");
    assert_eq!(
        pk,
        again,
        "{}: public key of {key} is not stable",
        backend.name()
    );
    pk
}

/// secp256k1: signatures over random prehashes verify with k256, are low-s, and sign
/// what was asked (a different hash does not verify).
pub async fn secp256k1_signatures(backend: &dyn KeyBackend, key: &KeyRef) {
    let pk = public_key_of(backend, key, KeyAlgorithm::Secp256k1).await;
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes())
        .expect("public key bytes are a valid SEC1 point");
    for i in 0..8 {
        let h: [u8; 32] = if i == 0 { [0u8; 32] } else { random() };
        let sig = backend
            .sign(key, &SignPayload::Prehash(h))
            .await
            .unwrap_or_else(|e| panic!("{}: sign({key}) failed: {e}", backend.name()));
        let raw = sig.as_secp256k1().expect("a secp256k1 signature");
        let k256_sig = k256::ecdsa::Signature::from_slice(&raw.to_bytes()).expect("r ‖ s");
        assert!(
            !bool::from(k256_sig.s().is_high()),
            "{}: high-s signature",
            backend.name()
        );
        vk.verify_prehash(&h, &k256_sig).unwrap_or_else(|_| {
            panic!(
                "{}: signature by {key} does not verify with k256",
                backend.name()
            )
        });
        let mut other = h;
        other[0] ^= 1;
        assert!(vk.verify_prehash(&other, &k256_sig).is_err());
        // DER form round-trips through k256 too.
        let der = k256::ecdsa::Signature::from_der(&raw.to_der()).expect("canonical DER");
        assert_eq!(der, k256_sig);
    }
}

/// Ed25519: signatures over random messages (empty to 1 KiB) verify with ed25519-dalek.
pub async fn ed25519_signatures(backend: &dyn KeyBackend, key: &KeyRef) {
    let pk = public_key_of(backend, key, KeyAlgorithm::Ed25519).await;
    let bytes: [u8; 32] = pk.to_bytes().try_into().expect("32-byte Ed25519 key");
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&bytes).expect("valid Ed25519 key");
    for len in [0usize, 1, 44, 255, 1024] {
        let mut msg = vec![0u8; len];
        rand_core::OsRng.fill_bytes(&mut msg);
        let sig = backend
            .sign(key, &SignPayload::message(msg.clone()))
            .await
            .unwrap_or_else(|e| panic!("{}: sign({key}, {len} bytes) failed: {e}", backend.name()));
        let sig =
            ed25519_dalek::Signature::from_bytes(&sig.as_ed25519().expect("Ed25519").to_bytes());
        vk.verify_strict(&msg, &sig).unwrap_or_else(|_| {
            panic!(
                "{}: Ed25519 signature by {key} does not verify",
                backend.name()
            )
        });
        msg.push(1);
        assert!(vk.verify(&msg, &sig).is_err());
    }
}

/// A payload of the wrong shape for the key's algorithm is `InvalidInput` naming the key.
pub async fn payload_mismatch(backend: &dyn KeyBackend, key: &KeyRef, algorithm: KeyAlgorithm) {
    let wrong = match algorithm {
        KeyAlgorithm::Secp256k1 => SignPayload::message(b"raw message".to_vec()),
        _ => SignPayload::Prehash(random()),
    };
    let e = backend
        .sign(key, &wrong)
        .await
        .expect_err("a payload of the wrong shape must be refused");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}: {e}", backend.name());
    assert!(
        e.to_string().contains(key.name()),
        "error should name the key: {e}"
    );
}

/// A key that does not exist is `NotFound` naming it, for both operations.
pub async fn missing_key(backend: &dyn KeyBackend, key: &KeyRef) {
    let e = backend.public_key(key).await.expect_err("missing key");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{}: {e}", backend.name());
    assert!(
        e.to_string().contains(key.name()),
        "error should name the key: {e}"
    );
    let e = backend
        .sign(key, &SignPayload::Prehash([1; 32]))
        .await
        .expect_err("missing key");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{}: {e}", backend.name());
    assert!(!e.is_retryable());
}

/// The backend reports itself usable.
pub async fn health(backend: &dyn KeyBackend) {
    let report = backend.health().await;
    assert_eq!(
        report.status,
        keymgr_core::HealthStatus::Healthy,
        "{}: {report:?}",
        backend.name()
    );
}
