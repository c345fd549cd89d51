//! Typed errors and configuration on moto: unusable keys name the key, the backend
//! connects from the environment, and plain moto's wrong-digest signature becomes an
//! integrity error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::KeySpec;
use aws_sdk_kms::types::KeyUsageType;
use aws_sdk_kms::types::MessageType;
use aws_sdk_kms::types::SigningAlgorithmSpec;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_aws::AwsKmsBackend;
use keymgr_aws::AwsKmsConfig;
use keymgr_core::ErrorKind;
use keymgr_core::KeyBackend;
use keymgr_core::KeyRef;
use keymgr_core::RawSignature;
use keymgr_core::SignPayload;
use keymgr_core::finish_signature;
use sha2::Digest as _;
use std::collections::BTreeMap;
use support::*;

#[tokio::test]
async fn unusable_keys_are_typed_errors_naming_the_key() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let p256 = create_key(
        &client,
        KeySpec::EccNistP256,
        KeyUsageType::SignVerify,
        "p256",
        &[],
    )
    .await;
    let rsa = create_key(
        &client,
        KeySpec::Rsa2048,
        KeyUsageType::EncryptDecrypt,
        "rsa",
        &[],
    )
    .await;
    let sym = create_key(
        &client,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
        "sym",
        &[],
    )
    .await;
    let disabled = secp256k1_key(&client, "disabled").await;
    client
        .disable_key()
        .key_id(&disabled.key_id)
        .send()
        .await
        .unwrap();
    let b = backend(
        &client,
        &[
            ("wrong-spec", &p256.alias),
            ("wrong-usage", &rsa.alias),
            ("symmetric", &sym.alias),
            ("disabled", &disabled.alias),
        ],
    );
    let payload = SignPayload::Prehash(random32());
    let cases = [
        ("wrong-spec", ErrorKind::InvalidInput, "ECC_NIST_P256"),
        ("wrong-usage", ErrorKind::InvalidInput, "ENCRYPT_DECRYPT"),
        (
            "symmetric",
            ErrorKind::InvalidInput,
            "UnsupportedOperationException",
        ),
        ("disabled", ErrorKind::AccessDenied, "DisabledException"),
    ];
    for (name, kind, mentions) in cases {
        for e in [
            b.public_key(&KeyRef::new(name)).await.expect_err(name),
            b.sign(&KeyRef::new(name), &payload).await.expect_err(name),
        ] {
            assert_eq!(e.kind(), kind, "{name}: {e}");
            let text = e.to_string();
            assert!(
                text.contains(name),
                "{name}: error does not name the key: {text}"
            );
            assert!(
                text.contains(mentions),
                "{name}: error does not say what is wrong: {text}"
            );
            assert!(!e.is_retryable(), "{name}");
        }
    }

    // Missing keys: NotFound with the key's name and the AWS request id.
    let gone = missing();
    let e = b.sign(&gone, &payload).await.expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let text = e.to_string();
    assert!(
        text.contains(gone.name()) && text.contains("NotFoundException"),
        "{text}"
    );
    assert!(
        text.contains("AWS request id ") && !text.contains("no AWS request id"),
        "{text}"
    );

    // A health check reports the disabled key by name.
    let report = b.health().await;
    assert_eq!(report.status, keymgr_core::HealthStatus::Unhealthy);
    assert!(
        report.detail.as_deref().unwrap_or("").contains("disabled"),
        "{report:?}"
    );
}

#[tokio::test]
async fn connects_from_environment_variables() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let evm = secp256k1_key(&client, "env-evm").await;
    let xrp = create_key(
        &client,
        KeySpec::EccNistEdwards25519,
        KeyUsageType::SignVerify,
        "env-xrp",
        &[],
    )
    .await;
    let vars: BTreeMap<&str, String> = [
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ENDPOINT_URL", endpoint.clone()),
        ("AWS_KMS_EVM_KEY_ID", evm.alias_arn.clone()),
        ("AWS_KMS_XRP_KEY_ID", xrp.key_id.clone()),
    ]
    .into_iter()
    .collect();
    let config = AwsKmsConfig::from_vars(|n| vars.get(n).cloned()).unwrap();
    // Credentials come from the SDK chain (xtask exports fake ones for moto).
    let b = AwsKmsBackend::connect(config).await.unwrap();
    assert!(format!("{b:?}").contains("us-east-1"));
    let report = b.health().await;
    assert_eq!(
        report.status,
        keymgr_core::HealthStatus::Healthy,
        "{report:?}"
    );
    let h = random32();
    let sig = b
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash(h))
        .await
        .unwrap();
    assert!(k256_verifies(
        &b.public_key(&KeyRef::new("evm")).await.unwrap(),
        &h,
        &sig
    ));
    let sig = b
        .sign(
            &KeyRef::new("xrp"),
            &SignPayload::message(b"claim".to_vec()),
        )
        .await
        .unwrap();
    let pk = b.public_key(&KeyRef::new("xrp")).await.unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.to_bytes().try_into().unwrap()).unwrap();
    vk.verify_strict(
        b"claim",
        &ed25519_dalek::Signature::from_bytes(&sig.to_bytes()),
    )
    .unwrap();
}

/// Plain moto 5.2.5 ignores `MessageType=DIGEST` and signs SHA-256(digest): keymgr's
/// verify-after-sign must turn that into an integrity error, never a signature.
#[tokio::test]
async fn plain_moto_wrong_digest_signature_is_an_integrity_error() {
    let Some(endpoint) = endpoint_var("KEYMGR_MOTO_PLAIN_ENDPOINT_URL") else {
        return;
    };
    let client = client(&endpoint);
    let key = secp256k1_key(&client, "plain").await;
    let b = backend(&client, &[("evm", &key.alias)]);
    let evm = KeyRef::new("evm");
    let prehash = random32();
    let payload = SignPayload::Prehash(prehash);

    let e = b
        .sign(&evm, &payload)
        .await
        .expect_err("a signature over the wrong hash");
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert!(
        e.to_string().contains("evm") && e.to_string().contains("does not verify"),
        "{e}"
    );
    assert!(!e.is_retryable());

    // Show what moto did: the DER it returns verifies over SHA-256(prehash) with k256,
    // not over the prehash, and core's finish_signature refuses exactly that.
    let pk = b.public_key(&evm).await.unwrap();
    let out = client
        .sign()
        .key_id(&key.key_id)
        .message(Blob::new(prehash.to_vec()))
        .message_type(MessageType::Digest)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    let der = out.signature().unwrap().as_ref().to_vec();
    let sig = k256::ecdsa::Signature::from_der(&der).unwrap();
    let sig = sig.normalize_s().unwrap_or(sig);
    let rehashed: [u8; 32] = sha2::Sha256::digest(prehash).into();
    assert!(
        k256_key(&pk).verify_prehash(&rehashed, &sig).is_ok(),
        "moto signs SHA-256(digest)"
    );
    assert!(k256_key(&pk).verify_prehash(&prehash, &sig).is_err());
    let e = finish_signature("evm", &pk, &payload, RawSignature::EcdsaDer(&der)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
}

/// A version disabled outside keymgr has no recorded public key: `AccessDenied` naming
/// the tag (KMS refuses GetPublicKey on it). A record that is not this key's, not
/// base64, or of another algorithm is an integrity error, never a key.
#[tokio::test]
async fn disabled_version_without_a_valid_public_key_record() {
    use keymgr_core::IntegrityReason;
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let v1 = secp256k1_key(&client, "record").await;
    backend(&client, &[("evm", &v1.alias)])
        .create_version("evm")
        .await
        .unwrap();
    client
        .disable_key()
        .key_id(&v1.key_id)
        .send()
        .await
        .unwrap();
    let old = KeyRef::versioned("evm", v1.key_id.as_str());
    let fresh = || backend(&client, &[("evm", &v1.alias)]);
    let e = fresh().public_key(&old).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(e.to_string().contains(keymgr_aws::TAG_PUBLIC_KEY), "{e}");

    let ed = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let ed_spki = keymgr_core::PublicKey::Ed25519(ed).to_spki_der().unwrap();
    let b64 = |der: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(der)
    };
    let other_id = "1234abcd-12ab-34cd-56ef-1234567890ab";
    for (record, reason) in [
        (
            format!("{other_id}:{}", b64(&ed_spki)),
            IntegrityReason::MalformedResponse,
        ),
        (
            format!("{}:not_base64", v1.key_id),
            IntegrityReason::MalformedResponse,
        ),
        (
            format!("{}:{}", v1.key_id, b64(b"not a SPKI")),
            IntegrityReason::MalformedResponse,
        ),
        (
            format!("{}:{}", v1.key_id, b64(&ed_spki)),
            IntegrityReason::AlgorithmMismatch,
        ),
    ] {
        client
            .tag_resource()
            .key_id(&v1.key_id)
            .tags(
                aws_sdk_kms::types::Tag::builder()
                    .tag_key(keymgr_aws::TAG_PUBLIC_KEY)
                    .tag_value(&record)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let e = fresh().public_key(&old).await.unwrap_err();
        assert_eq!(e.integrity_reason(), Some(reason), "{record}: {e}");
        assert!(e.to_string().contains(&v1.key_id), "{e}");
    }
}
