//! keymgr-aws through the shared conformance suites on moto's KMS server: signing
//! (secp256k1 and Ed25519 keys by key id, ARN, alias and alias ARN), the key versions
//! contract, an unreachable endpoint, and the EVM and XRP signer suites. Every signature
//! is checked with k256, ed25519-dalek or alloy's recovery, independently of keymgr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use aws_sdk_kms::Client;
use aws_sdk_kms::config::BehaviorVersion;
use aws_sdk_kms::config::Credentials;
use aws_sdk_kms::config::Region;
use aws_sdk_kms::types::KeySpec;
use aws_sdk_kms::types::KeyUsageType;
use ed25519_dalek::Verifier as _;
use keymgr_core::ErrorKind;
use keymgr_core::KeyAlgorithm;
use keymgr_core::KeyBackend;
use keymgr_core::KeyManager;
use keymgr_core::KeyRef;
use keymgr_core::SignPayload;
use keymgr_testkit::conformance::{self, SuiteKeys};
use rand_core::RngCore as _;
use std::sync::Arc;
use support::*;

#[tokio::test]
async fn secp256k1_conformance_by_key_id_arn_alias_and_alias_arn() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let key = secp256k1_key(&client, "evm").await;
    let mut public_keys = Vec::new();
    for identifier in [&key.key_id, &key.arn, &key.alias, &key.alias_arn] {
        // Configured under a logical name, as AWS_KMS_EVM_KEY_ID would be...
        let b: Arc<dyn KeyBackend> = Arc::new(backend(&client, &[("evm", identifier)]));
        let keys = SuiteKeys {
            secp256k1: Some(KeyRef::new("evm")),
            ed25519: None,
            missing: missing(),
        };
        conformance::run(b.clone(), &keys).await;
        public_keys.push(b.public_key(&KeyRef::new("evm")).await.unwrap());
        // ...and passed to KMS directly as the key's name.
        let direct: Arc<dyn KeyBackend> = Arc::new(backend(&client, &[]));
        conformance::secp256k1_signatures(&*direct, &KeyRef::new(identifier.as_str())).await;
    }
    assert!(public_keys.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn ed25519_keys_sign_raw_messages() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let key = create_key(
        &client,
        KeySpec::EccNistEdwards25519,
        KeyUsageType::SignVerify,
        "xrp",
        &[],
    )
    .await;
    let b = backend(&client, &[("xrp", &key.alias)]);
    let xrp = KeyRef::new("xrp");
    let pk = b.public_key(&xrp).await.unwrap();
    assert_eq!(pk.algorithm(), KeyAlgorithm::Ed25519);
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.to_bytes().try_into().unwrap()).unwrap();
    // 44 bytes is an XRPL payment-channel claim; 4096 is AWS's limit for Sign.
    for len in [1usize, 44, 255, 1024, 4096] {
        let mut msg = vec![0u8; len];
        rand_core::OsRng.fill_bytes(&mut msg);
        let sig = b
            .sign(&xrp, &SignPayload::message(msg.clone()))
            .await
            .unwrap();
        let sig = ed25519_dalek::Signature::from_bytes(&sig.to_bytes());
        vk.verify_strict(&msg, &sig)
            .unwrap_or_else(|_| panic!("{len}-byte message: Ed25519 signature does not verify"));
        msg[0] ^= 1;
        assert!(vk.verify(&msg, &sig).is_err());
    }
    for len in [0usize, 4097] {
        let e = b
            .sign(&xrp, &SignPayload::message(vec![1u8; len]))
            .await
            .expect_err("outside AWS's 1..=4096 byte limit");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("xrp") && text.contains("4096") && text.contains(&len.to_string()),
            "{text}"
        );
    }
    conformance::payload_mismatch(&b, &xrp, KeyAlgorithm::Ed25519).await;
    conformance::missing_key(&b, &missing()).await;
    conformance::health(&b).await;
}

#[tokio::test]
async fn versions_contract() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let secp = secp256k1_key(&client, "versions").await;
    let ed = create_key(
        &client,
        KeySpec::EccNistEdwards25519,
        KeyUsageType::SignVerify,
        "versions-ed",
        &[],
    )
    .await;
    let keys = [("evm", secp.alias.as_str()), ("xrp", ed.alias.as_str())];
    let b = backend(&client, &keys);
    // Each run gets a new instance (an empty cache, as in another process) that must
    // read the disabled version's public key from KMS: from the tag keymgr wrote, since
    // KMS (and the patched moto) refuse GetPublicKey on a disabled key.
    conformance::versions(&b, &backend(&client, &keys), "evm").await;
    conformance::versions(&b, &backend(&client, &keys), "xrp").await;
    // From a later version on too (the tag history already written).
    conformance::versions(&b, &backend(&client, &keys), "evm").await;
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable_and_retryable() {
    // Needs no server: nothing listens on the closed port.
    let client = Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(conformance::closed_endpoint("http"))
            .credentials_provider(Credentials::new("k", "s", None, None, "test"))
            .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
            .build(),
    );
    let b = backend(&client, &[("evm", "alias/evm")]);
    conformance::unreachable(&b, &KeyRef::new("evm")).await;
    // The error names the key and the KMS call that failed.
    let e = b.public_key(&KeyRef::new("evm")).await.unwrap_err();
    assert!(
        e.to_string().contains("evm") && e.to_string().contains("GetPublicKey"),
        "{e}"
    );
}

/// The shared XRP claim suite (keymgr-testkit feature `xrp`) with an Ed25519 and a
/// secp256k1 KMS key, found by key id, ARN, alias and alias ARN, directly and behind a
/// KeyManager.
#[tokio::test]
async fn xrp_claim_suite_with_kms_keys() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    for spec in [KeySpec::EccNistEdwards25519, KeySpec::EccSecgP256K1] {
        let key = create_key(
            &client,
            spec.clone(),
            KeyUsageType::SignVerify,
            "xrp-suite",
            &[],
        )
        .await;
        for identifier in [&key.key_id, &key.arn, &key.alias, &key.alias_arn] {
            let b: Arc<dyn KeyBackend> = Arc::new(backend(&client, &[("xrp", identifier)]));
            keymgr_testkit::xrp::run(b.clone(), KeyRef::new("xrp")).await;
            if identifier == &key.alias {
                let manager: Arc<dyn KeyBackend> = Arc::new(KeyManager::new(b));
                keymgr_testkit::xrp::run(manager, KeyRef::new("xrp")).await;
            }
        }
    }
}

#[tokio::test]
async fn evm_suite_with_kms_keys() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let key = secp256k1_key(&client, "evm-suite").await;
    for identifier in [&key.key_id, &key.arn, &key.alias, &key.alias_arn] {
        let b: Arc<dyn KeyBackend> = Arc::new(backend(&client, &[("evm", identifier)]));
        keymgr_testkit::evm::run(b.clone(), KeyRef::new("evm")).await;
        if identifier == &key.alias {
            let manager: Arc<dyn KeyBackend> = Arc::new(KeyManager::new(b));
            keymgr_testkit::evm::run(manager, KeyRef::new("evm")).await;
        }
    }
}
