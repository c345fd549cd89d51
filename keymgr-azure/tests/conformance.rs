//! The shared conformance (signing, key versions contract, unreachable service), EVM and
//! XRP suites against the Key Vault stand-in, through
//! Microsoft's real client (`azure_security_keyvault_keys`) over HTTPS with the
//! client-secret credential and the 401 challenge. Every signature is checked by the
//! suites with k256 or alloy's recovery, independently of keymgr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{Error, KeyBackend, KeyManager, KeyRef, SignPayload};
use keymgr_testkit::conformance::{self, SuiteKeys};
use support::{StandIn, backend, fixture};

fn secp(name: &str) -> SuiteKeys {
    SuiteKeys {
        secp256k1: Some(KeyRef::new(name)),
        ed25519: None,
        missing: KeyRef::new("no-such-key"),
    }
}

#[tokio::test]
async fn conformance_secp256k1() {
    let (stand_in, b) = fixture().await;
    conformance::run(b.clone(), &secp("evm")).await;
    // A name that is not configured is the Key Vault key name itself.
    conformance::run(b.clone(), &secp("evm-signer")).await;
    // One token for the whole run: the challenge is answered once and the token reused.
    assert_eq!(stand_in.calls("token"), 1);
}

#[tokio::test]
async fn versions_contract() {
    let (stand_in, b) = fixture().await;
    // Each run gets a new instance (as another process would) for the disabled version.
    let fresh = || backend(&stand_in, "evm-signer", "xrp-signer");
    conformance::versions(&*b, &*fresh(), "evm").await;
    conformance::versions(&*b, &*fresh(), "evm").await;
}

#[tokio::test]
async fn unreachable_service_is_unavailable_and_retryable() {
    let stand_in = StandIn::start(support::SECRET).await;
    let closed = conformance::closed_endpoint("https");
    let v = support::vars(
        &stand_in,
        &[
            ("AZURE_VAULT_URL", &closed),
            ("AZURE_AUTHORITY_HOST", &closed),
            ("AZURE_EVM_KEY_NAME", "evm-signer"),
        ],
    );
    let b = keymgr_azure::AzureKvBackend::new(support::config(&v)).unwrap();
    conformance::unreachable(&b, &KeyRef::new("evm")).await;
}

#[tokio::test]
async fn conformance_behind_a_key_manager() {
    let (_stand_in, b) = fixture().await;
    let manager: Arc<dyn KeyBackend> = Arc::new(KeyManager::builder(b).build());
    conformance::run(manager, &secp("evm")).await;
}

#[tokio::test]
async fn conformance_with_pinned_versions() {
    let stand_in = StandIn::start(support::SECRET).await;
    let v1 = stand_in.create_secp256k1("evm-pinned");
    let v2 = stand_in.create_secp256k1("evm-pinned");
    let b = backend(&stand_in, &format!("evm-pinned/{v1}"), "evm-pinned");
    conformance::run(b.clone(), &secp("evm")).await;
    let pinned = b.public_key(&KeyRef::new("evm")).await.unwrap();
    assert_eq!(
        pinned.as_secp256k1(),
        Some(&stand_in.verifying_key("evm-pinned", &v1))
    );
    // The unpinned name follows the newest version; an explicit version wins over both.
    let newest = b.public_key(&KeyRef::new("xrp")).await.unwrap();
    assert_eq!(
        newest.as_secp256k1(),
        Some(&stand_in.verifying_key("evm-pinned", &v2))
    );
    conformance::secp256k1_signatures(&*b, &KeyRef::versioned("evm", v2.clone())).await;
    // The sign call names the version: a signature by v2 verifies under v2 only.
    let digest = [9u8; 32];
    let sig = b
        .sign(
            &KeyRef::versioned("evm", v2.clone()),
            &SignPayload::prehash(&digest).unwrap(),
        )
        .await
        .unwrap();
    let k256_sig = *sig.as_secp256k1().unwrap().as_k256();
    stand_in
        .verifying_key("evm-pinned", &v2)
        .verify_prehash(&digest, &k256_sig)
        .unwrap();
    assert!(
        stand_in
            .verifying_key("evm-pinned", &v1)
            .verify_prehash(&digest, &k256_sig)
            .is_err()
    );
}

#[tokio::test]
async fn evm_suite() {
    let (_stand_in, b) = fixture().await;
    keymgr_testkit::evm::run(b.clone(), KeyRef::new("evm")).await;
    let manager: Arc<dyn KeyBackend> = Arc::new(KeyManager::builder(b).build());
    keymgr_testkit::evm::run(manager, KeyRef::new("evm")).await;
}

#[tokio::test]
async fn xrp_suite_with_a_secp256k1_key() {
    let (_stand_in, b) = fixture().await;
    keymgr_testkit::xrp::run(b.clone(), KeyRef::new("xrp")).await;
}

#[tokio::test]
async fn ed25519_is_unsupported_with_the_reason() {
    let (stand_in, b) = fixture().await;
    // A vault key that claims to be Ed25519 (Key Vault offers none) is refused by name.
    stand_in.create_other_curve("ed-key", "OKP", "Ed25519");
    for result in [
        b.public_key(&KeyRef::new("ed-key")).await.map(|_| ()),
        b.sign(
            &KeyRef::new("ed-key"),
            &SignPayload::message(b"CLM\0".to_vec()),
        )
        .await
        .map(|_| ()),
    ] {
        match result.unwrap_err() {
            Error::Unsupported {
                backend, reason, ..
            } => {
                assert_eq!(backend, "azure-kv");
                assert!(
                    reason.starts_with("ed-key is an OKP (Ed25519) key")
                        && reason.contains("secp256k1"),
                    "{reason}"
                );
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }
    // An Ed25519 payload (a raw message) for a secp256k1 key says why, before any sign call.
    match b
        .sign(
            &KeyRef::new("xrp"),
            &SignPayload::message(b"CLM\0".to_vec()),
        )
        .await
        .unwrap_err()
    {
        Error::InvalidInput { field, reason, .. } => {
            assert_eq!(field, "payload");
            assert!(reason.contains("does not offer Ed25519"), "{reason}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(stand_in.calls("sign"), 0);
}

#[tokio::test]
async fn other_curves_are_unsupported_naming_the_curve() {
    let (stand_in, b) = fixture().await;
    for crv in ["P-256", "P-384", "P-521"] {
        let name = format!("nist-{}", crv.trim_start_matches("P-"));
        stand_in.create_other_curve(&name, "EC", crv);
        for result in [
            b.public_key(&KeyRef::new(name.as_str())).await.map(|_| ()),
            b.sign(
                &KeyRef::new(name.as_str()),
                &SignPayload::prehash(&[1; 32]).unwrap(),
            )
            .await
            .map(|_| ()),
        ] {
            match result.unwrap_err() {
                Error::Unsupported { reason, .. } => {
                    assert!(reason.contains(crv) && reason.contains(&name), "{reason}")
                }
                other => panic!("expected Unsupported for {crv}, got {other:?}"),
            }
        }
    }
    assert_eq!(stand_in.calls("sign"), 0);
}
