//! What the signer does when the backend misbehaves: corrupted signatures, failures and
//! a key rotated behind its back never produce a claim, and never move the guard.

// Test helpers panic to fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use keymgr_core::deps::async_trait;
use keymgr_core::{
    Error, ErrorKind, HealthReport, KeyBackend, KeyRef, PublicKey, Result, SignPayload,
    VerifiedSignature,
};
use keymgr_env::EnvBackend;
use keymgr_testkit::fault::{Fault, Faulty};
use keymgr_xrp::{ChannelId, ClaimSigner, Drops, XrpError, verify_claim};

const CHANNEL: &str = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";

fn env(seed: &str) -> EnvBackend {
    EnvBackend::new().with_xrpl_seed("xrp", seed).unwrap()
}

#[tokio::test]
async fn corrupted_signature_is_an_integrity_error() {
    for seed in [
        "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r",
        "sp5fghtJtpUorTwvof1NpDXAzNwf5",
    ] {
        let faulty = Arc::new(Faulty::new(env(seed)));
        let signer = ClaimSigner::new(faulty.clone(), "xrp").await.unwrap();
        faulty.inject(Fault::CorruptSignature);
        let e = signer.sign_claim(CHANNEL, 100u64).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        let channel = ChannelId::from_hex(CHANNEL).unwrap();
        assert_eq!(signer.last_signed(&channel).await, None, "guard moved");
        // The next call is clean and may sign a lower amount: nothing was issued.
        let sig = signer.sign_claim(CHANNEL, 50u64).await.unwrap();
        assert!(verify_claim(
            CHANNEL,
            50u64,
            &sig,
            &signer.public_key().to_string()
        ));
        assert_eq!(signer.last_signed(&channel).await, Drops::new(50).ok());
    }
}

#[tokio::test]
async fn backend_failures_pass_through_typed() {
    let faulty = Arc::new(Faulty::new(env("sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r")));
    let signer = ClaimSigner::new(faulty.clone(), "xrp").await.unwrap();
    faulty.fail_next(1, || Error::unavailable("env", "injected outage", None));
    let e = signer.sign_claim(CHANNEL, 100u64).await.unwrap_err();
    assert!(matches!(e, XrpError::Backend(_)), "{e:?}");
    assert!(e.is_retryable());
    assert_eq!(e.field(), None);
    signer.sign_claim(CHANNEL, 1u64).await.unwrap();

    // A missing key fails when the signer is built, naming the key.
    let e = ClaimSigner::new(faulty, "no-such-key").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("no-such-key"), "{e}");
}

/// A backend whose key under a name can be replaced, as an unversioned alias moves on
/// rotation.
#[derive(Debug)]
struct Rotating(Mutex<Arc<EnvBackend>>);

impl Rotating {
    fn current(&self) -> Arc<EnvBackend> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl KeyBackend for Rotating {
    fn name(&self) -> &str {
        "rotating"
    }
    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        self.current().public_key(key).await
    }
    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        self.current().sign(key, payload).await
    }
    async fn health(&self) -> HealthReport {
        self.current().health().await
    }
}

#[tokio::test]
async fn key_rotated_behind_the_signer_is_refused() {
    use keymgr_core::deps::{ed25519_dalek, k256};
    let rotated_ed =
        EnvBackend::new().with_ed25519_key("xrp", ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    let rotated_secp = EnvBackend::new().with_secp256k1_key(
        "xrp",
        k256::ecdsa::SigningKey::from_bytes(&[7; 32].into()).unwrap(),
    );
    for (old, new) in [
        ("sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r", rotated_ed),
        ("sp5fghtJtpUorTwvof1NpDXAzNwf5", rotated_secp),
    ] {
        let backend = Arc::new(Rotating(Mutex::new(Arc::new(env(old)))));
        let signer = ClaimSigner::new(backend.clone(), "xrp").await.unwrap();
        signer.sign_claim(CHANNEL, 10u64).await.unwrap();
        *backend.0.lock().unwrap() = Arc::new(new);
        let e = signer.sign_claim(CHANNEL, 20u64).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("rotated") && msg.contains(&signer.public_key().to_string()),
            "{msg}"
        );
        let channel = ChannelId::from_hex(CHANNEL).unwrap();
        assert_eq!(signer.last_signed(&channel).await, Drops::new(10).ok());
    }
}

#[tokio::test]
async fn record_signed_restores_the_guard() {
    let signer = ClaimSigner::new(Arc::new(env("sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r")), "xrp")
        .await
        .unwrap();
    let channel = ChannelId::from_hex(CHANNEL).unwrap();
    signer
        .record_signed(&channel, Drops::new(1_000).unwrap())
        .await;
    signer
        .record_signed(&channel, Drops::new(10).unwrap())
        .await; // never lowers
    assert_eq!(signer.last_signed(&channel).await, Drops::new(1_000).ok());
    assert!(matches!(
        signer.sign_claim(&channel, 999u64).await,
        Err(XrpError::AmountDecreased { .. })
    ));
    signer.sign_claim(&channel, 1_000u64).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_on_one_channel() {
    // Tasks race to sign amounts in random order on one channel: each is either signed
    // or refused because a higher amount was signed first, and the guard ends at the
    // highest amount signed.
    let signer = Arc::new(
        ClaimSigner::new(Arc::new(env("sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r")), "xrp")
            .await
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let signer = signer.clone();
        tasks.push(tokio::spawn(async move {
            let amount = (i * 7919) % 101 + 1;
            (amount, signer.sign_claim(CHANNEL, amount).await)
        }));
    }
    let mut signed = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (amount, Ok(sig)) => {
                assert!(verify_claim(
                    CHANNEL,
                    amount,
                    &sig,
                    &signer.public_key().to_string()
                ));
                signed.push(amount);
            }
            (
                amount,
                Err(XrpError::AmountDecreased {
                    previous,
                    requested,
                    ..
                }),
            ) => {
                assert_eq!(requested.get(), amount);
                assert!(previous > requested);
            }
            (_, Err(e)) => panic!("unexpected error {e}"),
        }
    }
    let max = *signed.iter().max().unwrap();
    let channel = ChannelId::from_hex(CHANNEL).unwrap();
    assert_eq!(
        signer.last_signed(&channel).await.map(Drops::get),
        Some(max)
    );
}
