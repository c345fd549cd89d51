//! Configured failover (`KEY_BACKENDS=aws-kms,env`) where the AWS member's KMS goes
//! away: its endpoint (moto behind a `keymgr_testkit::proxy::FaultProxy`) is stopped or
//! resets every connection. The env member, holding the expected key, signs with the
//! same address; the AWS member's breaker opens and health is degraded. When the AWS
//! endpoint comes back holding another key (moto cannot hold an imported secp256k1 key),
//! the failover refuses it as an integrity error instead of signing with it.
//!
//! Needs moto's KMS server (`cargo xtask test`); every signature is checked with k256.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use k256::ecdsa::SigningKey;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr::layer::{BreakerState, Failover};
use keymgr::{
    ErrorKind, HealthStatus, IntegrityReason, KeyBackend as _, KeyRef, MemberConfig, SignPayload,
};
use keymgr_testkit::proxy::{Fault, FaultProxy};

type Vars = HashMap<String, String>;

fn moto() -> Option<String> {
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

/// `KEY_BACKENDS=aws-kms,env`: the AWS member at `endpoint` with `key_id`, the env member
/// with `key`; breakers open after one failure for `open_secs`, no retries, no cache of
/// health reports.
fn vars(endpoint: &str, key_id: &str, key: &SigningKey, open_secs: u64) -> Vars {
    [
        ("KEY_BACKENDS", "aws-kms,env"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_KMS_EVM_KEY_ID", key_id),
        ("KEYMGR_HEALTH_KEYS", "evm"),
        ("KEYMGR_HEALTH_CACHE_SECS", "0"),
        ("KEYMGR_HEALTH_DEADLINE_MS", "3000"),
        ("KEYMGR_RETRY_MAX", "0"),
        ("KEYMGR_TIMEOUT_MS", "2000"),
        ("KEYMGR_BREAKER_FAILURES", "1"),
        ("KEYMGR_BREAKER_OPEN_SECS", &open_secs.to_string()),
        ("KEYMGR_RATE_LIMIT_PER_MINUTE", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([(
        "EVM_PRIVATE_KEY".to_owned(),
        format!("0x{}", hex::encode(key.to_bytes())),
    )])
    .collect()
}

async fn failover(vars: &Vars) -> Failover {
    MemberConfig::from_vars(&|name: &str| vars.get(name).cloned())
        .unwrap()
        .unwrap()
        .build()
        .await
        .unwrap()
}

fn address_of(key: &SigningKey) -> String {
    keymgr::PublicKey::Secp256k1(*key.verifying_key())
        .evm_address()
        .unwrap()
}

async fn assert_signs_with(failover: &Failover, key: &SigningKey) {
    let digest: [u8; 32] = rand_core::RngCore::next_u64(&mut rand_core::OsRng)
        .to_be_bytes()
        .repeat(4)
        .try_into()
        .unwrap();
    let sig = failover
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash(digest))
        .await
        .unwrap();
    let s = k256::ecdsa::Signature::from_slice(&sig.to_bytes()).unwrap();
    key.verifying_key()
        .verify_prehash(&digest, &s)
        .expect("verifies under the env member's key");
    assert_eq!(sig.public_key().evm_address().unwrap(), address_of(key));
}

async fn assert_degraded_with_aws_open(failover: &Failover) {
    let h = failover.health().await;
    assert_eq!(h.status, HealthStatus::Degraded, "{h:?}");
    let names: Vec<_> = h.components.iter().map(|c| c.backend.as_str()).collect();
    assert_eq!(names, ["aws-kms", "env"]);
    assert_eq!(h.components[0].status, HealthStatus::Unhealthy, "{h:?}");
    assert_eq!(h.components[0].breaker, Some(BreakerState::Open), "{h:?}");
    assert!(h.components[0].next_trial_ms.is_some(), "{h:?}");
    assert_eq!(h.components[1].status, HealthStatus::Healthy, "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_member_whose_kms_is_stopped_fails_over_to_env_with_the_same_address() {
    let Some(moto) = moto() else { return };
    let mut proxy = FaultProxy::start(&moto).await.unwrap();
    let endpoint = proxy.url();
    // The endpoint the AWS member was configured with now refuses connections.
    proxy.stop().await;
    let key = SigningKey::random(&mut rand_core::OsRng);
    let f = failover(&vars(&endpoint, "alias/keymgr-test/stopped", &key, 3600)).await;

    assert_signs_with(&f, &key).await;
    assert_degraded_with_aws_open(&f).await;
    // The breaker is open: the next signature skips the AWS member at once.
    assert_signs_with(&f, &key).await;
    let debug = format!("{:?}", f.health().await);
    assert!(!debug.contains(&hex::encode(key.to_bytes())), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_member_that_comes_back_with_another_key_is_refused_not_signed_with() {
    let Some(moto) = moto() else { return };
    let client = {
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .endpoint_url(&moto)
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "keymgr-test",
                "keymgr-test",
                None,
                None,
                "keymgr-tests",
            ))
            .build();
        aws_sdk_kms::Client::from_conf(conf)
    };
    let kms_key = client
        .create_key()
        .key_spec(KeySpec::EccSecgP256K1)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_owned();
    let proxy = FaultProxy::start(&moto).await.unwrap();
    // Down: every connection is reset before KMS answers.
    proxy.set_plan(|_, _| Some(Fault::Reset));
    let key = SigningKey::random(&mut rand_core::OsRng);
    let f = failover(&vars(&proxy.url(), &kms_key, &key, 1)).await;
    assert_signs_with(&f, &key).await;
    assert_degraded_with_aws_open(&f).await;
    let reached = proxy.requests("Sign") + proxy.requests("GetPublicKey");
    assert!(reached > 0, "the AWS member was tried");

    // KMS answers again, with its own key; once the breaker lets a trial through, the
    // AWS member is refused for holding another key, never used to sign.
    proxy.clear_plan();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = f
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([9; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e:?}");
    assert_eq!(e.integrity_reason(), Some(IntegrityReason::MembersDisagree));
}
