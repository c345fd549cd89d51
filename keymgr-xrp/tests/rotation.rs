//! A claim signer is bound to one key version, as channels are: after a rotation it keeps
//! signing with the version it pinned, `check_rotation` reports the new key, and
//! `to_current_version` signs for new channels with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keymgr_core::{KeyAlgorithm, KeyBackend as _, KeyRef};
use keymgr_testkit::memory::MemoryBackend;
use keymgr_xrp::{ChannelId, ClaimSigner, Drops, encode_claim};

const CHANNEL: &str = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";

/// Verifies with ed25519-dalek, independently of keymgr-xrp's own verifier.
fn verifies(public_key_hex: &str, amount: u64, signature_hex: &str) -> bool {
    let pk = hex::decode(public_key_hex).unwrap();
    assert_eq!(pk[0], 0xED, "XRPL form of an Ed25519 key");
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk[1..].try_into().unwrap()).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&hex::decode(signature_hex).unwrap()).unwrap();
    let data = encode_claim(
        &ChannelId::from_hex(CHANNEL).unwrap(),
        Drops::new(amount).unwrap(),
    );
    vk.verify_strict(&data, &sig).is_ok()
}

#[tokio::test]
async fn pinned_version_check_rotation_and_to_current_version() {
    let backend = Arc::new(MemoryBackend::with_key("xrp", KeyAlgorithm::Ed25519));
    let signer = ClaimSigner::new(backend.clone(), "xrp").await.unwrap();
    assert_eq!(signer.key(), &KeyRef::versioned("xrp", "1"));
    assert!(signer.check_rotation().await.unwrap().is_none());

    backend.create_version("xrp").await.unwrap();
    let change = signer.check_rotation().await.unwrap().expect("rotated");
    assert_eq!(change.bound, KeyRef::versioned("xrp", "1"));
    assert_eq!(change.current, KeyRef::versioned("xrp", "2"));
    assert_ne!(change.current_public_key, change.bound_public_key);
    assert_eq!(
        change.current_account,
        change.current_public_key.classic_address()
    );
    // Channels opened with the old key keep getting claims it signs.
    let old = signer.sign_claim(CHANNEL, 10u64).await.unwrap();
    assert!(verifies(&signer.public_key().to_string(), 10, &old));

    let next = signer.to_current_version().await.unwrap();
    assert_eq!(next.key(), &KeyRef::versioned("xrp", "2"));
    assert_eq!(next.public_key(), &change.current_public_key);
    assert_eq!(next.monotonic_guard(), signer.monotonic_guard());
    let new = next.sign_claim(CHANNEL, 5u64).await.unwrap();
    assert!(verifies(&next.public_key().to_string(), 5, &new));
    assert!(!verifies(&signer.public_key().to_string(), 5, &new));
    assert!(next.check_rotation().await.unwrap().is_none());
}

/// The README's `NAME@VERSION` form pins that version, from a `&str` or a `String`,
/// after the key has rotated past it.
#[tokio::test]
async fn name_at_version_text_pins_that_version() {
    let backend = Arc::new(MemoryBackend::with_key("xrp", KeyAlgorithm::Ed25519));
    let v1 = backend
        .public_key(&KeyRef::versioned("xrp", "1"))
        .await
        .unwrap();
    backend.create_version("xrp").await.unwrap();
    for signer in [
        ClaimSigner::new(backend.clone(), "xrp@1").await.unwrap(),
        ClaimSigner::new(backend.clone(), String::from("xrp@1"))
            .await
            .unwrap(),
    ] {
        assert_eq!(signer.key(), &KeyRef::versioned("xrp", "1"));
        let pk = signer.public_key().to_string();
        assert_eq!(hex::decode(&pk).unwrap()[1..], v1.to_bytes());
        let sig = signer.sign_claim(CHANNEL, 1_000u64).await.unwrap();
        assert!(verifies(&pk, 1_000, &sig));
    }
}
