//! keymgr-aws against moto's KMS server, through the real AWS SDK client.
//!
//! `cargo xtask test` starts two servers (see `xtask/src/moto.rs`): moto patched by
//! `keymgr-testkit/moto/kms_server.py` to honour `MessageType=DIGEST`, serve Ed25519
//! keys and refuse disabled keys (`AWS_ENDPOINT_URL`), and plain moto
//! (`KEYMGR_MOTO_PLAIN_ENDPOINT_URL`). Every signature is checked with k256 or
//! ed25519-dalek from the public key KMS reported, independently of keymgr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, MessageType, SigningAlgorithmSpec, Tag};
use ed25519_dalek::Verifier as _;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_aws::{
    AwsKmsBackend, AwsKmsConfig, TAG_CREATED, TAG_LOGICAL_KEY, TAG_PREVIOUS, TAG_ROTATING,
    TAG_VERSION,
};
use keymgr_core::{
    EncryptionContext, ErrorKind, KeyAlgorithm, KeyBackend, KeyManager, KeyRef, PublicKey,
    RawSignature, SignPayload, VersionState, finish_signature,
};
use keymgr_testkit::conformance::{self, SuiteKeys};
use rand_core::RngCore as _;
use sha2::Digest as _;

const REGION: &str = "us-east-1";

fn endpoint_var(var: &str) -> Option<String> {
    let endpoint = std::env::var(var).ok().filter(|v| !v.is_empty());
    if endpoint.is_none() {
        keymgr_testkit::skip_or_fail(
            &format!("moto's KMS server ({var})"),
            "`cargo xtask test` installs moto[server] into target/keymgr-test and starts it",
        );
    }
    endpoint
}

/// The DIGEST-honouring server, or `None` (test skipped) outside `cargo xtask test`.
fn moto() -> Option<String> {
    endpoint_var("AWS_ENDPOINT_URL")
}

fn client(endpoint: &str) -> Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "keymgr-test",
            "keymgr-test",
            None,
            None,
            "keymgr-tests",
        ))
        .build();
    Client::from_conf(conf)
}

/// Sends the KMS calls named in `.0` (e.g. `DescribeKey`) to a closed port, every
/// other call to moto: a network failure (or a crash) at exactly those steps.
#[derive(Debug)]
struct Unreachable(&'static [&'static str]);

impl aws_sdk_kms::config::Intercept for Unreachable {
    fn name(&self) -> &'static str {
        "Unreachable"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_kms::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_sdk_kms::config::RuntimeComponents,
        _: &mut aws_sdk_kms::config::ConfigBag,
    ) -> Result<(), aws_sdk_kms::error::BoxError> {
        let request = context.request_mut();
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.strip_prefix("TrentService."))
            .unwrap_or_default()
            .to_owned();
        if self.0.contains(&operation.as_str()) {
            request.set_uri("http://127.0.0.1:1/")?;
        }
        Ok(())
    }
}

fn unreachable_client(endpoint: &str, operations: &'static [&'static str]) -> Client {
    let conf = client(endpoint)
        .config()
        .to_builder()
        .interceptor(Unreachable(operations))
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

fn suffix() -> String {
    let mut b = [0u8; 6];
    rand_core::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Created {
    key_id: String,
    arn: String,
    alias: String,
    alias_arn: String,
}

async fn create_key(
    client: &Client,
    spec: KeySpec,
    usage: KeyUsageType,
    purpose: &str,
    tags: &[(&str, &str)],
) -> Created {
    let meta = client
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .description(format!("keymgr test: {purpose}"))
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().tag_key(*k).tag_value(*v).build().unwrap())
                .collect(),
        ))
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("metadata");
    let alias = format!("alias/keymgr-test/{purpose}-{}", suffix());
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(meta.key_id())
        .send()
        .await
        .expect("CreateAlias");
    let arn = meta.arn().unwrap().to_owned();
    let alias_arn = format!("{}:{alias}", arn.split(":key/").next().unwrap());
    Created {
        key_id: meta.key_id().to_owned(),
        arn,
        alias,
        alias_arn,
    }
}

/// A KMS key's tags, read back from KMS.
async fn tags_of(client: &Client, key_id: impl Into<String>) -> BTreeMap<String, String> {
    client
        .list_resource_tags()
        .key_id(key_id)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
        .collect()
}

/// A secp256k1 SIGN_VERIFY key with an alias (no tags).
async fn secp256k1_key(client: &Client, purpose: &str) -> Created {
    create_key(
        client,
        KeySpec::EccSecgP256K1,
        KeyUsageType::SignVerify,
        purpose,
        &[],
    )
    .await
}

fn backend(client: &Client, keys: &[(&str, &str)]) -> AwsKmsBackend {
    AwsKmsBackend::from_client(
        client.clone(),
        keys.iter()
            .map(|(n, id)| ((*n).to_owned(), (*id).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn k256_key(pk: &PublicKey) -> k256::ecdsa::VerifyingKey {
    k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes()).unwrap()
}

fn k256_verifies(pk: &PublicKey, prehash: &[u8; 32], sig: &keymgr_core::VerifiedSignature) -> bool {
    let sig = k256::ecdsa::Signature::from_slice(&sig.to_bytes()).unwrap();
    k256_key(pk).verify_prehash(prehash, &sig).is_ok()
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    b
}

fn missing() -> KeyRef {
    KeyRef::new(format!("alias/keymgr-test/no-such-key-{}", suffix()))
}

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

#[tokio::test]
async fn rotation_moves_the_alias_tags_history_and_disables_the_old_key() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let v1 = create_key(
        &client,
        KeySpec::EccSecgP256K1,
        KeyUsageType::SignVerify,
        "rotate",
        &[("team", "payments")],
    )
    .await;
    let aws = Arc::new(backend(&client, &[("evm", &v1.alias)]));
    let manager = KeyManager::new(aws.clone());
    let evm = KeyRef::new("evm");

    let h1 = random32();
    let pk1 = manager.public_key(&evm).await.unwrap();
    let sig1 = manager.sign(&evm, &SignPayload::Prehash(h1)).await.unwrap();
    assert!(k256_verifies(&pk1, &h1, &sig1));

    // The backend's own rotation primitive (keymgr-rotation drives it in production).
    let previous = aws.list_versions("evm").await.unwrap().pop().unwrap();
    assert!(previous.current);
    assert_eq!(previous.key.version(), Some(v1.key_id.as_str()));
    assert_eq!(aws.public_key(&previous.key).await.unwrap(), pk1);
    let current = aws.create_version("evm").await.unwrap();
    manager.invalidate("evm");
    let current_public_key = aws.public_key(&current.key).await.unwrap();
    let v2_id = current.key.version().unwrap().to_owned();
    assert_ne!(v2_id, v1.key_id);
    assert_ne!(current_public_key, pk1, "a new key, so a new public key");

    // The alias moved in KMS itself.
    let target = client
        .describe_key()
        .key_id(&v1.alias)
        .send()
        .await
        .unwrap();
    assert_eq!(target.key_metadata.unwrap().key_id(), v2_id);

    // The current name signs with the new key; the old version still signs (overlap).
    let h2 = random32();
    let sig2 = manager.sign(&evm, &SignPayload::Prehash(h2)).await.unwrap();
    assert!(k256_verifies(&current_public_key, &h2, &sig2));
    assert!(!k256_verifies(&pk1, &h2, &sig2));
    let old = KeyRef::versioned("evm", v1.key_id.as_str());
    let h3 = random32();
    let sig3 = manager.sign(&old, &SignPayload::Prehash(h3)).await.unwrap();
    assert!(k256_verifies(&pk1, &h3, &sig3));

    // Tags tell the history, read back from KMS.
    let tags = |id: String| tags_of(&client, id);
    let t2 = tags(v2_id.clone()).await;
    assert_eq!(t2.get(TAG_LOGICAL_KEY), Some(&v1.alias));
    assert_eq!(t2.get(TAG_VERSION).map(String::as_str), Some("2"));
    assert_eq!(t2.get(TAG_PREVIOUS), Some(&v1.key_id));
    assert!(
        t2.get(TAG_CREATED)
            .is_some_and(|c| c.ends_with('Z') && c.contains('T')),
        "{t2:?}"
    );
    assert_eq!(
        t2.get("team").map(String::as_str),
        Some("payments"),
        "user tags are copied"
    );
    let t1 = tags(v1.key_id.clone()).await;
    assert_eq!(t1.get(TAG_VERSION).map(String::as_str), Some("1"));
    assert_eq!(t1.get(TAG_LOGICAL_KEY), Some(&v1.alias));
    let new_meta = client
        .describe_key()
        .key_id(&v2_id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(new_meta.key_spec(), Some(&KeySpec::EccSecgP256K1));
    assert_eq!(new_meta.key_usage(), Some(&KeyUsageType::SignVerify));

    // A fresh backend (another process) reads the same history from KMS.
    let other = backend(&client, &[("evm", &v1.alias)]);
    let versions = other.list_versions("evm").await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].key.version(), Some(v1.key_id.as_str()));
    assert_eq!(versions[1].key.version(), Some(v2_id.as_str()));
    assert!(!versions[0].current && versions[1].current);
    assert!(versions.iter().all(|v| v.state == VersionState::Enabled));
    assert!(
        versions
            .iter()
            .all(|v| v.algorithm == KeyAlgorithm::Secp256k1)
    );
    assert_eq!(versions[0].backend_id, v1.arn);

    // Another process that signed with the old version before it was disabled, and
    // re-checks its state before every signature.
    let watcher =
        backend(&client, &[("evm", &v1.alias)]).with_version_state_ttl(std::time::Duration::ZERO);
    let h4 = random32();
    let sig4 = watcher.sign(&old, &SignPayload::Prehash(h4)).await.unwrap();
    assert!(k256_verifies(&pk1, &h4, &sig4));

    // The current version cannot be disabled; the old one is disabled, never deleted.
    let e = manager
        .disable_version(&KeyRef::versioned("evm", v2_id.as_str()))
        .await
        .expect_err("current version");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    manager.disable_version(&old).await.unwrap();
    let old_meta = client
        .describe_key()
        .key_id(&v1.key_id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(old_meta.key_state(), Some(&KeyState::Disabled));
    assert!(old_meta.deletion_date().is_none());

    // Refused by keymgr's own state, by a fresh backend (KMS key state) and by the server.
    for b in [&*aws, &other] {
        let e = b
            .sign(&old, &SignPayload::Prehash(random32()))
            .await
            .expect_err("disabled");
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
        assert!(e.to_string().contains(&v1.key_id), "{e}");
    }
    // keymgr refuses before asking KMS to sign: moto (and a lagging service) would sign.
    let e = watcher
        .sign(&old, &SignPayload::Prehash(random32()))
        .await
        .expect_err("disabled by another process");
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(
        e.to_string().contains("keymgr does not sign with it"),
        "{e}"
    );
    let direct = client
        .sign()
        .key_id(&v1.key_id)
        .message(Blob::new(random32().to_vec()))
        .message_type(MessageType::Digest)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .expect_err("the launcher makes moto refuse disabled keys");
    assert_eq!(
        aws_sdk_kms::error::ProvideErrorMetadata::code(&direct),
        Some("DisabledException")
    );

    // Old signatures still verify (independently, with the old public key).
    assert!(k256_verifies(&pk1, &h1, &sig1));
    assert!(k256_verifies(&pk1, &h3, &sig3));
    // The backend still serves the old version's public key it knows (KMS itself
    // refuses GetPublicKey on a disabled key, as real AWS does).
    assert_eq!(aws.public_key(&old).await.unwrap(), pk1);
    let fresh = backend(&client, &[("evm", &v1.alias)]);
    let e = fresh.public_key(&old).await.expect_err("disabled");
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");

    let versions = other.list_versions("evm").await.unwrap();
    assert_eq!(versions[0].state, VersionState::Disabled);
    assert_eq!(versions[1].state, VersionState::Enabled);

    // A second rotation extends the chain.
    let third = aws.create_version("evm").await.unwrap();
    let versions = other.list_versions("evm").await.unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[2].key, third.key);
    assert_eq!(
        tags(third.key.version().unwrap().to_owned())
            .await
            .get(TAG_VERSION)
            .map(String::as_str),
        Some("3")
    );

    // A version must belong to the logical key: another key's id is not a version of it.
    let stranger = secp256k1_key(&client, "stranger").await;
    let e = aws
        .sign(
            &KeyRef::versioned("evm", stranger.key_id.as_str()),
            &SignPayload::Prehash(random32()),
        )
        .await
        .expect_err("not a version of evm");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains(&stranger.key_id), "{e}");
}

#[tokio::test]
async fn rotation_needs_an_alias_and_a_signing_key() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let key = secp256k1_key(&client, "by-id").await;
    let b = backend(&client, &[("evm", &key.key_id)]);
    let e = b
        .create_version("evm")
        .await
        .expect_err("key id, not alias");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("alias"), "{e}");
    // A key named by id has exactly one version: itself.
    let versions = b.list_versions("evm").await.unwrap();
    assert_eq!(versions.len(), 1);
    assert!(versions[0].current);

    let sym = create_key(
        &client,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
        "kek-rot",
        &[],
    )
    .await;
    let b = backend(&client, &[("kek", &sym.alias)]);
    let e = b.create_version("kek").await.expect_err("symmetric");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("automatic key rotation"), "{e}");
}

#[tokio::test]
async fn data_keys_round_trip_with_encryption_context() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let kek = create_key(
        &client,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
        "kek",
        &[],
    )
    .await;
    let b = backend(&client, &[("kek", &kek.alias)]);
    let key = KeyRef::new("kek");
    let ctx: EncryptionContext = [
        ("tenant".to_owned(), "acme".to_owned()),
        ("purpose".to_owned(), "claims".to_owned()),
    ]
    .into_iter()
    .collect();

    let dk = b.generate_data_key(&key, &ctx).await.unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    assert!(!dk.ciphertext.is_empty());
    let debug = format!("{dk:?}");
    let hex: String = dk
        .plaintext
        .expose()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    assert!(
        !debug.contains(&hex) && debug.contains("REDACTED"),
        "{debug}"
    );
    let unwrapped = b.decrypt(&key, &dk.ciphertext, &ctx).await.unwrap();
    assert_eq!(unwrapped.expose(), dk.plaintext.expose());
    // Also through an explicit version (the alias's current key id).
    let unwrapped = b
        .decrypt(
            &KeyRef::versioned("kek", kek.key_id.as_str()),
            &dk.ciphertext,
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(unwrapped.expose(), dk.plaintext.expose());

    let mut wrong = ctx.clone();
    wrong.insert("tenant".into(), "globex".into());
    for bad in [wrong, EncryptionContext::new()] {
        let e = b
            .decrypt(&key, &dk.ciphertext, &bad)
            .await
            .expect_err("wrong context");
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        assert!(
            e.to_string().contains("kek") && e.to_string().contains("InvalidCiphertextException"),
            "{e}"
        );
        assert!(!e.is_retryable());
    }

    let ciphertext = b.encrypt(&key, b"channel secret", &ctx).await.unwrap();
    assert!(!ciphertext.windows(14).any(|w| w == b"channel secret"));
    assert_eq!(
        b.decrypt(&key, &ciphertext, &ctx).await.unwrap().expose(),
        b"channel secret"
    );
    let e = b
        .encrypt(&key, &vec![0u8; 4097], &ctx)
        .await
        .expect_err("too large");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    // A ciphertext made by a key that is not a version of `kek` is refused.
    let other = create_key(
        &client,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
        "other-kek",
        &[],
    )
    .await;
    let b2 = backend(&client, &[("kek", &kek.alias), ("other", &other.alias)]);
    let foreign = b2.encrypt(&KeyRef::new("other"), b"x", &ctx).await.unwrap();
    let e = b2
        .decrypt(&key, &foreign, &ctx)
        .await
        .expect_err("foreign ciphertext");
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");

    // When checking which key made a ciphertext fails (here: DescribeKey cannot reach
    // KMS), the failure keeps its kind and stays retryable; it is not an integrity error.
    let flaky = backend(
        &unreachable_client(&endpoint, &["DescribeKey"]),
        &[("kek", &kek.alias)],
    );
    let e = flaky
        .decrypt(&key, &ciphertext, &ctx)
        .await
        .expect_err("DescribeKey unreachable");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("DescribeKey"), "{e}");

    // Signing keys do not encrypt.
    let signer = secp256k1_key(&client, "not-kek").await;
    let e = b2
        .encrypt(&KeyRef::new(signer.alias.as_str()), b"x", &ctx)
        .await
        .expect_err("signing key");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains(&signer.alias), "{e}");
}

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
async fn unreachable_endpoint_is_unavailable_and_retryable() {
    // Needs no server: nothing listens on port 9 of loopback.
    let client = Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(Credentials::new("k", "s", None, None, "test"))
            .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
            .build(),
    );
    let b = backend(&client, &[("evm", "alias/evm")]);
    let e = b
        .public_key(&KeyRef::new("evm"))
        .await
        .expect_err("unreachable");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert!(
        e.to_string().contains("evm") && e.to_string().contains("GetPublicKey"),
        "{e}"
    );
    let report = b.health().await;
    assert_eq!(report.status, keymgr_core::HealthStatus::Unhealthy);
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

/// keymgr-rotation end to end on moto: the scheduler's state machine drives CreateKey,
/// the alias move and DisableKey through the real SDK.
#[tokio::test]
async fn scheduled_rotation_through_keymgr_rotation() {
    use keymgr_rotation::{ManualClock, MemoryStateStore, RotationEvent, RotationPolicy, Rotator};
    use std::time::Duration;
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let v1 = secp256k1_key(&client, "sched").await;
    let aws: Arc<dyn KeyBackend> = Arc::new(backend(&client, &[("evm", &v1.alias)]));
    let clock = Arc::new(ManualClock::new(0));
    let rotator = Rotator::new(
        aws.clone(),
        Arc::new(MemoryStateStore::default()),
        Arc::new(keymgr_core::TracingAuditSink),
        RotationPolicy::default(),
        clock.clone(),
        "moto-e2e",
    )
    .unwrap();
    // KMS reports the key's real creation time; start the virtual clock there.
    rotator.tick("evm").await.unwrap();
    let since = rotator.status("evm").await.unwrap().state.active_since_ms;
    clock.advance(Duration::from_millis(since));
    let day = Duration::from_secs(86_400);
    let mut kinds = Vec::new();
    let mut rotated = None;
    for d in 0..=100u64 {
        for e in rotator.tick("evm").await.unwrap() {
            kinds.push((
                d,
                match &e {
                    RotationEvent::Notice { .. } => "notice",
                    RotationEvent::Rotated(_) => "rotated",
                    RotationEvent::Disabled { .. } => "disabled",
                    _ => "other",
                },
            ));
            if let RotationEvent::Rotated(r) = e {
                rotated = Some(r);
            }
        }
        clock.advance(day);
    }
    assert_eq!(
        kinds,
        vec![(76, "notice"), (90, "rotated"), (97, "disabled")]
    );
    let rotated = rotated.unwrap();
    assert_eq!(
        rotated.old.as_ref().map(|o| o.version()),
        Some(v1.key_id.as_str())
    );
    // KMS itself: alias on the new key, the old key disabled (not deleted).
    let target = client
        .describe_key()
        .key_id(&v1.alias)
        .send()
        .await
        .unwrap();
    assert_eq!(target.key_metadata.unwrap().key_id(), rotated.new.version());
    let old = client
        .describe_key()
        .key_id(&v1.key_id)
        .send()
        .await
        .unwrap();
    let old = old.key_metadata.unwrap();
    assert!(!old.enabled());
    assert_eq!(
        old.key_state(),
        Some(&aws_sdk_kms::types::KeyState::Disabled)
    );
    let e = rotator
        .check_version(&KeyRef::versioned("evm", v1.key_id.as_str()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
}

/// A rotation that dies between `CreateKey` and `UpdateAlias` (simulated: both
/// `UpdateAlias` and the clean-up `DisableKey` never arrive) leaves an enabled key; the
/// next rotation adopts it instead of creating a second one.
#[tokio::test]
async fn interrupted_rotation_is_adopted_not_duplicated() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let v1 = secp256k1_key(&client, "interrupted").await;
    let crashing = backend(
        &unreachable_client(&endpoint, &["UpdateAlias", "DisableKey"]),
        &[("evm", &v1.alias)],
    );
    let e = crashing.create_version("evm").await.expect_err("crashed");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");

    // Every key tagged as a successor of v1, read back from KMS.
    let successors = || {
        let client = client.clone();
        let v1 = v1.key_id.clone();
        async move {
            let mut found = Vec::new();
            let listed = client.list_keys().limit(1000).send().await.unwrap();
            for k in listed.keys() {
                let id = k.key_id().unwrap();
                if tags_of(&client, id).await.get(TAG_PREVIOUS) == Some(&v1) {
                    found.push(id.to_owned());
                }
            }
            found
        }
    };
    let orphans = successors().await;
    assert_eq!(orphans.len(), 1, "the interrupted rotation made one key");

    let fresh = backend(&client, &[("evm", &v1.alias)]);
    let v2 = fresh.create_version("evm").await.unwrap();
    assert_eq!(v2.key.version(), Some(orphans[0].as_str()), "adopted");
    assert_eq!(successors().await, orphans, "no second key was created");
    let target = client
        .describe_key()
        .key_id(&v1.alias)
        .send()
        .await
        .unwrap();
    assert_eq!(target.key_metadata.unwrap().key_id(), orphans[0]);
    assert!(
        !tags_of(&client, &v1.key_id)
            .await
            .contains_key(TAG_ROTATING),
        "the intent marker is cleared"
    );
    // The adopted key signs under the logical name (checked with k256).
    let evm = KeyRef::new("evm");
    let pk = fresh.public_key(&evm).await.unwrap();
    let h = random32();
    let sig = fresh.sign(&evm, &SignPayload::Prehash(h)).await.unwrap();
    assert!(k256_verifies(&pk, &h, &sig));

    // A later rotation with no marker creates a new key as usual.
    let v3 = fresh.create_version("evm").await.unwrap();
    assert_ne!(v3.key.version(), v2.key.version());
}

/// Keeps every audit record in memory (the file log's own tests cover the disk).
#[derive(Debug, Default)]
struct Recorded(std::sync::Mutex<Vec<keymgr_core::AuditRecord>>);

#[async_trait::async_trait]
impl keymgr_core::AuditSink for Recorded {
    async fn record(&self, r: keymgr_core::AuditRecord) -> keymgr_core::Result<()> {
        self.0.lock().unwrap().push(r);
        Ok(())
    }
}

/// Symmetric operations through a KeyManager are audited like signatures: a request and
/// an outcome each, with the encryption context and never the plaintext.
#[tokio::test]
async fn key_manager_audits_symmetric_operations() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let kek = create_key(
        &client,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
        "audited-kek",
        &[],
    )
    .await;
    let sink = Arc::new(Recorded::default());
    let manager = KeyManager::builder(Arc::new(backend(&client, &[("kek", &kek.alias)])))
        .audit(sink.clone())
        .actor("payments")
        .build();
    let key = KeyRef::new("kek");
    let ctx: EncryptionContext = [("tenant".to_owned(), "acme".to_owned())].into();
    let secret = b"channel secret 42";
    let ciphertext = manager.encrypt(&key, secret, &ctx).await.unwrap();
    let plain = manager.decrypt(&key, &ciphertext, &ctx).await.unwrap();
    assert_eq!(plain.expose(), secret);
    let dk = manager.generate_data_key(&key, &ctx).await.unwrap();
    assert!(
        manager
            .decrypt(&key, &ciphertext, &EncryptionContext::new())
            .await
            .is_err()
    );

    let to_hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let records = sink.0.lock().unwrap().clone();
    let events: Vec<&str> = records.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "ENCRYPT_REQUEST",
            "ENCRYPT_SUCCESS",
            "DECRYPT_REQUEST",
            "DECRYPT_SUCCESS",
            "GENERATE_DATA_KEY_REQUEST",
            "GENERATE_DATA_KEY_SUCCESS",
            "DECRYPT_REQUEST",
            "DECRYPT_FAILURE",
        ]
    );
    assert!(
        records
            .iter()
            .all(|r| r.actor.as_deref() == Some("payments"))
    );
    assert_eq!(records[0].details["context.tenant"], "acme");
    assert_eq!(
        records[0].details["plaintext_len"],
        secret.len().to_string()
    );
    let ct_hash = to_hex(&sha2::Sha256::digest(&ciphertext));
    assert_eq!(records[2].payload_sha256.as_deref(), Some(ct_hash.as_str()));
    assert_eq!(records[7].error_kind, Some(ErrorKind::Integrity));
    let all = format!("{records:?}");
    assert!(!all.contains(&to_hex(secret)) && !all.contains("channel secret"));
    assert!(!all.contains(&to_hex(dk.plaintext.expose())));
}

/// The rotation state that scheduled the old key's disable is lost (another state
/// directory, a fresh one): a new rotator recovers the schedule from KMS itself (the new
/// key's creation time) and disables the old key when the overlap ends — not before,
/// and not never.
#[tokio::test]
async fn a_lost_rotation_state_is_recovered_from_kms() {
    use keymgr_rotation::{
        Clock as _, Lifecycle, ManualClock, MemoryStateStore, RotationEvent, RotationPolicy,
        Rotator, SystemClock,
    };
    use std::time::Duration;
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let v1 = secp256k1_key(&client, "lost-state").await;
    let aws: Arc<dyn KeyBackend> = Arc::new(backend(&client, &[("evm", &v1.alias)]));
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let rotator = |holder: &str| {
        Rotator::new(
            aws.clone(),
            Arc::new(MemoryStateStore::default()),
            Arc::new(keymgr_core::TracingAuditSink),
            RotationPolicy::default(),
            clock.clone(),
            holder,
        )
        .unwrap()
    };
    let events = rotator("first").rotate_now("evm", false).await.unwrap();
    assert!(
        matches!(events.as_slice(), [RotationEvent::Rotated(_)]),
        "{events:?}"
    );
    // The first rotator and its state are gone.
    let created = aws.list_versions("evm").await.unwrap()[1]
        .created_at_ms
        .expect("KMS records the creation date");
    let day = Duration::from_secs(86_400);
    clock.advance(day * 3);
    let second = rotator("second");
    assert!(
        second.tick("evm").await.unwrap().is_empty(),
        "still in the overlap"
    );
    let status = second.status("evm").await.unwrap();
    assert_eq!(
        status.versions[0].stage,
        Lifecycle::Overlapping {
            until_ms: Some(created + 7 * 86_400_000)
        }
    );
    let enabled = |id: &str| {
        let client = client.clone();
        let id = id.to_owned();
        async move {
            client
                .describe_key()
                .key_id(id)
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
                .enabled()
        }
    };
    assert!(
        enabled(&v1.key_id).await,
        "not disabled before the overlap ends"
    );
    clock.advance(day * 5);
    let events = second.tick("evm").await.unwrap();
    assert!(
        matches!(events.as_slice(), [RotationEvent::Disabled { version, .. }] if *version == v1.key_id),
        "{events:?}"
    );
    assert!(!enabled(&v1.key_id).await, "KMS disabled the old key");
}
