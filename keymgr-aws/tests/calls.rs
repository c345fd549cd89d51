//! The KMS API calls each keymgr operation makes, counted on moto's server: the
//! README's "Permissions and calls per operation" table is checked here, so it cannot
//! silently drift from the code.
//!
//! An SDK interceptor records the `X-Amz-Target` of every request the backend's client
//! sends (each one reaches moto); signatures are checked independently (alloy recovery,
//! k256 verification against KMS's public key).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::B256;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kms::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use k256::pkcs8::DecodePublicKey as _;
use keymgr_aws::AwsKmsBackend;
use keymgr_core::{
    EncryptionContext, HealthStatus, KeyBackend, KeyManager, KeyRef, RecommendedLayers, SignPayload,
};
use keymgr_evm::EvmSigner;

/// The KMS operations (`TrentService.X` → `X`) sent, in order.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    /// The calls since the last `take`.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_kms::error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("(none)");
        let op = target.strip_prefix("TrentService.").unwrap_or(target);
        self.0.lock().unwrap().push(op.to_owned());
        Ok(())
    }
}

fn client(endpoint: &str, recorder: Option<Recorder>) -> Client {
    let mut conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "keymgr-test",
            "keymgr-test",
            None,
            None,
            "t",
        ));
    if let Some(r) = recorder {
        conf = conf.interceptor(r);
    }
    Client::from_conf(conf.build())
}

/// A new KMS key of `spec`/`usage` behind a fresh alias; returns (alias, key id).
async fn aliased_key(admin: &Client, spec: KeySpec, usage: KeyUsageType) -> (String, String) {
    let key_id = admin
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_owned();
    let alias = format!("alias/keymgr-calls-{key_id}");
    admin
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key_id)
        .send()
        .await
        .unwrap();
    (alias, key_id)
}

fn endpoint() -> Option<String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.is_empty());
    if endpoint.is_none() {
        keymgr_testkit::skip_or_fail(
            "moto's KMS server (AWS_ENDPOINT_URL)",
            "`cargo xtask test` installs moto[server] into target/keymgr-test and starts it",
        );
    }
    endpoint
}

fn calls(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn signer_build_sign_and_health_calls() {
    let Some(endpoint) = endpoint() else { return };
    let admin = client(&endpoint, None);
    let (alias, key_id) =
        aliased_key(&admin, KeySpec::EccSecgP256K1, KeyUsageType::SignVerify).await;
    let recorder = Recorder::default();
    let backend = AwsKmsBackend::from_client(
        client(&endpoint, Some(recorder.clone())),
        [("evm".to_owned(), alias.clone())].into_iter().collect(),
    );
    // Building the client and the manager calls nothing.
    let manager = KeyManager::builder(Arc::new(backend))
        .recommended_layers(RecommendedLayers::default())
        .build();
    assert_eq!(recorder.take(), Vec::<String>::new());

    // Building an EVM signer pins the current version: list_versions (DescribeKey of the
    // alias, ListResourceTags of its key), then that version's public key (DescribeKey of
    // the version and of the alias to prove it belongs, GetPublicKey; cached after).
    let signer = EvmSigner::new(manager, "evm").await.unwrap();
    assert_eq!(
        recorder.take(),
        calls(&[
            "DescribeKey",
            "ListResourceTags",
            "DescribeKey",
            "DescribeKey",
            "GetPublicKey"
        ])
    );
    assert_eq!(signer.key().version(), Some(key_id.as_str()));

    // The first signature checks that the pinned version is still Enabled (DescribeKey,
    // then again whenever DEFAULT_VERSION_STATE_TTL, 30 s, has passed); the next ones
    // are one Sign each.
    for (byte, expected) in [(1u8, &["DescribeKey", "Sign"][..]), (2, &["Sign"][..])] {
        let hash = B256::repeat_byte(byte);
        let sig = signer.sign_prehash(&hash).await.unwrap();
        assert_eq!(
            sig.recover_address_from_prehash(&hash).unwrap(),
            signer.address()
        );
        assert_eq!(recorder.take(), calls(expected));
    }

    // Health: one DescribeKey per configured key.
    let backend = signer.backend();
    assert_eq!(backend.health().await.status, HealthStatus::Healthy);
    assert_eq!(recorder.take(), calls(&["DescribeKey"]));
}

#[tokio::test]
async fn periodic_version_state_check_calls() {
    let Some(endpoint) = endpoint() else { return };
    let admin = client(&endpoint, None);
    let (alias, key_id) =
        aliased_key(&admin, KeySpec::EccSecgP256K1, KeyUsageType::SignVerify).await;
    let recorder = Recorder::default();
    let backend = AwsKmsBackend::from_client(
        client(&endpoint, Some(recorder.clone())),
        [("evm".to_owned(), alias)].into_iter().collect(),
    )
    .with_version_state_ttl(Duration::ZERO);
    let version = KeyRef::versioned("evm", key_id.as_str());
    let payload = SignPayload::Prehash([8; 32]);
    backend.sign(&version, &payload).await.unwrap();
    assert_eq!(
        recorder.take(),
        calls(&[
            "DescribeKey",
            "DescribeKey",
            "GetPublicKey",
            "DescribeKey",
            "Sign"
        ])
    );
    // TTL elapsed (zero here, 30 s by default): DescribeKey again before Sign.
    let sig = backend.sign(&version, &payload).await.unwrap();
    assert_eq!(recorder.take(), calls(&["DescribeKey", "Sign"]));
    // The signature verifies under the key KMS itself reports (k256, not keymgr).
    let spki = admin
        .get_public_key()
        .key_id(&key_id)
        .send()
        .await
        .unwrap()
        .public_key
        .unwrap();
    k256::ecdsa::VerifyingKey::from_public_key_der(spki.as_ref())
        .unwrap()
        .verify_prehash(&[8; 32], sig.as_secp256k1().unwrap().as_k256())
        .unwrap();
}

#[tokio::test]
async fn rotation_calls() {
    let Some(endpoint) = endpoint() else { return };
    let admin = client(&endpoint, None);
    let (alias, v1) = aliased_key(&admin, KeySpec::EccSecgP256K1, KeyUsageType::SignVerify).await;
    let recorder = Recorder::default();
    let backend = AwsKmsBackend::from_client(
        client(&endpoint, Some(recorder.clone())),
        [("evm".to_owned(), alias)].into_iter().collect(),
    );

    // First rotation of a key made outside keymgr: it is tagged as version 1 first.
    let v2 = backend.create_version("evm").await.unwrap();
    assert_eq!(
        recorder.take(),
        calls(&[
            "DescribeKey",
            "ListResourceTags",
            "TagResource",
            "TagResource",
            "CreateKey",
            "DescribeKey",
            "UpdateAlias",
            "UntagResource",
        ])
    );
    // Later rotations skip the version-1 tagging.
    backend.create_version("evm").await.unwrap();
    assert_eq!(
        recorder.take(),
        calls(&[
            "DescribeKey",
            "ListResourceTags",
            "TagResource",
            "CreateKey",
            "DescribeKey",
            "UpdateAlias",
            "UntagResource",
        ])
    );

    // Listing walks the history: DescribeKey + ListResourceTags per version.
    assert_eq!(backend.list_versions("evm").await.unwrap().len(), 3);
    assert_eq!(
        recorder.take(),
        calls(&[
            "DescribeKey",
            "ListResourceTags",
            "DescribeKey",
            "ListResourceTags",
            "DescribeKey",
            "ListResourceTags",
        ])
    );

    // Disabling a non-current version: prove it belongs (DescribeKey ×2,
    // ListResourceTags), record its public key on it (GetPublicKey, TagResource), then
    // DisableKey.
    let v2_pk = backend.public_key(&v2.key).await.unwrap();
    recorder.take();
    backend.disable_version(&v2.key).await.unwrap();
    assert_eq!(
        recorder.take(),
        calls(&[
            "DescribeKey",
            "DescribeKey",
            "ListResourceTags",
            "GetPublicKey",
            "TagResource",
            "DisableKey"
        ])
    );
    // Disabling it again: already disabled, nothing recorded, DisableKey is a no-op.
    backend.disable_version(&v2.key).await.unwrap();
    assert_eq!(
        recorder.take(),
        calls(&[
            "DescribeKey",
            "DescribeKey",
            "ListResourceTags",
            "DisableKey"
        ])
    );
    // Another process reads the disabled version's public key from the tag: no
    // GetPublicKey (KMS refuses it on a disabled key).
    let fresh = AwsKmsBackend::from_client(
        client(&endpoint, Some(recorder.clone())),
        [("evm".to_owned(), format!("alias/keymgr-calls-{v1}"))]
            .into_iter()
            .collect(),
    );
    assert_eq!(fresh.public_key(&v2.key).await.unwrap(), v2_pk);
    assert_eq!(
        recorder.take(),
        calls(&["DescribeKey", "DescribeKey", "ListResourceTags"])
    );
    backend
        .disable_version(&KeyRef::versioned("evm", v1.as_str()))
        .await
        .unwrap();
    recorder.take();
}

#[tokio::test]
async fn data_key_calls() {
    let Some(endpoint) = endpoint() else { return };
    let admin = client(&endpoint, None);
    let (alias, _) = aliased_key(
        &admin,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
    )
    .await;
    let recorder = Recorder::default();
    let backend = AwsKmsBackend::from_client(
        client(&endpoint, Some(recorder.clone())),
        [("kek".to_owned(), alias)].into_iter().collect(),
    );
    let kek = KeyRef::new("kek");
    let context: EncryptionContext = [("purpose".to_owned(), "calls".to_owned())]
        .into_iter()
        .collect();
    let data_key = backend.generate_data_key(&kek, &context).await.unwrap();
    assert_eq!(recorder.take(), calls(&["GenerateDataKey"]));
    // Decrypt without a key id, then prove the key KMS used is a version of `kek`
    // (DescribeKey of it and of the alias; ListResourceTags only when not current).
    let plaintext = backend
        .decrypt(&kek, &data_key.ciphertext, &context)
        .await
        .unwrap();
    assert_eq!(plaintext.expose(), data_key.plaintext.expose());
    assert_eq!(
        recorder.take(),
        calls(&["Decrypt", "DescribeKey", "DescribeKey"])
    );
}
