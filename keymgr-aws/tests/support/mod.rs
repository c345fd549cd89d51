//! Shared set-up for the tests against moto's KMS server, through the real AWS SDK
//! client.
//!
//! `cargo xtask test` starts two servers (see `xtask/src/moto.rs`): moto patched by
//! `keymgr-testkit/moto/kms_server.py` to honour `MessageType=DIGEST`, serve Ed25519
//! keys and refuse disabled keys (`AWS_ENDPOINT_URL`), and plain moto
//! (`KEYMGR_MOTO_PLAIN_ENDPOINT_URL`). Outside it, tests needing moto skip loudly.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::types::{KeySpec, KeyUsageType, Tag};
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_aws::AwsKmsBackend;
use keymgr_core::{KeyRef, PublicKey};
use rand_core::RngCore as _;

pub const REGION: &str = "us-east-1";

pub fn endpoint_var(var: &str) -> Option<String> {
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
pub fn moto() -> Option<String> {
    endpoint_var("AWS_ENDPOINT_URL")
}

pub fn client(endpoint: &str) -> Client {
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
pub struct Unreachable(pub &'static [&'static str]);

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

pub fn unreachable_client(endpoint: &str, operations: &'static [&'static str]) -> Client {
    let conf = client(endpoint)
        .config()
        .to_builder()
        .interceptor(Unreachable(operations))
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

pub fn suffix() -> String {
    let mut b = [0u8; 6];
    rand_core::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub struct Created {
    pub key_id: String,
    pub arn: String,
    pub alias: String,
    pub alias_arn: String,
}

pub async fn create_key(
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
pub async fn tags_of(client: &Client, key_id: impl Into<String>) -> BTreeMap<String, String> {
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
pub async fn secp256k1_key(client: &Client, purpose: &str) -> Created {
    create_key(
        client,
        KeySpec::EccSecgP256K1,
        KeyUsageType::SignVerify,
        purpose,
        &[],
    )
    .await
}

pub fn backend(client: &Client, keys: &[(&str, &str)]) -> AwsKmsBackend {
    AwsKmsBackend::from_client(
        client.clone(),
        keys.iter()
            .map(|(n, id)| ((*n).to_owned(), (*id).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    )
}

pub fn k256_key(pk: &PublicKey) -> k256::ecdsa::VerifyingKey {
    k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes()).unwrap()
}

pub fn k256_verifies(
    pk: &PublicKey,
    prehash: &[u8; 32],
    sig: &keymgr_core::VerifiedSignature,
) -> bool {
    let sig = k256::ecdsa::Signature::from_slice(&sig.to_bytes()).unwrap();
    k256_key(pk).verify_prehash(prehash, &sig).is_ok()
}

pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    b
}

pub fn missing() -> KeyRef {
    KeyRef::new(format!("alias/keymgr-test/no-such-key-{}", suffix()))
}
