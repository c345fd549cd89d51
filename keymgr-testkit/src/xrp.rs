//! The XRP claim signer suite (feature `xrp`): one function every backend runs with its
//! Ed25519 and secp256k1 keys.
//!
//! Claims are encoded here independently of keymgr-xrp (`"CLM\0"` ‖ channel ‖ u64 BE) and
//! checked with ed25519-dalek / k256 directly against the public key the backend reports.

use std::sync::Arc;

use ed25519_dalek::Verifier as _;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use k256::elliptic_curve::scalar::IsHigh as _;
use keymgr_core::{KeyAlgorithm, KeyBackend, KeyRef, PublicKey};
use keymgr_xrp::{ClaimSigner, MAX_DROPS, XrpError, try_verify_claim, verify_claim};
use rand_core::RngCore as _;
use sha2::Digest as _;

/// Runs every XRP claim check with `key` of `backend`; panics with a description on failure.
pub async fn run(backend: Arc<dyn KeyBackend>, key: KeyRef) {
    let ctx = format!("{} key {key}", backend.name());
    let backend_key = backend
        .public_key(&key)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: public_key failed: {e}"));
    let signer = ClaimSigner::new(backend.clone(), key.clone())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: ClaimSigner::new failed: {e}"));

    public_key_and_address(&ctx, &signer, &backend_key);

    let mut channels = vec![[0u8; 32], [0xFF; 32]];
    for _ in 0..4 {
        channels.push(random_channel());
    }
    for channel in &channels {
        // Increasing amounts per channel (the guard is on), from the extremes of the range.
        let mut amounts = vec![1, 2, random_amount() / 2 + 3];
        amounts.push(MAX_DROPS);
        for amount in amounts {
            claim_round_trip(&ctx, &signer, &backend_key, channel, amount).await;
        }
    }

    monotonic_guard(&ctx, &signer).await;
    guard_can_be_disabled(&ctx, backend.clone(), &key).await;
    malformed_inputs(&ctx, &signer).await;
}

fn random_channel() -> [u8; 32] {
    let mut c = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut c);
    c
}

fn random_amount() -> u64 {
    rand_core::OsRng.next_u64() % MAX_DROPS + 1
}

/// The claim bytes, written out here rather than taken from keymgr-xrp.
fn encode(channel: &[u8; 32], drops: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(44);
    out.extend_from_slice(&[0x43, 0x4C, 0x4D, 0x00]);
    out.extend_from_slice(channel);
    out.extend_from_slice(&drops.to_be_bytes());
    out
}

/// Verifies with ed25519-dalek / k256 directly, under rippled's rules (DER, low s).
fn independently_valid(key: &PublicKey, message: &[u8], signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex) else {
        return false;
    };
    match key {
        PublicKey::Ed25519(vk) => {
            let Ok(bytes) = <[u8; 64]>::try_from(sig.as_slice()) else {
                return false;
            };
            vk.verify(message, &ed25519_dalek::Signature::from_bytes(&bytes))
                .is_ok()
        }
        PublicKey::Secp256k1(vk) => {
            let Ok(sig) = k256::ecdsa::Signature::from_der(&sig) else {
                return false;
            };
            let digest = sha2::Sha512::digest(message);
            !bool::from(sig.s().is_high()) && vk.verify_prehash(&digest[..32], &sig).is_ok()
        }
    }
}

fn public_key_and_address(ctx: &str, signer: &ClaimSigner, backend_key: &PublicKey) {
    let hex_pk = signer.public_key().to_string();
    assert_eq!(
        hex_pk,
        hex_pk.to_uppercase(),
        "{ctx}: public key not uppercase"
    );
    assert_eq!(hex_pk.len(), 66, "{ctx}: XRPL public key is 33 bytes");
    let bytes = hex::decode(&hex_pk).unwrap();
    match backend_key {
        PublicKey::Ed25519(vk) => {
            assert_eq!(signer.algorithm(), KeyAlgorithm::Ed25519, "{ctx}");
            assert_eq!(bytes[0], 0xED, "{ctx}: Ed25519 keys start with ED");
            assert_eq!(&bytes[1..], vk.as_bytes(), "{ctx}: public key");
        }
        PublicKey::Secp256k1(vk) => {
            assert_eq!(signer.algorithm(), KeyAlgorithm::Secp256k1, "{ctx}");
            assert_eq!(
                bytes,
                vk.to_encoded_point(true).as_bytes(),
                "{ctx}: compressed secp256k1 key"
            );
        }
    }
    let address = signer.account_address();
    assert!(address.starts_with('r'), "{ctx}: address {address}");
    assert_eq!(
        address,
        keymgr_core::xrpl::classic_address(&bytes),
        "{ctx}: address of {hex_pk}"
    );
}

async fn claim_round_trip(
    ctx: &str,
    signer: &ClaimSigner,
    key: &PublicKey,
    channel: &[u8; 32],
    amount: u64,
) {
    let channel_hex = hex::encode(channel);
    let pk = signer.public_key().to_string();
    let sig = signer
        .sign_claim(channel_hex.as_str(), amount)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: sign_claim({channel_hex}, {amount}) failed: {e}"));
    assert_eq!(
        sig,
        sig.to_uppercase(),
        "{ctx}: signature not uppercase hex"
    );
    assert!(
        independently_valid(key, &encode(channel, amount), &sig),
        "{ctx}: claim ({channel_hex}, {amount}) signature {sig} fails independent verification"
    );
    assert!(
        verify_claim(channel_hex.as_str(), amount, &sig, &pk),
        "{ctx}: verify_claim rejects a fresh claim"
    );

    // Tampered channel: one bit.
    let mut other = *channel;
    other[(amount % 32) as usize] ^= 0x01;
    assert!(
        !independently_valid(key, &encode(&other, amount), &sig),
        "{ctx}"
    );
    assert!(
        !verify_claim(hex::encode(other), amount, &sig, &pk),
        "{ctx}: claim verifies for a different channel"
    );

    // Tampered amount: one drop more (or less at the cap).
    let wrong = if amount == MAX_DROPS {
        amount - 1
    } else {
        amount + 1
    };
    assert!(
        !independently_valid(key, &encode(channel, wrong), &sig),
        "{ctx}"
    );
    assert!(
        !verify_claim(channel_hex.as_str(), wrong, &sig, &pk),
        "{ctx}: claim verifies for a different amount"
    );

    // Tampered signature: each of a few bytes flipped (DER headers and scalars).
    let sig_bytes = hex::decode(&sig).unwrap();
    for i in [0, 3, sig_bytes.len() / 2, sig_bytes.len() - 1] {
        let mut t = sig_bytes.clone();
        t[i] ^= 0x10;
        let t = hex::encode_upper(t);
        assert!(
            !verify_claim(channel_hex.as_str(), amount, &t, &pk),
            "{ctx}: signature with byte {i} flipped still verifies"
        );
        assert!(
            !independently_valid(key, &encode(channel, amount), &t),
            "{ctx}"
        );
    }
}

async fn monotonic_guard(ctx: &str, signer: &ClaimSigner) {
    assert!(signer.monotonic_guard(), "{ctx}: guard is on by default");
    let channel = hex::encode_upper(random_channel());
    signer
        .sign_claim(channel.as_str(), 5_000u64)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    // The same amount again is fine (a retried request).
    signer
        .sign_claim(channel.as_str(), 5_000u64)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: re-signing the same amount: {e}"));
    match signer.sign_claim(channel.as_str(), 4_999u64).await {
        Err(XrpError::AmountDecreased {
            previous,
            requested,
            ..
        }) => {
            assert_eq!((previous.get(), requested.get()), (5_000, 4_999), "{ctx}");
        }
        other => panic!("{ctx}: a lower amount must be refused, got {other:?}"),
    }
    let e = signer.sign_claim(channel.as_str(), 1u64).await.unwrap_err();
    assert_eq!(e.field(), Some("amount"), "{ctx}");
    assert!(e.to_string().contains(&channel), "{ctx}: {e}");
    signer
        .sign_claim(channel.as_str(), 5_001u64)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    // Other channels are independent.
    signer
        .sign_claim(hex::encode(random_channel()), 1u64)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
}

async fn guard_can_be_disabled(ctx: &str, backend: Arc<dyn KeyBackend>, key: &KeyRef) {
    let signer = ClaimSigner::builder(backend, key.clone())
        .monotonic_guard(false)
        .build()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert!(!signer.monotonic_guard());
    let channel = hex::encode(random_channel());
    let pk = signer.public_key().to_string();
    for amount in [10u64, 9] {
        let sig = signer
            .sign_claim(channel.as_str(), amount)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: guard off, amount {amount}: {e}"));
        assert!(verify_claim(channel.as_str(), amount, &sig, &pk), "{ctx}");
    }
}

async fn malformed_inputs(ctx: &str, signer: &ClaimSigner) {
    let good = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";
    let cases: [(&str, &str, &str); 7] = [
        ("", "1", "channel"),
        (&good[..63], "1", "channel"),
        (
            "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDBZ",
            "1",
            "channel",
        ),
        (good, "0", "amount"),
        (good, "100000000000000001", "amount"),
        (good, "1.5", "amount"),
        (good, "-3", "amount"),
    ];
    for (channel, amount, field) in cases {
        let e = signer
            .sign_claim(channel, amount)
            .await
            .expect_err("malformed input must be refused");
        assert_eq!(
            e.field(),
            Some(field),
            "{ctx}: ({channel:?}, {amount:?}): {e}"
        );
        assert_eq!(e.kind(), keymgr_core::ErrorKind::InvalidInput, "{ctx}");
    }
    let pk = signer.public_key().to_string();
    for (sig, key, field) in [
        ("not hex", pk.as_str(), "signature"),
        ("ABC", pk.as_str(), "signature"),
        ("00", "03XYZ", "public key"),
    ] {
        let e = try_verify_claim(good, "1", sig, key).unwrap_err();
        assert_eq!(e.field(), Some(field), "{ctx}: {e}");
    }
}
