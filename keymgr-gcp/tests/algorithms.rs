//! The algorithm comes from the version's metadata: unsupported algorithms are refused
//! with an error naming them, before any public key or signature is requested; and the
//! backend connects from configuration like `KEY_BACKEND=gcp-kms` does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use keymgr_core::{Error, ErrorKind, KeyBackend, KeyRef, SignPayload};
use keymgr_gcp::{GcpKmsBackend, GcpKmsConfig};
use support::{Algorithm, KEY_RING, StandIn, backend};

#[tokio::test]
async fn unsupported_algorithms_are_named() {
    let stand_in = StandIn::start().await;
    let p256 = stand_in.create_key("p256", Algorithm::P256);
    let aes = stand_in.create_key("aes", Algorithm::Symmetric);
    // Names that suggest another algorithm change nothing: metadata decides.
    let b = backend(&stand_in, &[("evm", &p256), ("xrp-ed25519", &aes)]).await;
    for (name, algorithm) in [
        ("evm", "EC_SIGN_P256_SHA256"),
        ("xrp-ed25519", "GOOGLE_SYMMETRIC_ENCRYPTION"),
    ] {
        let key = KeyRef::new(name);
        for e in [
            b.public_key(&key).await.unwrap_err(),
            b.sign(&key, &SignPayload::Prehash([1; 32]))
                .await
                .unwrap_err(),
            b.sign(&key, &SignPayload::message(b"m".to_vec()))
                .await
                .unwrap_err(),
        ] {
            let Error::Unsupported {
                backend, reason, ..
            } = &e
            else {
                panic!("{name}: {e}")
            };
            assert_eq!(backend, "gcp-kms");
            assert!(
                reason.contains(algorithm) && reason.contains(name),
                "{reason}"
            );
        }
        let e = b.list_versions(name).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    }
    assert_eq!(stand_in.calls("getPublicKey"), 0);
    assert_eq!(stand_in.calls("asymmetricSign"), 0);
}

#[tokio::test]
async fn payload_shape_and_size_limits() {
    let (stand_in, b, _, _) = support::evm_and_xrp().await;
    let e = b
        .sign(
            &KeyRef::new("xrp"),
            &SignPayload::message(vec![0u8; keymgr_gcp::MAX_DATA_BYTES + 1]),
        )
        .await
        .unwrap_err();
    let Error::InvalidInput { field, reason, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(field, "message");
    assert!(
        reason.contains("xrp") && reason.contains("65536"),
        "{reason}"
    );
    // 64 KiB exactly is signed.
    let msg = vec![5u8; keymgr_gcp::MAX_DATA_BYTES];
    let sig = b
        .sign(&KeyRef::new("xrp"), &SignPayload::message(msg.clone()))
        .await
        .unwrap();
    let pk = b.public_key(&KeyRef::new("xrp")).await.unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.to_bytes().try_into().unwrap()).unwrap();
    vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig.to_bytes()))
        .unwrap();
    // Malformed versions are refused before any call.
    let before = stand_in.calls("getCryptoKeyVersion");
    for v in ["0", "x", "-1", "01"] {
        let e = b
            .public_key(&KeyRef::versioned("evm", v))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{v}: {e}");
    }
    assert_eq!(stand_in.calls("getCryptoKeyVersion"), before);
}

#[tokio::test]
async fn connects_from_configuration_variables() {
    let stand_in = StandIn::start().await;
    stand_in.create_key("evm-key", Algorithm::Secp256k1);
    let xrp = stand_in.create_key("xrp-key", Algorithm::Ed25519);
    let endpoint = stand_in.endpoint();
    let vars = |name: &str| -> Option<String> {
        match name {
            "GCP_PROJECT_ID" => Some("keymgr-test".into()),
            "GCP_LOCATION_ID" => Some("us-east1".into()),
            "GCP_KEY_RING_ID" => Some("standin".into()),
            "GCP_KMS_EVM_KEY_ID" => Some("evm-key".into()),
            "GCP_KMS_XRP_KEY_ID" => Some(xrp.clone()),
            "GCP_KMS_ENDPOINT" => Some(endpoint.clone()),
            _ => None,
        }
    };
    let config = GcpKmsConfig::from_vars(vars).unwrap();
    assert_eq!(config.keys["evm"], format!("{KEY_RING}/cryptoKeys/evm-key"));
    let b = GcpKmsBackend::connect(config).await.unwrap();
    support::sign_and_check(&b, &KeyRef::new("evm"))
        .await
        .unwrap();
    b.sign(&KeyRef::new("xrp"), &SignPayload::message(b"hi".to_vec()))
        .await
        .unwrap();
    let health = b.health().await;
    assert_eq!(
        health.status,
        keymgr_core::HealthStatus::Healthy,
        "{health:?}"
    );
    // A disabled current version makes health say so.
    stand_in.set_state(
        &format!("{xrp}/cryptoKeyVersions/1"),
        support::State::Disabled,
    );
    let health = b.health().await;
    assert_eq!(
        health.status,
        keymgr_core::HealthStatus::Unhealthy,
        "{health:?}"
    );
    assert!(health.detail.unwrap().contains("xrp"));
}
